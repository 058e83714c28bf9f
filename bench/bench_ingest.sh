#!/usr/bin/env bash
# bench_ingest: epp-ingest against nginx -- issue 20's targets.
#
# 1. Baselines: nginx `return 204;` (access log off) with as many worker processes as epp-ingest
#    has HTTP threads, and nginx with one worker (the ratio to it is printed beside).
# 2. epp-ingest POST /events, one 160-byte event per request, each answered only after the dev
#    broker (tools/epp-devbroker, same machine) acknowledged it (acks=all, idempotent producer).
#    Same wrk load: 1 thread, 256 connections. Rounds alternate which side goes first; medians.
#    Printed per round: req/s, p99, and the CPU time per request of epp-ingest, of the broker and
#    of nginx (utime + stime from /proc over the wrk run; steadier than req/s on a shared machine).
# 3. POST /events/batch, 100 events per request: events/s counted from the events Kafka
#    acknowledged (epp_ingest_events_accepted_total before and after), not requests x 100.
# 4. The peak RSS of epp-ingest (VmHWM) over the whole run.
# 5. The floor: librdkafka alone (bench/kafka_floor.c, same broker, same linger.ms) with as many
#    messages in flight as there are connections, and unbounded; and that floor against nginx,
#    which bounds the ratio of any service that answers after the acknowledgement.
# Targets (exit 1 when one is missed): POST /events >= 0.8x nginx (same worker count), epp-ingest
# CPU per durable request <= 16 us, p99 < 20 ms at 256 connections, batch >= 500,000 events/s,
# peak RSS < 64 MB.
#
# Env: EPP_BUILD_DIR (default ./build), BENCH_DURATION seconds per wrk run (default 5),
# BENCH_ROUNDS (default 3), BENCH_CONNECTIONS (256), BENCH_BATCH_CONNECTIONS (64),
# BENCH_HTTP_THREADS (epp-ingest HTTP_THREADS, default 2), BENCH_LINGER_MS (KAFKA_LINGER_MS,
# default: the service default), BENCH_KAFKA_BOOTSTRAP (a running Kafka instead of the dev broker,
# e.g. the single node of scripts/kafka.sh; BENCH_KAFKA_TOPIC names an existing topic, default
# events; BENCH_BROKER_PID its process, for its CPU per request). Other variables reach
# epp-ingest unchanged.
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
THREADS=${BENCH_HTTP_THREADS:-2}
# The floor's linger.ms: the service's (1 is KAFKA_LINGER_MS's default, ingest_config.c).
LINGER=${BENCH_LINGER_MS:-1}
INGEST_BIN="$BUILD/bin/epp-ingest"
BROKER_BIN="$BUILD/bin/epp-devbroker"
FLOOR_BIN="$BUILD/bin/bench_kafka_floor"

require_tools wrk nginx
for b in "$INGEST_BIN" "$BROKER_BIN" "$FLOOR_BIN"; do
    [ -x "$b" ] || { echo "bench_ingest: $b not built"; exit 1; }
done

TMP=$(mktemp -d /tmp/epp-bench-ingest.XXXXXX)
NGINX_PID=""
INGEST_PID=""
BROKER_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    for p in "$NGINX_PID" "$INGEST_PID" "$BROKER_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

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

# --- the broker (the dev broker, or the Kafka given) and epp-ingest ---
if [ -n "${BENCH_KAFKA_BOOTSTRAP:-}" ]; then
    echo "$BENCH_KAFKA_BOOTSTRAP" >"$TMP/addr"
    BROKER_WATCH=${BENCH_BROKER_PID:-}
    BROKER_NAME="Kafka${BROKER_WATCH:+ (pid $BROKER_WATCH)}"
else
    devbroker_start "$BROKER_BIN"
    BROKER_WATCH=$BROKER_PID
    BROKER_NAME="dev broker"
fi
TOPIC=${BENCH_KAFKA_TOPIC:-events}
# The broker's CPU ticks (0 when its process is not known).
broker_ticks() { if [ -n "$BROKER_WATCH" ]; then cpu_ticks "$BROKER_WATCH"; else echo 0; fi; }
INGEST_PORT=$(free_port)
ENVS=(KAFKA_BOOTSTRAP_SERVERS="$(cat "$TMP/addr")" KAFKA_TOPIC="$TOPIC" HTTP_PORT="$INGEST_PORT"
      LOG_LEVEL=warn HTTP_THREADS="$THREADS")
[ -n "${BENCH_LINGER_MS:-}" ] && ENVS+=(KAFKA_LINGER_MS="$BENCH_LINGER_MS")
env "${ENVS[@]}" "$INGEST_BIN" 2>"$TMP/ingest.log" &
INGEST_PID=$!
wait_port "$INGEST_PORT"
wait_ready "http://127.0.0.1:$INGEST_PORT/ready"
accepted() {
    curl -s "http://127.0.0.1:$INGEST_PORT/metrics" |
        awk '/^epp_ingest_events_accepted_total/ { print $2 + 0 }'
}

# nginx_round WORKERS -> "rps p99 cpu" of nginx with that many workers (started and stopped here)
nginx_round() {
    nginx_configure "$1"
    nginx_start
    read -r rps _ p99 _ cpu < <(run_wrk "http://127.0.0.1:$NGINX_PORT/events" "$TMP/post.lua" "$CONNS" nginx)
    nginx_stop
    echo "$rps $p99 $cpu"
}

# ingest_round -> "rps p99 non2xx cpu broker_cpu"
ingest_round() {
    local b0 b1 n
    b0=$(broker_ticks)
    read -r rps _ p99 bad cpu < <(run_wrk "http://127.0.0.1:$INGEST_PORT/events" "$TMP/post.lua" "$CONNS" "$INGEST_PID")
    b1=$(broker_ticks)
    n=$(awk '/requests in/ { print $1 }' "$TMP/wrk.out")
    awk -v r="$rps" -v p="$p99" -v b="$bad" -v c="$cpu" -v t=$((b1 - b0)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%s %s %s %s %.1f\n", r, p, b, c, (n > 0 ? t * 1e6 / hz / n : 0) }'
}

# --- the floor: librdkafka alone, producing messages shaped like epp-ingest's to the same broker
# (256 in flight like the connections, and unbounded like batches), with the broker's CPU ---
floor() {
    local b0 b1 out
    b0=$(broker_ticks)
    out=$("$FLOOR_BIN" "$(cat "$TMP/addr")" "$TOPIC" "$DUR" --inflight "$1" --linger-ms "$LINGER")
    b1=$(broker_ticks)
    awk -v o="$out" -v t=$((b1 - b0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(o, f, " "); n = f[10];
        printf "%s; broker %.1f us CPU per message\n", o, (n > 0 ? t * 1e6 / hz / n : 0) }'
}
FLOOR_256=$(floor "$CONNS")
FLOOR_ALL=$(floor 0)
echo "  floor, librdkafka alone, $CONNS in flight: $FLOOR_256"
echo "  floor, librdkafka alone, unbounded:     $FLOOR_ALL"

# --- single events: rounds alternate which side goes first ---
: >"$TMP/rounds"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
        read -r NW_RPS NW_P99 NW_CPU < <(nginx_round "$THREADS")
        read -r N1_RPS _ _ < <(nginx_round 1)
        read -r I_RPS I_P99 I_BAD I_CPU B_CPU < <(ingest_round)
        order="nginx first"
    else
        read -r I_RPS I_P99 I_BAD I_CPU B_CPU < <(ingest_round)
        read -r N1_RPS _ _ < <(nginx_round 1)
        read -r NW_RPS NW_P99 NW_CPU < <(nginx_round "$THREADS")
        order="epp-ingest first"
    fi
    awk -v e="$I_RPS" -v n="$NW_RPS" -v n1="$N1_RPS" -v p99="$(ms "$I_P99")" -v bad="$I_BAD" \
        -v c="$I_CPU" -v bc="$B_CPU" -v nc="$NW_CPU" -v np="$(ms "$NW_P99")" \
        '{ print e / n, e / n1, e, n, n1, p99, bad, c, bc, nc, np }' <<<"" >>"$TMP/rounds"
    awk -v r="$r" -v o="$order" -v e="$I_RPS" -v n="$NW_RPS" -v n1="$N1_RPS" -v p99="$I_P99" \
        -v c="$I_CPU" -v bc="$B_CPU" -v nc="$NW_CPU" -v w="$THREADS" 'BEGIN {
        printf "  round %d (%s): epp-ingest %.0f req/s (p99 %s; CPU %s us/req, broker %s us/req), nginx %dw %.0f req/s (CPU %s us/req), nginx 1w %.0f; ratio %.2fx (%.2fx of 1 worker)\n",
               r, o, e, p99, c, bc, w, n, nc, n1, e / n, e / n1 }'
done
# Medians over the rounds, each figure on its own.
R=$(median "$TMP/rounds" 1)
R1=$(median "$TMP/rounds" 2)
I_RPS=$(median "$TMP/rounds" 3)
NW_RPS=$(median "$TMP/rounds" 4)
N1_RPS=$(median "$TMP/rounds" 5)
I_P99=$(median "$TMP/rounds" 6)
I_BAD=$(awk '{ s += $7 } END { print s + 0 }' "$TMP/rounds")
I_CPU=$(median "$TMP/rounds" 8)
B_CPU=$(median "$TMP/rounds" 9)
N_CPU=$(median "$TMP/rounds" 10)
N_P99=$(median "$TMP/rounds" 11)

# --- batches of 100 ---
A0=$(accepted)
read -r B_RPS _ B_P99 B_BAD _ < <(run_wrk "http://127.0.0.1:$INGEST_PORT/events/batch" "$TMP/batch.lua" "$BCONNS")
A1=$(accepted)
B_EVS=$(awk -v a="$A1" -v b="$A0" -v d="$DUR" 'BEGIN { print (a - b) / d }')
RSS_KB=$(awk '/VmHWM/ { print $2 }' "/proc/$INGEST_PID/status")
kill "$INGEST_PID"; wait "$INGEST_PID" 2>/dev/null || true; INGEST_PID=""

echo "median of $ROUNDS rounds, wrk -t1 -c$CONNS -d${DUR}s, 160-byte event, reply after the Kafka ack; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'nginx return 204 (%s workers):            %10.0f req/s  p99 %s ms  %s us CPU/request\n' "$THREADS" "$NW_RPS" "$N_P99" "$N_CPU"
printf 'nginx return 204 (1 worker):              %10.0f req/s\n' "$N1_RPS"
printf 'epp-ingest POST /events (%s threads):      %10.0f req/s  p99 %s ms  non-2xx %s\n' "$THREADS" "$I_RPS" "$I_P99" "$I_BAD"
printf 'CPU per durable request: epp-ingest %s us, %s %s us, nginx %s us\n' "$I_CPU" "$BROKER_NAME" "$B_CPU" "$N_CPU"
printf 'ratio epp-ingest/nginx: %.2fx (%s workers each); %.2fx of nginx with 1 worker\n' "$R" "$THREADS" "$R1"
awk -v e="$B_EVS" -v r="$B_RPS" -v p99="$B_P99" 'BEGIN { printf "epp-ingest POST /events/batch x100: %.0f events/s acknowledged (%.0f req/s, p99 %s; wrk -c'"$BCONNS"')\n", e, r, p99 }'
awk -v k="$RSS_KB" 'BEGIN { printf "epp-ingest peak RSS: %.1f MB\n", k / 1024 }'
echo "floor (librdkafka alone, same broker, linger.ms $LINGER): $CONNS in flight: $FLOOR_256"
echo "floor (librdkafka alone, same broker, linger.ms $LINGER): unbounded:     $FLOOR_ALL"
# With CONNS requests waiting for their acknowledgements, no service can answer faster than the
# producer alone keeps CONNS messages in flight: that rate against nginx bounds the ratio above.
awk -v f="${FLOOR_256%% *}" -v n="$NW_RPS" -v e="$I_RPS" -v c="$CONNS" 'BEGIN {
    printf "floor against nginx: librdkafka alone with %d in flight %.0f messages/s = %.2fx of nginx; epp-ingest %.2fx of that floor\n", c, f, (n + 0 > 0 ? f / n : 0), (f + 0 > 0 ? e / f : 0) }'
STATUS=0
target "POST /events >= 0.8x nginx" "$R >= 0.8"
target "epp-ingest CPU per durable request <= 16 us" "$I_CPU <= 16"
target "p99 < 20 ms at $CONNS connections" "$I_P99 < 20"
target "POST /events/batch >= 500,000 events/s" "$B_EVS >= 500000"
target "peak RSS < 64 MB" "$RSS_KB < 65536"
if [ "${I_BAD:-0}" != 0 ] || [ "${B_BAD:-0}" != 0 ]; then
    echo "bench_ingest: non-2xx answers (single $I_BAD, batch $B_BAD): see the service log"
    tail -5 "$TMP/ingest.log"
    STATUS=1
fi
exit $STATUS
