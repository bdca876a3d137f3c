#!/usr/bin/env bash
# Quantized vector storage (f32, int8, binary) on one segment of 1M real all-MiniLM-L6-v2 vectors:
# bytes per chunk in memory and on disk, recall@10 against the exact f32 scan, QPS, and QPS with
# the segment file evicted from the page cache (rescoring from disk), all in one run.
# Vectors: every sentence of the shared collections (cranfield, cacm, qmsum-val, NQ gold passages)
# and every entry of Debian's wamerican-huge word list, embedded once (cached under
# target/bench/quant); copies with Gaussian noise fill the segment up to --rows.
#
#   bash bench/quantized.sh [--rows 1000000] [--queries 1000] [--noise 0.025]
set -euo pipefail
cd "$(dirname "$0")/.."
dict=/usr/share/dict/american-english-huge
if [ ! -f "$dict" ]; then
  echo "needs $dict: apt-get install wamerican-huge" >&2
  exit 1
fi
cargo build --release -q
cargo build --release -q -p ibex-indexer --example ann_bench
dir=target/bench/quant
mkdir -p "$dir"
if [ ! -f "$dir/sentences.txt" ]; then
  python3 - "$dir/sentences.txt" <<'PY'
import gzip, json, re, sys
out = set()
def add(text):
    for s in re.split(r'(?<=[.!?])\s+|\n+', text):
        s = " ".join(s.split())
        if len(s) >= 12:
            out.add(s[:400])
for c in ["cranfield", "cacm", "qmsum-val"]:
    with gzip.open(f"../shared/data/{c}/beir/corpus.jsonl.gz", "rt") as f:
        for line in f:
            d = json.loads(line)
            add(d.get("title", "") + "\n" + d.get("text", ""))
with gzip.open("../shared/data/nq-open-oracle-dev/nq-open-oracle.dev-split.jsonl.gz", "rt") as f:
    for line in f:
        for v in json.loads(line).values():
            if isinstance(v, str) and len(v) > 40:
                add(v)
open(sys.argv[1], "w").write("\n".join(sorted(out)) + "\n")
PY
fi
[ -f "$dir/words.txt" ] || LC_ALL=C sort -u "$dict" > "$dir/words.txt"
for name in sentences words; do
  if [ ! -f "$dir/$name.f32" ]; then
    ./target/release/ibex embed < "$dir/$name.txt" | python3 -c 'import sys, json, array
out = sys.stdout.buffer
for line in sys.stdin:
    out.write(array.array("f", json.loads(line)).tobytes())' > "$dir/$name.f32.tmp"
    mv "$dir/$name.f32.tmp" "$dir/$name.f32"
  fi
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -o -w -m1 avx512f /proc/cpuinfo || echo 'no avx512f'); $(date -u +%F)"
results="$dir/results.jsonl"
./target/release/examples/ann_bench quantized --vectors "$dir/sentences.f32" --vectors "$dir/words.f32" \
  --work "$dir/work" "$@" > "$results"
python3 - "$results" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
build = next(l for l in lines if l["event"] == "build")
rows = build["rows"]
print(f"{rows:,} vectors ({build['real_rows']:,} real, the rest noisy copies, noise {build['noise']:.3f}), "
      f"{build['queries']:,} queries; graph build {build['build_seconds']:.0f} s")
print(f"on disk per chunk: vectors {build['vector_file_bytes'] / rows:.0f} B (+ 8 B key), "
      f"graph {build['graph_file_bytes'] / rows:.0f} B")
print()
print("| storage | vectors B/chunk in RAM | graph B/chunk | keys B/chunk | RAM at 10M chunks (GiB) | load s | rescored |")
print("|---|---|---|---|---|---|---|")
seen = set()
for l in lines:
    if l["event"] != "search" or l["storage"] in seen:
        continue
    seen.add(l["storage"])
    per = (l["memory_vectors"] + l["memory_graph"] + l["memory_keys"]) / rows
    print(f"| {l['storage']} | {l['memory_vectors'] / rows:.1f} | {l['memory_graph'] / rows:.1f} | "
          f"{l['memory_keys'] / rows:.1f} | {per * 1e7 / 2**30:.1f} | {l['load_seconds']:.1f} | {l['rescored']} |")
print()
print("| storage | threads | ef | recall@10 | QPS | QPS / f32 |")
print("|---|---|---|---|---|---|")
base = {(l["threads"], l["ef"]): l["qps"] for l in lines if l["event"] == "search" and l["storage"] == "f32"}
for l in lines:
    if l["event"] == "search":
        ratio = l["qps"] / base[(l["threads"], l["ef"])]
        print(f"| {l['storage']} | {l['threads']} | {l['ef']} | {l['recall']:.4f} | {l['qps']:,.0f} | {ratio:.2f} |")
for l in lines:
    if l["event"] == "search_cold":
        print(f"| {l['storage']}, file evicted from the page cache (first pass) | 1 | {l['ef']} | "
              f"{l['recall']:.4f} | {l['qps']:,.0f} | {l['qps'] / base[(1, l['ef'])]:.2f} |")
PY
