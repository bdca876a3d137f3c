//! Indexing, reopening, incremental updates, and the errors users meet on bad input.

mod common;

use std::path::Path;

use ibex::search::{search, Filter, SearchError};
use ibex::{IbexError, Index, IndexOptions, Mode, SearchRequest};
use ibex_indexer::IndexError;

fn ids(index: &Index, query: &str, mode: Mode) -> Vec<String> {
    hits(index, query, mode)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

fn hits(index: &Index, query: &str, mode: Mode) -> Vec<(String, f32)> {
    let model = common::default_model();
    let mut request = SearchRequest::new(query);
    request.mode = mode;
    search(index, Some(model.as_ref()), &request)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.id, h.score))
        .collect()
}

fn options() -> IndexOptions {
    IndexOptions {
        commit_every: 2,
        batch_size: 2,
        ..IndexOptions::default()
    }
}

const DOCS: &[(&str, &str, &str)] = &[
    (
        "volcano",
        "Volcanoes",
        "Magma rises through the crust and erupts as lava, ash and gas from a volcano.",
    ),
    (
        "bread",
        "Bread",
        "Yeast ferments the sugars in dough, producing carbon dioxide that makes bread rise.",
    ),
    (
        "chess",
        "Chess",
        "Each player starts with sixteen pieces; the goal is to checkmate the opposing king.",
    ),
    (
        "tides",
        "Tides",
        "The gravitational pull of the Moon raises two bulges in the oceans, causing tides.",
    ),
];

#[test]
fn index_reopen_update_delete() {
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let dir = temp.path().join("idx");
    common::write_jsonl(&corpus, DOCS);
    let report = ibex::index_corpus(&corpus, &dir, &options(), |_| {}).unwrap();
    assert_eq!(
        (report.added, report.documents_in_index, report.commits),
        (4, 4, 2)
    );

    let index = Index::open(&dir).unwrap();
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        assert_eq!(
            ids(&index, "the Moon pulls the oceans", mode)[0],
            "tides",
            "{mode}"
        );
    }
    let before: Vec<Vec<String>> = [Mode::Bm25, Mode::Dense, Mode::Hybrid]
        .iter()
        .map(|&m| ids(&index, "dough fermentation", m))
        .collect();
    drop(index);

    // Reopened: same results.
    let index = Index::open(&dir).unwrap();
    let after: Vec<Vec<String>> = [Mode::Bm25, Mode::Dense, Mode::Hybrid]
        .iter()
        .map(|&m| ids(&index, "dough fermentation", m))
        .collect();
    assert_eq!(before, after);
    drop(index);

    // Re-indexing the same corpus embeds nothing.
    let report = ibex::index_corpus(&corpus, &dir, &options(), |_| {}).unwrap();
    assert_eq!(
        (report.unchanged, report.chunks_embedded, report.commits),
        (4, 0, 0)
    );

    // Replace one document and add one.
    common::write_jsonl(
        &corpus,
        &[
            (
                "chess",
                "Go",
                "Go is played with black and white stones on a nineteen by nineteen grid.",
            ),
            (
                "rust",
                "Rust",
                "Iron oxide forms when iron reacts with oxygen and moisture.",
            ),
        ],
    );
    let report = ibex::index_corpus(&corpus, &dir, &options(), |_| {}).unwrap();
    assert_eq!(
        (report.added, report.replaced, report.documents_in_index),
        (1, 1, 5)
    );
    let check_updated = |index: &Index| {
        assert_eq!(index.get_document("chess").unwrap().unwrap().title, "Go");
        for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
            assert_eq!(
                ids(index, "stones on a grid board game", mode)[0],
                "chess",
                "{mode}"
            );
            assert_eq!(ids(index, "corrosion of iron", mode)[0], "rust", "{mode}");
        }
        // The replaced text is gone from BM25 entirely.
        assert!(!ids(index, "checkmate", Mode::Bm25).contains(&"chess".to_string()));
    };
    check_updated(&Index::open(&dir).unwrap());

    // Delete.
    assert_eq!(
        ibex::delete_documents(&dir, &["volcano", "no-such-id"]).unwrap(),
        1
    );
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.num_documents(), 4);
    assert!(index.get_document("volcano").unwrap().is_none());
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        assert!(
            !ids(&index, "lava eruption magma", mode).contains(&"volcano".to_string()),
            "{mode}"
        );
    }
    check_updated(&index);
}

/// The same lifecycle with every segment large enough for an HNSW graph: graphs are written,
/// reloaded, searched under tombstones, and rewritten when too many of their rows are dead.
#[test]
fn graph_segments_survive_updates_deletes_and_reopen() {
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let dir = temp.path().join("idx");
    let options = IndexOptions {
        graph_threshold: 2,
        ..options()
    };
    common::write_jsonl(&corpus, DOCS);
    ibex::index_corpus(&corpus, &dir, &options, |_| {}).unwrap();
    let index = Index::open(&dir).unwrap();
    assert!(
        index.manifest().segments.iter().any(|s| s.has_graph()),
        "{:?}",
        index.manifest().segments
    );
    assert_eq!(
        ids(&index, "the Moon pulls the oceans", Mode::Dense)[0],
        "tides"
    );
    drop(index);

    common::write_jsonl(
        &corpus,
        &[
            (
                "tides",
                "Tides",
                "Spring tides happen at full and new moon.",
            ),
            (
                "bread",
                "Pastry",
                "Laminated dough with butter makes croissants flaky.",
            ),
        ],
    );
    ibex::index_corpus(&corpus, &dir, &options, |_| {}).unwrap();
    ibex::delete_documents(&dir, &["chess"]).unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.num_documents(), 3);
    assert_eq!(ids(&index, "flaky croissants", Mode::Dense)[0], "bread");
    assert_eq!(
        ids(&index, "full moon spring tide", Mode::Dense)[0],
        "tides"
    );
    assert!(!ids(&index, "checkmate the opposing king", Mode::Dense).contains(&"chess".to_string()));
    // Replaced and deleted rows were dropped by rewrites: no segment keeps most of its rows dead.
    assert_eq!(index.num_chunks(), 3);
    let rows: usize = index.manifest().segments.iter().map(|s| s.rows).sum();
    assert!(
        rows as f64 * 0.7 <= index.num_chunks() as f64,
        "{rows} rows kept for 3 live chunks"
    );
    // Files of segments merged away are gone (a graph segment is its vectors plus its graph).
    let files = std::fs::read_dir(dir.join("vectors")).unwrap().count();
    let expected: usize = index
        .manifest()
        .segments
        .iter()
        .map(|s| if s.has_graph() { 2 } else { 1 })
        .sum();
    assert_eq!(files, expected);
}

/// An index switched to int8 or binary vectors rewrites no segment, holds less, and ranks and
/// scores as at full precision (on a corpus this small every candidate is rescored); updates
/// and merges of quantized segments read the full vectors back from their files.
#[test]
fn quantized_vector_storage_switches_without_rewriting_and_ranks_as_full_precision() {
    use ibex::indexer::VectorStorage;
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let dir = temp.path().join("idx");
    let options = |storage: Option<VectorStorage>| IndexOptions {
        graph_threshold: 2,
        vector_storage: storage,
        ..options()
    };
    let queries = [
        ("the Moon pulls the oceans", Mode::Dense),
        ("yeast and dough", Mode::Hybrid),
        ("opposing king", Mode::Dense),
    ];
    common::write_jsonl(&corpus, DOCS);
    ibex::index_corpus(&corpus, &dir, &options(None), |_| {}).unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.manifest().vector_storage, VectorStorage::F32);
    let full: Vec<_> = queries.iter().map(|(q, m)| hits(&index, q, *m)).collect();
    let full_memory = index.vector_memory().vectors;
    let segments = index.manifest().segments.clone();
    drop(index);

    for storage in [VectorStorage::Int8, VectorStorage::Binary] {
        // The corpus is unchanged: the commit records the setting and nothing else.
        let report = ibex::index_corpus(&corpus, &dir, &options(Some(storage)), |_| {}).unwrap();
        assert_eq!((report.unchanged, report.commits), (DOCS.len(), 1));
        let index = Index::open(&dir).unwrap();
        assert_eq!(index.manifest().vector_storage, storage);
        assert_eq!(index.manifest().segments, segments, "{storage}");
        // A byte or a bit per dimension, plus int8's ranges (two floats a dimension a segment).
        let expected = match storage {
            VectorStorage::Int8 => full_memory / 4 + segments.len() * 384 * 8,
            _ => full_memory / 32,
        };
        assert_eq!(index.vector_memory().vectors, expected, "{storage}");
        let quantized: Vec<_> = queries.iter().map(|(q, m)| hits(&index, q, *m)).collect();
        assert_eq!(quantized, full, "{storage}");
        let key = index.doc_chunks("tides").unwrap().chunk_base;
        assert_eq!(index.chunk_vector(key).unwrap().unwrap().len(), 384);
    }

    // Updates and deletes on binary storage: merged segments are written from the files.
    common::write_jsonl(
        &corpus,
        &[(
            "tides",
            "Tides",
            "Spring tides happen at full and new moon.",
        )],
    );
    ibex::index_corpus(&corpus, &dir, &options(None), |_| {}).unwrap();
    ibex::delete_documents(&dir, &["chess"]).unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.manifest().vector_storage, VectorStorage::Binary);
    assert_eq!(index.num_documents(), 3);
    assert_eq!(
        ids(&index, "full moon spring tide", Mode::Dense)[0],
        "tides"
    );
    assert!(!ids(&index, "checkmate the opposing king", Mode::Dense).contains(&"chess".to_string()));
    let binary = hits(&index, "bread rises", Mode::Dense);
    drop(index);
    ibex::index_corpus(&corpus, &dir, &options(Some(VectorStorage::F32)), |_| {}).unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.manifest().vector_storage, VectorStorage::F32);
    assert_eq!(hits(&index, "bread rises", Mode::Dense), binary);
}

#[test]
fn long_documents_are_chunked_with_offsets_and_filters_apply() {
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let filler =
        "The committee reviewed the quarterly budget and discussed staffing for the new office. "
            .repeat(40);
    let long_text = format!(
        "{filler}Penguins huddle together through the Antarctic winter to stay warm. {filler}"
    );
    let docs = [
        serde_json::json!({"_id": "minutes", "title": "Meeting minutes", "text": long_text, "metadata": {"kind": "minutes", "year": 2023}}),
        serde_json::json!({"_id": "birds", "title": "Birds", "text": "Emperor penguins breed in the coldest environment of any bird.", "metadata": {"kind": "article", "year": 2021}}),
    ];
    std::fs::write(
        &corpus,
        docs.iter()
            .map(|d| d.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let dir = temp.path().join("idx");
    ibex::index_corpus(&corpus, &dir, &IndexOptions::default(), |_| {}).unwrap();
    let index = Index::open(&dir).unwrap();
    let stored = index.get_document("minutes").unwrap().unwrap();
    assert!(
        stored.chunks.len() >= 4,
        "a ~1,900-token document is cut into several 200-token chunks"
    );
    assert_eq!(stored.chunks[0].start, 0);
    assert_eq!(stored.chunks.last().unwrap().end, long_text.chars().count());

    let model = common::default_model();
    let mut request = SearchRequest::new("penguins keeping warm in winter");
    request.filters = vec!["kind=minutes".parse::<Filter>().unwrap()];
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        request.mode = mode;
        let results = search(&index, Some(model.as_ref()), &request).unwrap();
        assert_eq!(
            results.hits.len(),
            1,
            "{mode}: the filter keeps only the minutes"
        );
        let passage = &results.hits[0].passages[0];
        assert!(
            passage.text.contains("Penguins huddle"),
            "{mode}: best passage is the one about penguins"
        );
        let from_offsets: String = long_text
            .chars()
            .skip(passage.start)
            .take(passage.end - passage.start)
            .collect();
        assert_eq!(
            from_offsets, passage.text,
            "offsets point into the document text"
        );
    }
    request.filters = vec!["year=2021".parse().unwrap()];
    request.mode = Mode::Hybrid;
    assert_eq!(
        search(&index, Some(model.as_ref()), &request).unwrap().hits[0].id,
        "birds"
    );
    request.filters = vec!["kind=none".parse().unwrap()];
    assert!(search(&index, Some(model.as_ref()), &request)
        .unwrap()
        .hits
        .is_empty());
}

#[test]
fn malformed_line_is_reported_with_its_line_number_and_changes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let dir = temp.path().join("idx");
    common::write_jsonl(&corpus, &DOCS[..2]);
    ibex::index_corpus(&corpus, &dir, &options(), |_| {}).unwrap();
    let manifest_before = Index::open(&dir).unwrap().manifest().clone();

    let good = serde_json::json!({"_id": "new", "text": "a new document"}).to_string();
    std::fs::write(
        &corpus,
        format!("{good}\n{good}\n{{\"_id\": \"broken\", \"text\": \n"),
    )
    .unwrap();
    let err = ibex::index_corpus(&corpus, &dir, &options(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("corpus.jsonl:3"), "{err}");
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.manifest(), &manifest_before);
    assert_eq!(index.num_documents(), 2);
    assert!(index.get_document("new").unwrap().is_none());

    // A document with neither title nor text is skipped and reported by id; the rest is indexed.
    std::fs::write(
        &corpus,
        format!(
            "{good}\n{}\n",
            serde_json::json!({"_id": "empty", "title": "", "text": " "})
        ),
    )
    .unwrap();
    let report = ibex::index_corpus(&corpus, &dir, &options(), |_| {}).unwrap();
    assert_eq!(report.skipped_empty, vec!["empty".to_string()]);
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.num_documents(), 3);
    assert!(index.get_document("empty").unwrap().is_none());
    let output = std::process::Command::new(common::ibex_bin())
        .arg("index")
        .arg(&corpus)
        .arg("--index")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("skipped 1 documents with neither title nor text: empty"));
}

#[test]
fn non_utf8_file_in_a_folder_is_reported_by_path() {
    let temp = tempfile::tempdir().unwrap();
    let folder = temp.path().join("notes");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("a.md"), "# Title\nSome notes.").unwrap();
    std::fs::write(folder.join("sub").join("latin1.txt"), b"caf\xe9").unwrap();
    let err =
        ibex::index_corpus(&folder, &temp.path().join("idx"), &options(), |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("latin1.txt") && err.to_string().contains("UTF-8"),
        "{err}"
    );
    assert!(
        !temp.path().join("idx").exists(),
        "nothing is created when the corpus is invalid"
    );
}

/// A model folder with the default model's files under another name: a different model id.
fn other_model(dir: &Path) -> std::path::PathBuf {
    let source = ibex_embedder::fetch::ensure_default_model().unwrap();
    let other = dir.join("other-model");
    std::fs::create_dir_all(&other).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), other.join(entry.file_name())).unwrap();
    }
    other
}

#[test]
fn an_index_from_another_model_is_refused_with_both_names() {
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let dir = temp.path().join("idx");
    common::write_jsonl(&corpus, &DOCS[..1]);
    ibex::index_corpus(&corpus, &dir, &options(), |_| {}).unwrap();
    let other = other_model(temp.path());
    let err = ibex::index_corpus(
        &corpus,
        &dir,
        &IndexOptions {
            model: Some(other.display().to_string()),
            ..options()
        },
        |_| {},
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("sentence-transformers/all-MiniLM-L6-v2")
            && message.contains("other-model")
            && message.contains("384"),
        "{message}"
    );
    let err = ibex::open_index(&dir, Some(&other.display().to_string()))
        .err()
        .unwrap();
    assert!(
        matches!(err, IbexError::Index(IndexError::ModelMismatch { .. })),
        "{err}"
    );

    // A query vector of the wrong dimension is an error, not a panic.
    let index = Index::open(&dir).unwrap();
    let err = index.search_vectors(&[0.5; 12], 3, None).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::WrongDimension {
                expected: 384,
                got: 12
            }
        ),
        "{err}"
    );
}

#[test]
fn unknown_mode_and_missing_index_get_clear_errors() {
    assert!(matches!(
        "semantic".parse::<Mode>(),
        Err(SearchError::UnknownMode(_))
    ));
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("nope");
    let err = Index::open(&missing).err().unwrap();
    assert!(err.to_string().contains("does not exist"), "{err}");

    let output = std::process::Command::new(common::ibex_bin())
        .args(["search", "--index"])
        .arg(&missing)
        .args(["--mode", "fuzzy", "query"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown search mode \"fuzzy\""));
    let output = std::process::Command::new(common::ibex_bin())
        .args(["search", "--index"])
        .arg(&missing)
        .arg("query")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no ibex index at") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn quickstart_queries_find_their_documents_first_in_hybrid_mode() {
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    std::fs::write(&corpus, ibex::quickstart::CORPUS).unwrap();
    let dir = temp.path().join("idx");
    let report = ibex::index_corpus(&corpus, &dir, &IndexOptions::default(), |_| {}).unwrap();
    assert!((100..=300).contains(&report.documents_in_index));
    let index = Index::open(&dir).unwrap();
    let examples = ibex::quickstart::example_queries();
    assert!(examples.len() >= 5);
    for example in examples {
        assert_eq!(
            ids(&index, &example.query, Mode::Hybrid)[0],
            example.expected,
            "query {:?}",
            example.query
        );
    }
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
    let temp = tempfile::tempdir().unwrap();
    let corpus = temp.path().join("corpus.jsonl");
    let dir = temp.path().join("idx");
    common::write_jsonl(&corpus, &DOCS[..1]);
    ibex::index_corpus(&corpus, &dir, &options(), |_| {}).unwrap();
    let model = common::default_model();
    let mut first = Index::open(&dir).unwrap();
    let mut second = Index::open(&dir).unwrap();
    let writer = first.writer(model.as_ref()).unwrap();
    let err = second.writer(model.as_ref()).err().unwrap();
    assert!(matches!(err, IndexError::Locked { .. }), "{err}");
    // Readers are not blocked by the writer.
    assert_eq!(ids(&second, "magma and lava", Mode::Hybrid)[0], "volcano");
    drop(writer);
    assert!(second.writer(model.as_ref()).is_ok());
}
