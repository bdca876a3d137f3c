//! `ibex snapshot` and `ibex restore`: a consistent copy of an index's last commit while
//! writers keep going, and a new index made from one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ibex::indexer::{Index, IndexError, SnapshotInfo};
use ibex::Result;

/// Arguments of `ibex snapshot`.
#[derive(clap::Args)]
pub struct SnapshotArgs {
    /// The index directory.
    index: PathBuf,
    /// Where the snapshot goes (a directory that must not exist). On the index's file system
    /// its files are hard links and take no space until the index moves on; elsewhere they are
    /// copied.
    dest: PathBuf,
    /// How long to wait for a writer in another process (a server mid-write, an `ibex index`
    /// run) to release the index's lock before giving up, in seconds.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

/// Arguments of `ibex restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A snapshot directory (from `ibex snapshot`, or a downloaded and unpacked
    /// GET /v1/indexes/{name}/snapshots/{snapshot}).
    snapshot: PathBuf,
    /// The new index directory (it must not exist; to serve it, put it in the server's data
    /// directory).
    dest: PathBuf,
}

/// Takes the snapshot under the index's writer lock (a writer in another process waits the
/// milliseconds the links take) and says what it holds.
pub fn snapshot(args: SnapshotArgs) -> Result<()> {
    let mut index = Index::open(&args.index)?;
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let mut pause = Duration::from_millis(5);
    // tantivy's writer lock does not block: a server holds it for each write's few hundred
    // milliseconds, so poll for it (backing off to 200 ms) rather than fail on the first try.
    let info = loop {
        match ibex::indexer::take_snapshot(&mut index, &args.dest) {
            Err(IndexError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => break other?,
        }
    };
    report("snapshot of", &args.index, &args.dest, &info);
    Ok(())
}

/// Checks the snapshot opens at the generation it describes, then copies it into place.
pub fn restore(args: RestoreArgs) -> Result<()> {
    let info = ibex::indexer::restore_snapshot(&args.snapshot, &args.dest)?;
    report("restored", &args.snapshot, &args.dest, &info);
    Ok(())
}

fn report(what: &str, from: &std::path::Path, to: &std::path::Path, info: &SnapshotInfo) {
    eprintln!(
        "{what} {} at generation {} into {}: {} documents, {} chunks, {} bytes{}",
        from.display(),
        info.generation,
        to.display(),
        info.documents,
        info.chunks,
        info.bytes,
        if info.linked { " (hard links)" } else { "" }
    );
}
