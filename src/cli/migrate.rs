//! `ibex migrate`: upgrade an index written by an older ibex in place.

use std::path::PathBuf;

use ibex::Result;

/// Arguments of `ibex migrate`.
#[derive(clap::Args)]
pub struct Args {
    /// The index directory.
    index: PathBuf,
}

/// Rewrites the index's lexical entries in the current format (vectors are kept) and commits.
pub fn run(args: Args) -> Result<()> {
    let report = ibex::indexer::migrate(&args.index)?;
    if report.from_version == report.to_version {
        println!(
            "{} is already at format version {}; nothing to do",
            args.index.display(),
            report.to_version
        );
    } else {
        println!(
            "{}: format version {} -> {}; {} documents re-indexed; generation {}",
            args.index.display(),
            report.from_version,
            report.to_version,
            report.documents,
            report.generation
        );
    }
    Ok(())
}
