#!/usr/bin/env bash
# Indexing throughput, end to end, on a corpus of at least 50,000 chunks (bench/index_corpus.py
# says what is in it): embedding included (what `ibex index` costs), and embedding excluded
# (the same run with the model's vectors replayed from a recording), with peak memory, in the
# same run. The reference is the model itself: the share of indexing time spent inside it.
#
#   bash bench/index_throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/dict/american-english-huge ]; then
  echo "needs /usr/share/dict/american-english-huge: apt-get install wamerican-huge" >&2
  exit 1
fi
py=$(bash bench/python_env.sh)
cargo build --release -q
cargo build --release -q --example index_throughput
dir=target/bench/indexing
mkdir -p "$dir"
model="${IBEX_HOME:-$HOME/.cache/ibex}/models/all-MiniLM-L6-v2"
[ -f "$model/model.safetensors" ] || echo warm-up | ./target/release/ibex embed > /dev/null
[ -f "$dir/corpus.jsonl" ] || "$py" bench/index_corpus.py "$model" "$dir/corpus.jsonl" >&2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
rm -rf "$dir/index-record" "$dir/index-replay"
./target/release/examples/index_throughput record "$dir/corpus.jsonl" "$dir/index-record" "$dir/vectors.bin" > "$dir/results.jsonl"
./target/release/examples/index_throughput replay "$dir/corpus.jsonl" "$dir/index-replay" "$dir/vectors.bin" >> "$dir/results.jsonl"
"$py" - "$dir/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
rec, rep = rows
print(f"{rec['documents']:,} documents, {rec['chunks']:,} chunks, {rec['commits']} commits")
print()
print("| run | seconds | documents/s | chunks/s | peak RSS MiB |")
print("|---|---|---|---|---|")
print(f"| embedding included | {rec['seconds']:.1f} | {rec['documents_per_s']:,.0f} | {rec['chunks_per_s']:,.0f} | {rec['peak_rss_mib']:,.0f} |")
print(f"| embedding excluded (vectors replayed) | {rep['seconds']:.1f} | {rep['documents_per_s']:,.0f} | {rep['chunks_per_s']:,.0f} | {rep['peak_rss_mib']:,.0f} (cache of vectors: {rep['rss_before_indexing_mib']:,.0f} before indexing) |")
print()
print(f"Time inside the model: {rec['seconds_in_model']:.1f} s of {rec['seconds']:.1f} s "
      f"({rec['seconds_in_model'] / rec['seconds']:.0%}); indexing runs at "
      f"{rec['seconds_in_model'] / rec['seconds']:.2f}x the model's own speed (1.00 = the model is the only cost).")
PY
