//! Regressions found by the `index_files` fuzz target: a lexical segment file cut to 4-7 bytes
//! made tantivy panic while opening the index, and a composite file whose offset table was
//! altered made it panic at the first query; both must be reported as damage when the index
//! opens.

use ibex_indexer::bulk::write_embedded;
use ibex_indexer::{
    ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index, IndexError, ModelInfo,
};

/// A one-document index; returns its directory and its lexical segment files.
fn small_index(scratch: &std::path::Path) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let model = ModelInfo {
        id: "test/synthetic-4".into(),
        source: "test".into(),
        dimension: 4,
    };
    let mut index = Index::create(
        &scratch.join("idx"),
        model.clone(),
        ChunkingParams::default(),
    )
    .unwrap();
    let document = Document {
        id: "a".into(),
        title: "alpha".into(),
        text: "alpha beta gamma".into(),
        metadata: serde_json::Map::new(),
    };
    let chunks = EmbeddedChunks {
        spans: vec![ChunkSpan { start: 0, end: 16 }],
        vectors: vec![0.5; 4],
    };
    write_embedded(&mut index, &model.id, vec![(document, chunks)]).unwrap();
    let dir = index.dir().to_path_buf();
    drop(index);

    let lexical = dir.join("lexical");
    let segment_files: Vec<_> = std::fs::read_dir(&lexical)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "json" && e != "lock"))
        .collect();
    assert!(segment_files.len() >= 5, "{segment_files:?}");
    (dir, segment_files)
}

#[test]
fn a_lexical_file_shorter_than_its_footer_is_reported_as_damage() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, segment_files) = small_index(scratch.path());
    for file in &segment_files {
        let original = std::fs::read(file).unwrap();
        for len in [4, 7] {
            std::fs::write(file, &original[..len.min(original.len())]).unwrap();
            match Index::open(&dir) {
                Err(IndexError::Corrupt { path, .. }) => assert_eq!(&path, file),
                Err(other) => panic!("{}: cut to {len} bytes: {other}", file.display()),
                Ok(_) => panic!("{}: cut to {len} bytes, the index opened", file.display()),
            }
        }
        std::fs::write(file, &original).unwrap();
    }
    assert_eq!(Index::open(&dir).unwrap().num_documents(), 1);
}

#[test]
fn an_altered_byte_in_any_lexical_file_is_reported_when_the_index_opens() {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, segment_files) = small_index(scratch.path());
    for file in &segment_files {
        let original = std::fs::read(file).unwrap();
        // Bytes of the data the footer's checksum covers.
        for at in [0, original.len() / 4, original.len() / 2] {
            let mut altered = original.clone();
            altered[at] ^= 0x5a;
            std::fs::write(file, &altered).unwrap();
            match Index::open(&dir) {
                Err(IndexError::Corrupt { .. }) => {}
                Err(other) => panic!("{}: byte {at} altered: {other}", file.display()),
                Ok(_) => panic!("{}: byte {at} altered, the index opened", file.display()),
            }
        }
        std::fs::write(file, &original).unwrap();
    }
    assert_eq!(Index::open(&dir).unwrap().num_documents(), 1);
}
