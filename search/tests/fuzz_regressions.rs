//! Regression tests for what the fuzz targets (`fuzz/`, run with `fuzz/run.sh`) found in search:
//! request values that sized an allocation. Each test replays the finding through the public
//! API and checks that it is now a clear error or a bounded answer.

use ibex_indexer::{ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index, ModelInfo};
use ibex_search::{search, Fusion, Mode, SearchError, SearchRequest, MAX_CANDIDATES};

const DIMENSION: usize = 8;
const MODEL_ID: &str = "test/synthetic-8";

fn unit_vector(seed: usize) -> Vec<f32> {
    let raw: Vec<f32> = (0..DIMENSION)
        .map(|i| ((seed * 7 + i * 13) as f32 * 0.37).sin() + 0.01)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    raw.into_iter().map(|x| x / norm).collect()
}

/// 30 documents of two chunks each, written as one segment that carries an HNSW graph.
fn index_with_graph(dir: &std::path::Path) -> Index {
    let model = ModelInfo {
        id: MODEL_ID.into(),
        source: "test".into(),
        dimension: DIMENSION,
    };
    let mut index = Index::create(dir, model, ChunkingParams::default()).unwrap();
    let docs: Vec<(Document, EmbeddedChunks)> = (0..30)
        .map(|n| {
            let text = format!("glacier retreat number {n} along the river delta");
            let chars = text.chars().count();
            let document = Document {
                id: format!("doc-{n}"),
                title: String::new(),
                text,
                metadata: serde_json::Map::new(),
            };
            let chunks = EmbeddedChunks {
                spans: vec![
                    ChunkSpan {
                        start: 0,
                        end: chars / 2,
                    },
                    ChunkSpan {
                        start: chars / 2,
                        end: chars,
                    },
                ],
                vectors: [unit_vector(2 * n), unit_vector(2 * n + 1)].concat(),
            };
            (document, chunks)
        })
        .collect();
    {
        let mut writer = index.embedded_writer().unwrap().with_graph_threshold(16);
        writer.upsert_embedded(MODEL_ID, &docs).unwrap();
        writer.commit().unwrap();
        writer.finish().unwrap();
    }
    index.refresh().unwrap();
    index
}

fn invalid_request_message(result: ibex_search::Result<ibex_search::SearchResults>) -> String {
    match result {
        Err(SearchError::InvalidRequest(message)) => message,
        other => panic!("expected an invalid-request error, got {other:?}"),
    }
}

/// fuzz/search_request, oom-3031b58e: a hybrid search with `candidates` near 10^9 made tantivy's
/// top-k collector allocate 13.7 GB before it looked at a document.
#[test]
fn a_huge_candidate_count_is_an_error_not_an_allocation() {
    let temp = tempfile::tempdir().unwrap();
    let index = index_with_graph(&temp.path().join("index"));
    let mut request = SearchRequest::new("glacier");
    request.mode = Mode::Hybrid;
    request.vector = Some(unit_vector(3));
    request.candidates = 0x3c3c_3c3c;
    let message = invalid_request_message(search(&index, None, &request));
    assert!(message.contains("candidates"), "{message}");

    request.candidates = MAX_CANDIDATES;
    let results = search(&index, None, &request).expect("the largest allowed depth searches");
    assert_eq!(results.hits.len(), request.top_k);
}

/// The reciprocal rank fusion constant is 1 / (k + rank): a negative or non-finite k gave
/// infinite or reversed scores.
#[test]
fn a_negative_or_non_finite_fusion_constant_is_an_error() {
    let temp = tempfile::tempdir().unwrap();
    let index = index_with_graph(&temp.path().join("index"));
    for k in [-1.0, f32::NAN, f32::INFINITY] {
        let mut request = SearchRequest::new("glacier");
        request.vector = Some(unit_vector(3));
        request.fusion = Fusion::ReciprocalRank { k };
        let message = invalid_request_message(search(&index, None, &request));
        assert!(message.contains("fusion constant"), "k = {k}: {message}");
    }
}

/// The HNSW beam is at least k: a library caller's huge k sized the graph search's heaps (an
/// overflow of `ef * 2`, or an allocation of k entries). Now k beyond the rows gives every row.
#[test]
fn vector_search_with_a_huge_k_returns_every_row_once() {
    let temp = tempfile::tempdir().unwrap();
    let index = index_with_graph(&temp.path().join("index"));
    for k in [usize::MAX / 2, usize::MAX] {
        let hits = index.search_vectors(&unit_vector(5), k, None).unwrap();
        assert_eq!(hits.len(), 60, "k = {k}");
    }
}
