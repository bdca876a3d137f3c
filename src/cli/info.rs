//! `ibex info`: what an index holds and how it is laid out, without loading its model.

use std::path::PathBuf;

use ibex::Result;

/// Arguments of `ibex info`.
#[derive(clap::Args)]
pub struct Args {
    /// The index directory.
    index: PathBuf,
    /// Print one line of JSON (the fields of GET /v1/indexes/{name}) instead of text.
    #[arg(long)]
    json: bool,
}

/// Opens the index read-only (a writer may be running: this reads its last commit) and prints
/// its statistics.
pub fn run(args: Args) -> Result<()> {
    let index = ibex::indexer::Index::open(&args.index)?;
    let name = args
        .index
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.index.display().to_string());
    let info = ibex::indexer::IndexInfo::of(&name, &index);
    if args.json {
        return super::print_json(&info);
    }
    let text = format!(
        "index       {}\n\
         documents   {}\n\
         chunks      {}\n\
         model       {} ({} dimensions; loaded from {})\n\
         chunking    {} tokens per chunk, {} shared\n\
         generation  {}\n\
         on disk     {} ({} bytes)\n\
         format      version {}\n\
         segments    {} lexical, {} vector ({} with an HNSW graph)\n\
         vectors     held as {} in memory: {} vectors, {} graph, {} keys\n",
        args.index.display(),
        info.documents,
        info.chunks,
        info.model.id,
        info.model.dimension,
        info.model.source,
        info.chunking.chunk_tokens,
        info.chunking.overlap_tokens,
        info.generation,
        human_bytes(info.bytes_on_disk),
        info.bytes_on_disk,
        info.format_version,
        info.lexical_segments,
        info.vector_segments,
        info.graph_segments,
        info.vector_storage,
        human_bytes(info.vector_memory.vectors as u64),
        human_bytes(info.vector_memory.graph as u64),
        human_bytes(info.vector_memory.keys as u64),
    );
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(super::stdout_error)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
