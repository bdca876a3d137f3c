//! Which LLM to use: environment variables over an optional JSON config file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{GeneratorError, Result};
use crate::{EmbeddedGenerator, Generator, HttpGenerator, HttpOptions};

/// Environment variable naming the config file (default `$IBEX_HOME/llm.json` when it exists).
pub const LLM_CONFIG_ENV: &str = "IBEX_LLM_CONFIG";

/// The generator's configuration.
///
/// The JSON file has the same fields: `{"url": "http://127.0.0.1:8080/v1", "model": "qwen2.5",
/// "api_key": "...", "timeout_s": 120, "max_retries": 3}`. `IBEX_LLM_URL`, `IBEX_LLM_MODEL`,
/// `IBEX_LLM_API_KEY`, `IBEX_LLM_TIMEOUT_S`, `IBEX_LLM_MAX_RETRIES` and `IBEX_LLM_GGUF` override
/// it. Without a URL the embedded model runs (`gguf`, else the default fetched from PyPI).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Base URL of an OpenAI-compatible server (e.g. `http://127.0.0.1:8080/v1`); without it the embedded model runs.
    pub url: Option<String>,
    /// The model name the server expects.
    pub model: Option<String>,
    /// Sent as `Authorization: Bearer ...`.
    pub api_key: Option<String>,
    /// Limit on one request, in seconds (default 120).
    pub timeout_s: Option<u64>,
    /// Retries after a 429, a 5xx or a refused connection (default 3).
    pub max_retries: Option<u32>,
    /// A GGUF file for the embedded backend instead of the default model.
    pub gguf: Option<PathBuf>,
}

impl GeneratorConfig {
    /// Reads the config file (if any) and applies the environment variables.
    pub fn from_env() -> Result<Self> {
        let file = match std::env::var_os(LLM_CONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(ibex_fetch::ibex_home().join("llm.json")).filter(|p| p.is_file()),
        };
        let mut config = match file {
            Some(path) => Self::from_file(&path)?,
            None => GeneratorConfig::default(),
        };
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(url) = var("IBEX_LLM_URL") {
            config.url = Some(url);
        }
        if let Some(model) = var("IBEX_LLM_MODEL") {
            config.model = Some(model);
        }
        if let Some(key) = var("IBEX_LLM_API_KEY") {
            config.api_key = Some(key);
        }
        if let Some(gguf) = var("IBEX_LLM_GGUF") {
            config.gguf = Some(PathBuf::from(gguf));
        }
        if let Some(t) = var("IBEX_LLM_TIMEOUT_S") {
            config.timeout_s = Some(t.trim().parse().map_err(|_| {
                GeneratorError::Config(format!(
                    "IBEX_LLM_TIMEOUT_S must be whole seconds, got `{t}`"
                ))
            })?);
        }
        if let Some(r) = var("IBEX_LLM_MAX_RETRIES") {
            config.max_retries = Some(r.trim().parse().map_err(|_| {
                GeneratorError::Config(format!("IBEX_LLM_MAX_RETRIES must be a count, got `{r}`"))
            })?);
        }
        Ok(config)
    }

    /// Reads a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GeneratorError::Config(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| GeneratorError::Config(format!("{}: {e}", path.display())))
    }

    /// Builds the configured generator (loading or fetching the embedded model when no URL is
    /// set).
    pub fn build(&self) -> Result<Arc<dyn Generator>> {
        match &self.url {
            Some(url) => {
                let model = self.model.clone().ok_or_else(|| {
                    GeneratorError::Config(format!(
                        "IBEX_LLM_URL is {url} but no model is named: set IBEX_LLM_MODEL"
                    ))
                })?;
                let mut options = HttpOptions::new(url.clone(), model);
                options.api_key = self.api_key.clone();
                if let Some(t) = self.timeout_s {
                    options.timeout = Duration::from_secs(t.max(1));
                }
                if let Some(r) = self.max_retries {
                    options.max_retries = r;
                }
                Ok(Arc::new(HttpGenerator::new(options)?))
            }
            None => Ok(Arc::new(match &self.gguf {
                Some(path) => EmbeddedGenerator::load(path)?,
                None => EmbeddedGenerator::load_default()?,
            })),
        }
    }
}
