//! `ibex search`: search an index.

use std::path::PathBuf;

use std::io::Write;

use ibex::search::{FacetScope, Filter, GroupBy, Mmr, TotalRelation};
use ibex::{Mode, Result, SearchResults};

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
    /// Ranked documents (groups with --group-by) to skip: page n from 0 is --offset n×top_k.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Drop hits scoring below this: BM25 score (bm25), cosine (dense), fused score in [0, 1]
    /// (hybrid with --alpha; refused with reciprocal rank fusion).
    #[arg(long)]
    min_score: Option<f32>,
    /// Re-rank by maximal marginal relevance with this lambda in [0, 1] (1: relevance only).
    #[arg(long)]
    mmr: Option<f32>,
    /// Documents MMR chooses from [default: 4 × (offset + top_k), at least 20].
    #[arg(long, requires = "mmr")]
    fetch_k: Option<usize>,
    /// Group hits by this metadata field; --top-k and --offset then count groups.
    #[arg(long)]
    group_by: Option<String>,
    /// Hits kept per group with --group-by.
    #[arg(long, default_value_t = 1, requires = "group_by")]
    per_group: usize,
    /// Count the values of this metadata field (repeatable): over all matches in bm25 mode,
    /// over the ranked candidates in dense and hybrid mode.
    #[arg(long = "facet")]
    facets: Vec<String>,
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
    request.offset = args.offset;
    request.passages = args.passages;
    request.candidates = request.candidates.max(args.offset + args.top_k);
    request.min_score = args.min_score;
    request.mmr = args.mmr.map(|lambda| Mmr {
        lambda,
        fetch_k: args
            .fetch_k
            .unwrap_or(((args.offset + args.top_k) * 4).clamp(20, 1000)),
    });
    request.group_by = args.group_by.map(|field| GroupBy {
        field,
        per_group: args.per_group,
    });
    request.facets = args.facets;
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
    ibex::quickstart::print_results(&mut out, &results).map_err(stdout_error)?;
    print_summary(&mut out, &results).map_err(stdout_error)
}

/// The total, the groups and the facets after the hits.
fn print_summary(out: &mut dyn Write, results: &SearchResults) -> std::io::Result<()> {
    let bound = match results.total.relation {
        TotalRelation::Eq => "",
        TotalRelation::Gte => "at least ",
    };
    writeln!(
        out,
        "{bound}{} documents found; showing {} from {}",
        results.total.value,
        results.hits.len(),
        results.offset + 1
    )?;
    for group in results.groups.iter().flatten() {
        writeln!(out, "group {}: {}", group.value, group.ids.join(", "))?;
    }
    for (field, facet) in &results.facets {
        let values: Vec<String> = facet
            .values
            .iter()
            .map(|v| format!("{} ({})", v.value, v.count))
            .collect();
        let over = match facet.counted_over {
            FacetScope::Matches => "matches",
            FacetScope::Candidates => "candidates",
        };
        writeln!(
            out,
            "facet {field} over {} {over}: {}",
            facet.documents,
            values.join(", ")
        )?;
    }
    Ok(())
}
