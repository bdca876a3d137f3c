//! The Mistral encoder and E5 last-token pooling against the reference outputs of
//! ../shared/fixtures/e5-mistral-tiny (computed by transformers' MistralModel, see that folder's
//! README): each input alone, and in left- and right-padded batches.

use std::path::PathBuf;

use candle_core::DType;
use candle_nn::VarBuilder;
use common::{fixture as fixture_named, floats, ids, inputs, max_abs_diff};
use ibex_embedder::mistral::{l2_normalize, last_token_pool, Config, MistralModel};
use serde_json::Value;

mod common;

fn fixture() -> PathBuf {
    fixture_named("e5-mistral-tiny")
}

fn load() -> (MistralModel, Value) {
    load_in(DType::F32)
}

fn load_in(dtype: DType) -> (MistralModel, Value) {
    let dir = fixture();
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    // SAFETY: the fixture's weights are memory-mapped read-only and nothing writes the shared
    // fixtures folder while the tests run.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            dtype,
            &common::device(),
        )
        .unwrap()
    };
    let model = MistralModel::load(vb, &config).unwrap();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    (model, reference)
}

fn embed(model: &MistralModel, ids: &[Vec<u32>], mask: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let hidden = model.forward(ids, mask).unwrap();
    l2_normalize(&last_token_pool(&hidden, mask).unwrap())
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2()
        .unwrap()
}

#[test]
fn each_input_alone_matches_the_reference() {
    let (model, reference) = load();
    let expected = floats(&reference["outputs"]["single_pooled_l2"]);
    let mut got = Vec::new();
    for input in reference["inputs"].as_array().unwrap() {
        let row = ids(&Value::Array(vec![input["input_ids"].clone()]));
        let mask = vec![vec![1u32; row[0].len()]];
        got.extend(embed(&model, &row, &mask));
    }
    let diff = max_abs_diff(&got, &expected);
    assert!(diff <= 1e-5, "max abs diff {diff}");

    // The hidden states themselves, for the first input (tolerance 1e-4 as the README suggests).
    let first = ids(&Value::Array(vec![
        reference["inputs"][0]["input_ids"].clone()
    ]));
    let hidden = model.forward(&first, &[vec![1; first[0].len()]]).unwrap();
    let hidden: Vec<Vec<f32>> = hidden.squeeze(0).unwrap().to_vec2().unwrap();
    let diff = max_abs_diff(
        &hidden,
        &floats(&reference["outputs"]["last_hidden_state_input0_single"]),
    );
    assert!(diff <= 1e-4, "hidden states differ by {diff}");
}

#[test]
fn left_and_right_padded_batches_match_the_reference() {
    let (model, reference) = load();
    let single = floats(&reference["outputs"]["single_pooled_l2"]);
    for side in ["left", "right"] {
        let batch = &reference[format!("{side}_padded_batch")];
        let (ids, mask) = (ids(&batch["input_ids"]), ids(&batch["attention_mask"]));
        let got = embed(&model, &ids, &mask);
        let expected = floats(&reference["outputs"][format!("{side}_padded_batch_pooled_l2")]);
        let diff = max_abs_diff(&got, &expected);
        assert!(
            diff <= 1e-5,
            "{side}-padded batch differs from its reference by {diff}"
        );
        let diff = max_abs_diff(&got, &single);
        assert!(
            diff <= 1e-5,
            "{side}-padded batch differs from the single inputs by {diff}"
        );
    }
}

/// bf16 is what E5-Mistral runs in on a GPU: its vectors keep about three significant digits,
/// and a padded batch must still pool each row's own last token.
#[test]
fn bf16_weights_stay_close_to_the_reference_in_padded_batches() {
    let (model, reference) = load_in(DType::BF16);
    let single = floats(&reference["outputs"]["single_pooled_l2"]);
    for side in ["left", "right"] {
        let batch = &reference[format!("{side}_padded_batch")];
        let (ids, mask) = (ids(&batch["input_ids"]), ids(&batch["attention_mask"]));
        let got = embed(&model, &ids, &mask);
        let diff = max_abs_diff(&got, &single);
        let cosine = got
            .iter()
            .zip(&single)
            .map(|(a, b)| {
                let dot = |u: &[f32], v: &[f32]| u.iter().zip(v).map(|(x, y)| x * y).sum::<f32>();
                dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
            })
            .fold(f32::MAX, f32::min);
        eprintln!("bf16 {side}-padded batch: max abs diff {diff}, min cosine {cosine}");
        assert!(
            diff <= 0.05 && cosine >= 0.995,
            "{side}: diff {diff}, cosine {cosine}"
        );
    }
}

#[test]
fn the_pad_left_helper_reproduces_the_reference_left_batch() {
    let (_, reference) = load();
    let inputs = inputs(&reference);
    let (padded, mask) = ibex_embedder::e5::pad_left(&inputs, 2);
    assert_eq!(padded, ids(&reference["left_padded_batch"]["input_ids"]));
    assert_eq!(mask, ids(&reference["left_padded_batch"]["attention_mask"]));
}

#[test]
fn weights_with_the_model_prefix_load_too() {
    let dir = fixture();
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &common::device()).unwrap();
    let prefixed: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(name, t)| (format!("model.{name}"), t))
        .collect();
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vb = VarBuilder::from_tensors(prefixed, DType::F32, &common::device());
    let model = MistralModel::load(vb, &config).unwrap();
    let (reference_model, _) = load();
    let row = vec![vec![1u32, 450, 249, 2]];
    let mask = vec![vec![1u32; 4]];
    assert_eq!(
        embed(&model, &row, &mask),
        embed(&reference_model, &row, &mask)
    );
}

#[test]
fn a_folder_without_a_tokenizer_is_a_clear_error() {
    let error = match ibex_embedder::load_model(fixture().to_str().unwrap()) {
        Ok(_) => panic!("the fixture has no tokenizer.json"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("tokenizer.json"), "{error}");
}
