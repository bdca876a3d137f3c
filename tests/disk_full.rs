//! A full disk during indexing is an error, and the index stays at its last commit.
//!
//! The index lives on a tiny tmpfs. This needs permission to mount (root, as on ibex's CI
//! machines); where mounting is refused the test says so and checks nothing, unless
//! IBEX_DISK_FULL_TESTS=required (as `.ci/run` sets it), where a refused mount fails the test.

mod common;
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

use ibex::{Index, IndexOptions, Mode, SearchRequest};

struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(path: &Path, size: &str) -> Option<TmpfsMount> {
        std::fs::create_dir_all(path).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| TmpfsMount(path.to_path_buf()))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `size` under `temp`, or `None` (with the notice, or the failure when required).
fn small_disk(temp: &Path, size: &str) -> Option<TmpfsMount> {
    let mount = TmpfsMount::new(&temp.join("disk"), size);
    if mount.is_none() {
        let required = std::env::var("IBEX_DISK_FULL_TESTS").is_ok_and(|v| v == "required");
        assert!(
            !required,
            "IBEX_DISK_FULL_TESTS=required but a tmpfs cannot be mounted here (run as root)"
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root; IBEX_DISK_FULL_TESTS=required makes this a failure)");
    }
    mount
}

/// The first `n` Cranfield documents as JSON values, with ids prefixed by `c`.
fn cranfield_docs(n: usize) -> Vec<serde_json::Value> {
    ibex_indexer::read_corpus(&common::shared("data/cranfield/beir"))
        .unwrap()
        .filter_map(Result::ok)
        .take(n)
        .map(|d| serde_json::json!({"_id": format!("c{}", d.id), "title": d.title, "text": d.text}))
        .collect()
}

#[test]
fn full_disk_through_the_api_is_507_and_nothing_of_the_request_is_committed() {
    let temp = tempfile::tempdir().unwrap();
    let Some(mount) = small_disk(temp.path(), "8m") else {
        return;
    };
    let data = mount.0.join("data");
    let server = server::Server::start(&data, &[]);
    assert_eq!(
        server.put("/v1/indexes/full", &serde_json::json!({})).0,
        201
    );
    let small = serde_json::json!([
        {"id": "a", "title": "Volcanoes", "text": "Magma rises through the crust and erupts as lava."},
        {"id": "b", "title": "Bread", "text": "Yeast makes dough rise."},
    ]);
    assert_eq!(server.post("/v1/indexes/full/documents", &small).0, 200);

    let free = fs_free_bytes(&mount.0);
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![0u8; free.saturating_sub(32 * 1024) as usize]).unwrap();
    let big = serde_json::Value::Array(cranfield_docs(60));
    let (status, answer) = server.post("/v1/indexes/full/documents", &big);
    assert_eq!(
        (status, server::error_code(&answer).as_str()),
        (507, "disk_full"),
        "{answer}"
    );
    let (_, info) = server.get("/v1/indexes/full");
    assert_eq!(
        info["documents"], 2,
        "nothing of the refused request: {info}"
    );
    let (status, hits) = server.post(
        "/v1/indexes/full/search",
        &serde_json::json!({"query": "lava eruption"}),
    );
    assert_eq!(
        (status, hits["hits"][0]["id"].as_str()),
        (200, Some("a")),
        "{hits}"
    );

    // Space freed: the same request succeeds, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (status, answer) = server.post("/v1/indexes/full/documents", &big);
    assert_eq!(
        (status, answer["documents"].as_u64()),
        (200, Some(62)),
        "{answer}"
    );
    drop(server);
}

#[test]
fn full_disk_fails_the_commit_and_keeps_the_last_one() {
    let temp = tempfile::tempdir().unwrap();
    let Some(mount) = small_disk(temp.path(), "4m") else {
        return;
    };
    let dir = mount.0.join("idx");
    let small = temp.path().join("small.jsonl");
    common::write_jsonl(
        &small,
        &[
            (
                "a",
                "Volcanoes",
                "Magma rises through the crust and erupts as lava.",
            ),
            ("b", "Bread", "Yeast makes dough rise."),
        ],
    );
    ibex::index_corpus(&small, &dir, &IndexOptions::default(), |_| {}).unwrap();

    // Fill the disk but for 32 KiB, then index a corpus that needs more: the commit must fail
    // with the system's error, not panic.
    let free = fs_free_bytes(&mount.0);
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![0u8; free.saturating_sub(32 * 1024) as usize]).unwrap();
    let big = temp.path().join("big.jsonl");
    let docs: Vec<String> = ibex_indexer::read_corpus(&common::shared("data/cranfield/beir"))
        .unwrap()
        .filter_map(Result::ok)
        .take(60)
        .map(|d| {
            serde_json::json!({"_id": format!("c{}", d.id), "title": d.title, "text": d.text})
                .to_string()
        })
        .collect();
    std::fs::write(&big, docs.join("\n")).unwrap();
    let err = ibex::index_corpus(&big, &dir, &IndexOptions::default(), |_| {})
        .expect_err("the disk is too small for this corpus");
    let message = err.to_string();
    eprintln!("a full disk is reported as: {message}");
    assert!(
        message.to_lowercase().contains("space") || message.contains("os error 28"),
        "{message}"
    );

    let index = Index::open(&dir).unwrap();
    assert_eq!(index.num_documents(), 2, "the index is at its last commit");
    let model = common::default_model();
    let mut request = SearchRequest::new("lava eruption");
    request.mode = Mode::Hybrid;
    assert_eq!(
        ibex::search::search(&index, Some(model.as_ref()), &request)
            .unwrap()
            .hits[0]
            .id,
        "a"
    );
    drop(index);

    // Once space is freed, the same corpus indexes into the same index.
    std::fs::remove_file(&filler).unwrap();
    ibex::index_corpus(&big, &dir, &IndexOptions::default(), |_| {}).unwrap();
    assert_eq!(Index::open(&dir).unwrap().num_documents(), 62);
}

/// Free bytes of the file system holding `path` (from `df`, to stay free of unsafe code).
fn fs_free_bytes(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}
