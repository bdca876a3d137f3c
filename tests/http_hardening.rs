//! What a misbehaving or unlucky client cannot do to the server: hold a connection with a body
//! it never sends, keep the server from stopping, half-commit a write at shutdown, store an
//! unbounded id; and what operators get: request ids and log lines, commits made by the CLI
//! picked up without a restart, and a CLI that names the server holding a lock.

mod common;
mod server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use server::{error_code, Server};

/// Sends `head` (request line and headers, without the blank line) and `body` on a new
/// connection, then reads until the server closes it; returns the status and the response body.
/// The read timeout only turns a hang into a failure: a correct server answers at once.
fn raw_exchange(server: &Server, head: &str, body: &[u8]) -> (u16, String) {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream
        .write_all(format!("{head}\r\nHost: {address}\r\n\r\n").as_bytes())
        .unwrap();
    // The server may answer (and close) before taking the whole body: a failed write is fine.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buffer[..n]);
                // Stop at the end of a complete response: the status line and a JSON body.
                let text = String::from_utf8_lossy(&response);
                if let Some((_, body)) = text.split_once("\r\n\r\n") {
                    if serde_json::from_str::<Value>(body).is_ok() {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "no complete answer: {e} (got {:?})",
                String::from_utf8_lossy(&response)
            ),
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn code_of(body: &str) -> String {
    error_code(&serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}")))
}

#[test]
fn a_body_announced_over_the_limit_is_refused_before_it_is_read() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start(&temp.path().join("data"), &[]);
    assert_eq!(server.put("/v1/indexes/big", &json!({})).0, 201);
    // 300 MiB announced, 64 KiB sent: the answer must not wait for the rest.
    let (status, body) = raw_exchange(
        &server,
        "POST /v1/indexes/big/documents HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 314572800",
        &vec![b' '; 64 * 1024],
    );
    assert_eq!(
        (status, code_of(&body).as_str()),
        (413, "body_too_large"),
        "{body}"
    );
    assert!(body.contains("314572800"), "{body}");
}

#[test]
fn a_stalled_body_gets_408_and_the_server_keeps_serving() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &temp.path().join("data"),
        &["--body-idle-timeout-secs", "1"],
    );
    assert_eq!(server.put("/v1/indexes/slow", &json!({})).0, 201);
    let (status, body) = raw_exchange(
        &server,
        "POST /v1/indexes/slow/documents HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000",
        &[b' '; 500],
    );
    assert_eq!(
        (status, code_of(&body).as_str()),
        (408, "body_timeout"),
        "{body}"
    );
    assert!(body.contains("after 500 bytes"), "{body}");
    let (status, answer) = server.post("/v1/indexes/slow/search", &json!({"query": "anything"}));
    assert_eq!(status, 200, "{answer}");
}

/// A write of `n` documents long enough to embed that it is still running when the test acts.
fn long_batch(prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"id": format!("{prefix}{i}"), "text": format!("Shutdown document {i} about wing flutter. ").repeat(40)})
            })
            .collect(),
    )
}

#[test]
fn sigterm_stops_within_the_grace_period_and_abandons_the_uncommitted_write() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut server = Server::start(
        &data,
        &[
            "--shutdown-grace-secs",
            "1",
            "--body-idle-timeout-secs",
            "3600",
        ],
    );
    assert_eq!(server.put("/v1/indexes/stop", &json!({})).0, 201);
    let first = json!([{"id": "kept", "text": "Committed before the stop signal."}]);
    assert_eq!(server.post("/v1/indexes/stop/documents", &first).0, 200);

    // A client that sends half of its body and stalls (it would hold the server forever).
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stalled = TcpStream::connect(&address).unwrap();
    stalled
        .write_all(
            format!("POST /v1/indexes/stop/documents HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"id\": \"half\", ")
                .as_bytes(),
        )
        .unwrap();
    // A write that takes minutes to embed.
    let url = server.url("/v1/indexes/stop/documents");
    let batch = long_batch("long", 600);
    let writer = std::thread::spawn(move || {
        let response = reqwest::blocking::Client::new()
            .post(url)
            .json(&batch)
            .send()
            .expect("the abandoned write is answered before its connection closes");
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap())
    });
    // Both requests are in the server (the scrape asking counts itself: 3).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while server.requests_in_flight() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the requests never reached the server"
        );
    }
    let exit = server.terminate();
    assert!(exit.success(), "exit status {exit:?}");
    let (status, answer) = writer.join().unwrap();
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (503, "write_abandoned"),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing of it was committed"),
        "{answer}"
    );
    drop(stalled);

    // Nothing of the abandoned write is there; the index takes writes again.
    let server = Server::start(&data, &[]);
    let (_, info) = server.get("/v1/indexes/stop");
    assert_eq!(info["documents"], 1, "{info}");
    assert_eq!(server.get("/v1/indexes/stop/documents/long0").0, 404);
    let more = json!([{"id": "after", "text": "Written after the restart."}]);
    assert_eq!(
        server.post("/v1/indexes/stop/documents", &more).1["documents"],
        2
    );
}

#[test]
fn ids_titles_and_metadata_are_bounded_with_clear_errors() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start(&temp.path().join("data"), &["--max-metadata-keys", "8"]);
    assert_eq!(server.put("/v1/indexes/bounds", &json!({})).0, 201);
    let long_id = "i".repeat(513);
    let many_keys: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("k{i}"), json!(i))).collect();
    let cases = [
        (
            json!([{"id": long_id, "text": "x"}]),
            "513 bytes long; ids may be at most 512",
        ),
        (
            json!([{"id": "t", "title": "T".repeat(70_000), "text": "x"}]),
            "titles may be at most 65536 bytes",
        ),
        (
            json!([{"id": "m", "text": "x", "metadata": {"blob": "b".repeat(70_000)}}]),
            "at most 65536 are allowed",
        ),
        (
            json!([{"id": "k", "text": "x", "metadata": many_keys}]),
            "the metadata has 9 keys; at most 8",
        ),
    ];
    for (batch, expected) in cases {
        let (status, answer) = server.post("/v1/indexes/bounds/documents", &batch);
        assert_eq!(
            (status, error_code(&answer).as_str()),
            (422, "invalid_document"),
            "{answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
    // The largest allowed id is accepted; nothing of the refused batches was written.
    let (status, answer) = server.post(
        "/v1/indexes/bounds/documents",
        &json!([{"id": "i".repeat(512), "text": "The longest id allowed."}]),
    );
    assert_eq!(
        (status, answer["documents"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );

    // The CLI refuses the same, naming the line.
    let corpus = temp.path().join("corpus.jsonl");
    std::fs::write(
        &corpus,
        format!(
            "{}\n{}\n",
            json!({"_id": "fine", "text": "fine"}),
            json!({"_id": "i".repeat(600), "text": "too long an id"})
        ),
    )
    .unwrap();
    let out = std::process::Command::new(common::ibex_bin())
        .args(["index"])
        .arg(&corpus)
        .arg("--index")
        .arg(temp.path().join("cli-index"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("corpus.jsonl:2") && stderr.contains("ids may be at most 512 bytes"),
        "{stderr}"
    );
}

#[test]
fn every_response_has_a_request_id_and_one_log_line_without_secrets() {
    let temp = tempfile::tempdir().unwrap();
    let key = "log-test-key-0123456789abcdef";
    let (server, log) = Server::start_with_log(&temp.path().join("data"), &["--api-key", key]);
    assert_eq!(
        server
            .call("PUT", "/v1/indexes/logged", Some(&json!({})), Some(key))
            .0,
        201
    );
    let secret_query = "flutter of swept wings at transonic speed";
    let response = server
        .client
        .post(server.url("/v1/indexes/logged/search"))
        .bearer_auth(key)
        .header("x-request-id", "caller-trace-7")
        .json(&json!({"query": secret_query}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-request-id"], "caller-trace-7");
    // A refused request gets an id too (made by the server).
    let refused = server.client.get(server.url("/v1/indexes")).send().unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let made_id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!made_id.is_empty());

    let mut search_line = None;
    let mut refused_line = None;
    let mut seen = Vec::new();
    while search_line.is_none() || refused_line.is_none() {
        let line = log
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("log lines missing; saw:\n{}", seen.join("\n")));
        if line.contains("request_id=caller-trace-7") {
            search_line = Some(line.clone());
        }
        if line.contains(&format!("request_id={made_id}")) {
            refused_line = Some(line.clone());
        }
        seen.push(line);
    }
    let search_line = search_line.unwrap();
    for field in [
        "level=info",
        "method=POST",
        "route=/v1/indexes/{name}/search",
        "status=200",
        "latency_ms=",
    ] {
        assert!(
            search_line.contains(field),
            "{field} missing from {search_line}"
        );
    }
    assert!(refused_line.unwrap().contains("status=401"));
    for line in &seen {
        assert!(!line.contains(key), "a key in the log: {line}");
        assert!(!line.contains("flutter"), "query text in the log: {line}");
        assert!(
            !line.contains("/v1/indexes/logged"),
            "a raw path in the log: {line}"
        );
    }
}

#[test]
fn the_server_serves_commits_the_cli_makes_and_the_cli_names_the_server_holding_the_lock() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let server = Server::start(&data, &[]);
    assert_eq!(server.put("/v1/indexes/shared", &json!({})).0, 201);
    let first = json!([{"id": "api", "text": "Written through the API."}]);
    assert_eq!(server.post("/v1/indexes/shared/documents", &first).0, 200);

    // `ibex index` into the served index's directory while the server is idle.
    let corpus = temp.path().join("more.jsonl");
    common::write_jsonl(
        &corpus,
        &[(
            "cli",
            "From the CLI",
            "Boundary layer transition on a heated plate.",
        )],
    );
    let index_dir = data.join("shared");
    common::succeeded(
        std::process::Command::new(common::ibex_bin())
            .arg("index")
            .arg(&corpus)
            .arg("--index")
            .arg(&index_dir)
            .output()
            .unwrap(),
    );
    // The server picks the commit up by itself (it checks four times a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = server.get("/v1/indexes/shared/documents/cli");
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI's commit never became visible"
        );
        std::thread::yield_now();
    }
    let (_, hits) = server.post(
        "/v1/indexes/shared/search",
        &json!({"query": "boundary layer heated plate"}),
    );
    assert_eq!(hits["hits"][0]["id"], "cli", "{hits}");
    assert_eq!(server.get("/v1/indexes/shared").1["documents"], 2);

    // While the server writes, the CLI is refused and told which process holds the lock.
    let holder = index_dir.join(".writer-holder");
    std::fs::remove_file(&holder).unwrap();
    let url = server.url("/v1/indexes/shared/documents");
    let batch = long_batch("busy", 400);
    let _writer = std::thread::spawn(move || {
        let _ = reqwest::blocking::Client::new()
            .post(url)
            .json(&batch)
            .send();
    });
    // The holder file appears once the server has taken the lock.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&holder).is_ok_and(|t| t.contains("serve")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never took the lock"
        );
        std::thread::yield_now();
    }
    let out = std::process::Command::new(common::ibex_bin())
        .args(["delete", "--index"])
        .arg(&index_dir)
        .arg("api")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}, ibex serve", server.child.id()))
            && stderr.contains("POST /v1/indexes/NAME/documents"),
        "{stderr}"
    );
}

#[test]
fn every_route_of_the_openapi_document_checks_keys_and_scopes() {
    let temp = tempfile::tempdir().unwrap();
    let reader = "walk-reader-0123456789abcdef";
    let writer = "walk-writer-0123456789abcdef";
    let server = Server::start(
        &temp.path().join("data"),
        &[
            "--api-key",
            &format!("{reader}:read"),
            "--api-key",
            &format!("{writer}:write"),
        ],
    );
    let (status, document) = server.get("/openapi.json");
    assert_eq!(status, 200);
    let mut routes: Vec<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    routes.push(("GET".into(), "/metrics".into()));
    assert!(routes.len() >= 12, "{routes:?}");
    for (method, template) in routes {
        // An index that does not exist: a request that passes the key check does no harm.
        let path = template.replace("{name}", "absent").replace("{id}", "x");
        // Which scope the route needs, stated here independently of the server's code: reads
        // are GETs and the POSTs that only carry a query.
        let reads = method == "GET"
            || ["/search", "/answer", "/recommend", "/chat/completions"]
                .iter()
                .any(|end| path.ends_with(end));
        let (right, wrong) = if reads {
            (reader, writer)
        } else {
            (writer, reader)
        };
        let body = (method == "POST" || method == "PUT").then(|| json!({}));
        let what = format!("{method} {template}");
        let (status, answer) = server.call(&method, &path, body.as_ref(), None);
        assert_eq!(
            (status, error_code(&answer).as_str()),
            (401, "missing_api_key"),
            "{what}"
        );
        let (status, _) = server.call(
            &method,
            &path,
            body.as_ref(),
            Some("walk-nobody-0123456789abcdef"),
        );
        assert_eq!(status, 401, "{what} with an unknown key");
        let (status, answer) = server.call(&method, &path, body.as_ref(), Some(wrong));
        assert_eq!(
            (status, error_code(&answer).as_str()),
            (403, "insufficient_scope"),
            "{what} with the other scope's key"
        );
        let (status, answer) = server.call(&method, &path, body.as_ref(), Some(right));
        assert!(
            status != 401 && status != 403,
            "{what} with the right key: {status} {answer}"
        );
    }
}
