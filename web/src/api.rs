//! The `/v1` endpoints: request and response types (which generate the OpenAPI document) and
//! handlers that translate HTTP into library calls. Library work (embedding, searching,
//! committing) runs on the blocking pool, never on the async executor's threads.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ibex_indexer::{ChunkingParams, Document, IndexInfo, SharedIndex, VectorStorage, WriteReport};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::{from_rejection, ApiError, ErrorBody};
use crate::AppState;

/// A JSON body whose rejections answer in the API's error shape: 415 without a JSON content
/// type, 400 when the body is not JSON at all, 422 when it is JSON of the wrong shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            })
            .unwrap_or(false);
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let ApiBytes(body) = ApiBytes::from_request(request, state).await?;
        Ok(ApiJson(parse_json(&body)?))
    }
}

/// A raw body whose rejections (over the size limit, unreadable) answer in the API's error shape.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(ApiBytes(bytes)),
            Err(rejection) => Err(from_rejection(rejection.status(), rejection.body_text())),
        }
    }
}

/// Path parameters whose rejections answer in the API's error shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("malformed_path", rejection.body_text())
}

/// Runs library work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(ApiError::internal(format!(
            "the request's worker failed: {e}"
        ))),
    }
}

pub(crate) fn catalog(state: &AppState) -> Result<std::sync::Arc<ibex_indexer::Catalog>, ApiError> {
    state.catalog.get().cloned().ok_or_else(|| {
        ApiError::unavailable(
            "not_ready",
            "the server is still opening its indexes and models: retry shortly (GET /readyz says when it is ready)",
        )
    })
}

pub(crate) fn shared_index(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<SharedIndex>, ApiError> {
    Ok(catalog(state)?.get(name)?)
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Indexes

/// How a new index cuts documents into chunks.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkingOptions {
    /// Tokens per chunk (of the model's tokenizer). Default 200.
    pub chunk_tokens: Option<usize>,
    /// Tokens shared by consecutive chunks. Default 50.
    pub overlap_tokens: Option<usize>,
}

/// Settings of a new index.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIndexRequest {
    /// Embedding model: a model folder on the server, or the default
    /// `sentence-transformers/all-MiniLM-L6-v2`.
    pub model: Option<String>,
    /// Chunking of the index's documents (default: 200 tokens, 50 shared).
    pub chunking: Option<ChunkingOptions>,
    /// How the server holds the index's vectors in memory: `f32` (default, exact), `int8` (4x
    /// less) or `binary` (32x less); the last two rank by their codes and rescore the best
    /// candidates at full precision from disk, so scores stay exact.
    pub vector_storage: Option<String>,
}

/// The embedding model of an index.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelResponse {
    /// The model's id.
    pub id: String,
    /// How the server loads it: the default model's name or a model folder.
    pub source: String,
    /// Length of its vectors.
    pub dimension: usize,
}

/// An index and its statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexResponse {
    /// The index's name.
    pub name: String,
    /// Live documents.
    pub documents: usize,
    /// Live chunks.
    pub chunks: usize,
    /// The embedding model it was built with.
    pub model: ModelResponse,
    /// How its documents are chunked.
    pub chunking: ChunkingOptions,
    /// Commit generation the statistics describe.
    pub generation: u64,
    /// Bytes of its directory on disk.
    pub bytes_on_disk: u64,
    /// Its on-disk format version.
    pub format_version: u32,
    /// Its segments.
    pub segments: SegmentsResponse,
    /// How its vectors are held in memory: `f32`, `int8` or `binary` (the last two rescored at
    /// full precision from disk).
    pub vector_storage: String,
    /// Bytes its vector segments hold in memory.
    pub vector_memory: VectorMemoryResponse,
}

/// Memory held by an index's vector segments, in bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct VectorMemoryResponse {
    /// Vectors, or their codes.
    pub vectors: usize,
    /// HNSW graphs.
    pub graph: usize,
    /// Chunk keys.
    pub keys: usize,
}

/// The segments of an index: fewer is faster to search; merges reduce them as it grows.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentsResponse {
    /// Segments of the lexical (BM25) index.
    pub lexical: usize,
    /// Segments of vectors.
    pub vectors: usize,
    /// Vector segments with an HNSW graph (the others are scanned exactly).
    pub graphs: usize,
}

impl From<IndexInfo> for IndexResponse {
    fn from(info: IndexInfo) -> Self {
        IndexResponse {
            name: info.name,
            documents: info.documents,
            chunks: info.chunks,
            model: ModelResponse {
                id: info.model.id,
                source: info.model.source,
                dimension: info.model.dimension,
            },
            chunking: ChunkingOptions {
                chunk_tokens: Some(info.chunking.chunk_tokens),
                overlap_tokens: Some(info.chunking.overlap_tokens),
            },
            generation: info.generation,
            bytes_on_disk: info.bytes_on_disk,
            format_version: info.format_version,
            segments: SegmentsResponse {
                lexical: info.lexical_segments,
                vectors: info.vector_segments,
                graphs: info.graph_segments,
            },
            vector_storage: info.vector_storage.to_string(),
            vector_memory: VectorMemoryResponse {
                vectors: info.vector_memory.vectors,
                graph: info.vector_memory.graph,
                keys: info.vector_memory.keys,
            },
        }
    }
}

/// Every index of the server.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexList {
    /// The indexes, by name.
    pub indexes: Vec<IndexResponse>,
}

/// Creates an index.
#[utoipa::path(put, path = "/v1/indexes/{name}", tag = "indexes",
    params(("name" = String, Path, description = "1 to 64 letters, digits, '-' or '_'")),
    request_body(content = CreateIndexRequest, description = "May be empty: the default model and chunking"),
    responses(
        (status = 201, body = IndexResponse, description = "Created"),
        (status = 409, body = ErrorBody, description = "An index of that name exists"),
        (status = 422, body = ErrorBody, description = "Invalid name, model or chunking"),
    ),
    security(("bearer" = [])))]
pub async fn create_index(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiBytes(body): ApiBytes,
) -> Result<(StatusCode, Json<IndexResponse>), ApiError> {
    let request: CreateIndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateIndexRequest::default()
    } else {
        parse_json(&body)?
    };
    let catalog = catalog(&state)?;
    let model = request
        .model
        .unwrap_or_else(|| state.config.default_model.clone());
    if !state.config.allow_model_paths && model != state.config.default_model {
        return Err(ApiError::invalid(
            "invalid_model",
            format!(
                "this server builds indexes with {:?} only (start it with --allow-model-paths to accept model folders)",
                state.config.default_model
            ),
        ));
    }
    let defaults = ChunkingParams::default();
    let chunking = request.chunking.map_or(defaults, |c| ChunkingParams {
        chunk_tokens: c.chunk_tokens.unwrap_or(defaults.chunk_tokens),
        overlap_tokens: c.overlap_tokens.unwrap_or(defaults.overlap_tokens),
    });
    let vector_storage: VectorStorage = match request.vector_storage.as_deref() {
        Some(name) => name
            .parse()
            .map_err(|e: String| ApiError::invalid("invalid_vector_storage", e))?,
        None => VectorStorage::F32,
    };
    let info = blocking(move || {
        Ok(catalog
            .create(&name, &model, chunking, vector_storage)?
            .info())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// Parses a JSON body (400 when it is not JSON, 422 when it does not fit the type).
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("malformed_body", format!("the body is not valid JSON: {e}"))
    })?;
    serde_json::from_value(value).map_err(|e| ApiError::invalid("invalid_field", e.to_string()))
}

/// Lists the indexes.
#[utoipa::path(get, path = "/v1/indexes", tag = "indexes",
    responses((status = 200, body = IndexList)), security(("bearer" = [])))]
pub async fn list_indexes(State(state): State<AppState>) -> Result<Json<IndexList>, ApiError> {
    let catalog = catalog(&state)?;
    let indexes = blocking(move || {
        Ok(catalog
            .list()
            .iter()
            .map(|i| IndexResponse::from(i.info()))
            .collect())
    })
    .await?;
    Ok(Json(IndexList { indexes }))
}

/// Describes an index.
#[utoipa::path(get, path = "/v1/indexes/{name}", tag = "indexes",
    params(("name" = String, Path)),
    responses((status = 200, body = IndexResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_index(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<IndexResponse>, ApiError> {
    let index = shared_index(&state, &name)?;
    let info = blocking(move || Ok(index.info())).await?;
    Ok(Json(info.into()))
}

/// Deletes an index and its files.
#[utoipa::path(delete, path = "/v1/indexes/{name}", tag = "indexes",
    params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_index(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let catalog = catalog(&state)?;
    blocking(move || Ok(catalog.drop_index(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Documents

/// A document to index. `id` may also be given as `_id` (BEIR's name); a document needs a
/// non-empty `text` or `title`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct DocumentIn {
    /// The document's id (unique in the index; an existing id is replaced).
    pub id: String,
    /// Its title (searched with the text).
    pub title: Option<String>,
    /// Its text.
    pub text: Option<String>,
    /// Free-form JSON; every value can be filtered on (nested keys by dots), numbers and RFC 3339
    /// dates also by range.
    #[schema(value_type = Object)]
    pub metadata: Option<Map<String, Value>>,
}

/// What a committed write did. Once this answer is sent the write is durable and searchable.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteResponse {
    /// Documents whose ids were new.
    pub added: usize,
    /// Documents whose ids existed with other content (re-embedded).
    pub replaced: usize,
    /// Documents whose ids existed with the same content (skipped).
    pub unchanged: usize,
    /// Documents deleted.
    pub deleted: usize,
    /// Chunks embedded.
    pub chunks_embedded: usize,
    /// Commit generation that made the write visible.
    pub generation: u64,
    /// Documents and chunks in the index after the write.
    pub documents: usize,
    /// Live chunks after the write.
    pub chunks: usize,
    /// Time the write took, in milliseconds.
    pub took_ms: f64,
}

fn write_response(report: WriteReport, started: Instant) -> WriteResponse {
    WriteResponse {
        added: report.added,
        replaced: report.replaced,
        unchanged: report.unchanged,
        deleted: report.deleted,
        chunks_embedded: report.chunks_embedded,
        generation: report.generation,
        documents: report.documents,
        chunks: report.chunks,
        took_ms: millis(started),
    }
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let v = v.split(';').next().unwrap_or("").trim();
            v.eq_ignore_ascii_case("application/x-ndjson")
                || v.eq_ignore_ascii_case("application/jsonl")
        })
        .unwrap_or(false)
}

/// Parses an upsert body into documents, naming the first bad one by position (and line, for
/// NDJSON). Nothing is written unless every document is valid.
fn parse_documents(
    body: &[u8],
    ndjson: bool,
    max_batch: usize,
    limits: &ibex_indexer::DocumentLimits,
) -> Result<Vec<Document>, ApiError> {
    let too_many = |n: usize| {
        ApiError::too_large(
            "batch_too_large",
            format!("{n} documents in one batch; this server takes at most {max_batch}: split the batch"),
        )
    };
    let values: Vec<(String, Value)> = if ndjson {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("malformed_body", "the NDJSON body is not UTF-8"))?;
        let mut values = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if values.len() == max_batch {
                return Err(too_many(
                    text.lines().filter(|l| !l.trim().is_empty()).count(),
                ));
            }
            let value: Value = serde_json::from_str(line).map_err(|e| {
                ApiError::bad_request(
                    "malformed_body",
                    format!("line {}: not valid JSON: {e}", n + 1),
                )
            })?;
            values.push((format!("line {}", n + 1), value));
        }
        values
    } else {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "malformed_body",
                format!("the body is not valid JSON: {e} (send a JSON array of documents, or NDJSON with Content-Type: application/x-ndjson)"),
            )
        })?;
        let Value::Array(items) = value else {
            return Err(ApiError::invalid(
                "invalid_field",
                "the body must be a JSON array of documents",
            ));
        };
        if items.len() > max_batch {
            return Err(too_many(items.len()));
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("document {i}"), v))
            .collect()
    };
    if values.is_empty() {
        return Err(ApiError::invalid(
            "invalid_field",
            "the batch holds no documents",
        ));
    }
    values
        .into_iter()
        .map(|(position, value)| {
            Document::from_json_within(value, limits).map_err(|problem| {
                let reason = match problem {
                    ibex_indexer::corpus::DocumentProblem::Malformed(reason) => reason,
                    ibex_indexer::corpus::DocumentProblem::MissingText(id) => format!(
                        "document {id:?} has neither text nor title: there is nothing to index"
                    ),
                };
                ApiError::invalid("invalid_document", format!("{position}: {reason}"))
            })
        })
        .collect()
}

/// Adds or replaces a batch of documents and commits it.
#[utoipa::path(post, path = "/v1/indexes/{name}/documents", tag = "documents",
    params(("name" = String, Path)),
    request_body(content(
        (Vec<DocumentIn> = "application/json"),
        (DocumentIn = "application/x-ndjson")),
        description = "A JSON array of documents, or one document per line (NDJSON)"),
    responses(
        (status = 200, body = WriteResponse, description = "Committed and searchable"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upsert_documents(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<WriteResponse>, ApiError> {
    let started = Instant::now();
    let index = shared_index(&state, &name)?;
    let max_batch = state.config.limits.max_batch_documents;
    let document_limits = state.config.limits.documents;
    let ndjson = is_ndjson(&headers);
    let report = blocking(move || {
        let docs = parse_documents(&body, ndjson, max_batch, &document_limits)?;
        Ok(index.upsert(docs)?)
    })
    .await?;
    Ok(Json(write_response(report, started)))
}

/// A stored document.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentResponse {
    /// The document's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its text.
    pub text: String,
    #[schema(value_type = Object)]
    /// Its metadata, as given.
    pub metadata: Map<String, Value>,
    /// Its chunks as `[start, end)` character offsets into `text`.
    pub chunks: Vec<[usize; 2]>,
}

/// Reads a document.
#[utoipa::path(get, path = "/v1/indexes/{name}/documents/{id}", tag = "documents",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = DocumentResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_document(
    State(state): State<AppState>,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<Json<DocumentResponse>, ApiError> {
    let index = shared_index(&state, &name)?;
    let doc = blocking(move || {
        index.get(&id)?.ok_or_else(|| {
            ApiError::not_found(
                "document_not_found",
                format!("index {name:?} has no document {id:?}"),
            )
        })
    })
    .await?;
    Ok(Json(DocumentResponse {
        id: doc.id,
        title: doc.title,
        text: doc.text,
        metadata: doc.metadata,
        chunks: doc.chunks.iter().map(|c| [c.start, c.end]).collect(),
    }))
}

/// Deletes a document and commits.
#[utoipa::path(delete, path = "/v1/indexes/{name}/documents/{id}", tag = "documents",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = WriteResponse), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_document(
    State(state): State<AppState>,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<Json<WriteResponse>, ApiError> {
    let started = Instant::now();
    let index = shared_index(&state, &name)?;
    let report = blocking(move || {
        let report = index.delete(&[id.as_str()])?;
        if report.deleted == 0 {
            return Err(ApiError::not_found(
                "document_not_found",
                format!("index {name:?} has no document {id:?}"),
            ));
        }
        Ok(report)
    })
    .await?;
    Ok(Json(write_response(report, started)))
}

/// Ids of documents to delete.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteDocumentsRequest {
    /// The ids (unknown ids are ignored and not counted).
    pub ids: Vec<String>,
}

/// Deletes a batch of documents and commits; ids that do not exist are not an error (the
/// answer counts those that did).
#[utoipa::path(post, path = "/v1/indexes/{name}/documents/delete", tag = "documents",
    params(("name" = String, Path)),
    request_body = DeleteDocumentsRequest,
    responses((status = 200, body = WriteResponse), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_documents(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<DeleteDocumentsRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    let started = Instant::now();
    let max_batch = state.config.limits.max_batch_documents;
    if request.ids.len() > max_batch {
        return Err(ApiError::too_large(
            "batch_too_large",
            format!(
                "{} ids in one batch; this server takes at most {max_batch}",
                request.ids.len()
            ),
        ));
    }
    let index = shared_index(&state, &name)?;
    let report = blocking(move || {
        let ids: Vec<&str> = request.ids.iter().map(String::as_str).collect();
        Ok(index.delete(&ids)?)
    })
    .await?;
    Ok(Json(write_response(report, started)))
}

/// Answers unknown routes in the API's error shape.
pub async fn not_found(request: Request) -> Response {
    ApiError::not_found(
        "route_not_found",
        format!(
            "no route {} {}: see GET /openapi.json for the API",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}

/// Answers a known path with the wrong method.
pub async fn method_not_allowed(request: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}: see GET /openapi.json for the API",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}
