//! `ibex._native`: the Rust half of ibex's Python package.
//!
//! The pure-Python package (`python/ibex/`) is the public API; this module gives it the library
//! crates with as little glue as possible. Structured values cross the boundary as JSON (the
//! library's own serde types on this side, `json` on the other), so every field the REST API and
//! the CLI print reaches Python unchanged and no conversion code is kept twice. Embeddings cross
//! as raw little-endian `float32` bytes that NumPy views without copying.
//!
//! Every call that embeds, indexes or searches releases the GIL, so other Python threads run
//! while it works; an [`index::NativeIndex`] is shared between threads (searches read a snapshot
//! of the last commit, writes are serialized, as in the server).

mod embed;
mod errors;
mod index;
mod shard;

use pyo3::prelude::*;

/// mimalloc, as in the `ibex` binary: with glibc's allocator the engine's per-query and per-batch
/// buffers go back to the system and fault back in (bench/python_overhead.sh measured Python at
/// 0.80-0.82 of the Rust examples' search QPS with it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where models run: `auto`, `cpu`, `cuda` or `cuda:N` (as the CLI's `--device`).
fn parse_device(name: &str) -> PyResult<ibex::Device> {
    ibex::embedder::device::parse_device(name).map_err(errors::to_py)
}

/// The Rust half of ibex's Python package; import `ibex`, not this module.
#[pymodule]
mod _native {
    #[pymodule_export]
    use super::embed::{compress_json, NativeEmbedder};
    #[pymodule_export]
    use super::index::NativeIndex;
    #[pymodule_export]
    use super::shard::{merge_term_statistics, rank_shard_lists, NativeShardWriter};
}
