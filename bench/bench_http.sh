#!/usr/bin/env bash
# bench_http: how fast can the HTTP layer alone answer POST /events after an asynchronous ack?
#
# Baselines: nginx (`return 204;`, access log off) with as many workers as epp_http has threads,
# and with one worker, on random loopback ports.
# Candidate: build/bin/bench_http_echo (bench/http_echo.c): epp_http with POST /events suspended
# and answered 202 from a second thread that drains a queue in bursts, like ingestion's Kafka
# delivery-report thread. Both get the same wrk load: 1 thread, 256 connections, a 160-byte JSON
# body. Prints req/s, p99 and CPU time per request for each and the ratio candidate/nginx
# (measured in this run, rounds alternating which side goes first); exit 1 below 0.8x.
#
# Env: EPP_BUILD_DIR (default ./build), BENCH_DURATION seconds (default 10),
# BENCH_CONNECTIONS (256), BENCH_HTTP_THREADS (epp_http worker threads, default 2),
# BENCH_HTTP_MODE (async | sync, default async), BENCH_ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
BENCH_NAME=bench_http
BUILD=${EPP_BUILD_DIR:-build}
DUR=${BENCH_DURATION:-5}
CONNS=${BENCH_CONNECTIONS:-256}
THREADS=${BENCH_HTTP_THREADS:-2}
MODE=${BENCH_HTTP_MODE:-async}
ECHO_BIN="$BUILD/bin/bench_http_echo"

require_tools wrk nginx
[ -x "$ECHO_BIN" ] || { echo "bench_http: $ECHO_BIN not built"; exit 1; }

TMP=$(mktemp -d /tmp/epp-bench-http.XXXXXX)
NGINX_PID=""
ECHO_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    [ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null && wait "$ECHO_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

write_post_lua "$TMP/post.lua"
E_BAD=0

ECHO_ARGS=(--threads "$THREADS")
[ "$MODE" = sync ] && ECHO_ARGS+=(--sync)
start_echo() {
    "$ECHO_BIN" "${ECHO_ARGS[@]}" >"$TMP/echo.port" &
    ECHO_PID=$!
    for _ in $(seq 1 100); do [ -s "$TMP/echo.port" ] && break; sleep 0.05; done
    ECHO_PORT=$(head -1 "$TMP/echo.port")
    wait_port "$ECHO_PORT"
}
stop_echo() { kill "$ECHO_PID"; wait "$ECHO_PID" 2>/dev/null || true; ECHO_PID=""; }

# Rounds alternate which side goes first (the load on a shared machine drifts); medians.
ROUNDS=${BENCH_ROUNDS:-3}
: >"$TMP/rounds"
for r in $(seq 1 "$ROUNDS"); do
    for side in $([ $((r % 2)) -eq 1 ] && echo "nginx nginx1 epp" || echo "epp nginx1 nginx"); do
        case $side in
        nginx | nginx1)
            nginx_configure "$([ "$side" = nginx ] && echo "$THREADS" || echo 1)"
            nginx_start
            read -r rps _ p99 _ cpu < <(run_wrk "http://127.0.0.1:$NGINX_PORT/events" "$TMP/post.lua" "$CONNS" nginx)
            nginx_stop
            ;;
        epp)
            start_echo
            read -r rps _ p99 bad cpu < <(run_wrk "http://127.0.0.1:$ECHO_PORT/events" "$TMP/post.lua" "$CONNS" "$ECHO_PID")
            stop_echo
            E_BAD=$((E_BAD + ${bad:-0}))
            ;;
        esac
        eval "${side}_rps=$rps ${side}_p99=$(ms "$p99") ${side}_cpu=$cpu"
    done
    # shellcheck disable=SC2154 # set by the eval above
    echo "$epp_rps $nginx_rps $nginx1_rps $epp_cpu $nginx_cpu $epp_p99 $nginx_p99" >>"$TMP/rounds"
    # shellcheck disable=SC2154
    awk -v r="$r" -v e="$epp_rps" -v n="$nginx_rps" -v n1="$nginx1_rps" -v ec="$epp_cpu" -v nc="$nginx_cpu" \
        'BEGIN { printf "  round %d: epp_http %.0f req/s (%s us/req), nginx %.0f (%s us/req), nginx 1 worker %.0f; ratio %.2fx (%.2fx of 1 worker)\n", r, e, ec, n, nc, n1, e / n, e / n1 }'
done
E_RPS=$(median "$TMP/rounds" 1)
N_RPS=$(median "$TMP/rounds" 2)
N1_RPS=$(median "$TMP/rounds" 3)
E_CPU=$(median "$TMP/rounds" 4)
N_CPU=$(median "$TMP/rounds" 5)
E_P99=$(median "$TMP/rounds" 6)
N_P99=$(median "$TMP/rounds" 7)
R=$(awk '{ print $1 / $2 }' "$TMP/rounds" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
R1=$(awk '{ print $1 / $3 }' "$TMP/rounds" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')

echo "median of $ROUNDS rounds, wrk -t1 -c$CONNS -d${DUR}s, 160-byte POST; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'nginx return 204 (%s workers):      %10.0f req/s  p99 %s ms  %s us CPU/request\n' "$THREADS" "$N_RPS" "$N_P99" "$N_CPU"
printf 'nginx return 204 (1 worker):        %10.0f req/s\n' "$N1_RPS"
printf 'epp_http %-5s (%s workers):         %10.0f req/s  p99 %s ms  %s us CPU/request  non-2xx %s\n' \
    "$MODE" "$THREADS" "$E_RPS" "$E_P99" "$E_CPU" "$E_BAD"
printf 'ratio epp_http/nginx: %.2fx (%s workers each); %.2fx of nginx with 1 worker\n' "$R" "$THREADS" "$R1"
STATUS=0
target "the HTTP layer alone >= 0.8x nginx" "$R >= 0.8"
if [ "${E_BAD:-0}" != 0 ]; then
    echo "bench_http: epp answered $E_BAD requests with a non-2xx status"
    STATUS=1
fi
exit $STATUS
