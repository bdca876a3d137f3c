//! M2-BERT CPU throughput by input length, with the real model's shapes (768 hidden, 12 layers,
//! 3072 intermediate, filter order 128, 32k positions) and zero weights (speed does not depend on
//! the values). For each length: seconds per forward pass, tokens/s, and the time relative to the
//! shortest length beside what L·log L and L² growth would predict, all in one run.
//!
//! Usage: m2_bert_scaling [LENGTH ...]   (default 512 2048 8192)

use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use ibex_embedder::m2_bert::{Config, M2BertModel};

/// The process's peak resident memory so far (lengths run in increasing order, so each row's
/// figure is that length's peak).
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lengths: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let lengths = if lengths.is_empty() {
        vec![512, 2048, 8192]
    } else {
        lengths
    };
    let config: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 30528, "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "max_position_embeddings": 32768, "long_conv_l_max": 32768,
        "hyena_filter_order": 128, "hyena_emb_dim": 5, "monarch_mlp_nblocks": 4,
        "monarch_mixer_sequence_mixing": true
    }))?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = M2BertModel::load(vb, &config)?;
    println!(
        "| tokens | seconds | tokens/s | time / time({}) | L·log L ratio | L² ratio | peak RSS MiB |",
        lengths[0]
    );
    println!("|---|---|---|---|---|---|---|");
    let mut base = None;
    for &len in &lengths {
        let ids = vec![vec![101u32; len]];
        // The first pass at a length also computes the filters' spectra; time the second.
        model.forward(&ids)?;
        let started = Instant::now();
        model.forward(&ids)?;
        let seconds = started.elapsed().as_secs_f64();
        let (base_len, base_seconds) = *base.get_or_insert((len, seconds));
        let r = len as f64 / base_len as f64;
        let nlogn = r * (len as f64).ln() / (base_len as f64).ln();
        println!(
            "| {len} | {seconds:.2} | {:.0} | {:.2} | {nlogn:.2} | {:.1} | {} |",
            len as f64 / seconds,
            seconds / base_seconds,
            r * r,
            peak_rss_mib()
        );
    }
    Ok(())
}
