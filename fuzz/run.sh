#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for SECONDS (default 30), one after another
# (one fuzzer process at a time), from the checked-in seeds (fuzz/seeds/<target>) and the
# local corpus (fuzz/corpus/<target>, not checked in). Prints executions and coverage per
# target; fails if any target crashed, panicked, timed out or ran out of memory (the input
# is kept in fuzz/artifacts/<target>/, the log in fuzz/logs/<target>.log).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   FUZZ_RUNS=10000000 fuzz/run.sh 0 gate     # a number of executions instead of a time
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain
# (FUZZ_TOOLCHAIN, default nightly).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-30}
shift || true
toolchain=${FUZZ_TOOLCHAIN:-nightly}
# An input taking more than 10 s is a hang; more than 2 GB resident is a leak; a single
# allocation above 64 MB, from inputs of a few kB, is an unbounded one (the decoders'
# legitimate allocations stay within 16 times their input and serde's 1 MiB preallocation).
limits=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 -print_final_stats=1)
if [[ -n "${FUZZ_RUNS:-}" ]]; then
    budget=(-runs="$FUZZ_RUNS")
else
    budget=(-max_total_time="$seconds")
fi

cargo +"$toolchain" fuzz build
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +"$toolchain" fuzz list)
fi

mkdir -p logs
failed=()
printf '%-14s %12s %8s %7s %7s %7s  %s\n' target executions seconds exec/s cov ft result
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="logs/$target.log"
    result=ok
    if ! cargo +"$toolchain" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        "${budget[@]}" "${limits[@]}" >"$log" 2>&1; then
        result="FAILED: see fuzz/$log and fuzz/artifacts/$target/"
        failed+=("$target")
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    time_s=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    status=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
    rate=$(( ${runs:-0} / (${time_s:-0} > 0 ? ${time_s:-1} : 1) ))
    printf '%-14s %12s %8s %7s %7s %7s  %s\n' "$target" "${runs:-?}" "${time_s:-?}" \
        "$rate" "${cov:-?}" "${ft:-?}" "$result"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found a crash in: ${failed[*]}" >&2
    for target in "${failed[@]}"; do
        echo "== fuzz/logs/$target.log (end)" >&2
        tail -40 "logs/$target.log" >&2
    done
    exit 1
fi
