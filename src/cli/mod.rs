//! The commands of `ibex`, one module each: its arguments, the library call, and the printing.
//! Nothing here holds logic of its own.

mod args;
mod ask;
mod compress;
mod delete;
mod embed;
mod eval;
mod eval_compress;
mod eval_rag;
mod eval_recommend;
mod index;
mod index_interactions;
mod info;
mod migrate;
mod quickstart;
mod recommend;
mod search;
mod serve;
mod snapshot;

use std::io::{IsTerminal, Write};

use clap::{Parser, Subcommand};
use ibex::{Device, IbexError, Result};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "ibex",
    version,
    about = "Hybrid (BM25 + dense) search over long documents, for retrieval-augmented generation."
)]
pub struct Cli {
    /// Where models run: auto (CUDA when built with it and a driver is present, else CPU), cpu,
    /// cuda or cuda:N. Also read from IBEX_DEVICE.
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the default model, index the bundled sample corpus, run its example queries, then
    /// serve the search page and API (Ctrl-C stops).
    Quickstart(quickstart::Args),
    /// Serve the REST API and search page over the indexes of a data directory.
    Serve(serve::Args),
    /// Index a corpus: a BEIR folder, a .jsonl/.jsonl.gz file, or a folder of .txt/.md files.
    Index(index::Args),
    /// Delete documents by id.
    Delete(delete::Args),
    /// Show an index's documents, chunks, model, chunking, generation, size and segments.
    Info(info::Args),
    /// Upgrade an index written by an older ibex to this version's format, in place (metadata
    /// re-indexed for typed filters; vectors kept, nothing re-embedded).
    Migrate(migrate::Args),
    /// Take a consistent snapshot of an index's last commit while writers keep going.
    Snapshot(snapshot::SnapshotArgs),
    /// Make a new index from a snapshot (checked first).
    Restore(snapshot::RestoreArgs),
    /// Search an index.
    Search(search::Args),
    /// Evaluate on a BEIR collection (indexing it into --index first unless already there).
    Eval(eval::Args),
    /// Compress retrieved passages for a query (information-bottleneck sentence selection):
    /// from an index (retrieve, then compress) or from a JSONL file of passages.
    Compress(compress::Args),
    /// Evaluate the compressor on an NQ-open oracle file (gold passage plus retrieved distractors).
    EvalCompress(eval_compress::Args),
    /// Answer a question from an index: retrieve (hybrid), compress, and ask the LLM (the embedded
    /// SmolLM2 unless IBEX_LLM_URL names an OpenAI-compatible server); prints the answer with its
    /// checked citations.
    Ask(ask::Args),
    /// Evaluate RAG answers on an NQ-open oracle file (gold passage plus retrieved distractors):
    /// exact match and F1, with and without compression, and the tokens sent to the LLM.
    EvalRag(eval_rag::Args),
    /// Recommend catalog items for a user's history: candidates by embedding similarity (and
    /// co-occurrence when interaction data is known), ordered and explained by the LLM, constrained
    /// to real candidates.
    Recommend(recommend::Args),
    /// Install interaction data (`user item [rating [timestamp]]` per line, plain or gzip) into a
    /// catalog index, so recommendations add co-occurrence to their candidates.
    IndexInteractions(index_interactions::Args),
    /// Evaluate generative recommendation on MovieLens-100k (leave-one-out on each user's last
    /// rating): HR@10 and NDCG@10 of popularity, item-kNN, embedding similarity and the full
    /// pipeline, with the LLM's error rates.
    EvalRecommend(eval_recommend::Args),
    /// Embed texts: one per line on stdin (or JSONL with a "text" field); one JSON array per line out.
    Embed(embed::Args),
}

/// What every command gets besides its own arguments.
pub struct Context {
    /// Where models run, from `--device` or `IBEX_DEVICE` (default: auto), resolved once so a bad
    /// name fails before any work.
    pub device: Device,
}

impl Context {
    /// The device, as the library's optional parameters take it.
    pub fn device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    /// Indexing options with the context's device and the library's defaults.
    pub fn index_options(&self) -> ibex::IndexOptions {
        ibex::IndexOptions {
            device: Some(self.device.clone()),
            ..ibex::IndexOptions::default()
        }
    }
}

impl Cli {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let device_name = match self.device {
            Some(name) => name,
            None => std::env::var(ibex::embedder::device::DEVICE_ENV).unwrap_or_default(),
        };
        let context = Context {
            device: ibex::embedder::device::parse_device(&device_name)?,
        };
        match self.command {
            Command::Quickstart(args) => quickstart::run(args, &context),
            Command::Serve(args) => serve::run(args, &context),
            Command::Index(args) => index::run(args, &context),
            Command::Delete(args) => delete::run(args),
            Command::Info(args) => info::run(args),
            Command::Migrate(args) => migrate::run(args),
            Command::Snapshot(args) => snapshot::snapshot(args),
            Command::Restore(args) => snapshot::restore(args),
            Command::Search(args) => search::run(args, &context),
            Command::Eval(args) => eval::run(args, &context),
            Command::Compress(args) => compress::run(args, &context),
            Command::EvalCompress(args) => eval_compress::run(args, &context),
            Command::Ask(args) => ask::run(args, &context),
            Command::EvalRag(args) => eval_rag::run(args, &context),
            Command::Recommend(args) => recommend::run(args, &context),
            Command::IndexInteractions(args) => index_interactions::run(args),
            Command::EvalRecommend(args) => eval_recommend::run(args, &context),
            Command::Embed(args) => embed::run(args, &context),
        }
    }
}

/// The error of a failed write to stdout (a closed pipe, a full disk).
pub fn stdout_error(e: std::io::Error) -> IbexError {
    IbexError::Io {
        context: "writing to stdout".into(),
        source: e,
    }
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(value)
        .map_err(|e| IbexError::Output(format!("cannot encode the result as JSON: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(stdout_error)
}

/// A progress line `done/total what` on stderr, redrawn in place, when stderr is a terminal.
pub fn progress_line(what: &'static str) -> impl FnMut(usize, usize) {
    let terminal = std::io::stderr().is_terminal();
    move |done, total| {
        if terminal {
            eprint!("\r{done}/{total} {what}");
        }
    }
}
