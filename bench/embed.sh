#!/usr/bin/env bash
# Embedding throughput: ibex (candle) against onnxruntime (fp32 ONNX export of the same
# weights) and sentence-transformers (PyTorch), all-MiniLM-L6-v2, same 2,000 passages of
# 100-200 tokens cut from ../shared/data, same threads (default 2), in the same run.
# Also checks that the engines' vectors agree (cosine to ibex's).
#
#   [ROUNDS=3] [PASSES=2] [IBEX_CPU=avx2|scalar] bash bench/embed.sh [THREADS]
#
# IBEX_CPU forces ibex's own kernels onto a narrower SIMD path than the CPU's widest (the peers
# keep theirs), so each path can be measured on one machine; the class recorded then says so.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
py=$(bash bench/python_env.sh --torch)
cargo build --release -q
cargo build --release -q -p ibex-embedder --example embed_throughput
dir=target/bench/embed
mkdir -p "$dir"
model="${IBEX_HOME:-$HOME/.cache/ibex}/models/all-MiniLM-L6-v2"
[ -f "$model/model.safetensors" ] || echo warm-up | ./target/release/ibex embed > /dev/null
[ -f "$dir/passages.jsonl" ] || "$py" bench/embed_peers.py passages "$model" "$dir/passages.jsonl" >&2
cpu_class=$(bash bench/cpu_class.sh)
if [ -n "${IBEX_CPU:-}" ]; then cpu_class="$cpu_class/ibex-$IBEX_CPU"; fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), CPU class $cpu_class; $(date -u +%F); threads: $threads"
results="$dir/results.jsonl"
: > "$results"
peer() {
  OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads "$py" bench/embed_peers.py run "$model" "$dir/passages.jsonl" "$dir" \
    --threads "$threads" --rounds "${ROUNDS:-3}" --ibex-vectors "$dir/ibex.f32" --engines "$1" >> "$results"
}
# ibex and onnxruntime (the goal's peer) take turns, PASSES times each (default 2), so that a slow
# spell of this shared machine does not fall on one engine only; each engine's best pass counts.
for _ in $(seq "${PASSES:-2}"); do
  RAYON_NUM_THREADS=$threads ./target/release/examples/embed_throughput "$dir/passages.jsonl" "$dir/ibex.f32" --rounds "${ROUNDS:-3}" >> "$results"
  peer onnxruntime
done
peer sentence-transformers
"$py" - "$results" "$cpu_class" "$threads" <<'PY'
import datetime, json, sys
best = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        if r["engine"] not in best or r["sentences_per_s"] > best[r["engine"]]["sentences_per_s"]:
            best[r["engine"]] = r
rows = list(best.values())
ibex = best["ibex"]
print(f"{ibex['sentences']} passages, {ibex['tokens']:,} tokens (with [CLS]/[SEP])")
print()
print("| engine | sentences/s | tokens/s | ibex / engine | min cosine to ibex |")
print("|---|---|---|---|---|")
for r in rows:
    cos = f"{r['min_cosine_to_ibex']:.6f}" if "min_cosine_to_ibex" in r else "-"
    print(f"| {r['engine']} | {r['sentences_per_s']:.1f} | {r['tokens_per_s']:,.0f} | {ibex['sentences_per_s'] / r['sentences_per_s']:.2f} | {cos} |")
# The best pass of each engine, appended to the CSV bench/charts.py draws.
with open("bench/results/embed.csv", "a") as f:
    for r in rows:
        f.write(f"{datetime.date.today().isoformat()},bench/embed.sh,{sys.argv[2]},{sys.argv[3]},{r['engine'].split()[0]},{r['tokens_per_s']:.0f}\n")
PY
