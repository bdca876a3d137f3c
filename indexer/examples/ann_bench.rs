//! ANN benchmark, ibex's side: the dense index (one vector segment with its HNSW graph, as a
//! commit of that size writes it) on real embeddings, against an exact scan.
//!
//! `bench/ann.sh` runs it and the Python peers (hnswlib, faiss) on the same files and prints
//! the table. Two subcommands:
//!
//! - `prepare OUT --vectors F.f32... --index DIR... [--queries N] [--seed S]`: gathers the base
//!   vectors (raw little-endian f32 files, and the live chunk vectors of ibex indexes), holds out
//!   N random ones as queries, computes the exact top-10 of each by exact scan, and writes
//!   `base.f32`, `queries.f32`, `truth.bin` (10 u32 row ids + the 10th score per query) and
//!   `meta.json`. It also measures, in the same run, exact-scan throughput against a streaming
//!   read of a large buffer (the machine's memory bandwidth for one core).
//! - `run DATA [--m 16] [--ef-construction 200] [--ef 10,20,...] [--threads 1,2]`: builds the
//!   segment (graph included, written durably as a commit writes it), then for each thread count
//!   and ef, searches every query and prints one JSON line with QPS and recall@10.
//!
//! Recall counts a returned row as a hit when its exact similarity reaches the 10th exact one
//! minus 1e-3, as ann-benchmarks does, so that duplicate vectors (an uncased model gives "Apple"
//! and "apple" the same vector) do not count as misses.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ibex_indexer::vectors::{dot, ChunkSet, VectorSegment};
use ibex_indexer::{Index, VectorStorage};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const K: usize = 10;
const EPSILON: f32 = 1e-3;

fn fail(message: String) -> ! {
    eprintln!("ann_bench: {message}");
    std::process::exit(2)
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| fail(format!("reading {}: {e}", path.display())));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn write_f32(path: &Path, values: &[f32]) {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes)
        .unwrap_or_else(|e| fail(format!("writing {}: {e}", path.display())));
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Bytes per second one core streams from memory: sums a buffer much larger than the caches.
fn streaming_read_bandwidth() -> f64 {
    let buffer: Vec<f32> = (0..(1usize << 28)).map(|i| (i % 7) as f32).collect(); // 1 GiB
    let mut best = f64::MAX;
    let mut checksum = 0.0f32;
    for _ in 0..5 {
        let started = Instant::now();
        let mut acc = [0f32; 16];
        for chunk in buffer.chunks_exact(16) {
            for i in 0..16 {
                acc[i] += chunk[i];
            }
        }
        checksum += acc.iter().sum::<f32>();
        best = best.min(started.elapsed().as_secs_f64());
    }
    std::hint::black_box(checksum);
    (buffer.len() * 4) as f64 / best
}

fn prepare(args: &[String]) {
    let out = PathBuf::from(
        args.first()
            .unwrap_or_else(|| fail("prepare needs OUT".into())),
    );
    let mut files = Vec::new();
    let mut indexes = Vec::new();
    let mut queries = 1000usize;
    let mut seed = 7u64;
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--vectors" => files.push(PathBuf::from(value)),
            "--index" => indexes.push(PathBuf::from(value)),
            "--queries" => {
                queries = value
                    .parse()
                    .unwrap_or_else(|_| fail("bad --queries".into()))
            }
            "--seed" => seed = value.parse().unwrap_or_else(|_| fail("bad --seed".into())),
            other => fail(format!("unknown option {other}")),
        }
        i += 2;
    }
    let mut dimension = 384usize;
    let mut all: Vec<f32> = Vec::new();
    let mut sources = Vec::new();
    for dir in &indexes {
        let index = Index::open(dir).unwrap_or_else(|e| fail(format!("{}: {e}", dir.display())));
        dimension = index.manifest().model.dimension;
        let before = all.len();
        for doc in index.live_docs().iter() {
            for key in doc.chunk_base..doc.chunk_base + doc.chunk_count as u64 {
                match index.chunk_vector(key) {
                    Ok(Some(v)) => all.extend_from_slice(&v),
                    Ok(None) => {}
                    Err(e) => fail(format!("{}: {e}", dir.display())),
                }
            }
        }
        sources.push(format!(
            "{}: {} chunk vectors",
            dir.display(),
            (all.len() - before) / dimension
        ));
    }
    for file in &files {
        let values = read_f32(file);
        if !values.len().is_multiple_of(dimension) {
            fail(format!(
                "{} is not a whole number of {dimension}-d vectors",
                file.display()
            ));
        }
        sources.push(format!(
            "{}: {} vectors",
            file.display(),
            values.len() / dimension
        ));
        all.extend(values);
    }
    let total = all.len() / dimension;
    if total <= queries {
        fail(format!("only {total} vectors"));
    }
    let mut order: Vec<usize> = (0..total).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let (query_rows, base_rows) = order.split_at(queries);
    let mut base_rows = base_rows.to_vec();
    base_rows.sort_unstable();
    let row = |r: usize| &all[r * dimension..(r + 1) * dimension];
    let base: Vec<f32> = base_rows
        .iter()
        .flat_map(|&r| row(r).iter().copied())
        .collect();
    let query_vectors: Vec<f32> = query_rows
        .iter()
        .flat_map(|&r| row(r).iter().copied())
        .collect();
    drop(all);
    let n = base_rows.len();

    // Exact top-10 by ibex's exact scan, single-threaded: this is also the scan measurement.
    let keys: Vec<u64> = (0..n as u64).collect();
    let mut every = ChunkSet::default();
    every.insert_range(0, n as u64);
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("temp dir: {e}")));
    let segment = VectorSegment::write(
        dir.path(),
        0,
        dimension,
        keys,
        base.clone(),
        false,
        VectorStorage::F32,
    )
    .unwrap_or_else(|e| fail(format!("writing the segment: {e}")));
    let started = Instant::now();
    let exact: Vec<_> = query_vectors
        .chunks_exact(dimension)
        .map(|q| {
            segment
                .scan(q, K, &every)
                .unwrap_or_else(|e| fail(format!("scan: {e}")))
        })
        .collect();
    let scan_seconds = started.elapsed().as_secs_f64();
    let bandwidth = streaming_read_bandwidth();
    let vectors_per_second = (n * queries) as f64 / scan_seconds;
    let scan_bytes_per_second = vectors_per_second * (dimension * 4) as f64;

    std::fs::create_dir_all(&out).unwrap_or_else(|e| fail(format!("{}: {e}", out.display())));
    write_f32(&out.join("base.f32"), &base);
    write_f32(&out.join("queries.f32"), &query_vectors);
    let mut truth = Vec::with_capacity(queries * (K + 1) * 4);
    for hits in &exact {
        for hit in hits {
            truth.extend_from_slice(&(hit.chunk_key as u32).to_le_bytes());
        }
        truth.extend_from_slice(&hits[K - 1].score.to_le_bytes());
    }
    std::fs::write(out.join("truth.bin"), truth).unwrap_or_else(|e| fail(format!("truth: {e}")));
    let meta = serde_json::json!({
        "base": n, "queries": queries, "dimension": dimension, "k": K, "epsilon": EPSILON,
        "sources": sources,
        "exact_scan": {
            "vectors_per_second_per_core": vectors_per_second,
            "scan_bytes_per_second": scan_bytes_per_second,
            "streaming_read_bytes_per_second": bandwidth,
            "fraction_of_bandwidth": scan_bytes_per_second / bandwidth,
        }
    });
    std::fs::write(
        out.join("meta.json"),
        serde_json::to_string_pretty(&meta).unwrap_or_default(),
    )
    .unwrap_or_else(|e| fail(format!("meta: {e}")));
    println!("{meta}");
}

/// `search` of every query (`dimension`-d, row-major), the queries split evenly over `threads`
/// threads; results in query order.
fn per_query<T: Send>(
    queries: &[f32],
    dimension: usize,
    threads: usize,
    search: impl Fn(&[f32]) -> T + Sync,
) -> Vec<T> {
    let per_thread = (queries.len() / dimension).div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = queries
            .chunks(per_thread * dimension)
            .map(|part| {
                let search = &search;
                scope.spawn(move || part.chunks_exact(dimension).map(search).collect::<Vec<T>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| fail("a search thread panicked".into()))
            })
            .collect()
    })
}

fn parse_list(value: &str) -> Vec<usize> {
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| fail(format!("bad list {value}")))
        })
        .collect()
}

fn run(args: &[String]) {
    let data = PathBuf::from(
        args.first()
            .unwrap_or_else(|| fail("run needs DATA".into())),
    );
    let mut efs = parse_list("10,12,16,20,24,32,40,48,64,80,96,128,160,192,256,384,512");
    let mut threads = vec![1, 2];
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--ef" => efs = parse_list(&value),
            "--threads" => threads = parse_list(&value),
            // ibex's graph parameters are constants of the index format; these options only
            // check that the caller compares like with like.
            "--m" => assert_eq!(
                value.parse::<usize>().ok(),
                Some(ibex_indexer::vectors::HNSW_MAX_CONNECTIONS),
                "ibex's M is {}",
                ibex_indexer::vectors::HNSW_MAX_CONNECTIONS
            ),
            "--ef-construction" => assert_eq!(
                value.parse::<usize>().ok(),
                Some(ibex_indexer::vectors::HNSW_EF_CONSTRUCTION),
                "ibex's ef_construction is {}",
                ibex_indexer::vectors::HNSW_EF_CONSTRUCTION
            ),
            other => fail(format!("unknown option {other}")),
        }
        i += 2;
    }
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("meta.json")).unwrap_or_else(|e| fail(format!("meta.json: {e}"))),
    )
    .unwrap_or_else(|e| fail(format!("meta.json: {e}")));
    let dimension = meta["dimension"].as_u64().unwrap_or(384) as usize;
    let base = read_f32(&data.join("base.f32"));
    let queries = read_f32(&data.join("queries.f32"));
    let truth_bytes =
        std::fs::read(data.join("truth.bin")).unwrap_or_else(|e| fail(format!("truth: {e}")));
    let kth: Vec<f32> = truth_bytes
        .chunks_exact((K + 1) * 4)
        .map(|c| f32::from_le_bytes([c[K * 4], c[K * 4 + 1], c[K * 4 + 2], c[K * 4 + 3]]))
        .collect();
    let n = base.len() / dimension;
    let query_count = queries.len() / dimension;

    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("temp dir: {e}")));
    let rss_before = rss_bytes();
    let keys: Vec<u64> = (0..n as u64).collect();
    let started = Instant::now();
    let segment = VectorSegment::write(
        dir.path(),
        0,
        dimension,
        keys,
        base.clone(),
        true,
        VectorStorage::F32,
    )
    .unwrap_or_else(|e| fail(format!("building the segment: {e}")));
    let build_seconds = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    println!(
        "{}",
        serde_json::json!({"engine": "ibex", "event": "build", "seconds": build_seconds,
            "index_bytes": rss_after.saturating_sub(rss_before), "vectors": n})
    );
    let mut every = ChunkSet::default();
    every.insert_range(0, n as u64);

    for &thread_count in &threads {
        for &ef in &efs {
            // Best of three passes over the queries: one pass takes a fraction of a second at
            // low ef, where a scheduler hiccup would otherwise decide the figure.
            let mut seconds = f64::MAX;
            let mut results: Vec<Vec<u64>> = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                results = per_query(&queries, dimension, thread_count, |q| {
                    segment
                        .search(q, K, &every, Some(n), ef)
                        .unwrap_or_else(|e| fail(format!("search: {e}")))
                        .iter()
                        .map(|h| h.chunk_key)
                        .collect::<Vec<u64>>()
                });
                seconds = seconds.min(started.elapsed().as_secs_f64());
            }
            let mut hits = 0usize;
            for (q, found) in results.iter().enumerate() {
                let query = &queries[q * dimension..(q + 1) * dimension];
                for &row in found.iter().take(K) {
                    let row = row as usize;
                    if dot(query, &base[row * dimension..(row + 1) * dimension]) >= kth[q] - EPSILON
                    {
                        hits += 1;
                    }
                }
            }
            println!(
                "{}",
                serde_json::json!({"engine": "ibex", "threads": thread_count, "ef": ef,
                    "qps": query_count as f64 / seconds,
                    "recall": hits as f64 / (K * query_count) as f64})
            );
        }
    }
}

/// `quantized --vectors F.f32... [--rows 1000000] [--queries 1000] [--noise 0.025] [--seed 7]
/// [--ef 100,200] [--threads 1,2] [--work DIR]`: one segment of `rows` vectors (the real ones,
/// then copies of them with Gaussian noise of `noise` per dimension, renormalized, until there
/// are `rows`), its graph built once, then loaded in each storage (f32, int8, binary) and
/// searched: bytes per row in memory (vectors, graph, keys) and on disk, load seconds, recall@10
/// against the exact f32 scan, and QPS, one JSON line per storage, ef and thread count.
fn quantized(args: &[String]) {
    let mut files = Vec::new();
    let mut rows = 1_000_000usize;
    let mut queries = 1000usize;
    let mut noise = 0.025f32;
    let mut seed = 7u64;
    let mut efs = vec![100usize, 200];
    let mut threads = vec![1usize, 2];
    let mut work: Option<PathBuf> = None;
    let dimension = 384usize;
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--vectors" => files.push(PathBuf::from(value)),
            "--rows" => rows = value.parse().unwrap_or_else(|_| fail("bad --rows".into())),
            "--queries" => {
                queries = value
                    .parse()
                    .unwrap_or_else(|_| fail("bad --queries".into()))
            }
            "--noise" => noise = value.parse().unwrap_or_else(|_| fail("bad --noise".into())),
            "--seed" => seed = value.parse().unwrap_or_else(|_| fail("bad --seed".into())),
            "--ef" => efs = parse_list(&value),
            "--threads" => threads = parse_list(&value),
            "--work" => work = Some(PathBuf::from(value)),
            other => fail(format!("unknown option {other}")),
        }
        i += 2;
    }
    let mut real: Vec<f32> = Vec::new();
    for file in &files {
        real.extend(read_f32(file));
    }
    let total = real.len() / dimension;
    if total <= queries + 1 {
        fail(format!("only {total} real vectors"));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..total).collect();
    order.shuffle(&mut rng);
    let (query_rows, base_rows) = order.split_at(queries);
    let row = |r: usize| &real[r * dimension..(r + 1) * dimension];
    let query_vectors: Vec<f32> = query_rows.iter().flat_map(|&r| row(r).to_vec()).collect();
    let mut base: Vec<f32> = Vec::with_capacity(rows * dimension);
    let mut copy = vec![0f32; dimension];
    for i in 0..rows {
        let source = row(base_rows[i % base_rows.len()]);
        if i < base_rows.len() {
            base.extend_from_slice(source);
            continue;
        }
        for (out, &value) in copy.iter_mut().zip(source) {
            // Box-Muller: one standard normal draw from two uniforms.
            let (u1, u2): (f32, f32) = (rng.gen_range(f32::EPSILON..1.0), rng.gen_range(0.0..1.0));
            let normal = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
            *out = value + noise * normal;
        }
        let norm = dot(&copy, &copy).sqrt().max(f32::MIN_POSITIVE);
        base.extend(copy.iter().map(|v| v / norm));
    }
    drop(real);
    let real_rows = base_rows.len().min(rows);
    eprintln!("ann_bench quantized: {rows} rows ({real_rows} real), {queries} queries");

    let dir = match &work {
        Some(path) => {
            std::fs::create_dir_all(path)
                .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
            tempfile::tempdir_in(path)
        }
        None => tempfile::tempdir(),
    }
    .unwrap_or_else(|e| fail(format!("temp dir: {e}")));
    let keys: Vec<u64> = (0..rows as u64).collect();
    let mut every = ChunkSet::default();
    every.insert_range(0, rows as u64);
    let started = Instant::now();
    let written = VectorSegment::write(
        dir.path(),
        0,
        dimension,
        keys,
        base,
        true,
        VectorStorage::F32,
    )
    .unwrap_or_else(|e| fail(format!("building the segment: {e}")));
    let build_seconds = started.elapsed().as_secs_f64();
    let meta = written.meta.clone();
    let disk = |file: &str| {
        std::fs::metadata(dir.path().join(file))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let vector_file_bytes = disk(&meta.file);
    let graph_file_bytes = meta.graph.as_ref().map_or(0, |g| disk(&g.file));

    // Ground truth: the exact scan at full precision, over two threads.
    let started = Instant::now();
    let truth: Vec<Vec<u64>> = per_query(&query_vectors, dimension, 2, |q| {
        written
            .scan(q, K, &every)
            .unwrap_or_else(|e| fail(format!("scan: {e}")))
            .iter()
            .map(|h| h.chunk_key)
            .collect()
    });
    let truth_seconds = started.elapsed().as_secs_f64();
    let kth: Vec<f32> = truth
        .iter()
        .zip(query_vectors.chunks_exact(dimension))
        .map(|(keys, q)| {
            let last = keys.last().copied().unwrap_or(0) as usize;
            written.vector(last).map(|v| dot(q, &v)).unwrap_or(f32::MIN)
        })
        .collect();
    drop(written);
    println!(
        "{}",
        serde_json::json!({"event": "build", "rows": rows, "real_rows": real_rows,
            "noise": noise, "queries": queries, "dimension": dimension,
            "build_seconds": build_seconds, "exact_scan_seconds": truth_seconds,
            "vector_file_bytes": vector_file_bytes, "graph_file_bytes": graph_file_bytes})
    );

    for storage in [
        VectorStorage::F32,
        VectorStorage::Int8,
        VectorStorage::Binary,
    ] {
        let rss_before = rss_bytes();
        let started = Instant::now();
        let segment = VectorSegment::load(dir.path(), &meta, dimension, storage)
            .unwrap_or_else(|e| fail(format!("loading as {storage}: {e}")));
        let load_seconds = started.elapsed().as_secs_f64();
        let rss = rss_bytes().saturating_sub(rss_before);
        let memory = segment.memory();
        if !storage.is_f32() {
            // Rescoring from disk: the segment file evicted from the page cache, one pass of the
            // queries on one thread at the default ef (each query's candidates are read at
            // random; most of them are not cached yet at the end of the pass either).
            let evicted = evict_from_page_cache(&dir.path().join(&meta.file));
            let started = Instant::now();
            let mut hits = 0usize;
            for (q, &kth) in query_vectors.chunks_exact(dimension).zip(&kth) {
                let found = segment
                    .search(q, K, &every, Some(rows), 100)
                    .unwrap_or_else(|e| fail(format!("search: {e}")));
                hits += found.iter().filter(|h| h.score >= kth - EPSILON).count();
            }
            println!(
                "{}",
                serde_json::json!({"event": "search_cold", "storage": storage.as_str(),
                    "threads": 1, "ef": 100, "evicted": evicted,
                    "qps": queries as f64 / started.elapsed().as_secs_f64(),
                    "recall": hits as f64 / (K * queries) as f64})
            );
        }
        for &thread_count in &threads {
            for &ef in &efs {
                let mut seconds = f64::MAX;
                let mut results: Vec<Vec<(u64, f32)>> = Vec::new();
                for _ in 0..2 {
                    let started = Instant::now();
                    results = per_query(&query_vectors, dimension, thread_count, |q| {
                        segment
                            .search(q, K, &every, Some(rows), ef)
                            .unwrap_or_else(|e| fail(format!("search: {e}")))
                            .iter()
                            .map(|h| (h.chunk_key, h.score))
                            .collect::<Vec<_>>()
                    });
                    seconds = seconds.min(started.elapsed().as_secs_f64());
                }
                // Scores returned are exact dot products in every storage, so the
                // ann-benchmarks rule applies to them directly.
                let hits: usize = results
                    .iter()
                    .zip(&kth)
                    .map(|(found, &kth)| {
                        found
                            .iter()
                            .take(K)
                            .filter(|(_, score)| *score >= kth - EPSILON)
                            .count()
                    })
                    .sum();
                println!(
                    "{}",
                    serde_json::json!({"event": "search", "storage": storage.as_str(),
                        "threads": thread_count, "ef": ef,
                        "rescored": if storage.is_f32() { 0 } else { storage.rescoring_depth(K) },
                        "qps": queries as f64 / seconds,
                        "recall": hits as f64 / (K * queries) as f64,
                        "load_seconds": load_seconds, "rss_bytes": rss,
                        "memory_vectors": memory.vectors, "memory_graph": memory.graph,
                        "memory_keys": memory.keys})
                );
            }
        }
    }
}

/// Asks the kernel to drop `path`'s pages from its cache; false where it cannot.
fn evict_from_page_cache(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(file) = std::fs::File::open(path) else {
            return false;
        };
        // SAFETY: the descriptor is open for the duration of the call; the call only gives advice.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("prepare") => prepare(&args[1..]),
        Some("run") => run(&args[1..]),
        Some("quantized") => quantized(&args[1..]),
        _ => fail("usage: ann_bench prepare OUT ... | run DATA ... | quantized ...".into()),
    }
}
