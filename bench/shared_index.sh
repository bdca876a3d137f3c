#!/usr/bin/env bash
# Builds (once) an ibex index of one shared BEIR collection under target/bench/indexes/NAME,
# with the default model and chunking, for the benchmarks that need one.
#   bash bench/shared_index.sh cranfield|cacm|qmsum-val
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
corpus=../shared/data/$name/beir
if [ ! -d "$corpus" ]; then
  echo "no BEIR collection at $corpus" >&2
  exit 1
fi
out=target/bench/indexes/$name
if [ ! -f "$out/lexical/meta.json" ]; then
  mkdir -p target/bench/indexes
  ./target/release/ibex index --index "$out" "$corpus"
fi
