//! `ibex eval`: retrieval quality on a BEIR collection.

use std::path::PathBuf;

use ibex::Result;

use super::args::{IndexTarget, RankingArgs};
use super::{print_json, Context};

/// Arguments of `ibex eval`.
#[derive(clap::Args)]
pub struct Args {
    beir_dir: PathBuf,
    #[command(flatten)]
    target: IndexTarget,
    #[command(flatten)]
    ranking: RankingArgs,
    /// Print the measures as one JSON object.
    #[arg(long)]
    json: bool,
    /// Write a TREC run file (for trec_eval or pytrec_eval).
    #[arg(long)]
    run_file: Option<PathBuf>,
}

/// Indexes the collection unless already there, evaluates, and prints the measures.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let request = args.ranking.request(String::new())?;
    let report = ibex::eval::evaluate_beir(
        &args.beir_dir,
        &args.target.index,
        &request,
        &args.target.options(&context.device),
        args.run_file.as_deref(),
    )?;
    if args.json {
        return print_json(&report);
    }
    let m = report.mean;
    println!(
        "{} ({}, {} queries): nDCG@10 {:.4}  Recall@100 {:.4}  MAP {:.4}  MRR@10 {:.4}  query p50 {:.1} ms",
        args.beir_dir.display(),
        request.mode,
        report.queries,
        m.ndcg_at_10,
        m.recall_at_100,
        m.map,
        m.mrr_at_10,
        report.latency_ms_p50
    );
    Ok(())
}
