use std::path::PathBuf;

/// Everything that can go wrong while evaluating: a data file that is missing or malformed (named
/// with its line), or an error of the part being evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A malformed line of an evaluation file.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A folder that is not the collection it was given as.
    #[error("{0}")]
    NotACollection(String),
    /// An invalid evaluation setting.
    #[error("invalid evaluation setting: {0}")]
    InvalidSetting(String),
    /// The embedding model failed.
    #[error(transparent)]
    Embedder(#[from] ibex_embedder::EmbedderError),
    /// Indexing or reading the index failed.
    #[error(transparent)]
    Index(#[from] ibex_indexer::IndexError),
    /// Retrieval failed.
    #[error(transparent)]
    Search(#[from] ibex_search::SearchError),
    /// The compressor failed.
    #[error(transparent)]
    Compress(#[from] ibex_compressor::CompressError),
    /// The LLM failed.
    #[error(transparent)]
    Generator(#[from] ibex_generator::GeneratorError),
    /// The answer or recommendation pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] ibex_pipeline::PipelineError),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl EvalError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EvalError {
        let context = context.into();
        move |source| EvalError::Io { context, source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
