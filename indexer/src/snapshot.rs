//! Consistent snapshots of an index while writes continue, and restoring them.
//!
//! A snapshot is an ordinary index directory holding exactly one commit, the one that was
//! current when it was taken, plus `snapshot.json` describing it. Taking one holds the index's
//! writer lock only while the commit's files are linked: every file a commit refers to is
//! immutable once committed (segments are written once; `meta.json`, `.managed.json` and
//! manifests are replaced by rename, never rewritten in place), so a hard link is a frozen copy
//! and costs no bytes. Where the destination is on another file system the files are copied
//! instead, still under the lock, and fsynced. The snapshot appears under its name in one
//! rename, so a crash while taking it leaves no half snapshot under that name.
//!
//! Restoring copies a snapshot into a new index directory (never over an existing one), again
//! assembled under a temporary name and renamed into place.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable::fsync_dir;
use crate::error::{IndexError, Result};
use crate::index::Index;

/// The file describing a snapshot, beside the index files it holds.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// Files of an index directory that belong to a process, not to a commit.
const NOT_COMMITTED: [&str; 3] = [
    ".tantivy-writer.lock",
    ".tantivy-meta.lock",
    ".writer-holder",
];

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Generation of the commit it holds.
    pub generation: u64,
    /// Live documents of that commit.
    pub documents: usize,
    /// Live chunks of that commit.
    pub chunks: usize,
    /// Bytes of its files.
    pub bytes: u64,
    /// When it was taken, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// Whether its files are hard links to the index's (no space used until the index moves
    /// on) rather than copies.
    pub linked: bool,
}

/// Takes a snapshot of the index at `index_dir` into `dest`, which must not exist: its last
/// commit, consistent whatever other processes write meanwhile (they wait for the lock for the
/// few milliseconds the links take; a copy takes longer).
pub fn take_snapshot(index: &mut Index, dest: &Path) -> Result<SnapshotInfo> {
    if dest.exists() {
        return Err(IndexError::AlreadyExists {
            path: dest.to_path_buf(),
        });
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)
        .map_err(|e| IndexError::io(format!("creating {}", parent.display()), e))?;
    let staging = staging_path(dest);
    let _ = fs::remove_dir_all(&staging);
    let result = (|| {
        // The writer lock: no commit can start or garbage be collected while the files are
        // linked. Opening the writer also moved `index` to the last commit.
        let source = index.dir().to_path_buf();
        let writer = index.embedded_writer()?;
        let mut linked = true;
        let bytes = link_or_copy_tree(&source, &staging, &mut linked)?;
        writer.finish()?;
        let info = SnapshotInfo {
            generation: index.manifest().generation,
            documents: index.num_documents(),
            chunks: index.num_chunks(),
            bytes,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            linked,
        };
        write_info(&staging, &info)?;
        fs::rename(&staging, dest)
            .map_err(|e| IndexError::io(format!("creating {}", dest.display()), e))?;
        fsync_dir(parent)?;
        Ok(info)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// What the snapshot at `dir` holds, checked by opening it.
pub fn snapshot_info(dir: &Path) -> Result<SnapshotInfo> {
    let path = dir.join(SNAPSHOT_FILE);
    let text = fs::read_to_string(&path).map_err(|e| {
        IndexError::io(
            format!(
                "reading {} (is {} a snapshot taken by `ibex snapshot`?)",
                path.display(),
                dir.display()
            ),
            e,
        )
    })?;
    serde_json::from_str(&text).map_err(|e| IndexError::Corrupt {
        path,
        reason: e.to_string(),
    })
}

/// Restores the snapshot at `snapshot` as a new index at `dest` (which must not exist): the
/// snapshot is opened and checked first, then copied under a temporary name and renamed into
/// place. Returns what the restored index holds.
pub fn restore_snapshot(snapshot: &Path, dest: &Path) -> Result<SnapshotInfo> {
    let info = snapshot_info(snapshot)?;
    let opened = Index::open(snapshot)?;
    if opened.manifest().generation != info.generation {
        return Err(IndexError::Corrupt {
            path: snapshot.join(SNAPSHOT_FILE),
            reason: format!(
                "it describes generation {} but the files hold generation {}",
                info.generation,
                opened.manifest().generation
            ),
        });
    }
    drop(opened);
    if dest.exists() {
        return Err(IndexError::AlreadyExists {
            path: dest.to_path_buf(),
        });
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)
        .map_err(|e| IndexError::io(format!("creating {}", parent.display()), e))?;
    let staging = staging_path(dest);
    let _ = fs::remove_dir_all(&staging);
    let result = (|| {
        // Copied, never linked: the restored index will be written to, the snapshot must not
        // change with it (files are replaced by rename, but a copy makes that independent of
        // every writer's habits).
        let mut linked = false;
        copy_tree(snapshot, &staging, &mut linked)?;
        let _ = fs::remove_file(staging.join(SNAPSHOT_FILE));
        fs::rename(&staging, dest)
            .map_err(|e| IndexError::io(format!("creating {}", dest.display()), e))?;
        fsync_dir(parent)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(info)
}

/// The temporary sibling a snapshot or restore is assembled in.
fn staging_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.creating-{}", std::process::id()))
}

fn write_info(dir: &Path, info: &SnapshotInfo) -> Result<()> {
    let text = serde_json::to_vec_pretty(info).map_err(|e| {
        IndexError::io(
            "encoding snapshot.json",
            std::io::Error::other(e.to_string()),
        )
    })?;
    crate::durable::write_durably(&dir.join(SNAPSHOT_FILE), &text)
}

/// Hard-links every committed file under `from` into `to` (copying where linking fails, and
/// then setting `linked` to false); returns the bytes.
fn link_or_copy_tree(from: &Path, to: &Path, linked: &mut bool) -> Result<u64> {
    tree(from, to, &mut |source, target| {
        if *linked && fs::hard_link(source, target).is_ok() {
            return Ok(());
        }
        *linked = false;
        copy_durably(source, target)
    })
}

fn copy_tree(from: &Path, to: &Path, linked: &mut bool) -> Result<u64> {
    *linked = false;
    tree(from, to, &mut |source, target| copy_durably(source, target))
}

fn copy_durably(source: &Path, target: &Path) -> Result<()> {
    let context = || format!("copying {} to {}", source.display(), target.display());
    fs::copy(source, target).map_err(|e| IndexError::io(context(), e))?;
    fs::File::open(target)
        .and_then(|f| f.sync_all())
        .map_err(|e| IndexError::io(context(), e))
}

fn tree(from: &Path, to: &Path, place: &mut dyn FnMut(&Path, &Path) -> Result<()>) -> Result<u64> {
    fs::create_dir_all(to).map_err(|e| IndexError::io(format!("creating {}", to.display()), e))?;
    let mut bytes = 0;
    let entries =
        fs::read_dir(from).map_err(|e| IndexError::io(format!("reading {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| IndexError::io(format!("reading {}", from.display()), e))?;
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if NOT_COMMITTED.contains(&name_text.as_ref()) || name_text == SNAPSHOT_FILE {
            continue;
        }
        let source = entry.path();
        let target = to.join(&name);
        let kind = entry
            .file_type()
            .map_err(|e| IndexError::io(format!("reading {}", source.display()), e))?;
        if kind.is_dir() {
            bytes += tree(&source, &target, place)?;
        } else if kind.is_file() {
            place(&source, &target)?;
            bytes += entry.metadata().map_or(0, |m| m.len());
        }
    }
    fsync_dir(to)?;
    Ok(bytes)
}
