//! Measures where an HNSW graph starts to beat an exact scan, to choose `HNSW_MIN_VECTORS`.
//!
//! For segments of several sizes, times top-10 queries by exact scan and by HNSW (ef = 100), in
//! the same run, and prints the ratio with the graph's recall@10 against the exact scan.
//!
//! Vectors: a file of little-endian f32 unit vectors (384 dimensions, all-MiniLM-L6-v2's) given
//! as the first argument, as `bench/segment_crossover.sh` makes from real embeddings; without
//! it, random unit vectors (a worst case for graphs: no neighbourhood structure at all).
//!
//! Run: `bash bench/segment_crossover.sh`

use std::time::Instant;

use ibex_indexer::vectors::{ChunkSet, VectorSegment};
use ibex_indexer::VectorStorage;
use rand::{Rng, SeedableRng};

const DIMENSION: usize = 384;

fn unit_vectors(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * DIMENSION);
    for _ in 0..n {
        let v: Vec<f32> = (0..DIMENSION)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.extend(v.iter().map(|x| x / norm));
    }
    out
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let real: Option<Vec<f32>> = std::env::args().nth(1).map(|path| {
        let bytes = std::fs::read(&path).expect("read the vectors file");
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    });
    let available = real.as_ref().map_or(usize::MAX, |v| v.len() / DIMENSION);
    // The last 200 real vectors are the queries; they are in no segment.
    let queries = match &real {
        Some(v) => v[(available - 200) * DIMENSION..available * DIMENSION].to_vec(),
        None => unit_vectors(200, 99),
    };
    println!(
        "vectors: {}",
        if real.is_some() {
            "real (from file)"
        } else {
            "random unit vectors"
        }
    );
    println!("| vectors | exact scan µs/query | HNSW µs/query | scan / HNSW | HNSW recall@10 | graph build s |");
    println!("|---|---|---|---|---|---|");
    for (i, &n) in [2_000usize, 5_000, 10_000, 20_000, 50_000]
        .iter()
        .enumerate()
    {
        if n + 200 > available {
            break;
        }
        let keys: Vec<u64> = (0..n as u64).collect();
        let mut all = ChunkSet::default();
        all.insert_range(0, n as u64);
        let vectors = match &real {
            Some(v) => v[..n * DIMENSION].to_vec(),
            None => unit_vectors(n, i as u64),
        };
        let built = Instant::now();
        let segment = VectorSegment::write(
            dir.path(),
            i as u64,
            DIMENSION,
            keys,
            vectors,
            true,
            VectorStorage::F32,
        )
        .expect("write segment");
        let build_seconds = built.elapsed().as_secs_f64();

        let started = Instant::now();
        let exact: Vec<Vec<u64>> = queries
            .chunks_exact(DIMENSION)
            .map(|q| {
                segment
                    .scan(q, 10, &all)
                    .expect("scan")
                    .iter()
                    .map(|h| h.chunk_key)
                    .collect()
            })
            .collect();
        let scan_us = started.elapsed().as_secs_f64() * 1e6 / 200.0;

        let started = Instant::now();
        let approx: Vec<Vec<u64>> = queries
            .chunks_exact(DIMENSION)
            .map(|q| {
                segment
                    .search(q, 10, &all, Some(n), 100)
                    .expect("search")
                    .iter()
                    .map(|h| h.chunk_key)
                    .collect()
            })
            .collect();
        let hnsw_us = started.elapsed().as_secs_f64() * 1e6 / 200.0;
        let found: usize = exact
            .iter()
            .zip(&approx)
            .map(|(e, a)| a.iter().filter(|k| e.contains(k)).count())
            .sum();
        println!(
            "| {n} | {scan_us:.0} | {hnsw_us:.0} | {:.2} | {:.3} | {build_seconds:.1} |",
            scan_us / hnsw_us,
            found as f64 / (10.0 * exact.len() as f64)
        );
    }
}
