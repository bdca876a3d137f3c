//! `ibex eval-rag`: RAG answers on NQ-open, with and without compression.

use std::path::PathBuf;

use ibex::Result;

use super::{print_json, progress_line, Context};

/// Arguments of `ibex eval-rag`.
#[derive(clap::Args)]
pub struct Args {
    nq: PathBuf,
    /// Index of the passage pool (created from the file's passages unless it holds them).
    #[arg(long)]
    index: PathBuf,
    #[arg(long, default_value_t = 4)]
    distractors: usize,
    /// Evaluate only the first N questions.
    #[arg(long)]
    limit: Option<usize>,
    /// Append each question's result to this file as it is known; run again with the same file
    /// (and settings) to go on where a stopped run left off (see EVALUATION.md).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Evaluates and prints EM, F1, containment and tokens for both contexts.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let generator = ibex::generator::default_generator()?;
    let report = ibex::eval::evaluate_rag(
        &args.nq,
        &args.index,
        &context.index_options(),
        &ibex::eval::NqRun {
            distractors: args.distractors,
            limit: args.limit,
            checkpoint: args.checkpoint,
        },
        generator.as_ref(),
        progress_line("questions"),
    )?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{}: {} questions, gold passage + {} distractors",
        report.model, report.questions, report.distractors
    );
    println!(
        "{:<14} {:>6} {:>6} {:>9} {:>14} {:>15} {:>9} {:>8} {:>15} {:>13}",
        "context",
        "EM",
        "F1",
        "contains",
        "prompt tokens",
        "context tokens",
        "s/answer",
        "flagged",
        "flagged|correct",
        "flagged|wrong"
    );
    for (name, f) in [
        ("compressed", report.compressed),
        ("uncompressed", report.uncompressed),
    ] {
        println!(
            "{:<14} {:>6.3} {:>6.3} {:>9.3} {:>14.0} {:>15.0} {:>9.2} {:>8.3} {:>15.3} {:>13.3}",
            name,
            f.exact_match,
            f.f1,
            f.contains_answer,
            f.prompt_tokens,
            f.context_tokens,
            f.seconds_per_answer,
            f.flagged,
            f.flagged_when_correct,
            f.flagged_when_wrong
        );
    }
    Ok(())
}
