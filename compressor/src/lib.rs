//! Context compression for retrieval-augmented generation.
//!
//! Retrieved passages carry far more text than a question needs, and the noise costs an LLM both
//! tokens and accuracy. Following the information-bottleneck view of Zhu et al. (2024, "An
//! Information Bottleneck Perspective for Effective Noise Filtering on Retrieval-Augmented
//! Generation"), a compressor keeps the part X̃ of the passages X that keeps what the answer needs
//! (high I(X̃; Y)) while keeping as little of X as possible (low I(X̃; X)).
//!
//! - [`Compressor`]: the seam (query + ranked passages in, kept text and spans out);
//! - [`IbCompressor`]: the information-bottleneck selector over sentences, generic over how a
//!   sentence's usefulness is scored ([`UsefulnessScorer`]): today by embedding similarity
//!   ([`EmbeddingScorer`], the default: [`default_compressor`]), or by the gain in a language
//!   model's likelihood of the question, for the embedding's best candidates ([`LlmScorer`], as
//!   Zhu et al. score usefulness; the model comes through [`TokenLikelihood`]);
//! - [`split_sentences`]: sentence segmentation with character offsets.
//!
//! How well a compression keeps the answers is measured by `ibex-eval` (`ibex eval-compress`).

mod ib;
mod llm;
mod segment;

pub use ib::{EmbeddingScorer, IbCompressor, IbParams, TextScores, UsefulnessScorer};
pub use llm::{LlmScorer, LlmScoring, ScoringTarget, TokenLikelihood};
pub use segment::{split_sentences, SentenceSpan};

use std::sync::Arc;

use ibex_embedder::Embedder;
use serde::Serialize;

/// The default compressor: the information-bottleneck selector scoring sentences by their
/// embedding similarity to the query with `embedder` (the index's own model, so no second model
/// is loaded).
pub fn default_compressor(
    embedder: Arc<dyn Embedder>,
    params: IbParams,
) -> IbCompressor<EmbeddingScorer> {
    IbCompressor::new(EmbeddingScorer::new(embedder), params)
}

/// Errors of compression.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// The usefulness scorer (the embedder) failed.
    #[error(transparent)]
    Embedder(#[from] ibex_embedder::EmbedderError),
    /// An invalid request.
    #[error("invalid compression request: {0}")]
    InvalidRequest(String),
    /// The language model scoring usefulness failed (or cannot give log-probabilities).
    #[error("the language model scoring sentences failed: {0}")]
    Model(String),
}

/// Result alias of this crate.
pub type Result<T, E = CompressError> = std::result::Result<T, E>;

/// A retrieved passage to compress.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// The document it comes from.
    pub doc_id: String,
    /// The passage text.
    pub text: String,
    /// Character offset of `text` in its document, so kept spans point into the document.
    pub offset: usize,
}

/// A kept span of a passage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeptSpan {
    /// The document it comes from.
    pub doc_id: String,
    /// Character offsets into the document.
    pub start: usize,
    /// One past the last character, into the document.
    pub end: usize,
    /// The sentence's usefulness score.
    pub score: f32,
}

/// One sentence of the input, with its score and whether it was kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredSentence {
    /// The document the sentence comes from.
    pub doc_id: String,
    /// Character offset of its first character in the document.
    pub start: usize,
    /// One past its last character, in the document.
    pub end: usize,
    /// Its length in the scorer's tokens (the unit of budgets and rates).
    pub tokens: usize,
    /// The scorer's score of the sentence alone (its similarity to the query).
    pub similarity: f32,
    /// The usefulness the selector used (similarity blended with the passage's).
    pub usefulness: f32,
    /// Whether the selector kept it.
    pub kept: bool,
}

/// The result of a compression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compression {
    /// The kept sentences, in their original order (passage order, then position), joined by
    /// spaces, with a blank line between passages.
    pub text: String,
    /// The kept spans, in the same order as `text`.
    pub spans: Vec<KeptSpan>,
    /// Tokens kept.
    pub kept_tokens: usize,
    /// Tokens of the whole input (the denominator of the compression rate).
    pub total_tokens: usize,
    /// Every sentence of the input, in input order.
    pub sentences: Vec<ScoredSentence>,
}

impl Compression {
    /// Kept tokens / total tokens (0 for an empty input).
    pub fn rate(&self) -> f64 {
        if self.total_tokens == 0 {
            0.0
        } else {
            self.kept_tokens as f64 / self.total_tokens as f64
        }
    }
}

/// Compresses retrieved passages for a query.
pub trait Compressor {
    /// Keeps what `query` needs from `passages` (ranked best first), within `budget` tokens when
    /// given. The result may be empty when nothing is useful.
    fn compress(
        &self,
        query: &str,
        passages: &[Passage],
        budget: Option<usize>,
    ) -> Result<Compression>;
}
