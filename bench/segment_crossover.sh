#!/usr/bin/env bash
# Exact scan against HNSW per vector-segment size, on real all-MiniLM-L6-v2 embeddings of English
# words, in the same run: the measurement behind HNSW_MIN_VECTORS (indexer/src/vectors.rs).
# Vectors: bench/word_vectors.sh (Debian's `wamerican` word list; cached under target/bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
vectors=$(bash bench/word_vectors.sh)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo run --release -q -p ibex-indexer --example segment_crossover -- "$vectors"
