//! Hub ids through a real download: a local HTTP server speaks the hub's file protocol
//! (`/{owner}/{name}/resolve/{revision}/{file}`, a `Range: bytes=0-0` probe answered with the
//! commit and ETag headers, then the ranged body), serving the default model's folder. No real hub
//! is contacted.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ibex_embedder::hub::{download_model, HubSource};
use ibex_embedder::{load_hub_model, TextKind};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A minimal hub serving `files` (repository path → local file) of one repository.
struct FakeHub {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

fn serve(repo: &str, files: HashMap<String, PathBuf>) -> FakeHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let (repo, counter) = (repo.to_string(), requests.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let (repo, files) = (repo.clone(), files.clone());
            std::thread::spawn(move || answer(stream, &repo, &files));
        }
    });
    FakeHub { endpoint, requests }
}

fn answer(mut stream: TcpStream, repo: &str, files: &HashMap<String, PathBuf>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap() == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().trim_start_matches("bytes=").to_string());
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let prefix = format!("/{repo}/resolve/main/");
    let Some(body) = path
        .strip_prefix(&prefix)
        .and_then(|file| files.get(file))
        .map(|local| std::fs::read(local).unwrap())
    else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let size = body.len();
    let (start, end) = match range.as_deref().and_then(|r| r.split_once('-')) {
        Some((start, end)) => (
            start.parse().unwrap_or(0),
            end.parse().map_or(size - 1, |e: usize| e.min(size - 1)),
        ),
        None => (0, size - 1),
    };
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\nETag: \"etag-{size}-{}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
        end + 1 - start,
        path.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body[start..=end]);
}

/// The default model's folder as a hub repository (`1_Pooling/config.json` in its subfolder).
fn default_model_files() -> HashMap<String, PathBuf> {
    let dir = ibex_embedder::fetch::ensure_default_model().unwrap();
    [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ]
    .into_iter()
    .map(|f| (f.to_string(), dir.join(f)))
    .collect()
}

fn source(endpoint: &str, cache: &Path) -> HubSource {
    HubSource {
        endpoint: endpoint.to_string(),
        cache_dir: cache.to_path_buf(),
        token: None,
        offline: false,
    }
}

#[test]
fn a_hub_id_downloads_loads_and_then_loads_offline_from_the_cache() {
    let hub = serve("test-org/minilm", default_model_files());
    let cache = tempfile::tempdir().unwrap();
    let from_hub = load_hub_model("test-org/minilm", &source(&hub.endpoint, cache.path())).unwrap();
    assert_eq!(from_hub.model_id(), "test-org/minilm");

    // Same vectors as the folder loaded directly (pooling and normalization came along).
    let local = ibex_embedder::load_model(ibex_embedder::DEFAULT_MODEL_ID).unwrap();
    let texts = [
        "what is the boundary layer?",
        "Heat transfer in laminar flow.",
    ];
    let (a, b) = (
        from_hub.embed(&texts, TextKind::Query).unwrap(),
        local.embed(&texts, TextKind::Query).unwrap(),
    );
    assert_eq!(a, b);

    // Offline: everything comes from the cache, no request reaches the hub.
    let before = hub.requests.load(Ordering::SeqCst);
    let offline = HubSource {
        offline: true,
        ..source(&hub.endpoint, cache.path())
    };
    let again = load_hub_model("test-org/minilm", &offline).unwrap();
    assert_eq!(again.embed(&texts, TextKind::Query).unwrap(), a);
    assert_eq!(hub.requests.load(Ordering::SeqCst), before);
}

#[test]
fn a_repository_without_a_tokenizer_is_a_clear_error_and_optional_files_may_be_absent() {
    let mut files = default_model_files();
    files.retain(|name, _| name == "config.json" || name == "model.safetensors");
    let hub = serve("test-org/no-tokenizer", files);
    let cache = tempfile::tempdir().unwrap();
    let message = download_model(
        "test-org/no-tokenizer",
        &source(&hub.endpoint, cache.path()),
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("has no tokenizer.json"), "{message}");
    assert!(message.contains("--model DIR"), "{message}");

    // Without the sentence-transformers files the download still succeeds.
    let mut files = default_model_files();
    files.retain(|name, _| {
        !name.contains("json") || name == "config.json" || name == "tokenizer.json"
    });
    let hub = serve("test-org/bare", files);
    let dir = download_model("test-org/bare", &source(&hub.endpoint, cache.path())).unwrap();
    assert!(dir.join("model.safetensors").is_file());
    assert!(!dir.join("modules.json").exists());
}
