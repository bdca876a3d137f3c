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
//! Closing a connection whose request body has not all been read makes the kernel reset it,
//! and a client still sending then sees a broken pipe instead of the 413 (reqwest did, on a
//! 1.5 MB body over a 1 MB limit). So an over-limit body is read to its end and thrown away
//! (no memory kept, the idle timeout still applies) before the 413 goes out, up to
//! [`DISCARD_AT_MOST`] bytes; a larger announced body, or one sent with
//! `Expect: 100-continue` (whose client waits for the answer before sending), is answered at
//! once.
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
    let waits_for_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if let Some(announced) = announced_length(&request) {
        if announced > limit as u64 {
            if !waits_for_continue && announced <= DISCARD_AT_MOST {
                discard(request.into_body(), idle).await;
            }
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
                discard(body, idle).await;
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

/// The most bytes of an over-limit body read (and thrown away) so that its client sees the
/// 413; beyond this, answering at once costs less than the bandwidth.
const DISCARD_AT_MOST: u64 = 64 * 1024 * 1024;

/// Reads what is left of `body` and drops it, stopping at its end, after [`DISCARD_AT_MOST`]
/// bytes, after `idle` without a byte, or on a read error.
async fn discard(mut body: Body, idle: std::time::Duration) {
    let mut read: u64 = 0;
    while read <= DISCARD_AT_MOST {
        match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    read += data.len() as u64;
                }
            }
            _ => return,
        }
    }
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
