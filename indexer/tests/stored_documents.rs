//! Stored documents read from the document store's bytes (ibex's own parse of tantivy's format)
//! are exactly what tantivy's deserializer reads, for every kind of document the schema holds;
//! a search hit's view of one agrees with the full document.

use ibex_indexer::bulk::write_embedded;
use ibex_indexer::{ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index, ModelInfo};
use tantivy::TantivyDocument;

const DIMENSION: usize = 4;

fn model() -> ModelInfo {
    ModelInfo {
        id: "test/synthetic-4".into(),
        source: "test".into(),
        dimension: DIMENSION,
    }
}

fn documents() -> Vec<(Document, EmbeddedChunks)> {
    let long = "Ärger über 1,200 °C — naïve 𝄞 words. ".repeat(1_500); // > one 16 KiB block
    let texts = [
        ("plain", "", "A short text.".to_string()),
        (
            "unicode",
            "Ωmega — naïve",
            "中文字 and 𝄞 symbols; ümlauts.".to_string(),
        ),
        ("long", "A long one", long),
        ("empty-ish", "Title only", " ".to_string()),
    ];
    texts
        .into_iter()
        .enumerate()
        .map(|(n, (id, title, text))| {
            let length = text.chars().count();
            let spans: Vec<ChunkSpan> = (0..length)
                .step_by(700)
                .map(|start| ChunkSpan {
                    start,
                    end: (start + 1_000).min(length),
                })
                .collect();
            let mut metadata = serde_json::Map::new();
            if n % 2 == 0 {
                metadata.insert("year".into(), serde_json::json!(1990 + n));
                metadata.insert("tags".into(), serde_json::json!(["a", "b"]));
                metadata.insert("nested".into(), serde_json::json!({"k": "v"}));
            }
            let vectors = vec![0.5; spans.len() * DIMENSION];
            (
                Document {
                    id: id.into(),
                    title: title.into(),
                    text,
                    metadata,
                },
                EmbeddedChunks { spans, vectors },
            )
        })
        .collect()
}

#[test]
fn documents_read_from_store_bytes_match_tantivys_reading() {
    let scratch = tempfile::tempdir().unwrap();
    let mut index = Index::create(
        &scratch.path().join("idx"),
        model(),
        ChunkingParams::default(),
    )
    .unwrap();
    write_embedded(&mut index, &model().id, documents()).unwrap();
    index.refresh().unwrap();
    for (document, chunks) in documents() {
        let (address, stored) = index.find_document(&document.id).unwrap().unwrap();
        let through_tantivy =
            index.stored_document(&index.searcher().doc::<TantivyDocument>(address).unwrap());
        assert_eq!(stored, through_tantivy, "document {}", document.id);
        assert_eq!(stored.text, document.text);
        assert_eq!(stored.title, document.title);
        assert_eq!(stored.metadata, document.metadata);
        assert_eq!(stored.chunks, chunks.spans);
        assert_eq!(stored.chunk_positions.len(), chunks.spans.len());

        let (hit_address, hit) = index.find_hit(&document.id).unwrap().unwrap();
        assert_eq!(hit_address, address);
        assert_eq!(hit.text.to_str(), Some(stored.text.as_str()));
        assert_eq!(hit.title, stored.title);
        assert_eq!(hit.metadata, stored.metadata);
        assert_eq!(hit.chunks, stored.chunks);
        assert_eq!(hit.chunk_base, stored.chunk_base);
        assert_eq!(hit.chunk_positions, stored.chunk_positions);
    }
    assert!(index.find_hit("absent").unwrap().is_none());
}
