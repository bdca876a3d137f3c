//! The embedded LLM's forward pass: a llama-architecture decoder (SmolLM2) over Q8_0 weights,
//! written for the CPU.
//!
//! Why ibex does this itself instead of candle 0.11.1's `quantized_llama` (which the tests keep
//! as the reference this pass must agree with): BENCHMARKS.md measured candle at 0.23-0.37x
//! llama.cpp's prefill and 0.50-0.80x its decode on the same Q8_0 file. Profiled, candle's
//! prefill computes every (token, output) pair as a separate dot product and converts both f16
//! scales each time (58% and 13% of a 418-token prefill), and its attention materializes a mask
//! and copies K/V once per query head (`repeat_kv`). It also returns only the last position's
//! logits, so scoring a continuation of n tokens took n decode steps. Here:
//! - matrix products go through [`crate::q8_matmul`] (weights repacked once at load, a tile of
//!   rows per weight load, AVX-512 VNNI or AVX2 chosen at run time); q/k/v are one product and
//!   so are the MLP's gate and up;
//! - attention runs per query head on its shared key/value head in place (grouped-query heads
//!   read the same cache rows), through the gemm crate, block by block so that a prompt's
//!   causal half is never computed;
//! - [`LogitsFrom`] asks for the logits of every position from a given one: a likelihood is one
//!   prefill.
//!
//! The arithmetic is candle's: activations quantized to Q8_0 before each product, RMS norm,
//! interleaved rotary embeddings with candle's f32 tables, SiLU-gated MLP, softmax in f32. Only
//! the order of f32 additions differs, which the reference test bounds.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use rayon::prelude::*;

use crate::q8_matmul::{self, Q8Weights, BLOCK, GGUF_BLOCK_BYTES};

/// The longest sequence (prompt plus generated tokens) a cache holds. candle's rotary tables
/// had this size, so prompts that fitted before still fit.
pub(crate) const MAX_POSITIONS: usize = 4096;

/// Query rows whose attention scores are computed together (a bounded scores buffer, and the
/// keys after a block's last row are skipped).
const QUERY_BLOCK: usize = 64;

/// Rows per task where the element-wise passes split a prompt across threads.
const ROWS_PER_TASK: usize = 16;

/// The shape of a llama model, from its GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LlamaConfig {
    pub(crate) layers: usize,
    pub(crate) hidden: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) ffn: usize,
    pub(crate) vocab: usize,
    pub(crate) rms_eps: f32,
    pub(crate) rope_base: f32,
    pub(crate) rope_dim: usize,
}

impl LlamaConfig {
    fn from_metadata(content: &Content) -> Result<Self, String> {
        let text = |key: &str| -> Option<String> {
            content
                .metadata
                .get(key)
                .and_then(|v| v.to_string().ok())
                .cloned()
        };
        let architecture = text("general.architecture").unwrap_or_default();
        if architecture != "llama" {
            return Err(format!(
                "the embedded model runs llama-architecture GGUFs; this file's architecture is \
                 '{architecture}'"
            ));
        }
        let number = |key: &str| -> Result<usize, String> {
            let value = content
                .metadata
                .get(key)
                .ok_or_else(|| format!("the GGUF metadata has no {key}"))?;
            value
                .to_u32()
                .map(|n| n as usize)
                .or_else(|_| value.to_u64().map(|n| n as usize))
                .map_err(|_| format!("{key} is not an integer in the GGUF metadata"))
        };
        let real = |key: &str| -> Option<f32> { content.metadata.get(key).and_then(to_f32) };
        if content
            .metadata
            .get("llama.expert_count")
            .and_then(|v| v.to_u32().ok())
            .is_some_and(|n| n > 1)
        {
            return Err("mixture-of-experts llama models are not supported".into());
        }
        let hidden = number("llama.embedding_length")?;
        let heads = number("llama.attention.head_count")?;
        let kv_heads = number("llama.attention.head_count_kv")?;
        if heads == 0
            || kv_heads == 0
            || !hidden.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(format!(
                "{heads} attention heads over {kv_heads} key/value heads do not divide a hidden \
                 size of {hidden}"
            ));
        }
        let head_dim = hidden / heads;
        let rope_dim = number("llama.rope.dimension_count").unwrap_or(head_dim);
        if rope_dim != head_dim {
            return Err(format!(
                "rotary embeddings over {rope_dim} of {head_dim} head dimensions are not supported"
            ));
        }
        if !hidden.is_multiple_of(BLOCK) {
            return Err(format!(
                "a hidden size of {hidden} is not whole Q8_0 blocks of {BLOCK}"
            ));
        }
        Ok(LlamaConfig {
            layers: number("llama.block_count")?,
            hidden,
            heads,
            kv_heads,
            head_dim,
            ffn: number("llama.feed_forward_length")?,
            vocab: 0, // set from the embedding matrix
            rms_eps: real("llama.attention.layer_norm_rms_epsilon")
                .ok_or("the GGUF metadata has no llama.attention.layer_norm_rms_epsilon")?,
            rope_base: real("llama.rope.freq_base").unwrap_or(10_000.0),
            rope_dim,
        })
    }

    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    fn qkv_dim(&self) -> usize {
        self.hidden + 2 * self.kv_dim()
    }
}

fn to_f32(value: &Value) -> Option<f32> {
    value
        .to_f32()
        .ok()
        .or_else(|| value.to_f64().ok().map(|v| v as f32))
}

/// One decoder block's weights.
struct Layer {
    attention_norm: Vec<f32>,
    /// q, k and v stacked: `[hidden + 2 * kv_dim, hidden]`.
    qkv: Q8Weights,
    attention_out: Q8Weights,
    ffn_norm: Vec<f32>,
    /// gate and up stacked: `[2 * ffn, hidden]`.
    gate_up: Q8Weights,
    down: Q8Weights,
}

/// A llama model loaded for [`LlamaModel::forward`].
pub(crate) struct LlamaModel {
    config: LlamaConfig,
    /// `token_embd` in GGUF Q8_0 blocks, one row per token, dequantized as tokens are looked up.
    embeddings: Vec<u8>,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Q8Weights,
    /// `[position][rope_dim / 2]` rotary tables, computed as candle computes them.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogitsFrom {
    /// The last input position only (generation).
    Last,
    /// Every input position from this index of the input on (scoring a continuation).
    Row(usize),
}

/// The keys and values of the positions seen so far, per layer, and the forward pass's working
/// buffers, kept between calls so that a decoded token allocates nothing.
pub(crate) struct KvCache {
    /// `[layer][position * kv_dim + kv_head * head_dim + d]`, rotary embedding applied.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
    scratch: Scratch,
}

/// The activations of one forward pass, `[rows][width]` each; sized (and zeroed) per call.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attention: Vec<f32>,
    per_head: Vec<f32>,
    projected: Vec<f32>,
    gate_up: Vec<f32>,
    gated: Vec<f32>,
    final_normed: Vec<f32>,
}

/// `buffer` as `len` zeros, reusing its memory.
fn zeroed(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.clear();
    buffer.resize(len, 0.0);
    buffer
}

impl KvCache {
    /// Positions held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Forgets every position, keeping the memory.
    pub(crate) fn clear(&mut self) {
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            layer.clear();
        }
        self.len = 0;
    }
}

impl LlamaModel {
    /// Loads a llama-architecture GGUF. Matrices stored in another type than Q8_0 are converted
    /// to Q8_0 once, here (the default model is already Q8_0: see `fetch`).
    pub(crate) fn from_gguf<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
    ) -> Result<Self, String> {
        let mut config = LlamaConfig::from_metadata(content)?;
        let hidden = config.hidden;
        let embedding = q8_matrix(content, reader, "token_embd.weight", None, hidden)?;
        config.vocab = embedding.0;
        let embeddings = embedding.1;
        let output = match content.tensor_infos.contains_key("output.weight") {
            true => {
                let (rows, bytes) =
                    q8_matrix(content, reader, "output.weight", Some(config.vocab), hidden)?;
                Q8Weights::from_gguf_blocks(&bytes, rows, hidden)?
            }
            // Tied embeddings (SmolLM2): the output head is the embedding matrix.
            false => Q8Weights::from_gguf_blocks(&embeddings, config.vocab, hidden)?,
        };
        let kv_dim = config.kv_dim();
        let mut layers = Vec::with_capacity(config.layers);
        for layer in 0..config.layers {
            let name = |part: &str| format!("blk.{layer}.{part}.weight");
            let stacked = |parts: &[(&str, usize)], k: usize, reader: &mut R| {
                let mut bytes = Vec::new();
                let mut rows = 0;
                for &(part, expected) in parts {
                    let (n, b) = q8_matrix(content, reader, &name(part), Some(expected), k)?;
                    rows += n;
                    bytes.extend_from_slice(&b);
                }
                Q8Weights::from_gguf_blocks(&bytes, rows, k)
            };
            let qkv = stacked(
                &[("attn_q", hidden), ("attn_k", kv_dim), ("attn_v", kv_dim)],
                hidden,
                reader,
            )?;
            let attention_out = stacked(&[("attn_output", hidden)], hidden, reader)?;
            let gate_up = stacked(
                &[("ffn_gate", config.ffn), ("ffn_up", config.ffn)],
                hidden,
                reader,
            )?;
            if !config.ffn.is_multiple_of(BLOCK) {
                return Err(format!(
                    "a feed-forward size of {} is not whole Q8_0 blocks of {BLOCK}",
                    config.ffn
                ));
            }
            let down = stacked(&[("ffn_down", hidden)], config.ffn, reader)?;
            layers.push(Layer {
                attention_norm: f32_vector(content, reader, &name("attn_norm"), hidden)?,
                qkv,
                attention_out,
                ffn_norm: f32_vector(content, reader, &name("ffn_norm"), hidden)?,
                gate_up,
                down,
            });
        }
        let output_norm = f32_vector(content, reader, "output_norm.weight", hidden)?;
        let (cos, sin) = rotary_tables(config.rope_dim, config.rope_base);
        Ok(LlamaModel {
            config,
            embeddings,
            layers,
            output_norm,
            output,
            cos,
            sin,
        })
    }

    /// The model's shape.
    pub(crate) fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// An empty cache for this model.
    pub(crate) fn new_cache(&self) -> KvCache {
        KvCache {
            keys: vec![Vec::new(); self.config.layers],
            values: vec![Vec::new(); self.config.layers],
            len: 0,
            scratch: Scratch::default(),
        }
    }

    /// Runs `tokens` after the cache's positions, appends their keys and values to it, and
    /// writes into `logits` (resized) the logits `[rows][vocab]` of the positions `which` names.
    pub(crate) fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        which: LogitsFrom,
        logits: &mut Vec<f32>,
    ) -> Result<(), String> {
        // On a pool thread: a decoded token splits ~270 operations over the pool, and from a
        // thread outside it each split hands its work over and sleeps until it is done (perf of
        // a 1-thread decode: 9% in the scheduler). Inside, the caller works on its share.
        let mut scratch = std::mem::take(&mut cache.scratch);
        let result =
            rayon::scope(|_| self.forward_on_pool(cache, &mut scratch, tokens, which, logits));
        cache.scratch = scratch;
        result
    }

    fn forward_on_pool(
        &self,
        cache: &mut KvCache,
        scratch: &mut Scratch,
        tokens: &[u32],
        which: LogitsFrom,
        logits: &mut Vec<f32>,
    ) -> Result<(), String> {
        let c = &self.config;
        let rows = tokens.len();
        let start = cache.len;
        if rows == 0 {
            return Err("a forward pass needs at least one token".into());
        }
        if start + rows > MAX_POSITIONS {
            return Err(format!(
                "{} positions exceed the embedded model's {MAX_POSITIONS}",
                start + rows
            ));
        }
        let first_logit_row = match which {
            LogitsFrom::Last => rows - 1,
            LogitsFrom::Row(row) if row < rows => row,
            LogitsFrom::Row(row) => {
                return Err(format!("logits from row {row} of a {rows}-token input"))
            }
        };
        let (hidden, qkv_dim, kv_dim) = (c.hidden, c.qkv_dim(), c.kv_dim());
        let x = zeroed(&mut scratch.x, rows * hidden);
        for (row, &token) in x.chunks_exact_mut(hidden).zip(tokens) {
            self.embed_token(token, row)?;
        }
        let normed = zeroed(&mut scratch.normed, rows * hidden);
        let qkv = zeroed(&mut scratch.qkv, rows * qkv_dim);
        let attention = zeroed(&mut scratch.attention, rows * hidden);
        let per_head = zeroed(&mut scratch.per_head, rows * c.heads * c.head_dim);
        let projected = zeroed(&mut scratch.projected, rows * hidden);
        let gate_up = zeroed(&mut scratch.gate_up, rows * 2 * c.ffn);
        let gated = zeroed(&mut scratch.gated, rows * c.ffn);
        let parallel = rayon::current_num_threads() > 1;
        for (layer, weights) in self.layers.iter().enumerate() {
            rms_norm(x, &weights.attention_norm, c.rms_eps, normed);
            q8_matmul::matmul(normed, rows, &weights.qkv, qkv, parallel);
            qkv.par_chunks_mut(qkv_dim)
                .enumerate()
                .with_min_len(ROWS_PER_TASK)
                .for_each(|(r, row)| self.rotate(&mut row[..hidden + kv_dim], start + r));
            let keys = &mut cache.keys[layer];
            let values = &mut cache.values[layer];
            for row in qkv.chunks_exact(qkv_dim) {
                keys.extend_from_slice(&row[hidden..hidden + kv_dim]);
                values.extend_from_slice(&row[hidden + kv_dim..]);
            }
            self.attend(qkv, start, keys, values, per_head, attention);
            q8_matmul::matmul(attention, rows, &weights.attention_out, projected, parallel);
            add_in_place(x, projected);

            rms_norm(x, &weights.ffn_norm, c.rms_eps, normed);
            q8_matmul::matmul(normed, rows, &weights.gate_up, gate_up, parallel);
            gate_up
                .par_chunks(2 * c.ffn)
                .zip(gated.par_chunks_mut(c.ffn))
                .with_min_len(ROWS_PER_TASK)
                .for_each(|(both, out)| {
                    let (gate, up) = both.split_at(c.ffn);
                    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                        *o = g / (1.0 + (-g).exp()) * u;
                    }
                });
            q8_matmul::matmul(gated, rows, &weights.down, projected, parallel);
            add_in_place(x, projected);
        }
        cache.len = start + rows;
        let wanted = rows - first_logit_row;
        let tail = &x[first_logit_row * hidden..];
        let final_normed = zeroed(&mut scratch.final_normed, wanted * hidden);
        rms_norm(tail, &self.output_norm, c.rms_eps, final_normed);
        let logits = zeroed(logits, wanted * c.vocab);
        q8_matmul::matmul(final_normed, wanted, &self.output, logits, parallel);
        Ok(())
    }

    /// Writes token `token`'s embedding into `out`.
    fn embed_token(&self, token: u32, out: &mut [f32]) -> Result<(), String> {
        let token = token as usize;
        if token >= self.config.vocab {
            return Err(format!(
                "token {token} is outside the model's vocabulary of {}",
                self.config.vocab
            ));
        }
        let row_bytes = self.config.hidden / BLOCK * GGUF_BLOCK_BYTES;
        let row = &self.embeddings[token * row_bytes..][..row_bytes];
        for (block, values) in row
            .chunks_exact(GGUF_BLOCK_BYTES)
            .zip(out.chunks_exact_mut(BLOCK))
        {
            let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            for (v, &q) in values.iter_mut().zip(&block[2..]) {
                *v = (q as i8) as f32 * scale;
            }
        }
        Ok(())
    }

    /// Applies the interleaved rotary embedding (pairs `2i, 2i + 1`, GGUF's llama layout) of
    /// `position` to every head of one row's queries and keys.
    fn rotate(&self, heads: &mut [f32], position: usize) {
        let half_dim = self.config.rope_dim / 2;
        let cos = &self.cos[position * half_dim..][..half_dim];
        let sin = &self.sin[position * half_dim..][..half_dim];
        for head in heads.chunks_exact_mut(self.config.head_dim) {
            for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * c - b * s;
                pair[1] = a * s + b * c;
            }
        }
    }

    /// Causal attention of the new queries in `qkv` (`[rows][qkv_dim]`, positions
    /// `start..start + rows`) over the cache's keys and values (which already hold them), into
    /// `out` (`[rows][hidden]`).
    fn attend(
        &self,
        qkv: &[f32],
        start: usize,
        keys: &[f32],
        values: &[f32],
        per_head: &mut [f32],
        out: &mut [f32],
    ) {
        let c = &self.config;
        let (head_dim, qkv_dim, kv_dim) = (c.head_dim, c.qkv_dim(), c.kv_dim());
        let rows = qkv.len() / qkv_dim;
        let group = c.heads / c.kv_heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        // Each head writes its own [rows][head_dim] block of `per_head` (`c.heads * rows *
        // head_dim` values); scattered into `out` after.
        per_head
            .par_chunks_mut(rows * head_dim)
            .enumerate()
            .for_each(|(head, head_out)| {
                let kv_offset = (head / group) * head_dim;
                let mut scores = Vec::new();
                if rows == 1 {
                    let q = &qkv[head * head_dim..][..head_dim];
                    let kv = CachedHead {
                        keys,
                        values,
                        stride: kv_dim,
                        offset: kv_offset,
                        len: start + 1,
                    };
                    attend_one_row(q, &kv, scale, &mut scores, head_out);
                    return;
                }
                let mut block_start = 0;
                while block_start < rows {
                    let block_rows = (rows - block_start).min(QUERY_BLOCK);
                    // Keys up to the block's last query position.
                    let kv_len = start + block_start + block_rows;
                    scores.clear();
                    scores.resize(block_rows * kv_len, 0.0);
                    let q = qkv[block_start * qkv_dim + head * head_dim..].as_ptr();
                    let k = keys[kv_offset..].as_ptr();
                    let v = values[kv_offset..].as_ptr();
                    let dst = head_out[block_start * head_dim..].as_mut_ptr();
                    // SAFETY: `q` reads `block_rows` rows of `head_dim` values `qkv_dim` apart
                    // inside `qkv` (rows `block_start..` exist); `k` and `v` read `kv_len` rows
                    // of `head_dim` values `kv_dim` apart inside the cache, which holds
                    // `start + rows >= kv_len` positions; `scores` is block_rows x kv_len; `dst`
                    // is `block_rows` rows of `head_dim` inside this head's own block.
                    unsafe {
                        gemm::gemm(
                            block_rows,
                            kv_len,
                            head_dim,
                            scores.as_mut_ptr(),
                            1,
                            kv_len as isize,
                            false,
                            q,
                            1,
                            qkv_dim as isize,
                            k,
                            kv_dim as isize,
                            1,
                            0.0,
                            scale,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                    for (r, row) in scores.chunks_exact_mut(kv_len).enumerate() {
                        // The query at position start + block_start + r sees keys up to itself.
                        let visible = start + block_start + r + 1;
                        softmax_prefix(row, visible);
                    }
                    // SAFETY: as above.
                    unsafe {
                        gemm::gemm(
                            block_rows,
                            head_dim,
                            kv_len,
                            dst,
                            1,
                            head_dim as isize,
                            false,
                            scores.as_ptr(),
                            1,
                            kv_len as isize,
                            v,
                            1,
                            kv_dim as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                    block_start += block_rows;
                }
            });
        for (head, block) in per_head.chunks_exact(rows * head_dim).enumerate() {
            for (r, values) in block.chunks_exact(head_dim).enumerate() {
                out[r * c.hidden + head * head_dim..][..head_dim].copy_from_slice(values);
            }
        }
    }
}

/// One key/value head of the cache: position `j`'s vector is `head_dim` values at
/// `j * stride + offset` of `keys` and of `values`.
struct CachedHead<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    stride: usize,
    offset: usize,
    len: usize,
}

ibex_cpu::with_widest_simd!(
    attend_one_row,
    attend_one_row_at,
    attend_one_row_portable,
    q: &[f32],
    kv: &CachedHead<'_>,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32]
);

/// Attention of one query (a decoded token) over every cached position, into `out`
/// (`attend_one_row` runs it on the SIMD level [`ibex_cpu::simd_level`] chose). Written as
/// plain loops instead of gemm: for a 1 x n product gemm took its general path, a quarter of a
/// 1-thread decode's time (perf). 16 independent sums, so each width vectorizes.
#[inline(always)]
fn attend_one_row_portable(
    q: &[f32],
    kv: &CachedHead<'_>,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let head_dim = q.len();
    scores.clear();
    for j in 0..kv.len {
        let key = &kv.keys[j * kv.stride + kv.offset..][..head_dim];
        let mut lanes = [0f32; 16];
        for (qs, ks) in q.chunks_exact(16).zip(key.chunks_exact(16)) {
            for i in 0..16 {
                lanes[i] += qs[i] * ks[i];
            }
        }
        let mut dot: f32 = lanes.iter().sum();
        let tail = head_dim - head_dim % 16;
        for (a, b) in q[tail..].iter().zip(&key[tail..]) {
            dot += a * b;
        }
        scores.push(dot * scale);
    }
    softmax_prefix(scores, kv.len);
    out.fill(0.0);
    for (j, &p) in scores.iter().enumerate() {
        let value = &kv.values[j * kv.stride + kv.offset..][..head_dim];
        for (o, &v) in out.iter_mut().zip(value) {
            *o += p * v;
        }
    }
}

/// Softmax over `row[..visible]`, zeros after (the causal mask).
fn softmax_prefix(row: &mut [f32], visible: usize) {
    let (seen, hidden) = row.split_at_mut(visible);
    hidden.fill(0.0);
    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in seen.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inverse = 1.0 / sum;
    for v in seen.iter_mut() {
        *v *= inverse;
    }
}

/// `out[row] = x[row] / sqrt(mean(x[row]^2) + eps) * weight`, rows in parallel.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    x.par_chunks(dim)
        .zip(out.par_chunks_mut(dim))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(row, out_row)| {
            let sum_squares: f32 = row.iter().map(|v| v * v).sum();
            let inverse = 1.0 / (sum_squares / dim as f32 + eps).sqrt();
            for ((o, &v), &w) in out_row.iter_mut().zip(row).zip(weight) {
                *o = v * inverse * w;
            }
        });
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// candle's tables: `theta_i = base^(-2i / dim)` in f32, angle = position x theta in f32.
fn rotary_tables(dim: usize, base: f32) -> (Vec<f32>, Vec<f32>) {
    let theta: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1f32 / base.powf(i as f32 / dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(MAX_POSITIONS * theta.len());
    let mut sin = Vec::with_capacity(MAX_POSITIONS * theta.len());
    for position in 0..MAX_POSITIONS {
        for &t in &theta {
            let angle = position as f32 * t;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

/// A matrix tensor as GGUF Q8_0 blocks: `(rows, bytes)`, converted from another type when the
/// file stores it otherwise. `rows`, when given, is checked, and so is the row length `k`.
fn q8_matrix<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
    name: &str,
    rows: Option<usize>,
    k: usize,
) -> Result<(usize, Vec<u8>), String> {
    let tensor = read_tensor(content, reader, name)?;
    let (found_rows, found_k) = tensor
        .shape()
        .dims2()
        .map_err(|_| format!("{name} is not a matrix ({:?})", tensor.shape()))?;
    if found_k != k || rows.is_some_and(|r| r != found_rows) {
        return Err(format!(
            "{name} is {found_rows} x {found_k}; the model's shape needs {} x {k}",
            rows.map_or("n".to_string(), |r| r.to_string())
        ));
    }
    let tensor = if tensor.dtype() == GgmlDType::Q8_0 {
        tensor
    } else {
        let values = tensor
            .dequantize(&Device::Cpu)
            .map_err(|e| format!("{name}: {e}"))?;
        QTensor::quantize(&values, GgmlDType::Q8_0).map_err(|e| format!("{name}: {e}"))?
    };
    let bytes = tensor.data().map_err(|e| format!("{name}: {e}"))?;
    Ok((found_rows, bytes.into_owned()))
}

/// A vector tensor (a norm's weights) as f32.
fn f32_vector<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
    name: &str,
    len: usize,
) -> Result<Vec<f32>, String> {
    let tensor = read_tensor(content, reader, name)?;
    let values = tensor
        .dequantize(&Device::Cpu)
        .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
        .map_err(|e| format!("{name}: {e}"))?;
    if values.len() != len {
        return Err(format!(
            "{name} has {} values; the model's shape needs {len}",
            values.len()
        ));
    }
    Ok(values)
}

fn read_tensor<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
    name: &str,
) -> Result<QTensor, String> {
    if !content.tensor_infos.contains_key(name) {
        return Err(format!("the GGUF file has no tensor {name}"));
    }
    content
        .tensor(reader, name, &Device::Cpu)
        .map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_prefix_masks_the_future() {
        let mut row = [1.0f32, 2.0, 3.0, 100.0];
        softmax_prefix(&mut row, 2);
        let e = (1f32).exp();
        assert!((row[0] - 1.0 / (1.0 + e)).abs() < 1e-6);
        assert!((row[1] - e / (1.0 + e)).abs() < 1e-6);
        assert_eq!(&row[2..], &[0.0, 0.0]);
    }

    #[test]
    fn one_rows_attention_matches_a_float64_reference_on_every_path() {
        // Two heads of 20 dimensions (past one 16-lane block) interleaved in the cache, 7
        // positions; the second head is read.
        let (head_dim, positions, stride) = (20, 7, 40);
        let value_at = |i: usize, salt: f32| (i as f32 * 0.37 + salt).sin() * 0.8;
        let keys: Vec<f32> = (0..positions * stride).map(|i| value_at(i, 1.0)).collect();
        let values: Vec<f32> = (0..positions * stride).map(|i| value_at(i, 2.0)).collect();
        let q: Vec<f32> = (0..head_dim).map(|i| value_at(i, 3.0)).collect();
        let kv = CachedHead {
            keys: &keys,
            values: &values,
            stride,
            offset: head_dim,
            len: positions,
        };
        let scale = 0.25f64;
        let dots: Vec<f64> = (0..positions)
            .map(|j| {
                (0..head_dim)
                    .map(|d| q[d] as f64 * keys[j * stride + head_dim + d] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let max = dots.iter().copied().fold(f64::MIN, f64::max);
        let weights: Vec<f64> = dots.iter().map(|d| (d - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let expected: Vec<f64> = (0..head_dim)
            .map(|d| {
                (0..positions)
                    .map(|j| weights[j] / total * values[j * stride + head_dim + d] as f64)
                    .sum()
            })
            .collect();
        for level in ibex_cpu::SimdLevel::supported() {
            let (mut scores, mut out) = (Vec::new(), vec![9.0f32; head_dim]);
            attend_one_row_at(level, &q, &kv, scale as f32, &mut scores, &mut out);
            for (got, want) in out.iter().zip(&expected) {
                assert!(
                    (*got as f64 - want).abs() < 1e-5,
                    "{level:?}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rms_norm_scales_to_unit_mean_square() {
        let x = [3.0f32, 4.0, 0.0, 0.0];
        let mut out = [0f32; 4];
        rms_norm(&x, &[1.0, 2.0, 1.0, 1.0], 0.0, &mut out);
        // mean square = 25 / 4, so 1 / rms = 2 / 5.
        assert_eq!(out, [1.2, 3.2, 0.0, 0.0]);
    }

    #[test]
    fn rotary_tables_start_at_identity_and_turn_by_theta() {
        let (cos, sin) = rotary_tables(4, 10_000.0);
        assert_eq!(&cos[..2], &[1.0, 1.0]);
        assert_eq!(&sin[..2], &[0.0, 0.0]);
        // Position 1: angles 1 and 10000^-0.5 = 0.01.
        assert!((sin[2] - 1f32.sin()).abs() < 1e-7);
        assert!((sin[3] - 0.01f32.sin()).abs() < 1e-7);
    }

    /// The default model through this pass and through candle's `quantized_llama` on the same
    /// file: the logits of a prefill longer than one query block, of greedy decode steps after
    /// it, and of a prompt fed in two parts, agree within a bound far below the gaps between
    /// the tokens chosen.
    #[test]
    fn matches_candle_quantized_llama_on_the_default_model() {
        use candle_core::Tensor;
        use candle_transformers::models::quantized_llama::ModelWeights;

        let path = crate::fetch::ensure_default_llm().expect("the embedded LLM is cached");
        let open = || {
            let mut file = std::fs::File::open(&path).expect("opens");
            let content = Content::read(&mut file).expect("reads GGUF");
            (file, content)
        };
        let (mut file, content) = open();
        let tokenizer = crate::tokenizer::SmolTokenizer::from_gguf(&content).expect("tokenizer");
        let ours = LlamaModel::from_gguf(&content, &mut file).expect("loads");
        let (mut file, content) = open();
        let mut reference =
            ModelWeights::from_gguf(content, &mut file, &Device::Cpu).expect("candle");

        let text = "The lighthouse keeper climbed the stairs at dusk. ".repeat(9)
            + "What did the keeper find in the bottle?";
        let prompt = tokenizer.encode(&text).expect("encodes");
        assert!(prompt.len() > QUERY_BLOCK + 8, "{} tokens", prompt.len());
        let vocab = ours.config().vocab;
        let candle_logits = |model: &mut ModelWeights, tokens: &[u32], at: usize| -> Vec<f32> {
            let input = Tensor::new(tokens, &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .expect("t");
            let out = model.forward(&input, at).expect("candle forward");
            out.squeeze(0).and_then(|t| t.to_vec1()).expect("logits")
        };
        let compare = |ours: &[f32], theirs: &[f32], what: &str| {
            assert_eq!(ours.len(), theirs.len());
            let worst = ours
                .iter()
                .zip(theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let mean = ours
                .iter()
                .zip(theirs)
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / ours.len() as f32;
            // Measured: worst 0.69-1.16, mean 0.10-0.32 (logits of 15-35 at the top). The same
            // pass differs from itself by 0.05 between the scalar and SIMD paths and by 0.3
            // between a 5-row and a 1-row step: each product quantizes its input to 8 bits, so a
            // last-bit difference that flips one rounding moves a value by a whole step, and 30
            // layers carry it on. A wrong rotary layout or mask moves logits by whole units and
            // changes the ranking.
            assert!(
                worst < 2.5 && mean < 0.5,
                "{what}: logits differ by {mean} on average, {worst} at most"
            );
            let mut order: Vec<usize> = (0..theirs.len()).collect();
            order.sort_by(|&a, &b| theirs[b].total_cmp(&theirs[a]));
            let margin = theirs[order[0]] - theirs[order[1]];
            let best = |l: &[f32]| (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b]));
            if margin > 2.0 {
                assert_eq!(best(ours), Some(order[0]), "{what}: another token chosen");
            }
            worst
        };

        let mut cache = ours.new_cache();
        let mut expected = candle_logits(&mut reference, &prompt, 0);
        let mut got = Vec::new();
        ours.forward(&mut cache, &prompt, LogitsFrom::Last, &mut got)
            .expect("forward");
        let mut worst = compare(&got, &expected, "prefill");
        let mut generated = Vec::new();
        for step in 0..4 {
            let next = (0..vocab)
                .max_by(|&a, &b| expected[a].total_cmp(&expected[b]))
                .expect("a token") as u32;
            generated.push(next);
            expected = candle_logits(&mut reference, &[next], prompt.len() + step);
            ours.forward(&mut cache, &[next], LogitsFrom::Last, &mut got)
                .expect("decode");
            worst = worst.max(compare(&got, &expected, &format!("decode step {step}")));
        }
        assert_eq!(cache.len(), prompt.len() + 4);

        // The whole sequence in two parts, logits of every position of the second: its last row
        // is the last decode step's, and its first is the prefill's.
        let mut all = prompt.clone();
        all.extend_from_slice(&generated);
        let split = prompt.len() / 2;
        let mut cache = ours.new_cache();
        let mut rest = Vec::new();
        ours.forward(&mut cache, &all[..split], LogitsFrom::Last, &mut rest)
            .expect("first part");
        ours.forward(
            &mut cache,
            &all[split..],
            LogitsFrom::Row(prompt.len() - 1 - split),
            &mut rest,
        )
        .expect("second part");
        assert_eq!(rest.len(), 5 * vocab);
        compare(&rest[4 * vocab..], &expected, "last row of the split pass");
        eprintln!("largest logit difference from candle: {worst}");
    }
}
