//! Small synthetic indexes for the search tests: documents of one chunk each whose vectors the
//! test chooses (4 dimensions), written by ibex's own writer, so the right answers are known.

use ibex_indexer::{ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index, ModelInfo};
use serde_json::{Map, Value};

/// Length of the test vectors.
pub const DIMENSION: usize = 4;
/// The model id the test indexes record.
pub const MODEL_ID: &str = "test/synthetic-4";

/// A document of one chunk: its whole text, with a unit vector.
pub struct Doc {
    pub id: String,
    pub text: String,
    pub metadata: Value,
    pub vector: [f32; DIMENSION],
}

/// `v` scaled to unit length.
pub fn unit(v: [f32; DIMENSION]) -> [f32; DIMENSION] {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.map(|x| x / norm)
}

/// A document whose vector is `vector` made unit.
pub fn doc(id: &str, text: &str, metadata: Value, vector: [f32; DIMENSION]) -> Doc {
    Doc {
        id: id.into(),
        text: text.into(),
        metadata,
        vector: unit(vector),
    }
}

/// An empty index of the synthetic model in `dir`.
pub fn create(dir: &std::path::Path) -> Index {
    let model = ModelInfo {
        id: MODEL_ID.into(),
        source: "test".into(),
        dimension: DIMENSION,
    };
    Index::create(dir, model, ChunkingParams::default()).unwrap()
}

/// Upserts `docs` (one chunk each) and deletes `delete` in one commit.
pub fn write(index: &mut Index, docs: &[Doc], delete: &[&str]) {
    let batch: Vec<(Document, EmbeddedChunks)> = docs
        .iter()
        .map(|d| {
            let metadata: Map<String, Value> = d.metadata.as_object().cloned().unwrap_or_default();
            (
                Document {
                    id: d.id.clone(),
                    title: String::new(),
                    text: d.text.clone(),
                    metadata,
                },
                EmbeddedChunks {
                    spans: vec![ChunkSpan {
                        start: 0,
                        end: d.text.chars().count(),
                    }],
                    vectors: d.vector.to_vec(),
                },
            )
        })
        .collect();
    let mut writer = index.embedded_writer().unwrap();
    if !batch.is_empty() {
        writer.upsert_embedded(MODEL_ID, &batch).unwrap();
    }
    writer.delete(delete);
    writer.commit().unwrap();
    writer.finish().unwrap();
    index.refresh().unwrap();
}
