//! What the fuzz targets share: a small real index built once per process (two commits, one
//! segment large enough to carry an HNSW graph, a deletion), a way to re-seal checksums after
//! a mutation so that the fuzzer reaches the parsers behind them, and the searches every opened
//! index must answer without panicking.
//!
//! The fixture's vectors are made here rather than by a model: the targets fuzz what ibex reads
//! from disk and from requests, and a model would only slow each execution down. The index is
//! written by ibex's own writer (`IndexWriter::upsert_embedded`, the path distributed builds use),
//! so its files are exactly what a real index holds.

pub mod api;
pub mod tiny_llm;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ibex_indexer::chunk::{ChunkSpan, ChunkingParams, EmbeddedChunks};
use ibex_indexer::{Document, Index, ModelInfo};
use ibex_search::{ChunkAggregation, Filter, Fusion, Mode, SearchRequest};

/// Length of the fixture's vectors.
pub const DIMENSION: usize = 8;
/// The model id the fixture index records.
pub const MODEL_ID: &str = "fuzz-fixture-model";

/// A deterministic unit vector for `seed`.
pub fn unit_vector(seed: usize) -> Vec<f32> {
    let raw: Vec<f32> = (0..DIMENSION)
        .map(|i| ((seed * 7 + i * 13) as f32 * 0.37).sin() + 0.01)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    raw.into_iter().map(|x| x / norm).collect()
}

const WORDS: [&str; 16] = [
    "glacier", "retreat", "summer", "ice", "river", "delta", "wing", "flow", "boundary", "layer",
    "pressure", "heat", "transfer", "shock", "wave", "surface",
];

fn document(n: usize) -> (Document, EmbeddedChunks) {
    let text: String = (0..40)
        .map(|i| WORDS[(n * 5 + i * 3) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ");
    let chars = text.chars().count();
    let mut metadata = serde_json::Map::new();
    metadata.insert("lang".into(), if n % 2 == 0 { "en" } else { "fr" }.into());
    metadata.insert("year".into(), (1990 + n % 7).into());
    let doc = Document {
        id: format!("doc-{n}"),
        title: format!("{} {}", WORDS[n % WORDS.len()], n),
        text,
        metadata,
    };
    let spans = vec![
        ChunkSpan {
            start: 0,
            end: chars / 2,
        },
        ChunkSpan {
            start: chars / 3,
            end: chars,
        },
    ];
    let vectors = [unit_vector(n * 2), unit_vector(n * 2 + 1)].concat();
    (doc, EmbeddedChunks { spans, vectors })
}

fn build_fixture(dir: &Path) -> Result<(), ibex_indexer::IndexError> {
    let model = ModelInfo {
        id: MODEL_ID.into(),
        source: MODEL_ID.into(),
        dimension: DIMENSION,
    };
    let mut index = Index::create(dir, model, ChunkingParams::default())?;
    let mut writer = index.embedded_writer()?.with_graph_threshold(40);
    let first: Vec<_> = (0..30).map(document).collect();
    writer.upsert_embedded(MODEL_ID, &first)?;
    writer.commit()?;
    let second: Vec<_> = (25..36).map(document).collect();
    writer.upsert_embedded(MODEL_ID, &second)?;
    writer.delete(&["doc-3"]);
    writer.commit()?;
    writer.finish()
}

/// The fixture index, built on first use in a temporary folder that lives as long as the process.
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let temp = tempfile::Builder::new()
            .prefix("ibex-fuzz-fixture")
            .tempdir()
            .expect("a temporary folder for the fixture index");
        let dir = temp.keep().join("index");
        build_fixture(&dir).expect("the fixture index builds");
        dir
    })
}

/// The fixture index, opened once.
pub fn fixture_index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| Index::open(fixture_dir()).expect("the fixture index opens"))
}

/// Every file under `dir`, relative, sorted (so a byte of fuzz input names the same file in
/// every run).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Copies the directory tree `from` to `to`.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for relative in files_under(from) {
        let target = to.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from.join(&relative), target)?;
    }
    Ok(())
}

/// Recomputes the checksums an index's manifests hold (of the vector segments and graphs they
/// name, then of the manifest itself), as if the damaged files had been written that way: the
/// fuzzer then reaches the parsers behind the checksums. A manifest that is not JSON of the
/// expected shape is left as it is.
pub fn reseal(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_manifest = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("manifest-") && n.ends_with(".json"));
        if !is_manifest {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(mut file) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let Some(manifest) = file.get_mut("manifest") else {
            continue;
        };
        if let Some(segments) = manifest.get_mut("segments").and_then(|s| s.as_array_mut()) {
            for segment in segments {
                reseal_file(dir, segment);
                if let Some(graph) = segment.get_mut("graph") {
                    reseal_file(dir, graph);
                }
            }
        }
        let crc = crc32fast::hash(manifest.to_string().as_bytes());
        file["crc32"] = crc.into();
        let _ = std::fs::write(&path, file.to_string());
    }
}

/// Sets `entry["crc32"]` to the checksum of `vectors/{entry["file"]}` when both are there.
fn reseal_file(dir: &Path, entry: &mut serde_json::Value) {
    let Some(name) = entry.get("file").and_then(|f| f.as_str()) else {
        return;
    };
    // A file name from a damaged manifest may point anywhere: only plain names are followed.
    if name.contains('/') || name.contains("..") {
        return;
    }
    if let Ok(bytes) = std::fs::read(dir.join("vectors").join(name)) {
        entry["crc32"] = crc32fast::hash(&bytes).into();
    }
}

/// The searches and reads every opened index must answer (with results or errors, never a
/// panic): vector search, BM25, dense and hybrid with a vector, filtered, a document read.
pub fn exercise(index: &Index) {
    let _ = index.num_documents();
    let _ = index.num_chunks();
    let query = unit_vector(11);
    let _ = index.search_vectors(&query, 10, None);
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        let mut request = SearchRequest::new("glacier heat transfer");
        request.mode = mode;
        if mode != Mode::Bm25 {
            request.vector = Some(query.clone());
        }
        let _ = ibex_search::search(index, None, &request);
        request.filters = vec![
            Filter::parse_cli("lang=en").expect("a valid filter"),
            Filter::parse_cli("year>=2000").expect("a valid filter"),
        ];
        request.aggregation = ChunkAggregation::TopKSum(2);
        let _ = ibex_search::search(index, None, &request);
    }
    for id in ["doc-1", "doc-3", "doc-30"] {
        let _ = index.get_document(id);
    }
}

/// A little reader over fuzz input: bytes and numbers taken from the front, the rest as payload.
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `bytes` from the front.
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes }
    }

    /// The next byte (0 when the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&first, rest)) => {
                self.bytes = rest;
                first
            }
            None => 0,
        }
    }

    /// The next four bytes as a little-endian number (missing bytes are 0).
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to the next `separator` (consumed) or the end.
    pub fn until(&mut self, separator: u8) -> &'a [u8] {
        match self.bytes.iter().position(|&b| b == separator) {
            Some(at) => {
                let (head, rest) = self.bytes.split_at(at);
                self.bytes = &rest[1..];
                head
            }
            None => self.rest(),
        }
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

/// A fusion from a byte: RRF with some k, or weighted with some alpha (out-of-range values
/// included, which the search must refuse or clamp, not crash on).
pub fn fusion_from(byte: u8, number: u32) -> Fusion {
    if byte % 2 == 0 {
        Fusion::ReciprocalRank {
            k: f32::from_bits(number),
        }
    } else {
        Fusion::Weighted {
            alpha: f32::from_bits(number),
        }
    }
}
