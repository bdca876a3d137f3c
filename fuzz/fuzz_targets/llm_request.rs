//! Request bodies of the LLM routes through the real router and the real models' code: RAG
//! answers (JSON and server-sent events), recommendations over a catalog index, and
//! OpenAI-compatible chat completions (JSON and events), with the default embedder and the
//! embedded SmolLM2's loader, tokenizer and decoding loop over tiny weights (`tiny_llm`: the real
//! weights cost 116 s an answer under the fuzzer's instrumentation).
//!
//! The server caps generation at a few tokens (`max_generated_tokens`, a limit every server
//! has), so a valid request costs a prompt's prefill and a few decoding steps rather than
//! seconds; what is fuzzed is everything before and around the model: parsing, validation,
//! limits, the retrieval and compression of an answer, the candidate and grammar set-up of a
//! recommendation, chat roles and the prompt's fit in the model's context. Every answer must be a
//! success or an error of the documented shape (never a 500), and an event stream must not end
//! with an internal error.
#![no_main]

use std::sync::OnceLock;

use axum::http::{Method, StatusCode};
use ibex_fuzz::api::{check_answer, ApiServer};
use ibex_fuzz::tiny_llm::write_tiny_llm;
use ibex_fuzz::Input;
use libfuzzer_sys::fuzz_target;

/// Generated tokens per request: enough for a recommendation of one item without reasons
/// (8 + 8 tokens), so that path runs to its end, and short enough to keep executions fast.
const MAX_GENERATED_TOKENS: usize = 16;

fn server() -> &'static ApiServer {
    static SERVER: OnceLock<ApiServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        // The embedded model's code with tiny weights (see ibex_fuzz::tiny_llm), whatever the
        // environment of the run names.
        std::env::remove_var("IBEX_LLM_URL");
        let real = ibex_generator::fetch::ensure_default_llm().expect("the default LLM");
        let tiny = std::env::temp_dir().join(format!("ibex-fuzz-tiny-llm-{}.gguf", std::process::id()));
        write_tiny_llm(&real, &tiny).expect("the tiny LLM is written");
        std::env::set_var("IBEX_LLM_GGUF", &tiny);
        ApiServer::start(
            |config| {
                config.limits.max_body_bytes = 64 * 1024;
                config.limits.max_generated_tokens = MAX_GENERATED_TOKENS;
            },
            &[
                (Method::PUT, "/v1/indexes/fz", "{}"),
                (
                    Method::POST,
                    "/v1/indexes/fz/documents",
                    r#"[{"id": "a", "title": "Glaciers", "text": "Mountain glaciers retreat as summers warm. The ice of the Alps lost a tenth of its volume in two summers.", "metadata": {"genre": "science"}},
                        {"id": "b", "title": "Wings", "text": "Boundary layers thicken along the wing. Turbulence begins where the flow separates.", "metadata": {"genre": "engineering"}},
                        {"id": "c", "title": "Rivers", "text": "Deltas grow where rivers slow down and drop their sediment.", "metadata": {"genre": "science"}}]"#,
                ),
            ],
        )
    })
}

/// The events of a server-sent event stream: (event name, data).
fn events(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(rest) = line.strip_prefix("event:") {
                name = rest.trim().to_string();
            } else if let Some(rest) = line.strip_prefix("data:") {
                data.push_str(rest.trim_start());
            }
        }
        if !data.is_empty() {
            events.push((name, data));
        }
    }
    events
}

/// Starts the server and runs one answer before the first input, so that fetching and loading
/// the models is not charged to an input's timeout.
fn warm_up() {
    let (status, answer) = server().send(
        Method::POST,
        "/v1/indexes/fz/answer",
        "application/json",
        br#"{"question": "Why do glaciers retreat?"}"#.to_vec(),
    );
    assert!(
        status.is_success(),
        "warming up the fuzz server: /answer answered {status}: {}",
        String::from_utf8_lossy(&answer)
    );
}

fuzz_target!(init: warm_up(), |data: &[u8]| {
    let server = server();
    let mut input = Input::new(data);
    let path = match input.byte() % 3 {
        0 => "/v1/indexes/fz/answer",
        1 => "/v1/indexes/fz/recommend",
        _ => "/v1/chat/completions",
    };
    let content_type = if input.byte() % 8 == 0 {
        "text/plain"
    } else {
        "application/json"
    };
    let body = input.rest().to_vec();
    let (status, answer) = server.send(Method::POST, path, content_type, body);
    check_answer(path, status, &answer);
    if status == StatusCode::OK && (answer.starts_with(b"event:") || answer.starts_with(b"data:")) {
        for (name, data) in events(&answer) {
            if name == "error" {
                let error: serde_json::Value = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("{path}: an error event that is not JSON ({e})"));
                let code = error["error"]["code"].as_str();
                assert!(code.is_some(), "{path}: an error event without a code: {error}");
                assert_ne!(code, Some("internal"), "{path}: {error}");
            }
        }
    }
});
