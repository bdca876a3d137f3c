//! A collection split into shards ranks as one index holding every document: BM25 with the
//! collection's statistics, dense lists merged exactly, fusion once. The documents are written
//! with the same vectors into both layouts (embedded elsewhere, as a distributed build does), so
//! no model is needed.

use std::sync::Arc;

use ibex_indexer::bulk::write_embedded;
use ibex_indexer::{ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index, ModelInfo};
use ibex_search::{
    hits, merge_lists, rank, ranked_lists, search, DocScore, Mode, SearchRequest, TermStatistics,
};

const DIMENSION: usize = 8;

fn model() -> ModelInfo {
    ModelInfo {
        id: "test/synthetic-8".into(),
        source: "test".into(),
        dimension: DIMENSION,
    }
}

/// A deterministic unit vector per (document, chunk).
fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v: Vec<f32> = (0..DIMENSION)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

const WORDS: [&str; 12] = [
    "wing",
    "flow",
    "shock",
    "boundary",
    "layer",
    "heat",
    "laminar",
    "turbulent",
    "pressure",
    "nozzle",
    "vortex",
    "drag",
];

/// Documents of varied length and vocabulary, each with one or two chunks.
fn corpus() -> Vec<(Document, EmbeddedChunks)> {
    (0..60u64)
        .map(|i| {
            let words: Vec<&str> = (0..(5 + i % 17))
                .map(|j| WORDS[((i * 7 + j * j * 3) % WORDS.len() as u64) as usize])
                .collect();
            let text = words.join(" ");
            let chars = text.chars().count();
            let spans = if i % 3 == 0 {
                vec![
                    ChunkSpan {
                        start: 0,
                        end: chars / 2,
                    },
                    ChunkSpan {
                        start: chars / 2,
                        end: chars,
                    },
                ]
            } else {
                vec![ChunkSpan {
                    start: 0,
                    end: chars,
                }]
            };
            let vectors = (0..spans.len() as u64)
                .flat_map(|c| vector(i * 10 + c))
                .collect();
            let document = Document {
                id: format!("d{i:02}"),
                title: String::new(),
                text,
                metadata: serde_json::Map::new(),
            };
            (document, EmbeddedChunks { spans, vectors })
        })
        .collect()
}

fn build(dir: &std::path::Path, docs: Vec<(Document, EmbeddedChunks)>) -> Index {
    let mut index = Index::create(dir, model(), ChunkingParams::default()).unwrap();
    write_embedded(&mut index, &model().id, docs).unwrap();
    index
}

fn ids(list: &[DocScore]) -> Vec<(String, String)> {
    list.iter()
        .map(|d| (d.id.clone(), format!("{:.5}", d.score)))
        .collect()
}

#[test]
fn shards_with_collection_statistics_rank_as_one_index() {
    let scratch = tempfile::tempdir().unwrap();
    let single = build(&scratch.path().join("one"), corpus());
    let shards: Vec<Index> = (0..3)
        .map(|s| {
            let part = corpus()
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % 3 == s)
                .map(|(_, d)| d)
                .collect();
            build(&scratch.path().join(format!("shard-{s}")), part)
        })
        .collect();
    let queries = [
        "laminar boundary layer",
        "shock wing drag drag",
        "nozzle heat",
    ];
    for query in queries {
        let parts: Vec<TermStatistics> = shards
            .iter()
            .map(|s| TermStatistics::of_query(s, query).unwrap())
            .collect();
        let statistics = Arc::new(TermStatistics::merge(&parts));
        assert_eq!(
            *statistics,
            TermStatistics::of_query(&single, query).unwrap()
        );
        for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
            let mut request = SearchRequest::new(query);
            request.mode = mode;
            request.top_k = 8;
            if mode != Mode::Bm25 {
                request.vector = Some(vector(query.len() as u64 + 1000));
            }
            let expected = search(&single, None, &request).unwrap();
            request.statistics = Some(statistics.clone());
            let lists = shards
                .iter()
                .map(|s| ranked_lists(s, None, &request).unwrap())
                .collect();
            let ranked = rank(&request, &merge_lists(&request, lists));
            let expected_ranked: Vec<DocScore> = expected
                .hits
                .iter()
                .map(|h| DocScore {
                    id: h.id.clone(),
                    score: h.score,
                })
                .collect();
            assert_eq!(ids(&ranked), ids(&expected_ranked), "{mode} {query:?}");
            // Passages come from the shard owning each hit, weighed with the statistics too.
            for (hit, expected) in ranked.iter().zip(&expected.hits) {
                let owner = shards
                    .iter()
                    .find(|s| s.get_document(&hit.id).unwrap().is_some())
                    .unwrap();
                let found = hits(owner, None, &request, vec![hit.clone()]).unwrap();
                let got: Vec<_> = found[0]
                    .passages
                    .iter()
                    .map(|p| (p.start, p.end, format!("{:.5}", p.score)))
                    .collect();
                let want: Vec<_> = expected
                    .passages
                    .iter()
                    .map(|p| (p.start, p.end, format!("{:.5}", p.score)))
                    .collect();
                assert_eq!(got, want, "{mode} {query:?} {}", hit.id);
            }
        }
    }
}

#[test]
fn local_statistics_rank_differently() {
    let scratch = tempfile::tempdir().unwrap();
    let single = build(&scratch.path().join("one"), corpus());
    let part: Vec<_> = corpus().into_iter().take(12).collect();
    let shard = build(&scratch.path().join("part"), part);
    let query = "vortex nozzle";
    let mut request = SearchRequest::new(query);
    request.mode = Mode::Bm25;
    let local = ranked_lists(&shard, None, &request).unwrap();
    request.statistics = Some(Arc::new(TermStatistics::of_query(&single, query).unwrap()));
    let global = ranked_lists(&shard, None, &request).unwrap();
    assert_ne!(
        ids(&local.bm25),
        ids(&global.bm25),
        "IDF from 12 of 60 documents differs"
    );
}

#[test]
fn statistics_that_do_not_cover_the_query_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let single = build(&scratch.path().join("one"), corpus());
    let mut request = SearchRequest::new("laminar vortex");
    request.mode = Mode::Bm25;
    request.statistics = Some(Arc::new(
        TermStatistics::of_query(&single, "laminar").unwrap(),
    ));
    let error = ranked_lists(&single, None, &request)
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"vortex\""), "{error}");
}
