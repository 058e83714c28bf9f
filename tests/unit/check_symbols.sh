#!/usr/bin/env bash
# unit.no_epoll_interposition: no binary of the build (the programs in bin/, the test and fuzz
# programs, libepp.a) defines epoll_ctl or epoll_wait. epp_http once defined both to interpose
# every epoll call of the process (docs/architecture.md, "The HTTP layer"); a definition coming
# back would silently take over libc's for every library linked into the program.
#
#     check_symbols.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: check_symbols.sh BUILD_DIR}
checked=0
bad=0
while IFS= read -r -d '' f; do
    head -c 4 "$f" 2>/dev/null | grep -q $'\x7fELF' || [[ "$f" == *.a ]] || continue
    # Defined symbols, static and dynamic (nm prints nothing for a stripped table; readelf
    # covers the dynamic one).
    syms=$( { nm --defined-only "$f" 2>/dev/null; nm -D --defined-only "$f" 2>/dev/null; } |
            awk '{ print $NF }')
    if grep -qxE 'epoll_ctl|epoll_wait|epoll_pwait' <<<"$syms"; then
        echo "FAIL $f defines $(grep -xE 'epoll_ctl|epoll_wait|epoll_pwait' <<<"$syms" | sort -u | tr '\n' ' ')"
        bad=$((bad + 1))
    fi
    if readelf -Ws "$f" 2>/dev/null | awk '$7 != "UND" && ($8 == "epoll_ctl" || $8 == "epoll_wait")' | grep -q .; then
        echo "FAIL $f: readelf shows a definition of epoll_ctl/epoll_wait"
        bad=$((bad + 1))
    fi
    checked=$((checked + 1))
done < <(find "$build/bin" "$build/tests" "$build/common" -type f \( -perm -u+x -o -name '*.a' \) -print0)
if [ "$checked" -lt 5 ]; then
    echo "FAIL only $checked binaries found under $build: is it built?"
    exit 1
fi
echo "checked $checked binaries: $bad define epoll_ctl or epoll_wait"
[ "$bad" -eq 0 ]
