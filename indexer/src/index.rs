//! Opening, creating and reading an ibex index directory.
//!
//! Layout of an index directory:
//! - `lexical/`: the tantivy index (BM25 over title + text, and the document store);
//! - `vectors/`: immutable vector segments (`seg-N.vec`, plus the HNSW graph `seg-N.hnsw` for large ones);
//! - `manifest-G.json`: the manifest of commit generation G.
//!
//! The current generation is the one named by the payload of tantivy's last commit: that commit
//! is the index's single linearization point (see [`crate::writer`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ibex_embedder::Embedder;
use serde::{Deserialize, Serialize};
use tantivy::directory::OwnedBytes;
use tantivy::schema::IndexRecordOption;
use tantivy::store::StoreReader;
use tantivy::{
    DocAddress, DocSet, IndexReader, ReloadPolicy, Searcher, TantivyDocument, TantivyError, Term,
    TERMINATED,
};

use crate::chunk::{ChunkSpan, ChunkingParams};
use crate::chunk_terms::{self, ChunkPositions};
use crate::durable::fsync_dir;
use crate::error::{IndexError, Result};
use crate::live::{DocChunks, LiveDocs};
use crate::manifest::{Manifest, ModelInfo, FORMAT_VERSION};
use crate::quantized::VectorStorage;
use crate::schema::{build_schema, english_analyzer, fields_of, is_ibex_schema, Fields, ANALYZER};
use crate::stored::{decode_spans, parse, StoredFields, StoredHit, StoredText};
use crate::vectors::{ChunkHit, ChunkSet, VectorSegment};

pub(crate) const LEXICAL_DIR: &str = "lexical";
/// Decompressed document-store blocks kept per lexical segment (tantivy's own default).
const STORE_CACHE_BLOCKS: usize = 100;
pub(crate) const VECTORS_DIR: &str = "vectors";
/// Where interaction data lived before it joined the commit protocol (read, never written).
pub(crate) const LEGACY_INTERACTIONS_FILE: &str = "interactions.tsv";

/// What the tantivy commit payload records.
#[derive(Serialize, Deserialize)]
pub(crate) struct CommitPayload {
    pub ibex_generation: u64,
}

impl CommitPayload {
    /// The payload as tantivy stores it: `{"ibex_generation":G}`. Written by hand (it cannot
    /// fail, and the commit must never carry an empty payload); read back with serde.
    pub(crate) fn to_json(&self) -> String {
        format!("{{\"ibex_generation\":{}}}", self.ibex_generation)
    }
}

/// A stored document, as returned by lookups and searches.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    /// The document's id.
    pub id: String,
    /// Its title (may be empty).
    pub title: String,
    /// Its text.
    pub text: String,
    /// Its metadata, as given when it was indexed.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Spans of its chunks, in order; chunk `i` has key `chunk_base + i`.
    pub chunks: Vec<ChunkSpan>,
    /// Key of its first chunk (keys are allocated in order and never reused).
    pub chunk_base: u64,
    /// Each chunk's range of BM25 token positions and token count, in chunk order: what scores
    /// passages from the postings. Empty for documents of indexes written before it was stored.
    pub chunk_positions: Vec<ChunkPositions>,
    /// SHA-256 of its id, title, text and metadata: an upsert of the same content is skipped.
    pub content_hash: String,
}

/// An open ibex index: a consistent view of one commit.
///
/// Cloning is cheap (the segments, the row map and the live set are shared) and gives an
/// immutable snapshot: the clone keeps answering from the commit it was taken at, whatever the
/// original does later. A server hands such snapshots to concurrent searches while its writer
/// moves on; every answer then comes from exactly one committed state.
#[derive(Clone)]
pub struct Index {
    pub(crate) dir: PathBuf,
    pub(crate) manifest: Manifest,
    pub(crate) lexical: tantivy::Index,
    pub(crate) reader: IndexReader,
    /// The lexical view of this snapshot's commit, pinned at the last refresh (the reader may be
    /// shared with clones that refresh later).
    pub(crate) searcher: Searcher,
    /// The searcher's document stores, opened once per searcher generation (its id first), so
    /// documents are read as bytes from their cached blocks ([`crate::stored`]).
    pub(crate) stores: Arc<(u64, Vec<StoreReader>)>,
    pub(crate) fields: Fields,
    pub(crate) segments: Vec<Arc<VectorSegment>>,
    /// Chunk key -> (segment position, row), for live chunks.
    pub(crate) rows: Arc<HashMap<u64, (u32, u32)>>,
    /// Live rows per segment (same order as `segments`), so an unfiltered search need not
    /// count them on every query.
    pub(crate) live_rows: Arc<Vec<usize>>,
    pub(crate) live: Arc<LiveDocs>,
    /// Lexical segment files whose checksums were verified (they never change once written),
    /// shared by clones so each file is read for verification once per process.
    pub(crate) verified_lexical: Arc<Mutex<HashSet<PathBuf>>>,
    /// The oldest manifest format this view reads: [`FORMAT_VERSION`], or older while a
    /// migration upgrades the index.
    pub(crate) oldest_format: u32,
}

/// Whether `dir` looks like an ibex index (it may still fail to open).
pub fn is_index(dir: &Path) -> bool {
    dir.join(LEXICAL_DIR).join("meta.json").is_file()
}

fn open_lexical(dir: &Path) -> Result<tantivy::Index> {
    let lexical = tantivy::Index::open_in_dir(dir.join(LEXICAL_DIR))?;
    lexical.tokenizers().register(ANALYZER, english_analyzer());
    Ok(lexical)
}

/// Verifies the checksum in tantivy's footer of every lexical segment file of the last commit
/// not verified before. tantivy trusts the offsets inside its files and panics on damaged ones
/// (found by the `index_files` fuzz target): on a file cut to 4-7 bytes while opening it
/// (tantivy 0.27 checks for 4 bytes of footer but reads 8, and the subtraction underflows), and
/// at the first query on a composite file whose offset table was altered. So damage must be
/// found before a reader uses the files. Only the committed segments' files are looked at: files
/// of a merge in progress are being written. Costs one read of each new segment file (the vector
/// segments are read whole at open anyway).
fn verify_lexical_checksums(
    lexical: &tantivy::Index,
    lexical_dir: &Path,
    verified: &Mutex<HashSet<PathBuf>>,
) -> Result<()> {
    let metas = lexical.load_metas()?;
    let directory = lexical.directory();
    for path in metas.list_segment_files() {
        if verified.lock().is_ok_and(|v| v.contains(&path)) {
            continue;
        }
        let len = match std::fs::metadata(lexical_dir.join(&path)) {
            Ok(metadata) => metadata.len(),
            Err(_) => continue, // see FileDoesNotExist below
        };
        if len < 8 {
            return Err(IndexError::Corrupt {
                path: lexical_dir.join(&path),
                reason: format!("{len} bytes: too short to hold its 8-byte footer (a torn write)"),
            });
        }
        match directory.validate_checksum(&path) {
            Ok(true) => {
                if let Ok(mut v) = verified.lock() {
                    v.insert(path);
                }
            }
            Ok(false) => {
                return Err(IndexError::Corrupt {
                    path: lexical_dir.join(&path),
                    reason: "its checksum does not match its contents".into(),
                })
            }
            // Candidates that do not exist (no deletes yet, or merged away by a writer since the
            // metas were read): tantivy reports a file the commit needs and cannot find.
            Err(tantivy::directory::error::OpenReadError::FileDoesNotExist(_)) => {}
            Err(e) => {
                return Err(IndexError::Corrupt {
                    path: lexical_dir.join(&path),
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(())
}

fn committed_generation(dir: &Path, lexical: &tantivy::Index) -> Result<u64> {
    let metas = lexical.load_metas()?;
    let payload = metas.payload.ok_or_else(|| IndexError::NotAnIndex {
        path: dir.to_path_buf(),
        reason: "its lexical index has no ibex commit (was it created by another program?)".into(),
    })?;
    let payload: CommitPayload =
        serde_json::from_str(&payload).map_err(|e| IndexError::Corrupt {
            path: dir.join(LEXICAL_DIR).join("meta.json"),
            reason: format!("bad commit payload: {e}"),
        })?;
    Ok(payload.ibex_generation)
}

impl Index {
    /// Creates a new, empty index at `dir` for vectors of `model`.
    ///
    /// The index is assembled in a sibling temporary directory and renamed into place, so a crash
    /// during creation leaves no half-made index at `dir`.
    pub fn create(dir: &Path, model: ModelInfo, chunking: ChunkingParams) -> Result<Index> {
        Index::create_with_storage(dir, model, chunking, VectorStorage::F32)
    }

    /// [`Index::create`], holding its vectors in memory as `vector_storage` says (see
    /// [`VectorStorage`]; it can change later with [`crate::IndexWriter::set_vector_storage`]).
    pub fn create_with_storage(
        dir: &Path,
        model: ModelInfo,
        chunking: ChunkingParams,
        vector_storage: VectorStorage,
    ) -> Result<Index> {
        chunking.validate()?;
        if dir.exists() {
            let empty = std::fs::read_dir(dir)
                .map_err(|e| IndexError::io(format!("reading {}", dir.display()), e))?
                .next()
                .is_none();
            if !empty {
                return Err(IndexError::AlreadyExists {
                    path: dir.to_path_buf(),
                });
            }
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| IndexError::io(format!("creating {}", parent.display()), e))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "index".into());
        let staging = parent.join(format!(".{name}.creating-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(staging.join(LEXICAL_DIR))
            .map_err(|e| IndexError::io(format!("creating {}", staging.display()), e))?;
        std::fs::create_dir_all(staging.join(VECTORS_DIR))
            .map_err(|e| IndexError::io(format!("creating {}", staging.display()), e))?;

        let (schema, _) = build_schema();
        let lexical = tantivy::Index::create_in_dir(staging.join(LEXICAL_DIR), schema)?;
        lexical.tokenizers().register(ANALYZER, english_analyzer());
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            generation: 0,
            model,
            chunking,
            next_chunk_key: 0,
            next_segment_id: 0,
            segments: Vec::new(),
            interactions: None,
            vector_storage,
        };
        manifest.write(&staging)?;
        {
            let mut writer: tantivy::IndexWriter =
                lexical.writer_with_num_threads(1, 15_000_000)?;
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&CommitPayload { ibex_generation: 0 }.to_json());
            prepared.commit()?;
        }
        drop(lexical);
        fsync_dir(&staging)?;
        if dir.exists() {
            // Checked empty above.
            std::fs::remove_dir(dir).map_err(|e| {
                IndexError::io(format!("replacing empty directory {}", dir.display()), e)
            })?;
        }
        std::fs::rename(&staging, dir).map_err(|e| {
            IndexError::io(format!("moving the new index into {}", dir.display()), e)
        })?;
        fsync_dir(&parent)?;
        Index::open(dir)
    }

    /// Opens the index at `dir` at its last commit.
    pub fn open(dir: &Path) -> Result<Index> {
        Index::open_reading_formats(dir, FORMAT_VERSION)
    }

    /// Opens an index whose format may be as old as `oldest`, for [`crate::migrate`] to upgrade.
    pub(crate) fn open_reading_formats(dir: &Path, oldest: u32) -> Result<Index> {
        // A panic inside tantivy on damaged files (one is known and checked for before opening;
        // others may exist) is reported as damage to the index, not as a crash of the caller.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Index::open_unchecked(dir, oldest)
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(IndexError::Corrupt {
                path: dir.join(LEXICAL_DIR),
                reason: format!("reading it failed inside tantivy: {message}"),
            })
        });
        opened.map_err(|e| match e {
            // Damage the lexical index finds (a torn or truncated file, bad JSON in its meta
            // files) is reported as damage, with what to do, not as an internal error.
            IndexError::Tantivy(
                error @ (TantivyError::DataCorruption(_)
                | TantivyError::OpenReadError(_)
                | TantivyError::OpenDirectoryError(_)),
            ) => IndexError::Corrupt {
                path: dir.join(LEXICAL_DIR),
                reason: error.to_string(),
            },
            other => other,
        })
    }

    fn open_unchecked(dir: &Path, oldest_format: u32) -> Result<Index> {
        if !dir.is_dir() {
            return Err(IndexError::NotAnIndex {
                path: dir.to_path_buf(),
                reason: "the directory does not exist".into(),
            });
        }
        if !is_index(dir) {
            return Err(IndexError::NotAnIndex {
                path: dir.to_path_buf(),
                reason: "the directory holds no lexical/meta.json".into(),
            });
        }
        let lexical = open_lexical(dir)?;
        let fields = fields_of(&lexical.schema()).map_err(|e| IndexError::Corrupt {
            path: dir.join(LEXICAL_DIR),
            reason: format!("unexpected schema: {e}"),
        })?;
        if !is_ibex_schema(&lexical.schema()) {
            return Err(IndexError::Corrupt {
                path: dir.join(LEXICAL_DIR),
                reason: "the lexical index's schema is not ibex's".into(),
            });
        }
        let verified_lexical = Arc::new(Mutex::new(HashSet::new()));
        verify_lexical_checksums(&lexical, &dir.join(LEXICAL_DIR), &verified_lexical)?;
        let reader = lexical
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut index = Index {
            dir: dir.to_path_buf(),
            manifest: Manifest {
                format_version: FORMAT_VERSION,
                generation: u64::MAX,
                model: ModelInfo {
                    id: String::new(),
                    source: String::new(),
                    dimension: 0,
                },
                chunking: ChunkingParams::default(),
                next_chunk_key: 0,
                next_segment_id: 0,
                segments: Vec::new(),
                interactions: None,
                vector_storage: VectorStorage::F32,
            },
            searcher: reader.searcher(),
            stores: Arc::new((u64::MAX, Vec::new())),
            lexical,
            reader,
            fields,
            segments: Vec::new(),
            rows: Arc::new(HashMap::new()),
            live_rows: Arc::new(Vec::new()),
            live: Arc::new(LiveDocs::default()),
            verified_lexical,
            oldest_format,
        };
        index.refresh()?;
        Ok(index)
    }

    /// Generation of the index's latest commit on disk, which is newer than this view's when
    /// another process committed since it was opened (a cheap read of the commit point).
    pub fn committed_generation(&self) -> Result<u64> {
        committed_generation(&self.dir, &self.lexical)
    }

    /// Moves this view to the index's latest commit (for example after another process wrote).
    pub fn refresh(&mut self) -> Result<()> {
        // A writer may commit between reading the payload and reloading the reader; retry until
        // both name the same generation.
        for _ in 0..5 {
            let generation = committed_generation(&self.dir, &self.lexical)?;
            verify_lexical_checksums(
                &self.lexical,
                &self.dir.join(LEXICAL_DIR),
                &self.verified_lexical,
            )?;
            self.reader.reload()?;
            if committed_generation(&self.dir, &self.lexical)? != generation {
                continue;
            }
            if generation != self.manifest.generation {
                let manifest = Manifest::read(&self.dir, generation, self.oldest_format)?;
                self.load_segments(&manifest)?;
                self.manifest = manifest;
            }
            let searcher = self.reader.searcher();
            self.live = Arc::new(LiveDocs::from_searcher(&searcher)?);
            let searcher_generation = searcher.generation().generation_id();
            if self.stores.0 != searcher_generation {
                let stores = searcher
                    .segment_readers()
                    .iter()
                    .map(|segment| segment.get_store_reader(STORE_CACHE_BLOCKS))
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(|e| IndexError::io("opening the lexical index's document store", e))?;
                self.stores = Arc::new((searcher_generation, stores));
            }
            self.searcher = searcher;
            self.rebuild_rows();
            // Every live chunk must have its vector: a commit that lost rows would otherwise make
            // documents silently unreachable by dense search.
            if self.rows.len() != self.live.chunks().len() {
                return Err(IndexError::Corrupt {
                    path: self
                        .dir
                        .join(crate::manifest::manifest_file_name(generation)),
                    reason: format!(
                        "{} live chunks but {} vectors for them",
                        self.live.chunks().len(),
                        self.rows.len()
                    ),
                });
            }
            return Ok(());
        }
        Err(IndexError::io(
            format!("opening {}", self.dir.display()),
            std::io::Error::other("the index kept changing while being opened"),
        ))
    }

    fn load_segments(&mut self, manifest: &Manifest) -> Result<()> {
        let vectors_dir = self.dir.join(VECTORS_DIR);
        let mut old: HashMap<u64, Arc<VectorSegment>> = std::mem::take(&mut self.segments)
            .into_iter()
            .map(|s| (s.meta.id, s))
            .collect();
        let mut segments = Vec::with_capacity(manifest.segments.len());
        for meta in &manifest.segments {
            match old.remove(&meta.id) {
                Some(segment)
                    if segment.meta == *meta && segment.storage() == manifest.vector_storage =>
                {
                    segments.push(segment)
                }
                _ => segments.push(Arc::new(VectorSegment::load(
                    &vectors_dir,
                    meta,
                    manifest.model.dimension,
                    manifest.vector_storage,
                )?)),
            }
        }
        self.segments = segments;
        Ok(())
    }

    fn rebuild_rows(&mut self) {
        let live = self.live.chunks();
        let mut rows = HashMap::with_capacity(live.len());
        let mut live_rows = vec![0; self.segments.len()];
        for (s, segment) in self.segments.iter().enumerate() {
            for (r, &key) in segment.keys().iter().enumerate() {
                if live.contains(key) {
                    rows.insert(key, (s as u32, r as u32));
                    live_rows[s] += 1;
                }
            }
        }
        self.rows = Arc::new(rows);
        self.live_rows = Arc::new(live_rows);
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest of the commit this view shows.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The interaction data of the commit this view shows (`ibex index-interactions`), checked
    /// against the manifest's length and checksum; `None` when none was installed. Indexes made
    /// before interaction data joined the commit protocol kept it in `interactions.tsv`, which is
    /// read (unchecked, as it was written) until the next install replaces it.
    pub fn read_interactions(&self) -> Result<Option<Vec<u8>>> {
        let path = self.interactions_path();
        let Some(meta) = &self.manifest.interactions else {
            return match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(IndexError::io(format!("reading {}", path.display()), e)),
            };
        };
        let bytes = std::fs::read(&path).map_err(|e| {
            IndexError::io(
                format!(
                    "reading the interaction data of generation {} ({}); if another process \
                     committed meanwhile, open the index again",
                    self.manifest.generation,
                    path.display()
                ),
                e,
            )
        })?;
        if bytes.len() as u64 != meta.bytes || crc32fast::hash(&bytes) != meta.crc32 {
            return Err(IndexError::Corrupt {
                path,
                reason: format!(
                    "{} bytes with crc {:08x}, the manifest says {} bytes with crc {:08x}",
                    bytes.len(),
                    crc32fast::hash(&bytes),
                    meta.bytes,
                    meta.crc32
                ),
            });
        }
        Ok(Some(bytes))
    }

    /// The file [`Index::read_interactions`] reads: the one the manifest names, or for older
    /// indexes `interactions.tsv` (which may not exist).
    pub fn interactions_path(&self) -> PathBuf {
        match &self.manifest.interactions {
            Some(meta) => self.dir.join(&meta.file),
            None => self.dir.join(LEGACY_INTERACTIONS_FILE),
        }
    }

    /// The embedding model the index was built with.
    pub fn model(&self) -> &ModelInfo {
        &self.manifest.model
    }

    /// Fails with a message naming both models unless `embedder` produced this index's vectors.
    pub fn check_embedder(&self, embedder: &dyn Embedder) -> Result<()> {
        let model = &self.manifest.model;
        if model.id != embedder.model_id() || model.dimension != embedder.dimension() {
            return Err(IndexError::ModelMismatch {
                path: self.dir.clone(),
                index_model: model.id.clone(),
                index_dimension: model.dimension,
                embedder_model: embedder.model_id().to_string(),
                embedder_dimension: embedder.dimension(),
            });
        }
        Ok(())
    }

    /// Number of live documents.
    pub fn num_documents(&self) -> usize {
        self.live.len()
    }

    /// Number of live chunks.
    pub fn num_chunks(&self) -> usize {
        self.live.chunks().len()
    }

    /// The live documents and their chunk keys.
    pub fn live_docs(&self) -> &LiveDocs {
        &self.live
    }

    /// A tantivy searcher over the committed documents (BM25, filters, stored fields).
    pub fn searcher(&self) -> Searcher {
        self.searcher.clone()
    }

    /// The lexical index (for building queries with its analyzer).
    pub fn lexical(&self) -> &tantivy::Index {
        &self.lexical
    }

    /// The schema's fields.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// Looks a document up by id.
    pub fn get_document(&self, id: &str) -> Result<Option<StoredDocument>> {
        Ok(self.find_document(id)?.map(|(_, doc)| doc))
    }

    /// Looks a document up by id, with its address in this snapshot's lexical index (where its
    /// postings are).
    pub fn find_document(&self, id: &str) -> Result<Option<(DocAddress, StoredDocument)>> {
        match self.locate(id)? {
            Some(address) => Ok(Some((address, self.read_stored(address)?))),
            None => Ok(None),
        }
    }

    /// Looks a document up by id for a search hit: what a hit shows and scores passages from,
    /// its text viewed in the document store's cache rather than copied.
    pub fn find_hit(&self, id: &str) -> Result<Option<(DocAddress, StoredHit)>> {
        let Some(address) = self.locate(id)? else {
            return Ok(None);
        };
        let bytes = self.document_bytes(address)?;
        if let Some(hit) =
            parse(&bytes).and_then(|values| StoredHit::from_raw(&bytes, &values, &self.fields))
        {
            return Ok(Some((address, hit)));
        }
        let doc = self.read_stored(address)?;
        Ok(Some((
            address,
            StoredHit {
                title: doc.title,
                metadata: doc.metadata,
                chunks: doc.chunks,
                chunk_base: doc.chunk_base,
                chunk_positions: doc.chunk_positions,
                text: StoredText::from(doc.text),
            },
        )))
    }

    /// The address of live document `id` in this snapshot's lexical index.
    fn locate(&self, id: &str) -> Result<Option<DocAddress>> {
        let term = Term::from_field_text(self.fields.id, id);
        for (ordinal, reader) in self.searcher.segment_readers().iter().enumerate() {
            let inverted = reader.inverted_index(self.fields.id)?;
            let postings = inverted
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|e| IndexError::io("reading the lexical index's document ids", e))?;
            let Some(mut postings) = postings else {
                continue;
            };
            let alive = reader.alive_bitset();
            let mut doc_id = postings.doc();
            while doc_id != TERMINATED {
                if alive.is_none_or(|bits| bits.is_alive(doc_id)) {
                    return Ok(Some(DocAddress::new(ordinal as u32, doc_id)));
                }
                doc_id = postings.advance();
            }
        }
        Ok(None)
    }

    /// The stored bytes of the document at `address` (of this snapshot's searcher).
    fn document_bytes(&self, address: DocAddress) -> Result<OwnedBytes> {
        let store = self
            .stores
            .1
            .get(address.segment_ord as usize)
            .ok_or_else(|| {
                IndexError::io(
                    "reading a stored document",
                    std::io::Error::other(format!("no lexical segment {}", address.segment_ord)),
                )
            })?;
        Ok(store.get_document_bytes(address.doc_id)?)
    }

    /// Decodes a stored tantivy document.
    pub fn stored_document(&self, doc: &TantivyDocument) -> StoredDocument {
        self.decode_stored(StoredFields::from_document(doc))
    }

    /// Reads the stored document at `address` of this snapshot's searcher, each value copied
    /// once from the store's bytes (see [`crate::stored`]); a document [`parse`] does not accept
    /// is read through tantivy.
    pub(crate) fn read_stored(&self, address: DocAddress) -> Result<StoredDocument> {
        let bytes = self.document_bytes(address)?;
        let fields = match parse(&bytes).and_then(|values| StoredFields::from_raw(&bytes, values)) {
            Some(fields) => fields,
            None => StoredFields::from_document(&self.searcher.doc::<TantivyDocument>(address)?),
        };
        Ok(self.decode_stored(fields))
    }

    fn decode_stored(&self, mut stored: StoredFields) -> StoredDocument {
        let f = &self.fields;
        let metadata = serde_json::from_str(&stored.take_text(f.metadata_json)).unwrap_or_default();
        let chunks = decode_spans(&stored.take_bytes(f.chunk_spans));
        let chunk_positions = f
            .chunk_positions
            .and_then(|field| chunk_terms::decode(&stored.take_bytes(field)))
            .unwrap_or_default();
        StoredDocument {
            chunk_positions,
            id: stored.take_text(f.id),
            title: stored.take_text(f.title),
            text: stored.take_text(f.text),
            metadata,
            chunks,
            chunk_base: stored.take_number(f.chunk_base),
            content_hash: stored.take_text(f.content_hash),
        }
    }

    /// The chunks of live document `id`.
    pub fn doc_chunks(&self, id: &str) -> Option<&DocChunks> {
        self.live.get(id)
    }

    /// The stored vector of live chunk `key` (`None` when no live chunk has that key), at full
    /// precision: read from its segment file when the index holds quantized vectors, which is
    /// where an error can come from.
    pub fn chunk_vector(&self, key: u64) -> Result<Option<Cow<'_, [f32]>>> {
        let Some(&(segment, row)) = self.rows.get(&key) else {
            return Ok(None);
        };
        self.segments[segment as usize]
            .vector(row as usize)
            .map(Some)
    }

    /// What the index's vector segments hold in memory, summed.
    pub fn vector_memory(&self) -> crate::vectors::SegmentMemory {
        let mut total = crate::vectors::SegmentMemory::default();
        for segment in &self.segments {
            let memory = segment.memory();
            total.keys += memory.keys;
            total.vectors += memory.vectors;
            total.graph += memory.graph;
        }
        total
    }

    /// The `k` chunks most similar to `query` (by dot product), among the live chunks, or among
    /// `allowed` when given (a subset of live chunks, for filtered search).
    pub fn search_vectors(
        &self,
        query: &[f32],
        k: usize,
        allowed: Option<&ChunkSet>,
    ) -> Result<Vec<ChunkHit>> {
        self.check_query_dimension(query)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let ef = k.max(100);
        let mut hits = Vec::new();
        for (i, s) in self.segments.iter().enumerate() {
            hits.extend(match allowed {
                Some(allowed) => s.search(query, k, allowed, None, ef)?,
                None => s.search(
                    query,
                    k,
                    self.live.chunks(),
                    self.live_rows.get(i).copied(),
                    ef,
                )?,
            });
        }
        Ok(best_hits(hits, k))
    }

    /// The `k` chunks most similar to `query` by an exact scan of every live chunk (or of
    /// `allowed`): the complete answer, which a filtered graph walk cannot promise (it may not
    /// reach every allowed row). Dense retrieval ends with it when it needs all the chunks a
    /// filter allows.
    pub fn scan_vectors(
        &self,
        query: &[f32],
        k: usize,
        allowed: Option<&ChunkSet>,
    ) -> Result<Vec<ChunkHit>> {
        self.check_query_dimension(query)?;
        let allowed = allowed.unwrap_or(self.live.chunks());
        let mut hits = Vec::new();
        for segment in &self.segments {
            hits.extend(segment.scan(query, k, allowed)?);
        }
        Ok(best_hits(hits, k))
    }

    fn check_query_dimension(&self, query: &[f32]) -> Result<()> {
        let dimension = self.manifest.model.dimension;
        if query.len() != dimension {
            return Err(IndexError::WrongDimension {
                expected: dimension,
                got: query.len(),
            });
        }
        Ok(())
    }

    /// Number of vector segments (for statistics).
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }
}

/// The best `k` of segments' hits: by score, ties by chunk key (so the order does not depend on
/// which segment a chunk lies in).
fn best_hits(mut hits: Vec<ChunkHit>, k: usize) -> Vec<ChunkHit> {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.chunk_key.cmp(&b.chunk_key))
    });
    hits.truncate(k);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_payload_reads_back() {
        let json = CommitPayload {
            ibex_generation: 42,
        }
        .to_json();
        let read: CommitPayload = serde_json::from_str(&json).unwrap();
        assert_eq!(read.ibex_generation, 42);
    }

    /// The stored-document tests compare ibex's reading with tantivy's; this checks the bytes of
    /// documents ibex writes are read by ibex's parse itself, not by the fallback.
    #[test]
    fn documents_ibex_writes_are_parsed_from_their_bytes() {
        let scratch = tempfile::tempdir().unwrap();
        let model = ModelInfo {
            id: "test/synthetic-2".into(),
            source: "test".into(),
            dimension: 2,
        };
        let mut index = Index::create(
            &scratch.path().join("idx"),
            model.clone(),
            ChunkingParams::default(),
        )
        .unwrap();
        let mut metadata = serde_json::Map::new();
        metadata.insert("year".into(), serde_json::json!(2001));
        let batch = vec![(
            crate::Document {
                id: "d".into(),
                title: "Ωmega".into(),
                text: "naïve text".into(),
                metadata,
            },
            crate::EmbeddedChunks {
                spans: vec![ChunkSpan { start: 0, end: 10 }],
                vectors: vec![0.6, 0.8],
            },
        )];
        crate::bulk::write_embedded(&mut index, &model.id, batch).unwrap();
        index.refresh().unwrap();
        let address = index.locate("d").unwrap().unwrap();
        let bytes = index.document_bytes(address).unwrap();
        let values = parse(&bytes).expect("ibex's parse reads the document");
        let hit = StoredHit::from_raw(&bytes, &values, &index.fields).expect("a hit of it");
        assert_eq!(hit.text.to_str(), Some("naïve text"));
        assert_eq!(hit.title, "Ωmega");
        let fields = StoredFields::from_raw(&bytes, values).expect("its values copied");
        assert_eq!(index.decode_stored(fields).metadata["year"], 2001);
    }
}
