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
//! - Attention runs per (sequence, head) as two gemm calls around a softmax. (A fused AVX-512
//!   kernel without gemm calls measured within noise of this path alone, BENCHMARKS.md, and was
//!   removed with its unsafe code; fused attention may return with a gain measured on every CPU
//!   class.)
//! - A call with many batches runs them side by side, one per thread ([`Split::OneThread`]);
//!   a single batch splits each operation over the threads instead.
//!
//! It computes the same function as candle-transformers' `BertModel` (checked against
//! sentence-transformers' vectors at cosine >= 0.9999 in tests/embedding_reference.rs, alone, in
//! batches and side by side);
//! models it does not cover (RoBERTa position offsets, non-erf activations, GPU devices) stay on
//! candle.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::bf16_matmul::{self, Bf16Weights};
use crate::error::{EmbedderError, Result};
use crate::panel_matmul::{self, PanelWeights};

/// One encoder layer's weights.
struct Layer {
    qkv: Weights,
    qkv_bias: Vec<f32>,
    out: Weights,
    out_bias: Vec<f32>,
    attention_norm: (Vec<f32>, Vec<f32>),
    up: Weights,
    up_bias: Vec<f32>,
    down: Weights,
    down_bias: Vec<f32>,
    output_norm: (Vec<f32>, Vec<f32>),
}

/// A weight matrix `[in, out]`, held twice: row-major for gemm (products with many rows), and
/// as column panels for products with few ([`crate::panel_matmul`]); at bf16 precision, only as
/// bf16 panels ([`crate::bf16_matmul`]), which take every product.
struct Weights {
    matrix: Vec<f32>,
    panels: Option<PanelWeights>,
    bf16: Option<Bf16Weights>,
    input: usize,
    output: usize,
}

impl Weights {
    fn new(matrix: Vec<f32>, input: usize, output: usize, precision: Precision) -> Weights {
        let (panels, bf16, matrix) = match precision {
            Precision::F32 => (
                Some(PanelWeights::pack(&matrix, input, output)),
                None,
                matrix,
            ),
            Precision::Bf16 => (
                None,
                Some(Bf16Weights::pack(&matrix, input, output)),
                Vec::new(),
            ),
        };
        Weights {
            matrix,
            panels,
            bf16,
            input,
            output,
        }
    }
}

/// The precision of the encoder's dense products (attention and the element-wise passes stay
/// float32 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Float32 throughout: the default.
    F32,
    /// Weights and activations rounded to bfloat16, sums in float32 (AVX512-BF16 only).
    Bf16,
}

impl Precision {
    /// The precision `IBEX_EMBED_PRECISION` asks for (`f32`, the default, or `bf16`), or why it
    /// cannot be had on this CPU.
    pub fn from_env() -> Result<Precision> {
        let value = std::env::var("IBEX_EMBED_PRECISION").unwrap_or_default();
        match value.trim() {
            "" | "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => {
                if crate::bf16_matmul::supported()
                    && crate::cpu::simd_level() == crate::cpu::SimdLevel::Avx512
                {
                    Ok(Precision::Bf16)
                } else {
                    Err(EmbedderError::Device(format!(
                        "IBEX_EMBED_PRECISION=bf16 needs a CPU with AVX-512F and AVX512-BF16 \
                         (and IBEX_CPU unset or avx512); this one runs the {} path: unset it \
                         to embed at f32",
                        crate::cpu::simd_level().as_str()
                    )))
                }
            }
            other => Err(EmbedderError::Device(format!(
                "IBEX_EMBED_PRECISION={other} is not a precision: use f32 (the default) or bf16"
            ))),
        }
    }
}

/// How one forward pass uses rayon's thread pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Every operation is split over the pool's threads: one batch at a time, lowest latency.
    AcrossThreads,
    /// The whole pass runs on the calling thread, so that several batches can run side by side
    /// (one per thread) with no barrier between operations: the higher throughput when there are
    /// batches enough for every thread.
    OneThread,
}

impl Split {
    fn parallelism(self) -> Parallelism {
        match self {
            Split::AcrossThreads => Parallelism::Rayon(rayon::current_num_threads()),
            Split::OneThread => Parallelism::None,
        }
    }

    /// Runs `work` on every chunk of `chunk` values of `data`, split over the pool or not.
    fn for_each_chunk<F>(self, data: &mut [f32], chunk: usize, work: F)
    where
        F: Fn(usize, &mut [f32]) + Send + Sync,
    {
        match self {
            Split::AcrossThreads => data
                .par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, part)| work(i, part)),
            Split::OneThread => data
                .chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, part)| work(i, part)),
        }
    }
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
        let precision = Precision::from_env()?;
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
                qkv: Weights::new(qkv, hidden, 3 * hidden, precision),
                qkv_bias,
                out: Weights::new(
                    transposed(
                        &format!("{p}.attention.output.dense.weight"),
                        hidden,
                        hidden,
                    )?,
                    hidden,
                    hidden,
                    precision,
                ),
                out_bias: get(&format!("{p}.attention.output.dense.bias"), &[hidden])?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: Weights::new(
                    transposed(
                        &format!("{p}.intermediate.dense.weight"),
                        intermediate,
                        hidden,
                    )?,
                    hidden,
                    intermediate,
                    precision,
                ),
                up_bias: get(&format!("{p}.intermediate.dense.bias"), &[intermediate])?,
                down: Weights::new(
                    transposed(&format!("{p}.output.dense.weight"), hidden, intermediate)?,
                    intermediate,
                    hidden,
                    precision,
                ),
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
    pub fn forward(&self, sequences: &[&[u32]], split: Split) -> Result<(Vec<f32>, Vec<usize>)> {
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
        layer_norm(&mut x, None, &self.embedding_norm, self.eps, h, split);

        // Reused across batches: fresh buffers of this size would be mapped, zeroed by the
        // kernel and unmapped on every batch. Taken out of the thread's slot for the pass, not
        // borrowed from it: while this thread waits on one of the pass's split operations, rayon
        // may run another caller's pass on it, which then finds the slot empty and makes its own.
        let mut scratch = SCRATCH.take();
        let Scratch {
            qkv,
            context,
            projected,
            up,
        } = &mut scratch;
        for (buffer, len) in [
            (&mut *qkv, tokens * 3 * h),
            (&mut *context, tokens * h),
            (&mut *projected, tokens * h),
            (&mut *up, tokens * self.intermediate),
        ] {
            buffer.resize(len, 0.0);
        }
        self.layers_forward(&mut x, &offsets, qkv, context, projected, up, split);
        SCRATCH.set(scratch);
        Ok((x, offsets))
    }

    #[allow(clippy::too_many_arguments)]
    fn layers_forward(
        &self,
        x: &mut [f32],
        offsets: &[usize],
        qkv: &mut [f32],
        context: &mut [f32],
        projected: &mut [f32],
        up: &mut [f32],
        split: Split,
    ) {
        let h = self.hidden;
        let tokens = x.len() / h;
        for layer in &self.layers {
            matmul(x, &layer.qkv, &layer.qkv_bias, qkv, tokens, split);
            self.attention(qkv, offsets, context, split);
            matmul(
                context,
                &layer.out,
                &layer.out_bias,
                projected,
                tokens,
                split,
            );
            layer_norm(
                x,
                Some(projected),
                &layer.attention_norm,
                self.eps,
                h,
                split,
            );
            matmul(x, &layer.up, &layer.up_bias, up, tokens, split);
            split.for_each_chunk(up, 4096, |_, part| gelu_erf(part));
            matmul(up, &layer.down, &layer.down_bias, projected, tokens, split);
            layer_norm(x, Some(projected), &layer.output_norm, self.eps, h, split);
        }
    }

    /// Scaled dot-product attention of every sequence and head, into `context` (`[tokens, h]`).
    fn attention(&self, qkv: &[f32], offsets: &[usize], context: &mut [f32], split: Split) {
        let h = self.hidden;
        let head = h / self.heads;
        let stride = 3 * h;
        // Each sequence writes its own rows of `context`; split it accordingly.
        let mut parts: Vec<(usize, &mut [f32])> = Vec::with_capacity(offsets.len());
        let mut rest = context;
        for s in 0..offsets.len() - 1 {
            let (part, tail) = rest.split_at_mut((offsets[s + 1] - offsets[s]) * h);
            parts.push((offsets[s], part));
            rest = tail;
        }
        let sequence = |(start, out): (usize, &mut [f32])| {
            let len = out.len() / h;
            let rows = &qkv[start * stride..(start + len) * stride];
            ATTENTION_SCRATCH.with_borrow_mut(|scratch| {
                for hd in 0..self.heads {
                    let job = HeadAttention {
                        qkv: rows,
                        stride,
                        hidden: h,
                        offset: hd * head,
                        len,
                        out: &mut out[..],
                        scratch: &mut *scratch,
                    };
                    head_attention(job, head);
                }
            });
        };
        match split {
            Split::AcrossThreads => parts.into_par_iter().for_each(sequence),
            Split::OneThread => parts.into_iter().for_each(sequence),
        }
    }
}

/// One (sequence, head) of attention: `len` rows of `qkv` (`[q | k | v]`, row stride `stride`,
/// each part `hidden` wide), the head's columns starting at `offset` in each part; the result goes
/// to the same columns of `out` (row stride `hidden`).
struct HeadAttention<'a> {
    qkv: &'a [f32],
    stride: usize,
    hidden: usize,
    offset: usize,
    len: usize,
    out: &'a mut [f32],
    scratch: &'a mut AttentionScratch,
}

/// Per-thread buffers of [`head_attention`].
#[derive(Default)]
struct AttentionScratch {
    /// Scores of all query rows against all keys (`[len, len]`).
    scores: Vec<f32>,
}

/// Attention of one (sequence, head).
fn head_attention(mut job: HeadAttention<'_>, head: usize) {
    gemm_attention(&mut job, head);
}

/// Attention of one head of any size: scores by one gemm call, softmax, output by another.
fn gemm_attention(job: &mut HeadAttention<'_>, head: usize) {
    let HeadAttention {
        qkv,
        stride,
        hidden,
        offset,
        len,
        ref mut out,
        ref mut scratch,
    } = *job;
    let scale = 1.0 / (head as f32).sqrt();
    let scores = &mut scratch.scores;
    scores.resize(len * len, 0.0);
    let q = qkv[offset..].as_ptr();
    let k = qkv[hidden + offset..].as_ptr();
    let v = qkv[2 * hidden + offset..].as_ptr();
    // SAFETY: q, k and v point at `len` rows of `head` values with row stride `stride` inside
    // `qkv`; `scores` is len x len; the output block is `len` rows of `head` values with row
    // stride `hidden` inside `out`.
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
            out[offset..].as_mut_ptr(),
            1,
            hidden as isize,
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
    /// Attention buffers, per worker thread.
    static ATTENTION_SCRATCH: std::cell::RefCell<AttentionScratch> =
        std::cell::RefCell::new(AttentionScratch::default());
}

/// `out[m, n] = a[m, k] · w[k, n] + bias[n]`, all row-major: through the weights' panels for
/// few rows, through gemm for many.
fn matmul(a: &[f32], w: &Weights, bias: &[f32], out: &mut [f32], m: usize, split: Split) {
    let (k, n) = (w.input, w.output);
    if m == 0 {
        return;
    }
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    let parallel = split == Split::AcrossThreads;
    if let Some(bf16) = &w.bf16 {
        bf16_matmul::matmul_add(a, m, bf16, out, parallel);
        return;
    }
    if let Some(panels) = w.panels.as_ref().filter(|_| m <= panel_matmul::MAX_ROWS) {
        panel_matmul::matmul_add(a, m, panels, out, parallel, crate::cpu::simd_level());
        return;
    }
    assert!(a.len() == m * k && w.matrix.len() == k * n && out.len() == m * n);
    // SAFETY: a is m x k, w.matrix is k x n, out is m x n, all row-major and of those exact
    // lengths (asserted above).
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
            w.matrix.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            split.parallelism(),
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
    split: Split,
) {
    let rows_per_task = (16384 / width).max(1);
    split.for_each_chunk(x, width * rows_per_task, |task, block| {
        let start = task * rows_per_task * width;
        let residual = residual.map(|r| &r[start..start + block.len()]);
        layer_norm_rows(block, residual, gamma, beta, eps);
    });
}

/// [`layer_norm`] of consecutive rows (`gamma.len()` wide). Sums keep 16 partial results so they
/// vectorize.
#[inline(always)]
fn layer_norm_rows_body(
    rows: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let width = gamma.len();
    for (r, row) in rows.chunks_exact_mut(width).enumerate() {
        if let Some(residual) = residual {
            for (v, add) in row.iter_mut().zip(&residual[r * width..(r + 1) * width]) {
                *v += add;
            }
        }
        let mean = lane_sum(row, |v| v) / width as f32;
        let variance = lane_sum(row, |v| (v - mean) * (v - mean)) / width as f32;
        let inverse = 1.0 / (variance + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inverse * g + b;
        }
    }
}

/// The sum of `f(v)` over `values`, in 16 partial sums (a single running float sum cannot be
/// reordered, so it would not vectorize).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut sums = [0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for i in 0..16 {
            sums[i] += f(chunk[i]);
        }
    }
    sums.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
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

ibex_cpu::with_widest_simd!(softmax, softmax_at, softmax_body, row: &mut [f32]);
ibex_cpu::with_widest_simd!(gelu_erf, gelu_erf_at, gelu_erf_body, values: &mut [f32]);
ibex_cpu::with_widest_simd!(
    layer_norm_rows,
    layer_norm_rows_at,
    layer_norm_rows_body,
    rows: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32
);

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

    /// Each SIMD path this CPU can take computes the baseline path's values (to rounding: the
    /// partial sums are added in another order).
    #[test]
    fn every_simd_path_matches_the_baseline() {
        use crate::cpu::SimdLevel;
        let input: Vec<f32> = (0..(384 * 3 + 5))
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0)
            .collect();
        let close = |a: &[f32], b: &[f32], what: &str, level: SimdLevel| {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{what} on {}: value {i} is {x}, the baseline's {y}",
                    level.as_str()
                );
            }
        };
        let mut base_softmax = input.clone();
        softmax_at(SimdLevel::Scalar, &mut base_softmax);
        let mut base_gelu = input.clone();
        gelu_erf_at(SimdLevel::Scalar, &mut base_gelu);
        let gamma: Vec<f32> = (0..384).map(|i| 1.0 + i as f32 / 384.0).collect();
        let beta: Vec<f32> = (0..384).map(|i| i as f32 / 1000.0).collect();
        let residual: Vec<f32> = input[5..].iter().map(|v| v * 0.5).collect();
        let mut base_norm = input[..384 * 3].to_vec();
        layer_norm_rows_at(
            SimdLevel::Scalar,
            &mut base_norm,
            Some(&residual),
            &gamma,
            &beta,
            1e-12,
        );
        for level in SimdLevel::supported() {
            let mut row = input.clone();
            softmax_at(level, &mut row);
            close(&row, &base_softmax, "softmax", level);
            let mut values = input.clone();
            gelu_erf_at(level, &mut values);
            close(&values, &base_gelu, "gelu", level);
            let mut rows = input[..384 * 3].to_vec();
            layer_norm_rows_at(level, &mut rows, Some(&residual), &gamma, &beta, 1e-12);
            close(&rows, &base_norm, "layer norm", level);
        }
    }
}
