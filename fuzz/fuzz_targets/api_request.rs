//! Request bodies and paths of the REST API, through the real router (auth, body limits, JSON
//! and NDJSON parsing, validation, the handlers) over a data folder with one index on the
//! default model: search and its next pages (cursors), document upserts (JSON and NDJSON),
//! deletes, index creation, document reads by id, snapshot restores. Every answer must be a
//! success or an error of the documented shape with a 4xx or 503/507 status; never a panic or a
//! 500.
//!
//! The LLM routes (answer, recommend, chat completions) have their own target, `llm_request`,
//! whose server caps generation so that an execution stays short.
#![no_main]

use std::sync::OnceLock;

use axum::http::Method;
use ibex_fuzz::api::{check_answer, segment, ApiServer};
use ibex_fuzz::Input;
use libfuzzer_sys::fuzz_target;

fn server() -> &'static ApiServer {
    static SERVER: OnceLock<ApiServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        ApiServer::start(
            |config| {
                config.limits.max_body_bytes = 64 * 1024;
                config.limits.max_batch_documents = 8;
            },
            &[
                (Method::PUT, "/v1/indexes/fz", "{}"),
                (
                    Method::POST,
                    "/v1/indexes/fz/documents",
                    r#"[{"id": "a", "title": "Glaciers", "text": "Mountain glaciers retreat as summers warm.", "metadata": {"lang": "en"}},
                        {"id": "b", "text": "Boundary layers thicken along the wing.", "metadata": {"lang": "fr"}}]"#,
                ),
            ],
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let server = server();
    let mut input = Input::new(data);
    let route = input.byte() % 8;
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
        6 => (
            Method::POST,
            format!(
                "/v1/indexes/fz/snapshots/{}/restore",
                segment(input.until(0))
            ),
        ),
        _ => (Method::POST, "/v1/indexes/fz/search/next".to_string()),
    };
    let body = input.rest().to_vec();
    let (status, answer) = server.send(method, &path, content_type, body);
    check_answer(&path, status, &answer);
});
