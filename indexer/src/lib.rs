//! Batch indexing of document corpora into ibex's on-disk hybrid index.
//!
//! - [`corpus`]: readers for JSONL, BEIR folders and folders of text/markdown files;
//! - [`chunk`]: token-aware chunking with character offsets;
//! - [`Index`]: the index directory (tantivy BM25 and document store, vector segments with
//!   HNSW graphs, manifest), opened at its last commit;
//! - [`IndexWriter`]: upserts and deletes, made durable and visible by an atomic commit;
//! - [`bulk`]: whole corpora, validated, embedded in batches and committed every so often.
//!
//! The commit protocol and the derivation of tombstones are documented in [`writer`] and [`live`].

pub mod bulk;
pub mod catalog;
pub mod chunk;
pub mod chunk_terms;
pub mod corpus;
pub mod durable;
mod error;
pub mod hnsw;
mod index;
pub mod live;
mod manifest;
pub mod metadata;
mod migrate;
pub mod quantized;
mod schema;
pub mod snapshot;
mod stored;
pub mod vectors;
pub mod writer;

pub use bulk::{
    delete_documents, index_corpus, index_corpus_with_embedder, open_index, validate_corpus,
    CorpusCheck, IndexOptions, IndexProgress, IndexReport,
};
pub use catalog::{Catalog, IndexInfo, ModelLoader, SharedIndex, WriteReport};
pub use chunk::{
    chunk_document, embed_chunks, slice_chars, ChunkSpan, ChunkingParams, EmbeddedChunks,
};
pub use corpus::{read_corpus, read_json_lines, Document, DocumentLimits, DocumentStream};
pub use error::{IndexError, Result};
pub use index::{is_index, Index, StoredDocument};
pub use manifest::{
    InteractionsFile, Manifest, ModelInfo, FORMAT_VERSION, OLDEST_MIGRATABLE_FORMAT,
};
pub use migrate::{migrate, MigrationReport};
pub use quantized::VectorStorage;
pub use schema::{english_analyzer, english_stemmer, english_words_analyzer, Fields, ANALYZER};
pub use snapshot::{restore_snapshot, snapshot_info, take_snapshot, SnapshotInfo};
pub use stored::{StoredHit, StoredText};
pub use vectors::{ChunkHit, ChunkSet, SegmentMemory};
pub use writer::{content_hash, CommitStats, IndexWriter, UpsertStats};
