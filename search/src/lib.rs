//! ibex's query pipeline: retrieval (BM25, dense, hybrid), fusion, document ranking from chunks,
//! metadata filters, passages. (Measuring retrieval quality is `ibex-eval`'s job.)
//!
//! [`search`] is the one entry point the CLI and the web API call: it prepares the query once
//! (embedding, filters), runs the [`Retriever`] the mode asks for, and returns documents with
//! their best passages.

pub mod cursor;
pub mod diversity;
mod error;
pub mod facets;
pub mod feedback;
pub mod filter;
pub mod fusion;
pub mod lexical;
pub mod passages;
pub mod retriever;
pub mod statistics;
mod top_count;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use ibex_embedder::Embedder;
use ibex_indexer::Index;
use serde::{Deserialize, Serialize};
use tantivy::DocAddress;

pub use cursor::Cursors;
pub use diversity::{GroupBy, HitGroup, Mmr};
pub use error::{Result, SearchError};
pub use facets::{Facet, FacetCount, FacetScope};
pub use feedback::{Feedback, FeedbackOptions, FeedbackSource};
pub use filter::{Condition, Filter, Scalar};
pub use fusion::{DocScore, Fusion};
pub use passages::{DocumentParts, DocumentText, Passage, PassageScorer};
pub use retriever::{
    fuse_hybrid, Bm25List, Bm25Retriever, ChunkAggregation, DenseRetriever, HybridRetriever,
    PreparedQuery, Retriever,
};
pub use statistics::TermStatistics;
pub use top_count::EXACT_TOTAL_UP_TO;

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
    /// Ranked documents (or groups, with `group_by`) skipped before the first hit returned:
    /// page `n` (from 0) of `top_k` hits is `offset = n × top_k`. `offset + top_k` is bounded
    /// by [`MAX_TOP_K`].
    pub offset: usize,
    /// Drops hits scoring below this, in the score space of the mode: the BM25 score (bm25),
    /// the cosine similarity of the best chunk (dense; the sum of the best chunks' cosines
    /// with [`ChunkAggregation::TopKSum`]), or the weighted fused score in [0, 1] (hybrid with
    /// [`Fusion::Weighted`]: normalized over the candidate lists, so relative to this query's
    /// candidates). Refused with reciprocal rank fusion, whose scores are functions of rank
    /// positions alone and say nothing about how well a document matches.
    pub min_score: Option<f32>,
    /// Re-ranks the best `fetch_k` documents by maximal marginal relevance (see [`Mmr`]).
    pub mmr: Option<Mmr>,
    /// Groups hits by a metadata field (see [`GroupBy`]); `top_k` and `offset` then count
    /// groups.
    pub group_by: Option<GroupBy>,
    /// Metadata fields whose value counts come back with the hits (see [`facets`]).
    pub facets: Vec<String>,
    /// Pseudo-relevance feedback (see [`feedback`]): a first round's best documents expand the
    /// query (RM3 on the BM25 query, Rocchio on the dense vector) before the lists are
    /// retrieved again. Totals and facets still count the original query's matches.
    pub feedback: Option<Feedback>,
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
            offset: 0,
            min_score: None,
            mmr: None,
            group_by: None,
            facets: Vec::new(),
            feedback: None,
        }
    }
}

/// How many documents a search found in all, as Elasticsearch states it: exact, or a lower
/// bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Total {
    /// The count.
    pub value: usize,
    /// Whether `value` is exact or a lower bound.
    pub relation: TotalRelation,
}

/// Whether a [`Total`] is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TotalRelation {
    /// Exactly `value` documents: every match of the BM25 query under the filters (bm25), or
    /// every document the filters allow (dense and hybrid, where every document has a
    /// similarity to the query).
    Eq,
    /// At least `value`: with `min_score`, when every candidate ranked scored above it (more
    /// may lie deeper).
    Gte,
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
    /// The ranked documents, best first (with `group_by`: each group's hits in group order).
    pub hits: Vec<SearchHit>,
    /// Ranked documents (or groups) skipped before `hits`.
    pub offset: usize,
    /// How many documents the search found in all (documents, also with `group_by`).
    pub total: Total,
    /// The groups of a `group_by` search, in order, each naming its hits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<HitGroup>>,
    /// Value counts of the fields the request named in `facets`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facets: BTreeMap<String, Facet>,
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
    let prepared = prepare_query(index, embedder, request)?;
    match &request.feedback {
        Some(feedback) => {
            let expansion = feedback::expand(index, request, &prepared, feedback)?;
            Ok(PreparedQuery {
                expansion,
                ..prepared
            })
        }
        None => Ok(prepared),
    }
}

/// The query as the request gives it: its vector (supplied or embedded) and its filters.
fn prepare_query<'q>(
    index: &Index,
    embedder: Option<&dyn Embedder>,
    request: &'q SearchRequest,
) -> Result<PreparedQuery<'q>> {
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
    if let Some(feedback) = &request.feedback {
        feedback.validate(request)?;
    }
    validate_paging(request)
}

/// The checks of offset, min_score, MMR, grouping and facets.
fn validate_paging(request: &SearchRequest) -> Result<()> {
    let invalid = |message: String| Err(SearchError::InvalidRequest(message));
    let wanted = request.offset.saturating_add(request.top_k);
    if wanted > MAX_TOP_K {
        return invalid(format!(
            "offset + top_k must be at most {MAX_TOP_K}, not {wanted}: page deeper by narrowing the search with a filter"
        ));
    }
    if let Some(min_score) = request.min_score {
        if !min_score.is_finite() {
            return invalid(format!(
                "min_score must be a finite number, not {min_score}"
            ));
        }
        if request.mode == Mode::Hybrid && matches!(request.fusion, Fusion::ReciprocalRank { .. }) {
            return invalid(
                "min_score cannot apply to reciprocal rank fusion, whose scores depend only on rank positions: give alpha (weighted fusion, scores in [0, 1]) or use mode bm25 or dense"
                    .into(),
            );
        }
    }
    if let Some(mmr) = request.mmr {
        if !(0.0..=1.0).contains(&mmr.lambda) {
            return invalid(format!(
                "mmr.lambda must be between 0 and 1, not {}",
                mmr.lambda
            ));
        }
        if mmr.fetch_k < wanted || mmr.fetch_k > diversity::MAX_MMR_FETCH_K {
            return invalid(format!(
                "mmr.fetch_k must be between offset + top_k ({wanted}) and {}, not {}",
                diversity::MAX_MMR_FETCH_K,
                mmr.fetch_k
            ));
        }
        if request.group_by.is_some() {
            return invalid("mmr and group_by cannot be combined: choose one".into());
        }
    }
    if let Some(group_by) = &request.group_by {
        if group_by.field.trim().is_empty() {
            return invalid("group_by needs a metadata field name".into());
        }
        if group_by.per_group == 0 || group_by.per_group > diversity::MAX_PER_GROUP {
            return invalid(format!(
                "per_group must be between 1 and {}, not {}",
                diversity::MAX_PER_GROUP,
                group_by.per_group
            ));
        }
        if wanted.saturating_mul(group_by.per_group) > MAX_TOP_K {
            return invalid(format!(
                "(offset + top_k) × per_group must be at most {MAX_TOP_K}, not {}",
                wanted.saturating_mul(group_by.per_group)
            ));
        }
    }
    if request.facets.len() > facets::MAX_FACETS {
        return invalid(format!(
            "at most {} facets per search, not {}",
            facets::MAX_FACETS,
            request.facets.len()
        ));
    }
    if request.facets.iter().any(|f| f.trim().is_empty()) {
        return invalid("a facet needs a metadata field name".into());
    }
    Ok(())
}

fn retrieve(
    index: &Index,
    request: &SearchRequest,
    prepared: &PreparedQuery,
) -> Result<Vec<DocScore>> {
    // Ranking alone (evaluation) needs no total: BM25 prunes from the start.
    let lists = lists(index, request, prepared, list_depth(request), false)?;
    Ok(rank(request, &lists))
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
    /// Documents the BM25 query matches under the filters (0 in dense mode).
    #[serde(default)]
    pub bm25_matches: usize,
    /// Whether `bm25_matches` is exact (else a lower bound: see [`EXACT_TOTAL_UP_TO`]).
    #[serde(default)]
    pub bm25_matches_exact: bool,
    /// Documents the filters allow (every live document without filters).
    #[serde(default)]
    pub allowed_documents: usize,
}

/// How deep each list goes: the final depth, or the fusion's candidates in hybrid mode.
fn list_depth(request: &SearchRequest) -> usize {
    match request.mode {
        Mode::Hybrid => request.candidates.max(request.top_k),
        Mode::Bm25 | Mode::Dense => request.top_k,
    }
}

fn lists(
    index: &Index,
    request: &SearchRequest,
    prepared: &PreparedQuery,
    depth: usize,
    count_matches: bool,
) -> Result<RankedLists> {
    let bm25 = if request.mode == Mode::Dense {
        Bm25List {
            exact: true,
            ..Bm25List::default()
        }
    } else {
        Bm25Retriever {
            depth,
            statistics: request.statistics.as_deref(),
        }
        .retrieve_counted(
            index,
            prepared,
            if count_matches { EXACT_TOTAL_UP_TO } else { 0 },
        )?
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
    Ok(RankedLists {
        bm25: bm25.ranked,
        dense,
        bm25_matches: bm25.matches,
        bm25_matches_exact: bm25.exact,
        allowed_documents: prepared.allowed_documents,
    })
}

/// This index's ranked lists for `request` (one shard's part of a sharded search).
pub fn ranked_lists(
    index: &Index,
    embedder: Option<&dyn Embedder>,
    request: &SearchRequest,
) -> Result<RankedLists> {
    let prepared = prepare(index, embedder, request)?;
    // A shard's lists serve a search, whose answer states the total: count.
    lists(index, request, &prepared, list_depth(request), true)
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
    let bm25_matches = parts.iter().map(|p| p.bm25_matches).sum();
    let bm25_matches_exact = parts.iter().all(|p| p.bm25_matches_exact);
    let allowed_documents = parts.iter().map(|p| p.allowed_documents).sum();
    let (bm25, dense): (Vec<_>, Vec<_>) = parts.into_iter().map(|p| (p.bm25, p.dense)).unzip();
    RankedLists {
        bm25: merge(bm25),
        dense: merge(dense),
        bm25_matches,
        bm25_matches_exact,
        allowed_documents,
    }
}

/// The documents a search returns from its lists: the top `top_k` of the mode's list, or of the
/// fused lists in hybrid mode.
pub fn rank(request: &SearchRequest, lists: &RankedLists) -> Vec<DocScore> {
    rank_to(request, lists, request.top_k)
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
    let scorer = passages::PassageScorer::new(
        index,
        &request.query,
        vector,
        request.mode != Mode::Dense,
        request.passages,
        request.statistics.as_deref(),
    );
    let mut found = Vec::with_capacity(ranked.len());
    for DocScore { id, score } in ranked {
        if let Some((address, hit)) = index.find_hit(&id)? {
            found.push((id, score, address, hit));
        }
    }
    let documents: Vec<(DocAddress, passages::DocumentParts)> = found
        .iter()
        .map(|(_, _, address, hit)| (*address, hit.into()))
        .collect();
    let passages = scorer.passages_of_hits(&documents)?;
    Ok(found
        .into_iter()
        .zip(passages)
        .map(|((id, score, _, doc), passages)| SearchHit {
            id,
            score,
            title: doc.title,
            metadata: doc.metadata,
            passages,
        })
        .collect())
}

/// Runs a search: ranked documents with their best passages, the total, and the groups and
/// facets asked for.
pub fn search(
    index: &Index,
    embedder: Option<&dyn Embedder>,
    request: &SearchRequest,
) -> Result<SearchResults> {
    let started = Instant::now();
    let prepared = prepare(index, embedder, request)?;
    let page = page(index, request, &prepared)?;
    let facets = if request.facets.is_empty() {
        BTreeMap::new()
    } else if request.mode == Mode::Bm25 {
        let matches = lexical::bm25_matches(index, &request.query, &request.filters)?;
        facets::count_facets(
            index,
            &request.facets,
            FacetScope::Matches,
            matches.len(),
            |segment, doc| matches.contains(&tantivy::DocAddress::new(segment, doc)),
        )?
    } else {
        let candidates: HashSet<&str> = page.candidates.iter().map(|d| d.id.as_str()).collect();
        let live = index.live_docs();
        facets::count_facets(
            index,
            &request.facets,
            FacetScope::Candidates,
            candidates.len(),
            |segment, doc| {
                live.at_address(segment, doc)
                    .is_some_and(|d| candidates.contains(d.id.as_str()))
            },
        )?
    };
    let hits = hits_with(index, request, prepared.vector.as_deref(), page.docs)?;
    Ok(SearchResults {
        query: request.query.clone(),
        mode: request.mode,
        hits,
        offset: request.offset,
        total: page.total,
        groups: page.groups,
        facets,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// One page of a search before its documents are loaded.
struct Page {
    /// The page's documents, in order.
    docs: Vec<DocScore>,
    /// The page's groups (with `group_by`).
    groups: Option<Vec<HitGroup>>,
    total: Total,
    /// Every document ranked before the cut (what facets count in dense and hybrid mode).
    candidates: Vec<DocScore>,
}

/// Ranks deep enough for the page the request asks for, then applies `min_score`, MMR or
/// grouping, and cuts the page.
fn page(index: &Index, request: &SearchRequest, prepared: &PreparedQuery) -> Result<Page> {
    let wanted = request.offset + request.top_k;
    let mut depth = match (&request.mmr, &request.group_by) {
        (Some(mmr), _) => mmr.fetch_k,
        // A first guess: every group full and twice as many documents as that, grown below
        // while the best groups are not yet full.
        (None, Some(group_by)) => wanted * group_by.per_group * 2,
        (None, None) => wanted,
    };
    if !request.facets.is_empty() && request.mode != Mode::Bm25 {
        depth = depth.max(request.candidates);
    }
    let mut group_values: HashMap<String, serde_json::Value> = HashMap::new();
    loop {
        depth = depth.clamp(wanted, MAX_CANDIDATES.max(wanted));
        let lists = lists(
            index,
            request,
            prepared,
            list_depth(request).max(depth),
            true,
        )?;
        let mut ranked = rank_to(request, &lists, depth);
        let exhausted = ranked.len() < depth;
        let all = match request.mode {
            Mode::Bm25 => lists.bm25_matches,
            Mode::Dense | Mode::Hybrid => lists.allowed_documents.max(lists.bm25_matches),
        };
        let counted_all = request.mode != Mode::Bm25 || lists.bm25_matches_exact;
        let total = match request.min_score {
            None => Total {
                value: all,
                relation: if counted_all {
                    TotalRelation::Eq
                } else {
                    TotalRelation::Gte
                },
            },
            Some(min_score) => {
                let before = ranked.len();
                // Best first: everything from the first hit below the threshold goes.
                let keep = ranked.partition_point(|d| d.score >= min_score);
                ranked.truncate(keep);
                Total {
                    value: ranked.len(),
                    relation: if ranked.len() < before || exhausted {
                        TotalRelation::Eq
                    } else {
                        TotalRelation::Gte
                    },
                }
            }
        };
        if let Some(mmr) = request.mmr {
            let order = diversity::mmr_order(
                index,
                prepared.vector.as_deref(),
                &ranked,
                mmr.lambda,
                wanted,
                request.mode == Mode::Dense && request.aggregation == ChunkAggregation::Max,
            )?;
            return Ok(Page {
                docs: order.into_iter().skip(request.offset).collect(),
                groups: None,
                total,
                candidates: ranked,
            });
        }
        let Some(group_by) = &request.group_by else {
            return Ok(Page {
                docs: ranked
                    .iter()
                    .skip(request.offset)
                    .take(request.top_k)
                    .cloned()
                    .collect(),
                groups: None,
                total,
                candidates: ranked,
            });
        };
        for doc in &ranked {
            if !group_values.contains_key(&doc.id) {
                let value = index
                    .get_document(&doc.id)?
                    .and_then(|d| diversity::metadata_value(&d.metadata, &group_by.field).cloned())
                    .unwrap_or(serde_json::Value::Null);
                group_values.insert(doc.id.clone(), value);
            }
        }
        let groups = diversity::group(
            &ranked,
            |id| group_values.get(id).cloned(),
            group_by.per_group,
        );
        let full = groups.len() >= wanted
            && groups[..wanted]
                .iter()
                .all(|(_, docs)| docs.len() == group_by.per_group);
        if full || exhausted || depth >= MAX_CANDIDATES {
            let page: Vec<(serde_json::Value, Vec<DocScore>)> = groups
                .into_iter()
                .skip(request.offset)
                .take(request.top_k)
                .collect();
            return Ok(Page {
                docs: page
                    .iter()
                    .flat_map(|(_, docs)| docs.iter().cloned())
                    .collect(),
                groups: Some(
                    page.into_iter()
                        .map(|(value, docs)| HitGroup {
                            value,
                            ids: docs.into_iter().map(|d| d.id).collect(),
                        })
                        .collect(),
                ),
                total,
                candidates: ranked,
            });
        }
        depth = depth.saturating_mul(4);
    }
}

/// The best `depth` documents of the mode's list, or of the fused lists in hybrid mode.
fn rank_to(request: &SearchRequest, lists: &RankedLists, depth: usize) -> Vec<DocScore> {
    let top = |list: &[DocScore]| list.iter().take(depth).cloned().collect();
    match request.mode {
        Mode::Bm25 => top(&lists.bm25),
        Mode::Dense => top(&lists.dense),
        Mode::Hybrid => fuse_hybrid(request.fusion, &lists.bm25, &lists.dense, depth),
    }
}
