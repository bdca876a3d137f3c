//! ibex's query pipeline: retrieval (BM25, dense, hybrid), fusion, document ranking from chunks,
//! metadata filters, passages. (Measuring retrieval quality is `ibex-eval`'s job.)
//!
//! [`search`] is the one entry point the CLI and the web API call: it prepares the query once
//! (embedding, filters), runs the [`Retriever`] the mode asks for, and returns documents with
//! their best passages.

mod error;
pub mod filter;
pub mod fusion;
pub mod lexical;
pub mod passages;
pub mod retriever;
pub mod statistics;

use std::time::Instant;

use ibex_embedder::Embedder;
use ibex_indexer::Index;
use serde::{Deserialize, Serialize};

pub use error::{Result, SearchError};
pub use filter::{Condition, Filter, Scalar};
pub use fusion::{DocScore, Fusion};
pub use passages::Passage;
pub use retriever::{
    fuse_hybrid, Bm25Retriever, ChunkAggregation, DenseRetriever, HybridRetriever, PreparedQuery,
    Retriever,
};
pub use statistics::TermStatistics;

/// Retrieval mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// BM25 over title and text.
    Bm25,
    /// Nearest chunks by embedding similarity, aggregated per document.
    Dense,
    /// BM25 and dense lists fused (reciprocal rank fusion by default).
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = SearchError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "bm25" | "lexical" => Ok(Mode::Bm25),
            "dense" | "vector" => Ok(Mode::Dense),
            "hybrid" => Ok(Mode::Hybrid),
            _ => Err(SearchError::UnknownMode(s.to_string())),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Bm25 => "bm25",
            Mode::Dense => "dense",
            Mode::Hybrid => "hybrid",
        })
    }
}

/// Upper bound on `top_k`, so a request cannot ask for unbounded work.
pub const MAX_TOP_K: usize = 10_000;

/// Upper bound on `candidates` (the depth of each list hybrid search fuses): tantivy's top-k
/// collector allocates its heap by the depth it is asked for, so an unbounded value was an
/// allocation of any size (found by `fuzz/search_request`).
pub const MAX_CANDIDATES: usize = 10_000;

/// A search request.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The query text.
    pub query: String,
    /// Which retrieval runs.
    pub mode: Mode,
    /// Documents to return.
    pub top_k: usize,
    /// Passages to return per document.
    pub passages: usize,
    /// Metadata filters (see [`filter`]); all must hold.
    pub filters: Vec<Filter>,
    /// How hybrid search combines its two lists.
    pub fusion: Fusion,
    /// How a document's score comes from its chunks' scores.
    pub aggregation: ChunkAggregation,
    /// Depth of each list before hybrid fusion.
    pub candidates: usize,
    /// A query vector supplied by the caller (for example from their own copy of the model),
    /// used instead of embedding `query`. Its length must be the index's dimension.
    pub vector: Option<Vec<f32>>,
    /// BM25 statistics of the whole collection when this index is one shard of several (see
    /// [`statistics`]); `None` scores with the index's own.
    pub statistics: Option<std::sync::Arc<TermStatistics>>,
}

impl SearchRequest {
    /// A request with ibex's defaults: hybrid, top 10, 2 passages, RRF (k = 60), max aggregation.
    pub fn new(query: impl Into<String>) -> Self {
        SearchRequest {
            query: query.into(),
            mode: Mode::Hybrid,
            top_k: 10,
            passages: 2,
            filters: Vec::new(),
            fusion: Fusion::default(),
            aggregation: ChunkAggregation::Max,
            candidates: 100,
            vector: None,
            statistics: None,
        }
    }
}

/// One ranked document.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// The document's id.
    pub id: String,
    /// Its score under the request's mode.
    pub score: f32,
    /// Its title.
    pub title: String,
    /// Its metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Its best passages for the query, best first.
    pub passages: Vec<Passage>,
}

/// The answer to a search request.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// The query as asked.
    pub query: String,
    /// The mode that ran.
    pub mode: Mode,
    /// The ranked documents, best first.
    pub hits: Vec<SearchHit>,
    /// Time spent searching, in milliseconds.
    pub took_ms: f64,
}

/// Ranks documents only (no passages): what evaluation needs.
pub fn rank_documents(
    index: &Index,
    embedder: Option<&dyn Embedder>,
    request: &SearchRequest,
) -> Result<Vec<DocScore>> {
    let prepared = prepare(index, embedder, request)?;
    retrieve(index, request, &prepared)
}

/// Validates `request` and prepares its query: embedded unless the mode is BM25 (which needs no
/// model; its passages are then scored lexically), filters resolved.
fn prepare<'q>(
    index: &Index,
    embedder: Option<&dyn Embedder>,
    request: &'q SearchRequest,
) -> Result<PreparedQuery<'q>> {
    validate(request)?;
    if let Some(vector) = &request.vector {
        let expected = index.model().dimension;
        if vector.len() != expected {
            return Err(ibex_indexer::IndexError::WrongDimension {
                expected,
                got: vector.len(),
            }
            .into());
        }
        let mut vector = vector.clone();
        // Scores are dot products with unit vectors: a unit query makes them cosines, on the
        // same scale as embedded queries (fusion weights depend on it). A vector already of unit
        // length (the model's own query embedding, sent by a sharded index's router) is left as
        // it is, so that it scores bit for bit as the embedded query would.
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 && (norm - 1.0).abs() > 1e-5 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        return PreparedQuery::with_vector(index, &request.query, &request.filters, vector);
    }
    let needs_vector = request.mode != Mode::Bm25;
    if needs_vector && embedder.is_none() {
        return Err(SearchError::NoEmbedder(if request.mode == Mode::Dense {
            "dense"
        } else {
            "hybrid"
        }));
    }
    PreparedQuery::new(
        index,
        embedder.filter(|_| needs_vector),
        &request.query,
        &request.filters,
    )
}

fn validate(request: &SearchRequest) -> Result<()> {
    match &request.vector {
        None if request.query.trim().is_empty() => {
            return Err(SearchError::InvalidRequest("the query is empty".into()));
        }
        Some(_) if request.mode == Mode::Bm25 => {
            return Err(SearchError::InvalidRequest(
                "a query vector needs mode dense or hybrid; bm25 ranks by the query's words".into(),
            ));
        }
        Some(vector) if vector.iter().any(|x| !x.is_finite()) => {
            return Err(SearchError::InvalidRequest(
                "the query vector holds a value that is not a finite number".into(),
            ));
        }
        Some(vector) if vector.iter().all(|&x| x == 0.0) => {
            return Err(SearchError::InvalidRequest(
                "the query vector is all zeros".into(),
            ));
        }
        _ => {}
    }
    if request.top_k == 0 || request.top_k > MAX_TOP_K {
        return Err(SearchError::InvalidRequest(format!(
            "top_k must be between 1 and {MAX_TOP_K}, not {}",
            request.top_k
        )));
    }
    if request.candidates > MAX_CANDIDATES {
        return Err(SearchError::InvalidRequest(format!(
            "candidates must be at most {MAX_CANDIDATES}, not {}",
            request.candidates
        )));
    }
    if let Fusion::ReciprocalRank { k } = request.fusion {
        // 1 / (k + rank) with rank from 1: a k below 0 can divide by zero or flip the order.
        if !k.is_finite() || k < 0.0 {
            return Err(SearchError::InvalidRequest(format!(
                "the reciprocal rank fusion constant k must be a finite number at least 0, not {k}"
            )));
        }
    }
    if let Fusion::Weighted { alpha } = request.fusion {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(SearchError::InvalidRequest(format!(
                "alpha must be between 0 and 1, not {alpha}"
            )));
        }
    }
    Ok(())
}

fn retrieve(
    index: &Index,
    request: &SearchRequest,
    prepared: &PreparedQuery,
) -> Result<Vec<DocScore>> {
    Ok(rank(request, &lists(index, request, prepared)?))
}

/// The ranked lists a search ranks documents from, before they are cut and fused: BM25 (modes
/// bm25 and hybrid) and dense (dense and hybrid), each best first with ties in id order. One
/// shard of a sharded index answers these; [`merge_lists`] and [`rank`] then rank the
/// collection exactly as one index holding every document would.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RankedLists {
    /// The BM25 list (empty in dense mode).
    #[serde(default)]
    pub bm25: Vec<DocScore>,
    /// The dense list (empty in bm25 mode).
    #[serde(default)]
    pub dense: Vec<DocScore>,
}

/// How deep each list goes: the final depth, or the fusion's candidates in hybrid mode.
fn list_depth(request: &SearchRequest) -> usize {
    match request.mode {
        Mode::Hybrid => request.candidates.max(request.top_k),
        Mode::Bm25 | Mode::Dense => request.top_k,
    }
}

fn lists(index: &Index, request: &SearchRequest, prepared: &PreparedQuery) -> Result<RankedLists> {
    let depth = list_depth(request);
    let bm25 = if request.mode == Mode::Dense {
        Vec::new()
    } else {
        Bm25Retriever {
            depth,
            statistics: request.statistics.as_deref(),
        }
        .retrieve(index, prepared)?
    };
    let dense = if request.mode == Mode::Bm25 {
        Vec::new()
    } else {
        DenseRetriever {
            depth,
            aggregation: request.aggregation,
        }
        .retrieve(index, prepared)?
    };
    Ok(RankedLists { bm25, dense })
}

/// This index's ranked lists for `request` (one shard's part of a sharded search).
pub fn ranked_lists(
    index: &Index,
    embedder: Option<&dyn Embedder>,
    request: &SearchRequest,
) -> Result<RankedLists> {
    let prepared = prepare(index, embedder, request)?;
    lists(index, request, &prepared)
}

/// The lists of disjoint indexes (shards) merged into the lists one index holding all their
/// documents returns: each by score, ties in id order, cut at the request's depth.
pub fn merge_lists(request: &SearchRequest, parts: Vec<RankedLists>) -> RankedLists {
    let depth = list_depth(request);
    let merge = |lists: Vec<Vec<DocScore>>| {
        let mut all: Vec<DocScore> = lists.into_iter().flatten().collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        all.truncate(depth);
        all
    };
    let (bm25, dense): (Vec<_>, Vec<_>) = parts.into_iter().map(|p| (p.bm25, p.dense)).unzip();
    RankedLists {
        bm25: merge(bm25),
        dense: merge(dense),
    }
}

/// The documents a search returns from its lists: the top `top_k` of the mode's list, or of the
/// fused lists in hybrid mode.
pub fn rank(request: &SearchRequest, lists: &RankedLists) -> Vec<DocScore> {
    let top = |list: &[DocScore]| list.iter().take(request.top_k).cloned().collect();
    match request.mode {
        Mode::Bm25 => top(&lists.bm25),
        Mode::Dense => top(&lists.dense),
        Mode::Hybrid => fuse_hybrid(request.fusion, &lists.bm25, &lists.dense, request.top_k),
    }
}

/// The hits for ranked documents of this index, with their best passages for the query: the
/// last step of a search (and what the shard owning each document answers in a sharded one).
/// Documents no longer in the index are left out.
pub fn hits(
    index: &Index,
    embedder: Option<&dyn Embedder>,
    request: &SearchRequest,
    ranked: Vec<DocScore>,
) -> Result<Vec<SearchHit>> {
    // Passages need the query vector only outside bm25 mode.
    let prepared = if request.mode == Mode::Bm25 {
        None
    } else {
        Some(prepare(index, embedder, request)?)
    };
    let vector = prepared.as_ref().and_then(|p| p.vector.as_deref());
    hits_with(index, request, vector, ranked)
}

fn hits_with(
    index: &Index,
    request: &SearchRequest,
    vector: Option<&[f32]>,
    ranked: Vec<DocScore>,
) -> Result<Vec<SearchHit>> {
    let mut hits = Vec::with_capacity(ranked.len());
    for DocScore { id, score } in ranked {
        let Some(doc) = index.get_document(&id)? else {
            continue;
        };
        let lexical = request.mode != Mode::Dense;
        let passages = passages::best_passages(
            index,
            &doc,
            &request.query,
            vector,
            lexical,
            request.passages,
            request.statistics.as_deref(),
        );
        hits.push(SearchHit {
            id,
            score,
            title: doc.title,
            metadata: doc.metadata,
            passages,
        });
    }
    Ok(hits)
}

/// Runs a search: ranked documents with their best passages.
pub fn search(
    index: &Index,
    embedder: Option<&dyn Embedder>,
    request: &SearchRequest,
) -> Result<SearchResults> {
    let started = Instant::now();
    let prepared = prepare(index, embedder, request)?;
    let ranked = retrieve(index, request, &prepared)?;
    let hits = hits_with(index, request, prepared.vector.as_deref(), ranked)?;
    Ok(SearchResults {
        query: request.query.clone(),
        mode: request.mode,
        hits,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
