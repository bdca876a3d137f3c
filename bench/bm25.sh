#!/usr/bin/env bash
# BM25 query latency and QPS: ibex against bm25s, tantivy-py and Anserini (Lucene, through
# pyserini on a JVM from PyPI), every query of the shared BEIR collections, top 10, one thread, in
# the same run. ibex indexes of the collections are built under target/bench/indexes on first run
# (bench/shared_index.sh), Anserini's under target/bench/anserini. NO_ANSERINI=1 leaves it out.
#
#   bash bench/bm25.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
if [ -n "${NO_ANSERINI:-}" ]; then
  py=$(bash bench/python_env.sh)
  anserini=()
else
  py=$(bash bench/python_env.sh --anserini)
  anserini=(--anserini target/bench/anserini)
fi
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
"$py" bench/bm25_peers.py --rounds "$rounds" "${anserini[@]}" "${peers[@]}" >> "$results"
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
peers = ["bm25s", "tantivy-py"] + (["anserini"] if any(r["engine"] == "anserini" for r in rows) else [])
goals = {"bm25s": " (goal <= 0.5)", "tantivy-py": " (goal <= 1.2)", "anserini": ""}
print("| collection | " + " | ".join(f"ibex p50 / {p} p50{goals[p]}" for p in peers) + " |")
print("|---" * (len(peers) + 1) + "|")
for c in dict.fromkeys(r["collection"] for r in rows):
    ibex = by[("ibex (rank)", c)]["p50_us"]
    print(f"| {c} | " + " | ".join(f"{ibex / by[(p, c)]['p50_us']:.2f}" for p in peers) + " |")
PY
