//! M2-BERT against the reference outputs of ../shared/fixtures/m2-bert-tiny (computed by
//! HazyResearch/m2's upstream code; see that folder's README): padded to the model's maximum as
//! the released model is run, one at a time and in a batch, unpadded, and padded to the longest.

use std::path::PathBuf;

use candle_core::DType;
use candle_nn::VarBuilder;
use common::{fixture as fixture_named, floats, ids, inputs, max_abs_diff};
use ibex_embedder::m2_bert::{Config, M2BertModel};
use serde_json::Value;

mod common;

fn fixture() -> PathBuf {
    fixture_named("m2-bert-tiny")
}

const TOLERANCE: f32 = 1e-4;

fn config() -> Config {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap()).unwrap()
}

fn load() -> (M2BertModel, Value) {
    // SAFETY: the fixture's weights are memory-mapped read-only and nothing writes the shared
    // fixtures folder while the tests run.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[fixture().join("model.safetensors")],
            DType::F32,
            &common::device(),
        )
        .unwrap()
    };
    let model = M2BertModel::load(vb, &config()).unwrap();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
            .unwrap();
    (model, reference)
}

fn pad(row: &[u32], len: usize) -> Vec<u32> {
    let mut padded = row.to_vec();
    padded.resize(len, 0);
    padded
}

#[test]
fn padded_to_the_maximum_each_input_alone_and_batched_match_the_reference() {
    let (model, reference) = load();
    let expected = &reference["outputs"]["pad_to_max_seq_len"];
    let rows: Vec<Vec<u32>> = inputs(&reference).iter().map(|r| pad(r, 256)).collect();
    assert_eq!(rows, ids(&reference["padded_batch"]["input_ids"]));

    let mut single = Vec::new();
    for row in &rows {
        let (_, pooled) = model.forward(std::slice::from_ref(row)).unwrap();
        single.extend(pooled.to_vec2::<f32>().unwrap());
    }
    let diff = max_abs_diff(&single, &floats(&expected["pooled_single"]));
    assert!(diff <= TOLERANCE, "pooled, one at a time: {diff}");

    let (hidden, pooled) = model.forward(&rows).unwrap();
    let diff = max_abs_diff(
        &pooled.to_vec2::<f32>().unwrap(),
        &floats(&expected["pooled_batched"]),
    );
    assert!(diff <= TOLERANCE, "pooled, batched: {diff}");

    let first: Vec<Vec<f32>> = hidden.get(0).unwrap().to_vec2().unwrap();
    let diff = max_abs_diff(
        &first[..5],
        &floats(&expected["last_hidden_state_input0_real_tokens"]),
    );
    assert!(diff <= TOLERANCE, "hidden states of input 0: {diff}");
    let pad_position = vec![expected["last_hidden_state_input0_first_pad_position"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect::<Vec<f32>>()];
    let diff = max_abs_diff(&first[5..6], &pad_position);
    assert!(diff <= TOLERANCE, "hidden state at the first pad: {diff}");
}

#[test]
fn unpadded_and_padded_to_the_longest_match_their_references() {
    let (model, reference) = load();
    let unpadded = &reference["outputs"]["unpadded_single"];
    let mut pooled = Vec::new();
    for row in inputs(&reference) {
        let (_, p) = model.forward(&[row]).unwrap();
        pooled.extend(p.to_vec2::<f32>().unwrap());
    }
    let diff = max_abs_diff(&pooled, &floats(&unpadded["pooled"]));
    assert!(diff <= TOLERANCE, "unpadded: {diff}");

    let longest = &reference["outputs"]["padded_to_longest_batch"];
    let (_, p) = model.forward(&ids(&longest["input_ids"])).unwrap();
    let diff = max_abs_diff(&p.to_vec2::<f32>().unwrap(), &floats(&longest["pooled"]));
    assert!(diff <= TOLERANCE, "padded to the longest: {diff}");
}

#[test]
fn names_without_the_bert_prefix_and_one_stored_freq_load_the_same_model() {
    let tensors =
        candle_core::safetensors::load(fixture().join("model.safetensors"), &common::device())
            .unwrap();
    let renamed: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .filter(|(name, _)| {
            // Keep only the first of the six shared Sin frequencies, as save_pretrained may.
            !name.ends_with(".freq") || name.ends_with("implicit_filter.1.freq")
        })
        .map(|(name, t)| (name.trim_start_matches("bert.").to_string(), t))
        .collect();
    let model = M2BertModel::load(
        VarBuilder::from_tensors(renamed, DType::F32, &common::device()),
        &config(),
    )
    .unwrap();
    let (reference_model, reference) = load();
    let row = vec![pad(&inputs(&reference)[0], 64)];
    let (_, a) = model.forward(&row).unwrap();
    let (_, b) = reference_model.forward(&row).unwrap();
    assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
}

#[test]
fn a_configuration_with_other_switches_is_refused() {
    let mut config = config();
    config.bidirectional = false;
    let error = config.check().unwrap_err();
    assert!(error.contains("bidirectional"), "{error}");
}
