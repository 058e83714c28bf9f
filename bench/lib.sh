# shellcheck shell=bash
# Shell functions shared by the HTTP benchmarks (bench_http.sh, bench_ingest.sh, bench_tracing.sh,
# bench_segment.sh, segment_instructions.sh, designs.sh): a free port, waiting for a listener or
# for /ready, the dev broker, the nginx baseline, a wrk run with the server's CPU time per
# request, medians and targets. Sourced, never run: bench/run.sh runs every bench/bench_*.sh,
# which is why this file is not named bench_*.sh.
#
# The caller sets, before calling these functions:
#   BENCH_NAME  the script's name, the prefix of every message printed here (e.g. bench_http)
#   TMP         a private scratch directory, removed by the caller's EXIT trap
#   DUR         seconds per wrk run
# NGINX_PORT and NGINX_PID are set by the nginx functions below; the caller's clean-up kills
# NGINX_PID when it is not empty.

# require_tools TOOL... -> exits 1 (with a message) unless every TOOL is on the PATH
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$BENCH_NAME: $tool not installed"; exit 1; }
    done
}

# free_port -> prints a TCP port that was free a moment ago, below the kernel's ephemeral range
# (scripts/lib/free_port.py: the one picker of the scripts, tests and benches)
free_port() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/free_port.py"
}

# wait_port PORT -> 0 once something accepts connections on 127.0.0.1:PORT, 1 after 10 s
wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "$BENCH_NAME: nothing listens on port $1"
    return 1
}

# write_post_lua FILE -> a wrk script that POSTs the 160-byte JSON event every HTTP bench sends
write_post_lua() {
    local body='{"user_id":"user-000042","event_name":"page_view","timestamp":"2026-11-27T08:31:45.123Z","metadata":{"path":"/pricing","ref":"newsletter","plan":"pro","n":12}}'
    body=$(printf '%-160s' "$body")
    cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
}

# nginx_configure [WORKERS] -> picks NGINX_PORT and writes $TMP/nginx.conf: the baseline
# server, WORKERS worker processes (default 1), access log off, every path answered `return
# 204;`, all its files inside $TMP. Several workers need nginx's master process, which then
# runs in the foreground (daemon off) with the workers as its children.
nginx_configure() {
    local workers=${1:-1}
    NGINX_PORT=$(free_port)
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx.conf" <<CONF
daemon off;
master_process $([ "$workers" -gt 1 ] && echo on || echo off);
worker_processes $workers;
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
}

# nginx_start -> starts nginx from $TMP/nginx.conf (nginx_configure first), sets NGINX_PID and
# returns once it listens on NGINX_PORT
nginx_start() {
    nginx -c "$TMP/nginx.conf" -p "$TMP" 2>>"$TMP/nginx-error.log" &
    NGINX_PID=$!
    wait_port "$NGINX_PORT"
}

# nginx_stop -> stops the nginx nginx_start started and clears NGINX_PID
nginx_stop() {
    kill "$NGINX_PID"
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=""
}

# nginx_ticks -> utime + stime of nginx's master and workers, in clock ticks
nginx_ticks() {
    local s p
    s=$(cpu_ticks "$NGINX_PID")
    for p in $(pgrep -P "$NGINX_PID"); do s=$((s + $(cpu_ticks "$p"))); done
    echo "$s"
}

# cpu_ticks PID -> utime + stime of PID in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run_wrk URL SCRIPT CONNS [PID|nginx] -> prints "rps p50 p99 non2xx cpu_us_per_request": wrk
# -t1 for DUR seconds with the lua SCRIPT; the last figure is PID's CPU time per request (with
# "nginx": the master's and its workers'; 0.0 without). wrk's own output is left in $TMP/wrk.out.
run_wrk() {
    local c0=0 c1=0 who=${4:-}
    ticks_of() { if [ "$1" = nginx ]; then nginx_ticks; else cpu_ticks "$1"; fi; }
    [ -n "$who" ] && c0=$(ticks_of "$who")
    wrk -t1 -c"$3" -d"${DUR}s" --latency -s "$2" "$1" >"$TMP/wrk.out" 2>&1
    [ -n "$who" ] && c1=$(ticks_of "$who")
    awk -v ticks=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '
        /Requests\/sec:/ { rps = $2 }
        /requests in/ { n = $1 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        /Non-2xx or 3xx responses:/ { bad = $5 }
        END { printf "%s %s %s %s %.1f\n", rps, p50, p99, (bad == "" ? 0 : bad), (n > 0 ? ticks * 1e6 / hz / n : 0) }
    ' "$TMP/wrk.out"
}

# ms VALUE -> a wrk latency ("812.00us", "4.52ms", "1.02s") in milliseconds
ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
        else print v + 0 }'
}

# median FILE COLUMN -> the median of that column
median() {
    awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

# target NAME OK_EXPR -> prints "target NAME: met|MISSED" and sets STATUS=1 when missed
target() {
    if awk "BEGIN { exit !($2) }"; then
        echo "target $1: met"
    else
        echo "target $1: MISSED"
        # shellcheck disable=SC2034 # read by the sourcing script
        STATUS=1
    fi
}

# devbroker_start BIN -> starts the dev broker BIN (1 broker, 6 partitions) with its files in
# $TMP, sets BROKER_PID and BROKER_ADDR (its bootstrap address); exits 1 if it does not start.
# The caller's clean-up kills BROKER_PID.
# shellcheck disable=SC2034 # BROKER_PID and BROKER_ADDR are for the caller
devbroker_start() {
    "$1" --brokers 1 --partitions 6 --addr-file "$TMP/addr" --log-level warn \
        >/dev/null 2>"$TMP/broker.log" &
    BROKER_PID=$!
    for _ in $(seq 1 200); do [ -s "$TMP/addr" ] && break; sleep 0.05; done
    [ -s "$TMP/addr" ] || { echo "$BENCH_NAME: epp-devbroker did not start"; cat "$TMP/broker.log"; exit 1; }
    BROKER_ADDR=$(cat "$TMP/addr")
}

# wait_ready URL -> 0 once GET URL answers 200, 1 after 60 s
wait_ready() {
    for _ in $(seq 1 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.1
    done
    echo "$BENCH_NAME: $1 never answered 200"
    return 1
}
