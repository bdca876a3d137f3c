//! The files of an index: one file of a real index (manifest, vector segment, HNSW graph,
//! tantivy's files and meta.json, the writer files) is overwritten, cut, or has bytes inserted or
//! removed at an offset; optionally the checksums are re-sealed so that the parsers behind them
//! see the damage. Opening must give an index or an error, and an opened index must answer
//! searches: never a panic, a hang, or an allocation sized by a corrupt length field.
#![no_main]

use ibex_fuzz::{copy_tree, exercise, files_under, fixture_dir, reseal, Input};
use ibex_indexer::Index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let fixture = fixture_dir();
    let files = files_under(fixture);
    if files.is_empty() {
        return;
    }
    let file = &files[input.byte() as usize % files.len()];
    let operation = input.byte() % 4;
    let at = input.u32() as usize;
    let length = input.byte() as usize;
    let seal = input.byte() % 2 == 1;
    let payload = input.rest();

    let Ok(temp) = tempfile::tempdir() else {
        return;
    };
    let dir = temp.path().join("index");
    if copy_tree(fixture, &dir).is_err() {
        return;
    }
    let path = dir.join(file);
    let Ok(mut bytes) = std::fs::read(&path) else {
        return;
    };
    let at = at % (bytes.len() + 1);
    match operation {
        0 => {
            let end = (at + payload.len()).min(bytes.len());
            bytes.splice(at..end, payload.iter().copied());
        }
        1 => bytes.truncate(at),
        2 => {
            bytes.splice(at..at, payload.iter().copied());
        }
        _ => {
            let end = (at + length).min(bytes.len());
            bytes.drain(at..end);
        }
    }
    if std::fs::write(&path, &bytes).is_err() {
        return;
    }
    if seal {
        reseal(&dir);
    }
    if let Ok(index) = Index::open(&dir) {
        exercise(&index);
    }
});
