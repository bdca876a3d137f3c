//! `ibex search`: search an index.

use std::path::PathBuf;

use ibex::search::Filter;
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
    /// Metadata filter (repeatable; all must hold): key=value, key!=value, key>=value (also >,
    /// <=, <; numbers or RFC 3339 dates), 'key in (a,b)', 'key not in (a,b)', 'key exists',
    /// 'key not exists'.
    #[arg(long = "filter")]
    filters: Vec<String>,
    /// A filter in the JSON operator syntax of the REST API (repeatable; all must hold), e.g.
    /// '{"year": {"$gte": 2020}, "$or": [{"lang": "en"}, {"lang": "de"}]}'.
    #[arg(long = "filter-json")]
    filter_json: Vec<String>,
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
        .map(|f| Filter::parse_cli(f))
        .collect::<std::result::Result<_, _>>()?;
    for text in &args.filter_json {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            ibex::search::SearchError::InvalidFilter(format!(
                "--filter-json {text:?} is not JSON: {e}"
            ))
        })?;
        request.filters.push(Filter::from_json(&value)?);
    }
    let results = ibex::search::search(&index, embedder.as_deref(), &request)?;
    if args.json {
        return print_json(&results);
    }
    let mut out = std::io::stdout().lock();
    ibex::quickstart::print_results(&mut out, &results).map_err(stdout_error)
}
