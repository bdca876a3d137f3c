//! BM25 query latency, ibex's side of `bench/bm25.sh`.
//!
//! For each `NAME INDEX_DIR QUERIES_JSONL` triple, runs every query of the collection
//! (BEIR `queries.jsonl`) through ibex's BM25 ranking, top 10, one thread, after a warm-up
//! round, for several rounds; prints one JSON line per collection and level with the latency
//! percentiles (µs) and QPS. Two levels:
//!
//! - `rank`: the ranked document ids and scores (`rank_documents`), what bm25s and tantivy-py
//!   return, so the comparison is like for like;
//! - `search`: the full `search` call the API serves (documents loaded, best passages found
//!   and highlighted).
//!
//! Usage: `bm25_bench [--rounds N] [--level rank|search] NAME INDEX QUERIES [NAME INDEX QUERIES ...]`

use std::io::BufRead;
use std::time::Instant;

use ibex_indexer::Index;
use ibex_search::{rank_documents, search, Mode, SearchRequest};

fn fail(message: String) -> ! {
    eprintln!("bm25_bench: {message}");
    std::process::exit(2)
}

fn read_queries(path: &str) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| fail(format!("{path}: {e}")));
    std::io::BufReader::new(file)
        .lines()
        .map(|line| line.unwrap_or_else(|e| fail(format!("{path}: {e}"))))
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| fail(format!("{path}: {e}")));
            value["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut rounds = 5usize;
    let mut levels = vec!["rank", "search"];
    loop {
        match args.first().map(String::as_str) {
            Some("--rounds") => {
                rounds = args
                    .get(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| fail("bad --rounds".into()));
            }
            Some("--level") => match args.get(1).map(String::as_str) {
                Some("rank") => levels = vec!["rank"],
                Some("search") => levels = vec!["search"],
                _ => fail("--level is rank or search".into()),
            },
            _ => break,
        }
        args.drain(..2);
    }
    if args.is_empty() || !args.len().is_multiple_of(3) {
        fail("usage: bm25_bench [--rounds N] NAME INDEX QUERIES ...".into());
    }
    for triple in args.chunks(3) {
        let (name, dir, queries_path) = (&triple[0], &triple[1], &triple[2]);
        let index =
            Index::open(std::path::Path::new(dir)).unwrap_or_else(|e| fail(format!("{dir}: {e}")));
        let queries = read_queries(queries_path);
        for &level in &levels {
            let run = |query: &str| -> usize {
                let mut request = SearchRequest::new(query);
                request.mode = Mode::Bm25;
                request.top_k = 10;
                if level == "rank" {
                    rank_documents(&index, None, &request)
                        .map(|hits| hits.len())
                        .unwrap_or_else(|e| fail(format!("{name}: {e}")))
                } else {
                    search(&index, None, &request)
                        .map(|results| results.hits.len())
                        .unwrap_or_else(|e| fail(format!("{name}: {e}")))
                }
            };
            for query in &queries {
                std::hint::black_box(run(query));
            }
            let mut latencies = Vec::with_capacity(queries.len() * rounds);
            let started = Instant::now();
            for _ in 0..rounds {
                for query in &queries {
                    let one = Instant::now();
                    std::hint::black_box(run(query));
                    latencies.push(one.elapsed().as_secs_f64() * 1e6);
                }
            }
            let total = started.elapsed().as_secs_f64();
            latencies.sort_by(f64::total_cmp);
            println!(
                "{}",
                serde_json::json!({
                    "engine": format!("ibex ({level})"), "collection": name,
                    "queries": queries.len(), "documents": index.num_documents(),
                    "p50_us": percentile(&latencies, 50.0), "p99_us": percentile(&latencies, 99.0),
                    "mean_us": latencies.iter().sum::<f64>() / latencies.len() as f64,
                    "qps": latencies.len() as f64 / total,
                })
            );
        }
    }
}
