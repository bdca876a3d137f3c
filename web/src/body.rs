//! Request bodies, read in full before a handler runs, within the size limit and the idle
//! timeout.
//!
//! Two behaviours a client can otherwise abuse (both found by trying): a request announcing a
//! body larger than the limit was held open until that many bytes arrived, which a client that
//! sends 64 KiB and stops never does; and a client that sends half a body and stalls held its
//! connection, and kept the server from shutting down, for as long as it liked. Here the
//! announced length is checked before a byte is read (413 at once), and a body that goes
//! `body_idle_timeout` without sending anything gets 408; both close the connection.
//!
//! Reading here, outside the concurrency slots, also means a slow uploader never holds one of
//! the `max_concurrent_requests` slots that searches wait for.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::{ApiError, AppState};

/// Middleware: see the module documentation.
pub async fn read_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.config.limits.max_body_bytes;
    let idle = state.config.limits.body_idle_timeout;
    if let Some(announced) = announced_length(&request) {
        if announced > limit as u64 {
            return closing(ApiError::too_large(
                "body_too_large",
                format!(
                    "the request announces a body of {announced} bytes; this server takes at most {limit}: send smaller batches"
                ),
            ));
        }
    }
    let (parts, mut body) = request.into_parts();
    let mut collected: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return closing(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body stalled: nothing arrived for {} s after {} bytes (send the whole body promptly)",
                        idle.as_secs_f64(),
                        collected.len()
                    ),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return closing(ApiError::bad_request(
                    "malformed_body",
                    format!("the request body could not be read: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return closing(ApiError::too_large(
                    "body_too_large",
                    format!("the request body exceeds this server's {limit} bytes: send smaller batches"),
                ));
            }
            collected.extend_from_slice(&data);
        }
    }
    next.run(Request::from_parts(parts, Body::from(collected)))
        .await
}

/// The body length the request's `Content-Length` announces, if any.
fn announced_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error response after which the connection is closed: the rest of the body is never read.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
