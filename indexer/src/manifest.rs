//! The manifest: what a committed index consists of.
//!
//! Each commit writes a new `manifest-{generation}.json`; the tantivy commit that follows names
//! that generation in its payload, and that payload is the one place that says which manifest is
//! current. The manifest carries a checksum so that a damaged file is reported, never trusted.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkingParams;
use crate::durable::write_durably;
use crate::error::{IndexError, Result};
use crate::quantized::VectorStorage;
use crate::vectors::SegmentMeta;

/// Version of the on-disk format this build reads and writes.
///
/// - 1: metadata indexed as `key=value` text terms (equality filters only).
/// - 2: metadata also indexed by type, for range and existence filters (see
///   [`crate::metadata`]). Version 1 indexes are upgraded in place by [`crate::migrate`]
///   (`ibex migrate`); nothing else changed, so the upgrade rewrites only the lexical index.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version [`crate::migrate`] upgrades.
pub const OLDEST_MIGRATABLE_FORMAT: u32 = 1;

/// The embedding model an index was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model's id (for the default model, `sentence-transformers/all-MiniLM-L6-v2`).
    pub id: String,
    /// How to load it again: the default model's name, or the path of a local model folder.
    pub source: String,
    /// Length of its vectors.
    pub dimension: usize,
}

/// The description of one committed state of an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of the index ([`crate::FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// The commit's generation (`manifest-G.json`), one more at each commit.
    pub generation: u64,
    /// The embedding model every vector comes from.
    pub model: ModelInfo,
    /// How documents are chunked.
    pub chunking: ChunkingParams,
    /// The next unused chunk key; chunk keys are never reused.
    pub next_chunk_key: u64,
    /// The next unused segment id.
    pub next_segment_id: u64,
    /// The committed vector segments.
    pub segments: Vec<SegmentMeta>,
    /// The interaction data installed with the commit (`ibex index-interactions`), if any.
    /// Absent from manifests written before interaction data joined the commit protocol, which
    /// is why it is optional on read and left out when empty (older manifests keep their crc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactions: Option<InteractionsFile>,
    /// How processes hold the vectors in memory (the segment files are full precision in every
    /// case). Left out when f32, so manifests written before the option keep their checksum; an
    /// ibex that predates it ignores it and holds the vectors at full precision.
    #[serde(default, skip_serializing_if = "VectorStorage::is_f32")]
    pub vector_storage: VectorStorage,
}

/// A committed interaction file: written once under a name of its generation and never changed,
/// so a commit refers to exactly the data it was made with, and snapshots hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionsFile {
    /// File name inside the index directory (`interactions-{generation}.tsv`).
    pub file: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// CRC-32 of its bytes: a damaged file is reported, never read as other interactions.
    pub crc32: u32,
    /// Interactions (lines) it holds.
    pub events: usize,
}

/// File name of the interaction data committed at `generation`.
pub fn interactions_file_name(generation: u64) -> String {
    format!("interactions-{generation:08}.tsv")
}

#[derive(Serialize, Deserialize)]
struct ManifestFile {
    crc32: u32,
    manifest: serde_json::Value,
}

/// File name of the manifest of `generation`.
pub fn manifest_file_name(generation: u64) -> String {
    format!("manifest-{generation:08}.json")
}

impl Manifest {
    /// Writes this manifest durably into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let body = serde_json::to_value(self)
            .map_err(|e| IndexError::io("serializing the manifest", std::io::Error::other(e)))?;
        let crc32 = crc32fast::hash(body.to_string().as_bytes());
        let file = ManifestFile {
            crc32,
            manifest: body,
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| IndexError::io("serializing the manifest", std::io::Error::other(e)))?;
        write_durably(&dir.join(manifest_file_name(self.generation)), &bytes)
    }

    /// Reads and checks the manifest of `generation` in `dir`, refusing format versions other
    /// than [`FORMAT_VERSION`] and, when `oldest` is lower, those from `oldest` on (a migration
    /// reads them).
    pub fn read(dir: &Path, generation: u64, oldest: u32) -> Result<Manifest> {
        let path = dir.join(manifest_file_name(generation));
        let bytes = std::fs::read(&path)
            .map_err(|e| IndexError::io(format!("reading manifest {}", path.display()), e))?;
        let corrupt = |reason: String| IndexError::Corrupt {
            path: path.clone(),
            reason,
        };
        let file: ManifestFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if crc32fast::hash(file.manifest.to_string().as_bytes()) != file.crc32 {
            return Err(corrupt("checksum mismatch".into()));
        }
        let version = file
            .manifest
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if !(oldest.min(FORMAT_VERSION)..=FORMAT_VERSION).contains(&version) {
            let advice = if (OLDEST_MIGRATABLE_FORMAT..FORMAT_VERSION).contains(&version) {
                format!(
                    "upgrade it in place with `ibex migrate {}` (it re-indexes the metadata for \
                     typed filters and keeps the vectors; stop any process writing to it first)",
                    dir.display()
                )
            } else if version > FORMAT_VERSION {
                "it was written by a newer ibex: open it with that version".to_string()
            } else {
                "rebuild it from its corpus with `ibex index`".to_string()
            };
            return Err(IndexError::UnsupportedFormat {
                path: path.clone(),
                found: version,
                supported: FORMAT_VERSION,
                advice,
            });
        }
        serde_json::from_value(file.manifest).map_err(|e| corrupt(e.to_string()))
    }
}
