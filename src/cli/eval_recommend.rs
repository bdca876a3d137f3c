//! `ibex eval-recommend`: generative recommendation on MovieLens-100k, leave-one-out.

use std::path::PathBuf;

use ibex::{IbexError, Result};

use super::{print_json, progress_line, Context};

/// Arguments of `ibex eval-recommend`.
#[derive(clap::Args)]
pub struct Args {
    /// The MovieLens-100k folder (u.item, u.genre, u.data[.gz]).
    movielens: PathBuf,
    /// Index of the catalog [default: a temporary folder].
    #[arg(long)]
    index: Option<PathBuf>,
    /// Evaluate only the first N users.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 20)]
    candidates: usize,
    /// Weight of the LLM's order in the reported pipeline figure. Above 0 the LLM chooses among
    /// all candidates, which the weight sweep needs to score every weight from one run (its
    /// weight-0 row is the ranking `ibex recommend` gives by default); 0 shows the LLM only the
    /// final ten, and the sweep then has nothing to measure.
    #[arg(long, default_value_t = 0.1)]
    llm_weight: f32,
    /// Weight of embedding similarity against co-occurrence in the candidates.
    #[arg(long, default_value_t = 0.25)]
    embedding_weight: f32,
    /// Half-life (in items) of history items in co-occurrence scores.
    #[arg(long, default_value_t = 1.0)]
    recency_half_life: f32,
    /// Evaluate the candidate ranking and the baselines only (no LLM).
    #[arg(long)]
    no_llm: bool,
    #[arg(long)]
    json: bool,
}

/// Evaluates and prints HR@10 and NDCG@10 per method and the LLM's error rates.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let generator = if args.no_llm {
        None
    } else {
        Some(ibex::generator::default_generator()?)
    };
    let options = ibex::pipeline::RecommendOptions {
        candidates: args.candidates,
        llm_weight: args.llm_weight,
        embedding_weight: args.embedding_weight,
        recency_half_life: Some(args.recency_half_life),
        with_reasons: false,
        ..Default::default()
    };
    let temporary = tempfile::tempdir().map_err(|e| IbexError::Io {
        context: "creating a temporary index folder".into(),
        source: e,
    })?;
    let index = args
        .index
        .unwrap_or_else(|| temporary.path().join("movielens"));
    let report = ibex::eval::evaluate_recommendation(
        &args.movielens,
        &index,
        &context.index_options(),
        args.limit,
        generator.as_deref(),
        &options,
        progress_line("users"),
    )?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{} users, model {} ({})",
        report.users,
        report.model,
        if report.constrained {
            "constrained decoding"
        } else {
            "validated output"
        }
    );
    println!("{:<22} {:>7} {:>8}", "method", "HR@10", "NDCG@10");
    println!(
        "{:<22} {:>7.4} {:>8.4}",
        "ibex (full pipeline)", report.hr_at_10, report.ndcg_at_10
    );
    for (name, f) in &report.baselines {
        println!("{:<22} {:>7.4} {:>8.4}", name, f.hr_at_10, f.ndcg_at_10);
    }
    for (weight, f) in &report.llm_weight_sweep {
        println!(
            "{:<22} {:>7.4} {:>8.4}",
            format!("llm_weight {weight}"),
            f.hr_at_10,
            f.ndcg_at_10
        );
    }
    println!(
        "LLM output error rates: candidate {:.3}, duplicate {:.3}, history {:.3}, unparseable {:.3}; fallback {:.3}; {:.2} s/user",
        report.candidate_error_rate, report.duplicate_rate, report.history_repeat_rate, report.unparseable_rate, report.fallback_rate, report.seconds_per_user
    );
    Ok(())
}
