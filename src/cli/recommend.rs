//! `ibex recommend`: recommend catalog items for a user's history.

use std::path::PathBuf;

use ibex::recommend::{parse_history, recommend_from_index};
use ibex::Result;

use super::{print_json, Context};

/// Arguments of `ibex recommend`.
#[derive(clap::Args)]
pub struct Args {
    /// The catalog index (one document per item).
    #[arg(long)]
    index: PathBuf,
    /// The user's items, oldest first: `ID,ID,...`, or `@FILE` with one id per line.
    #[arg(long, default_value = "")]
    history: String,
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// What the user asks for, in their words ("something lighter").
    #[arg(long)]
    query: Option<String>,
    /// Interaction data (`user item [rating [timestamp]]` per line) for co-occurrence, instead
    /// of the index's installed interactions.
    #[arg(long)]
    interactions: Option<PathBuf>,
    /// Candidates the LLM chooses from (with --llm-weight above 0).
    #[arg(long, default_value_t = 20)]
    candidates: usize,
    /// Weight of the LLM's order against the candidate order. At 0 (the default) the picks are
    /// the first K candidates and the LLM only explains them: the embedded model's order made
    /// results worse at every weight measured (EVALUATION.md). Raise it for an LLM server whose
    /// `ibex eval-recommend` weight sweep shows a gain.
    #[arg(long, default_value_t = 0.0)]
    llm_weight: f32,
    /// Skip the LLM's one-sentence reasons (faster).
    #[arg(long)]
    no_reasons: bool,
    #[arg(long)]
    json: bool,
}

/// Recommends and prints the items with their reasons, and the LLM's output errors on stderr.
pub fn run(args: Args, context: &Context) -> Result<()> {
    if !(args.llm_weight.is_finite() && args.llm_weight >= 0.0) {
        return Err(ibex::IbexError::Usage(format!(
            "--llm-weight must be a number of at least 0, not {}",
            args.llm_weight
        )));
    }
    let history = parse_history(&args.history)?;
    let generator = ibex::generator::default_generator()?;
    let options = ibex::pipeline::RecommendOptions {
        k: args.k,
        candidates: args.candidates,
        with_reasons: !args.no_reasons,
        llm_weight: args.llm_weight,
        ..Default::default()
    };
    let result = recommend_from_index(
        &args.index,
        &history,
        args.query.as_deref(),
        args.interactions.as_deref(),
        generator.as_ref(),
        &options,
        context.device(),
    )?;
    if args.json {
        return print_json(&result);
    }
    for (rank, item) in result.items.iter().enumerate() {
        match &item.reason {
            Some(reason) => println!("{:>2}. {} {}: {reason}", rank + 1, item.id, item.title),
            None => println!("{:>2}. {} {}", rank + 1, item.id, item.title),
        }
    }
    let e = result.errors;
    eprintln!(
        "{} ({}): {} candidates; output errors: {} not candidates, {} duplicates, {} from the history, {} unparseable{}",
        result.model,
        if result.constrained { "constrained decoding" } else { "validated output" },
        result.candidates.len(),
        e.candidate_errors,
        e.duplicates,
        e.history_repeats,
        e.unparseable,
        if e.fell_back { "; fell back to the candidate ranking" } else { "" }
    );
    Ok(())
}
