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

pub use answer::{answer, AnswerOptions, Citation, ContextEntry, RagAnswer};
pub use interactions::Interactions;
pub use recommend::{recommend, ItemCatalog, RecommendOptions, Recommendation, RecommendedItem};

/// Errors of the pipelines.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Search(#[from] ibex_search::SearchError),
    #[error(transparent)]
    Index(#[from] ibex_indexer::IndexError),
    #[error(transparent)]
    Embedder(#[from] ibex_embedder::EmbedderError),
    #[error(transparent)]
    Compress(#[from] ibex_compressor::CompressError),
    #[error(transparent)]
    Generator(#[from] ibex_generator::GeneratorError),
    /// A request that cannot be served (unknown item, empty question...).
    #[error("{0}")]
    InvalidRequest(String),
    /// An interactions file that cannot be read.
    #[error("{path}:{line}: {reason}")]
    MalformedInteractions {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Milliseconds since `start`.
fn elapsed_ms(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
