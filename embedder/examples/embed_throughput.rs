//! Embedding throughput, ibex's side of `bench/embed.sh`: embeds every passage of a JSONL file
//! (`{"text": ...}` per line) with a model (default: all-MiniLM-L6-v2 from the ibex cache),
//! through `Embedder::embed` as indexing does (tokenization, length-sorted batches, pooling,
//! normalization all included), after a warm-up, and prints one JSON line with sentences/s and
//! tokens/s. Writes the vectors (little-endian f32, input order) to OUT for the agreement check.
//!
//! Threads: candle's CPU kernels use RAYON_NUM_THREADS threads (the script sets it).
//!
//! With `--queries`, each text is embedded alone as a query instead (what a search does first),
//! and the JSON line gives the p50 and p99 latency of one call over every round.
//!
//! Usage: `embed_throughput PASSAGES.jsonl OUT.f32 [--model SPEC] [--rounds N] [--queries]`

use std::time::Instant;

/// The allocator the `ibex` binary ships with (see src/main.rs: with glibc's, candle's large
/// per-operation buffers are mapped and unmapped on every call), so the figure is ibex's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fail(message: String) -> ! {
    eprintln!("embed_throughput: {message}");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        fail(
            "usage: embed_throughput PASSAGES.jsonl OUT.f32 [--model SPEC] [--rounds N] [--queries]"
                .into(),
        );
    }
    let mut model = ibex_embedder::DEFAULT_MODEL_ID.to_string();
    let mut rounds = 3usize;
    let mut queries = false;
    let mut i = 2;
    while i < args.len() {
        if args[i] == "--queries" {
            queries = true;
            i += 1;
            continue;
        }
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--model" => model = value,
            "--rounds" => {
                rounds = value
                    .parse()
                    .unwrap_or_else(|_| fail("bad --rounds".into()))
            }
            other => fail(format!("unknown option {other}")),
        }
        i += 2;
    }
    let passages: Vec<String> = std::fs::read_to_string(&args[0])
        .unwrap_or_else(|e| fail(format!("{}: {e}", args[0])))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["text"].as_str().map(str::to_string))
                .unwrap_or_else(|| fail(format!("{}: a line without \"text\"", args[0])))
        })
        .collect();
    let embedder = ibex_embedder::load_model(&model).unwrap_or_else(|e| fail(e.to_string()));
    let texts: Vec<&str> = passages.iter().map(String::as_str).collect();
    let tokens: usize = texts
        .iter()
        .map(|t| {
            embedder
                .tokenize(t)
                .map(|spans| (spans.len() + 2).min(embedder.max_tokens()))
                .unwrap_or(0)
        })
        .sum();
    if queries {
        query_latency(embedder.as_ref(), &texts, tokens, rounds);
        return;
    }
    let embed = |texts: &[&str]| {
        embedder
            .embed(texts, ibex_embedder::TextKind::Document)
            .unwrap_or_else(|e| fail(e.to_string()))
    };
    embed(&texts[..64.min(texts.len())]);
    let mut best = f64::MAX;
    let mut vectors = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        vectors = embed(&texts);
        best = best.min(started.elapsed().as_secs_f64());
    }
    let mut bytes = Vec::with_capacity(vectors.len() * embedder.dimension() * 4);
    for v in vectors.iter().flatten() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&args[1], bytes).unwrap_or_else(|e| fail(format!("{}: {e}", args[1])));
    println!(
        "{}",
        serde_json::json!({"engine": "ibex", "sentences": texts.len(), "tokens": tokens,
            "seconds": best, "sentences_per_s": texts.len() as f64 / best,
            "tokens_per_s": tokens as f64 / best})
    );
}

/// One query at a time, as a search embeds it: the latency of each call, p50 and p99 over all
/// rounds (after one warm-up pass).
fn query_latency(
    embedder: &dyn ibex_embedder::Embedder,
    texts: &[&str],
    tokens: usize,
    rounds: usize,
) {
    let embed_one = |text: &str| {
        let started = Instant::now();
        embedder
            .embed(&[text], ibex_embedder::TextKind::Query)
            .unwrap_or_else(|e| fail(e.to_string()));
        started.elapsed().as_secs_f64() * 1000.0
    };
    for text in texts {
        embed_one(text);
    }
    let mut latencies: Vec<f64> = Vec::with_capacity(texts.len() * rounds);
    for _ in 0..rounds.max(1) {
        latencies.extend(texts.iter().map(|text| embed_one(text)));
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        serde_json::json!({"engine": "ibex", "mode": "queries", "queries": texts.len(),
            "tokens": tokens, "calls": latencies.len(), "p50_ms": at(0.5), "p99_ms": at(0.99)})
    );
}
