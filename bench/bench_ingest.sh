#!/usr/bin/env bash
# bench_ingest: epp-ingest against nginx, and its batch throughput and memory (issue 3).
#
# 1. Baseline: nginx (1 worker, `return 204;`, access log off) on a random loopback port.
# 2. epp-ingest POST /events, one 160-byte event per request, each answered only after the
#    dev broker (tools/epp-devbroker, same machine, 1 mock broker) acknowledged it (acks=all,
#    idempotent producer). Same wrk load: 1 thread, 256 connections.
#    Prints req/s and p50/p99 for both and the ratio epp-ingest/nginx (same run).
# 3. epp-ingest POST /events/batch, 100 events per request: events/s.
# 4. The peak RSS of epp-ingest (VmHWM) over the whole run.
#
# Env: EPP_BUILD_DIR (default ./build), BENCH_DURATION seconds per wrk run (default 5),
# BENCH_ROUNDS (alternating nginx/epp-ingest rounds, default 3; the median is printed), BENCH_CONNECTIONS
# (256), BENCH_BATCH_CONNECTIONS (64), BENCH_HTTP_THREADS (epp-ingest HTTP_THREADS, default: the
# service default), BENCH_LINGER_MS (KAFKA_LINGER_MS, default: the service default). Other
# variables reach epp-ingest unchanged (e.g. EPP_HTTP_EPOLL_SHIM=0 for a comparison).
#
# Besides req/s, each round prints epp-ingest's CPU time per request (utime + stime from
# /proc/PID/stat over the wrk run): on a shared machine it moves much less than throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
BENCH_NAME=bench_ingest
BUILD=${EPP_BUILD_DIR:-build}
DUR=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-256}
BCONNS=${BENCH_BATCH_CONNECTIONS:-64}
THREADS=${BENCH_HTTP_THREADS:-}
INGEST_BIN="$BUILD/bin/epp-ingest"
BROKER_BIN="$BUILD/bin/epp-devbroker"

require_tools wrk nginx
for b in "$INGEST_BIN" "$BROKER_BIN"; do
    [ -x "$b" ] || { echo "bench_ingest: $b not built"; exit 1; }
done

TMP=$(mktemp -d /tmp/epp-bench-ingest.XXXXXX)
NGINX_PID=""
INGEST_PID=""
BROKER_PID=""
cleanup() {
    for p in "$NGINX_PID" "$INGEST_PID" "$BROKER_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# The same 160-byte event bench_http.sh sends.
write_post_lua "$TMP/post.lua"
# 100 events per batch, distinct users so that they spread over the partitions.
python3 - "$TMP/batch.lua" <<'PY'
import json, sys
evs = [{"user_id": "user-%06d" % i, "event_name": "page_view",
        "timestamp": "2026-11-27T08:31:45.123Z",
        "metadata": {"path": "/pricing", "ref": "newsletter", "plan": "pro", "n": i}}
       for i in range(100)]
body = json.dumps(evs, separators=(",", ":"))
with open(sys.argv[1], "w") as f:
    f.write('wrk.method = "POST"\nwrk.body = [==[%s]==]\n'
            'wrk.headers["Content-Type"] = "application/json"\n' % body)
PY

# --- nginx ---
nginx_configure
nginx_start

# --- the dev broker and epp-ingest ---
"$BROKER_BIN" --brokers 1 --partitions 6 --addr-file "$TMP/addr" --log-level warn \
    >/dev/null 2>"$TMP/broker.log" &
BROKER_PID=$!
for _ in $(seq 1 200); do [ -s "$TMP/addr" ] && break; sleep 0.05; done
[ -s "$TMP/addr" ] || { echo "bench_ingest: epp-devbroker did not start"; cat "$TMP/broker.log"; exit 1; }
INGEST_PORT=$(free_port)
ENVS=(KAFKA_BOOTSTRAP_SERVERS="$(cat "$TMP/addr")" KAFKA_TOPIC=events HTTP_PORT="$INGEST_PORT"
      LOG_LEVEL=warn)
[ -n "$THREADS" ] && ENVS+=(HTTP_THREADS="$THREADS")
[ -n "${BENCH_LINGER_MS:-}" ] && ENVS+=(KAFKA_LINGER_MS="$BENCH_LINGER_MS")
env "${ENVS[@]}" "$INGEST_BIN" 2>"$TMP/ingest.log" &
INGEST_PID=$!
wait_port "$INGEST_PORT"
for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$INGEST_PORT/ready" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
done

# --- single events: nginx and epp-ingest in alternating rounds (the machine is shared and
# noisy; alternating spreads the noise over both), medians reported ---
: >"$TMP/rounds"
for r in $(seq 1 "$ROUNDS"); do
    read -r N_RPS N_P50 N_P99 N_BAD < <(run_wrk "http://127.0.0.1:$NGINX_PORT/events" "$TMP/post.lua" "$CONNS")
    read -r I_RPS I_P50 I_P99 I_BAD I_CPU < <(run_wrk "http://127.0.0.1:$INGEST_PORT/events" "$TMP/post.lua" "$CONNS" "$INGEST_PID")
    echo "$N_RPS $N_P50 $N_P99 $I_RPS $I_P50 $I_P99 $I_BAD $I_CPU" >>"$TMP/rounds"
    awk -v r="$r" -v n="$N_RPS" -v e="$I_RPS" -v p50="$I_P50" -v p99="$I_P99" -v cpu="$I_CPU" 'BEGIN {
        printf "  round %d: nginx %.0f req/s, epp-ingest %.0f req/s (p50 %s p99 %s, %s us CPU/request), ratio %.2fx\n",
               r, n, e, p50, p99, cpu, e / n }'
done
nginx_stop
# The round with the median ratio supplies the figures printed below.
read -r N_RPS N_P50 N_P99 I_RPS I_P50 I_P99 I_BAD I_CPU < <(
    awk '{ print $4 / $1, $0 }' "$TMP/rounds" | sort -g | awk -v m="$(( (ROUNDS + 1) / 2 ))" 'NR == m { $1 = ""; print }')
I_BAD=$(awk '{ s += $7 } END { print s + 0 }' "$TMP/rounds")

# --- batches of 100 ---
read -r B_RPS B_P50 B_P99 B_BAD _ < <(run_wrk "http://127.0.0.1:$INGEST_PORT/events/batch" "$TMP/batch.lua" "$BCONNS")
RSS_KB=$(awk '/VmHWM/ { print $2 }' "/proc/$INGEST_PID/status")
ACCEPTED=$(curl -s "http://127.0.0.1:$INGEST_PORT/metrics" | awk '/^epp_ingest_events_accepted_total/ { print $2 }')
kill "$INGEST_PID"; wait "$INGEST_PID" 2>/dev/null || true; INGEST_PID=""

printf 'nginx return 204 (1 worker):              %10.0f req/s  p50 %-8s p99 %-8s\n' "$N_RPS" "$N_P50" "$N_P99"
printf 'epp-ingest POST /events (HTTP_THREADS %s):  %10.0f req/s  p50 %-8s p99 %-8s non-2xx %s, %s us CPU/request\n' \
    "${THREADS:-default}" "$I_RPS" "$I_P50" "$I_P99" "$I_BAD" "$I_CPU"
awk -v e="$I_RPS" -v n="$N_RPS" 'BEGIN { printf "ratio epp-ingest/nginx: %.2fx (median of '"$ROUNDS"' rounds; target >= 0.6x; wrk -t1 -c'"$CONNS"' -d'"$DUR"'s, 160-byte event, reply after the Kafka ack)\n", e / n }'
awk -v r="$B_RPS" -v p50="$B_P50" -v p99="$B_P99" 'BEGIN { printf "epp-ingest POST /events/batch x100: %.0f events/s (%.0f req/s, p50 %s p99 %s; target >= 300000; wrk -c'"$BCONNS"')\n", r * 100, r, p50, p99 }'
awk -v k="$RSS_KB" 'BEGIN { printf "epp-ingest peak RSS: %.1f MB (target < 64 MB)\n", k / 1024 }'
echo "events acknowledged by Kafka during the run: ${ACCEPTED:-?}"
status=0
if [ "${I_BAD:-0}" != 0 ] || [ "${B_BAD:-0}" != 0 ]; then
    echo "bench_ingest: non-2xx answers (single $I_BAD, batch $B_BAD): see the service log"
    tail -5 "$TMP/ingest.log"
    status=1
fi
exit $status
