//! Snapshots: taken while writes run, each holds exactly the commit it names (the acknowledged
//! writes up to its generation, none after); restored over HTTP, downloaded as tar and restored
//! with the CLI, they open as ordinary indexes with the same documents.

mod common;
mod server;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;

use serde_json::{json, Value};
use server::{error_code, Server};

/// Documents the writer thread adds, one per write (so each write is one commit).
const WRITES: usize = 24;

fn document(i: usize) -> Value {
    json!([{
        "id": format!("d{i:02}"),
        "title": format!("note {i}"),
        "text": format!("Wind tunnel measurement number {i} of the boundary layer over a flat plate."),
    }])
}

/// The ids a snapshot at `generation` must hold: those whose write committed at or before it.
fn expected_at(acks: &BTreeMap<String, u64>, generation: u64) -> Vec<String> {
    acks.iter()
        .filter(|(_, &g)| g <= generation)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Checks index `name` on `server` holds exactly `expected` of the writer's ids.
fn assert_holds(server: &Server, name: &str, expected: &[String]) {
    for i in 0..WRITES {
        let id = format!("d{i:02}");
        let (status, body) = server.get(&format!("/v1/indexes/{name}/documents/{id}"));
        let want = if expected.contains(&id) { 200 } else { 404 };
        assert_eq!(status, want, "{name}/{id}: {body}");
    }
}

fn ibex(args: &[&str]) -> std::process::Output {
    Command::new(common::ibex_bin())
        .args(args)
        .output()
        .expect("ibex runs")
}

fn ibex_ok(args: &[&str]) -> String {
    let output = ibex(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "ibex {args:?} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned() + &stderr
}

/// Stdout of `ibex info --json PATH`, parsed.
fn info_json(path: &Path) -> Value {
    let output = ibex(&["info", "--json", path_text(path)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one line of JSON")
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn snapshots_taken_during_writes_hold_exactly_their_commit() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    assert_eq!(server.put("/v1/indexes/live", &json!({})).0, 201);

    // The writer thread reports each acknowledged write's id and commit generation.
    let (acked, acks_seen) = mpsc::channel::<(String, u64)>();
    let base = server.base.clone();
    let writer = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        for i in 0..WRITES {
            let response = client
                .post(format!("{base}/v1/indexes/live/documents"))
                .json(&document(i))
                .send()
                .expect("the server answers");
            assert_eq!(response.status().as_u16(), 200);
            let body: Value = response.json().unwrap();
            let generation = body["generation"].as_u64().expect("a generation");
            acked.send((format!("d{i:02}"), generation)).unwrap();
        }
    });

    // Snapshots at three moments of the run: after the 2nd, 10th and 18th acknowledged write
    // (each while later writes are being sent).
    let mut acks = BTreeMap::new();
    let mut snapshots = Vec::new();
    for (id, generation) in acks_seen.iter() {
        acks.insert(id, generation);
        if [2, 10, 18].contains(&acks.len()) {
            let (status, body) = server.post("/v1/indexes/live/snapshots", &json!({}));
            assert_eq!(status, 201, "{body}");
            snapshots.push(body);
        }
    }
    writer.join().expect("the writer thread finished");
    assert_eq!(acks.len(), WRITES);

    let (status, listed) = server.get("/v1/indexes/live/snapshots");
    assert_eq!(status, 200);
    let listed = listed["snapshots"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 3, "{listed:?}");

    for (k, snapshot) in snapshots.iter().enumerate() {
        let name = snapshot["snapshot"].as_str().unwrap();
        let generation = snapshot["generation"].as_u64().unwrap();
        let expected = expected_at(&acks, generation);
        assert!(expected.len() >= [2, 10, 18][k], "{snapshot}");
        assert_eq!(
            snapshot["documents"].as_u64().unwrap() as usize,
            expected.len()
        );
        assert!(listed.iter().any(|l| l["snapshot"] == name));

        // Restored over HTTP: served at once, with exactly the acknowledged documents.
        let into = format!("restored{k}");
        let (status, body) = server.post(
            &format!("/v1/indexes/live/snapshots/{name}/restore"),
            &json!({"into": into}),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["documents"].as_u64().unwrap() as usize, expected.len());
        assert_eq!(body["generation"].as_u64().unwrap(), generation);
        assert_holds(&server, &into, &expected);
        let (status, hits) = server.post(
            &format!("/v1/indexes/{into}/search"),
            &json!({"query": "boundary layer measurement", "top_k": 3}),
        );
        assert_eq!(status, 200, "{hits}");
        assert!(!hits["hits"].as_array().unwrap().is_empty(), "{hits}");
        // The restored index is independent: writing to it leaves the snapshot as it was.
        let (status, _) = server.post(&format!("/v1/indexes/{into}/documents"), &document(99));
        assert_eq!(status, 200);
    }
    let (_, again) = server.get("/v1/indexes/live/snapshots");
    assert_eq!(again["snapshots"].as_array().unwrap(), &listed);

    // Downloaded as tar, unpacked and restored by the CLI: the same index.
    let last = &snapshots[2];
    let name = last["snapshot"].as_str().unwrap();
    let response = server
        .client
        .get(server.url(&format!("/v1/indexes/live/snapshots/{name}")))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let archive = response.bytes().unwrap();
    let unpacked = tempfile::tempdir().unwrap();
    tar::Archive::new(archive.as_ref())
        .unpack(unpacked.path())
        .expect("a well-formed tar archive");
    let restored = data.path().join("fromtar");
    let report = ibex_ok(&[
        "restore",
        path_text(&unpacked.path().join(name)),
        path_text(&restored),
    ]);
    assert!(report.contains("restored"), "{report}");
    let info = info_json(&restored);
    assert_eq!(info["generation"], last["generation"]);
    assert_eq!(info["documents"], last["documents"]);

    // Errors: an unknown snapshot, a name that tries to leave the directory, a restore onto an
    // existing index, a body without "into".
    let (status, body) = server.get("/v1/indexes/live/snapshots/g00000001-1");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "snapshot_not_found")
    );
    let (status, _) = server.get("/v1/indexes/live/snapshots/..%2F..%2Flive");
    assert_eq!(status, 404);
    let (status, body) = server.post(
        &format!("/v1/indexes/live/snapshots/{name}/restore"),
        &json!({"into": "restored0"}),
    );
    assert_eq!((status, error_code(&body).as_str()), (409, "index_exists"));
    let (status, _) = server.post(
        &format!("/v1/indexes/live/snapshots/{name}/restore"),
        &json!({}),
    );
    assert_eq!(status, 422);

    // Deleted: gone from the list and from downloads; the index and other snapshots stay.
    let (status, _) = server.delete(&format!("/v1/indexes/live/snapshots/{name}"));
    assert_eq!(status, 204);
    let (status, _) = server.get(&format!("/v1/indexes/live/snapshots/{name}"));
    assert_eq!(status, 404);
    let (_, after) = server.get("/v1/indexes/live/snapshots");
    assert_eq!(after["snapshots"].as_array().unwrap().len(), 2);
    assert_holds(&server, "live", &expected_at(&acks, u64::MAX));
}

#[test]
fn cli_snapshot_of_a_served_index_and_restore() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    assert_eq!(server.put("/v1/indexes/live", &json!({})).0, 201);
    for i in 0..3 {
        assert_eq!(
            server.post("/v1/indexes/live/documents", &document(i)).0,
            200
        );
    }
    let (_, index) = server.get("/v1/indexes/live");

    // Taken by another process while the server holds the index open.
    let elsewhere = tempfile::tempdir().unwrap();
    let snapshot = elsewhere.path().join("snap");
    let report = ibex_ok(&[
        "snapshot",
        path_text(&data.path().join("live")),
        path_text(&snapshot),
    ]);
    assert!(report.contains("3 documents"), "{report}");
    // The server keeps writing; the snapshot does not move.
    assert_eq!(
        server.post("/v1/indexes/live/documents", &document(3)).0,
        200
    );

    // A second snapshot to the same place is refused; so is restoring onto an existing path.
    let refused = ibex(&[
        "snapshot",
        path_text(&data.path().join("live")),
        path_text(&snapshot),
    ]);
    assert!(!refused.status.success());
    let refused = ibex(&[
        "restore",
        path_text(&snapshot),
        path_text(&data.path().join("live")),
    ]);
    assert!(!refused.status.success());
    // An index directory is not a snapshot.
    let not_snapshot = ibex(&[
        "restore",
        path_text(&data.path().join("live")),
        path_text(&elsewhere.path().join("x")),
    ]);
    let message = String::from_utf8_lossy(&not_snapshot.stderr);
    assert!(
        !not_snapshot.status.success() && message.contains("ibex snapshot"),
        "{message}"
    );

    let restored = data.path().join("restored");
    ibex_ok(&["restore", path_text(&snapshot), path_text(&restored)]);
    let info = info_json(&restored);
    assert_eq!(info["documents"], 3);
    assert_eq!(info["generation"], index["generation"]);
}
