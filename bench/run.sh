#!/usr/bin/env bash
# make bench: runs every bench/bench_*.sh in turn. Each prints its own figures and the ratio
# against a baseline it measures in the same run (these machines are noisy: only ratios taken
# in one run mean anything). BENCH_ONLY=name runs one.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
EPP_BUILD_DIR=$(cd "$BUILD" && pwd) || exit 1
export EPP_BUILD_DIR
status=0
for b in bench/bench_*.sh; do
    name=$(basename "$b" .sh)
    if [ -n "${BENCH_ONLY:-}" ] && [ "$name" != "bench_${BENCH_ONLY}" ]; then continue; fi
    echo "=== $name"
    bash "$b" || { echo "$name: FAILED"; status=1; }
done
exit $status
