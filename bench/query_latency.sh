#!/usr/bin/env bash
# Single-query embedding latency: ibex against onnxruntime (fp32 ONNX export of the same
# all-MiniLM-L6-v2), each embedding one query at a time as a search does, on the real queries of
# the three shared BEIR collections (cranfield, cacm, qmsum-val), same threads (default 2), in the
# same run; the two take turns PASSES times (default 2) and each one's best pass counts.
#
#   [ROUNDS=3] [PASSES=2] [IBEX_CPU=avx2|scalar] bash bench/query_latency.sh [THREADS]
#
# Never beside a cargo build: it measures milliseconds on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
py=$(bash bench/python_env.sh --torch)
cargo build --release -q -p ibex-embedder --example embed_throughput
dir=target/bench/embed
mkdir -p "$dir"
model="${IBEX_HOME:-$HOME/.cache/ibex}/models/all-MiniLM-L6-v2"
[ -f "$model/model.safetensors" ] || ./target/release/examples/embed_throughput /dev/null /dev/null > /dev/null 2>&1 || true
queries="$dir/queries.jsonl"
cat ../shared/data/cranfield/beir/queries.jsonl ../shared/data/cacm/beir/queries.jsonl \
  ../shared/data/qmsum-val/beir/queries.jsonl |
  "$py" -c 'import json,sys; [print(json.dumps({"text": json.loads(l)["text"]})) for l in sys.stdin if l.strip()]' > "$queries"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), CPU class $(bash bench/cpu_class.sh)${IBEX_CPU:+, ibex forced to $IBEX_CPU}; $(date -u +%F); threads: $threads; $(wc -l < "$queries") queries"
results="$dir/query_latency.jsonl"
: > "$results"
for _ in $(seq "${PASSES:-2}"); do
  RAYON_NUM_THREADS=$threads ./target/release/examples/embed_throughput "$queries" /dev/null \
    --rounds "${ROUNDS:-3}" --queries >> "$results"
  OMP_NUM_THREADS=$threads "$py" bench/embed_peers.py queries "$model" "$queries" "$dir" \
    --threads "$threads" --rounds "${ROUNDS:-3}" >> "$results"
done
"$py" - "$results" <<'PY'
import json, sys
best = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        if r["engine"] not in best or r["p50_ms"] < best[r["engine"]]["p50_ms"]:
            best[r["engine"]] = r
ibex = best["ibex"]
print(f"{ibex['queries']} queries, {ibex['calls']} timed calls per pass")
print()
print("| engine | p50 ms | p99 ms | engine p50 / ibex p50 |")
print("|---|---|---|---|")
for r in best.values():
    print(f"| {r['engine']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p50_ms'] / ibex['p50_ms']:.2f} |")
PY
