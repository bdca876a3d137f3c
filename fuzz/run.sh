#!/usr/bin/env bash
# Runs ibex's fuzz targets (libFuzzer through cargo fuzz, AddressSanitizer, debug assertions on)
# for SECONDS each, two at a time, and prints each target's summary.
#
#   SECONDS_PER_TARGET=600 bash fuzz/run.sh            # every target
#   SECONDS_PER_TARGET=600 bash fuzz/run.sh corpus     # one target
#
# cargo fuzz needs nightly flags; no nightly toolchain can be downloaded here, so the stable
# compiler is told to accept them (RUSTC_BOOTSTRAP=1). Needs `cargo install cargo-fuzz` and a C++
# compiler (libFuzzer is built from source by libfuzzer-sys). The corpora grow under
# fuzz/corpus/TARGET (ignored by git); a crash is saved under fuzz/artifacts/TARGET and becomes a
# regression test in the crate it belongs to. A target with a folder under fuzz/seeds starts from
# those inputs too (valid requests the fuzzer would take long to find alone). Never run beside a
# cargo build: both want the cores.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-600}
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(corpus index_files search_request api_request llm_request)
fi
export RUSTC_BOOTSTRAP=1
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) cores; $(grep -o -w -m1 avx512f /proc/cpuinfo || echo 'no avx512f')"
cargo fuzz build -O --fuzz-dir . 2>&1 | tail -1
mkdir -p logs
run_one() {
    local target=$1
    local status=0
    mkdir -p "corpus/$target"
    local seeds=()
    if [ -d "seeds/$target" ]; then seeds=("seeds/$target"); fi
    # -timeout: seconds one input may take. llm_request's inputs run the embedded LLM (a prompt of
    # up to the body limit is prefilled under AddressSanitizer), so it gets more.
    local timeout=20
    if [ "$target" = llm_request ]; then timeout=120; fi
    # -rss_limit_mb: an allocation sized by a damaged length field shows up as a crash.
    # -detect_leaks=0: the targets keep their fixture index and the server's tokio runtime in
    # statics for the whole run, and LeakSanitizer reports the runtime's live blocking threads
    # at exit as leaks (an api_request run of 600 s ended that way, with no failing input).
    cargo fuzz run -O --fuzz-dir . "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout="$timeout" -print_final_stats=1 \
        -detect_leaks=0 \
        > "logs/$target.log" 2>&1 || status=$?
    local runs
    runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "logs/$target.log" | grep -o '[0-9]*$' || echo '?')
    local cov
    cov=$(grep -o 'cov: [0-9]*' "logs/$target.log" | tail -1 || true)
    echo "$target: exit $status, $runs executions in ${SECONDS_PER_TARGET}s, $cov, corpus $(ls "corpus/$target" | wc -l) inputs"
    return $status
}
failed=0
for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
    run_one "${TARGETS[i]}" & first=$!
    second=""
    if [ $((i + 1)) -lt ${#TARGETS[@]} ]; then
        run_one "${TARGETS[i + 1]}" & second=$!
    fi
    wait $first || failed=1
    if [ -n "$second" ]; then wait $second || failed=1; fi
done
exit $failed
