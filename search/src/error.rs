/// Everything that can go wrong while searching.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A search mode name ibex does not know.
    #[error("unknown search mode {0:?}: use bm25, dense or hybrid")]
    UnknownMode(String),

    /// A malformed filter; the message names the field and what was wrong.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),

    /// An invalid request field.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// Dense or hybrid search on a searcher built without an embedder.
    #[error("{0} search needs the index's embedding model, and none was loaded")]
    NoEmbedder(&'static str),

    #[error(transparent)]
    /// Reading the index failed.
    Index(#[from] ibex_indexer::IndexError),

    #[error(transparent)]
    /// The embedding model failed (embedding the query).
    Embedder(#[from] ibex_embedder::EmbedderError),

    #[error("lexical search failed: {0}")]
    /// The lexical index (tantivy) failed.
    Tantivy(#[from] tantivy::TantivyError),

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
pub type Result<T, E = SearchError> = std::result::Result<T, E>;
