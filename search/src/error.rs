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

    /// A cursor that expired, was closed after its last page, or never existed.
    #[error("no such cursor: it expired ({0} s unused), ended with its last page, or belongs to another index; start the search again")]
    CursorNotFound(u64),

    /// The store of cursors is full.
    #[error("{0} cursors are open, the most this server keeps: page to the end of some, or wait for idle ones to expire")]
    TooManyCursors(usize),

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
