use std::path::PathBuf;

/// Everything that can go wrong while reading a corpus or reading and writing an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A JSONL line that is not a valid document.
    #[error("{path}:{line}: {reason}")]
    MalformedLine {
        /// The corpus file.
        path: PathBuf,
        /// Its 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },

    /// A document whose text is missing or empty.
    #[error("document {id:?} ({path}) has no text: every document needs a non-empty \"text\" (or at least a \"title\")")]
    MissingText {
        /// The document's id.
        id: String,
        /// The corpus it comes from.
        path: PathBuf,
    },

    /// A file in a corpus folder that is not UTF-8 text.
    #[error("{path} is not valid UTF-8 text: convert it (for example with iconv) or remove it from the corpus folder")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },

    /// A corpus path ibex does not know how to read.
    #[error("cannot read corpus {path}: {reason}")]
    UnsupportedCorpus {
        /// The corpus path given.
        path: PathBuf,
        /// What ibex expected instead.
        reason: String,
    },

    /// The index directory does not exist or holds no ibex index.
    #[error("no ibex index at {path}: {reason}")]
    NotAnIndex {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },

    /// A document embedded elsewhere whose chunks or vectors do not fit it or the index.
    #[error("document {id:?}: {reason}")]
    InvalidEmbedding {
        /// The document's id.
        id: String,
        /// What is wrong.
        reason: String,
    },

    /// An index directory already exists where a new one should be created.
    #[error("cannot create an index at {path}: the directory exists and is not empty")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },

    /// The index was built with another embedding model than the one offered.
    #[error("index at {path} was built with {index_model} ({index_dimension} dims); this embedder is {embedder_model} ({embedder_dimension} dims). Search it with the model it was built with, or index into a new directory")]
    ModelMismatch {
        /// The index directory.
        path: PathBuf,
        /// The model the index was built with.
        index_model: String,
        /// Its vectors' dimension.
        index_dimension: usize,
        /// The model offered now.
        embedder_model: String,
        /// Its vectors' dimension.
        embedder_dimension: usize,
    },

    /// A vector of the wrong length.
    #[error("vector has {got} dimensions; this index holds {expected}-dimensional vectors")]
    WrongDimension {
        /// The index's dimension.
        expected: usize,
        /// The vector's.
        got: usize,
    },

    /// A file of the index failed its checksum or could not be parsed.
    #[error("index file {path} is corrupt: {reason} (the index cannot be read as it is: restore it from a snapshot or backup, or delete it and index the corpus again)")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What the check found.
        reason: String,
    },

    /// The index was written by an incompatible version of ibex.
    #[error(
        "index at {path} has format version {found}; this ibex reads version {supported}: {advice}"
    )]
    UnsupportedFormat {
        /// The manifest that states the version.
        path: PathBuf,
        /// The format version it has.
        found: u32,
        /// The version this build reads.
        supported: u32,
        /// What to do about it.
        advice: String,
    },

    /// Another process is writing to the index.
    #[error("index at {path} is being written by another process{holder} (it holds the index's writer lock): wait for it to finish, or send the documents to that process (an index served by `ibex serve` takes writes at POST /v1/indexes/NAME/documents)")]
    Locked {
        /// The index directory.
        path: PathBuf,
        /// Which process holds the lock, as it recorded itself (` (pid 12, ibex serve)`), or
        /// empty when unknown.
        holder: String,
    },

    /// A name that cannot name an index of a catalog.
    #[error("invalid index name {0:?}: use 1 to 64 ASCII letters, digits, '-' or '_', starting with a letter or digit")]
    InvalidName(String),

    /// No index of that name in the catalog.
    #[error("no index named {name:?}")]
    UnknownIndex {
        /// The name asked for.
        name: String,
    },

    /// An index of that name exists already.
    #[error("an index named {name:?} already exists: delete it first, or choose another name")]
    IndexExists {
        /// The name.
        name: String,
    },

    /// No snapshot of that name exists for the index.
    #[error(
        "index {name:?} has no snapshot {snapshot:?} (GET /v1/indexes/{name}/snapshots lists them)"
    )]
    UnknownSnapshot {
        /// The index's name.
        name: String,
        /// The snapshot asked for.
        snapshot: String,
    },

    /// A write stopped before its commit because the process is shutting down.
    #[error("the write to index {name:?} was abandoned before it committed because the server is shutting down: nothing of it was committed; send it again once the server is back")]
    WriteAbandoned {
        /// The index's name.
        name: String,
    },

    /// The catalog is shutting down and takes no more writes.
    #[error("index {name:?} is closed and takes no more writes (the server is shutting down, or the application closed it)")]
    Closed {
        /// The index's name.
        name: String,
    },

    /// An invalid chunking setting.
    #[error("invalid chunking parameters: {0}")]
    InvalidChunking(String),

    /// The embedder failed.
    #[error(transparent)]
    Embedder(#[from] ibex_embedder::EmbedderError),

    /// The lexical index (tantivy) failed.
    #[error("lexical index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),

    /// Input/output error, with what ibex was doing.
    #[error("{context}: {source}")]
    Io {
        /// What ibex was doing (the file and operation).
        context: String,
        #[source]
        /// The system's error.
        source: std::io::Error,
    },
}

impl IndexError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        IndexError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
