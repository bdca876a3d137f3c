//! `NativeIndex`: one ibex index directory, shared between Python threads.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ibex::indexer::bulk::load_embedder;
use ibex::indexer::{ModelInfo, SharedIndex};
use ibex::search::{ChunkAggregation, Filter, Fusion};
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

pub(crate) fn to_json(value: &impl serde::Serialize) -> PyResult<String> {
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
        to_json(&report)
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
        to_json(&report)
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

    /// Statistics as JSON (documents, chunks, model, chunking, generation, bytes on disk, how
    /// the vectors are held in memory and what they hold).
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
            "vector_storage": info.vector_storage.as_str(),
            "vector_memory": info.vector_memory,
        }))
    }

    /// Indexes a corpus (BEIR folder, JSONL file, folder of text files); `progress(done, total)`
    /// is called after each batch. Returns the report as JSON.
    #[pyo3(signature = (corpus, progress=None, commit_every=1000, vector_storage=None))]
    fn index_corpus(
        &self,
        py: Python<'_>,
        corpus: PathBuf,
        progress: Option<Py<PyAny>>,
        commit_every: usize,
        vector_storage: Option<String>,
    ) -> PyResult<String> {
        let shared = self.shared()?;
        let vector_storage = match vector_storage {
            Some(name) => Some(name.parse().map_err(invalid)?),
            None => None,
        };
        let options = IndexOptions {
            commit_every,
            vector_storage,
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
    /// measured a tenth of a BM25 search's time); and the rest of the results (offset, total,
    /// groups, facets) as JSON.
    fn search(&self, py: Python<'_>, request: &str) -> PyResult<(Vec<HitTuple>, String)> {
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
        let summary = to_json(&serde_json::json!({
            "offset": results.offset,
            "total": results.total,
            "groups": results.groups,
            "facets": results.facets,
        }))?;
        Ok((hit_tuples(results.hits)?, summary))
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
    #[pyo3(signature = (history, k=10, query=None, candidates=20, reasons=true, llm_weight=0.0))]
    #[allow(clippy::too_many_arguments)]
    fn recommend_json(
        &self,
        py: Python<'_>,
        history: Vec<String>,
        k: usize,
        query: Option<String>,
        candidates: usize,
        reasons: bool,
        llm_weight: f32,
    ) -> PyResult<String> {
        if !(llm_weight.is_finite() && llm_weight >= 0.0) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "llm_weight must be a number of at least 0, not {llm_weight}"
            )));
        }
        let shared = self.shared()?;
        let result = py
            .detach(move || -> ibex::Result<_> {
                let generator = ibex::generator::default_generator()?;
                let snapshot = shared.snapshot();
                let catalog = ibex::pipeline::recommend::ItemCatalog::from_index(&snapshot)?;
                let co = ibex::pipeline::Interactions::load_for_index(&snapshot)?.map(|i| {
                    let histories = i.histories();
                    ibex::pipeline::interactions::CoOccurrence::build(
                        histories.values().map(Vec::as_slice),
                    )
                });
                let options = ibex::pipeline::RecommendOptions {
                    k,
                    candidates,
                    with_reasons: reasons,
                    llm_weight,
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

    /// The commit generation searches see.
    #[getter]
    fn generation(&self) -> PyResult<u64> {
        Ok(self.shared()?.snapshot().manifest().generation)
    }

    /// Catches up with commits another process (another replica of a served shard) made, when
    /// the generation searches see is older than `generation`; returns the generation now seen.
    fn refresh_to(&self, py: Python<'_>, generation: u64) -> PyResult<u64> {
        let shared = self.shared()?;
        py.detach(move || shared.refresh_to(generation))
            .map_err(to_py)
    }

    /// The BM25 statistics of `query`'s terms in this index, as JSON: what a sharded index's
    /// router gathers from every shard before it searches them.
    fn term_statistics(&self, py: Python<'_>, query: String) -> PyResult<String> {
        let shared = self.shared()?;
        let statistics = py
            .detach(move || ibex::search::TermStatistics::of_query(&shared.snapshot(), &query))
            .map_err(to_py)?;
        to_json(&statistics)
    }

    /// This index's ranked lists for a search request (JSON, as `search` takes, optionally
    /// with the collection's `statistics`), before they are cut and fused: one shard's part of
    /// a sharded search. Returns `{"bm25": [{"id", "score"}...], "dense": [...]}`.
    fn ranked_lists(&self, py: Python<'_>, request: &str) -> PyResult<String> {
        let body: SearchBody =
            serde_json::from_str(request).map_err(|e| json_error("search request", e))?;
        let request = body.into_request()?;
        let shared = self.shared()?;
        let lists = py
            .detach(move || {
                let embedder = (request.mode != Mode::Bm25 && request.vector.is_none())
                    .then(|| shared.embedder().clone());
                ibex::search::ranked_lists(&shared.snapshot(), embedder.as_deref(), &request)
            })
            .map_err(to_py)?;
        to_json(&lists)
    }

    /// The hits, with passages, for documents of this index ranked by a sharded search (`(id,
    /// score)` best first), as `search` returns them.
    fn hits(
        &self,
        py: Python<'_>,
        request: &str,
        ranked: Vec<(String, f32)>,
    ) -> PyResult<Vec<HitTuple>> {
        let body: SearchBody =
            serde_json::from_str(request).map_err(|e| json_error("search request", e))?;
        let request = body.into_request()?;
        let shared = self.shared()?;
        let hits = py
            .detach(move || {
                let embedder = (request.mode != Mode::Bm25 && request.vector.is_none())
                    .then(|| shared.embedder().clone());
                let ranked = ranked
                    .into_iter()
                    .map(|(id, score)| ibex::search::DocScore { id, score })
                    .collect();
                ibex::search::hits(&shared.snapshot(), embedder.as_deref(), &request, ranked)
            })
            .map_err(to_py)?;
        hit_tuples(hits)
    }

    /// The stored documents with `ids` and their chunks' spans (JSON array, unknown ids left
    /// out), with each one's chunk vectors as bytes: what a shard writer takes, so an index can
    /// be re-sharded (or shards joined) without embedding again.
    fn embedded_documents<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<String>,
    ) -> PyResult<(String, Vec<Bound<'py, pyo3::types::PyBytes>>)> {
        let shared = self.shared()?;
        let found = py
            .detach(move || -> ibex::Result<Vec<(serde_json::Value, Vec<u8>)>> {
                let snapshot = shared.snapshot();
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    let (Some(doc), Some(chunks)) =
                        (snapshot.get_document(id)?, snapshot.doc_chunks(id))
                    else {
                        continue;
                    };
                    let mut bytes = Vec::new();
                    for key in chunks.chunk_base..chunks.chunk_base + chunks.chunk_count as u64 {
                        let vector = snapshot.chunk_vector(key)?.ok_or_else(|| {
                            ibex::IbexError::Output(format!(
                                "chunk {key} of document {id:?} has no vector in the index"
                            ))
                        })?;
                        bytes.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
                    }
                    let spans: Vec<[usize; 2]> =
                        doc.chunks.iter().map(|c| [c.start, c.end]).collect();
                    out.push((
                        serde_json::json!({
                            "id": doc.id,
                            "title": doc.title,
                            "text": doc.text,
                            "metadata": doc.metadata,
                            "spans": spans,
                        }),
                        bytes,
                    ));
                }
                Ok(out)
            })
            .map_err(to_py)?;
        let (docs, vectors): (Vec<_>, Vec<_>) = found.into_iter().unzip();
        let vectors = vectors
            .iter()
            .map(|b| pyo3::types::PyBytes::new(py, b))
            .collect();
        Ok((to_json(&docs)?, vectors))
    }

    /// The ids of the live documents.
    fn ids(&self) -> PyResult<Vec<String>> {
        Ok(self
            .shared()?
            .snapshot()
            .live_docs()
            .iter()
            .map(|d| d.id.clone())
            .collect())
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

/// Hits as the tuples Python builds its `Hit`s from.
fn hit_tuples(hits: Vec<ibex::search::SearchHit>) -> PyResult<Vec<HitTuple>> {
    hits.into_iter()
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

/// A document problem as a sentence.
pub(crate) fn problem_text(problem: ibex::indexer::corpus::DocumentProblem) -> String {
    use ibex::indexer::corpus::DocumentProblem;
    match problem {
        DocumentProblem::Malformed(why) => why,
        DocumentProblem::MissingText(id) => format!(
            "document {id:?} has no text: every document needs a non-empty \"text\" (or at least a \"title\")"
        ),
    }
}

/// The search fields the Python `Index.search` sends (the REST API's names), and those a
/// sharded index's router adds for its shards.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchBody {
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
    /// The collection's BM25 statistics (a sharded index's router sends them to its shards).
    #[serde(default)]
    statistics: Option<ibex::search::TermStatistics>,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    min_score: Option<f32>,
    #[serde(default)]
    mmr: Option<MmrBody>,
    #[serde(default)]
    group_by: Option<String>,
    #[serde(default)]
    per_group: Option<usize>,
    #[serde(default)]
    facets: Vec<String>,
    #[serde(default)]
    feedback: Option<ibex::search::FeedbackOptions>,
}

/// `mmr` of a search: `{"lambda": 0.5, "fetch_k": 40}`, both optional.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MmrBody {
    #[serde(default)]
    lambda: Option<f32>,
    #[serde(default)]
    fetch_k: Option<usize>,
}

impl SearchBody {
    pub(crate) fn into_request(self) -> PyResult<SearchRequest> {
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
        request.filters = match self.filter {
            Some(object) if !object.is_empty() => {
                vec![Filter::from_json(&serde_json::Value::Object(object)).map_err(to_py)?]
            }
            _ => Vec::new(),
        };
        if let Some(alpha) = self.alpha {
            if !(0.0..=1.0).contains(&alpha) {
                return Err(invalid(format!("alpha must be in [0, 1], not {alpha}")));
            }
            request.fusion = Fusion::Weighted { alpha };
        }
        request.aggregation = ChunkAggregation::Max;
        request.candidates = request.candidates.max(self.top_k);
        request.vector = self.vector;
        request.statistics = self.statistics.map(std::sync::Arc::new);
        let wanted = self.offset.saturating_add(self.top_k);
        request.offset = self.offset;
        request.candidates = request.candidates.max(wanted);
        request.min_score = self.min_score;
        request.mmr = self.mmr.map(|mmr| ibex::search::Mmr {
            lambda: mmr.lambda.unwrap_or(0.5),
            fetch_k: mmr
                .fetch_k
                .unwrap_or(wanted.saturating_mul(4).clamp(20, 1000)),
        });
        if self.per_group.is_some() && self.group_by.is_none() {
            return Err(invalid("per_group needs group_by"));
        }
        request.group_by = self.group_by.map(|field| ibex::search::GroupBy {
            field,
            per_group: self.per_group.unwrap_or(1),
        });
        request.facets = self.facets;
        request.feedback = match &self.feedback {
            Some(options) => Some(options.settings().map_err(to_py)?),
            None => None,
        };
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
