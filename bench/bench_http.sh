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
BUILD=${EPP_BUILD_DIR:-build}
DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-256}
THREADS=${BENCH_HTTP_THREADS:-2}
MODE=${BENCH_HTTP_MODE:-async}
ECHO_BIN="$BUILD/bin/bench_http_echo"

for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "bench_http: $tool not installed"; exit 1; }
done
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

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The 160-byte event every request carries.
BODY='{"user_id":"user-000042","event_name":"page_view","timestamp":"2026-11-27T08:31:45.123Z","metadata":{"path":"/pricing","ref":"newsletter","plan":"pro","n":12}}'
BODY=$(printf '%-160s' "$BODY")
cat >"$TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA

NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { return 204; }
    }
}
CONF

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "bench_http: nothing listens on port $1"
    return 1
}

# run_wrk PORT -> prints "rps p50 p99 non2xx"
run_wrk() {
    wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$TMP/post.lua" "http://127.0.0.1:$1/events" \
        >"$TMP/wrk.out" 2>&1
    awk '
        /Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        /Non-2xx or 3xx responses:/ { bad = $5 }
        /Socket errors:/ { err = $0 }
        END { printf "%s %s %s %s\n", rps, p50, p99, (bad == "" ? 0 : bad) }
    ' "$TMP/wrk.out"
}

start_nginx() {
    nginx -c "$TMP/nginx.conf" -p "$TMP" 2>>"$TMP/nginx-error.log" &
    NGINX_PID=$!
    wait_port "$NGINX_PORT"
}
stop_nginx() { kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=""; }

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
    start_nginx
    read -r N_RPS N_P50 N_P99 _ < <(run_wrk "$NGINX_PORT")
    stop_nginx
    start_echo
    read -r E_RPS E_P50 E_P99 BAD < <(run_wrk "$ECHO_PORT")
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
