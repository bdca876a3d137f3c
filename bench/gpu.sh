#!/usr/bin/env bash
# GPU checks and benchmarks of the `cuda` build, in two steps, because the build machine and the
# GPU machine need not be the same one:
#
#   bash bench/gpu.sh build [DIR]   on a machine with the CUDA toolkit (nvcc): builds the embedder's
#                                   CUDA reference tests and gpu_throughput (release, sm_90 by
#                                   default: CUDA_COMPUTE_CAP), strips them and packs them with the
#                                   test fixtures into DIR (default .gpu)
#   bash bench/gpu.sh run [DIR]     on the GPU machine: the reference tests on the device
#                                   (f32, and bf16 for E5-Mistral), then `gpu_throughput all`
#                                   (E5-Mistral-7B bf16 and M2-BERT-32k, random weights of the
#                                   real shapes) and, where PyTorch and transformers are installed,
#                                   the PyTorch peer bench/gpu_e5_peer.py on the same shapes.
#                                   Tables go to stdout, and to $OUT when it is set.
#   bash bench/gpu.sh exec DIR CMD  on the GPU machine: CMD with the unpacked binaries in DIR and
#                                   the CUDA libraries on LD_LIBRARY_PATH (for profilers, e.g.
#                                   `ncu --print-summary per-kernel .gpu/gpu_throughput e5 16x512`)
#
# Without a system CUDA toolkit, nvcc and the libraries can come from PyPI (see BENCHMARKS.md):
#   pip install nvidia-cuda-nvcc nvidia-cuda-runtime nvidia-cuda-crt nvidia-nvvm nvidia-cuda-cccl \
#       nvidia-cublas nvidia-curand nvidia-cuda-nvrtc (all 13.0) and nvidia-cufft (12.0), with CUDA_ROOT pointing there.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-}
dir=${2:-.gpu}

case "$step" in
build)
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
    cargo build --release --features cuda -p ibex-embedder --example gpu_throughput
    cargo test --release --features cuda -p ibex-embedder --no-run --message-format=json \
        >"$dir.tests.json"
    mkdir -p "$dir/fixtures"
    target=${CARGO_TARGET_DIR:-target}
    strip -o "$dir/gpu_throughput" "$target/release/examples/gpu_throughput"
    for test in e5_mistral_reference m2_bert_reference; do
        binary=$(grep -o "\"executable\":\"[^\"]*/$test-[^\"]*\"" "$dir.tests.json" | cut -d'"' -f4)
        strip -o "$dir/$test" "$binary"
    done
    rm "$dir.tests.json"
    cp -r ../shared/fixtures/e5-mistral-tiny ../shared/fixtures/m2-bert-tiny "$dir/fixtures/"
    xz -T0 -f "$dir"/gpu_throughput "$dir"/*_reference
    du -sh "$dir"
    ;;
run | exec)
    for packed in "$dir"/*.xz; do xz -d -k -f "$packed"; done
    chmod +x "$dir"/gpu_throughput "$dir"/*_reference
    # The CUDA libraries the build links (cuBLAS, cuRAND, cuFFT, NVRTC, the runtime): the system's, else the
    # ones PyTorch's wheels installed.
    libs=$(find /usr /opt -xdev \( -name 'libcublas.so.13' -o -name 'libcurand.so.10' \
        -o -name 'libcudart.so.13' -o -name 'libnvrtc.so.13' -o -name 'libcufft.so.12' \) 2>/dev/null |
        xargs -r -n1 dirname | sort -u | paste -sd:)
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if [ "$step" = exec ]; then
        shift 2
        exec "$@"
    fi
    out=${OUT:-/tmp/ibex-gpu}
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/device.txt"
    export IBEX_TEST_DEVICE=cuda IBEX_FIXTURES_DIR="$dir/fixtures"
    status=0
    for test in e5_mistral_reference m2_bert_reference; do
        "$dir/$test" --nocapture 2>&1 | tee "$out/$test.txt" || status=1
    done
    "$dir/gpu_throughput" all 2>&1 | tee "$out/ibex_gpu.md" || status=1
    if python3 -c 'import torch, transformers' 2>/dev/null; then
        PYTHONUNBUFFERED=1 python3 bench/gpu_e5_peer.py 2>&1 | tee "$out/torch_gpu.md" || status=1
    fi
    exit $status
    ;;
*)
    echo "usage: bash bench/gpu.sh build|run [DIR]" >&2
    exit 2
    ;;
esac
