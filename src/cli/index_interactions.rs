//! `ibex index-interactions`: install interaction data into a catalog index.

use std::path::PathBuf;

use ibex::Result;

/// Arguments of `ibex index-interactions`.
#[derive(clap::Args)]
pub struct Args {
    file: PathBuf,
    #[arg(long)]
    index: PathBuf,
}

/// Checks the index opens, installs the interactions and says how many.
pub fn run(args: Args) -> Result<()> {
    ibex::Index::open(&args.index)?;
    let count = ibex::pipeline::Interactions::install(&args.file, &args.index)?;
    println!(
        "installed {count} interactions into {}",
        args.index.display()
    );
    Ok(())
}
