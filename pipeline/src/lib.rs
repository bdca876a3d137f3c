//! ibex's end-to-end pipelines: what the command line and the REST API both call.
//!
//! - [`answer`]: a question over an index → hybrid retrieval → information-bottleneck compression
//!   → a prompt with numbered passages → the LLM → an answer whose citations are checked against
//!   the context that was actually sent.
//! - [`recommend`]: a user's history of catalog items → candidates (embedding similarity of the
//!   items' texts, plus co-occurrence when interaction data was indexed) → the LLM orders them
//!   and explains each pick → an output constrained to real candidates.
//!
//! The pipelines hold no model or index of their own: callers pass the index snapshot, the
//! embedder, the compressor and the generator, so a server shares them across requests.

pub mod answer;
pub mod interactions;
pub mod recommend;
pub mod scoring;
pub mod support;

pub use answer::{answer, AnswerOptions, Citation, ContextEntry, RagAnswer};
pub use interactions::Interactions;
pub use recommend::{recommend, ItemCatalog, RecommendOptions, Recommendation, RecommendedItem};
pub use support::{check_support, Support};

/// Errors of the pipelines.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    /// Retrieval failed.
    Search(#[from] ibex_search::SearchError),
    #[error(transparent)]
    /// Reading the index failed.
    Index(#[from] ibex_indexer::IndexError),
    #[error(transparent)]
    /// The embedding model failed.
    Embedder(#[from] ibex_embedder::EmbedderError),
    #[error(transparent)]
    /// The compressor failed.
    Compress(#[from] ibex_compressor::CompressError),
    #[error(transparent)]
    /// The LLM failed.
    Generator(#[from] ibex_generator::GeneratorError),
    /// A request that cannot be served (unknown item, empty question...).
    #[error("{0}")]
    InvalidRequest(String),
    /// An interactions file that cannot be read.
    #[error("{path}:{line}: {reason}")]
    MalformedInteractions {
        /// The file.
        path: std::path::PathBuf,
        /// Its 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    #[error("{context}: {source}")]
    /// A file could not be read or written.
    Io {
        /// What was being done.
        context: String,
        /// The system's error.
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Milliseconds since `start`.
fn elapsed_ms(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
