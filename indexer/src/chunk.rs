//! Token-aware chunking of long documents.
//!
//! Retrieval models see a bounded number of tokens, and a long document mixes many topics, so
//! documents are cut into overlapping windows of the embedding model's own tokens. Each chunk keeps
//! its character offsets into the document text, so results can point at the exact passage.

use ibex_embedder::{Embedder, Result as EmbedResult, TextKind};
use serde::{Deserialize, Serialize};

use crate::corpus::Document;
use crate::error::{IndexError, Result};

/// How documents are cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkingParams {
    /// Tokens per chunk (of the embedding model's tokenizer, without special tokens).
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks, so that a passage cut by a boundary is whole in one.
    pub overlap_tokens: usize,
}

impl Default for ChunkingParams {
    fn default() -> Self {
        ChunkingParams {
            chunk_tokens: 200,
            overlap_tokens: 50,
        }
    }
}

impl ChunkingParams {
    /// Checks that the window advances (`overlap < chunk`).
    pub fn validate(&self) -> Result<()> {
        if self.chunk_tokens == 0 {
            return Err(IndexError::InvalidChunking(
                "chunk size must be at least 1 token".into(),
            ));
        }
        if self.overlap_tokens >= self.chunk_tokens {
            return Err(IndexError::InvalidChunking(format!(
                "overlap ({}) must be smaller than the chunk size ({})",
                self.overlap_tokens, self.chunk_tokens
            )));
        }
        Ok(())
    }
}

/// A chunk's span in its document's text, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSpan {
    /// Character offset of the chunk's first character.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
}

/// Cuts `text` into token windows. A text that fits in one window is one chunk spanning all of it.
pub fn chunk_document(
    text: &str,
    embedder: &dyn Embedder,
    params: ChunkingParams,
) -> EmbedResult<Vec<ChunkSpan>> {
    let tokens = embedder.tokenize(text)?;
    let total_chars = text.chars().count();
    // A text that fits in one window is one chunk; so is an empty text (a title-only document,
    // whose embedded text is then its title alone).
    if tokens.len() <= params.chunk_tokens {
        return Ok(vec![ChunkSpan {
            start: 0,
            end: total_chars,
        }]);
    }
    let stride = params.chunk_tokens - params.overlap_tokens;
    let mut spans = Vec::new();
    let mut first = 0;
    loop {
        let last = (first + params.chunk_tokens).min(tokens.len());
        let start = if first == 0 { 0 } else { tokens[first].start };
        let end = if last == tokens.len() {
            total_chars
        } else {
            tokens[last - 1].end
        };
        spans.push(ChunkSpan { start, end });
        if last == tokens.len() {
            break;
        }
        first += stride;
    }
    Ok(spans)
}

/// Returns the characters `start..end` of `text` (character offsets, not bytes).
pub fn slice_chars(text: &str, start: usize, end: usize) -> &str {
    let mut indices = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()));
    let byte_start = indices.nth(start).unwrap_or(text.len());
    let byte_end = if end > start {
        indices.nth(end - start - 1).unwrap_or(text.len())
    } else {
        byte_start
    };
    &text[byte_start..byte_end]
}

/// The text embedded for a chunk: the title takes part, so a chunk deep in a document still
/// carries what the document is about.
pub fn embedded_text(title: &str, chunk: &str) -> String {
    if title.trim().is_empty() {
        chunk.to_string()
    } else if chunk.trim().is_empty() {
        title.to_string()
    } else {
        format!("{title} {chunk}")
    }
}

/// A document's chunks and their vectors: what embedding a document produces, whether here or in
/// another process (the workers of a distributed build send these to the shard writers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedChunks {
    /// The chunks' spans in the document text, in order.
    pub spans: Vec<ChunkSpan>,
    /// Their vectors, one row per chunk, concatenated.
    pub vectors: Vec<f32>,
}

impl EmbeddedChunks {
    /// Length of one vector.
    pub fn dimension(&self) -> usize {
        self.vectors.len() / self.spans.len().max(1)
    }

    /// Checks that these chunks fit `doc` and an index of `dimension`: at least one chunk, each
    /// inside the text, one finite vector of that dimension per chunk.
    pub fn check(&self, doc: &Document, dimension: usize) -> Result<()> {
        let invalid = |reason: String| IndexError::InvalidEmbedding {
            id: doc.id.clone(),
            reason,
        };
        if self.spans.is_empty() {
            return Err(invalid("it has no chunks".into()));
        }
        let chars = doc.text.chars().count();
        if let Some(span) = self.spans.iter().find(|s| s.start > s.end || s.end > chars) {
            return Err(invalid(format!(
                "chunk {}..{} lies outside its text of {chars} characters",
                span.start, span.end
            )));
        }
        if self.vectors.len() != self.spans.len() * dimension {
            return Err(invalid(format!(
                "{} vector values for {} chunks: this index holds {dimension}-dimensional vectors",
                self.vectors.len(),
                self.spans.len()
            )));
        }
        if self.vectors.iter().any(|x| !x.is_finite()) {
            return Err(invalid(
                "a chunk vector holds a value that is not a finite number".into(),
            ));
        }
        Ok(())
    }
}

/// Cuts each document into chunks and embeds them in one batch (the model batches by length).
/// The vectors of a document are those [`crate::IndexWriter::upsert`] would store.
pub fn embed_chunks<'d>(
    embedder: &dyn Embedder,
    docs: impl IntoIterator<Item = &'d Document>,
    params: ChunkingParams,
) -> Result<Vec<EmbeddedChunks>> {
    let mut spans = Vec::new();
    let mut texts = Vec::new();
    for doc in docs {
        let doc_spans = chunk_document(&doc.text, embedder, params)?;
        texts.extend(
            doc_spans
                .iter()
                .map(|s| embedded_text(&doc.title, slice_chars(&doc.text, s.start, s.end))),
        );
        spans.push(doc_spans);
    }
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let dimension = embedder.dimension();
    let mut vectors = embedder.embed(&text_refs, TextKind::Document)?.into_iter();
    let mut out = Vec::with_capacity(spans.len());
    for doc_spans in spans {
        let mut flat = Vec::with_capacity(doc_spans.len() * dimension);
        for _ in &doc_spans {
            let vector = vectors.next().unwrap_or_default();
            if vector.len() != dimension {
                return Err(IndexError::WrongDimension {
                    expected: dimension,
                    got: vector.len(),
                });
            }
            flat.extend(vector);
        }
        out.push(EmbeddedChunks {
            spans: doc_spans,
            vectors: flat,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::slice_chars;

    #[test]
    fn slices_by_characters_not_bytes() {
        let text = "héllo wörld";
        assert_eq!(slice_chars(text, 0, 5), "héllo");
        assert_eq!(slice_chars(text, 6, 11), "wörld");
        assert_eq!(slice_chars(text, 6, 100), "wörld");
        assert_eq!(slice_chars(text, 3, 3), "");
    }
}
