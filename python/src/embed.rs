//! `NativeEmbedder` and the context compressor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ibex::compressor::{IbParams, Passage};
use ibex::{Compressor, Embedder, TextKind};
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use crate::errors::{invalid, to_py};

/// Loaded models by (model spec, device name).
type ModelCache = Mutex<HashMap<(String, String), Arc<dyn Embedder>>>;

/// Models loaded by `compress`, by (model, device): loading one takes a second or more, a
/// compression a few milliseconds.
fn cached_model(spec: &str, device: &str) -> PyResult<Arc<dyn Embedder>> {
    static MODELS: OnceLock<ModelCache> = OnceLock::new();
    let key = (spec.to_string(), device.to_string());
    let models = MODELS.get_or_init(Default::default);
    if let Some(model) = models.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(model);
    }
    let model =
        ibex::embedder::load_model_on(spec, &crate::parse_device(device)?).map_err(to_py)?;
    if let Ok(mut cache) = models.lock() {
        cache.insert(key, model.clone());
    }
    Ok(model)
}

/// An embedding model.
#[pyclass(frozen, module = "ibex._native")]
pub struct NativeEmbedder {
    model: Arc<dyn Embedder>,
}

#[pymethods]
impl NativeEmbedder {
    /// Loads `model` (default: all-MiniLM-L6-v2, fetched on first use) on `device`.
    #[new]
    #[pyo3(signature = (model=None, device="auto"))]
    fn new(py: Python<'_>, model: Option<String>, device: &str) -> PyResult<Self> {
        let device = crate::parse_device(device)?;
        let spec = model.unwrap_or_else(|| ibex::DEFAULT_MODEL_ID.to_string());
        let model = py
            .detach(move || ibex::embedder::load_model_on(&spec, &device))
            .map_err(to_py)?;
        Ok(NativeEmbedder { model })
    }

    /// The model's id, as index manifests record it.
    #[getter]
    fn model_id(&self) -> String {
        self.model.model_id().to_string()
    }

    /// Length of the vectors.
    #[getter]
    fn dimension(&self) -> usize {
        self.model.dimension()
    }

    /// Embeds `texts` (as queries when `query`); returns the vectors as little-endian `float32`
    /// bytes, row after row, for NumPy to view as an (n, dimension) array.
    #[pyo3(signature = (texts, query=false))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        query: bool,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let kind = if query {
            TextKind::Query
        } else {
            TextKind::Document
        };
        let model = self.model.clone();
        let bytes = py
            .detach(move || -> ibex::embedder::Result<Vec<u8>> {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let vectors = model.embed(&refs, kind)?;
                let mut bytes = Vec::with_capacity(vectors.len() * model.dimension() * 4);
                for vector in &vectors {
                    for value in vector {
                        bytes.extend_from_slice(&value.to_le_bytes());
                    }
                }
                Ok(bytes)
            })
            .map_err(to_py)?;
        Ok(PyByteArray::new(py, &bytes))
    }

    /// Cuts documents (a JSON array) into chunks of `chunk_tokens` tokens sharing `overlap` and
    /// embeds them, as an index would: returns, per document, its spans as JSON and its chunk
    /// vectors as little-endian `float32` bytes (what a shard writer takes).
    fn embed_documents(
        &self,
        py: Python<'_>,
        documents: &str,
        chunk_tokens: usize,
        overlap: usize,
    ) -> PyResult<Vec<(String, Py<pyo3::types::PyBytes>)>> {
        crate::shard::embed_documents(py, self.model.clone(), documents, chunk_tokens, overlap)
    }
}

/// Compresses `passages` (a JSON array of `{"doc_id", "text", "offset"}`) for `question` with the
/// information-bottleneck selector; returns the compression as JSON.
#[pyfunction]
#[pyo3(signature = (question, passages, budget=None, model=None, device="auto"))]
pub fn compress_json(
    py: Python<'_>,
    question: String,
    passages: &str,
    budget: Option<usize>,
    model: Option<String>,
    device: &str,
) -> PyResult<String> {
    let values: Vec<serde_json::Value> =
        serde_json::from_str(passages).map_err(|e| invalid(format!("passages: {e}")))?;
    let mut list = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let text = value
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or_else(|| invalid(format!("passage {i} has no \"text\"")))?;
        list.push(Passage {
            doc_id: value
                .get("doc_id")
                .and_then(|d| d.as_str())
                .map_or_else(|| format!("passage-{i}"), str::to_string),
            text: text.to_string(),
            offset: value.get("offset").and_then(|o| o.as_u64()).unwrap_or(0) as usize,
        });
    }
    let spec = model.unwrap_or_else(|| ibex::DEFAULT_MODEL_ID.to_string());
    let embedder = cached_model(&spec, device)?;
    let compression = py
        .detach(move || {
            ibex::compress::default_compressor(embedder, IbParams::default())
                .compress(&question, &list, budget)
        })
        .map_err(to_py)?;
    serde_json::to_string(&compression).map_err(|e| to_py(ibex::IbexError::Output(e.to_string())))
}
