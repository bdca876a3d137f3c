#!/usr/bin/env bash
# BM25 query latency and QPS: ibex against bm25s and tantivy-py, every query of the shared BEIR
# collections, top 10, one thread, in the same run. ibex indexes of the collections are built
# under target/bench/indexes on first run (bench/shared_index.sh).
#
#   bash bench/bm25.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
py=$(bash bench/python_env.sh)
cargo build --release -q
cargo build --release -q -p ibex-search --example bm25_bench
args=()
peers=()
for c in cranfield cacm qmsum-val; do
  bash bench/shared_index.sh "$c" >&2
  args+=("$c" "target/bench/indexes/$c" "../shared/data/$c/beir/queries.jsonl")
  peers+=("$c=../shared/data/$c/beir")
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F); $rounds rounds"
results=target/bench/bm25.jsonl
./target/release/examples/bm25_bench --rounds "$rounds" "${args[@]}" > "$results"
"$py" bench/bm25_peers.py --rounds "$rounds" "${peers[@]}" >> "$results"
"$py" - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {(r["engine"], r["collection"]): r for r in rows}
print()
print("| collection | docs | queries | engine | p50 µs | p99 µs | QPS |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['collection']} | {r['documents']:,} | {r['queries']} | {r['engine']} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['qps']:,.0f} |")
print()
print("| collection | ibex p50 / bm25s p50 (goal <= 0.5) | ibex p50 / tantivy-py p50 (goal <= 1.2) |")
print("|---|---|---|")
for c in dict.fromkeys(r["collection"] for r in rows):
    ibex = by[("ibex (rank)", c)]["p50_us"]
    print(f"| {c} | {ibex / by[('bm25s', c)]['p50_us']:.2f} | {ibex / by[('tantivy-py', c)]['p50_us']:.2f} |")
PY
