#!/usr/bin/env bash
# Builds every libFuzzer target tests/fuzz/fuzz_<name>.c and runs each for N seconds.
#
#   scripts/fuzz.sh [SECONDS]     (default 60 per target)
#
# The targets are built by CMake with -DEPP_FUZZ=ON and clang (-fsanitize=fuzzer, ASan, UBSan),
# each linked with the library whose code it fuzzes (tests/fuzz/CMakeLists.txt), into
# build-fuzz/fuzz/. Each target starts from a temporary copy of its seed corpus
# tests/fuzz/corpus/<name>/ (so new inputs never land in the repository) and uses
# tests/fuzz/<name>.dict when present. Crash inputs are kept in build-fuzz/artifacts/.
# Exits non-zero if the build fails or any target finds a crash, leak, timeout or sanitizer report.
set -euo pipefail

seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build-fuzz
cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
    for c in clang clang-14 clang-15 clang-16; do
        if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
    done
fi
[ -n "$cc" ] || { echo "fuzz.sh: clang not found" >&2; exit 1; }

shopt -s nullglob
targets=("$root"/tests/fuzz/fuzz_*.c)
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz.sh: no targets in tests/fuzz/"
    exit 0
fi

mkdir -p "$out"
echo "fuzz.sh: building the fuzzers with $cc (cmake -DEPP_FUZZ=ON, $out)"
cmake -S "$root" -B "$out" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug -DEPP_FUZZ=ON \
    >"$out/configure.log" 2>&1 || { cat "$out/configure.log" >&2; exit 1; }
# Two compilers at a time at most: the machine is shared.
cmake --build "$out" --target fuzzers -j "${FUZZ_JOBS:-2}"
mkdir -p "$out/artifacts"

status=0
for src in "${targets[@]}"; do
    target=$(basename "${src%.c}")
    name=${target#fuzz_}
    bin=$out/fuzz/$target
    corpus=$(mktemp -d "${TMPDIR:-/tmp}/epp-fuzz-$name.XXXXXX")
    if [ -d "$root/tests/fuzz/corpus/$name" ]; then
        cp -R "$root/tests/fuzz/corpus/$name/." "$corpus/"
    fi
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536
          -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-")
    if [ -f "$root/tests/fuzz/$name.dict" ]; then
        args+=(-dict="$root/tests/fuzz/$name.dict")
    fi
    echo "fuzz.sh: running $target for ${seconds}s (corpus copy in $corpus)"
    rc=0
    "$bin" "${args[@]}" "$corpus" >"$out/$target.log" 2>&1 || rc=$?
    grep -E '^(stat::|#[0-9]+ +DONE)' "$out/$target.log" | tail -n 12 || true
    if [ $rc -ne 0 ]; then
        echo "fuzz.sh: $target FAILED (exit $rc); log: $out/$target.log" >&2
        grep -E 'ERROR|property failed|SUMMARY|Test unit written' "$out/$target.log" >&2 || true
        status=1
    else
        echo "fuzz.sh: $target ok"
    fi
    rm -rf "$corpus"
done
exit $status
