//! Throughput of the seed models on a GPU, at the real checkpoints' shapes with random weights
//! (speed does not depend on the values), against the device's own bf16 matrix-product rate
//! measured in the same run.
//!
//! Usage (a build with `--features cuda`; `IBEX_DEVICE` picks the device, default `cuda`):
//!   gpu_throughput matmul                 the device's bf16 GEMM rate (8192³, through candle)
//!   gpu_throughput e5 [BATCHxLEN ...]     E5-Mistral-7B in bf16 (default 16x512 8x2048 2x4096)
//!   gpu_throughput m2 [LEN ...]           M2-BERT-80M-32k in f32 (default 2048 8192 32768)
//!   gpu_throughput all                    all three
//!
//! `IBEX_E5_LAYERS=N` runs E5-Mistral with N layers instead of 32 (for profilers).
//!
//! E5-Mistral's model FLOPs per token are 2 × 6.98 B non-embedding parameters = 13.96 GFLOP plus
//! attention's 4·L·d per layer (QKᵀ and the weighted sum over L keys); "MFU" is those FLOPs per
//! second over the measured GEMM rate and over the H100's 989 TFLOP/s dense bf16 datasheet peak.

use std::time::Instant;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use ibex_embedder::m2_bert::{self, M2BertModel};
use ibex_embedder::mistral::{self, l2_normalize, last_token_pool, MistralModel};

/// Every weight a model asks for, drawn from N(0, 0.02²) on the device.
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        _name: &str,
        _hints: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        Tensor::randn(0f32, 0.02, shape, device)?.to_dtype(dtype)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _device: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        // The checkpoints store neither the `model.` prefix (E5) nor M2's optional buffers'
        // absence matters for speed; say every plain name exists.
        !name.starts_with("model.")
    }
}

const H100_DENSE_BF16_TFLOPS: f64 = 989.0;

/// Seconds of the median of `runs` calls of `f` (after one warm-up call), synchronized.
fn time<T>(
    device: &Device,
    runs: usize,
    mut f: impl FnMut() -> candle_core::Result<T>,
) -> candle_core::Result<f64> {
    f()?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f()?;
        device.synchronize()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The device's bf16 GEMM rate in TFLOP/s (8192³ through candle, i.e. cuBLAS).
fn matmul_tflops(device: &Device) -> candle_core::Result<f64> {
    let n = 8192;
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(DType::BF16)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(DType::BF16)?;
    let seconds = time(device, 10, || a.matmul(&b))?;
    Ok(2.0 * (n as f64).powi(3) / seconds / 1e12)
}

fn e5(device: &Device, shapes: &[(usize, usize)], gemm_tflops: f64) -> candle_core::Result<()> {
    let config: mistral::Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "sliding_window": 4096, "hidden_act": "silu"
    }))
    .map_err(candle_core::Error::wrap)?;
    let mut config = config;
    if let Some(layers) = std::env::var("IBEX_E5_LAYERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.num_hidden_layers = layers;
    }
    let started = Instant::now();
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), DType::BF16, device.clone());
    let model = MistralModel::load(vb, &config)?;
    device.synchronize()?;
    eprintln!(
        "E5-Mistral-7B random bf16 weights on the device in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (d, layers) = (config.hidden_size as f64, config.num_hidden_layers as f64);
    // 6.98 B non-embedding parameters in 32 layers (the final norm's 4,096 are negligible).
    let dense_flops_per_token = 2.0 * 6.98e9 * layers / 32.0;
    println!("| batch × tokens | seconds/batch | tokens/s | GFLOP/token | TFLOP/s | MFU vs measured GEMM | MFU vs 989 |");
    println!("|---|---|---|---|---|---|---|");
    for &(batch, len) in shapes {
        let ids: Vec<Vec<u32>> = (0..batch)
            .map(|b| {
                (0..len)
                    .map(|i| ((b * 7919 + i * 104729) % 31999 + 1) as u32)
                    .collect()
            })
            .collect();
        let mask = vec![vec![1u32; len]; batch];
        let seconds = time(device, 3, || {
            let hidden = model.forward(&ids, &mask)?;
            l2_normalize(&last_token_pool(&hidden, &mask)?)?
                .to_dtype(DType::F32)?
                .to_vec2::<f32>()
        })?;
        let tokens = (batch * len) as f64;
        let flops_per_token = dense_flops_per_token + 4.0 * len as f64 * d * layers;
        let tflops = tokens * flops_per_token / seconds / 1e12;
        println!(
            "| {batch} × {len} | {seconds:.3} | {:.0} | {:.2} | {tflops:.0} | {:.2} | {:.2} |",
            tokens / seconds,
            flops_per_token / 1e9,
            tflops / gemm_tflops,
            tflops / H100_DENSE_BF16_TFLOPS
        );
    }
    Ok(())
}

fn m2(device: &Device, lengths: &[usize]) -> candle_core::Result<()> {
    let config: m2_bert::Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 30528, "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "max_position_embeddings": 32768, "long_conv_l_max": 32768,
        "hyena_filter_order": 128, "hyena_emb_dim": 5, "monarch_mlp_nblocks": 4,
        "monarch_mixer_sequence_mixing": true
    }))
    .map_err(candle_core::Error::wrap)?;
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), DType::F32, device.clone());
    let model = M2BertModel::load(vb, &config)?;
    println!(
        "| tokens | seconds/sequence (first, with filter spectra) | seconds/sequence | tokens/s |"
    );
    println!("|---|---|---|---|");
    for &len in lengths {
        let ids = vec![(0..len)
            .map(|i| (i % 30000 + 1) as u32)
            .collect::<Vec<u32>>()];
        let started = Instant::now();
        model.forward(&ids)?.1.to_vec2::<f32>()?;
        let first = started.elapsed().as_secs_f64();
        let seconds = time(device, 3, || model.forward(&ids)?.1.to_vec2::<f32>())?;
        println!(
            "| {len} | {first:.2} | {seconds:.3} | {:.0} |",
            len as f64 / seconds
        );
    }
    Ok(())
}

fn parse_shapes(args: &[String]) -> Result<Vec<(usize, usize)>, String> {
    args.iter()
        .map(|a| {
            let (b, l) = a
                .split_once('x')
                .ok_or_else(|| format!("{a:?}: expected BATCHxLEN"))?;
            Ok((
                b.parse().map_err(|e| format!("{a:?}: {e}"))?,
                l.parse().map_err(|e| format!("{a:?}: {e}"))?,
            ))
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("all");
    let rest = args.get(1..).unwrap_or_default();
    let device_name = std::env::var("IBEX_DEVICE").unwrap_or_else(|_| "cuda".into());
    let device = ibex_embedder::device::parse_device(&device_name)?;
    let gemm = matmul_tflops(&device)?;
    println!("bf16 GEMM 8192³ through candle: {gemm:.0} TFLOP/s\n");
    let e5_shapes = if which == "e5" && !rest.is_empty() {
        parse_shapes(rest)?
    } else {
        vec![(16, 512), (8, 2048), (2, 4096)]
    };
    let m2_lengths: Vec<usize> = if which == "m2" && !rest.is_empty() {
        rest.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    } else {
        vec![2048, 8192, 32768]
    };
    if which == "e5" || which == "all" {
        e5(&device, &e5_shapes, gemm)?;
        println!();
    }
    if which == "m2" || which == "all" {
        m2(&device, &m2_lengths)?;
    }
    if !matches!(which, "matmul" | "e5" | "m2" | "all") {
        return Err(format!("unknown benchmark {which:?}: matmul, e5, m2 or all").into());
    }
    Ok(())
}
