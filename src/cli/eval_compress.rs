//! `ibex eval-compress`: the compressor on NQ-open against equal-budget baselines.

use std::path::PathBuf;

use ibex::Result;

use super::{print_json, Context};

/// `--llm-target`'s values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LlmTarget {
    Question,
    Draft,
}

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
    /// Append each question's result to this file as it is known; run again with the same file
    /// (and settings) to go on where a stopped run left off (see EVALUATION.md).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
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
    /// Answer preservation: when the best passage's score leads the second's by less than this,
    /// the budget is multiplied by --uncertain-factor (0 turns it off).
    #[arg(long)]
    uncertain_margin: Option<f32>,
    /// With --uncertain-margin: how much the budget grows when the selection is uncertain.
    #[arg(long)]
    uncertain_factor: Option<f32>,
    /// Score usefulness with the LLM too (the one `ibex ask` would use: IBEX_LLM_URL, else the
    /// embedded SmolLM2): the embedding's best sentences (and passages) are rescored by the gain
    /// in the model's likelihood of the question given them.
    #[arg(long)]
    llm_scorer: bool,
    /// With --llm-scorer: texts per scoring call the model rescores (the cascade's shortlist).
    #[arg(long, default_value_t = 8)]
    llm_shortlist: usize,
    /// With --llm-scorer: weight of the likelihood gain (nats per question token) added to the
    /// embedding similarity.
    #[arg(long, default_value_t = 0.2)]
    llm_gain_weight: f32,
    /// With --llm-scorer: what the likelihood is taken of: the question given each text
    /// (`question`), or a short draft answer the model first writes from the embedding's best
    /// three texts, given each text and the question (`draft`).
    #[arg(long, value_enum, default_value_t = LlmTarget::Question)]
    llm_target: LlmTarget,
    /// Also score every method's kept text by the LLM's likelihood of the gold answer given it
    /// (the information-bottleneck score of Zhu et al.: the answer gain over no context, less
    /// β times the share of tokens kept; see EVALUATION.md). Uses the same LLM as --llm-scorer.
    #[arg(long)]
    ib_score: bool,
    /// With --ib-score: β, the weight of the kept share against the answer gain (nats/token).
    #[arg(long, default_value_t = 1.0)]
    ib_beta: f64,
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
    if let Some(margin) = args.uncertain_margin {
        params.uncertain_margin = margin;
    }
    if let Some(factor) = args.uncertain_factor {
        params.uncertain_budget_factor = factor;
    }
    let llm = if args.llm_scorer || args.ib_score {
        Some(ibex::eval::CompressEvalLlm {
            generator: ibex::generator::default_generator()?,
            scoring: args.llm_scorer.then_some(ibex::compressor::LlmScoring {
                shortlist: args.llm_shortlist,
                weight: args.llm_gain_weight,
                target: match args.llm_target {
                    LlmTarget::Question => ibex::compressor::ScoringTarget::Question,
                    LlmTarget::Draft => ibex::compressor::ScoringTarget::DraftAnswer,
                },
            }),
            ib_beta: args.ib_score.then_some(args.ib_beta),
        })
    } else {
        None
    };
    let report = ibex::eval::evaluate_compression(
        &args.nq,
        &args.index,
        &context.index_options(),
        &ibex::eval::NqRun {
            distractors: args.distractors,
            limit: args.limit,
            checkpoint: args.checkpoint,
        },
        params,
        llm,
    )?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{} questions ({} with an answer in their context); scorer {}: {:.2} s and {:.1} model calls per question",
        report.ib.questions,
        report.answerable,
        report.scorer,
        report.seconds_per_question,
        report.model_calls_per_question
    );
    let scored = report.ib.information_bottleneck.is_some();
    if scored {
        println!(
            "{:<18} {:>12} {:>10} {:>12} {:>9}",
            "method", "compression", "retention", "answer gain", "IB score"
        );
    } else {
        println!("{:<18} {:>12} {:>10}", "method", "compression", "retention");
    }
    let figures = std::iter::once(("ib", &report.ib))
        .chain(report.baselines.iter().map(|(n, f)| (n.as_str(), f)));
    for (name, f) in figures {
        let ib = f
            .information_bottleneck
            .map(|ib| format!(" {:>12.3} {:>9.3}", ib.answer_gain, ib.score))
            .unwrap_or_default();
        println!(
            "{:<18} {:>11.1}% {:>9.1}%{ib}",
            name,
            100.0 * f.compression,
            100.0 * f.retention
        );
    }
    Ok(())
}
