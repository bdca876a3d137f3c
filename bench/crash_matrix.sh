#!/usr/bin/env bash
# The long crash run of RELIABILITY.md: SIGKILL at random moments, through the server
# (tests/crash_server.rs: acknowledged-write log, whole-or-absent check of the write in flight),
# through the CLI (tests/crash_safety.rs: `ibex index` runs committing every 8 documents and
# building HNSW graphs from 24 chunks, every third kill aimed at a graph build) and through
# `ibex index-interactions` (old data or new, whole).
#
#   SERVER_KILLS=650 CLI_KILLS=200 INTERACTION_RUNS=200 SEED=2 bash bench/crash_matrix.sh
#
# INTERACTION_RUNS counts installs, four in five of them killed (one at each step of the commit)
# and the fifth left to complete: the defaults make 650 + 200 + 160 = 1,010 kills.
#
# The same tests run in `cargo test` with 30 + 22 + 12 kills; here only the counts and seed
# differ.
# Prints each harness's summary line and the wall time; a failure prints the kill, the
# operation and the states that differ, and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER_KILLS=${SERVER_KILLS:-650}
CLI_KILLS=${CLI_KILLS:-200}
INTERACTION_RUNS=${INTERACTION_RUNS:-200}
SEED=${SEED:-1}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) cores; $(grep -o -w -m1 avx512f /proc/cpuinfo || echo 'no avx512f')"
cargo test --test crash_server --test crash_safety --no-run -q 2>/dev/null
started=$(date +%s)
IBEX_CRASH_KILLS=$SERVER_KILLS IBEX_CRASH_SEED=$SEED cargo test -q --test crash_server \
    acknowledged_writes -- --nocapture 2>&1 | grep -E "kills|panicked|assert|left|right|test result"
server_done=$(date +%s)
IBEX_CLI_CRASH_KILLS=$CLI_KILLS IBEX_INTERACTION_CRASH_KILLS=$INTERACTION_RUNS \
    IBEX_CRASH_SEED=$SEED cargo test -q --test crash_safety -- --nocapture --test-threads 1 2>&1 | grep -E "kills|panicked|assert|left|right|test result"
finished=$(date +%s)
echo "server: $SERVER_KILLS kills in $((server_done - started)) s; CLI: $CLI_KILLS index kills and $INTERACTION_RUNS index-interactions runs ($((INTERACTION_RUNS * 4 / 5)) killed) in $((finished - server_done)) s; seed $SEED"
