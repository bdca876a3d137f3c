#!/usr/bin/env bash
# Load run against `POST /v1/indexes/cranfield/search` with wrk, over every Cranfield query,
# at several concurrencies, in hybrid and BM25 mode; after each, the same searches from as many
# threads called in-process (examples/search_throughput.rs: the same index and embedding queue,
# no HTTP), in the same run, so the table reports what HTTP costs as a ratio. wrk, the server and
# the in-process run share the machine's cores.
#
# Needs wrk (apt-get install wrk) and ../shared. Usage: bench/http_load.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
queries=../shared/data/cranfield/beir/queries.jsonl
cargo build --release -q
cargo build --release -q --example search_throughput
data=target/bench/http-data
if [ ! -d "$data/cranfield" ]; then
  ./target/release/ibex index ../shared/data/cranfield/beir --index "$data/cranfield" >&2
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
./target/release/ibex serve --data-dir "$data" --addr "127.0.0.1:$port" --max-concurrent 256 > target/bench/http-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

lua=target/bench/cranfield-search.lua
cat > "$lua" <<'LUA'
-- Cycles through the request bodies in BODIES (one JSON body per line); counts non-200s.
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  return wrk.format(nil, "/v1/indexes/cranfield/search", nil, bodies[(counter % #bodies) + 1])
end
local bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.2f %.2f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors, summary.requests))
end
LUA

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
echo "| mode | concurrency | HTTP requests | HTTP QPS | HTTP p50 ms | HTTP p99 ms | HTTP errors | in-process QPS | in-process p50 ms | HTTP QPS / in-process |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for mode in hybrid bm25; do
  bodies=target/bench/cranfield-$mode.bodies
  python3 - "$queries" "$mode" > "$bodies" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    q = json.loads(line)
    print(json.dumps({"query": q["text"], "mode": sys.argv[2], "top_k": 10, "passages": 2}))
PY
  for concurrency in 2 8 32; do
    line=$(BODIES="$bodies" wrk -t2 -c"$concurrency" -d"${seconds}s" --timeout 30s -s "$lua" "http://127.0.0.1:$port" | grep '^RESULT')
    read -r _ qps p50 p99 errors requests <<< "$line"
    # The same searches from as many threads, in one process without HTTP (the server is idle).
    read -r inqps inp50 < <(./target/release/examples/search_throughput "$data/cranfield" "$queries" "$mode" "$concurrency" "$seconds" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["qps"], d["p50_ms"])')
    ratio=$(python3 -c "print(f'{$qps / $inqps:.2f}')")
    echo "| $mode | $concurrency | $requests | $qps | $p50 | $p99 | $errors | $inqps | $inp50 | $ratio |"
    echo "$(date -u +%F),bench/http_load.sh,$mode,$concurrency,$qps,$p50,$p99,$errors,$inqps,$inp50" >> bench/results/http_load.csv
  done
done
