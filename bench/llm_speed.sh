#!/usr/bin/env bash
# The embedded LLM's speed against llama.cpp on the same GGUF, same prompt, same threads, in the
# same run: prefill and decode tokens/s and their ratios. llama.cpp comes from npm's prebuilt
# node-llama-cpp (CPU), installed under target/bench/node on first run.
# Usage: bench/llm_speed.sh [GGUF]   (default: ibex's cached SmolLM2 Q8_0; fetched if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ibex-generator --example llm_speed
bin=target/release/examples/llm_speed
gguf="${1:-}"
if [ -z "$gguf" ]; then
    "$bin" "" /dev/null 1 >/dev/null 2>&1 || true   # fetches the default model once
    gguf="${IBEX_HOME:-$HOME/.cache/ibex}/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q8_0.gguf"
fi
node_dir=target/bench/node
if [ ! -d "$node_dir/node_modules/node-llama-cpp" ]; then
    mkdir -p "$node_dir"
    (cd "$node_dir" && npm install --silent --no-audit --no-fund node-llama-cpp@3.22.1 >/dev/null)
fi
cp bench/llm_speed.mjs "$node_dir/"
# IBEX_CPU forces ibex's narrower kernels (llama.cpp keeps its own): the class says which ran.
cpu_class=$(bash bench/cpu_class.sh)
if [ -n "${IBEX_CPU:-}" ]; then cpu_class="$cpu_class/ibex-$IBEX_CPU"; fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), CPU class $cpu_class; $(date -u +%F)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
message="Write a long story about a lighthouse keeper who finds a message in a bottle."
for length in short long; do
    if [ "$length" = long ]; then
        # About 600 prompt tokens: a RAG-sized context.
        message="$(for i in $(seq 1 12); do printf 'Passage %d: The Curse of Oak Island follows brothers Marty and Rick Lagina, originally from Kingsford, Michigan, through their efforts to find treasure. ' "$i"; done) Write a long story about these brothers."
    fi
    printf '%s' "$message" > "$work/message.txt"
    printf '<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n' "$message" > "$work/chatml.txt"
    for threads in 1 2; do
        ibex=$(RAYON_NUM_THREADS=$threads "$bin" "$gguf" "$work/message.txt" 64)
        peer=$(node "$node_dir/llm_speed.mjs" "$gguf" "$threads" "$work/chatml.txt" 64 2>/dev/null | tail -1)
        python3 - "$length" "$threads" "$ibex" "$peer" <<'PY'
import json, sys
length, threads, ibex, peer = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
def rates(r):
    return r["prompt_tokens"] / r["prefill_s"], r["decode_tokens"] / max(r["decode_s"], 1e-9)
ip, idc = rates(ibex); pp, pdc = rates(peer)
print(f"| {length} ({ibex['prompt_tokens']}/{peer['prompt_tokens']} prompt tokens) | {threads} | {ip:.0f} | {pp:.0f} | {ip/pp:.2f} | {idc:.1f} | {pdc:.1f} | {idc/pdc:.2f} |")
PY
    done
done
