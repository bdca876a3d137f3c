#!/usr/bin/env bash
# Real all-MiniLM-L6-v2 embeddings of 50,200 distinct English words (Debian's `wamerican` word
# list, in a fixed pseudo-random order), as little-endian f32, 384 per vector: the vectors of
# bench/segment_crossover.sh and bench/filtered_search.sh. Made once with the release `ibex embed`
# and cached; prints the file's path.
set -euo pipefail
cd "$(dirname "$0")/.."
dict=/usr/share/dict/american-english
vectors=target/bench/words-minilm.f32
if [ -f "$vectors" ]; then
  echo "$vectors"
  exit 0
fi
if [ ! -f "$dict" ]; then
  echo "needs $dict (apt-get install wamerican)" >&2
  exit 1
fi
cargo build --release -q
mkdir -p target/bench
grep -v "'" "$dict" | sort -u | awk 'BEGIN{srand(7)} {print rand() "\t" $0}' | sort -k1,1 | cut -f2 | awk "NR <= 50200" \
  | ./target/release/ibex embed \
  | python3 -c 'import sys, json, array
out = array.array("f")
for line in sys.stdin:
    out.extend(json.loads(line))
sys.stdout.buffer.write(out.tobytes())' > "$vectors.tmp"
mv "$vectors.tmp" "$vectors"
echo "$vectors"
