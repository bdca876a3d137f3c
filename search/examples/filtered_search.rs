//! Filtered dense search against an exact filtered scan and against post-filtering, in the same
//! run, at 50%, 10%, 1% and 0.1% selectivity: recall@10, hits returned and queries per second.
//!
//! The index: 50,000 one-chunk documents whose vectors are real all-MiniLM-L6-v2 embeddings
//! (English words, made by `bench/word_vectors.sh`), each with a metadata field `bucket` holding
//! a random integer in 0..1000, written by ibex's writer in 10 commits (so the index has graph
//! segments as a batch build leaves them). A filter `bucket < b` keeps b/1000 of the documents,
//! unrelated to the vectors (the hard case for a filtered graph walk: the allowed rows are
//! scattered over the whole graph).
//!
//! - ibex: `ibex_search::search` in dense mode with the filter (applied inside retrieval).
//! - exact: every allowed document's dot product, top 10 (the truth recall is measured against).
//! - post-filter k: unfiltered dense search for the top k, then the filter; what a vector store
//!   without filtered search returns (pgvector's HNSW path does this with ef_search = 40).
//!
//! Run: `bash bench/filtered_search.sh`

use std::collections::HashSet;
use std::time::Instant;

use ibex_indexer::{ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index, ModelInfo};
use ibex_search::{search, Filter, Mode, SearchRequest};
use rand::{Rng, SeedableRng};
use serde_json::json;

const DIMENSION: usize = 384;
const DOCUMENTS: usize = 50_000;
const QUERIES: usize = 200;
const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: filtered_search VECTORS_FILE (little-endian f32, 384 per vector)")?;
    let bytes = std::fs::read(&path)?;
    let vectors: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let available = vectors.len() / DIMENSION;
    if available < DOCUMENTS + QUERIES {
        return Err(format!(
            "{path} holds {available} vectors; {} needed",
            DOCUMENTS + QUERIES
        )
        .into());
    }
    let vector = |i: usize| &vectors[i * DIMENSION..(i + 1) * DIMENSION];
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let buckets: Vec<u32> = (0..DOCUMENTS).map(|_| rng.gen_range(0..1000)).collect();

    let temp = tempfile::tempdir()?;
    let model = ModelInfo {
        id: MODEL_ID.into(),
        source: "bench".into(),
        dimension: DIMENSION,
    };
    let mut index = Index::create(&temp.path().join("idx"), model, ChunkingParams::default())?;
    let started = Instant::now();
    {
        let mut writer = index.embedded_writer()?;
        for batch in (0..DOCUMENTS).collect::<Vec<_>>().chunks(DOCUMENTS / 10) {
            let docs: Vec<(Document, EmbeddedChunks)> = batch
                .iter()
                .map(|&i| {
                    let Ok(serde_json::Value::Object(metadata)) =
                        serde_json::to_value(json!({"bucket": buckets[i]}))
                    else {
                        unreachable!("an object literal")
                    };
                    let doc = Document {
                        id: format!("w{i:05}"),
                        title: String::new(),
                        text: format!("word {i}"),
                        metadata,
                    };
                    let chunks = EmbeddedChunks {
                        spans: vec![ChunkSpan {
                            start: 0,
                            end: doc.text.chars().count(),
                        }],
                        vectors: vector(i).to_vec(),
                    };
                    (doc, chunks)
                })
                .collect();
            writer.upsert_embedded(MODEL_ID, &docs)?;
            writer.commit()?;
        }
        writer.finish()?;
    }
    index.refresh()?;
    println!(
        "index: {} documents, {} vector segments, built in {:.0} s",
        index.num_documents(),
        index.num_segments(),
        started.elapsed().as_secs_f64()
    );
    println!("| selectivity | method | recall@10 | hits returned (mean) | QPS | QPS vs ibex |");
    println!("|---|---|---|---|---|---|");
    let queries: Vec<Vec<f32>> = (0..QUERIES)
        .map(|q| vector(DOCUMENTS + q).to_vec())
        .collect();
    for (label, below) in [("50%", 500u32), ("10%", 100), ("1%", 10), ("0.1%", 1)] {
        let filter = Filter::parse_cli(&format!("bucket<{below}"))?;
        // Exact filtered top 10: the truth.
        let truth: Vec<HashSet<String>> = queries
            .iter()
            .map(|q| {
                let mut scored: Vec<(f32, usize)> = (0..DOCUMENTS)
                    .filter(|&i| buckets[i] < below)
                    .map(|i| (vector(i).iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
                    .collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                scored
                    .iter()
                    .take(10)
                    .map(|&(_, i)| format!("w{i:05}"))
                    .collect()
            })
            .collect();
        let run = |filters: Vec<Filter>, top_k: usize, keep: &dyn Fn(&str) -> bool| {
            let started = Instant::now();
            let mut found = 0usize;
            let mut returned = 0usize;
            for (q, truth) in queries.iter().zip(&truth) {
                let mut request = SearchRequest::new("");
                request.mode = Mode::Dense;
                request.top_k = top_k;
                request.passages = 0;
                request.filters = filters.clone();
                request.vector = Some(q.clone());
                let hits = search(&index, None, &request).expect("search");
                let kept: Vec<String> = hits
                    .hits
                    .into_iter()
                    .map(|h| h.id)
                    .filter(|id| keep(id))
                    .take(10)
                    .collect();
                returned += kept.len();
                found += kept.iter().filter(|id| truth.contains(*id)).count();
            }
            let seconds = started.elapsed().as_secs_f64();
            let expected: usize = truth.iter().map(|t| t.len()).sum();
            (
                found as f64 / expected as f64,
                returned as f64 / QUERIES as f64,
                QUERIES as f64 / seconds,
            )
        };
        let allowed = |id: &str| {
            id[1..]
                .parse::<usize>()
                .map(|i| buckets[i] < below)
                .unwrap_or(false)
        };
        let (recall, hits, ibex_qps) = run(vec![filter], 10, &|_| true);
        println!("| {label} | ibex (filter inside retrieval) | {recall:.3} | {hits:.2} | {ibex_qps:.0} | 1.00 |");
        for fetch in [10usize, 100] {
            let (recall, hits, qps) = run(Vec::new(), fetch, &allowed);
            println!(
                "| {label} | post-filter of the top {fetch} | {recall:.3} | {hits:.2} | {qps:.0} | {:.2} |",
                qps / ibex_qps
            );
        }
    }
    Ok(())
}
