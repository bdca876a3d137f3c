//! `ibex index`: index a corpus into an index directory.

use std::io::IsTerminal;
use std::path::PathBuf;

use ibex::{IndexOptions, IndexProgress, IndexReport, Result};

use super::args::IndexTarget;
use super::{print_json, Context};

/// Arguments of `ibex index`.
#[derive(clap::Args)]
pub struct Args {
    corpus: PathBuf,
    #[command(flatten)]
    target: IndexTarget,
    /// Documents per commit.
    #[arg(long, default_value_t = 1000)]
    commit_every: usize,
    /// Vector segments of at least this many chunks get an HNSW graph; smaller ones are
    /// searched exactly (a full scan is faster below it: BENCHMARKS.md measured the crossover).
    #[arg(long, default_value_t = ibex::indexer::vectors::HNSW_MIN_VECTORS)]
    graph_threshold: usize,
    /// How the index holds its vectors in memory: f32 (exact), int8 (4x less memory) or
    /// binary (32x less); the last two rank by their codes and rescore the best candidates at
    /// full precision from the segment files (BENCHMARKS.md, "Quantized vectors"). Default: the
    /// index's setting (f32 for a new index). Changing it rewrites nothing.
    #[arg(long)]
    vector_storage: Option<ibex::indexer::VectorStorage>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Indexes the corpus, with a progress bar on a terminal, and prints the summary.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let options = IndexOptions {
        commit_every: args.commit_every,
        graph_threshold: args.graph_threshold,
        vector_storage: args.vector_storage,
        ..args.target.options(&context.device)
    };
    let index = &args.target.index;
    let report = ibex::index_corpus(&args.corpus, index, &options, progress_bar())?;
    warn_skipped(&report);
    if args.json {
        return print_json(&report);
    }
    let embedded = report.added + report.replaced;
    eprintln!(
        "indexed {} documents into {} in {:.1}s: {} added, {} replaced, {} unchanged; {} chunks embedded ({:.1} docs/s, {:.1} chunks/s); the index holds {} documents, {} chunks",
        report.added + report.replaced + report.unchanged,
        index.display(),
        report.seconds,
        report.added,
        report.replaced,
        report.unchanged,
        report.chunks_embedded,
        embedded as f64 / report.seconds.max(1e-9),
        report.chunks_embedded as f64 / report.seconds.max(1e-9),
        report.documents_in_index,
        report.chunks_in_index
    );
    Ok(())
}

/// Names (up to 20 of) the documents skipped for having neither title nor text.
fn warn_skipped(report: &IndexReport) {
    if report.skipped_empty.is_empty() {
        return;
    }
    let shown: Vec<&str> = report
        .skipped_empty
        .iter()
        .take(20)
        .map(String::as_str)
        .collect();
    let more = report.skipped_empty.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    eprintln!(
        "warning: skipped {} documents with neither title nor text: {}{more}",
        report.skipped_empty.len(),
        shown.join(", ")
    );
}

/// A progress bar on stderr when it is a terminal; silent otherwise.
fn progress_bar() -> impl FnMut(IndexProgress) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} docs  {per_sec} docs/s  {msg}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = std::time::Instant::now();
    move |p: IndexProgress| {
        if let Some(bar) = &bar {
            bar.set_length(p.documents_total as u64);
            bar.set_position(p.documents_done as u64);
            let rate = p.chunks_embedded as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{} chunks ({rate:.0} chunks/s)", p.chunks_embedded));
            if p.documents_done >= p.documents_total {
                bar.finish_and_clear();
            }
        }
    }
}
