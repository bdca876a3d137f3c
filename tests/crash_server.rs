//! A server killed with SIGKILL at random moments keeps every write it acknowledged and nothing
//! of a write it did not, and a torn newest file never makes an index panic.
//!
//! A client writes through the REST API, one request at a time (upserts that add and replace,
//! deletes), keeping a log of what each request changed and which requests were acknowledged.
//! The server is killed at a random moment of a random request, restarted, and checked: the
//! index opens and answers searches, and every document is exactly in the state of the
//! acknowledged writes, or of those plus the one request in flight at the kill, whole.
//!
//! `IBEX_CRASH_KILLS` sets the number of kills (default 30; `bench/crash_matrix.sh` runs 1,000).

mod common;
mod server;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use server::Server;

/// Ids the client writes to: few enough that replacements and deletes hit existing documents.
const IDS: usize = 24;

/// What one write request does to the state: id -> version (`None`: deleted).
type Change = BTreeMap<String, Option<u64>>;

fn kills() -> usize {
    std::env::var("IBEX_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// The request for operation `op`, and the change it makes once committed.
fn operation(rng: &mut impl Rng, op: u64) -> (String, Value, Change) {
    let mut change = Change::new();
    if rng.gen_bool(0.25) {
        let ids: Vec<String> = (0..rng.gen_range(1..=3))
            .map(|_| format!("d{}", rng.gen_range(0..IDS)))
            .collect();
        for id in &ids {
            change.insert(id.clone(), None);
        }
        ("delete".into(), json!({"ids": ids}), change)
    } else {
        let docs: Vec<Value> = (0..rng.gen_range(1..=6))
            .map(|_| {
                let id = format!("d{}", rng.gen_range(0..IDS));
                change.insert(id.clone(), Some(op));
                // Long enough to take a few chunks, so a kill can land inside embedding.
                json!({
                    "id": id,
                    "text": format!("Version {op} of document {id}: pressure distribution over a swept wing at high subsonic speed. ").repeat(rng.gen_range(1..30)),
                    "metadata": {"version": op},
                })
            })
            .collect();
        // The last document of an id in one batch wins, as the server documents.
        ("upsert".into(), Value::Array(docs), change)
    }
}

/// The version of every id the server holds now.
fn observed(server: &Server) -> BTreeMap<String, Option<u64>> {
    (0..IDS)
        .map(|i| {
            let id = format!("d{i}");
            let (status, doc) = server.get(&format!("/v1/indexes/crash/documents/{id}"));
            let version = match status {
                200 => Some(doc["metadata"]["version"].as_u64().expect("a version")),
                404 => None,
                other => panic!("GET {id}: {other} {doc}"),
            };
            (id, version)
        })
        .collect()
}

fn apply(state: &BTreeMap<String, Option<u64>>, change: &Change) -> BTreeMap<String, Option<u64>> {
    let mut next = state.clone();
    next.extend(change.iter().map(|(k, v)| (k.clone(), *v)));
    next
}

#[test]
fn acknowledged_writes_survive_random_kills_and_unacknowledged_ones_are_whole_or_absent() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let seed: u64 = std::env::var("IBEX_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut state: BTreeMap<String, Option<u64>> =
        (0..IDS).map(|i| (format!("d{i}"), None)).collect();
    let mut op: u64 = 0;
    let (mut in_flight_applied, mut in_flight_dropped, mut acknowledged) = (0, 0, 0);
    {
        let server = Server::start(&data, &[]);
        assert_eq!(server.put("/v1/indexes/crash", &json!({})).0, 201);
    }
    let kills = kills();
    for kill in 0..kills {
        let mut server = Server::start(&data, &[]);
        // Opened at a committed state: exactly the acknowledged writes.
        assert_eq!(observed(&server), state, "kill {kill}: state after restart");
        let (status, answer) = server.post(
            "/v1/indexes/crash/search",
            &json!({"query": "pressure distribution swept wing", "top_k": 5}),
        );
        assert_eq!(status, 200, "kill {kill}: {answer}");
        let live = state.values().filter(|v| v.is_some()).count();
        assert_eq!(
            answer["hits"].as_array().unwrap().len(),
            live.min(5),
            "kill {kill}: {answer}"
        );

        // Some acknowledged writes, then one that is killed at a random moment.
        let acknowledged_before_kill = rng.gen_range(0..4);
        for _ in 0..acknowledged_before_kill {
            op += 1;
            let (kind, body, change) = operation(&mut rng, op);
            let path = if kind == "delete" {
                "/v1/indexes/crash/documents/delete"
            } else {
                "/v1/indexes/crash/documents"
            };
            let (status, answer) = server.post(path, &body);
            assert_eq!(status, 200, "kill {kill}, op {op}: {answer}");
            state = apply(&state, &change);
            acknowledged += 1;
        }
        op += 1;
        let (kind, body, change) = operation(&mut rng, op);
        let url = server.url(if kind == "delete" {
            "/v1/indexes/crash/documents/delete"
        } else {
            "/v1/indexes/crash/documents"
        });
        let sender = std::thread::spawn(move || {
            reqwest::blocking::Client::new()
                .post(url)
                .json(&body)
                .send()
                .ok()
                .map(|r| r.status().as_u16())
        });
        // A random moment: before the request arrives, while it parses, embeds or commits, or
        // after it was answered. (The delay picks the moment; nothing waits on it.)
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..400_000)));
        server.kill9();
        let answered = sender.join().unwrap();

        let server = Server::start(&data, &[]);
        let after = observed(&server);
        let with_change = apply(&state, &change);
        if answered == Some(200) {
            assert_eq!(
                after, with_change,
                "kill {kill}, op {op}: an acknowledged write was lost"
            );
            acknowledged += 1;
        } else if after == with_change && after != state {
            in_flight_applied += 1;
        } else {
            assert_eq!(
                after, state,
                "kill {kill}, op {op}: the unacknowledged write is half there (change {change:?})"
            );
            in_flight_dropped += 1;
        }
        state = after;
        drop(server);
    }
    eprintln!(
        "{kills} kills: {acknowledged} writes acknowledged and kept; of the writes in flight at a kill, {in_flight_applied} were committed whole and {in_flight_dropped} not at all"
    );
    if kills >= 20 {
        assert!(
            in_flight_dropped >= 3,
            "only {in_flight_dropped} kills landed before a write committed: the kill moments are not spread"
        );
    }
}

/// Every file an index directory holds, newest first.
fn files_newest_first(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let modified = entry.metadata().unwrap().modified().unwrap();
                files.push((modified, path));
            }
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files.into_iter().map(|(_, p)| p).collect()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_torn_newest_file_after_a_kill_gives_an_error_or_a_committed_state_never_a_panic() {
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let index = temp.path().join("idx");
    let write_round = |round: usize, ids: std::ops::Range<usize>| {
        let docs: Vec<(String, String)> = ids
            .map(|i| {
                (
                    format!("t{i}"),
                    format!(
                        "Round {round} text of document {i} on heat transfer in laminar flow. "
                    )
                    .repeat(8),
                )
            })
            .collect();
        let refs: Vec<(&str, &str, &str)> = docs
            .iter()
            .map(|(id, text)| (id.as_str(), "", text.as_str()))
            .collect();
        common::write_jsonl(&corpus, &refs);
    };
    write_round(0, 0..20);
    common::succeeded(
        std::process::Command::new(common::ibex_bin())
            .arg("index")
            .arg(&corpus)
            .arg("--index")
            .arg(&index)
            .output()
            .unwrap(),
    );
    // A second run, killed once it has committed twice: its newest files are those of its last
    // commit and of the commit it was writing.
    write_round(1, 10..200);
    let mut child = std::process::Command::new(common::ibex_bin())
        .arg("index")
        .arg(&corpus)
        .arg("--index")
        .arg(&index)
        .args(["--commit-every", "5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !index.join("manifest-00000003.json").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never committed twice"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let newest = files_newest_first(&index);
    let mut opened = 0;
    let mut refused = 0;
    for (n, file) in newest.iter().take(10).enumerate() {
        for keep in [0.0, 0.5] {
            let copy = temp.path().join(format!("torn-{n}-{}", keep > 0.0));
            copy_dir(&index, &copy);
            let torn = copy.join(file.strip_prefix(&index).unwrap());
            let length = std::fs::metadata(&torn).unwrap().len();
            let handle = std::fs::OpenOptions::new().write(true).open(&torn).unwrap();
            handle.set_len((length as f64 * keep) as u64).unwrap();
            drop(handle);
            let out = std::process::Command::new(common::ibex_bin())
                .args(["search", "--index"])
                .arg(&copy)
                .args(["--json", "heat transfer laminar flow"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{} cut to {keep} of {length} bytes", file.display());
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
            assert!(out.status.code().is_some(), "{what}: killed by a signal");
            if out.status.success() {
                let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert!(
                    !answer["hits"].as_array().unwrap().is_empty(),
                    "{what}: {answer}"
                );
                opened += 1;
            } else {
                assert!(stderr.starts_with("error:"), "{what}: {stderr}");
                eprintln!("{what}: {}", stderr.trim());
                refused += 1;
            }
        }
    }
    eprintln!(
        "torn newest files after a kill: {opened} cases still opened at a commit, {refused} refused with an error"
    );
}
