#!/usr/bin/env bash
# Prints the x86 SIMD class of this CPU as the benchmarks record it: avx512, avx2 or baseline
# (other architectures: their `uname -m`).
if [ "$(uname -m)" != "x86_64" ]; then uname -m; exit 0; fi
if grep -q -w avx512f /proc/cpuinfo; then echo avx512
elif grep -q -w avx2 /proc/cpuinfo && grep -q -w fma /proc/cpuinfo; then echo avx2
else echo baseline; fi
