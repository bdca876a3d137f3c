//! Indexing whole corpora: validate, then embed and write in batches, committing every so often.
//!
//! This is the batch path behind `ibex index`, the evaluations and the Python package's
//! `index_corpus`: the corpus is read once to find malformed documents before anything is
//! written, then read again and upserted in batches (unchanged documents are skipped by their
//! content hash), with a durable commit every [`IndexOptions::commit_every`] documents so that a
//! crash loses at most that much work and memory stays bounded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ibex_embedder::{Device, Embedder, DEFAULT_MODEL_ID};
use serde::Serialize;

use crate::catalog::WriteReport;
use crate::chunk::{ChunkingParams, EmbeddedChunks};
use crate::corpus::Document;
use crate::error::{IndexError, Result};
use crate::index::{is_index, Index};
use crate::quantized::VectorStorage;

/// Options of [`index_corpus`].
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Model for a new index (a local model folder or the default model's name). For an existing
    /// index, `None` means the model it was built with; a different model is refused.
    pub model: Option<String>,
    /// Where the model runs; `None` means the device `IBEX_DEVICE` names (default: auto).
    pub device: Option<Device>,
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
    /// How the index holds its vectors in memory ([`VectorStorage`]); `None` keeps the index's
    /// setting (f32 for a new index). Changing it rewrites no segment: the next commit records
    /// it, and every process that opens the index afterwards quantizes as it loads.
    pub vector_storage: Option<VectorStorage>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            model: None,
            device: None,
            chunking: ChunkingParams::default(),
            commit_every: 1000,
            batch_size: 64,
            graph_threshold: crate::vectors::HNSW_MIN_VECTORS,
            vector_storage: None,
        }
    }
}

/// Progress of an indexing run, reported after each batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexProgress {
    /// Documents the corpus holds (found by the validation pass).
    pub documents_total: usize,
    /// Documents upserted so far (embedded, or skipped as unchanged).
    pub documents_done: usize,
    /// Chunks embedded so far.
    pub chunks_embedded: usize,
}

/// What [`index_corpus`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexReport {
    /// Documents whose ids were new to the index.
    pub added: usize,
    /// Documents whose ids existed with other content (re-embedded).
    pub replaced: usize,
    /// Documents whose ids existed with the same content (skipped).
    pub unchanged: usize,
    /// Chunks embedded.
    pub chunks_embedded: usize,
    /// Durable commits made.
    pub commits: usize,
    /// Documents in the index afterwards.
    pub documents_in_index: usize,
    /// Chunks in the index afterwards.
    pub chunks_in_index: usize,
    /// Wall-clock seconds, validation included.
    pub seconds: f64,
    /// Ids of documents with neither title nor text: there is nothing to index, so they are
    /// skipped and reported rather than failing the whole corpus (real collections have some:
    /// Cranfield has two).
    pub skipped_empty: Vec<String>,
}

/// What [`validate_corpus`] found.
#[derive(Debug, Clone, Default)]
pub struct CorpusCheck {
    /// Documents that will be indexed.
    pub documents: usize,
    /// Ids of documents without title or text (skipped).
    pub empty: Vec<String>,
}

/// Loads the model `spec` on `device` (or on the device `IBEX_DEVICE` names).
pub fn load_embedder(spec: &str, device: Option<&Device>) -> Result<Arc<dyn Embedder>> {
    Ok(match device {
        Some(device) => ibex_embedder::load_model_on(spec, device)?,
        None => ibex_embedder::load_model(spec)?,
    })
}

/// Opens the index at `dir` and the model it was built with (or `model`, which must be the same),
/// on `device` (or the device `IBEX_DEVICE` names).
pub fn open_index(
    dir: &Path,
    model: Option<&str>,
    device: Option<&Device>,
) -> Result<(Index, Arc<dyn Embedder>)> {
    let index = Index::open(dir)?;
    let spec = model
        .map(str::to_string)
        .unwrap_or_else(|| index.model().source.clone());
    let embedder = load_embedder(&spec, device)?;
    index.check_embedder(embedder.as_ref())?;
    Ok((index, embedder))
}

fn open_or_create(dir: &Path, options: &IndexOptions) -> Result<(Index, Arc<dyn Embedder>)> {
    if is_index(dir) {
        return open_index(dir, options.model.as_deref(), options.device.as_ref());
    }
    let spec = options
        .model
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL_ID.to_string());
    let embedder = load_embedder(&spec, options.device.as_ref())?;
    let model = crate::catalog::model_info(&spec, embedder.as_ref());
    let storage = options.vector_storage.unwrap_or_default();
    let index = Index::create_with_storage(dir, model, options.chunking, storage)?;
    Ok((index, embedder))
}

/// Opens the index at `dir`, or creates it for `embedder`'s model, checking that an existing
/// index was built with that model.
fn open_or_create_for(
    dir: &Path,
    options: &IndexOptions,
    embedder: &dyn Embedder,
) -> Result<Index> {
    if is_index(dir) {
        let index = Index::open(dir)?;
        index.check_embedder(embedder)?;
        return Ok(index);
    }
    let spec = options
        .model
        .clone()
        .unwrap_or_else(|| embedder.model_id().to_string());
    let model = crate::catalog::model_info(&spec, embedder);
    let storage = options.vector_storage.unwrap_or_default();
    Index::create_with_storage(dir, model, options.chunking, storage)
}

/// Reads the whole corpus once without indexing, so that a malformed document anywhere is
/// reported before anything is written.
pub fn validate_corpus(corpus: &Path) -> Result<CorpusCheck> {
    let mut check = CorpusCheck::default();
    for doc in crate::read_corpus(corpus)? {
        match doc {
            Ok(_) => check.documents += 1,
            Err(IndexError::MissingText { id, .. }) => check.empty.push(id),
            Err(e) => return Err(e),
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

/// Indexes the corpus at `corpus` into an index the caller holds open (validated first, as
/// [`index_corpus`] does), embedding with `embedder`, which must be the index's model.
pub fn index_corpus_into(
    corpus: &Path,
    index: &mut Index,
    embedder: &dyn Embedder,
    options: &IndexOptions,
    progress: impl FnMut(IndexProgress),
) -> Result<IndexReport> {
    let started = Instant::now();
    let check = validate_corpus(corpus)?;
    index.check_embedder(embedder)?;
    index_checked_corpus(corpus, check, index, embedder, options, started, progress)
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
    if let Some(storage) = options.vector_storage {
        writer.set_vector_storage(storage);
    }
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
    let mut docs = crate::read_corpus(corpus)?;
    loop {
        let next = match docs.next() {
            Some(Err(IndexError::MissingText { .. })) => continue, // reported by the check above
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
    let (mut index, embedder) = open_index(dir, None, None)?;
    let mut writer = index.writer(embedder.as_ref())?;
    let deleted = writer.delete(ids);
    if writer.has_changes() {
        writer.commit()?;
    }
    writer.finish()?;
    Ok(deleted)
}

/// Writes documents embedded elsewhere (see [`crate::embed_chunks`]) into `index` and commits:
/// what the shard writers of a distributed build do with the workers' output. The last of
/// several documents with one id wins; unchanged documents are skipped, so writing a batch twice
/// (a retried task) changes nothing the second time. Durable when it returns.
pub fn write_embedded(
    index: &mut Index,
    model_id: &str,
    docs: Vec<(Document, EmbeddedChunks)>,
) -> Result<WriteReport> {
    let mut last: HashMap<String, usize> = HashMap::with_capacity(docs.len());
    for (i, (doc, _)) in docs.iter().enumerate() {
        last.insert(doc.id.clone(), i);
    }
    let docs: Vec<(Document, EmbeddedChunks)> = docs
        .into_iter()
        .enumerate()
        .filter(|(i, (doc, _))| last.get(&doc.id) == Some(i))
        .map(|(_, pair)| pair)
        .collect();
    let mut writer = index.embedded_writer()?;
    let stats = writer.upsert_embedded(model_id, &docs)?;
    if writer.has_changes() {
        writer.commit()?;
    }
    writer.finish()?;
    Ok(WriteReport {
        added: stats.added,
        replaced: stats.replaced,
        unchanged: stats.unchanged,
        chunks_embedded: stats.chunks,
        generation: index.manifest().generation,
        documents: index.num_documents(),
        chunks: index.num_chunks(),
        ..WriteReport::default()
    })
}
