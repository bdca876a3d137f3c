//! Indexing throughput, end to end, for `bench/index_throughput.sh`: indexes a corpus into a new
//! index exactly as `ibex index` does (same batches, same commits every 1,000 documents), and
//! prints documents/s, chunks/s, the time spent inside the model, and the process's peak memory.
//!
//! - `record CORPUS INDEX CACHE`: embedding included. The model's vectors are also written to
//!   CACHE (text -> vector), and the time inside `Embedder::embed` is measured.
//! - `replay CORPUS INDEX CACHE`: embedding excluded. The same model tokenizes (chunking needs
//!   it), but `embed` answers from CACHE, so the figure is everything ibex does around the model:
//!   reading, chunking, BM25 indexing, vector segments, HNSW graphs, fsyncs, merges.
//!
//! Peak memory is the process's VmHWM; in replay it includes the cache of vectors.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ibex::embedder::{Result as EmbedResult, TokenSpan};
use ibex::{Embedder, IndexOptions, TextKind};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The model, timed, with every vector it returns kept for the replay.
struct Recording<'a> {
    inner: &'a dyn Embedder,
    vectors: Mutex<HashMap<String, Vec<f32>>>,
    busy: Mutex<Duration>,
}

/// The model's tokenizer, with vectors served from a recording.
struct Replaying<'a> {
    inner: &'a dyn Embedder,
    vectors: HashMap<String, Vec<f32>>,
}

macro_rules! delegate_model_facts {
    () => {
        fn model_id(&self) -> &str {
            self.inner.model_id()
        }
        fn dimension(&self) -> usize {
            self.inner.dimension()
        }
        fn max_tokens(&self) -> usize {
            self.inner.max_tokens()
        }
        fn normalized(&self) -> bool {
            self.inner.normalized()
        }
        fn tokenize(&self, text: &str) -> EmbedResult<Vec<TokenSpan>> {
            self.inner.tokenize(text)
        }
    };
}

impl Embedder for Recording<'_> {
    delegate_model_facts!();
    fn embed(&self, texts: &[&str], kind: TextKind) -> EmbedResult<Vec<Vec<f32>>> {
        let started = Instant::now();
        let vectors = self.inner.embed(texts, kind)?;
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) += started.elapsed();
        let mut kept = self.vectors.lock().unwrap_or_else(|p| p.into_inner());
        for (text, vector) in texts.iter().zip(&vectors) {
            kept.insert(text.to_string(), vector.clone());
        }
        Ok(vectors)
    }
}

impl Embedder for Replaying<'_> {
    delegate_model_facts!();
    fn embed(&self, texts: &[&str], _kind: TextKind) -> EmbedResult<Vec<Vec<f32>>> {
        texts
            .iter()
            .map(|t| {
                self.vectors.get(*t).cloned().ok_or_else(|| {
                    ibex::embedder::EmbedderError::Tokenizer(format!(
                        "no recorded vector for a text of {} bytes: record again",
                        t.len()
                    ))
                })
            })
            .collect()
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn write_cache(path: &Path, vectors: &HashMap<String, Vec<f32>>) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&(vectors.len() as u64).to_le_bytes())?;
    for (text, vector) in vectors {
        out.write_all(&(text.len() as u64).to_le_bytes())?;
        out.write_all(text.as_bytes())?;
        out.write_all(&(vector.len() as u64).to_le_bytes())?;
        for v in vector {
            out.write_all(&v.to_le_bytes())?;
        }
    }
    out.flush()
}

fn read_cache(path: &Path) -> std::io::Result<HashMap<String, Vec<f32>>> {
    let mut input = BufReader::new(std::fs::File::open(path)?);
    let mut word = [0u8; 8];
    let mut read_u64 = |input: &mut BufReader<std::fs::File>| -> std::io::Result<usize> {
        input.read_exact(&mut word)?;
        Ok(u64::from_le_bytes(word) as usize)
    };
    let count = read_u64(&mut input)?;
    let mut vectors = HashMap::with_capacity(count);
    for _ in 0..count {
        let mut text = vec![0u8; read_u64(&mut input)?];
        input.read_exact(&mut text)?;
        let mut bytes = vec![0u8; read_u64(&mut input)? * 4];
        input.read_exact(&mut bytes)?;
        let vector = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        vectors.insert(String::from_utf8_lossy(&text).into_owned(), vector);
    }
    Ok(vectors)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, corpus, index, cache] = args.as_slice() else {
        return Err("usage: index_throughput record|replay CORPUS INDEX CACHE".into());
    };
    if Path::new(index).exists() {
        return Err(format!("{index} exists: the benchmark indexes into a new index").into());
    }
    let model = ibex::open_embedder(ibex::DEFAULT_MODEL_ID)?;
    let options = IndexOptions::default();
    let (report, embed_seconds, baseline_kib) = match mode.as_str() {
        "record" => {
            let recording = Recording {
                inner: model.as_ref(),
                vectors: Mutex::new(HashMap::new()),
                busy: Mutex::new(Duration::ZERO),
            };
            let baseline = status_kib("VmRSS:");
            let report = ibex::index_corpus_with_embedder(
                Path::new(corpus),
                Path::new(index),
                &options,
                &recording,
                |_| {},
            )?;
            let busy = recording
                .busy
                .lock()
                .map(|b| b.as_secs_f64())
                .unwrap_or(0.0);
            let vectors = recording.vectors.into_inner().unwrap_or_default();
            write_cache(Path::new(cache), &vectors)?;
            (report, Some(busy), baseline)
        }
        "replay" => {
            let replaying = Replaying {
                inner: model.as_ref(),
                vectors: read_cache(Path::new(cache))?,
            };
            let baseline = status_kib("VmRSS:");
            let report = ibex::index_corpus_with_embedder(
                Path::new(corpus),
                Path::new(index),
                &options,
                &replaying,
                |_| {},
            )?;
            (report, None, baseline)
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "documents": report.documents_in_index,
            "chunks": report.chunks_in_index,
            "commits": report.commits,
            "seconds": report.seconds,
            "documents_per_s": report.documents_in_index as f64 / report.seconds,
            "chunks_per_s": report.chunks_in_index as f64 / report.seconds,
            "seconds_in_model": embed_seconds,
            "peak_rss_mib": status_kib("VmHWM:") as f64 / 1024.0,
            "rss_before_indexing_mib": baseline_kib as f64 / 1024.0,
        })
    );
    Ok(())
}
