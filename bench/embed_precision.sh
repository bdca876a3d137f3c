#!/usr/bin/env bash
# bf16 against f32 for ibex's CPU BERT forward pass (IBEX_EMBED_PRECISION), in one run:
# throughput on 2,000 passages of 80-150 words cut from the shared collections (the two precisions
# alternating PASSES times, best pass each), the lowest cosine of a bf16 vector to its f32 vector,
# and nDCG@10 (dense and hybrid) on cranfield, cacm and qmsum-val with every vector (documents and
# queries) embedded at each precision. Needs AVX512-BF16 (bench/cpu_class.sh prints the class).
#
#   [PASSES=3] bash bench/embed_precision.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
cargo build --release -q
cargo build --release -q -p ibex-embedder --example embed_throughput
dir=target/bench/precision
mkdir -p "$dir"
if [ ! -f "$dir/passages.jsonl" ]; then
  python3 - "$dir/passages.jsonl" <<'PY'
import gzip, json, random, sys
random.seed(7)
words = []
for c in ["cranfield", "cacm", "qmsum-val"]:
    with gzip.open(f"../shared/data/{c}/beir/corpus.jsonl.gz", "rt") as f:
        for line in f:
            d = json.loads(line)
            words.extend((d.get("title", "") + " " + d.get("text", "")).split())
with open(sys.argv[1], "w") as out:
    for _ in range(2000):
        length = random.randint(80, 150)
        start = random.randrange(len(words) - length)
        out.write(json.dumps({"text": " ".join(words[start:start + length])}) + "\n")
PY
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), CPU class $(bash bench/cpu_class.sh); $(date -u +%F); threads: $threads"
results="$dir/results.jsonl"
: > "$results"
for _ in $(seq "${PASSES:-3}"); do
  for precision in f32 bf16; do
    IBEX_EMBED_PRECISION=$precision RAYON_NUM_THREADS=$threads ./target/release/examples/embed_throughput \
      "$dir/passages.jsonl" "$dir/$precision.f32" --rounds 2 | sed "s/\"engine\":\"ibex\"/\"engine\":\"$precision\"/" >> "$results"
  done
done
# Single-query latency on the 526 real queries of the three collections (what a search embeds).
queries="$dir/queries.jsonl"
cat ../shared/data/{cranfield,cacm,qmsum-val}/beir/queries.jsonl |
  python3 -c 'import json,sys; [print(json.dumps({"text": json.loads(l)["text"]})) for l in sys.stdin if l.strip()]' > "$queries"
for _ in $(seq "${PASSES:-3}"); do
  for precision in f32 bf16; do
    IBEX_EMBED_PRECISION=$precision RAYON_NUM_THREADS=$threads ./target/release/examples/embed_throughput \
      "$queries" /dev/null --queries --rounds 3 | sed "s/\"engine\":\"ibex\"/\"engine\":\"$precision\"/" >> "$results"
  done
done
for precision in f32 bf16; do
  for c in cranfield cacm qmsum-val; do
    rm -rf "$dir/index-$precision-$c"
    for mode in dense hybrid; do
      IBEX_EMBED_PRECISION=$precision ./target/release/ibex eval "../shared/data/$c/beir" \
        --index "$dir/index-$precision-$c" --mode $mode --json 2>/dev/null \
        | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(precision='$precision', collection='$c', mode='$mode', event='eval'); print(json.dumps(r))" >> "$results"
    done
  done
done
python3 - "$results" "$dir" <<'PY'
import array, json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
best = {}
latency = {}
for r in lines:
    if r.get("mode") == "queries" and r["p50_ms"] < latency.get(r["engine"], {}).get("p50_ms", 1e9):
        latency[r["engine"]] = r
for r in lines:
    if "sentences_per_s" in r and r["sentences_per_s"] > best.get(r["engine"], {}).get("sentences_per_s", 0):
        best[r["engine"]] = r
a = array.array("f", open(f"{sys.argv[2]}/f32.f32", "rb").read())
b = array.array("f", open(f"{sys.argv[2]}/bf16.f32", "rb").read())
dim = 384
lowest = min(
    sum(a[i + j] * b[i + j] for j in range(dim))
    / math.sqrt(sum(a[i + j] ** 2 for j in range(dim)) * sum(b[i + j] ** 2 for j in range(dim)))
    for i in range(0, len(a), dim)
)
f32, bf16 = best["f32"], best["bf16"]
print(f"{f32['sentences']} passages, {f32['tokens']:,} tokens")
print()
print("| precision | sentences/s | tokens/s | / f32 |")
print("|---|---|---|---|")
for name, r in (("f32", f32), ("bf16", bf16)):
    print(f"| {name} | {r['sentences_per_s']:.1f} | {r['tokens_per_s']:,.0f} | {r['sentences_per_s'] / f32['sentences_per_s']:.2f} |")
print(f"\nlowest cosine of a bf16 vector to its f32 vector: {lowest:.6f}\n")
if latency:
    print("| precision | single query p50 ms | p99 ms |")
    print("|---|---|---|")
    for name in ("f32", "bf16"):
        print(f"| {name} | {latency[name]['p50_ms']:.2f} | {latency[name]['p99_ms']:.2f} |")
    print()
print("| collection | mode | nDCG@10 f32 | nDCG@10 bf16 | difference |")
print("|---|---|---|---|---|")
evals = {(r["precision"], r["collection"], r["mode"]): r for r in lines if r.get("event") == "eval"}
key = next(k for k in ("ndcg@10", "ndcg_at_10", "nDCG@10") if k in next(iter(evals.values())))
for c in ["cranfield", "cacm", "qmsum-val"]:
    for mode in ["dense", "hybrid"]:
        x, y = evals[("f32", c, mode)][key], evals[("bf16", c, mode)][key]
        print(f"| {c} | {mode} | {x:.4f} | {y:.4f} | {y - x:+.4f} |")
PY
