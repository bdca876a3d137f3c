//! Context compression over an index directory: `ibex compress`.

use std::path::Path;

pub use ibex_compressor::default_compressor;
use ibex_compressor::{Compression, Compressor, IbParams, Passage};
use ibex_embedder::Device;

use crate::{IbexError, Result};

/// Retrieves (hybrid, `top_k` documents, their best passages) from the index at `dir`, then
/// compresses for `query` with the index's own model on `device` (or `IBEX_DEVICE`'s).
pub fn compress_from_index(
    dir: &Path,
    query: &str,
    top_k: usize,
    budget: Option<usize>,
    params: IbParams,
    device: Option<&Device>,
) -> Result<Compression> {
    let (index, embedder) = ibex_indexer::open_index(dir, None, device)?;
    let (passages, _titles) =
        ibex_pipeline::answer::retrieve_passages(&index, embedder.as_ref(), query, top_k, 3)?;
    Ok(default_compressor(embedder, params).compress(query, &passages, budget)?)
}

/// Reads passages from a JSONL file of `{"doc_id" (or "id"/"_id"), "text", "offset"?}`; a line
/// without text is an error naming the file and line.
pub fn read_passages(path: &Path) -> Result<Vec<Passage>> {
    let mut passages = Vec::new();
    for (line, value) in ibex_indexer::read_json_lines(path)? {
        let bad = |why: &str| IbexError::Usage(format!("{}:{line}: {why}", path.display()));
        let doc_id = ["doc_id", "id", "_id"]
            .iter()
            .find_map(|k| value.get(*k))
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_else(|| format!("passage-{line}"));
        let text = value
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or_else(|| bad("missing \"text\""))?;
        let offset = value.get("offset").and_then(|o| o.as_u64()).unwrap_or(0) as usize;
        passages.push(Passage {
            doc_id,
            text: text.to_string(),
            offset,
        });
    }
    Ok(passages)
}
