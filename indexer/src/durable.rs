//! The file-level steps of ibex's commit protocol.
//!
//! A commit makes new files durable before anything refers to them: each file is written under a
//! temporary name, fsynced, renamed into place, and its directory fsynced. Only then does the
//! commit's single linearization point (the tantivy commit whose payload names the new manifest)
//! make them part of the index. A process killed at any moment therefore leaves either the old
//! commit or the new one, never a mix; files of an unfinished commit are unreferenced garbage that
//! the next writer removes.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{IndexError, Result};

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync directory).
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let context = || format!("writing {}", path.display());
    let mut file = File::create(&temp).map_err(|e| IndexError::io(context(), e))?;
    file.write_all(bytes)
        .map_err(|e| IndexError::io(context(), e))?;
    file.sync_all().map_err(|e| IndexError::io(context(), e))?;
    drop(file);
    fs::rename(&temp, path).map_err(|e| IndexError::io(context(), e))?;
    fsync_dir(dir)
}

/// Fsyncs a directory, making renames and creations inside it durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    match File::open(dir).and_then(|f| f.sync_all()) {
        Ok(()) => Ok(()),
        // Some file systems refuse to fsync directories; there is nothing more to do there.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput || e.raw_os_error() == Some(22) => {
            Ok(())
        }
        Err(e) => Err(IndexError::io(
            format!("syncing directory {}", dir.display()),
            e,
        )),
    }
}
