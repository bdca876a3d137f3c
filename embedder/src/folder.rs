//! What every model loader reads from a Hugging Face-format folder: config.json, the weight
//! files, the tokenizer; and the token spans chunking needs.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::error::{EmbedderError, Result};
use crate::TokenSpan;

/// The safetensors files of a folder: `model.safetensors`, or the shards a
/// `model.safetensors.index.json` names (large checkpoints are sharded).
pub(crate) fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| EmbedderError::MissingModelFile {
        dir: dir.to_path_buf(),
        file: "model.safetensors",
    })?;
    let parsed: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| EmbedderError::InvalidModelFile {
            path: index.clone(),
            reason: e.to_string(),
        })?;
    let mut files: Vec<PathBuf> = parsed["weight_map"]
        .as_object()
        .ok_or_else(|| EmbedderError::InvalidModelFile {
            path: index.clone(),
            reason: "no weight_map".into(),
        })?
        .values()
        .filter_map(|v| v.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(EmbedderError::InvalidModelFile {
            path: index,
            reason: format!("names the shard {}, which is missing", missing.display()),
        });
    }
    Ok(files)
}

/// Reads a model folder's config.json as `T`.
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|_| EmbedderError::MissingModelFile {
        dir: dir.to_path_buf(),
        file: "config.json",
    })?;
    serde_json::from_str(&text).map_err(|e| EmbedderError::InvalidModelFile {
        path,
        reason: e.to_string(),
    })
}

/// The folder's tokenizer.json with any padding and truncation it ships removed: the embedders
/// pad and truncate themselves.
pub(crate) fn read_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(EmbedderError::MissingModelFile {
            dir: dir.to_path_buf(),
            file: "tokenizer.json",
        });
    }
    let mut tokenizer =
        Tokenizer::from_file(&path).map_err(|e| EmbedderError::InvalidModelFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| EmbedderError::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

/// The tokens of `text` (no special tokens) with their character spans, for chunking.
pub(crate) fn token_spans(tokenizer: &Tokenizer, text: &str) -> Result<Vec<TokenSpan>> {
    let encoding = tokenizer
        .encode_char_offsets(text, false)
        .map_err(|e| EmbedderError::Tokenizer(e.to_string()))?;
    Ok(encoding
        .get_offsets()
        .iter()
        .map(|&(start, end)| TokenSpan { start, end })
        .collect())
}
