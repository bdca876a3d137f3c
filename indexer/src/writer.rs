//! Writing to an index: upserts, deletes and the commit protocol.
//!
//! A commit, in order:
//! 1. new vector segments are written and fsynced (`vectors/seg-N.vec`, and a graph when large);
//! 2. the new manifest (`manifest-G.json`, naming exactly the segments of the new state) is
//!    written and fsynced;
//! 3. tantivy commits the documents, deletions and a payload naming generation G. This is the
//!    single linearization point: before it, the index opens at the previous commit; after it, at
//!    the new one;
//! 4. files no commit refers to any more are removed (best effort; the next writer retries).
//!
//! Deleted and replaced chunks need no separate tombstone file: the live set is derived from the
//! committed documents (see [`crate::live`]), and merges drop the rows it does not contain.

use std::collections::HashMap;

use ibex_embedder::Embedder;
use sha2::{Digest, Sha256};
use tantivy::merge_policy::LogMergePolicy;
use tantivy::{TantivyDocument, TantivyError, Term};

use crate::chunk::{embed_chunks, EmbeddedChunks};
use crate::chunk_terms::{self, contents_text};
use crate::corpus::Document;
use crate::durable::write_durably;
use crate::error::{IndexError, Result};
use crate::index::{CommitPayload, Index, VECTORS_DIR};
use crate::live::{DocChunks, LiveDocs};
use crate::manifest::{
    interactions_file_name, manifest_file_name, InteractionsFile, Manifest, FORMAT_VERSION,
};
use crate::metadata::metadata_terms;
use crate::quantized::VectorStorage;
use crate::vectors::{ChunkSet, VectorSegment, HNSW_MIN_VECTORS};

/// A graph segment with more than this share of dead rows is rewritten without them.
const MAX_DEAD_FRACTION: f64 = 0.3;
/// More graph segments than this are merged into one (each query searches every segment).
const MAX_GRAPH_SEGMENTS: usize = 8;

/// What an upsert did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpsertStats {
    /// Documents whose id was new.
    pub added: usize,
    /// Documents that replaced a document with the same id and different content.
    pub replaced: usize,
    /// Documents identical to the one already indexed (skipped: nothing to embed).
    pub unchanged: usize,
    /// Chunks embedded.
    pub chunks: usize,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// The new generation.
    pub generation: u64,
    /// Live documents after the commit.
    pub documents: usize,
    /// Live chunks after the commit.
    pub chunks: usize,
    /// Vector segments after the commit.
    pub segments: usize,
}

#[derive(Debug, Clone)]
enum Change {
    Upserted {
        chunk_base: u64,
        chunk_count: u32,
        hash: String,
    },
    Deleted,
}

/// Exclusive writer of an index (it holds the index's write lock until dropped). Changes become
/// visible, atomically, at [`IndexWriter::commit`]; dropping the writer without committing
/// discards them.
pub struct IndexWriter<'a> {
    index: &'a mut Index,
    /// `None` for a writer of documents embedded elsewhere.
    embedder: Option<&'a dyn Embedder>,
    lexical: tantivy::IndexWriter,
    pending_keys: Vec<u64>,
    pending_vectors: Vec<f32>,
    next_chunk_key: u64,
    changes: HashMap<String, Change>,
    graph_threshold: usize,
    /// Interaction data to install with the next commit.
    pending_interactions: Option<PendingInteractions>,
    /// A change of [`VectorStorage`] for the next commit.
    pending_vector_storage: Option<VectorStorage>,
}

/// Interaction data staged by [`IndexWriter::set_interactions`].
struct PendingInteractions {
    bytes: Vec<u8>,
    events: usize,
}

/// A stable hash of everything that goes into a document's index entries.
pub fn content_hash(doc: &Document) -> String {
    let mut hasher = Sha256::new();
    for part in [doc.id.as_str(), doc.title.as_str(), doc.text.as_str()] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.update(
        serde_json::Value::Object(doc.metadata.clone())
            .to_string()
            .as_bytes(),
    );
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Index {
    /// Takes the index's write lock and returns a writer that embeds with `embedder`, which must
    /// be the model the index was built with.
    pub fn writer<'a>(&'a mut self, embedder: &'a dyn Embedder) -> Result<IndexWriter<'a>> {
        self.check_embedder(embedder)?;
        self.open_writer(Some(embedder))
    }

    /// Takes the index's write lock and returns a writer for documents embedded elsewhere
    /// ([`IndexWriter::upsert_embedded`]), for example by the workers of a distributed build: no
    /// model is loaded here.
    pub fn embedded_writer(&mut self) -> Result<IndexWriter<'_>> {
        self.open_writer(None)
    }

    fn open_writer<'a>(
        &'a mut self,
        embedder: Option<&'a dyn Embedder>,
    ) -> Result<IndexWriter<'a>> {
        // tantivy's writer lock is a flock on an open file, and a child process forked by any
        // thread of this process (a server spawning a subprocess, a test harness) shares that
        // open file until it execs: a writer dropped just before keeps its lock held for that
        // moment (a disk-full test met it under load, the holder file still empty). So a busy
        // lock is retried for up to a second before it is reported; a lock another process
        // really holds is reported after that second.
        let mut waited = std::time::Duration::ZERO;
        let mut pause = std::time::Duration::from_millis(10);
        let lexical = loop {
            match self.lexical.writer_with_num_threads(1, 50_000_000) {
                Ok(writer) => break writer,
                Err(TantivyError::LockFailure(..)) if waited < LOCK_RETRY_LIMIT => {
                    std::thread::sleep(pause);
                    waited += pause;
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Err(TantivyError::LockFailure(..)) => {
                    return Err(IndexError::Locked {
                        path: self.dir.clone(),
                        holder: read_lock_holder(&self.dir),
                    })
                }
                Err(other) => return Err(IndexError::Tantivy(other)),
            }
        };
        record_lock_holder(&self.dir);
        // Merge as soon as two segments of a size exist (tantivy's default waits for eight):
        // every BM25 query pays a term lookup and a scorer per segment, and a batch index
        // committed every thousand documents otherwise keeps up to seven small segments
        // (bench/bm25.sh measured 1.3x tantivy-py's latency on 2-4 segments, parity on one).
        // Merging in pairs keeps the rewrite cost at log2 of the index's growth.
        let mut merge_policy = LogMergePolicy::default();
        merge_policy.set_min_num_segments(2);
        lexical.set_merge_policy(Box::new(merge_policy));
        // Holding the lock, catch up with any commit made since this view was opened, then
        // remove what killed writers left behind.
        self.refresh()?;
        self.collect_garbage();
        let next_chunk_key = self.manifest.next_chunk_key;
        Ok(IndexWriter {
            index: self,
            embedder,
            lexical,
            pending_keys: Vec::new(),
            pending_vectors: Vec::new(),
            next_chunk_key,
            changes: HashMap::new(),
            graph_threshold: HNSW_MIN_VECTORS,
            pending_interactions: None,
            pending_vector_storage: None,
        })
    }

    /// Removes files that the current manifest does not reference: leftovers of interrupted
    /// commits and of segments merged away. Only called while holding the write lock.
    fn collect_garbage(&self) {
        let current = manifest_file_name(self.manifest.generation);
        let mut keep: Vec<String> = Vec::new();
        for segment in &self.manifest.segments {
            keep.push(segment.file.clone());
            if let Some(graph) = &segment.graph {
                keep.push(graph.file.clone());
            }
            if let Some(base) = &segment.hnsw {
                keep.push(format!("{base}.hnsw.graph"));
                keep.push(format!("{base}.hnsw.data"));
            }
        }
        let interactions = self.manifest.interactions.as_ref().map(|i| i.file.as_str());
        let remove_unlisted =
            |dir: &std::path::Path, is_ours: &dyn Fn(&str) -> bool, keep: &dyn Fn(&str) -> bool| {
                if let Ok(entries) = std::fs::read_dir(dir) {
                    for entry in entries.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if is_ours(&name) && !keep(&name) {
                            let _ = std::fs::remove_file(entry.path());
                        }
                    }
                }
            };
        remove_unlisted(
            &self.dir,
            &|n| n.starts_with("manifest-") || n.starts_with(".manifest-"),
            &|n| n == current,
        );
        // Interaction files of older commits, and the pre-commit-protocol file once a commit
        // has replaced it.
        remove_unlisted(
            &self.dir,
            &|n| {
                n.starts_with("interactions-")
                    || n.starts_with(".interactions-")
                    || (n == crate::index::LEGACY_INTERACTIONS_FILE && interactions.is_some())
            },
            &|n| Some(n) == interactions,
        );
        remove_unlisted(
            &self.dir.join(VECTORS_DIR),
            &|n| n.starts_with("seg-") || n.starts_with(".seg-"),
            &|n| keep.iter().any(|k| k == n),
        );
    }
}

/// How long a busy writer lock is retried before it is reported (see `open_writer`).
const LOCK_RETRY_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// File in which the process holding the writer lock names itself, so that another process
/// refused the lock can say which one holds it. Written after the lock is taken and read only
/// when it is refused, so a stale file is never shown for a free lock.
const LOCK_HOLDER_FILE: &str = ".writer-holder";

/// Records this process as the holder of the writer lock: its pid and program name with its
/// subcommand, never the rest of its command line (which can hold API keys).
fn record_lock_holder(dir: &std::path::Path) {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let subcommand = args
        .next()
        .filter(|a| {
            !a.is_empty()
                && a.len() <= 32
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !a.starts_with('-')
        })
        .map(|a| format!(" {a}"))
        .unwrap_or_default();
    // Best effort: the message it improves is the only use.
    let _ = std::fs::write(
        dir.join(LOCK_HOLDER_FILE),
        format!("pid {}, {program}{subcommand}", std::process::id()),
    );
}

/// The holder recorded by [`record_lock_holder`], as ` (pid N, program)`, or empty.
fn read_lock_holder(dir: &std::path::Path) -> String {
    match std::fs::read_to_string(dir.join(LOCK_HOLDER_FILE)) {
        Ok(text) if !text.trim().is_empty() && text.len() < 200 => format!(" ({})", text.trim()),
        _ => String::new(),
    }
}

impl IndexWriter<'_> {
    fn current_hash(&self, id: &str) -> Result<Option<String>> {
        match self.changes.get(id) {
            Some(Change::Upserted { hash, .. }) => Ok(Some(hash.clone())),
            Some(Change::Deleted) => Ok(None),
            None if self.index.live.get(id).is_some() => {
                Ok(self.index.get_document(id)?.map(|d| d.content_hash))
            }
            None => Ok(None),
        }
    }

    /// Which of `docs` are new or changed (with their content hashes), and the counts.
    fn changed<'d>(
        &self,
        docs: impl IntoIterator<Item = &'d Document>,
    ) -> Result<(UpsertStats, Vec<(&'d Document, String)>)> {
        let mut stats = UpsertStats::default();
        let mut todo = Vec::new();
        for doc in docs {
            let hash = content_hash(doc);
            match self.current_hash(&doc.id)? {
                Some(existing) if existing == hash => stats.unchanged += 1,
                Some(_) => {
                    stats.replaced += 1;
                    todo.push((doc, hash));
                }
                None => {
                    stats.added += 1;
                    todo.push((doc, hash));
                }
            }
        }
        Ok((stats, todo))
    }

    /// Adds documents, replacing those whose id exists. Documents whose content did not change
    /// are skipped. Visible after [`IndexWriter::commit`].
    pub fn upsert(&mut self, docs: &[Document]) -> Result<UpsertStats> {
        let embedder = self.embedder.ok_or_else(|| IndexError::InvalidEmbedding {
            id: docs.first().map(|d| d.id.clone()).unwrap_or_default(),
            reason: "this writer takes documents embedded elsewhere (upsert_embedded): open one with Index::writer to embed here".into(),
        })?;
        let (mut stats, todo) = self.changed(docs)?;
        let params = self.index.manifest.chunking;
        let embedded = embed_chunks(embedder, todo.iter().map(|(doc, _)| *doc), params)?;
        let dimension = self.index.manifest.model.dimension;
        for ((doc, hash), chunks) in todo.into_iter().zip(embedded) {
            chunks.check(doc, dimension)?;
            stats.chunks += chunks.spans.len();
            self.write_document(doc, hash, &chunks)?;
        }
        Ok(stats)
    }

    /// Adds documents whose chunks were cut and embedded elsewhere with this index's model and
    /// chunking (by [`embed_chunks`] in another process), replacing those whose id exists;
    /// unchanged documents are skipped, as in [`IndexWriter::upsert`]. `model_id` names the
    /// model that made the vectors: another model than the index's is refused, as are chunks
    /// outside their text and vectors of another dimension or not finite.
    pub fn upsert_embedded(
        &mut self,
        model_id: &str,
        docs: &[(Document, EmbeddedChunks)],
    ) -> Result<UpsertStats> {
        let model = &self.index.manifest.model;
        if model_id != model.id {
            return Err(IndexError::ModelMismatch {
                path: self.index.dir.clone(),
                index_model: model.id.clone(),
                index_dimension: model.dimension,
                embedder_model: model_id.to_string(),
                embedder_dimension: docs.first().map_or(model.dimension, |(_, c)| c.dimension()),
            });
        }
        let dimension = model.dimension;
        for (doc, chunks) in docs {
            chunks.check(doc, dimension)?;
        }
        let by_id: HashMap<&str, &EmbeddedChunks> =
            docs.iter().map(|(d, c)| (d.id.as_str(), c)).collect();
        let (mut stats, todo) = self.changed(docs.iter().map(|(doc, _)| doc))?;
        for (doc, hash) in todo {
            let chunks = by_id[doc.id.as_str()];
            stats.chunks += chunks.spans.len();
            self.write_document(doc, hash, chunks)?;
        }
        Ok(stats)
    }

    /// Stages one document's entry and chunk vectors (checked by the caller).
    fn write_document(
        &mut self,
        doc: &Document,
        hash: String,
        chunks: &EmbeddedChunks,
    ) -> Result<()> {
        let f = self.index.fields;
        let doc_spans = &chunks.spans;
        {
            let chunk_base = self.next_chunk_key;
            let chunk_count = doc_spans.len() as u32;
            self.next_chunk_key += chunk_count as u64;
            self.pending_keys
                .extend(chunk_base..chunk_base + chunk_count as u64);
            self.pending_vectors.extend_from_slice(&chunks.vectors);
            let entry = lexical_entry(
                &f,
                doc,
                chunk_base,
                &doc_spans
                    .iter()
                    .map(|s| (s.start, s.end))
                    .collect::<Vec<_>>(),
                &hash,
            );
            self.lexical
                .delete_term(Term::from_field_text(f.id, &doc.id));
            self.lexical.add_document(entry)?;
            self.changes.insert(
                doc.id.clone(),
                Change::Upserted {
                    chunk_base,
                    chunk_count,
                    hash,
                },
            );
        }
        Ok(())
    }

    /// Rewrites every live document's lexical entry as this version writes it (same stored
    /// fields, same chunk keys, so the vectors stay as they are): the format migration. Visible
    /// after [`IndexWriter::commit`]; returns the number of documents.
    pub(crate) fn rewrite_lexical_entries(&mut self) -> Result<usize> {
        let f = self.index.fields;
        let searcher = self.index.searcher();
        let mut rewritten = 0;
        for (ordinal, reader) in searcher.segment_readers().iter().enumerate() {
            for doc_id in reader.doc_ids_alive() {
                let address = tantivy::DocAddress::new(ordinal as u32, doc_id);
                let stored = self.index.read_stored(address)?;
                let spans: Vec<(usize, usize)> =
                    stored.chunks.iter().map(|s| (s.start, s.end)).collect();
                let doc = Document {
                    id: stored.id,
                    title: stored.title,
                    text: stored.text,
                    metadata: stored.metadata,
                };
                let entry =
                    lexical_entry(&f, &doc, stored.chunk_base, &spans, &stored.content_hash);
                self.lexical
                    .delete_term(Term::from_field_text(f.id, &doc.id));
                self.lexical.add_document(entry)?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// Deletes documents by id; returns how many existed. Visible after [`IndexWriter::commit`].
    pub fn delete(&mut self, ids: &[&str]) -> usize {
        let mut deleted = 0;
        for id in ids {
            let exists = match self.changes.get(*id) {
                Some(Change::Upserted { .. }) => true,
                Some(Change::Deleted) => false,
                None => self.index.live.get(id).is_some(),
            };
            if exists {
                deleted += 1;
                self.lexical
                    .delete_term(Term::from_field_text(self.index.fields.id, id));
                self.changes.insert(id.to_string(), Change::Deleted);
            }
        }
        deleted
    }

    /// Segments written from now on get an HNSW graph when they hold at least `vectors` rows
    /// (default [`HNSW_MIN_VECTORS`]); smaller ones are scanned exactly.
    pub fn with_graph_threshold(mut self, vectors: usize) -> Self {
        self.graph_threshold = vectors.max(1);
        self
    }

    /// Whether there are uncommitted changes.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
            || self.pending_interactions.is_some()
            || self.pending_vector_storage.is_some()
    }

    /// Sets how the index's vectors are held in memory from the next commit on (see
    /// [`VectorStorage`]). Only the manifest changes: the segment files are full precision
    /// whatever the setting, and every process that opens the committed state quantizes them as
    /// it loads them.
    pub fn set_vector_storage(&mut self, storage: VectorStorage) {
        if storage != self.index.manifest.vector_storage {
            self.pending_vector_storage = Some(storage);
        } else {
            self.pending_vector_storage = None;
        }
    }

    /// Stages `bytes` (`events` interactions, one per line) as the index's interaction data,
    /// replacing what it holds when the next [`IndexWriter::commit`] succeeds: the data is
    /// written under a name of that generation before the manifest that refers to it, so a crash
    /// leaves the index with the old data or the new, never a mixture.
    pub fn set_interactions(&mut self, bytes: Vec<u8>, events: usize) {
        self.pending_interactions = Some(PendingInteractions { bytes, events });
    }

    /// The live documents as they will be once the pending changes commit.
    fn live_after_commit(&self) -> LiveDocs {
        let mut docs: Vec<DocChunks> = self
            .index
            .live
            .iter()
            .filter(|d| !self.changes.contains_key(&d.id))
            .cloned()
            .collect();
        for (id, change) in &self.changes {
            if let Change::Upserted {
                chunk_base,
                chunk_count,
                ..
            } = change
            {
                docs.push(DocChunks {
                    id: id.clone(),
                    chunk_base: *chunk_base,
                    chunk_count: *chunk_count,
                });
            }
        }
        LiveDocs::from_docs(docs)
    }

    /// Makes all changes since the last commit durable and visible, atomically.
    ///
    /// On error the index stays at its previous commit; drop this writer and open a new one.
    pub fn commit(&mut self) -> Result<CommitStats> {
        let live = self.live_after_commit();
        let dimension = self.index.manifest.model.dimension;
        let vectors_dir = self.index.dir.join(VECTORS_DIR);
        let mut next_segment_id = self.index.manifest.next_segment_id;
        let vector_storage = self
            .pending_vector_storage
            .unwrap_or(self.index.manifest.vector_storage);

        // Decide which segments survive as they are and which rows go into new segments.
        let mut kept: Vec<usize> = Vec::new();
        let mut flat_pool = RowPool::default();
        let mut graph_pool = RowPool::default();
        let graphs = self
            .index
            .segments
            .iter()
            .filter(|s| s.meta.has_graph())
            .count();
        for (i, segment) in self.index.segments.iter().enumerate() {
            let alive = segment.count_allowed(live.chunks());
            if segment.meta.has_graph() {
                let dead_fraction = 1.0 - alive as f64 / segment.meta.rows.max(1) as f64;
                if graphs > MAX_GRAPH_SEGMENTS || dead_fraction > MAX_DEAD_FRACTION {
                    graph_pool.take_live(segment, live.chunks())?;
                } else {
                    kept.push(i);
                }
            } else {
                flat_pool.take_live(segment, live.chunks())?;
                flat_pool.sources.push(i);
            }
        }
        // A single flat segment that lost no row, with no new rows to add, is kept as it is.
        let flat_unchanged = flat_pool.sources.len() == 1
            && flat_pool.keys.len() == self.index.segments[flat_pool.sources[0]].meta.rows
            && !self
                .pending_keys
                .iter()
                .any(|&key| live.chunks().contains(key));
        for (row, &key) in self.pending_keys.iter().enumerate() {
            if live.chunks().contains(key) {
                flat_pool.keys.push(key);
                flat_pool.vectors.extend_from_slice(
                    &self.pending_vectors[row * dimension..(row + 1) * dimension],
                );
            }
        }
        if flat_unchanged {
            kept.push(flat_pool.sources[0]);
            flat_pool = RowPool::default();
        }
        let mut new_segments = Vec::new();
        for pool in [graph_pool, flat_pool] {
            if !pool.keys.is_empty() {
                let with_graph = pool.keys.len() >= self.graph_threshold;
                new_segments.push(std::sync::Arc::new(VectorSegment::write(
                    &vectors_dir,
                    next_segment_id,
                    dimension,
                    pool.keys,
                    pool.vectors,
                    with_graph,
                    vector_storage,
                )?));
                next_segment_id += 1;
            }
        }

        // Written before the manifest that refers to it (an error here leaves the index as it
        // was: nothing refers to the file, and garbage collection removes it).
        let generation = self.index.manifest.generation + 1;
        let interactions = match &self.pending_interactions {
            None => self.index.manifest.interactions.clone(),
            Some(pending) => {
                let file = interactions_file_name(generation);
                write_durably(&self.index.dir.join(&file), &pending.bytes)?;
                Some(InteractionsFile {
                    file,
                    bytes: pending.bytes.len() as u64,
                    crc32: crc32fast::hash(&pending.bytes),
                    events: pending.events,
                })
            }
        };
        let old_segments = std::mem::take(&mut self.index.segments);
        let mut segments = Vec::new();
        for (i, segment) in old_segments.into_iter().enumerate() {
            if kept.contains(&i) {
                segments.push(segment);
            }
        }
        segments.extend(new_segments);

        let manifest = Manifest {
            // A migration's commit is the one that raises it.
            format_version: FORMAT_VERSION,
            generation,
            next_chunk_key: self.next_chunk_key,
            next_segment_id,
            segments: segments.iter().map(|s| s.meta.clone()).collect(),
            interactions,
            vector_storage,
            ..self.index.manifest.clone()
        };
        // The in-memory segments now describe the new manifest; if the commit fails, refresh()
        // below reloads the old manifest's segments from disk.
        self.index.segments = segments;
        let committed = (|| -> Result<()> {
            manifest.write(&self.index.dir)?;
            let mut prepared = self.lexical.prepare_commit()?;
            let payload = CommitPayload {
                ibex_generation: manifest.generation,
            }
            .to_json();
            prepared.set_payload(&payload);
            prepared.commit()?;
            Ok(())
        })();
        if let Err(e) = committed {
            self.index.manifest.generation = u64::MAX; // force a full reload of the committed state
            let _ = self.index.refresh();
            return Err(e);
        }
        self.pending_keys.clear();
        self.pending_vectors.clear();
        self.changes.clear();
        self.pending_interactions = None;
        self.pending_vector_storage = None;
        self.index.refresh()?;
        self.index.collect_garbage();
        Ok(CommitStats {
            generation: self.index.manifest.generation,
            documents: self.index.num_documents(),
            chunks: self.index.num_chunks(),
            segments: self.index.segments.len(),
        })
    }

    /// Waits for the lexical index's background merges, so the process can exit tidily.
    pub fn finish(self) -> Result<()> {
        self.lexical.wait_merging_threads()?;
        Ok(())
    }
}

/// A document's lexical index entry: its stored fields (id, title, text, metadata JSON, chunk
/// keys and character spans, content hash), the analyzed `contents` BM25 scores, and the metadata
/// filter terms.
fn lexical_entry(
    f: &crate::schema::Fields,
    doc: &Document,
    chunk_base: u64,
    spans: &[(usize, usize)],
    hash: &str,
) -> TantivyDocument {
    let mut entry = TantivyDocument::new();
    entry.add_text(f.id, &doc.id);
    entry.add_text(f.title, &doc.title);
    entry.add_text(f.text, &doc.text);
    entry.add_text(f.contents, contents_text(&doc.title, &doc.text));
    for term in metadata_terms(&doc.metadata) {
        entry.add_text(f.meta, term);
    }
    entry.add_text(
        f.metadata_json,
        serde_json::Value::Object(doc.metadata.clone()).to_string(),
    );
    entry.add_u64(f.chunk_base, chunk_base);
    entry.add_u64(f.chunk_count, spans.len() as u64);
    let span_bytes: Vec<u8> = spans
        .iter()
        .flat_map(|&(start, end)| [(start as u32).to_le_bytes(), (end as u32).to_le_bytes()])
        .flatten()
        .collect();
    entry.add_bytes(f.chunk_spans, &span_bytes);
    if let Some(field) = f.chunk_positions {
        let positions = chunk_terms::chunk_positions(&doc.title, &doc.text, spans);
        entry.add_bytes(field, &chunk_terms::encode(&positions));
    }
    entry.add_text(f.content_hash, hash);
    entry
}

/// Rows gathered for a new segment.
#[derive(Default)]
struct RowPool {
    keys: Vec<u64>,
    vectors: Vec<f32>,
    sources: Vec<usize>,
}

impl RowPool {
    fn take_live(&mut self, segment: &VectorSegment, live: &ChunkSet) -> Result<()> {
        segment.for_each_vector(|key, vector| {
            if live.contains(key) {
                self.keys.push(key);
                self.vectors.extend_from_slice(vector);
            }
        })
    }
}
