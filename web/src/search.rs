//! The search endpoints: one search (with paging, thresholds, diversity and facets), and the
//! next page of a cursor, which comes from the index snapshot the search started on.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use ibex_search::{
    ChunkAggregation, Feedback, FeedbackOptions, Filter, Fusion, GroupBy, Mmr, Mode, SearchRequest,
    SearchResults, TotalRelation,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::{blocking, shared_index, ApiJson, ApiPath};
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Retrieval mode.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// BM25 over title and text.
    Bm25,
    /// Nearest chunks by embedding similarity.
    Dense,
    #[default]
    /// BM25 and dense fused (the default).
    Hybrid,
}

impl From<Mode> for SearchMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Bm25 => SearchMode::Bm25,
            Mode::Dense => SearchMode::Dense,
            Mode::Hybrid => SearchMode::Hybrid,
        }
    }
}

/// Maximal marginal relevance: re-rank the best `fetch_k` documents so that each next hit adds
/// what the hits before it do not already say.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MmrBody {
    /// Relevance against novelty in [0, 1]: 1 ranks by relevance alone (default 0.5).
    pub lambda: Option<f32>,
    /// Documents MMR chooses from, between offset + top_k and 1000 (default 4 × (offset +
    /// top_k), at least 20).
    pub fetch_k: Option<usize>,
}

/// Pseudo-relevance feedback: the first round's best documents expand the query, then the
/// lists are retrieved again. Measured on three collections (EVALUATION.md), it helps some and
/// hurts others: an option, off by default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    /// First-round documents taken as relevant, 1 to 100 (default 10).
    pub documents: Option<usize>,
    /// RM3 expansion terms of the BM25 query, at most 100 (default 10; 0: no RM3).
    pub terms: Option<usize>,
    /// Weight of the original query's terms against the expansion's, in [0, 1] (default 0.5).
    pub original_weight: Option<f32>,
    /// Rocchio feedback on the dense query vector: weight of the feedback documents' mean
    /// vector (default 0: off).
    pub rocchio: Option<f32>,
    /// `own` (default: each list learns from its own first round) or `fused` (hybrid only:
    /// both learn from the fused first-round ranking).
    pub from: Option<String>,
}

/// A search.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// The query text (may be empty only when `vector` is given).
    #[serde(default)]
    pub query: String,
    /// bm25, dense or hybrid (default).
    #[serde(default)]
    pub mode: SearchMode,
    /// Documents to return (default 10); groups with `group_by`.
    pub top_k: Option<usize>,
    /// Ranked documents (groups with `group_by`) to skip: page `n` from 0 is `offset = n ×
    /// top_k`. `offset + top_k` is at most the server's largest top_k.
    pub offset: Option<usize>,
    /// Passages per document (default 2).
    pub passages: Option<usize>,
    /// Metadata filter, applied inside retrieval (a filtered search returns min(top_k,
    /// matching documents) hits): `{"lang": "en", "year": {"$gte": 2020, "$lt": 2024}}`.
    /// Operators: `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte` (numbers, or RFC 3339 dates and
    /// timestamps), `$in`, `$nin`, `$exists`, and `$and`, `$or`, `$not` nested; nested keys by
    /// dots; a list-valued field matches when any element does. A malformed filter is a 422
    /// naming the field.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Map<String, Value>>,
    /// Hybrid fusion weight of the dense list in [0, 1]; without it, reciprocal rank fusion.
    pub alpha: Option<f32>,
    /// A query vector of the index's dimension, used instead of embedding `query`.
    pub vector: Option<Vec<f32>>,
    /// Drop hits scoring below this, in the mode's score space: the BM25 score (bm25), the
    /// best chunk's cosine similarity (dense), or the weighted fused score in [0, 1] (hybrid
    /// with `alpha`; relative to this query's candidates). Refused (422) for hybrid without
    /// `alpha`: reciprocal rank fusion scores rank positions, not relevance.
    pub min_score: Option<f32>,
    /// Re-rank by maximal marginal relevance (against near-duplicate chunks in a RAG context).
    pub mmr: Option<MmrBody>,
    /// Group hits by this metadata field (nested keys by dots), keeping the best `per_group`
    /// of each group; `top_k` and `offset` then count groups. Documents without the field
    /// form the group whose value is null.
    pub group_by: Option<String>,
    /// Hits per group with `group_by` (default 1: one hit per value, as a collapse).
    pub per_group: Option<usize>,
    /// Metadata fields whose value counts to return beside the hits: over every match in
    /// bm25 mode, over the ranked candidates in dense and hybrid mode (each facet says which,
    /// and how many documents it counted).
    pub facets: Option<Vec<String>>,
    /// Pseudo-relevance feedback (RM3 on the BM25 query, Rocchio on the dense vector); off
    /// without it. Totals and facets count the original query's matches.
    pub feedback: Option<FeedbackBody>,
    /// Keep a cursor for the next pages: `next_cursor` in the answer, sent to
    /// `POST /v1/indexes/{name}/search/next`, gives the next page from the same committed
    /// state of the index, whatever is written meanwhile (for 5 minutes unused).
    #[serde(default)]
    pub cursor: bool,
}

/// The next page of a search started with `"cursor": true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NextPageBody {
    /// The `next_cursor` of the previous page.
    pub cursor: String,
}

/// A passage of a result document.
#[derive(Debug, Serialize, ToSchema)]
pub struct PassageResponse {
    /// The passage's text.
    pub text: String,
    /// Character offsets of the passage in the document text.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
    /// Its score for the query.
    pub score: f32,
    /// Query-term matches as `[start, end)` character offsets into `text`.
    pub highlights: Vec<[usize; 2]>,
}

/// A result document.
#[derive(Debug, Serialize, ToSchema)]
pub struct HitResponse {
    /// The document's id.
    pub id: String,
    /// Its score under the request's mode.
    pub score: f32,
    /// Its title.
    pub title: String,
    #[schema(value_type = Object)]
    /// Its metadata.
    pub metadata: Map<String, Value>,
    /// Its best passages, best first.
    pub passages: Vec<PassageResponse>,
}

/// How many documents the search found in all.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotalResponse {
    /// The count: every BM25 match under the filter (bm25), or every document the filter
    /// allows (dense, hybrid: each has a similarity); with `min_score`, those scoring above it.
    pub value: usize,
    /// `eq` (exact) or `gte` (a lower bound: BM25 matches are counted exactly up to 10,000 per
    /// index segment; with `min_score`, every candidate ranked passed).
    pub relation: String,
}

/// One group of a `group_by` search.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupResponse {
    /// The field's value shared by the group (null: documents without the field).
    #[schema(value_type = Object)]
    pub value: Value,
    /// The group's hits (in `hits`, in this order), best first.
    pub ids: Vec<String>,
}

/// One value of a facet.
#[derive(Debug, Serialize, ToSchema)]
pub struct FacetValueResponse {
    /// The value as an equality filter matches it (numbers and booleans as JSON text).
    pub value: String,
    /// Documents holding it.
    pub count: usize,
}

/// The value counts of one metadata field.
#[derive(Debug, Serialize, ToSchema)]
pub struct FacetResponse {
    /// `matches` (every BM25 match, bm25 mode) or `candidates` (the ranked candidates, dense
    /// and hybrid modes).
    pub counted_over: String,
    /// Documents counted.
    pub documents: usize,
    /// The most frequent values (at most 100), most frequent first.
    pub values: Vec<FacetValueResponse>,
    /// Whether less frequent values were left out.
    pub truncated: bool,
}

/// Search results.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    /// The query as sent.
    pub query: String,
    /// The mode that ran.
    pub mode: SearchMode,
    /// The ranked documents, best first (with `group_by`, each group's hits in group order).
    pub hits: Vec<HitResponse>,
    /// Documents (groups with `group_by`) skipped before these hits.
    pub offset: usize,
    /// How many documents the search found in all.
    pub total: TotalResponse,
    /// The groups, with `group_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupResponse>>,
    /// The value counts of the fields named in `facets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<BTreeMap<String, FacetResponse>>,
    /// With `"cursor": true`: the cursor of the next page (absent after the last page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Time spent searching, in milliseconds.
    pub took_ms: f64,
}

/// Most passages per document a search may ask for.
pub const MAX_PASSAGES: usize = 20;

fn search_request(body: SearchBody, limits: &crate::Limits) -> Result<SearchRequest, ApiError> {
    let chars = body.query.chars().count();
    if chars > limits.max_query_chars {
        return Err(ApiError::invalid(
            "query_too_long",
            format!(
                "the query has {chars} characters; this server takes at most {}",
                limits.max_query_chars
            ),
        ));
    }
    let invalid = |message: String| Err(ApiError::invalid("invalid_field", message));
    let top_k = body.top_k.unwrap_or(10);
    if top_k == 0 || top_k > limits.max_top_k {
        return invalid(format!(
            "top_k must be between 1 and {}, not {top_k}",
            limits.max_top_k
        ));
    }
    let offset = body.offset.unwrap_or(0);
    if offset.saturating_add(top_k) > limits.max_top_k {
        return invalid(format!(
            "offset + top_k must be at most {}, not {}: page further with a narrower filter",
            limits.max_top_k,
            offset.saturating_add(top_k)
        ));
    }
    let passages = body.passages.unwrap_or(2);
    if passages > MAX_PASSAGES {
        return invalid(format!(
            "passages must be at most {MAX_PASSAGES}, not {passages}"
        ));
    }
    if body.per_group.is_some() && body.group_by.is_none() {
        return invalid("per_group needs group_by".into());
    }
    let filters = match body.filter {
        Some(object) if !object.is_empty() => vec![Filter::from_json(&Value::Object(object))
            .map_err(|e| ApiError::invalid("invalid_filter", e.to_string()))?],
        _ => Vec::new(),
    };
    let mut request = SearchRequest::new(body.query);
    request.mode = match body.mode {
        SearchMode::Bm25 => Mode::Bm25,
        SearchMode::Dense => Mode::Dense,
        SearchMode::Hybrid => Mode::Hybrid,
    };
    request.top_k = top_k;
    request.offset = offset;
    request.passages = passages;
    request.filters = filters;
    request.fusion = match body.alpha {
        Some(alpha) => Fusion::Weighted { alpha },
        None => Fusion::default(),
    };
    request.aggregation = ChunkAggregation::Max;
    request.candidates = request.candidates.max(offset + top_k);
    request.vector = body.vector;
    request.min_score = body.min_score;
    request.mmr = body.mmr.map(|mmr| Mmr {
        lambda: mmr.lambda.unwrap_or(0.5),
        fetch_k: mmr
            .fetch_k
            .unwrap_or(((offset + top_k) * 4).clamp(20, 1000)),
    });
    request.group_by = body.group_by.map(|field| GroupBy {
        field,
        per_group: body.per_group.unwrap_or(1),
    });
    request.facets = body.facets.unwrap_or_default();
    request.feedback = match body.feedback {
        Some(feedback) => Some(feedback_settings(feedback)?),
        None => None,
    };
    Ok(request)
}

/// The feedback settings of a request body, defaults filled in (the search checks ranges).
fn feedback_settings(body: FeedbackBody) -> Result<Feedback, ApiError> {
    FeedbackOptions {
        documents: body.documents,
        terms: body.terms,
        original_weight: body.original_weight,
        rocchio: body.rocchio,
        from: body.from,
    }
    .settings()
    .map_err(ApiError::from)
}

/// Searches an index.
#[utoipa::path(post, path = "/v1/indexes/{name}/search", tag = "search",
    params(("name" = String, Path)),
    request_body = SearchBody,
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "Too many cursors open (with \"cursor\": true)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<SearchResponse>, ApiError> {
    let keep_cursor = body.cursor;
    let request = search_request(body, &state.config.limits)?;
    let index = shared_index(&state, &name)?;
    let cursors = state.cursors.clone();
    let (results, next_cursor) = blocking(move || {
        let snapshot = index.snapshot();
        let embedder = index.embedder();
        if keep_cursor {
            Ok(cursors.start(&name, snapshot, Some(embedder.as_ref()), request)?)
        } else {
            Ok((
                ibex_search::search(&snapshot, Some(embedder.as_ref()), &request)?,
                None,
            ))
        }
    })
    .await?;
    Ok(Json(response(results, next_cursor)))
}

/// The next page of a search started with `"cursor": true`, from the committed state of the
/// index that search saw (writes since do not move its pages).
#[utoipa::path(post, path = "/v1/indexes/{name}/search/next", tag = "search",
    params(("name" = String, Path)),
    request_body = NextPageBody,
    responses((status = 200, body = SearchResponse),
        (status = 404, description = "No such index, or the cursor expired (5 minutes unused), ended, or never existed", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn next_page(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<NextPageBody>,
) -> Result<Json<SearchResponse>, ApiError> {
    let index = shared_index(&state, &name)?;
    let cursors = state.cursors.clone();
    let (results, next_cursor) = blocking(move || {
        let embedder = index.embedder();
        Ok(cursors.next(&name, &body.cursor, Some(embedder.as_ref()))?)
    })
    .await?;
    Ok(Json(response(results, next_cursor)))
}

fn response(results: SearchResults, next_cursor: Option<String>) -> SearchResponse {
    SearchResponse {
        query: results.query,
        mode: results.mode.into(),
        hits: results
            .hits
            .into_iter()
            .map(|hit| HitResponse {
                id: hit.id,
                score: hit.score,
                title: hit.title,
                metadata: hit.metadata,
                passages: hit
                    .passages
                    .into_iter()
                    .map(|p| PassageResponse {
                        text: p.text,
                        start: p.start,
                        end: p.end,
                        score: p.score,
                        highlights: p.highlights,
                    })
                    .collect(),
            })
            .collect(),
        offset: results.offset,
        total: TotalResponse {
            value: results.total.value,
            relation: match results.total.relation {
                TotalRelation::Eq => "eq",
                TotalRelation::Gte => "gte",
            }
            .into(),
        },
        groups: results.groups.map(|groups| {
            groups
                .into_iter()
                .map(|g| GroupResponse {
                    value: g.value,
                    ids: g.ids,
                })
                .collect()
        }),
        facets: (!results.facets.is_empty()).then(|| {
            results
                .facets
                .into_iter()
                .map(|(field, facet)| {
                    let counted_over = match facet.counted_over {
                        ibex_search::FacetScope::Matches => "matches",
                        ibex_search::FacetScope::Candidates => "candidates",
                    };
                    let values = facet
                        .values
                        .into_iter()
                        .map(|v| FacetValueResponse {
                            value: v.value,
                            count: v.count,
                        })
                        .collect();
                    (
                        field,
                        FacetResponse {
                            counted_over: counted_over.into(),
                            documents: facet.documents,
                            values,
                            truncated: facet.truncated,
                        },
                    )
                })
                .collect()
        }),
        next_cursor,
        took_ms: results.took_ms,
    }
}
