//! Reading of the sentence-transformers configuration that sits beside a model's weights.
//!
//! A plain Hugging Face checkpoint says nothing about how token vectors become one sentence
//! vector; sentence-transformers folders do (modules.json, 1_Pooling/config.json,
//! sentence_bert_config.json). Getting these wrong silently degrades retrieval, so they are read
//! rather than assumed.

use std::path::Path;

use serde::Deserialize;

use crate::error::{EmbedderError, Result};

/// How token vectors are pooled into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token vectors under the attention mask.
    Mean,
    /// The vector of the first ([CLS]) token.
    Cls,
}

/// The pooling, normalization and length settings of a sentence-embedding model.
#[derive(Debug, Clone)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertFile {
    max_seq_length: Option<usize>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EmbedderError::InvalidModelFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EmbedderError::io(format!("reading {}", path.display()), e)),
    }
}

impl SentenceConfig {
    /// Reads the sentence-transformers files of `dir`. Without them, the defaults are those of
    /// sentence-transformers itself for a bare checkpoint: mean pooling, no normalization.
    pub fn read(dir: &Path) -> Result<Self> {
        let mut config = SentenceConfig {
            pooling: Pooling::Mean,
            normalize: false,
            max_seq_length: None,
        };
        if let Some(modules) = read_json::<Vec<Module>>(&dir.join("modules.json"))? {
            for module in modules {
                if module.kind.ends_with("Normalize") {
                    config.normalize = true;
                }
                if module.kind.ends_with("Pooling") {
                    if let Some(p) =
                        read_json::<PoolingFile>(&dir.join(&module.path).join("config.json"))?
                    {
                        if p.pooling_mode_cls_token && !p.pooling_mode_mean_tokens {
                            config.pooling = Pooling::Cls;
                        }
                    }
                }
            }
        }
        if let Some(sb) = read_json::<SentenceBertFile>(&dir.join("sentence_bert_config.json"))? {
            config.max_seq_length = sb.max_seq_length;
        }
        Ok(config)
    }
}
