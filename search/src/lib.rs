//! ibex's query pipeline: retrieval (BM25, dense, hybrid), fusion, document ranking from chunks,
//! metadata filters, passages. (Measuring retrieval quality is `ibex-eval`'s job.)
//!
//! [`search`] is the one entry point the CLI and the web API call: it prepares the query once
//! (embedding, filters), runs the [`Retriever`] the mode asks for, and returns documents with
//! their best passages.

mod error;
pub mod fusion;
pub mod lexical;
pub mod passages;
pub mod retriever;

use std::time::Instant;

use ibex_embedder::Embedder;
use ibex_indexer::Index;
use serde::Serialize;

pub use error::{Result, SearchError};
pub use fusion::{DocScore, Fusion};
pub use lexical::MetadataFilter;
pub use passages::Passage;
pub use retriever::{
    Bm25Retriever, ChunkAggregation, DenseRetriever, HybridRetriever, PreparedQuery, Retriever,
};

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
    /// Metadata equality filters; all must hold.
    pub filters: Vec<MetadataFilter>,
    /// How hybrid search combines its two lists.
    pub fusion: Fusion,
    /// How a document's score comes from its chunks' scores.
    pub aggregation: ChunkAggregation,
    /// Depth of each list before hybrid fusion.
    pub candidates: usize,
    /// A query vector supplied by the caller (for example from their own copy of the model),
    /// used instead of embedding `query`. Its length must be the index's dimension.
    pub vector: Option<Vec<f32>>,
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
        // same scale as embedded queries (fusion weights depend on it).
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
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
    match request.mode {
        Mode::Bm25 => Bm25Retriever {
            depth: request.top_k,
        }
        .retrieve(index, prepared),
        Mode::Dense => DenseRetriever {
            depth: request.top_k,
            aggregation: request.aggregation,
        }
        .retrieve(index, prepared),
        Mode::Hybrid => HybridRetriever {
            depth: request.top_k,
            candidates: request.candidates,
            fusion: request.fusion,
            aggregation: request.aggregation,
        }
        .retrieve(index, prepared),
    }
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
            prepared.vector.as_deref(),
            lexical,
            request.passages,
        );
        hits.push(SearchHit {
            id,
            score,
            title: doc.title,
            metadata: doc.metadata,
            passages,
        });
    }
    Ok(SearchResults {
        query: request.query.clone(),
        mode: request.mode,
        hits,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
