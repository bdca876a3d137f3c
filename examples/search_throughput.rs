//! In-process search throughput: the same searches the HTTP load benchmark sends, run by calling
//! the library directly from `threads` threads for `seconds`. It is the ceiling for the server
//! (same index, same embedding queue, no HTTP), so bench/http_load.sh reports the server's
//! throughput as a ratio of it.
//!
//! Usage: search_throughput INDEX_DIR QUERIES_JSONL MODE THREADS SECONDS
//! (QUERIES_JSONL: BEIR queries, `{"_id", "text"}` per line.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ibex::embedder::{BatchingEmbedder, BatchingOptions};
use ibex::{Embedder, Mode, SearchRequest};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: search_throughput INDEX_DIR QUERIES_JSONL MODE THREADS SECONDS".into());
    }
    let (index, model) = ibex::open_index(std::path::Path::new(&args[1]), None)?;
    // The server's embedding path: one queue, batches across callers.
    let embedder: Arc<dyn Embedder> =
        Arc::new(BatchingEmbedder::new(model, BatchingOptions::default())?);
    let queries: Vec<String> = std::fs::read_to_string(&args[2])?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    let mode: Mode = args[3].parse()?;
    let threads: usize = args[4].parse()?;
    let seconds: f64 = args[5].parse()?;
    let index = Arc::new(index);
    let queries = Arc::new(queries);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (index, embedder, queries, stop) = (
                index.clone(),
                embedder.clone(),
                queries.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let mut request = SearchRequest::new(queries[i % queries.len()].clone());
                    request.mode = mode;
                    let began = Instant::now();
                    if ibex::search::search(&index, Some(embedder.as_ref()), &request).is_err() {
                        return Err(format!("query {i} failed"));
                    }
                    latencies.push(began.elapsed());
                    i += threads;
                }
                Ok(latencies)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.join().map_err(|_| "a worker panicked")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"searches\": {}, \"qps\": {:.1}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
