//! M2-BERT (Fu et al., "Monarch Mixer"; Saad-Falcon et al. 2024, "Benchmarking and Building
//! Long-Context Retrieval Models with LoCo and M2-BERT"): BERT with attention replaced by gated
//! short and long convolutions, and a block-diagonal (Monarch) gated MLP. 32k-token context at
//! 80M parameters. Written in candle-transformers' shape (`Config` from config.json,
//! `load(vb, &config)`, `forward`), to the layer-by-layer description of
//! ../shared/fixtures/README.md (upstream: HazyResearch/m2, bert/src/bert_layers.py and
//! bert/src/mm/).
//!
//! The long convolution runs by FFT (realfft, O(L log L)), never as an O(L²) sum. Its filters
//! depend only on positions, so their spectra are computed once per model and sequence length
//! and cached.
//!
//! Padding matters: the long convolution looks both ways and ignores the attention mask, so the
//! pads after a text change its embedding. The released checkpoint is run with every input
//! right-padded to 32,768 tokens; [`M2BertModel::forward`] takes whatever length it is given, and
//! the embedder pads to the model's maximum unless told otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use serde::Deserialize;

/// The config.json keys M2-BERT needs (m2's configuration_bert.py and the 32k retrieval yaml).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of the hidden states (768 for M2-BERT-80M).
    pub hidden_size: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Longest sequence the position table covers (32,768 for the 32k model).
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    /// Token-type vocabulary size (BERT's segment ids).
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    #[serde(default)]
    /// Id of the padding token.
    pub pad_token_id: u32,
    /// Longest sequence the long convolutions' implicit filters are generated for (defaults to `max_position_embeddings`).
    pub long_conv_l_max: Option<usize>,
    #[serde(default = "default_filter_order")]
    /// Width of the Hyena filter MLP that generates the convolution kernels.
    pub hyena_filter_order: usize,
    #[serde(default = "default_emb_dim")]
    /// Dimension of the positional embedding fed to the filter MLP.
    pub hyena_emb_dim: usize,
    #[serde(default = "default_nblocks")]
    /// Blocks of the block-diagonal (Monarch) MLP matrices.
    pub monarch_mlp_nblocks: usize,
    #[serde(default)]
    /// Whether sequence mixing is Monarch Mixer's gated long convolution (true for M2-BERT; plain BERT attention otherwise).
    pub monarch_mixer_sequence_mixing: bool,
    #[serde(default = "yes")]
    /// Whether the long convolution runs in both directions (a second, reversed filter).
    pub bidirectional: bool,
    #[serde(default = "yes")]
    /// Whether the long convolution adds a residual (skip) term.
    pub residual_long_conv: bool,
    #[serde(default = "yes")]
    /// Whether the MLP is a gated linear unit.
    pub use_glu_mlp: bool,
    #[serde(default = "yes")]
    /// Whether the MLP's matrices are block-diagonal.
    pub use_monarch_mlp: bool,
    #[serde(default = "default_w_mod")]
    /// Frequency modulation of the filter's sine activations.
    pub hyena_w_mod: f64,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_filter_order() -> usize {
    128
}
fn default_emb_dim() -> usize {
    5
}
fn default_nblocks() -> usize {
    4
}
fn default_w_mod() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

impl Config {
    /// Longest sequence the filters are defined for.
    pub fn l_max(&self) -> usize {
        self.long_conv_l_max.unwrap_or(self.max_position_embeddings)
    }

    /// Checks the switches this implementation follows (those of the released retrieval model).
    pub fn check(&self) -> Result<(), String> {
        let mut unsupported = Vec::new();
        if !self.monarch_mixer_sequence_mixing {
            unsupported.push("monarch_mixer_sequence_mixing=false");
        }
        if !self.bidirectional {
            unsupported.push("bidirectional=false");
        }
        if !self.residual_long_conv {
            unsupported.push("residual_long_conv=false");
        }
        if !self.use_glu_mlp || !self.use_monarch_mlp {
            unsupported.push("a non-GLU or non-Monarch MLP");
        }
        if self.hyena_w_mod != 1.0 {
            unsupported.push("hyena_w_mod != 1");
        }
        if !self.hidden_size.is_multiple_of(self.monarch_mlp_nblocks)
            || !self
                .intermediate_size
                .is_multiple_of(self.monarch_mlp_nblocks)
        {
            unsupported.push("sizes not divisible by monarch_mlp_nblocks");
        }
        if unsupported.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "this M2-BERT configuration uses {}; ibex runs the switches of m2-bert-80M-*-retrieval",
                unsupported.join(", ")
            ))
        }
    }
}

/// `sin(freq · x)` with a learned per-feature frequency (Hyena's `Sin` activation, w_mod = 1).
struct Sin {
    freq: Tensor,
}

/// The implicit filter: a small MLP from positional features to one tap per channel.
struct ImplicitFilter {
    linears: [Linear; 3],
    sins: [Sin; 3],
    out: Linear,
}

impl ImplicitFilter {
    fn load(vb: VarBuilder, shared_freq: &Tensor, config: &Config) -> candle_core::Result<Self> {
        let (o, e, d) = (
            config.hyena_filter_order,
            config.hyena_emb_dim,
            config.hidden_size,
        );
        // The three Sin layers share one frequency tensor upstream; a checkpoint may store it
        // under every name or only the first.
        let freq = |n: usize| -> candle_core::Result<Sin> {
            let name = format!("{n}.freq");
            let freq = if vb.contains_tensor(&name) {
                vb.get((1, o), &name)?
            } else {
                shared_freq.clone()
            };
            Ok(Sin { freq })
        };
        Ok(ImplicitFilter {
            linears: [
                linear(e, o, vb.pp("0"))?,
                linear(o, o, vb.pp("2"))?,
                linear(o, o, vb.pp("4"))?,
            ],
            sins: [freq(1)?, freq(3)?, freq(5)?],
            out: candle_nn::linear_no_bias(o, d, vb.pp("6"))?,
        })
    }

    /// Taps `[len, d]` for positional features `z` of `[len, emb_dim]`.
    fn taps(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = z.clone();
        for (linear, sin) in self.linears.iter().zip(&self.sins) {
            x = linear.forward(&x)?.broadcast_mul(&sin.freq)?.sin()?;
        }
        self.out.forward(&x)
    }
}

/// One long convolution (`filter_fn` or `filter_fn2`): forward and reverse implicit filters,
/// exponential decay, and the D skip term.
struct LongConv {
    forward: ImplicitFilter,
    reverse: ImplicitFilter,
    /// `[l_max, emb_dim]`, trained (must be loaded, not recomputed).
    z: Tensor,
    /// `[l_max, 1]`, linspace(0, 1).
    t: Tensor,
    /// `[1, d]`, the decay rates.
    deltas: Tensor,
    /// The D term, `[d]`.
    skip: Vec<f32>,
    /// Spectra of the two-sided kernel per sequence length, computed once.
    spectra: Mutex<HashMap<usize, Arc<KernelSpectra>>>,
    /// The same spectra on a CUDA device (`[d, (len + 1)·2]`, interleaved) with the skip term
    /// `[d]`, uploaded once per length.
    #[cfg(feature = "cuda")]
    device_spectra: Mutex<HashMap<usize, (Tensor, Tensor)>>,
}

/// The rfft of each channel's 2L-tap kernel `[k_fwd, flip(k_rev)]`.
struct KernelSpectra {
    fft_len: usize,
    /// `[d][fft_len / 2 + 1]`.
    channels: Vec<Vec<Complex<f32>>>,
}

impl LongConv {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let (l_max, e, d, o) = (
            config.l_max(),
            config.hyena_emb_dim,
            config.hidden_size,
            config.hyena_filter_order,
        );
        let device = vb.device().clone();
        let z = vb.get((1, l_max, e), "pos_emb.z")?.squeeze(0)?;
        // Buffers: absent from some checkpoints; their init formulas are exact.
        let t = if vb.contains_tensor("pos_emb.t") {
            vb.get((1, l_max, 1), "pos_emb.t")?.squeeze(0)?
        } else {
            let step = if l_max > 1 {
                1.0 / (l_max - 1) as f64
            } else {
                0.0
            };
            let values: Vec<f32> = (0..l_max).map(|n| (n as f64 * step) as f32).collect();
            Tensor::from_vec(values, (l_max, 1), &device)?
        };
        let deltas = if vb.contains_tensor("modulation.deltas") {
            vb.get((1, 1, d), "modulation.deltas")?.squeeze(0)?
        } else {
            let (lo, hi) = ((1e-2f64).ln() / 1.5, (1e-2f64).ln() / 0.3);
            let step = if d > 1 {
                (hi - lo) / (d - 1) as f64
            } else {
                0.0
            };
            let values: Vec<f32> = (0..d).map(|i| (lo + i as f64 * step) as f32).collect();
            Tensor::from_vec(values, (1, d), &device)?
        };
        let first_freq = vb.get((1, o), "implicit_filter.1.freq")?;
        let skip = vb.get(d, "bias")?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(LongConv {
            forward: ImplicitFilter::load(vb.pp("implicit_filter"), &first_freq, config)?,
            reverse: ImplicitFilter::load(vb.pp("implicit_filter_rev"), &first_freq, config)?,
            z,
            t,
            deltas,
            skip,
            spectra: Mutex::new(HashMap::new()),
            #[cfg(feature = "cuda")]
            device_spectra: Mutex::new(HashMap::new()),
        })
    }

    /// Filter taps `[d, len]` of one direction: the implicit filter on the first `len` rows of
    /// the l_max grid, times the decay `exp(-t·|deltas|)`.
    fn taps(&self, filter: &ImplicitFilter, len: usize) -> candle_core::Result<Vec<Vec<f32>>> {
        let z = self.z.narrow(0, 0, len)?;
        let t = self.t.narrow(0, 0, len)?;
        let decay = t.broadcast_mul(&self.deltas.abs()?)?.neg()?.exp()?;
        let taps = filter.taps(&z)?.mul(&decay)?; // [len, d]
        taps.t()?.to_dtype(DType::F32)?.to_vec2::<f32>()
    }

    /// The spectra for `len`, computed once and kept (the host's FFT path).
    fn spectra(&self, len: usize) -> candle_core::Result<Arc<KernelSpectra>> {
        if let Ok(cache) = self.spectra.lock() {
            if let Some(found) = cache.get(&len) {
                return Ok(found.clone());
            }
        }
        let spectra = Arc::new(self.compute_spectra(len)?);
        if let Ok(mut cache) = self.spectra.lock() {
            cache.insert(len, spectra.clone());
        }
        Ok(spectra)
    }

    fn compute_spectra(&self, len: usize) -> candle_core::Result<KernelSpectra> {
        let forward = self.taps(&self.forward, len)?;
        let reverse = self.taps(&self.reverse, len)?;
        let fft_len = 2 * len;
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(fft_len);
        let channels: Vec<Vec<Complex<f32>>> = forward
            .iter()
            .zip(&reverse)
            .map(|(fwd, rev)| {
                // [k_fwd(0..L), flip(k_rev)(0..L)]: position 2L - m holds k_rev[m - 1].
                let mut kernel = Vec::with_capacity(fft_len);
                kernel.extend_from_slice(fwd);
                kernel.extend(rev.iter().rev());
                let mut spectrum = fft.make_output_vec();
                // Lengths match the plan by construction.
                let _ = fft.process(&mut kernel, &mut spectrum);
                spectrum
            })
            .collect();
        Ok(KernelSpectra { fft_len, channels })
    }

    /// The kernel spectra and skip term for `len` on `device`: computed on the host once and kept
    /// only on the device (at 32k tokens a layer's spectra are 200 MB).
    #[cfg(feature = "cuda")]
    fn device_spectra(&self, len: usize, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        if let Ok(cache) = self.device_spectra.lock() {
            if let Some(found) = cache.get(&len) {
                return Ok(found.clone());
            }
        }
        let host = self.compute_spectra(len)?;
        let d = host.channels.len();
        let bins = host.fft_len / 2 + 1;
        let interleaved: Vec<f32> = host
            .channels
            .iter()
            .flat_map(|channel| channel.iter().flat_map(|c| [c.re, c.im]))
            .collect();
        let uploaded = (
            Tensor::from_vec(interleaved, (d, 2 * bins), device)?,
            Tensor::from_slice(&self.skip, d, device)?,
        );
        if let Ok(mut cache) = self.device_spectra.lock() {
            cache.insert(len, uploaded.clone());
        }
        Ok(uploaded)
    }

    /// `y[c,i] = Σ_{j≤i} k_fwd[c,i-j]·u[c,j] + Σ_{j>i} k_rev[c,j-i-1]·u[c,j] + D[c]·u[c,i]` for
    /// `u` of `[batch, d, len]`, by FFT of length 2·len (a linear, not circular, convolution).
    fn forward(&self, u: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, d, len) = u.dims3()?;
        #[cfg(feature = "cuda")]
        if u.device().is_cuda() {
            let (spectra, skip) = self.device_spectra(len, u.device())?;
            let y = crate::cuda_kernels::fft_long_conv(&u.to_dtype(DType::F32)?, &spectra, &skip)?;
            return y.to_dtype(u.dtype());
        }
        let spectra = self.spectra(len)?;
        let device = u.device().clone();
        let dtype = u.dtype();
        let input = u.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let fft_len = spectra.fft_len;
        // Planned once per call and shared by the threads; each thread reuses its own buffers.
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(fft_len);
        let ifft = planner.plan_fft_inverse(fft_len);
        let scale = 1.0 / fft_len as f32;
        let mut output = vec![0f32; batch * d * len];
        output
            .par_chunks_mut(len)
            .zip(input.par_chunks(len))
            .enumerate()
            .for_each_init(
                || {
                    (
                        fft.make_input_vec(),
                        fft.make_output_vec(),
                        ifft.make_output_vec(),
                        fft.make_scratch_vec(),
                        ifft.make_scratch_vec(),
                    )
                },
                |(padded, spectrum, result, scratch, iscratch), (row, (out, signal))| {
                    let channel = row % d;
                    padded[..len].copy_from_slice(signal);
                    padded[len..].fill(0.0);
                    // Buffer lengths match the plans by construction.
                    let _ = fft.process_with_scratch(padded, spectrum, scratch);
                    for (s, k) in spectrum.iter_mut().zip(&spectra.channels[channel]) {
                        *s *= k;
                    }
                    let _ = ifft.process_with_scratch(spectrum, result, iscratch);
                    let skip = self.skip[channel];
                    for ((o, r), u) in out.iter_mut().zip(result.iter()).zip(signal) {
                        *o = r * scale + skip * u;
                    }
                },
            );
        Tensor::from_vec(output, (batch, d, len), &device)?.to_dtype(dtype)
    }
}

/// The Monarch Mixer sequence mixer that replaces attention.
struct SequenceMixer {
    in_linear: Linear,
    /// Depthwise causal conv of width 3: `[3d, 3]` and `[3d]`.
    short_weight: Tensor,
    short_bias: Tensor,
    out_linear: Linear,
    filter: LongConv,
    residual_filter: LongConv,
    d: usize,
}

impl SequenceMixer {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let d = config.hidden_size;
        Ok(SequenceMixer {
            in_linear: linear(d, 3 * d, vb.pp("in_linear"))?,
            short_weight: vb.get((3 * d, 1, 3), "short_filter.weight")?.squeeze(1)?,
            short_bias: vb.get(3 * d, "short_filter.bias")?,
            out_linear: linear(d, d, vb.pp("out_linear"))?,
            filter: LongConv::load(vb.pp("filter_fn"), config)?,
            residual_filter: LongConv::load(vb.pp("filter_fn2"), config)?,
            d,
        })
    }

    /// `u` `[batch, len, d]` to `[batch, len, d]`.
    fn forward(&self, u: &Tensor) -> candle_core::Result<Tensor> {
        let (_, len, _) = u.dims3()?;
        let z = self.in_linear.forward(u)?.transpose(1, 2)?.contiguous()?; // [b, 3d, len]
                                                                           // uc[c,i] = w0·z[c,i-2] + w1·z[c,i-1] + w2·z[c,i] + b, zero before the start.
        let padded = z.pad_with_zeros(D::Minus1, 2, 0)?;
        let tap = |k: usize| -> candle_core::Result<Tensor> {
            let weight = self.short_weight.narrow(1, k, 1)?.unsqueeze(0)?; // [1, 3d, 1]
            padded.narrow(D::Minus1, k, len)?.broadcast_mul(&weight)
        };
        let uc = ((tap(0)? + tap(1)?)? + tap(2)?)?
            .broadcast_add(&self.short_bias.unsqueeze(0)?.unsqueeze(2)?)?;
        let d = self.d;
        let x1 = uc.narrow(1, 0, d)?;
        let x2 = uc.narrow(1, d, d)?;
        let v = uc.narrow(1, 2 * d, d)?;
        let gated = self.filter.forward(&(v * x1)?.contiguous()?)?.mul(&x2)?;
        let residual = self
            .residual_filter
            .forward(&u.transpose(1, 2)?.contiguous()?)?;
        let y = (gated + residual)?.transpose(1, 2)?.contiguous()?;
        self.out_linear.forward(&y)
    }
}

/// `BD(x; W)` for W `[nb, q, p]`: the last dimension of x in nb blocks of p, block k multiplied by
/// `W[k]`, the nb outputs of q concatenated.
fn block_diagonal(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let (nb, q, p) = weight.dims3()?;
    let dims = x.dims().to_vec();
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let blocks = x.reshape((rows, nb, p))?.transpose(0, 1)?.contiguous()?; // [nb, rows, p]
    let out = blocks.matmul(&weight.transpose(1, 2)?.contiguous()?)?; // [nb, rows, q]
    let mut shape = dims;
    let last = shape.len() - 1;
    shape[last] = nb * q;
    out.transpose(0, 1)?.contiguous()?.reshape(shape)
}

/// The gated block-diagonal MLP, with its residual from the mixer's output.
struct MonarchMlp {
    gated: Tensor,
    wo: Tensor,
    wo_bias: Tensor,
    norm: LayerNorm,
    intermediate: usize,
}

impl MonarchMlp {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let (d, i, nb) = (
            config.hidden_size,
            config.intermediate_size,
            config.monarch_mlp_nblocks,
        );
        Ok(MonarchMlp {
            gated: vb.get((nb, 2 * i / nb, d / nb), "gated_layers.weight")?,
            wo: vb.get((nb, d / nb, i / nb), "wo.weight")?,
            wo_bias: vb.get(d, "wo.bias")?,
            norm: layer_norm(d, config.layer_norm_eps, vb.pp("layernorm"))?,
            intermediate: i,
        })
    }

    fn forward(&self, a: &Tensor) -> candle_core::Result<Tensor> {
        let h = block_diagonal(a, &self.gated)?;
        let i = self.intermediate;
        let m = (h.narrow(D::Minus1, 0, i)?.gelu_erf()? * h.narrow(D::Minus1, i, i)?)?;
        let out = block_diagonal(&m, &self.wo)?.broadcast_add(&self.wo_bias)?;
        self.norm.forward(&(out + a)?)
    }
}

struct Layer {
    mixer: SequenceMixer,
    mlp: MonarchMlp,
}

/// The M2-BERT encoder and pooler.
pub struct M2BertModel {
    word_embeddings: Embedding,
    position_embeddings: Tensor,
    token_type_embedding: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    pooler: Linear,
    max_positions: usize,
    device: Device,
}

impl M2BertModel {
    /// Loads the weights under `vb`, with or without the `bert.` prefix (the real checkpoint's
    /// names could not be confirmed offline).
    pub fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        config.check().map_err(candle_core::Error::msg)?;
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let d = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        let word_embeddings =
            candle_nn::embedding(config.vocab_size, d, embeddings.pp("word_embeddings"))?;
        let position_embeddings = embeddings.get(
            (config.max_position_embeddings, d),
            "position_embeddings.weight",
        )?;
        let token_type_embedding = embeddings
            .get((config.type_vocab_size, d), "token_type_embeddings.weight")?
            .get(0)?;
        let embeddings_norm = layer_norm(d, config.layer_norm_eps, embeddings.pp("LayerNorm"))?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let vb = vb.pp("encoder").pp("layer").pp(n);
            layers.push(Layer {
                mixer: SequenceMixer::load(vb.pp("attention"), config)?,
                mlp: MonarchMlp::load(vb.pp("mlp"), config)?,
            });
        }
        let pooler = linear(d, d, vb.pp("pooler").pp("dense"))?;
        Ok(M2BertModel {
            word_embeddings,
            position_embeddings,
            token_type_embedding,
            embeddings_norm,
            layers,
            pooler,
            max_positions: config.max_position_embeddings.min(config.l_max()),
            device: vb.device().clone(),
        })
    }

    /// Longest input.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Last hidden states `[batch, len, d]` and pooled outputs `[batch, d]` (tanh of the pooler
    /// on position 0, not normalized) for rows of equal length. There is no attention mask: the
    /// model has none, and padding is part of the input.
    pub fn forward(&self, ids: &[Vec<u32>]) -> candle_core::Result<(Tensor, Tensor)> {
        let len = ids.first().map_or(0, Vec::len);
        if len == 0 || len > self.max_positions || ids.iter().any(|r| r.len() != len) {
            candle_core::bail!(
                "M2-BERT needs rows of one length in 1..={}",
                self.max_positions
            );
        }
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let input = Tensor::from_vec(flat, (ids.len(), len), &self.device)?;
        let positions = self.position_embeddings.narrow(0, 0, len)?;
        let mut x = self
            .word_embeddings
            .forward(&input)?
            .broadcast_add(&positions)?
            .broadcast_add(&self.token_type_embedding)?;
        x = self.embeddings_norm.forward(&x)?;
        for layer in &self.layers {
            let a = layer.mixer.forward(&x)?;
            x = layer.mlp.forward(&a)?;
        }
        // Contiguous: cuBLAS takes no row stride of a whole sequence.
        let cls = x.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        let pooled = self.pooler.forward(&cls)?.tanh()?;
        Ok((x, pooled))
    }
}

/// M2-BERT retrieval models as an [`crate::Embedder`]: the tokenizer's `[CLS] … [SEP]`, right-padded
/// with the pad id to `pad_to` tokens (the model's maximum by default, as the released model is
/// run), the pooler output L2-normalized (upstream returns it unnormalized; ibex scores by dot
/// product, so the unit vector gives the cosine the model is evaluated with).
pub struct M2BertEmbedder {
    model: M2BertModel,
    tokenizer: tokenizers::Tokenizer,
    pad_id: u32,
    pad_to: usize,
    dimension: usize,
    model_id: String,
}

impl M2BertEmbedder {
    /// Loads the model in `dir` (config.json, tokenizer.json, model.safetensors or shards).
    pub fn load_with_id(
        dir: &std::path::Path,
        model_id: &str,
        device: &Device,
    ) -> crate::Result<Self> {
        let config: Config = crate::folder::read_config(dir)?;
        config
            .check()
            .map_err(|reason| crate::EmbedderError::InvalidModelFile {
                path: dir.join("config.json"),
                reason,
            })?;
        let tokenizer = crate::folder::read_tokenizer(dir)?;
        let files = crate::folder::safetensors_files(dir)?;
        // SAFETY: weight files are memory-mapped read-only and never written while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device)? };
        let model = M2BertModel::load(vb, &config)?;
        Ok(M2BertEmbedder {
            pad_to: model.max_positions(),
            model,
            tokenizer,
            pad_id: config.pad_token_id,
            dimension: config.hidden_size,
            model_id: model_id.to_string(),
        })
    }

    /// Pads inputs to `tokens` instead of the model's maximum. Faster, but the embeddings are no
    /// longer the checkpoint's: the long convolution sees the padding, and on the test fixture
    /// padding a 5-token input to 200 instead of 256 moves its vector by up to 0.07 (unpadded,
    /// cosine -0.26 with the reference). Inputs are truncated to `tokens`.
    pub fn with_pad_to(mut self, tokens: usize) -> Self {
        self.pad_to = tokens.clamp(2, self.model.max_positions());
        self
    }

    /// The token ids of `text`, `[CLS] … [SEP]`, truncated and right-padded to `pad_to`.
    fn input_ids(&self, text: &str) -> crate::Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| crate::EmbedderError::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > self.pad_to {
            // Keep the final [SEP].
            let last = ids[ids.len() - 1];
            ids.truncate(self.pad_to - 1);
            ids.push(last);
        }
        ids.resize(self.pad_to, self.pad_id);
        Ok(ids)
    }

    /// Embeds rows of token ids, all of one length, as the model runs them.
    pub fn embed_ids(&self, rows: &[Vec<u32>]) -> crate::Result<Vec<Vec<f32>>> {
        let (_, pooled) = self.model.forward(rows)?;
        let norms = pooled
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(pooled.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

impl crate::Embedder for M2BertEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_tokens(&self) -> usize {
        self.pad_to - 2
    }

    fn normalized(&self) -> bool {
        true
    }

    /// Queries and documents are embedded alike (the model has no prompts).
    fn embed(&self, texts: &[&str], _kind: crate::TextKind) -> crate::Result<Vec<Vec<f32>>> {
        // Every row has the same padded length, so batches need no sorting; small batches bound
        // the memory of long inputs.
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(4) {
            let rows: Vec<Vec<u32>> = batch
                .iter()
                .map(|t| self.input_ids(t))
                .collect::<crate::Result<_>>()?;
            vectors.extend(self.embed_ids(&rows)?);
        }
        Ok(vectors)
    }

    fn tokenize(&self, text: &str) -> crate::Result<Vec<crate::TokenSpan>> {
        crate::folder::token_spans(&self.tokenizer, text)
    }
}
