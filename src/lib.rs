//! ibex: a retrieval engine for retrieval-augmented generation.
//!
//! This crate is the facade a RAG application embeds and the `ibex` command line is built on.
//! It wires the workspace's crates together:
//! - [`ibex_embedder`]: text to vectors (the [`Embedder`] trait, model loading and fetching);
//! - [`ibex_indexer`]: corpora, chunking, the durable hybrid index, whole-corpus indexing;
//! - [`ibex_search`]: BM25, dense and hybrid retrieval, fusion, passages;
//! - [`ibex_compressor`]: the information-bottleneck context filter;
//! - [`ibex_generator`]: LLMs (the [`Generator`] trait, OpenAI-compatible servers, the embedded
//!   SmolLM2), prompts with checked citations, constrained item lists;
//! - [`ibex_pipeline`]: RAG answers and generative recommendation over an index;
//! - [`ibex_eval`]: every evaluation (retrieval, compression, RAG, recommendation);
//! - [`ibex_web`] (the `server` feature, on by default): the REST API and search page.
//!
//! The functions here are the operations a user performs: [`index_corpus`], [`delete_documents`],
//! [`open_index`] then [`ibex_search::search`], [`rag::ask`], [`recommend::recommend_from_index`],
//! [`compress::compress_from_index`].
//!
//! With `default-features = false` the crate is the library alone: no HTTP server, no async
//! runtime (what the Python package links).

pub mod compress;
mod error;
pub mod quickstart;
pub mod rag;
pub mod recommend;

use std::path::Path;
use std::sync::Arc;

pub use error::{IbexError, Result};
pub use ibex_compressor::{self as compressor, Compressor};
pub use ibex_embedder::{
    self as embedder, load_model, Device, Embedder, TextKind, DEFAULT_MODEL_ID,
};
pub use ibex_eval as eval;
pub use ibex_generator::{self as generator, Generator};
pub use ibex_indexer::{
    self as indexer, delete_documents, index_corpus, index_corpus_with_embedder, validate_corpus,
    ChunkingParams, CorpusCheck, Document, Index, IndexOptions, IndexProgress, IndexReport,
};
pub use ibex_pipeline as pipeline;
pub use ibex_search::{self as search, Mode, SearchRequest, SearchResults};
#[cfg(feature = "server")]
pub use ibex_web as web;

/// Where `ibex serve` keeps its indexes unless told otherwise: `$IBEX_HOME/data`.
pub fn default_data_dir() -> std::path::PathBuf {
    ibex_embedder::ibex_home().join("data")
}

/// Loads the model named by `spec` (see [`ibex_embedder::load_model`]) on the device
/// `IBEX_DEVICE` names; [`ibex_embedder::load_model_on`] takes the device as a value.
pub fn open_embedder(spec: &str) -> Result<Arc<dyn Embedder>> {
    Ok(load_model(spec)?)
}

/// Opens the index at `dir` and the model it was built with (or `model`, which must be the same),
/// on the device `IBEX_DEVICE` names; [`ibex_indexer::open_index`] takes the device as a value.
pub fn open_index(dir: &Path, model: Option<&str>) -> Result<(Index, Arc<dyn Embedder>)> {
    Ok(ibex_indexer::open_index(dir, model, None)?)
}
