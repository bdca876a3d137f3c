//! BERT encoder forward pass for the CPU, written for throughput (BENCHMARKS.md, "Embedding
//! throughput"): candle's generic tensor path spent most of its time outside matrix products
//! (scalar erf and exp, an allocation and a thread-pool barrier per operation, padded rows).
//!
//! - Sequences are packed one after another with no padding: the dense layers run over exactly
//!   the batch's real tokens, and attention runs per (sequence, head), so there is no mask.
//! - One fused QKV product per layer; every product goes straight to the gemm crate (AVX-512
//!   kernels when the CPU has them) on weights transposed once at load.
//! - Bias + GELU, softmax, and residual + layer norm are single fused passes, with a
//!   branch-free exp the compiler vectorizes.
//!
//! It computes the same function as candle-transformers' `BertModel` (checked by the reference
//! embeddings test at cosine >= 0.9999 and by `bert_cpu_matches_candle` in tests); models it
//! does not cover (RoBERTa position offsets, non-erf activations, GPU devices) stay on candle.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::error::{EmbedderError, Result};

/// One encoder layer's weights, matrices stored `[in, out]` row-major.
struct Layer {
    qkv: Vec<f32>,
    qkv_bias: Vec<f32>,
    out: Vec<f32>,
    out_bias: Vec<f32>,
    attention_norm: (Vec<f32>, Vec<f32>),
    up: Vec<f32>,
    up_bias: Vec<f32>,
    down: Vec<f32>,
    down_bias: Vec<f32>,
    output_norm: (Vec<f32>, Vec<f32>),
}

/// A BERT encoder held as plain `f32` buffers.
pub struct CpuBert {
    hidden: usize,
    heads: usize,
    intermediate: usize,
    eps: f32,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    max_positions: usize,
}

/// Whether the model in `config` (a parsed config.json) is one [`CpuBert`] computes exactly.
pub fn supports(config: &serde_json::Value) -> bool {
    let text = |key: &str| config.get(key).and_then(|v| v.as_str());
    text("model_type").unwrap_or("bert") == "bert"
        && text("hidden_act").unwrap_or("gelu") == "gelu"
        && text("position_embedding_type").unwrap_or("absolute") == "absolute"
}

impl CpuBert {
    /// Loads the weights of `weights` (safetensors) for the model described by `config`.
    pub fn load(weights: &Path, config: &serde_json::Value) -> Result<CpuBert> {
        let number = |key: &str| -> Result<usize> {
            config
                .get(key)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| EmbedderError::InvalidModelFile {
                    path: weights.with_file_name("config.json"),
                    reason: format!("no numeric \"{key}\""),
                })
        };
        let hidden = number("hidden_size")?;
        let heads = number("num_attention_heads")?;
        let intermediate = number("intermediate_size")?;
        let layer_count = number("num_hidden_layers")?;
        let eps = config
            .get("layer_norm_eps")
            .and_then(|v| v.as_f64())
            .unwrap_or(1e-12) as f32;
        if heads == 0 || hidden % heads != 0 {
            return Err(EmbedderError::InvalidModelFile {
                path: weights.with_file_name("config.json"),
                reason: format!("hidden_size {hidden} is not a multiple of {heads} heads"),
            });
        }
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load(weights, &Device::Cpu)?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let tensor = tensors
                .get(name)
                .or_else(|| tensors.get(&format!("bert.{name}")))
                .ok_or_else(|| EmbedderError::InvalidModelFile {
                    path: weights.to_path_buf(),
                    reason: format!("no tensor {name}"),
                })?;
            if tensor.dims() != shape {
                return Err(EmbedderError::InvalidModelFile {
                    path: weights.to_path_buf(),
                    reason: format!("{name} has shape {:?}, expected {shape:?}", tensor.dims()),
                });
            }
            Ok(tensor
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        // `[out, in]` (PyTorch's Linear) to `[in, out]`.
        let transposed = |name: &str, out: usize, input: usize| -> Result<Vec<f32>> {
            let w = get(name, &[out, input])?;
            let mut t = vec![0f32; out * input];
            for o in 0..out {
                for i in 0..input {
                    t[i * out + o] = w[o * input + i];
                }
            }
            Ok(t)
        };
        let norm = |prefix: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                get(&format!("{prefix}.weight"), &[hidden])?,
                get(&format!("{prefix}.bias"), &[hidden])?,
            ))
        };
        let vocab = number("vocab_size")?;
        let max_positions = number("max_position_embeddings")?;
        let types = number("type_vocab_size").unwrap_or(2);
        let mut layers = Vec::with_capacity(layer_count);
        for l in 0..layer_count {
            let p = format!("encoder.layer.{l}");
            let (q, k, v) = (
                transposed(&format!("{p}.attention.self.query.weight"), hidden, hidden)?,
                transposed(&format!("{p}.attention.self.key.weight"), hidden, hidden)?,
                transposed(&format!("{p}.attention.self.value.weight"), hidden, hidden)?,
            );
            // [in, 3 * hidden]: each input row holds its q, k and v outputs side by side.
            let mut qkv = Vec::with_capacity(3 * hidden * hidden);
            for i in 0..hidden {
                for m in [&q, &k, &v] {
                    qkv.extend_from_slice(&m[i * hidden..(i + 1) * hidden]);
                }
            }
            let mut qkv_bias = get(&format!("{p}.attention.self.query.bias"), &[hidden])?;
            qkv_bias.extend(get(&format!("{p}.attention.self.key.bias"), &[hidden])?);
            qkv_bias.extend(get(&format!("{p}.attention.self.value.bias"), &[hidden])?);
            layers.push(Layer {
                qkv,
                qkv_bias,
                out: transposed(
                    &format!("{p}.attention.output.dense.weight"),
                    hidden,
                    hidden,
                )?,
                out_bias: get(&format!("{p}.attention.output.dense.bias"), &[hidden])?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: transposed(
                    &format!("{p}.intermediate.dense.weight"),
                    intermediate,
                    hidden,
                )?,
                up_bias: get(&format!("{p}.intermediate.dense.bias"), &[intermediate])?,
                down: transposed(&format!("{p}.output.dense.weight"), hidden, intermediate)?,
                down_bias: get(&format!("{p}.output.dense.bias"), &[hidden])?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(CpuBert {
            hidden,
            heads,
            intermediate,
            eps,
            word: get("embeddings.word_embeddings.weight", &[vocab, hidden])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[max_positions, hidden],
            )?,
            token_type: get("embeddings.token_type_embeddings.weight", &[types, hidden])?,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            max_positions,
        })
    }

    /// The last hidden states of `sequences` (token ids, special tokens included), packed:
    /// row `offsets[s] + i` is token `i` of sequence `s`. Returns the rows and the offsets.
    pub fn forward(&self, sequences: &[&[u32]]) -> Result<(Vec<f32>, Vec<usize>)> {
        let h = self.hidden;
        let mut offsets = Vec::with_capacity(sequences.len() + 1);
        offsets.push(0);
        for s in sequences {
            if s.len() > self.max_positions {
                return Err(EmbedderError::Tokenizer(format!(
                    "a text of {} tokens exceeds the model's {} positions",
                    s.len(),
                    self.max_positions
                )));
            }
            offsets.push(offsets.last().copied().unwrap_or(0) + s.len());
        }
        let tokens = offsets.last().copied().unwrap_or(0);
        let vocab = self.word.len() / h;
        let mut x = vec![0f32; tokens * h];
        for (s, ids) in sequences.iter().enumerate() {
            for (p, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    return Err(EmbedderError::Tokenizer(format!(
                        "token id {id} outside the vocabulary"
                    )));
                }
                let row = &mut x[(offsets[s] + p) * h..(offsets[s] + p + 1) * h];
                let (w, pos, ty) = (
                    &self.word[id * h..(id + 1) * h],
                    &self.position[p * h..(p + 1) * h],
                    &self.token_type[..h],
                );
                for i in 0..h {
                    row[i] = w[i] + pos[i] + ty[i];
                }
            }
        }
        layer_norm(&mut x, None, &self.embedding_norm, self.eps, h);

        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                qkv,
                context,
                projected,
                up,
            } = scratch;
            // Reused across batches: fresh buffers of this size would be mapped, zeroed by the
            // kernel and unmapped on every batch.
            for (buffer, len) in [
                (&mut *qkv, tokens * 3 * h),
                (&mut *context, tokens * h),
                (&mut *projected, tokens * h),
                (&mut *up, tokens * self.intermediate),
            ] {
                buffer.resize(len, 0.0);
            }
            self.layers_forward(&mut x, &offsets, qkv, context, projected, up);
        });
        Ok((x, offsets))
    }

    fn layers_forward(
        &self,
        x: &mut [f32],
        offsets: &[usize],
        qkv: &mut [f32],
        context: &mut [f32],
        projected: &mut [f32],
        up: &mut [f32],
    ) {
        let h = self.hidden;
        let tokens = x.len() / h;
        for layer in &self.layers {
            matmul(x, &layer.qkv, &layer.qkv_bias, qkv, tokens, h, 3 * h);
            self.attention(qkv, offsets, context);
            matmul(
                context,
                &layer.out,
                &layer.out_bias,
                projected,
                tokens,
                h,
                h,
            );
            layer_norm(x, Some(projected), &layer.attention_norm, self.eps, h);
            matmul(
                x,
                &layer.up,
                &layer.up_bias,
                up,
                tokens,
                h,
                self.intermediate,
            );
            up.par_chunks_mut(4096).for_each(gelu_erf);
            matmul(
                up,
                &layer.down,
                &layer.down_bias,
                projected,
                tokens,
                self.intermediate,
                h,
            );
            layer_norm(x, Some(projected), &layer.output_norm, self.eps, h);
        }
    }

    /// Scaled dot-product attention of every sequence and head, into `context` (`[tokens, h]`).
    fn attention(&self, qkv: &[f32], offsets: &[usize], context: &mut [f32]) {
        let h = self.hidden;
        let head = h / self.heads;
        let scale = 1.0 / (head as f32).sqrt();
        let stride = 3 * h;
        // Each sequence writes its own rows of `context`; split it accordingly.
        let mut parts: Vec<(usize, &mut [f32])> = Vec::with_capacity(offsets.len());
        let mut rest = context;
        for s in 0..offsets.len() - 1 {
            let (part, tail) = rest.split_at_mut((offsets[s + 1] - offsets[s]) * h);
            parts.push((offsets[s], part));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(start, out)| {
            let len = out.len() / h;
            SCORES.with_borrow_mut(|scores| {
                scores.resize(len * len, 0.0);
                for hd in 0..self.heads {
                    let q = qkv[start * stride + hd * head..].as_ptr();
                    let k = qkv[start * stride + h + hd * head..].as_ptr();
                    let v = qkv[start * stride + 2 * h + hd * head..].as_ptr();
                    // SAFETY: q, k and v point at `len` rows of `head` values with row stride
                    // `stride` inside `qkv`; `scores` is len x len; the output block is `len` rows
                    // of `head` values with row stride `h` inside `out`.
                    unsafe {
                        gemm::gemm(
                            len,
                            len,
                            head,
                            scores.as_mut_ptr(),
                            1,
                            len as isize,
                            false,
                            q,
                            1,
                            stride as isize,
                            k,
                            stride as isize,
                            1,
                            0.0,
                            scale,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                    for row in scores.chunks_exact_mut(len) {
                        softmax(row);
                    }
                    // SAFETY: as above.
                    unsafe {
                        gemm::gemm(
                            len,
                            head,
                            len,
                            out[hd * head..].as_mut_ptr(),
                            1,
                            h as isize,
                            false,
                            scores.as_ptr(),
                            1,
                            len as isize,
                            v,
                            1,
                            stride as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                }
            });
        });
    }
}

/// Per-thread work buffers of the forward pass.
#[derive(Default)]
struct Scratch {
    qkv: Vec<f32>,
    context: Vec<f32>,
    projected: Vec<f32>,
    up: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
    /// Attention scores of one (sequence, head), per worker thread.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out[m, n] = a[m, k] · b[k, n] + bias[n]`, all row-major.
fn matmul(a: &[f32], b: &[f32], bias: &[f32], out: &mut [f32], m: usize, k: usize, n: usize) {
    if m == 0 {
        return;
    }
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    // SAFETY: a is m x k, b is k x n, out is m x n, all row-major and of those exact lengths.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
}

/// `x = LayerNorm(x + residual)` per row of `width`.
fn layer_norm(
    x: &mut [f32],
    residual: Option<&[f32]>,
    (gamma, beta): &(Vec<f32>, Vec<f32>),
    eps: f32,
    width: usize,
) {
    let rows_per_task = (16384 / width).max(1);
    x.par_chunks_mut(width * rows_per_task)
        .enumerate()
        .for_each(|(task, block)| {
            for (r, row) in block.chunks_exact_mut(width).enumerate() {
                if let Some(residual) = residual {
                    let start = (task * rows_per_task + r) * width;
                    for (v, add) in row.iter_mut().zip(&residual[start..start + width]) {
                        *v += add;
                    }
                }
                let mean = row.iter().sum::<f32>() / width as f32;
                let variance =
                    row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
                let inverse = 1.0 / (variance + eps).sqrt();
                for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                    *v = (*v - mean) * inverse * g + b;
                }
            }
        });
}

/// e^x for x in [-87, 88], branch-free so loops over it vectorize: 2^n · p(r) with n the
/// nearest integer to x·log2(e) and a degree-6 polynomial on the remainder (relative error
/// about 2e-7, like libm's expf in f32).
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by the 1.5·2^23 trick (SSE2 has no vector round).
    let shifted = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = shifted - 12_582_912.0;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    // Taylor series to degree 6: |r| <= ln(2)/2 leaves a relative error below 1.3e-7.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let bits = ((shifted.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32;
    p * f32::from_bits(bits)
}

/// Runs `body` compiled for AVX-512 when the CPU has it (the loops in these element-wise passes
/// then run 16 lanes wide instead of SSE2's 4).
macro_rules! with_widest_simd {
    ($name:ident, $body:ident, $arg:ident: $ty:ty) => {
        fn $name($arg: $ty) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn wide($arg: $ty) {
                    $body($arg)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above).
                    return unsafe { wide($arg) };
                }
            }
            $body($arg)
        }
    };
}

with_widest_simd!(softmax, softmax_body, row: &mut [f32]);
with_widest_simd!(gelu_erf, gelu_erf_body, values: &mut [f32]);

/// Softmax of one row, in place. Max and sum keep 16 partial results, so they vectorize (a
/// single running float sum cannot be reordered by the compiler).
#[inline(always)]
fn softmax_body(row: &mut [f32]) {
    let mut maxes = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for chunk in &mut chunks {
        for i in 0..16 {
            maxes[i] = if chunk[i] > maxes[i] {
                chunk[i]
            } else {
                maxes[i]
            };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&maxes)
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    for v in row.iter_mut() {
        *v = fast_exp(*v - max);
    }
    let mut sums = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for chunk in &mut chunks {
        for i in 0..16 {
            sums[i] += chunk[i];
        }
    }
    let sum: f32 = sums.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inverse = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inverse);
}

/// GELU with the exact erf (BERT's "gelu"), erf by Abramowitz and Stegun 7.1.26 (absolute error
/// below 1.5e-7, the f32 resolution at 1).
#[inline(always)]
fn gelu_erf_body(values: &mut [f32]) {
    for v in values.iter_mut() {
        let x = *v * std::f32::consts::FRAC_1_SQRT_2;
        let a = x.abs();
        let t = 1.0 / (1.0 + 0.327_591_1 * a);
        let poly = t
            * (0.254_829_6
                + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
        let erf_abs = 1.0 - poly * fast_exp(-a * a);
        let erf = erf_abs.copysign(x);
        *v = 0.5 * *v * (1.0 + erf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std() {
        let mut worst = 0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            let relative = (fast_exp(x) - x.exp()).abs() / x.exp();
            worst = worst.max(relative);
            x += 0.0137;
        }
        assert!(worst < 1e-6, "relative error {worst}");
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let xs: Vec<f32> = (-600..600).map(|i| i as f32 / 100.0).collect();
        let mut ours = xs.clone();
        gelu_erf(&mut ours);
        for (x, g) in xs.iter().zip(&ours) {
            let exact = 0.5 * *x as f64 * (1.0 + libm::erf(*x as f64 / std::f64::consts::SQRT_2));
            assert!(
                (*g as f64 - exact).abs() < 2e-6,
                "gelu({x}) = {g}, expected {exact}"
            );
        }
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut row = vec![1.0, 2.0, 3.0, -50.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[2] > row[1] && row[1] > row[0]);
    }
}
