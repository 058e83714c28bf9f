#!/usr/bin/env bash
# bench_http: how fast can the HTTP layer alone answer POST /events after an asynchronous ack?
#
# Baseline: nginx (1 worker, `return 204;`, access log off) on a random loopback port.
# Candidate: build/bin/bench_http_echo (bench/http_echo.c): epp_http with POST /events suspended
# and answered 202 from a second thread that drains a queue in bursts, like ingestion's Kafka
# delivery-report thread. Both get the same wrk load: 1 thread, 256 connections, a 160-byte JSON
# body. Prints req/s and latency for both and the ratio candidate/nginx (measured in this run).
#
# Env: EPP_BUILD_DIR (default ./build), BENCH_DURATION seconds (default 10),
# BENCH_CONNECTIONS (256), BENCH_HTTP_THREADS (MHD threads, default 2),
# BENCH_HTTP_MODE (async | sync, default async), BENCH_ROUNDS (alternating runs, default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
BENCH_NAME=bench_http
BUILD=${EPP_BUILD_DIR:-build}
DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-256}
THREADS=${BENCH_HTTP_THREADS:-2}
MODE=${BENCH_HTTP_MODE:-async}
ECHO_BIN="$BUILD/bin/bench_http_echo"

require_tools wrk nginx
[ -x "$ECHO_BIN" ] || { echo "bench_http: $ECHO_BIN not built"; exit 1; }

TMP=$(mktemp -d /tmp/epp-bench-http.XXXXXX)
NGINX_PID=""
ECHO_PID=""
cleanup() {
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    [ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null && wait "$ECHO_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

write_post_lua "$TMP/post.lua"
nginx_configure

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

# BENCH_ROUNDS > 1 alternates nginx and epp_http runs (on a shared machine the load drifts);
# the figures are then means over the rounds, latencies from the last round.
ROUNDS=${BENCH_ROUNDS:-1}
N_SUM=0; E_SUM=0; E_BAD=0
for _ in $(seq 1 "$ROUNDS"); do
    nginx_start
    read -r N_RPS N_P50 N_P99 _ < <(run_wrk "http://127.0.0.1:$NGINX_PORT/events" "$TMP/post.lua" "$CONNS")
    nginx_stop
    start_echo
    read -r E_RPS E_P50 E_P99 BAD _ < <(run_wrk "http://127.0.0.1:$ECHO_PORT/events" "$TMP/post.lua" "$CONNS")
    stop_echo
    N_SUM=$(awk -v a="$N_SUM" -v b="$N_RPS" 'BEGIN { print a + b }')
    E_SUM=$(awk -v a="$E_SUM" -v b="$E_RPS" 'BEGIN { print a + b }')
    E_BAD=$((E_BAD + ${BAD:-0}))
done
N_RPS=$(awk -v a="$N_SUM" -v n="$ROUNDS" 'BEGIN { print a / n }')
E_RPS=$(awk -v a="$E_SUM" -v n="$ROUNDS" 'BEGIN { print a / n }')

printf 'nginx return 204 (1 worker):          %10.0f req/s  p50 %-8s p99 %-8s\n' "$N_RPS" "$N_P50" "$N_P99"
printf 'epp_http %-5s (%s workers):          %10.0f req/s  p50 %-8s p99 %-8s non-2xx %s\n' \
    "$MODE" "$THREADS" "$E_RPS" "$E_P50" "$E_P99" "$E_BAD"
awk -v e="$E_RPS" -v n="$N_RPS" 'BEGIN { printf "ratio epp_http/nginx: %.2fx (wrk -t1 -c'"$CONNS"' -d'"$DUR"'s, 160-byte POST)\n", e / n }'
if [ "${E_BAD:-0}" != 0 ]; then
    echo "bench_http: epp answered $E_BAD requests with a non-2xx status"
    exit 1
fi
