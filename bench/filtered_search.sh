#!/usr/bin/env bash
# Filtered dense search (filter inside retrieval) against an exact filtered scan and against
# post-filtering, at 50%, 10%, 1% and 0.1% selectivity, on a 50,000-chunk index of real
# all-MiniLM-L6-v2 vectors: recall@10, hits returned, QPS (one thread). See
# search/examples/filtered_search.rs; figures in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
vectors=$(bash bench/word_vectors.sh)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(bash bench/cpu_class.sh 2>/dev/null || true)"
cargo run --release -q -p ibex-search --example filtered_search -- "$vectors"
