//! `ibex eval-compress`: the compressor on NQ-open against equal-budget baselines.

use std::path::PathBuf;

use ibex::Result;

use super::{print_json, Context};

/// Arguments of `ibex eval-compress`.
#[derive(clap::Args)]
pub struct Args {
    /// The NQ file (JSONL or .jsonl.gz, as ../shared/data/nq-open-oracle-dev).
    nq: PathBuf,
    /// Index of the passage pool (created from the file's passages unless it holds them).
    #[arg(long)]
    index: PathBuf,
    /// Distractor passages per question.
    #[arg(long, default_value_t = 9)]
    distractors: usize,
    /// Evaluate only the first N questions.
    #[arg(long)]
    limit: Option<usize>,
    /// Token budget (default: 64).
    #[arg(long)]
    budget: Option<usize>,
    /// Relevance floor τ of the selector.
    #[arg(long)]
    floor: Option<f32>,
    /// Weight of a sentence's passage in its usefulness (0 to 1).
    #[arg(long)]
    passage_weight: Option<f32>,
    /// β: cost per 100 kept tokens.
    #[arg(long)]
    beta: Option<f32>,
    /// Keep the sentence before a kept one (same passage, above the floor, within the budget)
    /// when it has at most this many tokens: the coherence rule (0, the default, turns it off).
    #[arg(long)]
    neighbour_tokens: Option<usize>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Evaluates and prints compression and retention per method.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let mut params = ibex::compressor::IbParams::default();
    if args.budget.is_some() {
        params.default_budget = args.budget;
    }
    if let Some(floor) = args.floor {
        params.relevance_floor = floor;
    }
    if let Some(weight) = args.passage_weight {
        params.passage_weight = weight;
    }
    if let Some(beta) = args.beta {
        params.beta = beta;
    }
    if let Some(tokens) = args.neighbour_tokens {
        params.neighbour_tokens = tokens;
    }
    let report = ibex::eval::evaluate_compression(
        &args.nq,
        &args.index,
        &context.index_options(),
        args.distractors,
        args.limit,
        params,
    )?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{} questions ({} with an answer in their context)",
        report.ib.questions, report.answerable
    );
    println!("{:<18} {:>12} {:>10}", "method", "compression", "retention");
    let figures = std::iter::once(("ib", &report.ib))
        .chain(report.baselines.iter().map(|(n, f)| (n.as_str(), f)));
    for (name, f) in figures {
        println!(
            "{:<18} {:>11.1}% {:>9.1}%",
            name,
            100.0 * f.compression,
            100.0 * f.retention
        );
    }
    Ok(())
}
