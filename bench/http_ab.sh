#!/usr/bin/env bash
# Same-run A/B of two ibex builds over HTTP: each serves its own index of Cranfield (written by
# that build, since index formats may differ), wrk sends every Cranfield query (top 10, 2
# passages) in hybrid and BM25 mode at concurrency 1 and 8, 15 s each after a 3 s warm-up; the
# builds take turns ROUNDS times (default 2). For "at least Nx the commit this work starts
# from": build the old commit's `ibex` into its own target folder (a git worktree with its own
# CARGO_TARGET_DIR: sharing one can mix the two builds' libraries) and pass both binaries.
#
#   bash bench/http_ab.sh OLD_IBEX NEW_IBEX
#
# Needs wrk (apt-get install wrk). Indexes go under target/bench/ab/{old,new}.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1
new=$2
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
queries=../shared/data/cranfield/beir/queries.jsonl
mkdir -p target/bench/ab
lua=target/bench/cranfield-search.lua
# The request cycler of bench/http_load.sh.
sed -n '/^cat > "\$lua" <<.LUA.$/,/^LUA$/p' bench/http_load.sh | sed '1d;$d' > "$lua"
for mode in hybrid bm25; do
  python3 - "$queries" "$mode" > "target/bench/ab/$mode.bodies" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    q = json.loads(line)
    print(json.dumps({"query": q["text"], "mode": sys.argv[2], "top_k": 10, "passages": 2}))
PY
done
for which in old new; do
  binary=${!which}
  if [ ! -d "target/bench/ab/$which/cranfield" ]; then
    "$binary" index ../shared/data/cranfield/beir --index "target/bench/ab/$which/cranfield" >&2
  fi
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
echo "| round | build | mode | concurrency | QPS | p50 ms | p99 ms | errors | requests |"
echo "|---|---|---|---|---|---|---|---|---|"
for round in $(seq "${ROUNDS:-2}"); do
  for which in old new; do
    binary=${!which}
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$binary" serve --data-dir "target/bench/ab/$which" --addr "127.0.0.1:$port" --max-concurrent 256 \
      > "target/bench/ab/$which-server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 300); do
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
      sleep 0.2
    done
    for mode in hybrid bm25; do
      for concurrency in 1 8; do
        threads=$((concurrency > 1 ? 2 : 1))
        BODIES="target/bench/ab/$mode.bodies" wrk -t1 -c1 -d3s -s "$lua" "http://127.0.0.1:$port" > /dev/null
        read -r _ qps p50 p99 errors requests <<< "$(BODIES="target/bench/ab/$mode.bodies" \
          wrk -t"$threads" -c"$concurrency" -d15s --timeout 30s -s "$lua" "http://127.0.0.1:$port" | grep '^RESULT')"
        echo "| $round | $which | $mode | $concurrency | $qps | $p50 | $p99 | $errors | $requests |"
      done
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
  done
done
