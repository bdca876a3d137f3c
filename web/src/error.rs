//! The API's one error shape, `{"error": {"code", "message"}}`, and the mapping from every
//! library error and extractor rejection to it. A client can branch on `code` (stable, snake
//! case) and show `message` (a sentence saying what to change) to a person.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ibex_embedder::EmbedderError;
use ibex_indexer::IndexError;
use ibex_search::SearchError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// A sentence for a person.
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, for example `index_not_found`.
    pub code: String,
    /// A sentence for a person: what was wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request cannot be parsed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: the request is well-formed but invalid.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 404: what the request names does not exist.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 413: the request is too large.
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// 503: the server cannot serve it now (busy, starting or stopping).
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 500: a failure the client cannot fix.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ibex\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn is_disk_full(error: &std::io::Error) -> bool {
    // ENOSPC (28) and EDQUOT (122) on Linux.
    matches!(error.raw_os_error(), Some(28) | Some(122))
        || error.kind() == std::io::ErrorKind::StorageFull
}

impl From<EmbedderError> for ApiError {
    fn from(e: EmbedderError) -> Self {
        let message = e.to_string();
        match e {
            EmbedderError::UnknownModel(_)
            | EmbedderError::Device(_)
            | EmbedderError::MissingModelFile { .. }
            | EmbedderError::InvalidModelFile { .. }
            | EmbedderError::UnsupportedArchitecture { .. } => {
                ApiError::invalid("invalid_model", message)
            }
            EmbedderError::Fetch { .. } | EmbedderError::HubDownload { .. } => {
                ApiError::unavailable("model_unavailable", message)
            }
            _ => ApiError::internal(message),
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        let message = e.to_string();
        match e {
            IndexError::UnknownIndex { .. } => ApiError::not_found("index_not_found", message),
            IndexError::UnknownSnapshot { .. } => {
                ApiError::not_found("snapshot_not_found", message)
            }
            IndexError::IndexExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "index_exists", message)
            }
            IndexError::InvalidName(_) => ApiError::invalid("invalid_name", message),
            IndexError::InvalidChunking(_) => ApiError::invalid("invalid_chunking", message),
            IndexError::WrongDimension { .. } => ApiError::invalid("wrong_dimension", message),
            IndexError::MalformedLine { .. } | IndexError::MissingText { .. } => {
                ApiError::invalid("invalid_document", message)
            }
            IndexError::ModelMismatch { .. } => ApiError::invalid("model_mismatch", message),
            IndexError::Closed { .. } => ApiError::unavailable("shutting_down", message),
            IndexError::WriteAbandoned { .. } => ApiError::unavailable("write_abandoned", message),
            IndexError::Locked { .. } => ApiError::unavailable("index_locked", message),
            IndexError::Embedder(e) => e.into(),
            IndexError::Io { ref source, .. } if is_disk_full(source) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                format!("{message}; nothing of this request was committed: free space and retry"),
            ),
            _ => ApiError::internal(message),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        let message = e.to_string();
        match e {
            SearchError::InvalidFilter(_) => ApiError::invalid("invalid_filter", message),
            SearchError::UnknownMode(_) | SearchError::InvalidRequest(_) => {
                ApiError::invalid("invalid_field", message)
            }
            SearchError::CursorNotFound(_) => ApiError::not_found("cursor_not_found", message),
            SearchError::TooManyCursors(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_cursors", message)
            }
            SearchError::Index(e) => e.into(),
            SearchError::Embedder(e) => e.into(),
            _ => ApiError::internal(message),
        }
    }
}

/// Maps axum's extractor rejections (bad JSON, wrong content type, body over the limit) into the
/// API's error shape, keeping axum's explanation.
pub fn from_rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large("body_too_large", format!("{text}: send smaller batches"))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            format!("{text} (send Content-Type: application/json)"),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid("invalid_field", text),
        _ => ApiError::bad_request("malformed_body", text),
    }
}

impl From<ibex_generator::GeneratorError> for ApiError {
    fn from(e: ibex_generator::GeneratorError) -> Self {
        use ibex_generator::GeneratorError as G;
        let message = e.to_string();
        match e {
            G::Unreachable { .. } | G::Status { .. } | G::Malformed { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "llm_failed", message)
            }
            G::Timeout { .. } => Self::new(StatusCode::GATEWAY_TIMEOUT, "llm_timeout", message),
            G::Fetch { .. } | G::ModelLoad { .. } => Self::unavailable("llm_unavailable", message),
            G::Config(_) => Self::internal(message),
            G::ContextTooLong { .. } => Self::invalid("context_too_long", message),
            G::InvalidRequest(_) => Self::invalid("invalid_request", message),
            G::Unsupported { .. } => Self::new(StatusCode::BAD_GATEWAY, "llm_unsupported", message),
            G::Inference(_) => Self::internal(message),
        }
    }
}

impl From<ibex_compressor::CompressError> for ApiError {
    fn from(e: ibex_compressor::CompressError) -> Self {
        match e {
            ibex_compressor::CompressError::Embedder(e) => e.into(),
            other => Self::invalid("invalid_request", other.to_string()),
        }
    }
}

impl From<ibex_pipeline::PipelineError> for ApiError {
    fn from(e: ibex_pipeline::PipelineError) -> Self {
        use ibex_pipeline::PipelineError as P;
        match e {
            P::Search(e) => e.into(),
            P::Index(e) => e.into(),
            P::Embedder(e) => e.into(),
            P::Compress(e) => e.into(),
            P::Generator(e) => e.into(),
            P::InvalidRequest(message) => Self::invalid("invalid_request", message),
            other @ (P::MalformedInteractions { .. } | P::Io { .. }) => Self::internal(format!(
                "the index's interaction data cannot be read: {other}"
            )),
        }
    }
}
