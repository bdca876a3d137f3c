//! A writer killed with SIGKILL at random moments leaves the index at one committed state.
//!
//! A child `ibex index` process indexes a corpus, committing every few documents, and is killed
//! at a random moment, again and again on the same index. The corpus alternates between versions
//! of every text, so runs replace documents as well as add them. After each kill the index must
//! open, hold exactly the documents of one committed state (the state before the run with the
//! first j commits of the run applied, for some j), and answer BM25 and dense searches. Segments
//! get HNSW graphs from a small size, so runs build and merge graphs; every third kill is aimed
//! at a graph build (sent as soon as a new graph-sized segment file appears, the moment its graph
//! starts being built).
//!
//! A child `ibex index-interactions` is killed at each step of its commit in turn (seen in the
//! files it writes): the index must hold the interaction data it held before or the new, whole.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use ibex::{Index, Mode, SearchRequest};
use rand::{Rng, SeedableRng};

const COMMIT_EVERY: usize = 8;
/// Segments of at least this many chunks get a graph (the default is 10,000; the corpus here
/// has about 80 chunks, so each run builds a few graphs and merges them).
const GRAPH_THRESHOLD: usize = 24;

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
    let mut aimed_kills = 0;
    let mut in_graph_build = 0;
    let mut graph_written = 0;
    let mut garbage_seen = HashSet::new();

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
        .args(["--graph-threshold", &GRAPH_THRESHOLD.to_string()])
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
            .args(["--graph-threshold", &GRAPH_THRESHOLD.to_string()])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if run % 3 == 2 {
            let before = segment_files(&dir);
            if kill_at_next_graph_build(&mut child, &dir, &before) {
                aimed_kills += 1;
            }
        } else {
            std::thread::sleep(Duration::from_secs_f64(full_run * rng.gen_range(0.05..1.0)));
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let landed = uncommitted_segments(&dir, &mut garbage_seen);
        in_graph_build += landed.in_graph_build;
        graph_written += landed.graph_written;

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
        "{} kills of `ibex index`: every one left a committed state; {partial_states} landed between two commits of a run; {aimed_kills} aimed at a graph build as it started; {in_graph_build} left a graph-sized segment without its graph (killed during the build), {graph_written} a graph written but not yet committed",
        kills()
    );
    // The kills landed in the middle of runs, not only before or after them.
    assert!(
        partial_states >= 3,
        "only {partial_states} kills interrupted a run between commits"
    );
}

/// The vector segment files (`seg-N.vec`) in the index at `dir`.
fn segment_files(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir.join("vectors"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("seg-") && n.ends_with(".vec"))
                .collect()
        })
        .unwrap_or_default()
}

/// Rows of the segment file at `path`, from its header (magic, dimension, rows).
fn segment_rows(path: &Path) -> Option<usize> {
    let bytes = std::fs::read(path).ok()?;
    let rows = u64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?);
    Some(rows as usize)
}

/// Kills `child` as soon as a graph-sized segment file not in `before` appears: the writer
/// builds its graph right after writing the vectors (the file is renamed into place whole).
/// Returns whether one appeared before the child exited.
fn kill_at_next_graph_build(
    child: &mut std::process::Child,
    dir: &Path,
    before: &HashSet<String>,
) -> bool {
    let mut checked: HashSet<String> = before.clone();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        for name in segment_files(dir) {
            if checked.insert(name.clone())
                && segment_rows(&dir.join("vectors").join(&name))
                    .is_some_and(|rows| rows >= GRAPH_THRESHOLD)
            {
                let _ = child.kill();
                return true;
            }
        }
        // Checked without pausing: a graph build of this size takes milliseconds.
        std::thread::yield_now();
    }
}

/// Where a kill landed inside a commit, seen from the files it left that no manifest names.
#[derive(Default)]
struct Landed {
    in_graph_build: usize,
    graph_written: usize,
}

/// Counts graph-sized segments that the committed manifest does not name (written by the commit
/// the kill interrupted), without or with their graph file; `seen` keeps leftovers counted once.
fn uncommitted_segments(dir: &Path, seen: &mut HashSet<String>) -> Landed {
    let mut landed = Landed::default();
    let Ok(index) = Index::open(dir) else {
        return landed;
    };
    let committed: HashSet<&str> = index
        .manifest()
        .segments
        .iter()
        .map(|s| s.file.as_str())
        .collect();
    for name in segment_files(dir) {
        if committed.contains(name.as_str()) || !seen.insert(name.clone()) {
            continue;
        }
        let path = dir.join("vectors").join(&name);
        if segment_rows(&path).is_some_and(|rows| rows >= GRAPH_THRESHOLD) {
            if path.with_extension("hnsw").exists() {
                landed.graph_written += 1;
            } else {
                landed.in_graph_build += 1;
            }
        }
    }
    landed
}

/// The steps of an interaction install a kill is aimed at, in order.
const INSTALL_STAGES: [&str; 5] = [
    "at start",
    "writing the data",
    "data written, manifest not yet",
    "manifest written, commit point not yet",
    "never (the install completes)",
];

/// Kills `child` (an `ibex index-interactions` committing `generation` into `dir`) as soon as it
/// reaches `stage` of [`INSTALL_STAGES`], seen in the files it writes (`write_durably`'s
/// temporary file, the data file, the manifest). Returns whether the stage was seen before the
/// child exited. The install takes a fraction of a second, so this checks without pausing.
fn kill_at_install_stage(
    child: &mut std::process::Child,
    dir: &Path,
    generation: u64,
    stage: usize,
) -> bool {
    let data = format!("interactions-{generation:08}.tsv");
    let manifest = format!("manifest-{generation:08}.json");
    let reached = |names: &HashSet<String>| match stage {
        0 => true,
        1 => names
            .iter()
            .any(|n| n.starts_with(&format!(".{data}.tmp-"))),
        2 => names.contains(&data),
        3 => names.contains(&manifest),
        _ => false,
    };
    loop {
        let names: HashSet<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if reached(&names) {
            let _ = child.kill(); // SIGKILL
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Runs of the interaction test: 12, or `IBEX_INTERACTION_CRASH_KILLS` (every fifth run is left
/// to complete, so the new data is seen committed as well as the old kept).
fn interaction_kills() -> usize {
    std::env::var("IBEX_INTERACTION_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

#[test]
fn killed_interaction_installs_leave_the_old_data_or_the_new() {
    use ibex::pipeline::Interactions;
    let temp = tempfile::tempdir().unwrap();
    let model = ibex_indexer::ModelInfo {
        id: "test/synthetic-4".into(),
        source: "test".into(),
        dimension: 4,
    };
    let make_index = |dir: &Path| {
        let mut index =
            Index::create(dir, model.clone(), ibex_indexer::ChunkingParams::default()).unwrap();
        let document = ibex_indexer::Document {
            id: "toy-story".into(),
            title: "Toy Story".into(),
            text: "toys come to life".into(),
            metadata: serde_json::Map::new(),
        };
        let chunks = ibex_indexer::EmbeddedChunks {
            spans: vec![ibex_indexer::ChunkSpan { start: 0, end: 17 }],
            vectors: vec![0.5; 4],
        };
        ibex_indexer::bulk::write_embedded(&mut index, &model.id, vec![(document, chunks)])
            .unwrap();
    };
    let dir = temp.path().join("idx");
    make_index(&dir);
    // Two real interaction files of different sizes (MovieLens-100k: all ratings, a test split).
    let files = [
        common::shared("data/movielens-100k/u.data.gz"),
        common::shared("data/movielens-100k/ua.test"),
    ];
    let contents: Vec<_> = files
        .iter()
        .map(|f| Interactions::read(f).unwrap().events)
        .collect();
    let install = |file: &Path, index: &Path| {
        std::process::Command::new(common::ibex_bin())
            .arg("index-interactions")
            .arg(file)
            .arg("--index")
            .arg(index)
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut state: Option<usize> = None; // which file the index holds
    let (mut replaced, mut kept) = (0, 0);
    let mut stages_reached = [0usize; INSTALL_STAGES.len()];
    for run in 0..interaction_kills() {
        let which = run % 2;
        let generation = Index::open(&dir).unwrap().manifest().generation + 1;
        let mut child = install(&files[which], &dir);
        // Each run aims at one step of the install's commit, seen in the files it leaves.
        let stage = run % INSTALL_STAGES.len();
        if kill_at_install_stage(&mut child, &dir, generation, stage) {
            stages_reached[stage] += 1;
        }
        child.wait().unwrap();

        let index =
            Index::open(&dir).unwrap_or_else(|e| panic!("run {run}: the index does not open: {e}"));
        let held = Interactions::load_for_index(&index)
            .unwrap_or_else(|e| panic!("run {run}: the interaction data cannot be read: {e}"))
            .map(|i| i.events);
        let observed = held.map(|events| {
            let matching = contents.iter().position(|c| *c == events);
            matching.unwrap_or_else(|| {
                panic!(
                    "run {run}: the index holds {} interactions that match neither file",
                    events.len()
                )
            })
        });
        assert!(
            observed == state || observed == Some(which),
            "run {run}: the index holds file {observed:?}, neither the old {state:?} nor the new {which}"
        );
        if observed == state && state != Some(which) {
            kept += 1;
        } else if observed != state {
            replaced += 1;
        }
        state = observed;
        let mut request = SearchRequest::new("toys".to_string());
        request.mode = Mode::Bm25;
        let hits = ibex::search::search(&index, None, &request).unwrap().hits;
        assert_eq!(hits.len(), 1, "run {run}: the index answers searches");
    }
    assert!(replaced > 0 && kept > 0, "both outcomes were seen");
    eprintln!(
        "{} runs of `ibex index-interactions`: the old data or the new every time ({replaced} installs committed, {kept} kept the old); kills per step reached: {:?}",
        interaction_kills(),
        INSTALL_STAGES.iter().zip(stages_reached).collect::<Vec<_>>()
    );
}
