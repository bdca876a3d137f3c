//! The long-context and LLM-based embedders end to end through the `Embedder` trait, on the
//! weights of the test fixtures (../shared/fixtures) with a word-level tokenizer: E5-Mistral
//! (instruction, BOS/EOS, left padding) and M2-BERT (pad to the maximum, whole documents as one
//! chunk).

mod common;

use ibex::{Embedder, TextKind};

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn e5_folder() -> tempfile::TempDir {
    common::fixture_with_word_tokenizer(
        "e5-mistral-tiny",
        1000,
        3,
        &[("<unk>", 0), ("<s>", 1), ("</s>", 2)],
        "<s> $A",
    )
}

fn m2_folder() -> tempfile::TempDir {
    common::fixture_with_word_tokenizer(
        "m2-bert-tiny",
        1024,
        103,
        &[("[UNK]", 100), ("[PAD]", 0), ("[CLS]", 101), ("[SEP]", 102)],
        "[CLS] $A [SEP]",
    )
}

#[test]
fn e5_mistral_formats_tokenizes_appends_eos_and_pools() {
    let folder = e5_folder();
    let embedder = ibex::open_embedder(folder.path().to_str().unwrap()).unwrap();
    assert_eq!((embedder.dimension(), embedder.normalized()), (64, true));
    // A document: BOS, its tokens, the appended EOS; the reference vector of input 0.
    let document = embedder
        .embed(&["w215 w169 w748 w871 w417"], TextKind::Document)
        .unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::shared("fixtures/e5-mistral-tiny/reference.json"))
            .unwrap(),
    )
    .unwrap();
    let expected: Vec<f32> = reference["outputs"]["single_pooled_l2"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert!(max_abs_diff(&document, &[expected]) <= 1e-5);
    // A query gets the instruction, so the same words embed differently.
    let query = embedder
        .embed(&["w215 w169 w748 w871 w417"], TextKind::Query)
        .unwrap();
    assert!(max_abs_diff(&query, &document) > 1e-3);
    // Mixed lengths in one call (left-padded batches) give each text its own vector.
    let texts = [
        "w450 w249",
        "w671 w573 w441 w38 w380 w231 w512 w380 w35 w630 w837",
        "w215",
    ];
    let together = embedder.embed(&texts, TextKind::Document).unwrap();
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .flat_map(|t| embedder.embed(&[t], TextKind::Document).unwrap())
        .collect();
    assert!(max_abs_diff(&together, &alone) <= 1e-5);
    let spans = embedder.tokenize("w10 w200").unwrap();
    assert_eq!(
        spans.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
        [(0, 3), (4, 8)]
    );
}

#[test]
fn m2_bert_pads_to_the_maximum_and_reproduces_the_reference() {
    let folder = m2_folder();
    let embedder = ibex::open_embedder(folder.path().to_str().unwrap()).unwrap();
    assert_eq!((embedder.dimension(), embedder.max_tokens()), (64, 254));
    // Input 0 of the reference is [CLS] 319 1005 1013 [SEP], padded to 256.
    let vector = embedder
        .embed(&["w319 w1005 w1013"], TextKind::Query)
        .unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::shared("fixtures/m2-bert-tiny/reference.json")).unwrap(),
    )
    .unwrap();
    let expected: Vec<f32> = reference["outputs"]["pad_to_max_seq_len"]["pooled_l2_single"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert!(max_abs_diff(&vector, std::slice::from_ref(&expected)) <= 1e-4);
    // Documents embed alike (no prompts), and batching does not change a vector.
    let batch = embedder
        .embed(&["w500 w600", "w319 w1005 w1013"], TextKind::Document)
        .unwrap();
    assert!(max_abs_diff(&batch[1..], std::slice::from_ref(&expected)) <= 1e-4);
    // A shorter padding is an explicit choice, and it changes the vector.
    let short = ibex::embedder::M2BertEmbedder::load_with_id(
        folder.path(),
        "m2",
        &candle_core::Device::Cpu,
    )
    .unwrap()
    .with_pad_to(64);
    let shorter = short.embed(&["w319 w1005 w1013"], TextKind::Query).unwrap();
    assert!(max_abs_diff(&shorter, &[expected]) > 1e-3);
}

#[test]
fn m2_bert_indexes_a_whole_document_as_one_chunk() {
    let folder = m2_folder();
    let embedder = ibex::open_embedder(folder.path().to_str().unwrap()).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("docs.jsonl");
    // Two documents of 240 words: one chunk each when chunks may be as long as the context.
    let long = |offset: u32| {
        (0..240)
            .map(|i| format!("w{}", 103 + (i * 7 + offset) % 900))
            .collect::<Vec<_>>()
            .join(" ")
    };
    common::write_jsonl(&corpus, &[("a", "", &long(0)), ("b", "", &long(450))]);
    let options = ibex::IndexOptions {
        model: Some(folder.path().to_str().unwrap().to_string()),
        chunking: ibex::ChunkingParams {
            chunk_tokens: embedder.max_tokens(),
            overlap_tokens: 0,
        },
        ..ibex::IndexOptions::default()
    };
    let index_dir = temp.path().join("index");
    let report = ibex::index_corpus(&corpus, &index_dir, &options, |_| {}).unwrap();
    assert_eq!((report.documents_in_index, report.chunks_in_index), (2, 2));
    let (index, embedder) = ibex::open_index(&index_dir, None).unwrap();
    let mut request = ibex::SearchRequest::new(long(450));
    request.mode = ibex::Mode::Dense;
    let results = ibex::search::search(&index, Some(embedder.as_ref()), &request).unwrap();
    assert_eq!(results.hits[0].id, "b");
}
