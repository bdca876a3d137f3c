//! Mistral as a text encoder (E5-Mistral-7B-instruct): the decoder's last hidden states for a
//! padded batch, in candle-transformers' shape (`Config` from config.json, `load(vb, &config)`,
//! `forward`).
//!
//! Why not candle-transformers' `mistral::Model`: it is a language model. It loads an `lm_head`
//! (which E5-Mistral's checkpoint, saved from `MistralModel`, does not have), returns only the
//! logits of the last position, builds a causal mask with no padding in it, and keeps a KV cache
//! behind `&mut self`. An embedder needs the hidden states, a mask that hides padding on either
//! side, and a forward pass that many threads can share. The layers are the same; the building
//! blocks (RMSNorm, rotary embedding, grouped-query `repeat_kv`) are candle's.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{linear_no_bias, Activation, Linear, RmsNorm, VarBuilder};
use serde::Deserialize;

/// The config.json keys a Mistral encoder needs (the real checkpoint's classic layout).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of the hidden states (4096 for Mistral-7B).
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP's inner layer.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention: fewer than the query heads).
    pub num_key_value_heads: usize,
    /// Width of one head (defaults to `hidden_size / num_attention_heads`).
    pub head_dim: Option<usize>,
    #[serde(default = "default_act")]
    /// The MLP's activation (SiLU for Mistral).
    pub hidden_act: Activation,
    /// Longest sequence the rotary table covers.
    pub max_position_embeddings: usize,
    /// RMS-norm epsilon.
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    /// Base of the rotary position frequencies.
    pub rope_theta: f64,
    /// Sliding-window attention span, when the model uses one.
    pub sliding_window: Option<usize>,
    #[serde(default = "default_bos")]
    /// Id of the beginning-of-sequence token.
    pub bos_token_id: u32,
    #[serde(default = "default_eos")]
    /// Id of the end-of-sequence token (E5 appends it: its embedding is the last token's state).
    pub eos_token_id: u32,
    /// Id of the padding token, when the tokenizer has one.
    pub pad_token_id: Option<u32>,
}

fn default_act() -> Activation {
    Activation::Silu
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_bos() -> u32 {
    1
}
fn default_eos() -> u32 {
    2
}

impl Config {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

/// Cosine and sine tables of the rotary embedding, for positions 0..max.
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(config: &Config, dtype: DType, device: &Device) -> candle_core::Result<Self> {
        let dim = config.head_dim();
        let inv_freq: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / (config.rope_theta as f32).powf(i as f32 / dim as f32))
            .collect();
        let half = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, config.max_position_embeddings as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((config.max_position_embeddings, 1))?;
        let freqs = positions.matmul(&inv_freq)?;
        Ok(Rotary {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    fn apply(&self, q: &Tensor, k: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (_, _, len, _) = q.dims4()?;
        let cos = self.cos.narrow(0, 0, len)?;
        let sin = self.sin.narrow(0, 0, len)?;
        Ok((
            candle_nn::rotary_emb::rope(q, &cos, &sin)?,
            candle_nn::rotary_emb::rope(k, &cos, &sin)?,
        ))
    }
}

/// Self-attention with grouped-query heads. Q, K and V come from one fused projection (one GEMM
/// instead of three), and the query heads sharing a key/value head are stacked along the rows of
/// one product, so K and V are never repeated in memory.
struct Attention {
    qkv_proj: Tensor,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let head_dim = config.head_dim();
        let (h, heads, kv_heads) = (
            config.hidden_size,
            config.num_attention_heads,
            config.num_key_value_heads,
        );
        if kv_heads == 0 || heads % kv_heads != 0 {
            candle_core::bail!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            );
        }
        let q = vb.pp("q_proj").get((heads * head_dim, h), "weight")?;
        let k = vb.pp("k_proj").get((kv_heads * head_dim, h), "weight")?;
        let v = vb.pp("v_proj").get((kv_heads * head_dim, h), "weight")?;
        Ok(Attention {
            qkv_proj: Tensor::cat(&[&q, &k, &v], 0)?,
            o_proj: linear_no_bias(heads * head_dim, h, vb.pp("o_proj"))?,
            heads,
            kv_heads,
            head_dim,
        })
    }

    /// `xs` `[batch·len, hidden]` (rows of one sequence together) to the same shape.
    fn forward(
        &self,
        xs: &Tensor,
        batch: usize,
        mask: &AttentionMask,
        rotary: &Rotary,
    ) -> candle_core::Result<Tensor> {
        let (tokens, _) = xs.dims2()?;
        let len = tokens / batch;
        let (heads, kv_heads, d) = (self.heads, self.kv_heads, self.head_dim);
        let qkv = xs.matmul(&self.qkv_proj.t()?)?;
        let (q, k, v) = self.split_heads(&qkv, batch)?;
        let (q, k) = rotary.apply(&q, &k)?;
        // Query head h uses key/value head h / groups: stack each group's queries as rows.
        let groups = heads / kv_heads;
        let q = q.reshape((batch, kv_heads, groups * len, d))?;
        let scores = q.matmul(&k.t()?)?; // [batch, kv_heads, groups·len, len]
        let weights = mask.softmax(scores, 1.0 / (d as f64).sqrt())?;
        let attended = weights
            .matmul(&v)? // [batch, kv_heads, groups·len, d]
            .reshape((batch, heads, len, d))?;
        let merged = Self::merge_heads(&attended)?;
        merged.apply(&self.o_proj)
    }
}

impl Attention {
    /// Q `[batch, heads, len, d]`, K and V `[batch, kv_heads, len, d]` of the fused projection
    /// `[batch·len, (heads + 2·kv_heads)·d]`.
    fn split_heads(
        &self,
        qkv: &Tensor,
        batch: usize,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (heads, kv_heads, d) = (self.heads, self.kv_heads, self.head_dim);
        #[cfg(feature = "cuda")]
        if fused_kernels(qkv) {
            return crate::cuda_kernels::split_qkv(qkv, batch, heads, kv_heads, d);
        }
        let len = qkv.dim(0)? / batch;
        let split = |offset: usize, n: usize| {
            qkv.narrow(1, offset * d, n * d)?
                .reshape((batch, len, n, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        Ok((
            split(0, heads)?,
            split(heads, kv_heads)?,
            split(heads + kv_heads, kv_heads)?,
        ))
    }

    /// `[batch, heads, len, d]` to `[batch·len, heads·d]`.
    fn merge_heads(attended: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if fused_kernels(attended) {
            return crate::cuda_kernels::merge_heads(attended);
        }
        let (batch, heads, len, d) = attended.dims4()?;
        attended.transpose(1, 2)?.reshape((batch * len, heads * d))
    }
}

/// The SwiGLU MLP, gate and up projections fused into one GEMM.
struct Mlp {
    gate_up_proj: Tensor,
    down_proj: Linear,
    act: Activation,
    intermediate: usize,
}

impl Mlp {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let gate = vb.pp("gate_proj").get((i, h), "weight")?;
        let up = vb.pp("up_proj").get((i, h), "weight")?;
        Ok(Mlp {
            gate_up_proj: Tensor::cat(&[&gate, &up], 0)?,
            down_proj: linear_no_bias(i, h, vb.pp("down_proj"))?,
            act: config.hidden_act,
            intermediate: i,
        })
    }

    /// `xs` `[tokens, hidden]`.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gate_up = xs.matmul(&self.gate_up_proj.t()?)?;
        #[cfg(feature = "cuda")]
        if fused_kernels(xs) && matches!(self.act, Activation::Silu) {
            return crate::cuda_kernels::swiglu(&gate_up)?.apply(&self.down_proj);
        }
        let i = self.intermediate;
        let gate = gate_up.narrow(1, 0, i)?.apply(&self.act)?;
        (gate * gate_up.narrow(1, i, i)?)?.apply(&self.down_proj)
    }
}

/// Whether `xs` takes the fused CUDA kernels of [`crate::cuda_kernels`] (a CUDA tensor, bf16 or
/// f32); the CPU keeps candle's operations.
#[cfg(feature = "cuda")]
fn fused_kernels(xs: &Tensor) -> bool {
    xs.device().is_cuda() && matches!(xs.dtype(), DType::BF16 | DType::F32)
}

/// Which keys each query of a padded batch may see: at or before itself, within the sliding
/// window, and not padding. On CUDA the visibility is computed inside one fused kernel that
/// scales, masks and normalizes the scores in place; elsewhere it is an additive mask tensor.
enum AttentionMask {
    /// `[batch, 1, 1, len, len]` additive mask, broadcast over heads (and grouped query rows).
    Additive(Tensor),
    #[cfg(feature = "cuda")]
    Fused(crate::cuda_kernels::KeyMask),
}

impl AttentionMask {
    /// Softmax over the last dimension of `scores` `[batch, kv_heads, groups·len, len]` times
    /// `scale`, hidden keys given weight 0.
    fn softmax(&self, scores: Tensor, scale: f64) -> candle_core::Result<Tensor> {
        match self {
            AttentionMask::Additive(mask) => {
                let (batch, kv_heads, rows, len) = scores.dims4()?;
                let scores = (scores * scale)?
                    .reshape((batch, kv_heads, rows / len, len, len))?
                    .broadcast_add(mask)?;
                candle_nn::ops::softmax_last_dim(&scores)?.reshape((batch, kv_heads, rows, len))
            }
            #[cfg(feature = "cuda")]
            AttentionMask::Fused(keys) => keys.masked_softmax(scores, scale),
        }
    }
}

struct Layer {
    attention: Attention,
    mlp: Mlp,
    input_norm: RmsNorm,
    post_attention_norm: RmsNorm,
}

/// A Mistral decoder used as an encoder: token ids in, final-norm hidden states out.
pub struct MistralModel {
    embed_tokens: candle_nn::Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    rotary: Rotary,
    sliding_window: Option<usize>,
    max_positions: usize,
    device: Device,
    dtype: DType,
}

/// Added to the attention score of a key a query must not see. Finite, so a row with no visible
/// key (a padding query) stays finite rather than turning into NaN; never added twice.
const HIDDEN: f32 = -1.0e30;

impl MistralModel {
    /// Loads the weights under `vb`, with or without the `model.` prefix (E5-Mistral's checkpoint,
    /// saved from `MistralModel`, has none; one saved from `MistralForCausalLM` has it).
    pub fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let vb = if vb.contains_tensor("model.embed_tokens.weight") {
            vb.pp("model")
        } else {
            vb
        };
        let embed_tokens =
            candle_nn::embedding(config.vocab_size, config.hidden_size, vb.pp("embed_tokens"))?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let vb = vb.pp("layers").pp(n);
            layers.push(Layer {
                attention: Attention::load(vb.pp("self_attn"), config)?,
                mlp: Mlp::load(vb.pp("mlp"), config)?,
                input_norm: candle_nn::rms_norm(
                    config.hidden_size,
                    config.rms_norm_eps,
                    vb.pp("input_layernorm"),
                )?,
                post_attention_norm: candle_nn::rms_norm(
                    config.hidden_size,
                    config.rms_norm_eps,
                    vb.pp("post_attention_layernorm"),
                )?,
            });
        }
        let norm = candle_nn::rms_norm(config.hidden_size, config.rms_norm_eps, vb.pp("norm"))?;
        Ok(MistralModel {
            embed_tokens,
            layers,
            norm,
            rotary: Rotary::new(config, vb.dtype(), vb.device())?,
            sliding_window: config.sliding_window,
            max_positions: config.max_position_embeddings,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// The attention mask of a padded batch (see [`AttentionMask`]).
    fn mask(&self, attention_mask: &[Vec<u32>], len: usize) -> candle_core::Result<AttentionMask> {
        let window = self.sliding_window.unwrap_or(usize::MAX);
        #[cfg(feature = "cuda")]
        if self.device.is_cuda() && matches!(self.dtype, DType::BF16 | DType::F32) {
            return Ok(AttentionMask::Fused(crate::cuda_kernels::KeyMask::new(
                attention_mask,
                len,
                window,
                &self.device,
            )?));
        }
        let mut values = Vec::with_capacity(attention_mask.len() * len * len);
        for row in attention_mask {
            for i in 0..len {
                for (j, &real) in row.iter().enumerate().take(len) {
                    let visible = j <= i && i - j < window && real != 0;
                    values.push(if visible { 0.0 } else { HIDDEN });
                }
            }
        }
        Ok(AttentionMask::Additive(
            Tensor::from_vec(values, (attention_mask.len(), 1, 1, len, len), &self.device)?
                .to_dtype(self.dtype)?,
        ))
    }

    /// Hidden states `[batch, len, hidden]` of a padded batch (every row `len` long, with its
    /// attention mask). Positions run 0..len over the padded row, as transformers does when no
    /// position ids are given (RoPE is relative, so left padding does not change the result).
    pub fn forward(
        &self,
        ids: &[Vec<u32>],
        attention_mask: &[Vec<u32>],
    ) -> candle_core::Result<Tensor> {
        let len = ids.first().map_or(0, Vec::len);
        if len == 0 || len > self.max_positions {
            candle_core::bail!(
                "sequence length {len} is outside 1..={} for this model",
                self.max_positions
            );
        }
        if ids.iter().any(|r| r.len() != len)
            || attention_mask.len() != ids.len()
            || attention_mask.iter().any(|r| r.len() != len)
        {
            candle_core::bail!("a padded batch needs ids and attention mask rows of one length");
        }
        let batch = ids.len();
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let input = Tensor::from_vec(flat, batch * len, &self.device)?;
        let mask = self.mask(attention_mask, len)?;
        // Every projection sees all the batch's tokens as the rows of one matrix.
        let mut xs = self.embed_tokens.forward(&input)?; // [batch·len, hidden]
        for layer in &self.layers {
            let attended = layer.attention.forward(
                &xs.apply(&layer.input_norm)?,
                batch,
                &mask,
                &self.rotary,
            )?;
            xs = (xs + attended)?;
            let mlp = layer.mlp.forward(&xs.apply(&layer.post_attention_norm)?)?;
            xs = (xs + mlp)?;
        }
        let hidden = xs.dim(1)?;
        xs.apply(&self.norm)?.reshape((batch, len, hidden))
    }
}

/// E5-Mistral's `last_token_pool`: the hidden state of each row's last real token. When every
/// row's last position is real the batch is left-padded (or unpadded) and that position is taken;
/// otherwise each row's `mask.sum - 1`. The mask decides, never the token id (pad and EOS are
/// both 2).
pub fn last_token_pool(
    hidden: &Tensor,
    attention_mask: &[Vec<u32>],
) -> candle_core::Result<Tensor> {
    let (_, len, _) = hidden.dims3()?;
    let left_padded = attention_mask.iter().all(|row| row.last() == Some(&1));
    let rows: Vec<Tensor> = attention_mask
        .iter()
        .enumerate()
        .map(|(b, row)| {
            let position = if left_padded {
                len - 1
            } else {
                (row.iter().filter(|&&m| m != 0).count()).max(1) - 1
            };
            hidden.get(b)?.get(position)
        })
        .collect::<candle_core::Result<_>>()?;
    Tensor::stack(&rows, 0)
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norms = xs
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    xs.broadcast_div(&norms)
}
