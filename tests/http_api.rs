//! The REST API end to end: the real `ibex serve` on an ephemeral port, a real HTTP client.

mod common;
mod server;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use server::{error_code, Server};

fn docs(values: &[(&str, &str, &str)]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|(id, title, text)| json!({"id": id, "title": title, "text": text}))
            .collect(),
    )
}

fn hit_ids(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {body}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn index_lifecycle_over_http() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut server = Server::start(&data, &[]);

    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(server.get("/readyz").0, 200);
    let (status, created) = server.put(
        "/v1/indexes/books",
        // int8: every search below then ranks by codes and rescores from the segment files.
        &json!({"chunking": {"chunk_tokens": 64, "overlap_tokens": 16}, "vector_storage": "int8"}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["vector_storage"], "int8");
    assert_eq!(created["documents"], 0);
    assert_eq!(created["model"]["dimension"], 384);
    assert_eq!(created["chunking"]["chunk_tokens"], 64);

    let (status, written) = server.post(
        "/v1/indexes/books/documents",
        &json!([
            {"id": "glacier", "title": "Glaciers", "text": "Mountain glaciers retreat as summers warm and ice melts.", "metadata": {"lang": "en", "year": 2020}},
            {"_id": "espresso", "title": "Espresso", "text": "Espresso forces hot water through finely ground coffee under pressure.", "metadata": {"lang": "it"}},
        ]),
    );
    assert_eq!(status, 200, "{written}");
    assert_eq!(
        (written["added"].as_u64(), written["documents"].as_u64()),
        (Some(2), Some(2))
    );

    let ndjson = "{\"id\": \"chess\", \"title\": \"Chess\", \"text\": \"Castle early to keep the king safe.\"}\n\n{\"id\": \"glacier\", \"title\": \"Glaciers\", \"text\": \"Mountain glaciers retreat as summers warm and ice melts.\", \"metadata\": {\"lang\": \"en\", \"year\": 2020}}\n";
    let (status, written) = server.raw(
        "POST",
        "/v1/indexes/books/documents",
        "application/x-ndjson",
        ndjson.as_bytes().to_vec(),
    );
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["added"], 1);
    assert_eq!(
        written["unchanged"], 1,
        "an identical document is not re-embedded"
    );
    assert_eq!(written["chunks_embedded"], 1);

    // Written documents are searchable as soon as the write is answered.
    for mode in ["bm25", "dense", "hybrid"] {
        let (status, results) = server.post(
            "/v1/indexes/books/search",
            &json!({"query": "melting ice in the mountains", "mode": mode, "top_k": 2}),
        );
        assert_eq!(status, 200, "{results}");
        assert_eq!(hit_ids(&results)[0], "glacier", "{mode}: {results}");
        assert_eq!(results["mode"], mode);
    }
    let (_, results) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "glaciers coffee", "mode": "bm25", "passages": 1}),
    );
    let passage = &results["hits"][0]["passages"][0];
    let text: Vec<char> = passage["text"].as_str().unwrap().chars().collect();
    let highlighted: Vec<String> = passage["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| {
            let (s, e) = (
                span[0].as_u64().unwrap() as usize,
                span[1].as_u64().unwrap() as usize,
            );
            text[s..e].iter().collect()
        })
        .collect();
    assert!(
        highlighted
            .iter()
            .any(|w| w.eq_ignore_ascii_case("glaciers") || w.eq_ignore_ascii_case("coffee")),
        "{results}"
    );
    // Filters on metadata, string and number.
    let (_, filtered) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "water", "filter": {"lang": "en", "year": 2020}}),
    );
    assert_eq!(hit_ids(&filtered), ["glacier"]);
    // The operator syntax, inside retrieval in every mode.
    for mode in ["bm25", "dense", "hybrid"] {
        let (status, filtered) = server.post(
            "/v1/indexes/books/search",
            &json!({"query": "coffee water glaciers", "mode": mode,
                    "filter": {"$or": [{"year": {"$gte": 2019, "$lt": 2021}}, {"lang": {"$in": ["it"]}}],
                               "lang": {"$ne": "fr"}}}),
        );
        assert_eq!(status, 200, "{filtered}");
        let mut ids = hit_ids(&filtered);
        ids.sort();
        assert_eq!(ids, ["espresso", "glacier"], "{mode}: {filtered}");
    }
    let (status, refused) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "water", "filter": {"year": {"$gte": "soon"}}}),
    );
    assert_eq!(
        (status, error_code(&refused).as_str()),
        (422, "invalid_filter")
    );
    assert!(refused.to_string().contains("year"), "{refused}");

    // Paging, totals, facets, groups and cursors over the three documents.
    let (status, first) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "coffee king glaciers", "mode": "bm25", "top_k": 1, "cursor": true,
                "facets": ["lang"]}),
    );
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["total"], json!({"value": 3, "relation": "eq"}));
    assert_eq!(first["facets"]["lang"]["counted_over"], "matches");
    assert_eq!(
        first["facets"]["lang"]["values"],
        json!([{"value": "en", "count": 1}, {"value": "it", "count": 1}])
    );
    let (_, second_by_offset) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "coffee king glaciers", "mode": "bm25", "top_k": 1, "offset": 1}),
    );
    assert_eq!(second_by_offset["offset"], 1);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    // A write between pages does not move the cursor's pages.
    let (status, _) = server.post(
        "/v1/indexes/books/documents",
        &json!([{"id": "glaciers-2", "title": "Glaciers and coffee", "text": "Glaciers, glaciers, coffee and the king."}]),
    );
    assert_eq!(status, 200);
    let (status, second) = server.post("/v1/indexes/books/search/next", &json!({"cursor": cursor}));
    assert_eq!(status, 200, "{second}");
    assert_eq!(hit_ids(&second), hit_ids(&second_by_offset));
    assert_eq!(
        second["total"]["value"], 3,
        "the cursor's snapshot: {second}"
    );
    let (status, third) = server.post("/v1/indexes/books/search/next", &json!({"cursor": cursor}));
    assert_eq!(status, 200, "{third}");
    assert!(third.get("next_cursor").is_none(), "the last page: {third}");
    let (status, ended) = server.post("/v1/indexes/books/search/next", &json!({"cursor": cursor}));
    assert_eq!(
        (status, error_code(&ended).as_str()),
        (404, "cursor_not_found")
    );
    let (_, grouped) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "coffee king glaciers", "mode": "bm25", "group_by": "lang"}),
    );
    let values: Vec<&Value> = grouped["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["value"])
        .collect();
    assert_eq!(
        values.len(),
        3,
        "en, it and the documents without lang: {grouped}"
    );
    let (status, refused) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "water", "min_score": 0.1}),
    );
    assert_eq!(
        (status, error_code(&refused).as_str()),
        (422, "invalid_field")
    );
    assert!(
        refused.to_string().contains("reciprocal rank fusion"),
        "{refused}"
    );
    let (status, _) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "water", "mmr": {"lambda": 0.5}, "top_k": 2}),
    );
    assert_eq!(status, 200);
    let (status, expanded) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "water", "feedback": {"documents": 2, "rocchio": 0.3, "from": "fused"}}),
    );
    assert_eq!(status, 200, "{expanded}");
    assert!(!expanded["hits"].as_array().unwrap().is_empty());
    for (feedback, expected) in [
        (json!({"from": "elsewhere"}), "own` or `fused"),
        (json!({"documents": 0}), "feedback documents"),
        (json!({"weight": 0.5}), "unknown field"),
    ] {
        let (status, refused) = server.post(
            "/v1/indexes/books/search",
            &json!({"query": "water", "feedback": feedback}),
        );
        assert!(status == 422 || status == 400, "{status} {refused}");
        assert!(refused.to_string().contains(expected), "{refused}");
    }
    assert_eq!(
        server.delete("/v1/indexes/books/documents/glaciers-2").0,
        200
    );

    let (status, doc) = server.get("/v1/indexes/books/documents/espresso");
    assert_eq!(status, 200);
    assert_eq!(doc["metadata"]["lang"], "it");
    assert_eq!(doc["chunks"][0][0], 0);

    let (status, info) = server.get("/v1/indexes/books");
    assert_eq!(status, 200);
    assert_eq!(info["documents"], 3);
    assert!(info["bytes_on_disk"].as_u64().unwrap() > 0);
    assert_eq!(info["vector_storage"], "int8");
    assert!(info["vector_memory"]["vectors"].as_u64().unwrap() > 0);

    let (status, deleted) = server.delete("/v1/indexes/books/documents/espresso");
    assert_eq!((status, deleted["deleted"].as_u64()), (200, Some(1)));
    assert_eq!(server.get("/v1/indexes/books/documents/espresso").0, 404);
    assert_eq!(server.delete("/v1/indexes/books/documents/espresso").0, 404);
    let (status, deleted) = server.post(
        "/v1/indexes/books/documents/delete",
        &json!({"ids": ["chess", "never-existed"]}),
    );
    assert_eq!((status, deleted["deleted"].as_u64()), (200, Some(1)));
    let (_, results) = server.post(
        "/v1/indexes/books/search",
        &json!({"query": "coffee king glaciers"}),
    );
    assert_eq!(hit_ids(&results), ["glacier"]);

    // Restart: everything committed is still there.
    assert!(server.terminate().success());
    let server = Server::start(&data, &[]);
    let (_, list) = server.get("/v1/indexes");
    assert_eq!(list["indexes"][0]["name"], "books");
    assert_eq!(list["indexes"][0]["documents"], 1);
    assert_eq!(list["indexes"][0]["chunking"]["chunk_tokens"], 64);

    assert_eq!(server.delete("/v1/indexes/books").0, 204);
    assert_eq!(server.get("/v1/indexes/books").0, 404);
    assert!(!data.join("books").exists());
    assert_eq!(
        server.put("/v1/indexes/books", &json!({})).0,
        201,
        "the name is free again"
    );
}

#[test]
fn every_error_has_its_status_and_the_error_shape() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &temp.path().join("data"),
        &[
            "--max-body-mib",
            "1",
            "--max-batch",
            "5",
            "--max-top-k",
            "50",
            "--max-query-chars",
            "100",
        ],
    );
    assert_eq!(server.put("/v1/indexes/errs", &json!({})).0, 201);
    server.post(
        "/v1/indexes/errs/documents",
        &docs(&[("a", "Alpha", "first document")]),
    );

    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "PUT",
            "/v1/indexes/errs",
            Some(json!({})),
            409,
            "index_exists",
        ),
        (
            "PUT",
            "/v1/indexes/bad.name",
            Some(json!({})),
            422,
            "invalid_name",
        ),
        (
            "PUT",
            "/v1/indexes/x1",
            Some(json!({"chunking": {"chunk_tokens": 10, "overlap_tokens": 10}})),
            422,
            "invalid_chunking",
        ),
        (
            "PUT",
            "/v1/indexes/x2",
            Some(json!({"model": "/etc"})),
            422,
            "invalid_model",
        ),
        (
            "PUT",
            "/v1/indexes/x3",
            Some(json!({"shards": 3})),
            422,
            "invalid_field",
        ),
        (
            "PUT",
            "/v1/indexes/x4",
            Some(json!({"vector_storage": "int4"})),
            422,
            "invalid_vector_storage",
        ),
        ("GET", "/v1/indexes/missing", None, 404, "index_not_found"),
        (
            "GET",
            "/v1/indexes/errs/documents/missing",
            None,
            404,
            "document_not_found",
        ),
        (
            "POST",
            "/v1/indexes/missing/search",
            Some(json!({"query": "x"})),
            404,
            "index_not_found",
        ),
        ("GET", "/v1/nothing-here", None, 404, "route_not_found"),
        ("PATCH", "/v1/indexes/errs", None, 405, "method_not_allowed"),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": ""})),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x", "top_k": 0})),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x", "top_k": 51})),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x", "top_k": -3})),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x".repeat(101)})),
            422,
            "query_too_long",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x", "mode": "fuzzy"})),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x", "alpha": 2.0})),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x", "vector": [0.1, 0.2]})),
            422,
            "wrong_dimension",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x", "filter": {"a": [1]}})),
            422,
            "invalid_filter",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!({"query": "x", "colour": "red"})),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/search",
            Some(json!(["query"])),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/documents",
            Some(json!({"id": "a"})),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/documents",
            Some(json!([{"title": "no id"}])),
            422,
            "invalid_document",
        ),
        (
            "POST",
            "/v1/indexes/errs/documents",
            Some(json!([{"id": "e"}])),
            422,
            "invalid_document",
        ),
        (
            "POST",
            "/v1/indexes/errs/documents",
            Some(json!([{"id": "t", "text": 5}])),
            422,
            "invalid_document",
        ),
        (
            "POST",
            "/v1/indexes/errs/documents",
            Some(json!([])),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/indexes/errs/documents",
            Some(docs(&[
                ("1", "", "a"),
                ("2", "", "b"),
                ("3", "", "c"),
                ("4", "", "d"),
                ("5", "", "e"),
                ("6", "", "f"),
            ])),
            413,
            "batch_too_large",
        ),
        (
            "POST",
            "/v1/indexes/errs/documents/delete",
            Some(json!({"ids": ["1", "2", "3", "4", "5", "6"]})),
            413,
            "batch_too_large",
        ),
        (
            "POST",
            "/v1/indexes/errs/documents/delete",
            Some(json!({"ids": "a"})),
            422,
            "invalid_field",
        ),
    ];
    for (method, path, body, status, code) in &cases {
        let (got, answer) = server.call(method, path, body.as_ref(), None);
        assert_eq!(got, *status, "{method} {path} {body:?}: {answer}");
        assert_eq!(error_code(&answer), *code, "{method} {path} {body:?}");
    }

    // Malformed bodies: 400, whatever the endpoint.
    for path in [
        "/v1/indexes/errs/search",
        "/v1/indexes/errs/documents",
        "/v1/indexes/errs/documents/delete",
        "/v1/indexes/x4",
    ] {
        let method = if path == "/v1/indexes/x4" {
            "PUT"
        } else {
            "POST"
        };
        let (status, answer) =
            server.raw(method, path, "application/json", b"{\"query\": ".to_vec());
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(error_code(&answer), "malformed_body");
    }
    let (status, answer) = server.raw(
        "POST",
        "/v1/indexes/errs/documents",
        "application/x-ndjson",
        b"{\"id\": \"ok\", \"text\": \"fine\"}\nnot json\n".to_vec(),
    );
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (400, "malformed_body"),
        "{answer}"
    );
    let (status, answer) = server.raw(
        "POST",
        "/v1/indexes/errs/search",
        "text/plain",
        b"query".to_vec(),
    );
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (415, "unsupported_media_type")
    );

    // Over the body limit: 413 before anything is parsed.
    let big = format!(
        "[{{\"id\": \"big\", \"text\": \"{}\"}}]",
        "word ".repeat(300_000)
    );
    let (status, answer) = server.raw(
        "POST",
        "/v1/indexes/errs/documents",
        "application/json",
        big.into_bytes(),
    );
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (413, "body_too_large"),
        "{answer}"
    );

    // Garbage of every kind: never a 500, never a dropped connection; the index is intact after.
    let mut rng_state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let fragments: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"query\"",
        b":",
        b",",
        b"null",
        b"\xff\xfe",
        b"\"id\"",
        b"1e999",
        b"\"\\u0000\"",
    ];
    for round in 0..200 {
        let mut body = Vec::new();
        for _ in 0..(next() % 12) {
            body.extend_from_slice(fragments[(next() % fragments.len() as u64) as usize]);
        }
        let path = [
            "/v1/indexes/errs/search",
            "/v1/indexes/errs/documents",
            "/v1/indexes/errs/documents/delete",
        ][round % 3];
        let content_type = ["application/json", "application/x-ndjson"][round % 2];
        let (status, answer) = server.raw("POST", path, content_type, body.clone());
        assert!(
            (400..500).contains(&status) || status == 200,
            "{path} with {:?}: {status} {answer}",
            String::from_utf8_lossy(&body)
        );
        if status != 200 {
            error_code(&answer);
        }
    }
    let (status, answer) = server.get("/v1/indexes/errs/documents/a");
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn api_keys_and_scopes() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let reader = "reader-key-0123456789abcdef";
    let writer = "writer-key-0123456789abcdef";
    let admin = "admin-key-0123456789abcdef";
    let server = Server::start(
        &data,
        &[
            "--api-key",
            &format!("{reader}:read"),
            "--api-key",
            &format!("{writer}:write"),
            "--api-key",
            admin,
        ],
    );
    let put = |key: Option<&str>| server.call("PUT", "/v1/indexes/keyed", Some(&json!({})), key);
    let (status, answer) = put(None);
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (401, "missing_api_key")
    );
    let (status, answer) = put(Some("reader-key-0123456789abcdeX"));
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (401, "invalid_api_key")
    );
    let (status, answer) = put(Some(reader));
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (403, "insufficient_scope")
    );
    assert_eq!(put(Some(writer)).0, 201);

    let upsert = docs(&[("k1", "Keys", "Bearer tokens protect the API.")]);
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/indexes/keyed/documents",
                Some(&upsert),
                Some(reader)
            )
            .0,
        403
    );
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/indexes/keyed/documents",
                Some(&upsert),
                Some(writer)
            )
            .0,
        200
    );

    let query = json!({"query": "bearer tokens"});
    assert_eq!(
        server
            .call("POST", "/v1/indexes/keyed/search", Some(&query), None)
            .0,
        401
    );
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/indexes/keyed/search",
                Some(&query),
                Some(writer)
            )
            .0,
        403
    );
    let (status, results) = server.call(
        "POST",
        "/v1/indexes/keyed/search",
        Some(&query),
        Some(reader),
    );
    assert_eq!((status, hit_ids(&results)), (200, vec!["k1".to_string()]));
    assert_eq!(server.call("GET", "/v1/indexes", None, Some(admin)).0, 200);
    assert_eq!(server.call("GET", "/metrics", None, None).0, 401);
    assert_eq!(server.call("GET", "/metrics", None, Some(reader)).0, 200);
    // Open to all: health, readiness, the page and the API description.
    for path in ["/healthz", "/readyz", "/", "/openapi.json"] {
        assert_eq!(server.get(path).0, 200, "{path}");
    }
    assert_eq!(
        server
            .call("DELETE", "/v1/indexes/keyed", None, Some(reader))
            .0,
        403
    );
    assert_eq!(
        server
            .call("DELETE", "/v1/indexes/keyed", None, Some(admin))
            .0,
        204
    );
}

#[test]
fn without_keys_the_server_refuses_to_listen_beyond_loopback() {
    let temp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::ibex_bin())
        .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
        .arg(temp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without API keys"), "{stderr}");
    let out = std::process::Command::new(common::ibex_bin())
        .args(["serve", "--api-key", "short", "--data-dir"])
        .arg(temp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"));
}

/// Each write replaces all ten documents with a new version in one commit, so a search that saw
/// a mix of versions, or fewer than ten documents, would have seen a state that was never
/// committed.
#[test]
fn searches_during_upserts_see_only_committed_states() {
    let temp = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(&temp.path().join("data"), &[]));
    assert_eq!(server.put("/v1/indexes/live", &json!({})).0, 201);
    let version = |v: usize| {
        Value::Array(
            (0..10)
                .map(|d| {
                    json!({
                        "id": format!("doc{d}"),
                        "title": format!("Report {d}"),
                        "text": format!("Quarterly harbour report number {d}, revision {v}: shipping volumes and tides."),
                        "metadata": {"version": v},
                    })
                })
                .collect(),
        )
    };
    assert_eq!(
        server.post("/v1/indexes/live/documents", &version(0)).0,
        200
    );

    let done = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (server, done, searches) = (server.clone(), done.clone(), searches.clone());
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                let mode = ["bm25", "hybrid", "dense"][r];
                while !done.load(Ordering::Relaxed) {
                    let (status, results) = server.post(
                        "/v1/indexes/live/search",
                        &json!({"query": "harbour report shipping", "mode": mode, "top_k": 20, "passages": 1}),
                    );
                    assert_eq!(status, 200, "{results}");
                    let hits = results["hits"].as_array().unwrap();
                    assert_eq!(hits.len(), 10, "a search saw a partial state: {results}");
                    let versions: std::collections::BTreeSet<u64> = hits
                        .iter()
                        .map(|h| h["metadata"]["version"].as_u64().unwrap())
                        .collect();
                    assert_eq!(versions.len(), 1, "a search mixed commits: {versions:?}");
                    let v = *versions.iter().next().unwrap();
                    for hit in hits {
                        let passage = hit["passages"][0]["text"].as_str().unwrap();
                        assert!(passage.contains(&format!("revision {v}:")), "passage of another commit: {passage}");
                    }
                    seen.insert(v);
                    searches.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        })
        .collect();
    for v in 1..=12 {
        let (status, answer) = server.post("/v1/indexes/live/documents", &version(v));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["replaced"], 10);
        // Let the readers finish a few searches against this commit before the next one, so the
        // test sees searches overlap writes on a loaded machine and on a fast one alike.
        // A reader that stopped (a failed assertion) would never count again: its join below
        // reports why.
        let seen = searches.load(Ordering::SeqCst);
        while searches.load(Ordering::SeqCst) < seen + 3 && !readers.iter().any(|r| r.is_finished())
        {
            std::thread::yield_now();
        }
    }
    done.store(true, Ordering::Relaxed);
    let mut versions_seen = std::collections::BTreeSet::new();
    for reader in readers {
        versions_seen.extend(reader.join().expect("no reader failed"));
    }
    assert!(
        searches.load(Ordering::Relaxed) >= 10,
        "too few searches ran to tell"
    );
    assert!(
        versions_seen.len() >= 2,
        "searches never overlapped a write: {versions_seen:?}"
    );
    let (_, results) = server.post(
        "/v1/indexes/live/search",
        &json!({"query": "harbour", "top_k": 20}),
    );
    assert!(results["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["metadata"]["version"] == 12));
}

#[test]
fn a_server_killed_during_an_upsert_restarts_at_its_last_commit() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut server = Server::start(&data, &[]);
    assert_eq!(server.put("/v1/indexes/crash", &json!({})).0, 201);
    let first = docs(&[(
        "keep",
        "Kept",
        "This document was committed before the crash.",
    )]);
    assert_eq!(server.post("/v1/indexes/crash/documents", &first).0, 200);

    // A batch long enough to embed that the kill lands while it is in progress.
    let batch: Vec<Value> = (0..400)
        .map(|i| json!({"id": format!("b{i}"), "text": format!("Batch document {i}. ").repeat(40)}))
        .collect();
    let url = server.url("/v1/indexes/crash/documents");
    let sender = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(url)
            .json(&Value::Array(batch))
            .send()
            .map(|r| r.status().as_u16())
    });
    // Kill once the batch is being served (it takes seconds to embed), not after a guessed delay.
    server.wait_for_request_in_flight();
    server.kill9();
    let answered = sender.join().unwrap();
    assert!(
        answered.is_err(),
        "the batch finished before the kill ({answered:?}): make it longer"
    );

    let server = Server::start(&data, &[]);
    let (status, info) = server.get("/v1/indexes/crash");
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        info["documents"], 1,
        "the unacknowledged batch is not half there: {info}"
    );
    assert_eq!(server.get("/v1/indexes/crash/documents/keep").0, 200);
    let (_, results) = server.post(
        "/v1/indexes/crash/search",
        &json!({"query": "committed before the crash"}),
    );
    assert_eq!(hit_ids(&results), ["keep"]);
    // The write lock died with the process: the index takes writes again.
    let more = docs(&[("after", "After", "Written after the restart.")]);
    let (status, answer) = server.post("/v1/indexes/crash/documents", &more);
    assert_eq!(
        (status, answer["documents"].as_u64()),
        (200, Some(2)),
        "{answer}"
    );
}

#[test]
fn sigterm_finishes_the_write_in_flight_then_exits_cleanly() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    // A grace period longer than any machine takes to embed the batch: the write finishes.
    let mut server = Server::start(&data, &["--shutdown-grace-secs", "600"]);
    assert_eq!(server.put("/v1/indexes/grace", &json!({})).0, 201);
    let batch: Vec<Value> = (0..150)
        .map(|i| json!({"id": format!("g{i}"), "text": format!("Graceful document {i}. ").repeat(30)}))
        .collect();
    let url = server.url("/v1/indexes/grace/documents");
    let sender = std::thread::spawn(move || {
        // No client timeout (reqwest's blocking client gives up after 30 s): on a loaded
        // machine embedding the batch takes longer, and the test is about the server waiting.
        let response = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .unwrap()
            .post(url)
            .json(&Value::Array(batch))
            .send()
            .expect("the write in flight is answered");
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap())
    });
    server.wait_for_request_in_flight();
    let exit = server.terminate();
    let (status, answer) = sender.join().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["documents"], 150);
    let server = Server::start(&data, &[]);
    assert_eq!(server.get("/v1/indexes/grace").1["documents"], 150);
}

#[test]
fn metrics_count_requests_and_describe_indexes() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start(&temp.path().join("data"), &[]);
    assert_eq!(server.put("/v1/indexes/m", &json!({})).0, 201);
    server.post(
        "/v1/indexes/m/documents",
        &docs(&[("x", "X", "metrics text")]),
    );
    server.post("/v1/indexes/m/search", &json!({"query": "metrics"}));
    server.post("/v1/indexes/m/search", &json!({"query": ""}));
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for expected in [
        "ibex_http_requests_total{method=\"POST\",route=\"/v1/indexes/{name}/search\",status=\"200\"} 1",
        "ibex_http_requests_total{method=\"POST\",route=\"/v1/indexes/{name}/search\",status=\"422\"} 1",
        "ibex_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/indexes/{name}/search\",status=\"200\",le=\"+Inf\"} 1",
        "ibex_index_documents{index=\"m\"} 1",
        "ibex_embedder_queue_depth 0",
        "ibex_embedder_batch_size_count",
        "ibex_index_bytes{index=\"m\"}",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

/// The README's first command: quickstart indexes the sample corpus, prints the search page's URL,
/// serves it, and stops cleanly on Ctrl-C.
#[test]
fn quickstart_serves_the_sample_corpus_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let _ = common::default_model();
    let temp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::ibex_bin())
        .args(["quickstart", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(temp.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let page = loop {
        let line = lines
            .next()
            .expect("quickstart prints the search page's URL")
            .unwrap();
        if let Some(url) = line.strip_prefix("Search page: ") {
            break url.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    assert!(page.ends_with("/?index=quickstart"), "{page}");
    let client = reqwest::blocking::Client::new();
    let html = client.get(&page).send().unwrap().text().unwrap();
    assert!(html.contains("<title>ibex search</title>"));
    let base = page.trim_end_matches("/?index=quickstart");
    let example = &ibex::quickstart::example_queries()[1];
    let results: Value = client
        .post(format!("{base}/v1/indexes/quickstart/search"))
        .json(&json!({"query": example.query}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(hit_ids(&results)[0], example.expected, "{results}");
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "Ctrl-C ends the quickstart cleanly: {status:?}"
    );
}
