//! Documents embedded elsewhere (the workers of a distributed build) written into an index: what
//! is refused, and that writing a batch twice (a retried task) changes nothing.

use ibex_indexer::bulk::write_embedded;
use ibex_indexer::{
    ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index, IndexError, ModelInfo,
};

const DIMENSION: usize = 4;

fn model() -> ModelInfo {
    ModelInfo {
        id: "test/synthetic-4".into(),
        source: "test".into(),
        dimension: DIMENSION,
    }
}

fn document(id: &str, text: &str) -> Document {
    Document {
        id: id.into(),
        title: String::new(),
        text: text.into(),
        metadata: serde_json::Map::new(),
    }
}

fn chunks(spans: &[(usize, usize)], dimension: usize) -> EmbeddedChunks {
    EmbeddedChunks {
        spans: spans
            .iter()
            .map(|&(start, end)| ChunkSpan { start, end })
            .collect(),
        vectors: vec![0.5; spans.len() * dimension],
    }
}

fn index() -> (tempfile::TempDir, Index) {
    let scratch = tempfile::tempdir().unwrap();
    let index = Index::create(
        &scratch.path().join("idx"),
        model(),
        ChunkingParams::default(),
    )
    .unwrap();
    (scratch, index)
}

#[test]
fn a_retried_batch_changes_nothing() {
    let (_scratch, mut index) = index();
    let batch = vec![
        (document("a", "alpha beta"), chunks(&[(0, 10)], DIMENSION)),
        (
            document("b", "gamma delta"),
            chunks(&[(0, 5), (6, 11)], DIMENSION),
        ),
    ];
    let first = write_embedded(&mut index, &model().id, batch.clone()).unwrap();
    assert_eq!(
        (
            first.added,
            first.chunks_embedded,
            first.documents,
            first.chunks
        ),
        (2, 3, 2, 3)
    );
    let again = write_embedded(&mut index, &model().id, batch).unwrap();
    assert_eq!((again.added, again.unchanged, again.documents), (0, 2, 2));
    assert_eq!(again.generation, first.generation, "nothing to commit");
    let reopened = Index::open(index.dir()).unwrap();
    assert_eq!((reopened.num_documents(), reopened.num_chunks()), (2, 3));
    assert_eq!(reopened.get_document("b").unwrap().unwrap().chunks.len(), 2);
}

#[test]
fn vectors_of_another_model_are_refused_and_nothing_is_written() {
    let (_scratch, mut index) = index();
    let batch = vec![(document("a", "alpha"), chunks(&[(0, 5)], DIMENSION))];
    let error = write_embedded(&mut index, "another/model", batch).unwrap_err();
    assert!(matches!(error, IndexError::ModelMismatch { .. }), "{error}");
    assert!(error.to_string().contains("another/model"), "{error}");
    assert_eq!(Index::open(index.dir()).unwrap().num_documents(), 0);
}

#[test]
fn malformed_embeddings_are_refused_with_the_document_named() {
    let (_scratch, mut index) = index();
    let cases: Vec<(EmbeddedChunks, &str)> = vec![
        (chunks(&[(0, 99)], DIMENSION), "outside its text"),
        (chunks(&[], DIMENSION), "no chunks"),
        (chunks(&[(0, 5)], DIMENSION + 1), "dimensional"),
        (
            EmbeddedChunks {
                vectors: vec![f32::NAN; DIMENSION],
                ..chunks(&[(0, 5)], DIMENSION)
            },
            "finite",
        ),
    ];
    for (bad, expected) in cases {
        let batch = vec![
            (document("good", "fine text"), chunks(&[(0, 9)], DIMENSION)),
            (document("bad", "alpha"), bad),
        ];
        let error = write_embedded(&mut index, &model().id, batch)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(expected) && error.contains("\"bad\""),
            "{error}"
        );
        assert_eq!(
            Index::open(index.dir()).unwrap().num_documents(),
            0,
            "{error}"
        );
    }
}
