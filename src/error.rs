/// Errors of the ibex facade: the library crates' errors, and bad command-line usage.
#[derive(Debug, thiserror::Error)]
pub enum IbexError {
    #[error(transparent)]
    Embedder(#[from] ibex_embedder::EmbedderError),
    #[error(transparent)]
    Index(#[from] ibex_indexer::IndexError),
    #[error(transparent)]
    Search(#[from] ibex_search::SearchError),
    #[error(transparent)]
    Compress(#[from] ibex_compressor::CompressError),
    #[error(transparent)]
    Server(#[from] ibex_web::ServerError),
    #[error(transparent)]
    Generator(#[from] ibex_generator::GeneratorError),
    #[error(transparent)]
    Pipeline(#[from] ibex_pipeline::PipelineError),
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = IbexError> = std::result::Result<T, E>;
