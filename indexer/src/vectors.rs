//! Vector segments: the dense half of the index.
//!
//! A segment is an immutable file of chunk vectors, written once by a commit and never modified.
//! Small segments are scanned exactly (a dot-product scan is both exact and, below a few thousand
//! vectors, faster than walking a graph); large ones also carry an HNSW graph ([`crate::hnsw`]),
//! which reads the segment's vectors in place. A graph cannot
//! delete, so a deleted or replaced chunk stays in its segment, masked by the live set the index
//! derives from its committed documents, until a merge rewrites the segment without it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::durable::write_durably;
use crate::error::{IndexError, Result};
use crate::hnsw::{HnswGraph, Similarity};
use crate::quantized::{sample_rows, BinaryCodes, Int8Codes, VectorStorage, RANGE_SAMPLE_ROWS};

/// The dot product every similarity in ibex uses (AVX-512 / AVX2 chosen at run time).
pub use ibex_embedder::vector::dot;

const MAGIC: &[u8; 8] = b"IBEXVEC1";

/// Segments with at least this many vectors get an HNSW graph; smaller ones are scanned exactly.
/// Measured (BENCHMARKS.md, `bench/segment_crossover.sh`): the graph is 2x faster than the exact
/// scan at 10,000 real embeddings (recall@10 0.995), only 1.1x at 5,000, slower at 2,000.
pub const HNSW_MIN_VECTORS: usize = 10_000;

/// HNSW construction parameters (as in hnswlib's and faiss's usual defaults).
pub const HNSW_MAX_CONNECTIONS: usize = 16;
/// Candidates kept while inserting a vector into the graph.
pub const HNSW_EF_CONSTRUCTION: usize = 200;

/// How a segment is described in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// The segment's id (its file is named after it).
    pub id: u64,
    /// File name of its vectors, in `vectors/`.
    pub file: String,
    /// Vectors it holds.
    pub rows: usize,
    /// CRC-32 of the vector file, checked on load.
    pub crc32: u32,
    /// The segment's HNSW graph file, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphFile>,
    /// Base name of a graph written by ibex versions that used the hnsw_rs crate
    /// (`{basename}.hnsw.graph` and `.hnsw.data`). Such a graph is rebuilt in memory on load
    /// (the vectors are all it needs) and replaced by a [`GraphFile`] at the next merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw: Option<String>,
}

/// An HNSW graph file and its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphFile {
    /// File name of the graph, in `vectors/`.
    pub file: String,
    /// CRC-32 of the graph file, checked on load.
    pub crc32: u32,
}

impl SegmentMeta {
    /// Whether the segment is searched through a graph (large segments).
    pub fn has_graph(&self) -> bool {
        self.graph.is_some() || self.hnsw.is_some()
    }
}

/// A set of chunk keys, as a bitset (chunk keys are dense, allocated in order).
#[derive(Debug, Clone, Default)]
pub struct ChunkSet {
    words: Vec<u64>,
    len: usize,
}

impl ChunkSet {
    /// Adds the keys `start..end`.
    pub fn insert_range(&mut self, start: u64, end: u64) {
        for key in start..end {
            let (word, bit) = ((key / 64) as usize, key % 64);
            if word >= self.words.len() {
                self.words.resize(word + 1, 0);
            }
            if self.words[word] & (1 << bit) == 0 {
                self.words[word] |= 1 << bit;
                self.len += 1;
            }
        }
    }

    /// Whether `key` is in the set.
    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        let word = (key / 64) as usize;
        word < self.words.len() && self.words[word] & (1 << (key % 64)) != 0
    }

    /// Number of keys in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A chunk found by vector search.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHit {
    /// The chunk's key.
    pub chunk_key: u64,
    /// Its dot product with the query.
    pub score: f32,
}

#[derive(PartialEq)]
struct MinScored(f32, u64);
impl Eq for MinScored {}
impl PartialOrd for MinScored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MinScored {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap's top is the worst hit kept so far.
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// Keeps the best `k` hits seen.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<MinScored>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            // Grows as hits arrive: a caller's k must not decide an allocation up front.
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1024)),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, score: f32, key: u64) {
        if self.heap.len() < self.k {
            self.heap.push(MinScored(score, key));
        } else if let Some(worst) = self.heap.peek() {
            if score > worst.0 {
                self.heap.pop();
                self.heap.push(MinScored(score, key));
            }
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<ChunkHit> {
        let mut hits: Vec<ChunkHit> = self
            .heap
            .into_iter()
            .map(|m| ChunkHit {
                chunk_key: m.1,
                score: m.0,
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk_key.cmp(&b.chunk_key))
        });
        hits
    }
}

/// How a segment holds its rows in memory (see [`crate::quantized`]).
enum HeldVectors {
    F32(Vec<f32>),
    /// Codes in memory; the full-precision rows are read from the segment file, kept open.
    Quantized {
        codes: Codes,
        file: VectorFile,
    },
}

/// A quantized segment's codes (built row by row while the segment is written or loaded).
enum Codes {
    Int8(Int8Codes),
    Binary(BinaryCodes),
}

impl Codes {
    /// Empty codes for `rows` rows of `storage` (a quantized one); `sample`: rows spread over
    /// the segment ([`sample_rows`]), from which int8 takes its ranges.
    fn new(storage: VectorStorage, dimension: usize, sample: &[f32], rows: usize) -> Codes {
        match storage {
            VectorStorage::Binary => Codes::Binary(BinaryCodes::new(dimension, rows)),
            VectorStorage::Int8 | VectorStorage::F32 => {
                Codes::Int8(Int8Codes::with_ranges(dimension, sample, rows))
            }
        }
    }

    fn push(&mut self, vector: &[f32]) {
        match self {
            Codes::Int8(codes) => codes.push(vector),
            Codes::Binary(codes) => codes.push(vector),
        }
    }

    fn storage(&self) -> VectorStorage {
        match self {
            Codes::Int8(_) => VectorStorage::Int8,
            Codes::Binary(_) => VectorStorage::Binary,
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Codes::Int8(codes) => codes.memory_bytes(),
            Codes::Binary(codes) => codes.memory_bytes(),
        }
    }
}

/// Decodes little-endian f32 values from `bytes` into `out`.
fn decode_f32(bytes: &[u8], out: &mut [f32]) {
    for (value, raw) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *value = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    }
}

/// What a segment holds in memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SegmentMemory {
    /// Chunk keys (8 bytes a row).
    pub keys: usize,
    /// Vectors or their codes.
    pub vectors: usize,
    /// The HNSW graph's links and levels.
    pub graph: usize,
}

/// The full-precision vectors of a segment file, read by row: quantized segments rescore their
/// candidates and copy their rows into merges from it.
struct VectorFile {
    file: File,
    path: std::path::PathBuf,
    /// Offset of row 0's vector.
    start: u64,
    dimension: usize,
}

impl VectorFile {
    fn open(path: &Path, rows: usize, dimension: usize) -> Result<VectorFile> {
        let file = File::open(path)
            .map_err(|e| IndexError::io(format!("opening vector segment {}", path.display()), e))?;
        // Rescoring reads a few rows at random: the kernel's readahead would read (and cache)
        // 128 KiB around each 1.5 KiB row, evicting more useful pages. Advice only; its failure
        // changes nothing but speed.
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for the duration of the call, which only gives advice.
            let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        }
        Ok(VectorFile {
            file,
            path: path.to_path_buf(),
            start: (HEADER_BYTES + rows * 8) as u64,
            dimension,
        })
    }

    /// Reads rows `first..first + out.len() / dimension` into `out`.
    fn read_rows(&self, first: usize, out: &mut [f32]) -> Result<()> {
        let mut bytes = vec![0u8; out.len() * 4];
        let offset = self.start + (first * self.dimension * 4) as u64;
        read_exact_at(&self.file, &mut bytes, offset).map_err(|e| {
            IndexError::io(
                format!("reading vectors from segment {}", self.path.display()),
                e,
            )
        })?;
        decode_f32(&bytes, out);
        Ok(())
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Bytes before a segment file's keys: magic, dimension (u32), rows (u64).
const HEADER_BYTES: usize = 20;

/// Rows read from a segment file at a time while quantizing it.
const ROWS_PER_READ: usize = 1024;

/// One immutable vector segment, loaded in memory.
pub struct VectorSegment {
    /// How the manifest describes it.
    pub meta: SegmentMeta,
    dimension: usize,
    keys: Vec<u64>,
    vectors: HeldVectors,
    graph: Option<HnswGraph>,
}

impl VectorSegment {
    /// Writes a new segment into `dir`, durably, with an HNSW graph when `with_graph` (callers
    /// decide by size: see [`HNSW_MIN_VECTORS`]), and returns it, holding its rows as `storage`
    /// says (the file always has them at full precision).
    pub fn write(
        dir: &Path,
        id: u64,
        dimension: usize,
        keys: Vec<u64>,
        vectors: Vec<f32>,
        with_graph: bool,
        storage: VectorStorage,
    ) -> Result<VectorSegment> {
        debug_assert_eq!(keys.len() * dimension, vectors.len());
        let file = format!("seg-{id:08}.vec");
        let path = dir.join(&file);
        let mut bytes = Vec::with_capacity(HEADER_BYTES + keys.len() * 8 + vectors.len() * 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(dimension as u32).to_le_bytes());
        bytes.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for key in &keys {
            bytes.extend_from_slice(&key.to_le_bytes());
        }
        for value in &vectors {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        let crc32 = crc32fast::hash(&bytes);
        write_durably(&path, &bytes)?;
        drop(bytes);

        let rows = keys.len();
        let mut meta = SegmentMeta {
            id,
            file,
            rows,
            crc32,
            graph: None,
            hnsw: None,
        };
        let mut graph = None;
        if with_graph && rows > 0 {
            let built = HnswGraph::build(
                &vectors,
                dimension,
                HNSW_MAX_CONNECTIONS,
                HNSW_EF_CONSTRUCTION,
                id,
            );
            let file = format!("seg-{id:08}.hnsw");
            let bytes = built.to_bytes();
            let crc32 = crc32fast::hash(&bytes);
            write_durably(&dir.join(&file), &bytes)?;
            meta.graph = Some(GraphFile { file, crc32 });
            graph = Some(built);
        }
        VectorSegment::holding(dir, meta, dimension, keys, vectors, graph, storage)
    }

    /// A segment of full-precision `vectors`, converted to `storage`.
    fn holding(
        dir: &Path,
        meta: SegmentMeta,
        dimension: usize,
        keys: Vec<u64>,
        vectors: Vec<f32>,
        graph: Option<HnswGraph>,
        storage: VectorStorage,
    ) -> Result<VectorSegment> {
        let rows = keys.len();
        let vectors = match storage {
            VectorStorage::F32 => HeldVectors::F32(vectors),
            quantized => {
                let mut sample = Vec::new();
                if quantized == VectorStorage::Int8 {
                    for row in sample_rows(rows) {
                        sample.extend_from_slice(&vectors[row * dimension..(row + 1) * dimension]);
                    }
                }
                let mut codes = Codes::new(quantized, dimension, &sample, rows);
                vectors
                    .chunks_exact(dimension.max(1))
                    .for_each(|v| codes.push(v));
                let file = VectorFile::open(&dir.join(&meta.file), rows, dimension)?;
                HeldVectors::Quantized { codes, file }
            }
        };
        Ok(VectorSegment {
            meta,
            dimension,
            keys,
            vectors,
            graph,
        })
    }

    /// Loads a segment described by `meta` from `dir`, checking its checksums, and holds its
    /// rows as `storage` says.
    pub fn load(
        dir: &Path,
        meta: &SegmentMeta,
        dimension: usize,
        storage: VectorStorage,
    ) -> Result<VectorSegment> {
        let path = dir.join(&meta.file);
        let corrupt = |reason: String| IndexError::Corrupt {
            path: path.clone(),
            reason,
        };
        // A graph of the hnsw_rs era is rebuilt from the full vectors, so those are read whole.
        if storage.is_f32() || meta.hnsw.is_some() {
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| {
                    IndexError::io(format!("reading vector segment {}", path.display()), e)
                })?;
            if crc32fast::hash(&bytes) != meta.crc32 {
                return Err(corrupt("checksum mismatch".into()));
            }
            check_header(&bytes, bytes.len() as u64, meta, dimension).map_err(corrupt)?;
            let keys_end = HEADER_BYTES + meta.rows * 8;
            let keys = bytes[HEADER_BYTES..keys_end]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            let vectors: Vec<f32> = bytes[keys_end..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            drop(bytes);
            let graph = match &meta.graph {
                Some(graph) => Some(load_graph(dir, graph, meta.rows)?),
                None => meta.hnsw.as_ref().map(|_| {
                    HnswGraph::build(
                        &vectors,
                        dimension,
                        HNSW_MAX_CONNECTIONS,
                        HNSW_EF_CONSTRUCTION,
                        meta.id,
                    )
                }),
            };
            return VectorSegment::holding(
                dir,
                meta.clone(),
                dimension,
                keys,
                vectors,
                graph,
                storage,
            );
        }

        // Quantized: the file is streamed once (checksum, keys, codes), never held whole.
        let io_error = |e: std::io::Error| {
            IndexError::io(format!("reading vector segment {}", path.display()), e)
        };
        let file = VectorFile::open(&path, meta.rows, dimension)?;
        let length = file.file.metadata().map_err(io_error)?.len();
        let mut header = [0u8; HEADER_BYTES];
        read_exact_at(&file.file, &mut header, 0).map_err(io_error)?;
        check_header(&header, length, meta, dimension).map_err(corrupt)?;
        let rows = meta.rows;
        let mut sample = Vec::new();
        if storage == VectorStorage::Int8 {
            sample.resize(rows.min(RANGE_SAMPLE_ROWS) * dimension, 0.0);
            for (row, out) in sample_rows(rows).zip(sample.chunks_exact_mut(dimension.max(1))) {
                file.read_rows(row, out)?;
            }
        }
        let mut codes = Codes::new(storage, dimension, &sample, rows);
        // A handle of its own for the sequential pass: the kept one is advised random access,
        // which would turn off the readahead this pass wants.
        let mut reader =
            std::io::BufReader::with_capacity(1 << 20, File::open(&path).map_err(io_error)?);
        let mut hasher = crc32fast::Hasher::new();
        let mut read = |buf: &mut [u8]| -> Result<()> {
            reader.read_exact(buf).map_err(io_error)?;
            hasher.update(buf);
            Ok(())
        };
        read(&mut header)?;
        let mut key_bytes = vec![0u8; rows * 8];
        read(&mut key_bytes)?;
        let keys = key_bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        drop(key_bytes);
        let mut block = vec![0u8; ROWS_PER_READ * dimension * 4];
        let mut values = vec![0f32; ROWS_PER_READ * dimension];
        let mut done = 0;
        while done < rows {
            let count = (rows - done).min(ROWS_PER_READ);
            let bytes = &mut block[..count * dimension * 4];
            read(bytes)?;
            let values = &mut values[..count * dimension];
            decode_f32(bytes, values);
            values
                .chunks_exact(dimension.max(1))
                .for_each(|v| codes.push(v));
            done += count;
        }
        if hasher.finalize() != meta.crc32 {
            return Err(corrupt("checksum mismatch".into()));
        }
        let graph = match &meta.graph {
            Some(graph) => Some(load_graph(dir, graph, rows)?),
            None => None,
        };
        Ok(VectorSegment {
            meta: meta.clone(),
            dimension,
            keys,
            vectors: HeldVectors::Quantized { codes, file },
            graph,
        })
    }

    /// How the segment holds its rows in memory.
    pub fn storage(&self) -> VectorStorage {
        match &self.vectors {
            HeldVectors::F32(_) => VectorStorage::F32,
            HeldVectors::Quantized { codes, .. } => codes.storage(),
        }
    }

    /// What the segment holds in memory.
    pub fn memory(&self) -> SegmentMemory {
        SegmentMemory {
            keys: self.keys.capacity() * 8,
            vectors: match &self.vectors {
                HeldVectors::F32(vectors) => vectors.capacity() * 4,
                HeldVectors::Quantized { codes, .. } => codes.memory_bytes(),
            },
            graph: self.graph.as_ref().map_or(0, HnswGraph::memory_bytes),
        }
    }

    /// Chunk keys of the rows, in row order.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The full-precision vector of row `row` (read from the segment file when the rows in
    /// memory are quantized).
    pub fn vector(&self, row: usize) -> Result<Cow<'_, [f32]>> {
        match &self.vectors {
            HeldVectors::F32(vectors) => Ok(Cow::Borrowed(
                &vectors[row * self.dimension..(row + 1) * self.dimension],
            )),
            HeldVectors::Quantized { file, .. } => {
                let mut vector = vec![0f32; self.dimension];
                file.read_rows(row, &mut vector)?;
                Ok(Cow::Owned(vector))
            }
        }
    }

    /// Calls `f` with every row's key and full-precision vector, in row order (a merge copies
    /// live rows this way; quantized segments read their file in blocks).
    pub fn for_each_vector(&self, mut f: impl FnMut(u64, &[f32])) -> Result<()> {
        let dimension = self.dimension.max(1);
        match &self.vectors {
            HeldVectors::F32(vectors) => {
                for (key, vector) in self.keys.iter().zip(vectors.chunks_exact(dimension)) {
                    f(*key, vector);
                }
            }
            HeldVectors::Quantized { file, .. } => {
                let mut block = vec![0f32; ROWS_PER_READ * dimension];
                for (first, keys) in self.keys.chunks(ROWS_PER_READ).enumerate() {
                    let values = &mut block[..keys.len() * dimension];
                    file.read_rows(first * ROWS_PER_READ, values)?;
                    for (key, vector) in keys.iter().zip(values.chunks_exact(dimension)) {
                        f(*key, vector);
                    }
                }
            }
        }
        Ok(())
    }

    /// Number of rows whose chunk key is in `allowed`.
    pub fn count_allowed(&self, allowed: &ChunkSet) -> usize {
        self.keys.iter().filter(|&&k| allowed.contains(k)).count()
    }

    /// The `k` best chunks of this segment among `allowed`, by dot product with `query`, with a
    /// beam of `ef` when the segment has a graph. `allowed_rows` is how many of the segment's
    /// rows `allowed` holds, when the caller knows it (the index keeps its live count per
    /// segment); otherwise it is counted, which costs a pass over the keys. Quantized segments
    /// rank by their codes and rescore the best candidates at full precision, so the scores
    /// returned are exact.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        allowed: &ChunkSet,
        allowed_rows: Option<usize>,
        ef: usize,
    ) -> Result<Vec<ChunkHit>> {
        if let Some(graph) = &self.graph {
            let allowed_rows = allowed_rows.unwrap_or_else(|| self.count_allowed(allowed));
            // A graph walk under a filter that rejects most rows degrades into a slow, lossy
            // scan; an exact scan of the few allowed rows is both faster and exact.
            if allowed_rows * 20 >= self.keys.len() {
                let keys = &self.keys;
                let filter = |row: u32| allowed.contains(keys[row as usize]);
                let filter: Option<&dyn Fn(u32) -> bool> = if allowed_rows < self.keys.len() {
                    Some(&filter)
                } else {
                    None
                };
                let depth = self.storage().rescoring_depth(k);
                let found = match &self.vectors {
                    HeldVectors::F32(vectors) => {
                        graph.search(vectors, self.dimension, query, k, ef.max(k), filter)
                    }
                    HeldVectors::Quantized {
                        codes: Codes::Int8(codes),
                        ..
                    } => graph.search_by(&codes.scorer(query), depth, ef.max(depth), filter),
                    HeldVectors::Quantized {
                        codes: Codes::Binary(codes),
                        ..
                    } => graph.search_by(&codes.scorer(query), depth, ef.max(depth), filter),
                };
                return self.exact_hits(query, k, found);
            }
        }
        self.scan(query, k, allowed)
    }

    /// Scan of all allowed rows: exact at full precision; quantized segments scan their codes
    /// and rescore the best candidates.
    pub fn scan(&self, query: &[f32], k: usize, allowed: &ChunkSet) -> Result<Vec<ChunkHit>> {
        match &self.vectors {
            HeldVectors::F32(vectors) => {
                let mut top = TopK::new(k);
                for (row, vector) in vectors.chunks_exact(self.dimension).enumerate() {
                    let key = self.keys[row];
                    if allowed.contains(key) {
                        top.push(dot(query, vector), key);
                    }
                }
                Ok(top.into_sorted())
            }
            HeldVectors::Quantized {
                codes: Codes::Int8(codes),
                ..
            } => self.scan_by(&codes.scorer(query), query, k, allowed),
            HeldVectors::Quantized {
                codes: Codes::Binary(codes),
                ..
            } => self.scan_by(&codes.scorer(query), query, k, allowed),
        }
    }

    fn scan_by<S: Similarity>(
        &self,
        scorer: &S,
        query: &[f32],
        k: usize,
        allowed: &ChunkSet,
    ) -> Result<Vec<ChunkHit>> {
        let mut top = TopK::new(self.storage().rescoring_depth(k));
        for (row, &key) in self.keys.iter().enumerate() {
            if allowed.contains(key) {
                top.push(scorer.similarity(row as u32), row as u64);
            }
        }
        let found = top
            .into_sorted()
            .into_iter()
            .map(|hit| (hit.chunk_key as u32, hit.score))
            .collect();
        self.exact_hits(query, k, found)
    }

    /// The best `k` of `found` (rows and their scores) as chunk hits: as they are at full
    /// precision, rescored from the segment file when the scores came from codes.
    fn exact_hits(&self, query: &[f32], k: usize, found: Vec<(u32, f32)>) -> Result<Vec<ChunkHit>> {
        let HeldVectors::Quantized { file, .. } = &self.vectors else {
            return Ok(found
                .into_iter()
                .map(|(row, score)| ChunkHit {
                    chunk_key: self.keys[row as usize],
                    score,
                })
                .collect());
        };
        let mut top = TopK::new(k);
        let mut vector = vec![0f32; self.dimension];
        for (row, _) in found {
            let row = row as usize;
            file.read_rows(row, &mut vector)?;
            top.push(dot(query, &vector), self.keys[row]);
        }
        Ok(top.into_sorted())
    }
}

/// Checks a segment file's header (and its length, `length`) against its manifest entry.
fn check_header(
    header: &[u8],
    length: u64,
    meta: &SegmentMeta,
    dimension: usize,
) -> std::result::Result<(), String> {
    if header.len() < HEADER_BYTES || &header[..8] != MAGIC {
        return Err("not an ibex vector segment".into());
    }
    let file_dimension = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default()) as usize;
    let rows = u64::from_le_bytes(header[12..20].try_into().unwrap_or_default()) as usize;
    let expected = (HEADER_BYTES + rows * 8 + rows * dimension * 4) as u64;
    if file_dimension != dimension || rows != meta.rows || length != expected {
        return Err(format!(
            "holds {rows} vectors of {file_dimension} dims; the manifest expects {} of {dimension}",
            meta.rows
        ));
    }
    Ok(())
}

/// Reads and checks a segment's graph file.
fn load_graph(dir: &Path, graph: &GraphFile, rows: usize) -> Result<HnswGraph> {
    let path = dir.join(&graph.file);
    let bytes = std::fs::read(&path)
        .map_err(|e| IndexError::io(format!("reading HNSW graph {}", path.display()), e))?;
    if crc32fast::hash(&bytes) != graph.crc32 {
        return Err(IndexError::Corrupt {
            path,
            reason: "checksum mismatch".into(),
        });
    }
    HnswGraph::from_bytes(&bytes, rows).map_err(|reason| IndexError::Corrupt { path, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_unit_vectors(n: usize, dimension: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n * dimension);
        for _ in 0..n {
            let v: Vec<f32> = (0..dimension)
                .map(|_| rng.gen_range(-1.0f32..1.0))
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        out
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.05).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }

    const STORAGES: [VectorStorage; 3] = [
        VectorStorage::F32,
        VectorStorage::Int8,
        VectorStorage::Binary,
    ];

    #[test]
    fn graph_segment_round_trips_and_finds_the_exact_neighbours_in_every_storage() {
        let dir = tempfile::tempdir().unwrap();
        let (n, dimension) = (3000, 24);
        let keys: Vec<u64> = (0..n as u64).map(|k| k * 2 + 7).collect();
        let vectors = random_unit_vectors(n, dimension, 1);
        let written = VectorSegment::write(
            dir.path(),
            3,
            dimension,
            keys.clone(),
            vectors.clone(),
            true,
            VectorStorage::F32,
        )
        .unwrap();
        assert!(written.meta.graph.is_some());
        let mut all = ChunkSet::default();
        keys.iter().for_each(|&k| all.insert_range(k, k + 1));
        // Half the keys allowed: the graph search must return only allowed keys.
        let mut half = ChunkSet::default();
        keys.iter()
            .step_by(2)
            .for_each(|&k| half.insert_range(k, k + 1));
        let queries = random_unit_vectors(50, dimension, 2);

        for storage in STORAGES {
            let loaded =
                VectorSegment::load(dir.path(), &written.meta, dimension, storage).unwrap();
            assert_eq!(loaded.storage(), storage);
            assert_eq!(loaded.keys(), &keys[..]);
            assert_eq!(
                &*loaded.vector(17).unwrap(),
                &vectors[17 * dimension..18 * dimension]
            );
            let mut copied = Vec::new();
            loaded
                .for_each_vector(|_, v| copied.extend_from_slice(v))
                .unwrap();
            assert_eq!(copied, vectors, "{storage}");
            let mut found = 0;
            let mut scanned = 0;
            for query in queries.chunks_exact(dimension) {
                let exact: Vec<u64> = written
                    .scan(query, 10, &all)
                    .unwrap()
                    .iter()
                    .map(|h| h.chunk_key)
                    .collect();
                let approximate = loaded.search(query, 10, &all, None, 100).unwrap();
                for hit in &approximate {
                    // Whatever ranked the candidates, the scores returned are exact.
                    let row = keys.iter().position(|&k| k == hit.chunk_key).unwrap();
                    let vector = &vectors[row * dimension..(row + 1) * dimension];
                    assert!((hit.score - dot(query, vector)).abs() < 1e-6, "{storage}");
                }
                found += approximate
                    .iter()
                    .filter(|h| exact.contains(&h.chunk_key))
                    .count();
                scanned += loaded
                    .scan(query, 10, &all)
                    .unwrap()
                    .iter()
                    .filter(|h| exact.contains(&h.chunk_key))
                    .count();
                let filtered = loaded.search(query, 10, &half, None, 100).unwrap();
                assert!(filtered.iter().all(|h| half.contains(h.chunk_key)));
            }
            let recall = found as f64 / 500.0;
            assert!(
                recall >= 0.9,
                "{storage}: recall@10 of the graph against exact search: {recall}"
            );
            let recall = scanned as f64 / 500.0;
            assert!(
                recall >= 0.9,
                "{storage}: recall@10 of the scan against exact search: {recall}"
            );
        }
    }

    #[test]
    fn quantized_segments_hold_less_and_a_write_holds_what_a_load_would() {
        let dir = tempfile::tempdir().unwrap();
        let (n, dimension) = (500, 64);
        let keys: Vec<u64> = (0..n as u64).collect();
        let vectors = random_unit_vectors(n, dimension, 5);
        let mut all = ChunkSet::default();
        all.insert_range(0, n as u64);
        let query = &random_unit_vectors(1, dimension, 6)[..];
        let full = VectorSegment::write(
            dir.path(),
            1,
            dimension,
            keys.clone(),
            vectors.clone(),
            false,
            VectorStorage::F32,
        )
        .unwrap();
        assert_eq!(full.memory().vectors, n * dimension * 4);
        for (id, storage, bytes_per_row) in [
            (2, VectorStorage::Int8, dimension),
            (3, VectorStorage::Binary, dimension / 8),
        ] {
            let written = VectorSegment::write(
                dir.path(),
                id,
                dimension,
                keys.clone(),
                vectors.clone(),
                false,
                storage,
            )
            .unwrap();
            // The per-dimension ranges of int8 are the only other bytes.
            let held = written.memory().vectors;
            assert!(held >= n * bytes_per_row && held <= n * bytes_per_row + dimension * 8);
            let loaded =
                VectorSegment::load(dir.path(), &written.meta, dimension, storage).unwrap();
            assert_eq!(
                written.scan(query, 10, &all).unwrap(),
                loaded.scan(query, 10, &all).unwrap(),
                "{storage}"
            );
        }
    }

    /// A quantized segment reads its file at search time: a file cut short after the load (a
    /// disk or a person that damaged it) makes searches fail with an error naming it, not panic
    /// or return scores from the codes.
    #[test]
    fn a_quantized_segment_whose_file_is_cut_short_reports_it_at_search() {
        let dir = tempfile::tempdir().unwrap();
        let (n, dimension) = (300, 16);
        let written = VectorSegment::write(
            dir.path(),
            1,
            dimension,
            (0..n as u64).collect(),
            random_unit_vectors(n, dimension, 8),
            true,
            VectorStorage::F32,
        )
        .unwrap();
        let mut all = ChunkSet::default();
        all.insert_range(0, n as u64);
        let query = &random_unit_vectors(1, dimension, 9)[..];
        for storage in [VectorStorage::Int8, VectorStorage::Binary] {
            let loaded =
                VectorSegment::load(dir.path(), &written.meta, dimension, storage).unwrap();
            let path = dir.path().join(&written.meta.file);
            let bytes = std::fs::read(&path).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(HEADER_BYTES as u64)
                .unwrap();
            let err = loaded.search(query, 10, &all, None, 100).unwrap_err();
            assert!(
                matches!(err, IndexError::Io { .. })
                    && err.to_string().contains("seg-00000001.vec"),
                "{storage}: {err}"
            );
            assert!(loaded.scan(query, 10, &all).is_err());
            assert!(loaded.vector(0).is_err());
            std::fs::write(&path, bytes).unwrap();
        }
    }

    #[test]
    fn damaged_segment_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let segment = VectorSegment::write(
            dir.path(),
            1,
            4,
            vec![1, 2],
            random_unit_vectors(2, 4, 3),
            false,
            VectorStorage::F32,
        )
        .unwrap();
        let path = dir.path().join(&segment.meta.file);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        for storage in STORAGES {
            let err = VectorSegment::load(dir.path(), &segment.meta, 4, storage)
                .err()
                .unwrap();
            assert!(
                matches!(err, IndexError::Corrupt { .. }),
                "{storage}: {err}"
            );
        }
        // A truncated file is caught before anything is read past its end.
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        for storage in STORAGES {
            let err = VectorSegment::load(dir.path(), &segment.meta, 4, storage)
                .err()
                .unwrap();
            assert!(
                matches!(err, IndexError::Corrupt { .. }),
                "{storage}: {err}"
            );
        }
    }
}
