#!/usr/bin/env bash
# Runs clang-tidy (the checks chosen in .clang-tidy) over every C source the build compiles, one
# file per process, JOBS at a time, and fails on any finding. One process per file is not only
# for speed: clang-tidy 14's valist checker reports a false "uninitialized va_list" in every file
# after the first when one process analyses several.
#
#   scripts/tidy.sh [BUILD]      (BUILD/compile_commands.json; JOBS defaults to nproc)
#
# Prints each finding, the number of files and the time taken. All of them, bench/ and tests/
# included: 2 to 3.5 minutes with 2 jobs on the shared 2-core machine (load 3 to 5), inside the
# ~5 minutes CI can spend on it; were it to grow past that, bench/ and tests/ are the ones to
# leave out first (they ship nothing).
set -euo pipefail
BUILD=${1:-build}
JOBS=${JOBS:-$(nproc)}
root=$(cd "$(dirname "$0")/.." && pwd)
tidy=${CLANG_TIDY:-clang-tidy}
command -v "$tidy" >/dev/null || { echo "tidy.sh: $tidy not found" >&2; exit 1; }
[ -f "$BUILD/compile_commands.json" ] || { echo "tidy.sh: no $BUILD/compile_commands.json" >&2; exit 1; }

# The repository's own sources (not the files the build generates into BUILD).
mapfile -t files < <(python3 - "$BUILD/compile_commands.json" "$root" <<'PY'
import json, os, sys
root = os.path.realpath(sys.argv[2])
seen = set()
for entry in json.load(open(sys.argv[1])):
    path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    if path.startswith(root + "/") and os.path.exists(path) and \
            not os.path.relpath(path, root).startswith("build"):
        seen.add(path)
print("\n".join(sorted(seen)))
PY
)
[ ${#files[@]} -gt 0 ] || { echo "tidy.sh: no sources found" >&2; exit 1; }

out=$(mktemp -d "${TMPDIR:-/tmp}/epp-tidy.XXXXXX")
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
# Each file's findings go to its own log; xargs fails when any clang-tidy does.
# shellcheck disable=SC2016 # the single-quoted script expands its own arguments
printf '%s\n' "${files[@]}" |
    xargs -P "$JOBS" -I{} sh -c '"$1" -p "$2" --quiet "$3" >"$4/$(echo "$3" | tr / _).log" 2>&1' \
        _ "$tidy" "$BUILD" {} "$out" && status=0 || status=1
elapsed=$(($(date +%s) - start))
findings=$(cat "$out"/*.log | grep -E '(warning|error): ' | grep -v '^Error while processing' | sort -u || true)
if [ -n "$findings" ]; then
    cat "$out"/*.log | grep -vE '^[0-9]+ warnings? (generated|treated as errors?)\.$' |
        grep -v '^Suppressed ' | grep -v '^Use -header-filter' || true
    status=1
fi
n=$(printf '%s\n' "$findings" | grep -c . || true)
echo "tidy.sh: ${#files[@]} files, $n findings, ${elapsed}s with $JOBS jobs"
exit "$status"
