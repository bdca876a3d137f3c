#!/usr/bin/env bash
# Exact scan against HNSW per vector-segment size, on real all-MiniLM-L6-v2 embeddings of English
# words, in the same run: the measurement behind HNSW_MIN_VECTORS (indexer/src/vectors.rs).
# Needs the word list of Debian's `wamerican` package. Vectors are cached under target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
dict=/usr/share/dict/american-english
if [ ! -f "$dict" ]; then
  echo "needs $dict (apt-get install wamerican)" >&2
  exit 1
fi
cargo build --release -q
mkdir -p target/bench
vectors=target/bench/words-minilm.f32
if [ ! -f "$vectors" ]; then
  # 50,200 distinct words in a fixed pseudo-random order.
  grep -v "'" "$dict" | sort -u | awk 'BEGIN{srand(7)} {print rand() "\t" $0}' | sort -k1,1 | cut -f2 | awk "NR <= 50200" \
    | ./target/release/ibex embed \
    | python3 -c 'import sys, json, array
out = array.array("f")
for line in sys.stdin:
    out.extend(json.loads(line))
sys.stdout.buffer.write(out.tobytes())' > "$vectors.tmp"
  mv "$vectors.tmp" "$vectors"
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo run --release -q -p ibex-indexer --example segment_crossover -- "$vectors"
