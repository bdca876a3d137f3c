#!/usr/bin/env bash
# What the Python package costs over the Rust library, in the same run: single-thread search QPS
# on Cranfield (BM25 and hybrid, the same requests as examples/search_throughput.rs), the parallel
# speed-up of BM25 searches from 1 to 2 Python threads (the GIL is released while ibex searches),
# and embedding throughput (examples against `ibex.Embedder.embed`, best of ROUNDS).
#
#   [SECONDS_PER_RUN=10] [ROUNDS=3] bash bench/python_overhead.sh
# The package is installed the way users install it (`pip install ./python`, a release build)
# into target/bench/python-pkg-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-3}
cargo build --release -q
cargo build --release -q --example search_throughput
cargo build --release -q -p ibex-embedder --example embed_throughput
venv=target/bench/python-pkg-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check ./python >&2
bash bench/shared_index.sh cranfield >&2
index=target/bench/indexes/cranfield
queries=../shared/data/cranfield/beir/queries.jsonl
passages=target/bench/python-passages.jsonl
python3 - "$passages" <<'PY'
import gzip, json, sys
with open(sys.argv[1], "w") as out:
    n = 0
    for line in gzip.open("../shared/data/cacm/beir/corpus.jsonl.gz", "rt"):
        d = json.loads(line)
        words = (d.get("title", "") + " " + d.get("text", "")).split()
        if len(words) >= 40:
            out.write(json.dumps({"text": " ".join(words[:150])}) + "\n")
            n += 1
        if n == 1000:
            break
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), CPU class $(bash bench/cpu_class.sh); $(date -u +%F)"
echo
echo "| measure | Rust library | Python package | Python / Rust |"
echo "|---|---|---|---|"
row() { python3 -c "import sys; r, p = float(sys.argv[2]), float(sys.argv[3]); print(f'| {sys.argv[1]} | {r:,.1f} | {p:,.1f} | {p / r:.3f} |')" "$@"; }
for mode in bm25 hybrid; do
  rust=$(RAYON_NUM_THREADS=1 ./target/release/examples/search_throughput "$index" "$queries" "$mode" 1 "$seconds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["qps"])')
  py=$(RAYON_NUM_THREADS=1 "$venv/bin/python" bench/python_overhead.py search "$index" "$queries" "$mode" 1 "$seconds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["qps"])')
  row "$mode search QPS, 1 thread" "$rust" "$py"
  echo "$(date -u +%F),bench/python_overhead.sh,search-$mode-1,$rust,$py" >> bench/results/python_overhead.csv
done
py1=$("$venv/bin/python" bench/python_overhead.py search "$index" "$queries" bm25 1 "$seconds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["qps"])')
py2=$("$venv/bin/python" bench/python_overhead.py search "$index" "$queries" bm25 2 "$seconds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["qps"])')
python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'\nBM25 search from Python threads: 1 thread {a:,.1f} QPS, 2 threads {b:,.1f} QPS, speed-up {b / a:.2f}x\n')" "$py1" "$py2"
echo "$(date -u +%F),bench/python_overhead.sh,bm25-python-threads-1-2,$py1,$py2" >> bench/results/python_overhead.csv
rust=$(RAYON_NUM_THREADS=2 ./target/release/examples/embed_throughput "$passages" target/bench/python-embed.f32 --rounds "$rounds")
tokens=$(echo "$rust" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
rust_tps=$(echo "$rust" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')
py_seconds=$(RAYON_NUM_THREADS=2 "$venv/bin/python" bench/python_overhead.py embed "$passages" "$rounds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
py_tps=$(python3 -c "print($tokens / $py_seconds)")
echo "| measure | Rust library | Python package | Python / Rust |"
echo "|---|---|---|---|"
row "embedding tokens/s, 2 threads" "$rust_tps" "$py_tps"
echo "$(date -u +%F),bench/python_overhead.sh,embed-tokens-per-s,$rust_tps,$py_tps" >> bench/results/python_overhead.csv
