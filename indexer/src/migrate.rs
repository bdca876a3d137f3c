//! Upgrading an index written by an older format version in place.
//!
//! Format 2 indexes metadata by type (numbers and dates for range filters, keys for `$exists`);
//! format 1 indexed `key=value` text only. Everything the new terms come from is stored (the
//! metadata JSON), so the upgrade rewrites each document's lexical entry and commits it under
//! the usual protocol with the new version in the manifest: a kill leaves the old index (the
//! manifest of version 1 is still the committed one) and the command can be run again. Vectors,
//! graphs and chunk keys are untouched, so nothing is re-embedded.

use std::path::Path;

use crate::error::Result;
use crate::index::Index;
use crate::manifest::{FORMAT_VERSION, OLDEST_MIGRATABLE_FORMAT};

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// The format version the index had.
    pub from_version: u32,
    /// The format version it has now ([`FORMAT_VERSION`]).
    pub to_version: u32,
    /// Documents whose entries were rewritten (0 when the index was already current).
    pub documents: usize,
    /// The generation of the index after the upgrade.
    pub generation: u64,
}

/// Upgrades the index at `dir` to [`FORMAT_VERSION`] in place (a no-op for a current index).
/// Takes the index's writer lock: fails with [`crate::IndexError::Locked`] while another process
/// writes to it.
pub fn migrate(dir: &Path) -> Result<MigrationReport> {
    let mut index = Index::open_reading_formats(dir, OLDEST_MIGRATABLE_FORMAT)?;
    let from_version = index.manifest().format_version;
    if from_version == FORMAT_VERSION {
        return Ok(MigrationReport {
            from_version,
            to_version: FORMAT_VERSION,
            documents: 0,
            generation: index.manifest().generation,
        });
    }
    let mut writer = index.embedded_writer()?;
    let documents = writer.rewrite_lexical_entries()?;
    let stats = writer.commit()?;
    writer.finish()?;
    Ok(MigrationReport {
        from_version,
        to_version: FORMAT_VERSION,
        documents,
        generation: stats.generation,
    })
}
