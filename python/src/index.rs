//! `NativeIndex`: one ibex index directory, shared between Python threads.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ibex::indexer::bulk::load_embedder;
use ibex::indexer::{ModelInfo, SharedIndex};
use ibex::search::{ChunkAggregation, Fusion, MetadataFilter};
use ibex::{ChunkingParams, Document, Index, IndexOptions, Mode, SearchRequest};
use pyo3::prelude::*;

use crate::errors::{invalid, raise, to_py};

/// An open index. Searches run on a snapshot of the last commit, in parallel; writes are
/// serialized and durable when they return. `close` waits for the write in progress.
#[pyclass(frozen, module = "ibex._native")]
pub struct NativeIndex {
    path: PathBuf,
    /// `None` once closed.
    shared: RwLock<Option<Arc<SharedIndex>>>,
}

impl NativeIndex {
    fn new(path: PathBuf, index: Index, embedder: Arc<dyn ibex::Embedder>) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        NativeIndex {
            shared: RwLock::new(Some(Arc::new(SharedIndex::new(name, index, embedder)))),
            path,
        }
    }

    /// The open index, or the error of a closed one.
    fn shared(&self) -> PyResult<Arc<SharedIndex>> {
        let guard = match self.shared.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.clone().ok_or_else(|| {
            raise(
                "IndexClosedError",
                format!(
                    "the index at {} was closed: open it again with ibex.Index.open",
                    self.path.display()
                ),
            )
        })
    }
}

/// A passage as Python receives it: text, start, end, score, highlights.
type PassageTuple = (String, usize, usize, f32, Vec<(usize, usize)>);
/// A hit as Python receives it: id, score, title, metadata as JSON ("" when empty), passages.
type HitTuple = (String, f32, String, String, Vec<PassageTuple>);

fn json_error(what: &str, e: serde_json::Error) -> PyErr {
    invalid(format!("{what}: {e}"))
}

fn to_json(value: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| to_py(ibex::IbexError::Output(e.to_string())))
}

#[pymethods]
impl NativeIndex {
    /// Creates an empty index at `path` for `model` (default: all-MiniLM-L6-v2).
    #[staticmethod]
    #[pyo3(signature = (path, model=None, chunk_tokens=200, overlap=50, device="auto"))]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        model: Option<String>,
        chunk_tokens: usize,
        overlap: usize,
        device: &str,
    ) -> PyResult<Self> {
        let device = crate::parse_device(device)?;
        let spec = model.unwrap_or_else(|| ibex::DEFAULT_MODEL_ID.to_string());
        let chunking = ChunkingParams {
            chunk_tokens,
            overlap_tokens: overlap,
        };
        let dir = path.clone();
        let (index, embedder) = py
            .detach(move || -> ibex::Result<_> {
                chunking.validate()?;
                let embedder = load_embedder(&spec, Some(&device))?;
                let model: ModelInfo = ibex::indexer::catalog::model_info(&spec, embedder.as_ref());
                let index = Index::create(&dir, model, chunking)?;
                Ok((index, embedder))
            })
            .map_err(to_py)?;
        Ok(NativeIndex::new(path, index, embedder))
    }

    /// Opens the index at `path` with the model it was built with (or `model`, which must be
    /// that model).
    #[staticmethod]
    #[pyo3(signature = (path, model=None, device="auto"))]
    fn open(py: Python<'_>, path: PathBuf, model: Option<String>, device: &str) -> PyResult<Self> {
        let device = crate::parse_device(device)?;
        let dir = path.clone();
        let (index, embedder) = py
            .detach(move || ibex::indexer::open_index(&dir, model.as_deref(), Some(&device)))
            .map_err(to_py)?;
        Ok(NativeIndex::new(path, index, embedder))
    }

    /// The index directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Adds or replaces the documents of a JSON array; returns the write report as JSON.
    fn upsert_json(&self, py: Python<'_>, documents: &str) -> PyResult<String> {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(documents).map_err(|e| json_error("documents", e))?;
        let mut docs = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let doc = Document::from_json(value)
                .map_err(|problem| invalid(format!("document {i}: {}", problem_text(problem))))?;
            docs.push(doc);
        }
        let shared = self.shared()?;
        let report = py.detach(move || shared.upsert(docs)).map_err(to_py)?;
        to_json(&write_report(&report))
    }

    /// Deletes documents by id; returns the write report as JSON.
    fn delete(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<String> {
        let shared = self.shared()?;
        let report = py
            .detach(move || {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                shared.delete(&ids)
            })
            .map_err(to_py)?;
        to_json(&write_report(&report))
    }

    /// The stored document as JSON, or `None`.
    fn get_json(&self, py: Python<'_>, id: String) -> PyResult<Option<String>> {
        let shared = self.shared()?;
        let doc = py.detach(move || shared.get(&id)).map_err(to_py)?;
        doc.map(|d| {
            to_json(&serde_json::json!({
                "id": d.id,
                "title": d.title,
                "text": d.text,
                "metadata": d.metadata,
                "chunks": d.chunks.iter().map(|c| [c.start, c.end]).collect::<Vec<_>>(),
            }))
        })
        .transpose()
    }

    /// Live documents.
    fn __len__(&self) -> PyResult<usize> {
        Ok(self.shared()?.snapshot().num_documents())
    }

    /// Statistics as JSON (documents, chunks, model, chunking, generation, bytes on disk).
    fn info_json(&self, py: Python<'_>) -> PyResult<String> {
        let shared = self.shared()?;
        let info = py.detach(move || shared.info());
        to_json(&serde_json::json!({
            "path": self.path,
            "documents": info.documents,
            "chunks": info.chunks,
            "model": {"id": info.model.id, "source": info.model.source, "dimension": info.model.dimension},
            "chunking": {"chunk_tokens": info.chunking.chunk_tokens, "overlap_tokens": info.chunking.overlap_tokens},
            "generation": info.generation,
            "bytes_on_disk": info.bytes_on_disk,
        }))
    }

    /// Indexes a corpus (BEIR folder, JSONL file, folder of text files); `progress(done, total)`
    /// is called after each batch. Returns the report as JSON.
    #[pyo3(signature = (corpus, progress=None, commit_every=1000))]
    fn index_corpus(
        &self,
        py: Python<'_>,
        corpus: PathBuf,
        progress: Option<Py<PyAny>>,
        commit_every: usize,
    ) -> PyResult<String> {
        let shared = self.shared()?;
        let options = IndexOptions {
            commit_every,
            ..IndexOptions::default()
        };
        let report = py
            .detach(move || {
                shared.index_corpus(&corpus, &options, |p| {
                    if let Some(callback) = &progress {
                        // A failing callback (a closed notebook widget) must not stop indexing.
                        Python::attach(|py| {
                            let _ = callback.call1(py, (p.documents_done, p.documents_total));
                        });
                    }
                })
            })
            .map_err(to_py)?;
        to_json(&report)
    }

    /// Searches; `request` is a JSON object with the REST API's search fields. Returns the hits
    /// as tuples `(id, score, title, metadata JSON, [(text, start, end, score, highlights)])`:
    /// Python builds its `Hit`s from them without parsing the passages' text out of JSON (which
    /// measured a tenth of a BM25 search's time).
    fn search(&self, py: Python<'_>, request: &str) -> PyResult<Vec<HitTuple>> {
        let body: SearchBody =
            serde_json::from_str(request).map_err(|e| json_error("search request", e))?;
        let request = body.into_request()?;
        let shared = self.shared()?;
        let results = py
            .detach(move || {
                let snapshot = shared.snapshot();
                let embedder = (request.mode != Mode::Bm25 || request.vector.is_some())
                    .then(|| shared.embedder().clone());
                ibex::search::search(&snapshot, embedder.as_deref(), &request)
            })
            .map_err(to_py)?;
        results
            .hits
            .into_iter()
            .map(|hit| {
                let metadata = if hit.metadata.is_empty() {
                    String::new()
                } else {
                    to_json(&hit.metadata)?
                };
                let passages = hit
                    .passages
                    .into_iter()
                    .map(|p| {
                        let highlights = p.highlights.iter().map(|[a, b]| (*a, *b)).collect();
                        (p.text, p.start, p.end, p.score, highlights)
                    })
                    .collect();
                Ok((hit.id, hit.score, hit.title, metadata, passages))
            })
            .collect()
    }

    /// Answers a question from the index with the configured LLM (as `ibex ask`); `options` is
    /// a JSON object of `top_k`, `compress`, `budget`, `max_tokens`. Returns the answer as JSON.
    fn ask_json(&self, py: Python<'_>, question: String, options: &str) -> PyResult<String> {
        let options: AskOptions =
            serde_json::from_str(options).map_err(|e| json_error("ask options", e))?;
        let shared = self.shared()?;
        let answer = py
            .detach(move || -> ibex::Result<_> {
                let generator = ibex::generator::default_generator()?;
                let snapshot = shared.snapshot();
                let compressor = ibex::compress::default_compressor(
                    shared.embedder().clone(),
                    ibex::compressor::IbParams::default(),
                );
                let mut answer_options = ibex::pipeline::AnswerOptions {
                    compress: options.compress,
                    budget: options.budget,
                    ..Default::default()
                };
                if let Some(top_k) = options.top_k {
                    answer_options.top_k = top_k;
                }
                if let Some(max_tokens) = options.max_tokens {
                    answer_options.max_tokens = max_tokens;
                }
                Ok(ibex::pipeline::answer(
                    &snapshot,
                    shared.embedder().as_ref(),
                    &compressor,
                    generator.as_ref(),
                    &question,
                    &answer_options,
                    &mut |_| {},
                )?)
            })
            .map_err(to_py)?;
        to_json(&answer)
    }

    /// Recommends items of this catalog index for a history (as `ibex recommend`); returns the
    /// recommendation as JSON.
    #[pyo3(signature = (history, k=10, query=None, candidates=20, reasons=true))]
    fn recommend_json(
        &self,
        py: Python<'_>,
        history: Vec<String>,
        k: usize,
        query: Option<String>,
        candidates: usize,
        reasons: bool,
    ) -> PyResult<String> {
        let shared = self.shared()?;
        let dir = self.path.clone();
        let result = py
            .detach(move || -> ibex::Result<_> {
                let generator = ibex::generator::default_generator()?;
                let snapshot = shared.snapshot();
                let catalog = ibex::pipeline::recommend::ItemCatalog::from_index(&snapshot)?;
                let co = ibex::pipeline::Interactions::load_for_index(&dir)?.map(|i| {
                    let histories = i.histories();
                    ibex::pipeline::interactions::CoOccurrence::build(
                        histories.values().map(Vec::as_slice),
                    )
                });
                let options = ibex::pipeline::RecommendOptions {
                    k,
                    candidates,
                    with_reasons: reasons,
                    ..Default::default()
                };
                Ok(ibex::pipeline::recommend(
                    &catalog,
                    co.as_ref(),
                    Some(shared.embedder().as_ref()),
                    generator.as_ref(),
                    &history,
                    query.as_deref(),
                    &options,
                )?)
            })
            .map_err(to_py)?;
        to_json(&result)
    }

    /// Waits for the write in progress, then closes the index (later calls raise
    /// `IndexClosedError`). Closing twice is allowed.
    fn close(&self, py: Python<'_>) {
        let taken = match self.shared.write() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(shared) = taken {
            py.detach(move || shared.close());
        }
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        match self.shared.read() {
            Ok(guard) => guard.is_none(),
            Err(poisoned) => poisoned.into_inner().is_none(),
        }
    }
}

/// A document problem as a sentence.
fn problem_text(problem: ibex::indexer::corpus::DocumentProblem) -> String {
    use ibex::indexer::corpus::DocumentProblem;
    match problem {
        DocumentProblem::Malformed(why) => why,
        DocumentProblem::MissingText(id) => format!(
            "document {id:?} has no text: every document needs a non-empty \"text\" (or at least a \"title\")"
        ),
    }
}

fn write_report(report: &ibex::indexer::WriteReport) -> serde_json::Value {
    serde_json::json!({
        "added": report.added,
        "replaced": report.replaced,
        "unchanged": report.unchanged,
        "deleted": report.deleted,
        "chunks_embedded": report.chunks_embedded,
        "generation": report.generation,
        "documents": report.documents,
        "chunks": report.chunks,
    })
}

/// The search fields the Python `Index.search` sends (the REST API's names).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    #[serde(default)]
    query: String,
    mode: String,
    top_k: usize,
    passages: usize,
    #[serde(default)]
    filter: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    alpha: Option<f32>,
    #[serde(default)]
    vector: Option<Vec<f32>>,
}

impl SearchBody {
    fn into_request(self) -> PyResult<SearchRequest> {
        if self.top_k == 0 || self.top_k > ibex::search::MAX_TOP_K {
            return Err(invalid(format!(
                "top_k must be between 1 and {}, not {}",
                ibex::search::MAX_TOP_K,
                self.top_k
            )));
        }
        if self.query.trim().is_empty() && self.vector.is_none() {
            return Err(invalid("the query is empty: give a query or a vector"));
        }
        let mut request = SearchRequest::new(self.query);
        request.mode = self.mode.parse::<Mode>().map_err(to_py)?;
        request.top_k = self.top_k;
        request.passages = self.passages;
        request.filters =
            MetadataFilter::from_json_object(&self.filter.unwrap_or_default()).map_err(to_py)?;
        if let Some(alpha) = self.alpha {
            if !(0.0..=1.0).contains(&alpha) {
                return Err(invalid(format!("alpha must be in [0, 1], not {alpha}")));
            }
            request.fusion = Fusion::Weighted { alpha };
        }
        request.aggregation = ChunkAggregation::Max;
        request.candidates = request.candidates.max(self.top_k);
        request.vector = self.vector;
        Ok(request)
    }
}

/// The options of `Index.ask`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AskOptions {
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default = "yes")]
    compress: bool,
    #[serde(default)]
    budget: Option<usize>,
    #[serde(default)]
    max_tokens: Option<usize>,
}

fn yes() -> bool {
    true
}
