//! Interaction data under the commit protocol: installed by a commit of its own, named by the
//! manifest with its checksum, kept by snapshots, collected when replaced, checked when read.

use std::path::Path;

use ibex_indexer::{ChunkingParams, Index, IndexError, ModelInfo};

fn index(scratch: &Path) -> Index {
    let model = ModelInfo {
        id: "test/synthetic-4".into(),
        source: "test".into(),
        dimension: 4,
    };
    Index::create(&scratch.join("idx"), model, ChunkingParams::default()).unwrap()
}

fn install(index: &mut Index, text: &str) -> u64 {
    let mut writer = index.embedded_writer().unwrap();
    writer.set_interactions(text.as_bytes().to_vec(), text.lines().count());
    let stats = writer.commit().unwrap();
    writer.finish().unwrap();
    stats.generation
}

/// The interaction data of the last commit of the index at `dir`, read by a fresh open.
fn committed_interactions(dir: &Path) -> Vec<u8> {
    Index::open(dir)
        .unwrap()
        .read_interactions()
        .unwrap()
        .unwrap()
}

fn interaction_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("interactions"))
        .collect();
    names.sort();
    names
}

#[test]
fn installs_are_commits_and_replace_the_previous_data() {
    let scratch = tempfile::tempdir().unwrap();
    let mut index = index(scratch.path());
    assert_eq!(index.read_interactions().unwrap(), None);

    let first = install(&mut index, "u1\ta\t5\t10\nu1\tb\t4\t20\n");
    let reopened = Index::open(index.dir()).unwrap();
    assert_eq!(reopened.manifest().generation, first);
    let meta = reopened.manifest().interactions.clone().unwrap();
    assert_eq!(meta.events, 2);
    assert_eq!(
        reopened.read_interactions().unwrap().unwrap(),
        b"u1\ta\t5\t10\nu1\tb\t4\t20\n"
    );

    let second = install(&mut index, "u2\tc\t1\t30\n");
    assert_eq!(second, first + 1);
    let reopened = Index::open(index.dir()).unwrap();
    assert_eq!(
        reopened.read_interactions().unwrap().unwrap(),
        b"u2\tc\t1\t30\n"
    );
    assert_eq!(
        interaction_files(index.dir()),
        vec![reopened.manifest().interactions.clone().unwrap().file],
        "the replaced file is collected"
    );

    // A commit of documents keeps the installed data.
    let mut writer = index.embedded_writer().unwrap();
    writer.delete(&["absent"]);
    writer.commit().unwrap();
    writer.finish().unwrap();
    assert_eq!(committed_interactions(index.dir()), b"u2\tc\t1\t30\n");
}

#[test]
fn a_snapshot_holds_the_interactions_of_its_commit() {
    let scratch = tempfile::tempdir().unwrap();
    let mut index = index(scratch.path());
    install(&mut index, "u1\ta\n");
    let snapshot = scratch.path().join("snap");
    ibex_indexer::take_snapshot(&mut index, &snapshot).unwrap();
    install(&mut index, "u9\tz\n");
    let restored = scratch.path().join("restored");
    ibex_indexer::restore_snapshot(&snapshot, &restored).unwrap();
    let restored = Index::open(&restored).unwrap();
    assert_eq!(restored.read_interactions().unwrap().unwrap(), b"u1\ta\n");
    assert_eq!(committed_interactions(index.dir()), b"u9\tz\n");
}

#[test]
fn a_damaged_interaction_file_is_an_error_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    let mut index = index(scratch.path());
    install(&mut index, "u1\ta\t5\t10\n");
    let path = index.interactions_path();
    std::fs::write(&path, "u1\tb\t5\t10\n").unwrap();
    match Index::open(index.dir()).unwrap().read_interactions() {
        Err(IndexError::Corrupt { path: named, .. }) => assert_eq!(named, path),
        other => panic!("expected a corrupt-file error, got {other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
    let error = Index::open(index.dir())
        .unwrap()
        .read_interactions()
        .unwrap_err();
    assert!(
        error.to_string().contains("interaction data of generation"),
        "{error}"
    );
}

#[test]
fn the_file_of_older_indexes_is_read_until_an_install_replaces_it() {
    let scratch = tempfile::tempdir().unwrap();
    let mut index = index(scratch.path());
    std::fs::write(index.dir().join("interactions.tsv"), "old\titem\n").unwrap();
    assert_eq!(index.read_interactions().unwrap().unwrap(), b"old\titem\n");
    install(&mut index, "new\titem\n");
    assert!(!index.dir().join("interactions.tsv").exists());
    assert_eq!(index.read_interactions().unwrap().unwrap(), b"new\titem\n");
}
