//! A tiny model of the embedded LLM's architecture for the LLM-route target: SmolLM2's own GGUF
//! metadata and tokenizer, with two layers of width 64 and seeded random weights.
//!
//! Why: under the fuzzer's instrumentation (coverage counters and AddressSanitizer on every
//! loop) one answer with the real 135M-parameter model took 116 s (a prompt's prefill is tens of
//! GFLOP), so a 600 s run executed its seeds and little else. The target fuzzes what surrounds
//! the model (parsing, limits, retrieval, compression, prompts, grammars, streaming), and the
//! tiny model runs that same code: the same loader, tokenizer, chat template, context limit and
//! decoding loop. What the real weights compute is tested in tests/generation.rs.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// The widths of the tiny model (SmolLM2-135M's: 576 wide, 9 heads of 64, 3 key-value heads,
/// 1,536 feed-forward, 30 layers).
const WIDTH: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FEED_FORWARD: usize = 128;
const LAYERS: usize = 2;

/// Writes the tiny model to `dst`, built from the GGUF at `src` (the default embedded model).
pub fn write_tiny_llm(src: &Path, dst: &Path) -> Result<(), String> {
    let mut reader = std::fs::File::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let content = gguf_file::Content::read(&mut reader).map_err(|e| e.to_string())?;
    let number = |key: &str| -> Result<usize, String> {
        content
            .metadata
            .get(key)
            .ok_or_else(|| format!("the model has no {key}"))?
            .to_u32()
            .map(|v| v as usize)
            .map_err(|e| format!("{key}: {e}"))
    };
    let width = number("llama.embedding_length")?;
    let heads = number("llama.attention.head_count")?;
    let kv_heads = number("llama.attention.head_count_kv")?;
    let feed_forward = match number("llama.feed_forward_length") {
        Ok(n) => n,
        Err(_) => content
            .tensor_infos
            .get("blk.0.ffn_up.weight")
            .and_then(|info| info.shape.dims().first().copied())
            .ok_or("the model has no feed-forward width")?,
    };
    let head_dim = width / heads;
    // Each dimension of the real model's tensors, mapped to the tiny model's (the vocabulary
    // keeps its size: the tokenizer is the real one).
    let shrink = |dim: usize| -> usize {
        if dim == width {
            WIDTH
        } else if dim == kv_heads * head_dim {
            KV_HEADS * (WIDTH / HEADS)
        } else if dim == feed_forward {
            FEED_FORWARD
        } else {
            dim
        }
    };
    let mut metadata: Vec<(String, gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in metadata.iter_mut() {
        let tiny = match key.as_str() {
            "llama.embedding_length" => WIDTH,
            "llama.attention.head_count" => HEADS,
            "llama.attention.head_count_kv" => KV_HEADS,
            "llama.feed_forward_length" => FEED_FORWARD,
            "llama.block_count" => LAYERS,
            "llama.rope.dimension_count" => WIDTH / HEADS,
            _ => continue,
        };
        *value = gguf_file::Value::U32(tiny as u32);
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut names: Vec<&String> = content
        .tensor_infos
        .keys()
        .filter(|name| match name.strip_prefix("blk.") {
            Some(rest) => rest
                .split('.')
                .next()
                .and_then(|layer| layer.parse::<usize>().ok())
                .is_some_and(|layer| layer < LAYERS),
            None => true,
        })
        .collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let dims: Vec<usize> = content.tensor_infos[name]
            .shape
            .dims()
            .iter()
            .map(|&d| shrink(d))
            .collect();
        let count: usize = dims.iter().product();
        let values: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; count]
        } else {
            (0..count)
                .map(|_| {
                    // xorshift64*: uniform in [-0.1, 0.1), the same weights every run.
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
                    (bits as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
                })
                .collect()
        };
        let tensor = Tensor::from_vec(values, dims, &Device::Cpu).map_err(|e| e.to_string())?;
        let tensor = QTensor::quantize(&tensor, GgmlDType::F32).map_err(|e| e.to_string())?;
        tensors.push((name.clone(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut file = std::fs::File::create(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    gguf_file::write(&mut file, &metadata, &tensors).map_err(|e| e.to_string())
}
