#!/usr/bin/env bash
# Runs every unit-test program of a build (BUILD/tests/test_*) under valgrind memcheck; fails on
# any memory error or definite leak. Usage: scripts/valgrind-unit.sh [BUILD]
set -uo pipefail
BUILD=${1:-build}
status=0
count=0
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    count=$((count + 1))
    log=$(mktemp)
    if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        "$t" >"$log" 2>&1; then
        echo "valgrind ok   $(basename "$t")"
    else
        echo "valgrind FAIL $(basename "$t")"
        tail -50 "$log"
        status=1
    fi
    rm -f "$log"
done
echo "valgrind: $count unit-test programs checked"
[ "$count" -gt 0 ] || status=1
exit $status
