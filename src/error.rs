/// Errors of the ibex facade: the library crates' errors, and bad command-line usage.
#[derive(Debug, thiserror::Error)]
pub enum IbexError {
    #[error(transparent)]
    /// Loading a model or embedding failed.
    Embedder(#[from] ibex_embedder::EmbedderError),
    #[error(transparent)]
    /// Reading or writing an index failed.
    Index(#[from] ibex_indexer::IndexError),
    #[error(transparent)]
    /// Searching failed.
    Search(#[from] ibex_search::SearchError),
    #[error(transparent)]
    /// Compressing failed.
    Compress(#[from] ibex_compressor::CompressError),
    #[cfg(feature = "server")]
    #[error(transparent)]
    /// The server could not start or failed.
    Server(#[from] ibex_web::ServerError),
    #[error(transparent)]
    /// An evaluation failed.
    Eval(Box<ibex_eval::EvalError>),
    #[error(transparent)]
    /// The LLM failed.
    Generator(#[from] ibex_generator::GeneratorError),
    #[error(transparent)]
    /// The answer or recommendation pipeline failed.
    Pipeline(#[from] ibex_pipeline::PipelineError),
    #[error("{0}")]
    /// A command line or input the user must correct.
    Usage(String),
    #[error("{0}")]
    /// A result could not be written out.
    Output(String),
    #[error("{context}: {source}")]
    /// A file could not be read or written.
    Io {
        /// What was being done.
        context: String,
        #[source]
        /// The system's error.
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = IbexError> = std::result::Result<T, E>;

/// Boxed: an evaluation error can hold any other crate's error, and the box keeps every `Result`
/// of this crate small.
impl From<ibex_eval::EvalError> for IbexError {
    fn from(error: ibex_eval::EvalError) -> Self {
        IbexError::Eval(Box::new(error))
    }
}
