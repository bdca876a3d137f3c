#!/usr/bin/env bash
# The load run of RELIABILITY.md: a mixed load over loopback at saturation for DURATION seconds
# (searches in every mode, upserts, deletes, an embedded-LLM answer every 30 s), with the server's
# RSS over time; then hybrid searches alone and beside 1,000 slow connections (half idle, half
# trickling a body), with the ratio of their latencies. The client is bench/load_mixed.py
# (Python's standard library only).
#
#   DURATION=600 SLOW=1000 bash bench/load_mixed.sh
#
# Needs ../shared and the release build (made here). Never beside a cargo build: the client,
# the server and the build would share the two cores. Exits non-zero if any response was a 5xx
# other than the documented 503 and 507.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
SLOW=${SLOW:-1000}
SEARCHERS=${SEARCHERS:-8}
# Each slow connection is a descriptor in the client and in the server.
ulimit -n "$(ulimit -Hn)"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) cores; $(grep -o -w -m1 avx512f /proc/cpuinfo || echo 'no avx512f'); $(date -u +%Y-%m-%d)"
# IBEX_BIN: an ibex binary already built (a quick check of this script with a debug build).
ibex=${IBEX_BIN:-./target/release/ibex}
if [ -z "${IBEX_BIN:-}" ]; then cargo build --release -q; fi
data=target/bench/load-data
rm -rf "$data"
mkdir -p "$data"
"$ibex" index ../shared/data/cranfield/beir --index "$data/cranfield" >&2

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=target/bench/load-server.log
"$ibex" serve --data-dir "$data" --addr "127.0.0.1:$port" > "$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/readyz" > /dev/null 2>&1; do
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
# Warm-up: the model and the embedded LLM are loaded before the clock starts.
for mode in bm25 dense hybrid; do
  curl -sf -X POST "http://127.0.0.1:$port/v1/indexes/cranfield/search" \
    -H 'Content-Type: application/json' -d "{\"query\": \"boundary layer\", \"mode\": \"$mode\"}" > /dev/null
done
curl -sf -X POST "http://127.0.0.1:$port/v1/indexes/cranfield/answer" -H 'Content-Type: application/json' \
  -d '{"question": "what is a boundary layer?", "max_tokens": 8}' > /dev/null
echo "server RSS after warm-up: $(awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' /proc/$server/status)"
status=0
python3 bench/load_mixed.py --port "$port" --server-pid "$server" \
  --queries ../shared/data/cranfield/beir/queries.jsonl --corpus ../shared/data/cranfield/beir/corpus.jsonl.gz \
  --duration "$DURATION" --slow "$SLOW" --searchers "$SEARCHERS" || status=$?
echo "server RSS at the end: $(awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' /proc/$server/status)"
exit $status
