//! `ibex index-interactions`: install interaction data into a catalog index.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ibex::indexer::{Index, IndexError};
use ibex::Result;

/// Arguments of `ibex index-interactions`.
#[derive(clap::Args)]
pub struct Args {
    /// A `user item [rating [timestamp]]` file (MovieLens's `u.data`), plain or gzip.
    file: PathBuf,
    /// The catalog index.
    #[arg(long)]
    index: PathBuf,
    /// How long to wait for a writer in another process (a server mid-write, an `ibex index`
    /// run) to release the index's lock before giving up, in seconds.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

/// Checks the file, then installs it in a commit of its own under the index's writer lock (a
/// crash leaves the old interactions or the new) and says how many.
pub fn run(args: Args) -> Result<()> {
    let interactions = ibex::pipeline::Interactions::read(&args.file)?;
    let mut index = Index::open(&args.index)?;
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let mut pause = Duration::from_millis(5);
    // The lock does not block; a server holds it for a write's few hundred milliseconds.
    let mut writer = loop {
        match index.embedded_writer() {
            Err(IndexError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => break other?,
        }
    };
    interactions.stage(&mut writer);
    let stats = writer.commit()?;
    writer.finish()?;
    println!(
        "installed {} interactions into {} (generation {})",
        interactions.events.len(),
        args.index.display(),
        stats.generation
    );
    Ok(())
}
