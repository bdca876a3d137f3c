//! Many named indexes in one data directory, shared by concurrent readers and writers.
//!
//! This is what a long-running process (the REST server) holds: each index is open once, its
//! searches read an immutable snapshot of the last commit (so they never wait for a write and
//! never see half of one), and its writes are serialized, each batch committed before it is
//! acknowledged. A batch that fails, or a process killed during one, leaves the index at its
//! previous commit.
//!
//! Layout: `DATA_DIR/<name>/` is an ordinary ibex index directory, so the CLI can open it too
//! (while the server is not writing to it: the write lock is per index).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, TryLockError};

use ibex_embedder::Embedder;

use crate::bulk::{IndexOptions, IndexProgress, IndexReport};
use crate::chunk::ChunkingParams;
use crate::corpus::Document;
use crate::error::{IndexError, Result};
use crate::index::{is_index, Index, StoredDocument};
use crate::manifest::ModelInfo;
use crate::quantized::VectorStorage;
use crate::vectors::SegmentMemory;
use crate::writer::UpsertStats;

/// Longest index name.
pub const MAX_NAME_LEN: usize = 64;

/// Loads an embedding model from a model spec (a folder or a known model name). The catalog
/// calls it once per distinct spec and shares the model among the indexes that use it.
pub type ModelLoader =
    Arc<dyn Fn(&str) -> std::result::Result<Arc<dyn Embedder>, IndexError> + Send + Sync>;

/// Checks that `name` can name an index: 1 to 64 ASCII letters, digits, `-` or `_`, starting
/// with a letter or digit (so a name is always a plain directory name, never a path).
pub fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(IndexError::InvalidName(name.to_string()))
    }
}

/// The model record of a new index built with `embedder`, loaded from `spec`. A local folder is
/// recorded by its absolute path, so that the index can be opened from any working directory.
pub fn model_info(spec: &str, embedder: &dyn Embedder) -> ModelInfo {
    let source = match Path::new(spec).canonicalize() {
        Ok(path) if path.is_dir() => path.display().to_string(),
        _ => spec.to_string(),
    };
    ModelInfo {
        id: embedder.model_id().to_string(),
        source,
        dimension: embedder.dimension(),
    }
}

/// Statistics of one index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexInfo {
    /// The index's name (its directory's name in the data directory).
    pub name: String,
    /// Live documents.
    pub documents: usize,
    /// Live chunks.
    pub chunks: usize,
    /// The embedding model it was built with.
    pub model: ModelInfo,
    /// How its documents are chunked.
    pub chunking: ChunkingParams,
    /// Generation of the commit these statistics describe.
    pub generation: u64,
    /// Bytes of its directory on disk (segments not yet merged away included).
    pub bytes_on_disk: u64,
    /// Its on-disk format version.
    pub format_version: u32,
    /// Segments of its lexical (tantivy) index: each costs every BM25 query a term lookup.
    pub lexical_segments: usize,
    /// Segments of its vectors.
    pub vector_segments: usize,
    /// Vector segments searched through an HNSW graph (the others are scanned exactly).
    pub graph_segments: usize,
    /// How the vectors are held in memory.
    pub vector_storage: VectorStorage,
    /// What the vector segments hold in memory, in bytes (segments whose chunks were all
    /// deleted or replaced included, until a merge drops them).
    pub vector_memory: SegmentMemory,
}

impl IndexInfo {
    /// Statistics of `index`'s commit, under the name `name`.
    pub fn of(name: &str, index: &Index) -> IndexInfo {
        let manifest = index.manifest();
        IndexInfo {
            name: name.to_string(),
            documents: index.num_documents(),
            chunks: index.num_chunks(),
            model: index.model().clone(),
            chunking: manifest.chunking,
            generation: manifest.generation,
            bytes_on_disk: dir_size(index.dir()),
            format_version: manifest.format_version,
            lexical_segments: index.searcher().segment_readers().len(),
            vector_segments: index.num_segments(),
            graph_segments: manifest.segments.iter().filter(|s| s.has_graph()).count(),
            vector_storage: manifest.vector_storage,
            vector_memory: index.vector_memory(),
        }
    }
}

/// What a committed write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct WriteReport {
    /// Documents whose ids were new.
    pub added: usize,
    /// Documents whose ids existed with other content (re-embedded).
    pub replaced: usize,
    /// Documents whose ids existed with the same content (skipped).
    pub unchanged: usize,
    /// Documents deleted.
    pub deleted: usize,
    /// Chunks embedded.
    pub chunks_embedded: usize,
    /// Generation of the commit that made the write visible (unchanged when nothing changed).
    pub generation: u64,
    /// Live documents after the write.
    pub documents: usize,
    /// Live chunks after the write.
    pub chunks: usize,
}

/// One open index of a catalog.
pub struct SharedIndex {
    name: String,
    embedder: Arc<dyn Embedder>,
    /// The last commit, as every search sees it. Replaced (never mutated) after each commit.
    snapshot: RwLock<Arc<Index>>,
    /// The writer's own view; holding this lock is what serializes writes.
    writer: Mutex<WriterState>,
    /// Set when the process must stop: a write in progress stops at its next check, before
    /// its commit, so that nothing of it is committed.
    abandon: AtomicBool,
}

/// Documents embedded between two checks of the abandon flag, which bounds how long an
/// abandoned write keeps running: about two seconds of Cranfield abstracts with the default
/// model on 2 cores. Smaller calls would cost embedding throughput (batches fill less).
const DOCUMENTS_PER_ABANDON_CHECK: usize = 16;

enum WriterState {
    Open(Box<Index>),
    /// Removed from the catalog: writes that were waiting find it gone.
    Dropped,
    /// The process is shutting down: no new write starts.
    Closed,
}

impl SharedIndex {
    /// Shares `index` (opened or created by the caller, checked against `embedder`) outside a
    /// catalog: what an application embedding ibex holds (the Python package's `Index`).
    pub fn new(name: impl Into<String>, index: Index, embedder: Arc<dyn Embedder>) -> SharedIndex {
        SharedIndex {
            name: name.into(),
            embedder,
            snapshot: RwLock::new(Arc::new(index.clone())),
            writer: Mutex::new(WriterState::Open(Box::new(index))),
            abandon: AtomicBool::new(false),
        }
    }

    /// Makes writes in progress stop before they commit (they return
    /// [`IndexError::WriteAbandoned`]), and new ones fail the same way. For a process that must
    /// stop now: what was not committed is not half-committed, it is not committed at all.
    pub fn abandon_writes(&self) {
        self.abandon.store(true, Ordering::SeqCst);
    }

    fn check_not_abandoned(&self) -> Result<()> {
        if self.abandon.load(Ordering::SeqCst) {
            return Err(IndexError::WriteAbandoned {
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Moves searches to a commit another process (`ibex index`, `ibex delete`) made to this
    /// index's directory, if there is a newer one. Returns the generation now seen, or `None`
    /// when nothing changed or a write of this process is in progress (its commit will publish
    /// the newer state anyway, since a writer catches up under the lock first).
    pub fn catch_up_with_disk(&self) -> Result<Option<u64>> {
        let snapshot = self.snapshot();
        if snapshot.committed_generation()? <= snapshot.manifest().generation {
            return Ok(None);
        }
        let mut guard = match self.writer.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(None),
        };
        let WriterState::Open(index) = &mut *guard else {
            return Ok(None);
        };
        index.refresh()?;
        Ok(Some(self.publish(index).manifest().generation))
    }

    /// Waits for the write in progress and takes no new ones; searches on snapshots go on.
    pub fn close(&self) {
        if let Ok(mut writer) = self.lock_writer() {
            *writer = WriterState::Closed;
        }
    }

    /// Indexes a whole corpus into this index (validated first, committed every
    /// `options.commit_every` documents, see [`crate::bulk`]); searches see the result when it
    /// returns. Other writes wait for it.
    pub fn index_corpus(
        &self,
        corpus: &Path,
        options: &IndexOptions,
        progress: impl FnMut(IndexProgress),
    ) -> Result<IndexReport> {
        let mut guard = self.lock_writer()?;
        let index = self.open_writer_state(&mut guard)?;
        let report = crate::bulk::index_corpus_into(
            corpus,
            index,
            self.embedder.as_ref(),
            options,
            progress,
        );
        self.publish(index);
        report
    }

    /// The writer's index, or the error of a dropped or closed one.
    fn open_writer_state<'g>(&self, guard: &'g mut WriterState) -> Result<&'g mut Index> {
        match guard {
            WriterState::Open(index) => Ok(index),
            WriterState::Dropped => Err(IndexError::UnknownIndex {
                name: self.name.clone(),
            }),
            WriterState::Closed => Err(IndexError::Closed {
                name: self.name.clone(),
            }),
        }
    }

    /// Makes the writer's view of the last commit the one searches see.
    fn publish(&self, index: &Index) -> Arc<Index> {
        let snapshot = Arc::new(Index::clone(index));
        match self.snapshot.write() {
            Ok(mut current) => *current = snapshot.clone(),
            Err(poisoned) => *poisoned.into_inner() = snapshot.clone(),
        }
        snapshot
    }

    /// The index's name in its catalog.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model the index was built with (queries must be embedded with it).
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// An immutable view of the last commit, for as long as the caller keeps it.
    pub fn snapshot(&self) -> Arc<Index> {
        match self.snapshot.read() {
            Ok(snapshot) => snapshot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Looks a document up in the last commit.
    pub fn get(&self, id: &str) -> Result<Option<StoredDocument>> {
        self.snapshot().get_document(id)
    }

    /// Statistics of the last commit.
    pub fn info(&self) -> IndexInfo {
        IndexInfo::of(&self.name, &self.snapshot())
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, WriterState>> {
        // A panic while writing leaves the writer's view possibly ahead of disk; the commit
        // protocol makes disk the truth, and the next write refreshes from it.
        Ok(match self.writer.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        })
    }

    /// Adds or replaces `docs` (the last of several documents with one id wins) and commits.
    /// When this returns, the documents are durable and every new search sees them.
    pub fn upsert(&self, docs: Vec<Document>) -> Result<WriteReport> {
        let mut by_id: HashMap<String, usize> = HashMap::with_capacity(docs.len());
        for (i, doc) in docs.iter().enumerate() {
            by_id.insert(doc.id.clone(), i);
        }
        let docs: Vec<Document> = docs
            .into_iter()
            .enumerate()
            .filter(|(i, doc)| by_id.get(&doc.id) == Some(i))
            .map(|(_, doc)| doc)
            .collect();
        self.write(|writer| {
            let mut report = WriteReport::default();
            for batch in docs.chunks(DOCUMENTS_PER_ABANDON_CHECK) {
                self.check_not_abandoned()?;
                let stats: UpsertStats = writer.upsert(batch)?;
                report.added += stats.added;
                report.replaced += stats.replaced;
                report.unchanged += stats.unchanged;
                report.chunks_embedded += stats.chunks;
            }
            Ok(report)
        })
    }

    /// Catches up with commits that another process made to this index directory since this
    /// view was opened (another replica of a served shard wrote to it), if the last commit seen
    /// is older than `generation`. Returns the generation searches now see.
    pub fn refresh_to(&self, generation: u64) -> Result<u64> {
        let seen = self.snapshot().manifest().generation;
        if seen >= generation {
            return Ok(seen);
        }
        let mut guard = self.lock_writer()?;
        let index = self.open_writer_state(&mut guard)?;
        index.refresh()?;
        Ok(self.publish(index).manifest().generation)
    }

    /// Takes a consistent snapshot of the last commit into `dest` (see [`crate::snapshot`]):
    /// this process's writes wait for the few milliseconds the files take to link.
    pub fn take_snapshot(&self, dest: &Path) -> Result<crate::snapshot::SnapshotInfo> {
        let mut guard = self.lock_writer()?;
        let index = self.open_writer_state(&mut guard)?;
        let info = crate::snapshot::take_snapshot(index, dest)?;
        self.publish(index);
        Ok(info)
    }

    /// Deletes documents by id and commits; the report counts those that existed.
    pub fn delete(&self, ids: &[&str]) -> Result<WriteReport> {
        self.write(|writer| {
            Ok(WriteReport {
                deleted: writer.delete(ids),
                ..WriteReport::default()
            })
        })
    }

    fn write(
        &self,
        change: impl FnOnce(&mut crate::writer::IndexWriter<'_>) -> Result<WriteReport>,
    ) -> Result<WriteReport> {
        let mut guard = self.lock_writer()?;
        let index = self.open_writer_state(&mut guard)?;
        let mut writer = index.writer(self.embedder.as_ref())?;
        self.check_not_abandoned()?;
        let mut report = change(&mut writer)?;
        // The last moment a write can be abandoned: past here it commits whole or not at all.
        self.check_not_abandoned()?;
        if writer.has_changes() {
            writer.commit()?;
        }
        writer.finish()?;
        let snapshot = self.publish(index);
        report.generation = snapshot.manifest().generation;
        report.documents = snapshot.num_documents();
        report.chunks = snapshot.num_chunks();
        Ok(report)
    }
}

/// The named indexes of one data directory.
pub struct Catalog {
    data_dir: PathBuf,
    load_model: ModelLoader,
    indexes: RwLock<BTreeMap<String, Arc<SharedIndex>>>,
    /// Models by spec, shared among indexes.
    models: Mutex<HashMap<String, Arc<dyn Embedder>>>,
    /// Serializes creating and dropping indexes.
    admin: Mutex<()>,
}

/// An index directory of the data directory that could not be opened.
#[derive(Debug)]
pub struct Unopened {
    /// The directory's name.
    pub name: String,
    /// Why it could not be opened.
    pub error: IndexError,
}

impl Catalog {
    /// Opens every index under `data_dir` (created if missing), loading their models through
    /// `load_model`. Directories that fail to open are returned beside the catalog, left
    /// untouched on disk, and not served.
    pub fn open(data_dir: &Path, load_model: ModelLoader) -> Result<(Catalog, Vec<Unopened>)> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| IndexError::io(format!("creating {}", data_dir.display()), e))?;
        let catalog = Catalog {
            data_dir: data_dir.to_path_buf(),
            load_model,
            indexes: RwLock::new(BTreeMap::new()),
            models: Mutex::new(HashMap::new()),
            admin: Mutex::new(()),
        };
        let entries = std::fs::read_dir(data_dir)
            .map_err(|e| IndexError::io(format!("listing {}", data_dir.display()), e))?;
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // Leftovers of a process killed while creating or dropping an index: never an index
        // anyone can see (both are renamed into or out of place in one step).
        for leftover in names
            .iter()
            .filter(|n| n.starts_with('.') && (n.contains(".creating-") || n.contains(".dropped-")))
        {
            let _ = std::fs::remove_dir_all(data_dir.join(leftover));
        }
        let mut names: Vec<String> = names
            .into_iter()
            .filter(|n| validate_name(n).is_ok() && is_index(&data_dir.join(n)))
            .collect();
        names.sort();
        let mut unopened = Vec::new();
        for name in names {
            match catalog.open_existing(&name) {
                Ok(shared) => {
                    catalog.write_map().insert(name, Arc::new(shared));
                }
                Err(error) => unopened.push(Unopened { name, error }),
            }
        }
        Ok((catalog, unopened))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<SharedIndex>>> {
        match self.indexes.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<SharedIndex>>> {
        match self.indexes.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn model(&self, spec: &str) -> Result<Arc<dyn Embedder>> {
        let mut models = match self.models.lock() {
            Ok(models) => models,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(model) = models.get(spec) {
            return Ok(model.clone());
        }
        let model = (self.load_model)(spec)?;
        models.insert(spec.to_string(), model.clone());
        Ok(model)
    }

    fn open_existing(&self, name: &str) -> Result<SharedIndex> {
        let index = Index::open(&self.data_dir.join(name))?;
        let embedder = self.model(&index.model().source)?;
        index.check_embedder(embedder.as_ref())?;
        Ok(SharedIndex::new(name, index, embedder))
    }

    /// The index called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<SharedIndex>> {
        self.read_map()
            .get(name)
            .cloned()
            .ok_or_else(|| IndexError::UnknownIndex {
                name: name.to_string(),
            })
    }

    /// Every index, by name.
    pub fn list(&self) -> Vec<Arc<SharedIndex>> {
        self.read_map().values().cloned().collect()
    }

    /// Creates an empty index called `name`, embedding with the model `model_spec`.
    pub fn create(
        &self,
        name: &str,
        model_spec: &str,
        chunking: ChunkingParams,
        vector_storage: VectorStorage,
    ) -> Result<Arc<SharedIndex>> {
        validate_name(name)?;
        chunking.validate()?;
        let _admin = lock(&self.admin);
        let dir = self.data_dir.join(name);
        if self.read_map().contains_key(name) || dir.exists() {
            return Err(IndexError::IndexExists {
                name: name.to_string(),
            });
        }
        let embedder = self.model(model_spec)?;
        let model = model_info(model_spec, embedder.as_ref());
        let index = Index::create_with_storage(&dir, model, chunking, vector_storage)?;
        let shared = Arc::new(SharedIndex::new(name, index, embedder));
        self.write_map().insert(name.to_string(), shared.clone());
        Ok(shared)
    }

    /// Removes the index called `name` from the catalog and from disk. A write in progress
    /// finishes first; searches holding a snapshot finish on it.
    pub fn drop_index(&self, name: &str) -> Result<()> {
        let _admin = lock(&self.admin);
        let shared = self.get(name)?;
        // Wait for the write in progress, then let no other start.
        let mut writer = shared.lock_writer()?;
        *writer = WriterState::Dropped;
        self.write_map().remove(name);
        let dir = self.data_dir.join(name);
        // Renamed first, so a crash mid-removal never leaves a half-deleted index under its name.
        let trash = self
            .data_dir
            .join(format!(".{name}.dropped-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&trash);
        std::fs::rename(&dir, &trash)
            .map_err(|e| IndexError::io(format!("removing {}", dir.display()), e))?;
        crate::durable::fsync_dir(&self.data_dir)?;
        std::fs::remove_dir_all(&trash)
            .map_err(|e| IndexError::io(format!("removing {}", trash.display()), e))?;
        Ok(())
    }

    /// Where the snapshots of index `name` are kept: `DATA_DIR/.snapshots/<name>/`, outside
    /// the index (dropping the index keeps its snapshots) and invisible to the catalog.
    fn snapshots_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(".snapshots").join(name)
    }

    /// Takes a snapshot of index `name` under the data directory, named by its generation and
    /// time (`g<generation>-<unix seconds>`); returns the name and what it holds.
    pub fn create_snapshot(&self, name: &str) -> Result<(String, crate::snapshot::SnapshotInfo)> {
        let shared = self.get(name)?;
        let generation = shared.snapshot().manifest().generation;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Named before it is taken; a write committed meanwhile is in it, and the name's
        // generation is then the one it started from (the description says which it holds).
        let snapshot = format!("g{generation:08}-{now}");
        let info = shared.take_snapshot(&self.snapshots_dir(name).join(&snapshot))?;
        Ok((snapshot, info))
    }

    /// The snapshots of index `name` (which may have been dropped since), oldest first.
    pub fn list_snapshots(
        &self,
        name: &str,
    ) -> Result<Vec<(String, crate::snapshot::SnapshotInfo)>> {
        validate_name(name)?;
        let dir = self.snapshots_dir(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut snapshots: Vec<(String, crate::snapshot::SnapshotInfo)> = entries
            .flatten()
            .filter_map(|e| {
                let snapshot = e.file_name().to_string_lossy().into_owned();
                validate_name(&snapshot).ok()?;
                let info = crate::snapshot::snapshot_info(&e.path()).ok()?;
                Some((snapshot, info))
            })
            .collect();
        snapshots.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(snapshots)
    }

    /// The directory of snapshot `snapshot` of index `name`, if it exists.
    pub fn snapshot_path(&self, name: &str, snapshot: &str) -> Result<PathBuf> {
        validate_name(name)?;
        validate_name(snapshot).map_err(|_| IndexError::UnknownSnapshot {
            name: name.to_string(),
            snapshot: snapshot.to_string(),
        })?;
        let dir = self.snapshots_dir(name).join(snapshot);
        if !dir.join(crate::snapshot::SNAPSHOT_FILE).is_file() {
            return Err(IndexError::UnknownSnapshot {
                name: name.to_string(),
                snapshot: snapshot.to_string(),
            });
        }
        Ok(dir)
    }

    /// Deletes snapshot `snapshot` of index `name`.
    pub fn delete_snapshot(&self, name: &str, snapshot: &str) -> Result<()> {
        let dir = self.snapshot_path(name, snapshot)?;
        std::fs::remove_dir_all(&dir)
            .map_err(|e| IndexError::io(format!("removing {}", dir.display()), e))
    }

    /// Restores snapshot `snapshot` of index `name` as a new index `into` (which must not
    /// exist), and serves it.
    pub fn restore_snapshot(
        &self,
        name: &str,
        snapshot: &str,
        into: &str,
    ) -> Result<Arc<SharedIndex>> {
        validate_name(into)?;
        let source = self.snapshot_path(name, snapshot)?;
        let _admin = lock(&self.admin);
        let dir = self.data_dir.join(into);
        if self.read_map().contains_key(into) || dir.exists() {
            return Err(IndexError::IndexExists {
                name: into.to_string(),
            });
        }
        crate::snapshot::restore_snapshot(&source, &dir)?;
        let shared = Arc::new(self.open_existing(into)?);
        self.write_map().insert(into.to_string(), shared.clone());
        Ok(shared)
    }

    /// Moves each index's searches to commits other processes made to it (see
    /// [`SharedIndex::catch_up_with_disk`]); returns the indexes that moved, with the errors of
    /// those that could not be read (they keep serving their last good snapshot).
    pub fn catch_up_with_disk(&self) -> Vec<(String, Result<u64>)> {
        let mut moved = Vec::new();
        for shared in self.list() {
            match shared.catch_up_with_disk() {
                Ok(None) => {}
                Ok(Some(generation)) => moved.push((shared.name.clone(), Ok(generation))),
                Err(e) => moved.push((shared.name.clone(), Err(e))),
            }
        }
        moved
    }

    /// Makes every write in progress stop before its commit (see
    /// [`SharedIndex::abandon_writes`]).
    pub fn abandon_writes(&self) {
        for shared in self.list() {
            shared.abandon_writes();
        }
    }

    /// Waits for every write in progress and stops accepting new ones (for a clean shutdown).
    pub fn close(&self) {
        for shared in self.list() {
            shared.close();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Total size of the files under `dir` (0 for what cannot be read).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_directory_names() {
        for good in ["a", "cranfield", "my-index_2", "A1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "..", ".hidden", "a/b", "a b", "-x", "é", long.as_str()] {
            assert!(
                matches!(validate_name(bad), Err(IndexError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }
}
