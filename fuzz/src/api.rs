//! The REST API in process for the request targets: the real router (auth, body limits, JSON
//! and NDJSON parsing, validation, handlers) over a temporary data folder, driven without a
//! socket, and the rule every answer must follow.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

/// A router and the runtime its handlers run on, kept for the whole fuzzing process.
pub struct ApiServer {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

impl ApiServer {
    /// A server over a fresh data folder, configured by `configure`, after the `setup` requests
    /// (method, path, JSON body) have all succeeded.
    pub fn start(
        configure: impl FnOnce(&mut ibex_web::ServerConfig),
        setup: &[(Method, &str, &str)],
    ) -> ApiServer {
        // One log line per request would dominate each execution's time.
        std::env::set_var("IBEX_LOG", "off");
        let data = tempfile::Builder::new()
            .prefix("ibex-fuzz-api")
            .tempdir()
            .expect("a temporary data folder")
            .keep();
        let mut config = ibex_web::ServerConfig::new(data);
        configure(&mut config);
        let state = ibex_web::AppState::new(config).expect("server state");
        state.open_catalog().expect("the empty data folder opens");
        let router = ibex_web::router(state);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = ApiServer { runtime, router };
        for (method, path, body) in setup {
            let (status, answer) = server.send(
                method.clone(),
                path,
                "application/json",
                body.as_bytes().to_vec(),
            );
            assert!(
                status.is_success(),
                "setting up the fuzz server: {path} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        server
    }

    /// One request through the router: its status and whole body. A path the HTTP types refuse
    /// (a client could not send it) answers 200 with no body.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>) {
        let Ok(request) = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(Body::from(body))
        else {
            return (StatusCode::OK, Vec::new());
        };
        self.runtime.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("the router's service never fails");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            (status, bytes)
        })
    }
}

/// The rule of every answer: a success, or an error of the documented JSON shape
/// (`{"error": {"code", "message"}}`) with a 4xx status or one of the documented 502 (an LLM
/// server failed), 503 (busy, locked, shutting down) and 507 (disk full); never a 500.
pub fn check_answer(path: &str, status: StatusCode, answer: &[u8]) {
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{path}: {}",
        String::from_utf8_lossy(answer)
    );
    if status.is_success() {
        return;
    }
    assert!(
        status.is_client_error()
            || status == StatusCode::BAD_GATEWAY
            || status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::INSUFFICIENT_STORAGE,
        "{path}: status {status}"
    );
    let error: serde_json::Value = serde_json::from_slice(answer)
        .unwrap_or_else(|e| panic!("{path}: {status} with a body that is not JSON ({e})"));
    assert!(
        error["error"]["code"].is_string(),
        "{path}: {status} without the error shape: {error}"
    );
    assert!(
        error["error"]["message"].is_string(),
        "{path}: {status} without a message: {error}"
    );
}

/// Bytes as a path segment: unreserved characters kept, everything else percent-encoded.
pub fn segment(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
