#!/usr/bin/env bash
# Distributed indexing on Ray against `ibex index`, in the same run (bench/ray_indexing.py): the
# first DOCS documents of Cranfield indexed by `ibex index` (one process), by one Ray embedding
# worker with every core, and by two workers of one core each on a two-node Ray cluster on
# loopback. Prints documents/s and the ratio to `ibex index`.
#
#   [DOCS=600] bash bench/ray_indexing.sh            # release builds, in target/bench
#   [DOCS=600] PROFILE=dev bash bench/ray_indexing.sh  # the test suite's dev builds
# Run it alone: Ray's workers compete with anything else for the cores (and with a cargo build
# for memory).
set -euo pipefail
cd "$(dirname "$0")/.."
docs=${DOCS:-600}
if [ "${PROFILE:-release}" = dev ]; then
    venv=target/python-venv
    ibex=target/debug/ibex
else
    cargo build --release -q
    venv=target/bench/python-pkg-venv
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check ./python >&2
    ibex=target/release/ibex
fi
"$venv/bin/python" -c "import ray.data, ray.serve" 2>/dev/null ||
    "$venv/bin/pip" install -q --disable-pip-version-check -r python/requirements-ray.txt >&2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), CPU class $(bash bench/cpu_class.sh); $(date -u +%F); profile ${PROFILE:-release}"
"$venv/bin/python" bench/ray_indexing.py "$ibex" ../shared/data/cranfield/beir/corpus.jsonl.gz "$docs"
