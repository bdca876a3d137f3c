//! ibex: a retrieval engine for retrieval-augmented generation.
//!
//! This crate is the facade a RAG application embeds and the `ibex` command line is built on.
//! It wires the workspace's crates together:
//! - [`ibex_embedder`]: text to vectors (the [`Embedder`] trait, model loading and fetching);
//! - [`ibex_indexer`]: corpora, chunking, the durable hybrid index;
//! - [`ibex_search`]: BM25, dense and hybrid retrieval, passages, evaluation;
//! - [`ibex_compressor`]: the information-bottleneck context filter;
//! - [`ibex_generator`]: LLMs (the [`Generator`] trait, OpenAI-compatible servers, the embedded
//!   SmolLM2), prompts with checked citations, constrained item lists;
//! - [`ibex_pipeline`]: RAG answers and generative recommendation over an index.
//!
//! The functions here are the operations a user performs: [`index_corpus`], [`delete_documents`],
//! [`open_index`] then [`ibex_search::search`], and [`evaluate_beir`].

pub mod compress;
mod error;
pub mod quickstart;
pub mod rag;
pub mod recommend;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub use error::{IbexError, Result};
pub use ibex_compressor::{self as compressor, Compressor};
pub use ibex_embedder::{self as embedder, load_model, Embedder, TextKind, DEFAULT_MODEL_ID};
pub use ibex_generator::{self as generator, Generator};
pub use ibex_indexer::{self as indexer, ChunkingParams, Document, Index};
pub use ibex_pipeline as pipeline;
pub use ibex_search::{self as search, Mode, SearchRequest, SearchResults};
pub use ibex_web as web;

/// Where `ibex serve` keeps its indexes unless told otherwise: `$IBEX_HOME/data`.
pub fn default_data_dir() -> std::path::PathBuf {
    ibex_embedder::ibex_home().join("data")
}

/// Options of [`index_corpus`].
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Model for a new index (a local model folder or the default model's name). For an existing
    /// index, `None` means the model it was built with; a different model is refused.
    pub model: Option<String>,
    /// Chunking of a new index (an existing index keeps its own).
    pub chunking: ChunkingParams,
    /// Documents per commit: a crash loses at most this many documents' work, and memory stays
    /// bounded on large corpora.
    pub commit_every: usize,
    /// Documents embedded per call.
    pub batch_size: usize,
    /// Vector segments of at least this many chunks get an HNSW graph; smaller ones are scanned
    /// exactly (see BENCHMARKS.md for the measurement behind the default).
    pub graph_threshold: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            model: None,
            chunking: ChunkingParams::default(),
            commit_every: 1000,
            batch_size: 64,
            graph_threshold: ibex_indexer::vectors::HNSW_MIN_VECTORS,
        }
    }
}

/// Progress of an indexing run, reported after each batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexProgress {
    pub documents_total: usize,
    pub documents_done: usize,
    pub chunks_embedded: usize,
}

/// What [`index_corpus`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexReport {
    pub added: usize,
    pub replaced: usize,
    pub unchanged: usize,
    pub chunks_embedded: usize,
    pub commits: usize,
    pub documents_in_index: usize,
    pub chunks_in_index: usize,
    pub seconds: f64,
    /// Ids of documents with neither title nor text: there is nothing to index, so they are
    /// skipped and reported rather than failing the whole corpus (real collections have some:
    /// Cranfield has two).
    pub skipped_empty: Vec<String>,
}

/// Loads the model named by `spec` (see [`ibex_embedder::load_model`]).
pub fn open_embedder(spec: &str) -> Result<Arc<dyn Embedder>> {
    Ok(load_model(spec)?)
}

/// Opens the index at `dir` and the model it was built with (or `model`, which must be the same).
pub fn open_index(dir: &Path, model: Option<&str>) -> Result<(Index, Arc<dyn Embedder>)> {
    let index = Index::open(dir)?;
    let spec = model
        .map(str::to_string)
        .unwrap_or_else(|| index.model().source.clone());
    let embedder = open_embedder(&spec)?;
    index.check_embedder(embedder.as_ref())?;
    Ok((index, embedder))
}

fn open_or_create(dir: &Path, options: &IndexOptions) -> Result<(Index, Arc<dyn Embedder>)> {
    if ibex_indexer::is_index(dir) {
        return open_index(dir, options.model.as_deref());
    }
    let spec = options
        .model
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL_ID.to_string());
    let embedder = open_embedder(&spec)?;
    let model = ibex_indexer::catalog::model_info(&spec, embedder.as_ref());
    let index = Index::create(dir, model, options.chunking)?;
    Ok((index, embedder))
}

/// Opens the index at `dir`, or creates it for `embedder`'s model, checking that an existing
/// index was built with that model.
fn open_or_create_for(
    dir: &Path,
    options: &IndexOptions,
    embedder: &dyn Embedder,
) -> Result<Index> {
    if ibex_indexer::is_index(dir) {
        let index = Index::open(dir)?;
        index.check_embedder(embedder)?;
        return Ok(index);
    }
    let spec = options
        .model
        .clone()
        .unwrap_or_else(|| embedder.model_id().to_string());
    let model = ibex_indexer::catalog::model_info(&spec, embedder);
    Ok(Index::create(dir, model, options.chunking)?)
}

/// What [`validate_corpus`] found.
#[derive(Debug, Clone, Default)]
pub struct CorpusCheck {
    /// Documents that will be indexed.
    pub documents: usize,
    /// Ids of documents without title or text (skipped).
    pub empty: Vec<String>,
}

/// Reads the whole corpus once without indexing, so that a malformed document anywhere is
/// reported before anything is written.
pub fn validate_corpus(corpus: &Path) -> Result<CorpusCheck> {
    let mut check = CorpusCheck::default();
    for doc in ibex_indexer::read_corpus(corpus)? {
        match doc {
            Ok(_) => check.documents += 1,
            Err(ibex_indexer::IndexError::MissingText { id, .. }) => check.empty.push(id),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(check)
}

/// Indexes the corpus at `corpus` into `dir` (created if needed): new ids are added, existing
/// ids replaced, unchanged documents skipped. The corpus is validated first: on a malformed
/// document nothing is written.
pub fn index_corpus(
    corpus: &Path,
    dir: &Path,
    options: &IndexOptions,
    progress: impl FnMut(IndexProgress),
) -> Result<IndexReport> {
    let started = Instant::now();
    let check = validate_corpus(corpus)?;
    let (mut index, embedder) = open_or_create(dir, options)?;
    index_checked_corpus(
        corpus,
        check,
        &mut index,
        embedder.as_ref(),
        options,
        started,
        progress,
    )
}

/// [`index_corpus`] with an embedder the caller provides (a model loaded once for several
/// corpora, or an [`Embedder`] of the application's own) instead of one named in `options`.
pub fn index_corpus_with_embedder(
    corpus: &Path,
    dir: &Path,
    options: &IndexOptions,
    embedder: &dyn Embedder,
    progress: impl FnMut(IndexProgress),
) -> Result<IndexReport> {
    let started = Instant::now();
    let check = validate_corpus(corpus)?;
    let mut index = open_or_create_for(dir, options, embedder)?;
    index_checked_corpus(
        corpus, check, &mut index, embedder, options, started, progress,
    )
}

fn index_checked_corpus(
    corpus: &Path,
    check: CorpusCheck,
    index: &mut Index,
    embedder: &dyn Embedder,
    options: &IndexOptions,
    started: Instant,
    mut progress: impl FnMut(IndexProgress),
) -> Result<IndexReport> {
    let total = check.documents;
    let mut writer = index
        .writer(embedder)?
        .with_graph_threshold(options.graph_threshold);
    let mut report = IndexReport {
        skipped_empty: check.empty,
        ..IndexReport::default()
    };
    let mut state = IndexProgress {
        documents_total: total,
        ..Default::default()
    };
    let mut since_commit = 0;
    // A batch never spans a commit boundary, so commits happen every `commit_every` documents.
    let batch_size = options.batch_size.min(options.commit_every).max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut docs = ibex_indexer::read_corpus(corpus)?;
    loop {
        let next = match docs.next() {
            Some(Err(ibex_indexer::IndexError::MissingText { .. })) => continue, // reported by the check above
            other => other.transpose()?,
        };
        let done = next.is_none();
        if let Some(doc) = next {
            batch.push(doc);
        }
        if batch.len() >= batch_size || (done && !batch.is_empty()) {
            let stats = writer.upsert(&batch)?;
            report.added += stats.added;
            report.replaced += stats.replaced;
            report.unchanged += stats.unchanged;
            report.chunks_embedded += stats.chunks;
            since_commit += batch.len();
            state.documents_done += batch.len();
            state.chunks_embedded += stats.chunks;
            batch.clear();
            progress(state);
        }
        if (since_commit >= options.commit_every.max(1) || done) && writer.has_changes() {
            writer.commit()?;
            report.commits += 1;
            since_commit = 0;
        }
        if done {
            break;
        }
    }
    writer.finish()?;
    report.documents_in_index = index.num_documents();
    report.chunks_in_index = index.num_chunks();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Deletes documents by id from the index at `dir`; returns how many existed.
pub fn delete_documents(dir: &Path, ids: &[&str]) -> Result<usize> {
    let (mut index, embedder) = open_index(dir, None)?;
    let mut writer = index.writer(embedder.as_ref())?;
    let deleted = writer.delete(ids);
    if writer.has_changes() {
        writer.commit()?;
    }
    writer.finish()?;
    Ok(deleted)
}

/// Indexes the BEIR collection in `beir_dir` into `index_dir` (a no-op when the index already
/// holds it unchanged) and evaluates its judged queries with the settings of `settings` (mode,
/// fusion, aggregation; its query and depth are set per query).
pub fn evaluate_beir(
    beir_dir: &Path,
    index_dir: &Path,
    settings: &SearchRequest,
    options: &IndexOptions,
    run_file: Option<&Path>,
) -> Result<search::eval::EvalReport> {
    let files = search::eval::BeirFiles::locate(beir_dir)?;
    index_corpus(beir_dir, index_dir, options, |_| {})?;
    let (index, embedder) = open_index(index_dir, options.model.as_deref())?;
    let queries = search::eval::read_queries(&files.queries)?;
    let qrels = search::eval::read_qrels(&files.qrels)?;
    let mut request = settings.clone();
    request.top_k = 1000;
    request.candidates = 1000;
    let report = search::eval::run_evaluation(
        &queries,
        &qrels,
        &format!("ibex-{}", settings.mode),
        run_file,
        |text| {
            request.query = text.to_string();
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            let ranked = search::rank_documents(&index, Some(embedder.as_ref()), &request)?;
            Ok(ranked.into_iter().map(|d| (d.id, d.score)).collect())
        },
    )?;
    Ok(report)
}
