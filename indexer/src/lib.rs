//! Batch indexing of document corpora into ibex's on-disk hybrid index.
//!
//! - [`corpus`]: readers for JSONL, BEIR folders and folders of text/markdown files;
//! - [`chunk`]: token-aware chunking with character offsets;
//! - [`Index`]: the index directory (tantivy BM25 and document store, vector segments with
//!   HNSW graphs, manifest), opened at its last commit;
//! - [`IndexWriter`]: upserts and deletes, made durable and visible by an atomic commit.
//!
//! The commit protocol and the derivation of tombstones are documented in [`writer`] and [`live`].

pub mod catalog;
pub mod chunk;
pub mod corpus;
pub mod durable;
mod error;
pub mod hnsw;
mod index;
pub mod live;
mod manifest;
mod schema;
pub mod vectors;
pub mod writer;

pub use catalog::{Catalog, IndexInfo, ModelLoader, SharedIndex, WriteReport};
pub use chunk::{chunk_document, slice_chars, ChunkSpan, ChunkingParams};
pub use corpus::{read_corpus, Document, DocumentStream};
pub use error::{IndexError, Result};
pub use index::{is_index, Index, StoredDocument};
pub use manifest::{Manifest, ModelInfo, FORMAT_VERSION};
pub use schema::{english_analyzer, english_stemmer, english_words_analyzer, Fields, ANALYZER};
pub use vectors::{ChunkHit, ChunkSet};
pub use writer::{content_hash, CommitStats, IndexWriter, UpsertStats};
