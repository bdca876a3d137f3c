#!/usr/bin/env bash
# ANN search: ibex's dense index against hnswlib and faiss (HNSWFlat), same vectors, same
# queries, same M (16) and ef_construction (200), in the same run. Vectors: all-MiniLM-L6-v2
# embeddings of every entry of Debian's wamerican-huge word list plus the chunk vectors of the
# shared BEIR collections (ibex indexes of them are built under target/bench/indexes if absent).
# Embeddings are cached under target/bench/ann, so reruns skip the embedding (~15 min on 2 cores).
#
#   bash bench/ann.sh [--queries N]
set -euo pipefail
cd "$(dirname "$0")/.."
dict=/usr/share/dict/american-english-huge
if [ ! -f "$dict" ]; then
  echo "needs $dict: apt-get install wamerican-huge" >&2
  exit 1
fi
py=$(bash bench/python_env.sh)
cargo build --release -q
cargo build --release -q -p ibex-indexer --example ann_bench
dir=target/bench/ann
mkdir -p "$dir"
if [ ! -f "$dir/words.f32" ]; then
  LC_ALL=C sort -u "$dict" > "$dir/words.txt"
  ./target/release/ibex embed < "$dir/words.txt" | "$py" -c 'import sys, json, array
out = sys.stdout.buffer
for line in sys.stdin:
    out.write(array.array("f", json.loads(line)).tobytes())' > "$dir/words.f32.tmp"
  mv "$dir/words.f32.tmp" "$dir/words.f32"
fi
indexes=()
for c in cranfield cacm qmsum-val; do
  bash bench/shared_index.sh "$c" >&2
  indexes+=(--index "target/bench/indexes/$c")
done
if [ ! -f "$dir/data/meta.json" ]; then
  ./target/release/examples/ann_bench prepare "$dir/data" --vectors "$dir/words.f32" "${indexes[@]}" "$@" >&2
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
results="$dir/results.jsonl"
./target/release/examples/ann_bench run "$dir/data" --m 16 --ef-construction 200 > "$results"
"$py" bench/ann_peers.py "$dir/data" --m 16 --ef-construction 200 >> "$results"
"$py" bench/ann_report.py "$dir/data" "$results"
