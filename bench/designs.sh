#!/usr/bin/env bash
# designs.sh: the HTTP designs of issue 20 side by side (docs/architecture.md, "The HTTP layer").
# Not run by `make bench` (its name is not bench_*.sh): it is how the choice was measured.
#
# Each round runs nginx `return 204;` (as many workers as the designs have threads) and then each
# design, in an order that rotates from round to round, under the same load as bench_http.sh
# (wrk -t1 -c256, a 160-byte POST): epp_http (bench_http_echo), libmicrohttpd's poll pool and
# thread-per-connection modes (bench_proto_mhd), h2o's event loop (bench_proto_h2o, when built).
# Every design answers 202 from a second thread, as ingestion answers after the Kafka ack
# (DESIGNS_SYNC=1: inline instead). Prints req/s, p99 and CPU per request per round, then medians.
#
# Env: EPP_BUILD_DIR (./build), BENCH_DURATION (4 s), BENCH_ROUNDS (3), BENCH_HTTP_THREADS (2),
# DESIGNS_EXTRA="name=command ..." (more candidates, e.g. an older build's bench_http_echo).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
BENCH_NAME=designs
BUILD=${EPP_BUILD_DIR:-build}
DUR=${BENCH_DURATION:-4}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_HTTP_THREADS:-2}
SYNC=""
[ "${DESIGNS_SYNC:-0}" = 1 ] && SYNC=--sync
require_tools wrk nginx
TMP=$(mktemp -d /tmp/epp-designs.XXXXXX)
NGINX_PID=""
PID=""
cleanup() {
    for p in "$NGINX_PID" "$PID"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
write_post_lua "$TMP/post.lua"
DESIGNS=("epp_http=$BUILD/bin/bench_http_echo --threads $THREADS $SYNC"
         "mhd-poll=$BUILD/bin/bench_proto_mhd --mode poll --threads $THREADS $SYNC"
         "mhd-thread-per-conn=$BUILD/bin/bench_proto_mhd --mode tpc $SYNC")
[ -x "$BUILD/bin/bench_proto_h2o" ] && DESIGNS+=("h2o-evloop=$BUILD/bin/bench_proto_h2o --threads $THREADS $SYNC")
# DESIGNS_EXTRA entries are name=command with + for spaces in the command.
for extra in ${DESIGNS_EXTRA:-}; do
    cmd=${extra#*=}
    DESIGNS+=("${extra%%=*}=${cmd//+/ }")
done
: >"$TMP/results"
n=${#DESIGNS[@]}
for r in $(seq 1 "$ROUNDS"); do
    nginx_configure "$THREADS"
    nginx_start
    read -r rps _ p99 _ cpu < <(run_wrk "http://127.0.0.1:$NGINX_PORT/events" "$TMP/post.lua" 256 nginx)
    nginx_stop
    echo "nginx $rps $(ms "$p99") $cpu" >>"$TMP/results"
    printf '  round %d %-22s %8.0f req/s  p99 %8s  %5s us/req\n' "$r" "nginx (${THREADS}w)" "$rps" "$p99" "$cpu"
    for k in $(seq 0 $((n - 1))); do
        spec=${DESIGNS[$(((k + r - 1) % n))]}
        name=${spec%%=*}
        cmd=${spec#*=}
        port=$(free_port)
        # shellcheck disable=SC2086 # the command is a word list
        $cmd --port "$port" >/dev/null 2>&1 &
        PID=$!
        wait_port "$port" >/dev/null
        read -r rps _ p99 bad cpu < <(run_wrk "http://127.0.0.1:$port/events" "$TMP/post.lua" 256 "$PID")
        kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
        echo "$name $rps $(ms "$p99") $cpu" >>"$TMP/results"
        printf '  round %d %-22s %8.0f req/s  p99 %8s  %5s us/req  non-2xx %s\n' "$r" "$name" "$rps" "$p99" "$cpu" "$bad"
    done
done
echo "medians over $ROUNDS rounds (wrk -t1 -c256 -d${DUR}s; load $(cut -d' ' -f1-3 /proc/loadavg)):"
NG=$(awk '$1 == "nginx" { print $2 }' "$TMP/results" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
for name in nginx $(printf '%s\n' "${DESIGNS[@]}" | cut -d= -f1); do
    awk -v n="$name" '$1 == n' "$TMP/results" >"$TMP/one"
    printf '  %-22s %8.0f req/s (%.2fx nginx)  p99 %6.1f ms  %5.1f us CPU/request\n' "$name" \
        "$(median "$TMP/one" 2)" "$(awk -v a="$(median "$TMP/one" 2)" -v b="$NG" 'BEGIN { print a / b }')" \
        "$(median "$TMP/one" 3)" "$(median "$TMP/one" 4)"
done
