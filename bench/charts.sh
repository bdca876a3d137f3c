#!/usr/bin/env bash
# Draws the charts of BENCHMARKS.md and EVALUATION.md from bench/results/*.csv into charts/
# (SVG). matplotlib comes from PyPI into a small virtualenv of its own (target/bench/charts-venv).
#
#   bash bench/charts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench/charts-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'matplotlib==3.*'
fi
"$venv/bin/python" bench/charts.py bench/results charts
