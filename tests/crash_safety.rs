//! A writer killed with SIGKILL at random moments leaves the index at one committed state.
//!
//! A child `ibex index` process indexes a corpus, committing every few documents, and is killed
//! at a random moment, again and again on the same index. The corpus alternates between versions
//! of every text, so runs replace documents as well as add them. After each kill the index must
//! open, hold exactly the documents of one committed state (the state before the run with the
//! first j commits of the run applied, for some j), and answer BM25 and dense searches.

mod common;

use std::path::Path;
use std::time::Duration;

use ibex::{Index, Mode, SearchRequest};
use rand::{Rng, SeedableRng};

const COMMIT_EVERY: usize = 8;

/// Kills of the run: 22, or `IBEX_CLI_CRASH_KILLS` (`bench/crash_matrix.sh` runs hundreds).
fn kills() -> usize {
    std::env::var("IBEX_CLI_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(22)
}

/// Texts of the corpus: the first abstracts of the Cranfield collection (real, varied text).
fn base_texts() -> Vec<(String, String)> {
    let reader = ibex_indexer::read_corpus(&common::shared("data/cranfield/beir"))
        .expect("../shared/data is present");
    reader
        .take(60)
        .map(|d| d.unwrap())
        .map(|d| (d.id, d.text))
        .collect()
}

fn write_version(path: &Path, texts: &[(String, String)], version: usize) {
    let lines: String = texts
        .iter()
        .map(|(id, text)| {
            serde_json::json!({"_id": format!("doc-{id}"), "text": format!("{text} [v{version}]")})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// Version of each document in the index (None: absent), in corpus order.
fn observed_state(index: &Index, texts: &[(String, String)]) -> Vec<Option<usize>> {
    texts
        .iter()
        .map(|(id, _)| {
            index.get_document(&format!("doc-{id}")).unwrap().map(|d| {
                let marker = d.text.rsplit("[v").next().unwrap().trim_end_matches(']');
                marker.parse::<usize>().unwrap()
            })
        })
        .collect()
}

#[test]
fn killed_writer_leaves_a_committed_state_every_time() {
    let texts = base_texts();
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let dir = temp.path().join("idx");
    let model = common::default_model();
    let seed = std::env::var("IBEX_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1be7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // The committed state before each run: the version of every document.
    let mut state: Vec<Option<usize>> = vec![None; texts.len()];
    let mut partial_states = 0;

    // How long an uninterrupted run takes on this machine now, so the kills land across runs
    // (startup, every commit, the end) however loaded the machine is.
    write_version(&corpus, &texts, 0);
    let started = std::time::Instant::now();
    let status = std::process::Command::new(common::ibex_bin())
        .args(["index"])
        .arg(&corpus)
        .arg("--index")
        .arg(temp.path().join("calibration"))
        .args(["--commit-every", &COMMIT_EVERY.to_string()])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let full_run = started.elapsed().as_secs_f64();

    for run in 0..kills() {
        let version = run % 3;
        write_version(&corpus, &texts, version);
        let mut child = std::process::Command::new(common::ibex_bin())
            .args(["index"])
            .arg(&corpus)
            .arg("--index")
            .arg(&dir)
            .args(["--commit-every", &COMMIT_EVERY.to_string()])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs_f64(full_run * rng.gen_range(0.05..1.0)));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();

        if !ibex_indexer::is_index(&dir) {
            assert!(
                state.iter().all(Option::is_none),
                "run {run}: the index vanished"
            );
            assert!(
                !dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none(),
                "run {run}: half-created index"
            );
            continue;
        }
        let index =
            Index::open(&dir).unwrap_or_else(|e| panic!("run {run}: the index does not open: {e}"));
        let observed = observed_state(&index, &texts);
        // Committed states of this run: the first j × COMMIT_EVERY documents at `version`
        // (documents already at `version` are unchanged and commit nothing, which this covers).
        let matching = (0..=texts.len().div_ceil(COMMIT_EVERY)).find(|&j| {
            let applied = (j * COMMIT_EVERY).min(texts.len());
            (0..texts.len())
                .all(|i| observed[i] == if i < applied { Some(version) } else { state[i] })
        });
        let j = matching.unwrap_or_else(|| panic!("run {run}: the index holds no committed state: {observed:?} (before: {state:?}, version {version})"));
        if j > 0 && j * COMMIT_EVERY < texts.len() {
            partial_states += 1;
        }
        state = observed;
        assert_eq!(
            index.num_documents(),
            state.iter().filter(|s| s.is_some()).count()
        );
        assert_eq!(
            index.num_chunks(),
            index
                .live_docs()
                .iter()
                .map(|d| d.chunk_count as usize)
                .sum::<usize>()
        );

        if let Some(first) = state.iter().position(Option::is_some) {
            let (id, text) = &texts[first];
            let query = format!("{text} [v{}]", state[first].unwrap());
            for mode in [Mode::Bm25, Mode::Dense] {
                let mut request = SearchRequest::new(query.clone());
                request.mode = mode;
                request.top_k = 5;
                let hits = ibex::search::search(&index, Some(model.as_ref()), &request)
                    .unwrap()
                    .hits;
                assert!(
                    hits.iter().any(|h| h.id == format!("doc-{id}")),
                    "run {run}, {mode}: a committed document is found"
                );
            }
        }
    }
    eprintln!(
        "{} kills of `ibex index`: every one left a committed state; {partial_states} landed between two commits of a run",
        kills()
    );
    // The kills landed in the middle of runs, not only before or after them.
    assert!(
        partial_states >= 3,
        "only {partial_states} kills interrupted a run between commits"
    );
}
