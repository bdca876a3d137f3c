#!/usr/bin/env bash
# The retrieval-quality levers of EVALUATION.md ("Beyond reciprocal rank fusion"), each alone and
# some combined, on the three shared BEIR collections: nDCG@10, Recall@100 and MRR@10 of every
# judged query, and the query latency p50 of `ibex eval` (depth 1000, one thread) on cranfield,
# all from one run of one binary, so the costs compare. Indexes are those of
# bench/shared_index.sh (default chunking); run files land in target/bench/levers/.
#
#   bash bench/retrieval_levers.sh
#
# Never beside a cargo build: the latency column is only comparable on an idle machine.
# Its 2026-12-03 run is EVALUATION.md's table; one round's p50 moved by half on that shared
# machine, so EVALUATION.md's latency column is the median of this run and three more rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
out=target/bench/levers
mkdir -p "$out"
levers=(
  "bm25|--mode bm25"
  "bm25 + RM3 (10 docs, 10 terms, weight 0.5)|--mode bm25 --prf"
  "dense|--mode dense"
  "dense + Rocchio (10 docs, beta 1)|--mode dense --prf-terms 0 --rocchio 1"
  "dense, sum of best 2 chunks|--mode dense --chunk-sum 2"
  "hybrid RRF k=60 (default)|--mode hybrid"
  "hybrid RRF k=20|--mode hybrid --rrf-k 20"
  "hybrid min-max alpha 0.5|--mode hybrid --alpha 0.5"
  "hybrid + RM3|--mode hybrid --prf"
  "hybrid + RM3 weight 0.8|--mode hybrid --prf --prf-weight 0.8"
  "hybrid + Rocchio beta 0.3|--mode hybrid --prf-terms 0 --rocchio 0.3"
  "hybrid + RM3 0.8 + Rocchio 0.3|--mode hybrid --prf-weight 0.8 --rocchio 0.3"
  "hybrid + both, from the fused list|--mode hybrid --prf-from fused --prf-weight 0.8 --rocchio 0.3"
)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -o -w -m1 avx512f /proc/cpuinfo || echo 'no avx512f'); $(date -u +%F)"
for c in cranfield cacm qmsum-val; do
  bash bench/shared_index.sh "$c" >&2
done
echo
echo "| lever | cranfield nDCG@10 / R@100 / MRR@10 | cacm | qmsum-val | cranfield p50 ms |"
echo "|---|---|---|---|---|"
for entry in "${levers[@]}"; do
  name=${entry%%|*}
  read -r -a flags <<< "${entry#*|}"
  row="| $name |"
  p50=""
  for c in cranfield cacm qmsum-val; do
    slug=$(echo "$name" | tr -c 'a-zA-Z0-9' '-')
    json=$(./target/release/ibex eval "../shared/data/$c/beir" --index "target/bench/indexes/$c" \
      "${flags[@]}" --json --run-file "$out/$c-$slug.run")
    row+=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(" %.4f / %.4f / %.4f |" % (r["ndcg@10"], r["recall@100"], r["mrr@10"]), end="")' "$json")
    if [ "$c" = cranfield ]; then
      p50=$(python3 -c 'import json,sys; print("%.1f" % json.loads(sys.argv[1])["latency_ms_p50"])' "$json")
    fi
  done
  echo "$row $p50 |"
done
