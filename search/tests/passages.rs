//! Passage scoring from the postings (each chunk's stored position range) gives exactly the
//! scores that analyzing the document's text gives, on texts that test the analyzer's edges.

use ibex_indexer::{ChunkSpan, Document, EmbeddedChunks, Index};
use ibex_search::{search, DocumentParts, Mode, PassageScorer, SearchRequest};
use serde_json::Map;

// This test writes multi-chunk documents itself and uses only part of the shared helpers.
#[allow(dead_code)]
mod common;

use common::{create, unit, DIMENSION, MODEL_ID};

/// Documents with titles, stop words, Unicode, hyphens, possessives, digits, an over-long word
/// (dropped by the analyzer) and repeated terms, cut into overlapping chunks (and one chunk that
/// ends inside a word).
fn documents() -> Vec<(Document, Vec<ChunkSpan>)> {
    let texts = [
        (
            "Jet Engines",
            "The engine of a jet is a gas turbine. Jets' engines, engine-driven pumps and the \
             turbine's blades: naïve Ärger over 1,200 °C. The engine again, and again the engine.",
        ),
        (
            "",
            "Rivers and lakes. A river's delta; river-borne silt. \
             Pneumonoultramicroscopicsilicovolcanoconiosisandmorewordsjoined is long. \
             Lakes, rivers, river river river.",
        ),
        (
            "Turbine blades in rivers",
            "Short text about turbines in hydro plants, where the river drives the turbine.",
        ),
    ];
    texts
        .iter()
        .enumerate()
        .map(|(n, (title, text))| {
            let length = text.chars().count();
            let step = 23 + n * 7;
            let mut spans: Vec<ChunkSpan> = (0..length)
                .step_by(step)
                .map(|start| ChunkSpan {
                    start,
                    end: (start + 2 * step).min(length),
                })
                .collect();
            spans.push(ChunkSpan { start: 5, end: 9 });
            (
                Document {
                    id: format!("doc-{n}"),
                    title: title.to_string(),
                    text: text.to_string(),
                    metadata: Map::new(),
                },
                spans,
            )
        })
        .collect()
}

fn build(dir: &std::path::Path) -> Index {
    let mut index = create(dir);
    let batch: Vec<(Document, EmbeddedChunks)> = documents()
        .into_iter()
        .map(|(doc, spans)| {
            let vectors: Vec<f32> = (0..spans.len())
                .flat_map(|i| unit([1.0, i as f32, 0.5, (i % 3) as f32]))
                .collect();
            assert_eq!(vectors.len(), spans.len() * DIMENSION);
            (doc, EmbeddedChunks { spans, vectors })
        })
        .collect();
    let mut writer = index.embedded_writer().unwrap();
    writer.upsert_embedded(MODEL_ID, &batch).unwrap();
    writer.commit().unwrap();
    writer.finish().unwrap();
    index.refresh().unwrap();
    index
}

#[test]
fn postings_and_text_analysis_score_every_chunk_alike() {
    let temp = tempfile::tempdir().unwrap();
    let index = build(temp.path());
    let queries = [
        "engine",
        "jet engines turbine",
        "river's delta",
        "Ärger naive 1,200",
        "the of a",
        "pneumonoultramicroscopicsilicovolcanoconiosisandmorewordsjoined rivers",
        "turbine blades river",
    ];
    let mut highlighted = 0;
    for (document, spans) in documents() {
        let (address, stored) = index.find_document(&document.id).unwrap().unwrap();
        assert_eq!(stored.chunk_positions.len(), spans.len());
        let mut analyzed = stored.clone();
        analyzed.chunk_positions.clear();
        for query in queries {
            let vector = unit([1.0, 0.3, 0.2, 0.1]);
            for dense in [None, Some(&vector[..])] {
                let scorer = PassageScorer::new(&index, query, dense, true, spans.len(), None);
                let from_postings = scorer.passages(address, &stored).unwrap();
                let from_text = scorer.passages(address, &analyzed).unwrap();
                assert_eq!(
                    from_postings, from_text,
                    "document {} query {query:?}",
                    document.id
                );
                highlighted += from_postings
                    .iter()
                    .filter(|p| !p.highlights.is_empty())
                    .count();
            }
        }
    }
    // The comparison covers highlights, not only empty lists.
    assert!(highlighted > 20, "{highlighted} passages with highlights");
}

#[test]
fn a_search_reads_its_hits_positions_in_one_pass_with_the_same_passages() {
    let temp = tempfile::tempdir().unwrap();
    let index = build(temp.path());
    // As a search reads them (text left in the store's cache), against whole documents.
    let found: Vec<_> = documents()
        .iter()
        .rev()
        .map(|(document, _)| {
            (
                index.find_hit(&document.id).unwrap().unwrap(),
                index.find_document(&document.id).unwrap().unwrap(),
            )
        })
        .collect();
    let hits: Vec<(_, DocumentParts)> = found
        .iter()
        .map(|((address, hit), _)| (*address, hit.into()))
        .collect();
    for query in ["engine river", "turbine blades", "jets' rivers 1,200"] {
        let scorer = PassageScorer::new(&index, query, None, true, 3, None);
        let together = scorer.passages_of_hits(&hits).unwrap();
        let alone: Vec<_> = found
            .iter()
            .map(|(_, (address, doc))| scorer.passages(*address, doc).unwrap())
            .collect();
        assert_eq!(together, alone, "query {query:?}");
        assert!(together.iter().flatten().any(|p| !p.highlights.is_empty()));
    }
}

#[test]
fn a_lexical_search_points_at_the_chunk_with_the_rare_word() {
    let temp = tempfile::tempdir().unwrap();
    let index = build(temp.path());
    let request = SearchRequest {
        mode: Mode::Bm25,
        passages: 1,
        ..SearchRequest::new("delta silt")
    };
    let results = search(&index, None, &request).unwrap();
    let best = &results.hits[0];
    assert_eq!(best.id, "doc-1");
    let passage = &best.passages[0];
    assert!(
        passage.text.contains("delta") && passage.text.contains("silt"),
        "{passage:?}"
    );
    assert!(!passage.highlights.is_empty());
}
