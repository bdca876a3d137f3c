#!/usr/bin/env bash
# The compressor's compression/retention curve on NQ-open against its baselines: `ibex
# eval-compress` at several token budgets, every method in the same pass (EVALUATION.md's
# setting: gold passage + 9 retrieved distractors). Writes bench/results/compression.csv.
#
#   [LIMIT=200] [BUDGETS="32 48 64 96 128"] bash bench/compression_curve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
nq=../shared/data/nq-open-oracle-dev/nq-open-oracle.dev-split.jsonl.gz
index=target/bench/nq-pool
out=bench/results/compression.csv
limit=${LIMIT:-200}
echo "date,source,questions,budget,method,compression,retention" > "$out.partial"
for budget in ${BUDGETS:-32 48 64 96 128}; do
  ./target/release/ibex eval-compress "$nq" --index "$index" --limit "$limit" --budget "$budget" --json > "$out.run.json"
  python3 - "$out.run.json" "$budget" >> "$out.partial" <<'PY'
import datetime, json, sys
r = json.load(open(sys.argv[1]))
day = datetime.date.today().isoformat()
for name, f in [("ib", r)] + sorted(r["baselines"].items()):
    print(f"{day},bench/compression_curve.sh,{f['questions']},{sys.argv[2]},{name},{f['compression']:.5f},{f['retention']:.4f}")
PY
  echo "budget $budget done" >&2
done
rm -f "$out.run.json"
mv "$out.partial" "$out"
cat "$out"
