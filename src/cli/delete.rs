//! `ibex delete`: delete documents by id.

use std::path::PathBuf;

use ibex::Result;

/// Arguments of `ibex delete`.
#[derive(clap::Args)]
pub struct Args {
    /// The index directory.
    #[arg(long)]
    index: PathBuf,
    #[arg(required = true)]
    ids: Vec<String>,
}

/// Deletes the documents and says how many existed.
pub fn run(args: Args) -> Result<()> {
    let ids: Vec<&str> = args.ids.iter().map(String::as_str).collect();
    let deleted = ibex::delete_documents(&args.index, &ids)?;
    eprintln!(
        "deleted {deleted} of {} documents from {}",
        ids.len(),
        args.index.display()
    );
    Ok(())
}
