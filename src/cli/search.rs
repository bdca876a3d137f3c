//! `ibex search`: search an index.

use std::path::PathBuf;

use ibex::search::MetadataFilter;
use ibex::{Mode, Result};

use super::args::RankingArgs;
use super::{print_json, stdout_error, Context};

/// Arguments of `ibex search`.
#[derive(clap::Args)]
pub struct Args {
    /// The index directory.
    #[arg(long)]
    index: PathBuf,
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Passages shown per document.
    #[arg(long, default_value_t = 2)]
    passages: usize,
    /// Metadata equality filter key=value (repeatable; all must hold).
    #[arg(long = "filter")]
    filters: Vec<String>,
    #[command(flatten)]
    ranking: RankingArgs,
    /// Print the results as one JSON object.
    #[arg(long)]
    json: bool,
    /// The query text.
    query: String,
}

/// Searches (BM25 alone loads no model) and prints the results.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let mut request = args.ranking.request(args.query)?;
    let (index, embedder) = if request.mode == Mode::Bm25 {
        (ibex::Index::open(&args.index)?, None)
    } else {
        let (index, embedder) = ibex::indexer::open_index(&args.index, None, context.device())?;
        (index, Some(embedder))
    };
    request.top_k = args.top_k;
    request.passages = args.passages;
    request.filters = args
        .filters
        .iter()
        .map(|f| f.parse::<MetadataFilter>())
        .collect::<std::result::Result<_, _>>()?;
    let results = ibex::search::search(&index, embedder.as_deref(), &request)?;
    if args.json {
        return print_json(&results);
    }
    let mut out = std::io::stdout().lock();
    ibex::quickstart::print_results(&mut out, &results).map_err(stdout_error)
}
