//! What a sharded index (`ibex.ray`) needs from the engine, and nothing Ray-specific: documents
//! cut and embedded in one process and written in another ([`NativeShardWriter`]), BM25
//! statistics summed over the shards, and the shards' ranked lists merged and ranked by the
//! library's own fusion ([`rank_shard_lists`]), so a sharded search ranks as one index would.

use std::path::PathBuf;
use std::sync::Mutex;

use ibex::indexer::bulk::write_embedded;
use ibex::indexer::{ChunkSpan, EmbeddedChunks, ModelInfo};
use ibex::search::{RankedLists, TermStatistics};
use ibex::{ChunkingParams, Document, Index};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{invalid, to_py};
use crate::index::{problem_text, to_json, SearchBody};

/// A document as the workers of a distributed build send it: the document's fields and its
/// chunks' spans (`[[start, end], ...]`, characters); the vectors travel beside it as bytes.
#[derive(serde::Deserialize)]
struct EmbeddedRow {
    #[serde(flatten)]
    document: serde_json::Value,
    spans: Vec<[usize; 2]>,
}

/// Parses the documents of `docs_json` and pairs them with their vectors (little-endian
/// `float32` bytes, one string per document).
fn embedded_documents(
    docs_json: &str,
    vectors: &[Bound<'_, PyBytes>],
) -> PyResult<Vec<(Document, EmbeddedChunks)>> {
    let rows: Vec<EmbeddedRow> =
        serde_json::from_str(docs_json).map_err(|e| invalid(format!("documents: {e}")))?;
    if rows.len() != vectors.len() {
        return Err(invalid(format!(
            "{} documents but {} vector blocks: send one block per document",
            rows.len(),
            vectors.len()
        )));
    }
    let mut out = Vec::with_capacity(rows.len());
    for (i, (row, bytes)) in rows.into_iter().zip(vectors).enumerate() {
        let document = Document::from_json(row.document)
            .map_err(|problem| invalid(format!("document {i}: {}", problem_text(problem))))?;
        let bytes = bytes.as_bytes();
        if bytes.len() % 4 != 0 {
            return Err(invalid(format!(
                "document {:?}: its vectors are {} bytes, not whole float32 values",
                document.id,
                bytes.len()
            )));
        }
        let vectors = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let spans = row
            .spans
            .iter()
            .map(|&[start, end]| ChunkSpan { start, end })
            .collect();
        out.push((document, EmbeddedChunks { spans, vectors }));
    }
    Ok(out)
}

/// Cuts documents (a JSON array) into chunks with `chunk_tokens`/`overlap` and embeds them with
/// `embedder`: returns each document's spans as JSON and its vectors as bytes, what
/// [`NativeShardWriter::write`] takes.
pub fn embed_documents(
    py: Python<'_>,
    embedder: std::sync::Arc<dyn ibex::Embedder>,
    docs_json: &str,
    chunk_tokens: usize,
    overlap: usize,
) -> PyResult<Vec<(String, Py<PyBytes>)>> {
    let values: Vec<serde_json::Value> =
        serde_json::from_str(docs_json).map_err(|e| invalid(format!("documents: {e}")))?;
    let mut docs = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        docs.push(
            Document::from_json(value)
                .map_err(|problem| invalid(format!("document {i}: {}", problem_text(problem))))?,
        );
    }
    let params = ChunkingParams {
        chunk_tokens,
        overlap_tokens: overlap,
    };
    let embedded = py
        .detach(move || -> ibex::Result<_> {
            params.validate()?;
            Ok(ibex::indexer::embed_chunks(
                embedder.as_ref(),
                docs.iter(),
                params,
            )?)
        })
        .map_err(to_py)?;
    embedded
        .into_iter()
        .map(|chunks| {
            let spans: Vec<[usize; 2]> = chunks.spans.iter().map(|s| [s.start, s.end]).collect();
            let bytes: Vec<u8> = chunks
                .vectors
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            Ok((to_json(&spans)?, PyBytes::new(py, &bytes).unbind()))
        })
        .collect()
}

/// The writer of one shard of a distributed build: an ordinary ibex index directory written
/// from documents embedded elsewhere. Each [`write`](NativeShardWriter::write) is one durable
/// commit; writing a batch twice (a retried task) leaves the shard as it was.
#[pyclass(frozen, module = "ibex._native")]
pub struct NativeShardWriter {
    path: PathBuf,
    index: Mutex<Option<Index>>,
}

#[pymethods]
impl NativeShardWriter {
    /// Opens the index at `path`, creating it for `model` (a JSON object with `id`, `source`
    /// and `dimension`) and the chunking when the directory is new or empty; an existing index
    /// must have been built with that model.
    #[staticmethod]
    fn open_or_create(
        py: Python<'_>,
        path: PathBuf,
        model_json: &str,
        chunk_tokens: usize,
        overlap: usize,
    ) -> PyResult<Self> {
        let model: ModelInfo =
            serde_json::from_str(model_json).map_err(|e| invalid(format!("model: {e}")))?;
        let dir = path.clone();
        let index = py
            .detach(move || -> ibex::Result<Index> {
                let chunking = ChunkingParams {
                    chunk_tokens,
                    overlap_tokens: overlap,
                };
                chunking.validate()?;
                if ibex::indexer::is_index(&dir) {
                    let index = Index::open(&dir)?;
                    let built = index.model();
                    if built.id != model.id || built.dimension != model.dimension {
                        return Err(ibex::indexer::IndexError::ModelMismatch {
                            path: dir,
                            index_model: built.id.clone(),
                            index_dimension: built.dimension,
                            embedder_model: model.id,
                            embedder_dimension: model.dimension,
                        }
                        .into());
                    }
                    Ok(index)
                } else {
                    Ok(Index::create(&dir, model, chunking)?)
                }
            })
            .map_err(to_py)?;
        Ok(NativeShardWriter {
            path,
            index: Mutex::new(Some(index)),
        })
    }

    /// Upserts embedded documents (a JSON array of documents with their `spans`, and one bytes
    /// block of vectors per document) made by `model_id`, and commits; returns the write report
    /// as JSON.
    fn write(
        &self,
        py: Python<'_>,
        model_id: String,
        docs_json: &str,
        vectors: Vec<Bound<'_, PyBytes>>,
    ) -> PyResult<String> {
        let docs = embedded_documents(docs_json, &vectors)?;
        let report = py
            .detach(|| -> ibex::Result<_> {
                let mut guard = match self.index.lock() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let index = guard.as_mut().ok_or_else(|| {
                    ibex::IbexError::Usage(format!(
                        "the shard writer of {} was closed",
                        self.path.display()
                    ))
                })?;
                Ok(write_embedded(index, &model_id, docs)?)
            })
            .map_err(to_py)?;
        to_json(&report)
    }

    /// The shard's counts and commit generation, as JSON.
    fn info_json(&self) -> PyResult<String> {
        let guard = match self.index.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let index = guard
            .as_ref()
            .ok_or_else(|| invalid("the shard writer was closed"))?;
        to_json(&serde_json::json!({
            "documents": index.num_documents(),
            "chunks": index.num_chunks(),
            "generation": index.manifest().generation,
        }))
    }

    /// Releases the index (its files stay as committed).
    fn close(&self) {
        let mut guard = match self.index.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.take();
    }
}

/// Sums the BM25 statistics (JSON objects) of disjoint shards.
#[pyfunction]
pub fn merge_term_statistics(parts: Vec<String>) -> PyResult<String> {
    let parsed = parts
        .iter()
        .map(|p| serde_json::from_str::<TermStatistics>(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("BM25 statistics: {e}")))?;
    to_json(&TermStatistics::merge(&parsed))
}

/// Ranks the collection from its shards' ranked lists (JSON, as `NativeIndex.ranked_lists`
/// answers): the lists merged by score and cut at the request's depth, then cut to `top_k` or
/// fused as one index's search would. Returns `(id, score)` best first.
#[pyfunction]
pub fn rank_shard_lists(request: &str, parts: Vec<String>) -> PyResult<Vec<(String, f32)>> {
    let body: SearchBody =
        serde_json::from_str(request).map_err(|e| invalid(format!("search request: {e}")))?;
    let request = body.into_request()?;
    let lists = parts
        .iter()
        .map(|p| serde_json::from_str::<RankedLists>(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("ranked lists: {e}")))?;
    let merged = ibex::search::merge_lists(&request, lists);
    Ok(ibex::search::rank(&request, &merged)
        .into_iter()
        .map(|d| (d.id, d.score))
        .collect())
}
