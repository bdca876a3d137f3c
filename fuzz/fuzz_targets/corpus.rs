//! Corpus readers: a JSONL file (plain or gzip), a BEIR folder, a folder of text files with odd
//! names and contents. Every document read is either a `Document` that passes the default limits'
//! check or an error; never a panic, a hang or an unbounded allocation.
#![no_main]

use ibex_fuzz::Input;
use ibex_indexer::{read_corpus, DocumentLimits};
use libfuzzer_sys::fuzz_target;

/// Documents read per input at most: enough to reach every line of a fuzz input.
const MOST_DOCUMENTS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let shape = input.byte() % 4;
    let Ok(temp) = tempfile::tempdir() else {
        return;
    };
    let path = match shape {
        0 => temp.path().join("corpus.jsonl"),
        1 => temp.path().join("corpus.jsonl.gz"),
        2 => temp.path().join("beir"),
        _ => temp.path().join("folder"),
    };
    let written = match shape {
        0 | 1 => std::fs::write(&path, input.rest()),
        2 => std::fs::create_dir(&path)
            .and_then(|()| std::fs::write(path.join("corpus.jsonl"), input.rest())),
        _ => write_folder(&path, &mut input),
    };
    if written.is_err() {
        return;
    }
    let Ok(stream) = read_corpus(&path) else {
        return;
    };
    let limits = DocumentLimits::default();
    for document in stream.take(MOST_DOCUMENTS) {
        if let Ok(document) = document {
            let _ = limits.check(&document);
            assert!(!document.id.is_empty(), "a document without an id was read");
        }
    }
});

/// Files `kind name \0 content \0 kind name \0 ...` in a new folder, where `kind` adds `.md`,
/// `.txt` or nothing to the name; names that the file system cannot take are skipped.
fn write_folder(dir: &std::path::Path, input: &mut Input) -> std::io::Result<()> {
    std::fs::create_dir(dir)?;
    for _ in 0..16 {
        let kind = input.byte();
        let name = input.until(0);
        let content = input.until(0);
        if name.is_empty() && content.is_empty() {
            break;
        }
        let extension = ["", ".md", ".txt"][kind as usize % 3];
        let name = String::from_utf8_lossy(name).replace(['/', '\0'], "_") + extension;
        if name.is_empty() || name == "." || name == ".." || name.len() > 200 {
            continue;
        }
        let _ = std::fs::write(dir.join(name), content);
    }
    Ok(())
}
