//! `ibex quickstart`: the first thing a new user runs.
//!
//! It fetches the default model (first run only), indexes the sample corpus bundled in the
//! binary (examples/quickstart/) as the index `quickstart` of the server's data directory
//! (`$IBEX_HOME/data/quickstart`; a second run finds every document unchanged and embeds
//! nothing), and runs the example queries in each mode. The CLI then serves the data directory.

use std::io::Write;
use std::path::PathBuf;

use crate::{IbexError, IndexOptions, Mode, Result, SearchRequest, SearchResults};

/// The sample corpus: short documents on varied topics, written for ibex.
pub const CORPUS: &str = include_str!("../examples/quickstart/documents.jsonl");
/// Example queries, each with the id of the document it should find.
pub const QUERIES: &str = include_str!("../examples/quickstart/queries.jsonl");

/// An example query and the document it should find first.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ExampleQuery {
    /// The query.
    pub query: String,
    /// The id of the document it should find first.
    pub expected: String,
}

/// The bundled example queries.
pub fn example_queries() -> Vec<ExampleQuery> {
    QUERIES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Where the quickstart keeps its corpus copy and index.
pub fn quickstart_dir() -> PathBuf {
    ibex_embedder::ibex_home().join("quickstart")
}

fn io_error(context: &str) -> impl Fn(std::io::Error) -> IbexError + '_ {
    move |e| IbexError::Io {
        context: context.to_string(),
        source: e,
    }
}

/// Prints search results the way the CLI shows them.
pub fn print_results(out: &mut dyn Write, results: &SearchResults) -> std::io::Result<()> {
    if results.hits.is_empty() {
        writeln!(out, "  (no results)")?;
    }
    for (rank, hit) in results.hits.iter().enumerate() {
        let title = if hit.title.is_empty() {
            String::new()
        } else {
            format!("  {}", hit.title)
        };
        writeln!(
            out,
            "{:>3}. {:<28} {:>8.4}{}",
            results.offset + rank + 1,
            hit.id,
            hit.score,
            title
        )?;
        for passage in &hit.passages {
            let text: String = passage.text.chars().take(160).collect();
            let ellipsis = if passage.text.chars().count() > 160 {
                "…"
            } else {
                ""
            };
            writeln!(
                out,
                "       [{}..{}] {}{}",
                passage.start,
                passage.end,
                text.replace('\n', " "),
                ellipsis
            )?;
        }
    }
    Ok(())
}

/// Name of the quickstart's index in the data directory.
pub const INDEX_NAME: &str = "quickstart";

/// Runs the quickstart into `data_dir/quickstart`, writing its report to `out`; the model runs on
/// `device` (or the device `IBEX_DEVICE` names).
pub fn run(
    out: &mut dyn Write,
    data_dir: &std::path::Path,
    device: Option<&crate::Device>,
) -> Result<()> {
    let dir = quickstart_dir();
    std::fs::create_dir_all(&dir).map_err(io_error("creating the quickstart folder"))?;
    let corpus = dir.join("documents.jsonl");
    std::fs::write(&corpus, CORPUS).map_err(io_error("writing the sample corpus"))?;
    let index_dir = data_dir.join(INDEX_NAME);
    let options = IndexOptions {
        device: device.cloned(),
        ..IndexOptions::default()
    };
    let report = crate::index_corpus(&corpus, &index_dir, &options, |_| {})?;
    let w = io_error("writing to stdout");
    writeln!(
        out,
        "Indexed the sample corpus into {} ({} documents, {} chunks; {} embedded now, {} unchanged) in {:.1}s.\n",
        index_dir.display(),
        report.documents_in_index,
        report.chunks_in_index,
        report.added + report.replaced,
        report.unchanged,
        report.seconds
    )
    .map_err(&w)?;
    let (index, embedder) = ibex_indexer::open_index(&index_dir, None, device)?;
    let mut found_first = 0;
    let queries = example_queries();
    for example in &queries {
        writeln!(
            out,
            "Query: {:?}  (expected: {})",
            example.query, example.expected
        )
        .map_err(&w)?;
        for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
            let mut request = SearchRequest::new(example.query.clone());
            request.mode = mode;
            request.top_k = 3;
            request.passages = 1;
            let results = crate::search::search(&index, Some(embedder.as_ref()), &request)?;
            writeln!(out, "  {mode} ({:.1} ms):", results.took_ms).map_err(&w)?;
            print_results(out, &results).map_err(&w)?;
            if mode == Mode::Hybrid
                && results
                    .hits
                    .first()
                    .is_some_and(|h| h.id == example.expected)
            {
                found_first += 1;
            }
        }
        writeln!(out).map_err(&w)?;
    }
    writeln!(
        out,
        "Hybrid search ranked the expected document first for {found_first} of {} example queries.",
        queries.len()
    )
    .map_err(&w)?;
    Ok(())
}
