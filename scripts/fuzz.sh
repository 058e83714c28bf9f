#!/usr/bin/env bash
# Builds every libFuzzer target tests/fuzz/fuzz_<name>.c and runs each for N seconds.
#
#   scripts/fuzz.sh [SECONDS]     (default 60 per target)
#
# Targets are built with clang (-fsanitize=fuzzer,address,undefined) straight from common/*.c,
# not through the CMake build, into build-fuzz/. Each target starts from a temporary copy of its
# seed corpus tests/fuzz/corpus/<name>/ (so new inputs never land in the repository) and uses
# tests/fuzz/<name>.dict when present. Crash inputs are kept in build-fuzz/artifacts/.
# Exits non-zero if any target fails to build or finds a crash, leak, timeout or sanitizer report.
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

pkgs="rdkafka libpq yajl libcurl zlib"
# shellcheck disable=SC2086
pkg_cflags=$(pkg-config --cflags $pkgs 2>/dev/null || true)
# shellcheck disable=SC2086
pkg_libs=$(pkg-config --libs $pkgs 2>/dev/null || echo "-lrdkafka -lpq -lyajl -lcurl -lz")
# shellcheck disable=SC2206,SC2054
cflags=(-std=c17 -D_GNU_SOURCE '-DEPP_VERSION="fuzz"' -g -O1 -fno-omit-frame-pointer
        -fsanitize=address,undefined -fno-sanitize-recover=undefined "-I$root/common" $pkg_cflags)

rm -rf "$out/obj"
mkdir -p "$out/obj" "$out/artifacts"

# libepp once, instrumented for coverage but without libFuzzer's main().
echo "fuzz.sh: building common/*.c with $cc"
objs=()
for src in "$root"/common/*.c; do
    obj=$out/obj/$(basename "${src%.c}").o
    "$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" 2>"$obj.log" &
    objs+=("$obj")
    # Two compilers at a time: the machine is shared.
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || true; done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || true; done
# The objects go into an archive, so each target links only what it uses. A file that does
# not compile is left out with a warning (the CMake build is where it fails loudly); a target
# that needs it then fails to link, which fails the run.
built=()
for obj in "${objs[@]}"; do
    if [ -f "$obj" ]; then
        built+=("$obj")
    else
        echo "fuzz.sh: warning: common/$(basename "${obj%.o}").c did not compile, left out (see $obj.log)" >&2
    fi
done
rm -f "$out/libepp-fuzz.a"
ar rcs "$out/libepp-fuzz.a" "${built[@]}"

status=0
for src in "${targets[@]}"; do
    target=$(basename "${src%.c}")
    name=${target#fuzz_}
    bin=$out/$target
    # shellcheck disable=SC2086
    if ! "$cc" "${cflags[@]}" -fsanitize=fuzzer "$src" "$out/libepp-fuzz.a" -o "$bin" $pkg_libs -lpthread -lm; then
        echo "fuzz.sh: $target: build failed" >&2
        status=1
        continue
    fi
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
