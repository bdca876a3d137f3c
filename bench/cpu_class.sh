#!/usr/bin/env bash
# Prints the x86 SIMD class of this CPU as the benchmarks record it: avx512, avx2 or baseline,
# with +bf16 (AVX512-BF16) and +amx (AMX-BF16) when present, which IBEX_EMBED_PRECISION=bf16
# uses (other architectures: their `uname -m`).
if [ "$(uname -m)" != "x86_64" ]; then uname -m; exit 0; fi
if grep -q -w avx512f /proc/cpuinfo; then
  class=avx512
  grep -q -w avx512_bf16 /proc/cpuinfo && class="$class+bf16"
  grep -q -w amx_bf16 /proc/cpuinfo && class="$class+amx"
  echo "$class"
elif grep -q -w avx2 /proc/cpuinfo && grep -q -w fma /proc/cpuinfo; then echo avx2
else echo baseline; fi
