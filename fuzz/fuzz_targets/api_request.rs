//! Request bodies and paths of the REST API, through the real router (auth, body limits, JSON
//! and NDJSON parsing, validation, the handlers) over a data folder with one index on the
//! default model: search, document upserts (JSON and NDJSON), deletes, index creation, document
//! reads by id, snapshot restores. Every answer must be a success or an error of the documented
//! shape with a 4xx or 503/507 status; never a panic or a 500.
//!
//! The LLM routes (answer, recommend, chat completions) are left out: each execution would run
//! the language model for seconds, which fuzzing cannot afford. Their bodies go through the same
//! extractor and validation code as search.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ibex_fuzz::Input;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Server {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // One log line per request would dominate each execution's time.
        std::env::set_var("IBEX_LOG", "off");
        let data = tempfile::Builder::new()
            .prefix("ibex-fuzz-api")
            .tempdir()
            .expect("a temporary data folder")
            .keep();
        let mut config = ibex_web::ServerConfig::new(data);
        config.limits.max_body_bytes = 64 * 1024;
        config.limits.max_batch_documents = 8;
        let state = ibex_web::AppState::new(config).expect("server state");
        state.open_catalog().expect("the empty data folder opens");
        let router = ibex_web::router(state);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = Server { runtime, router };
        for (method, path, body) in [
            (Method::PUT, "/v1/indexes/fz", "{}"),
            (
                Method::POST,
                "/v1/indexes/fz/documents",
                r#"[{"id": "a", "title": "Glaciers", "text": "Mountain glaciers retreat as summers warm.", "metadata": {"lang": "en"}},
                    {"id": "b", "text": "Boundary layers thicken along the wing.", "metadata": {"lang": "fr"}}]"#,
            ),
        ] {
            let (status, _) = server.send(method, path, "application/json", body.as_bytes().to_vec());
            assert!(status.is_success(), "setting up the fuzz index: {path} answered {status}");
        }
        server
    })
}

impl Server {
    fn send(
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

/// Bytes as a path segment: unreserved characters kept, everything else percent-encoded.
fn segment(bytes: &[u8]) -> String {
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

fuzz_target!(|data: &[u8]| {
    let server = server();
    let mut input = Input::new(data);
    let route = input.byte() % 7;
    let content_type = match input.byte() % 4 {
        0 | 1 => "application/json",
        2 => "application/x-ndjson",
        _ => "text/plain",
    };
    let (method, path) = match route {
        0 => (Method::POST, "/v1/indexes/fz/search".to_string()),
        1 => (Method::POST, "/v1/indexes/fz/documents".to_string()),
        2 => (Method::POST, "/v1/indexes/fz/documents/delete".to_string()),
        3 => (Method::PUT, "/v1/indexes/fz".to_string()),
        4 => (
            Method::GET,
            format!("/v1/indexes/fz/documents/{}", segment(input.until(0))),
        ),
        5 => (
            Method::DELETE,
            format!("/v1/indexes/{}/documents/zz", segment(input.until(0))),
        ),
        _ => (
            Method::POST,
            format!(
                "/v1/indexes/fz/snapshots/{}/restore",
                segment(input.until(0))
            ),
        ),
    };
    let body = input.rest().to_vec();
    let (status, answer) = server.send(method, &path, content_type, body);
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{path}: {}",
        String::from_utf8_lossy(&answer)
    );
    if !status.is_success() {
        assert!(
            status.is_client_error()
                || status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::INSUFFICIENT_STORAGE,
            "{path}: status {status}"
        );
        let error: serde_json::Value = serde_json::from_slice(&answer)
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
});
