//! `ibex compress`: compress retrieved passages for a query.

use std::path::PathBuf;

use ibex::compress::{compress_from_index, default_compressor, read_passages};
use ibex::{Compressor, Result};

use super::{print_json, Context};

/// Arguments of `ibex compress`.
#[derive(clap::Args)]
pub struct Args {
    /// Retrieve the passages from this index (hybrid search).
    #[arg(
        long,
        conflicts_with = "passages",
        required_unless_present = "passages"
    )]
    index: Option<PathBuf>,
    /// JSONL file of passages: {"doc_id", "text", "offset"?} per line.
    #[arg(long)]
    passages: Option<PathBuf>,
    /// The question the compressed context must serve.
    #[arg(long)]
    query: String,
    /// Token budget of the kept text (default: 64).
    #[arg(long)]
    budget: Option<usize>,
    /// Documents retrieved from --index.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Print the compression as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Compresses and prints the kept text (the summary on stderr).
pub fn run(args: Args, context: &Context) -> Result<()> {
    let params = ibex::compressor::IbParams::default();
    let compression = match (args.index, args.passages) {
        (Some(index), _) => compress_from_index(
            &index,
            &args.query,
            args.top_k,
            args.budget,
            params,
            context.device(),
        )?,
        (None, Some(file)) => {
            let passages = read_passages(&file)?;
            let embedder = ibex::embedder::load_model_on(ibex::DEFAULT_MODEL_ID, &context.device)?;
            default_compressor(embedder, params).compress(&args.query, &passages, args.budget)?
        }
        (None, None) => {
            return Err(ibex::IbexError::Usage(
                "give --index DIR or --passages FILE".into(),
            ))
        }
    };
    if args.json {
        return print_json(&compression);
    }
    println!("{}", compression.text);
    eprintln!(
        "kept {} of {} tokens ({:.1}%) in {} spans",
        compression.kept_tokens,
        compression.total_tokens,
        100.0 * compression.rate(),
        compression.spans.len()
    );
    Ok(())
}
