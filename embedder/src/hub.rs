//! Models named by a Hugging Face hub id (`owner/name`), downloaded through the `hf-hub` crate
//! into the hub's own cache layout, as text-embeddings-inference does.
//!
//! The path is deliberately thin: it fetches `config.json`, `tokenizer.json`, the safetensors
//! weights (one file, or the shards an index file lists) and, where the repository has them, the
//! sentence-transformers files that set pooling, normalization and the input length
//! (`modules.json`, each module's `config.json`, `sentence_bert_config.json`), and hands the
//! snapshot folder to the same loader a local folder goes through. Files already in the cache
//! are not fetched again, so a model downloaded once loads offline. Where the hub cannot be reached (machines whose network
//! only reaches package registries), the error says how to bring the folder by hand.
//!
//! Environment: `HF_ENDPOINT` (a mirror), `HF_HOME` (the cache; default `$IBEX_HOME/hub`),
//! `HF_TOKEN` (gated models), `HF_HUB_OFFLINE=1` (use the cache only).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{EmbedderError, Result};

/// The hub's address unless `HF_ENDPOINT` names another.
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where a hub model is fetched from and cached.
#[derive(Debug, Clone)]
pub struct HubSource {
    /// Base URL of the hub (or a mirror).
    pub endpoint: String,
    /// The hub cache folder (`models--owner--name/…` inside).
    pub cache_dir: PathBuf,
    /// Access token for gated or private models.
    pub token: Option<String>,
    /// Use only files already in the cache.
    pub offline: bool,
}

impl HubSource {
    /// The source the environment describes (see the module documentation).
    pub fn from_env() -> Self {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        HubSource {
            endpoint: non_empty("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            cache_dir: non_empty("HF_HOME")
                .map(|home| PathBuf::from(home).join("hub"))
                .unwrap_or_else(|| crate::ibex_home().join("hub")),
            token: non_empty("HF_TOKEN"),
            offline: non_empty("HF_HUB_OFFLINE").is_some_and(|v| v != "0"),
        }
    }
}

/// Downloads (or finds in the cache) the model `id` and returns its snapshot folder, which holds
/// config.json, tokenizer.json and the weights.
pub fn download_model(id: &str, source: &HubSource) -> Result<PathBuf> {
    let fail = |reason: String| EmbedderError::HubDownload {
        id: id.to_string(),
        endpoint: source.endpoint.clone(),
        reason,
    };
    let cache = Cache::new(source.cache_dir.clone());
    let cached = cache.repo(Repo::new(id.to_string(), RepoType::Model));
    let remote = if source.offline {
        None
    } else {
        Some(
            ApiBuilder::from_cache(cache.clone())
                .with_endpoint(source.endpoint.clone())
                .with_token(source.token.clone())
                .with_progress(false)
                .with_retries(2)
                .build()
                .map_err(|e| fail(e.to_string()))?
                .model(id.to_string()),
        )
    };
    // A file from the cache, else from the hub; `Ok(None)` when the hub says it does not exist
    // (offline: when the cache lacks it; optional files are skipped either way).
    let get = |file: &str| -> Result<Option<PathBuf>> {
        if let Some(path) = cached.get(file) {
            return Ok(Some(path));
        }
        match &remote {
            None => Ok(None),
            Some(repo) => fetch(repo, file).map_err(fail),
        }
    };
    let absent = |file: &str| {
        if source.offline {
            fail(format!(
                "HF_HUB_OFFLINE is set and {file} is not in the cache {}",
                source.cache_dir.display()
            ))
        } else {
            fail(format!("the repository has no {file}"))
        }
    };
    let required = |file: &str| -> Result<PathBuf> { get(file)?.ok_or_else(|| absent(file)) };
    let config = required("config.json")?;
    required("tokenizer.json")?;
    if get("model.safetensors")?.is_none() {
        let index = get("model.safetensors.index.json")?.ok_or_else(|| {
            if source.offline {
                absent("model.safetensors")
            } else {
                fail("the repository has neither model.safetensors nor model.safetensors.index.json (ibex loads safetensors weights only)".into())
            }
        })?;
        for shard in shard_names(&index).map_err(fail)? {
            required(&shard)?;
        }
    }
    // sentence-transformers' module list, and the configuration of each module it names.
    if let Some(modules) = get("modules.json")? {
        for folder in module_folders(&modules).map_err(fail)? {
            get(&format!("{folder}/config.json"))?;
        }
    }
    get("sentence_bert_config.json")?;
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| fail("the cache returned a file without a folder".into()))
}

/// Downloads one file; `Ok(None)` when the hub answers 404 for it.
fn fetch(repo: &ApiRepo, file: &str) -> std::result::Result<Option<PathBuf>, String> {
    match repo.download(file) {
        Ok(path) => Ok(Some(path)),
        Err(hf_hub::api::sync::ApiError::RequestError(error)) => match *error {
            ureq::Error::Status(404, _) => Ok(None),
            other => Err(format!("{file}: {other}")),
        },
        Err(other) => Err(format!("{file}: {other}")),
    }
}

/// The folders of the modules a sentence-transformers `modules.json` lists (the first module,
/// the transformer itself, lives at the root).
fn module_folders(modules: &Path) -> std::result::Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Module {
        #[serde(default)]
        path: String,
    }
    let text =
        std::fs::read_to_string(modules).map_err(|e| format!("{}: {e}", modules.display()))?;
    let parsed: Vec<Module> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", modules.display()))?;
    let folders: Vec<String> = parsed
        .into_iter()
        .map(|m| m.path)
        .filter(|p| !p.is_empty())
        .collect();
    check_relative(modules, &folders)?;
    Ok(folders)
}

/// Refuses names that would leave the snapshot folder.
fn check_relative(file: &Path, names: &[String]) -> std::result::Result<(), String> {
    match names
        .iter()
        .find(|s| s.contains("..") || s.starts_with('/') || s.contains('\\'))
    {
        Some(bad) => Err(format!("{}: unsafe file name {bad:?}", file.display())),
        None => Ok(()),
    }
}

/// The distinct shard files a `model.safetensors.index.json` maps weights to.
fn shard_names(index: &Path) -> std::result::Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| format!("{}: {e}", index.display()))?;
    let parsed: Index =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let mut shards: Vec<String> = parsed.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    check_relative(index, &shards)?;
    Ok(shards)
}
