#!/usr/bin/env bash
# bench_segment: the Segment-compatible routes of epp-ingest against its own /events routes, in
# the same run on the same process (issue 15).
#
# 1. Batches: POST /events/batch with 100 events and POST /v1/batch with 100 messages shaped as
#    @segment/analytics-node sends them (type, event, userId, messageId that is not a UUID,
#    properties, context.library, integrations, _metadata, timestamp; batch-level writeKey and
#    sentAt), alternating rounds, wrk -c64. Events/s count the events Kafka acknowledged
#    (epp_ingest_events_accepted_total over the round), not requests x 100.
#    Target: /v1/batch >= 250,000 events/s.
# 2. Single messages: POST /events (the 160-byte event every HTTP bench sends) and POST /v1/track
#    (the same event as a Segment track message), alternating rounds, wrk -c256.
#    Target: /v1/track >= 0.9x POST /events.
# Every reply is sent after the dev broker's acknowledgement (tools/epp-devbroker, 1 broker).
# Medians of BENCH_ROUNDS rounds; exits 1 when a target is missed or any answer was not 2xx.
#
# Env: EPP_BUILD_DIR (default ./build), BENCH_DURATION seconds per wrk run (default 5),
# BENCH_ROUNDS (default 3), BENCH_CONNECTIONS (256), BENCH_BATCH_CONNECTIONS (64),
# BENCH_HTTP_THREADS (epp-ingest HTTP_THREADS; default: the service default).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
BENCH_NAME=bench_segment
BUILD=${EPP_BUILD_DIR:-build}
DUR=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-256}
BCONNS=${BENCH_BATCH_CONNECTIONS:-64}
THREADS=${BENCH_HTTP_THREADS:-}
INGEST_BIN="$BUILD/bin/epp-ingest"
BROKER_BIN="$BUILD/bin/epp-devbroker"

require_tools wrk curl
for b in "$INGEST_BIN" "$BROKER_BIN"; do
    [ -x "$b" ] || { echo "$BENCH_NAME: $b not built"; exit 1; }
done

TMP=$(mktemp -d /tmp/epp-bench-segment.XXXXXX)
INGEST_PID=""
BROKER_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    for p in "$INGEST_PID" "$BROKER_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# The request bodies: the same 160-byte event for POST /events as bench_http/bench_ingest, and
# the batches, written as wrk scripts.
write_post_lua "$TMP/post.lua"
python3 bench/segment_bodies.py "$TMP"

devbroker_start "$BROKER_BIN"
INGEST_PORT=$(free_port)
ENVS=(KAFKA_BOOTSTRAP_SERVERS="$BROKER_ADDR" KAFKA_TOPIC=events HTTP_PORT="$INGEST_PORT"
      LOG_LEVEL=warn)
[ -n "$THREADS" ] && ENVS+=(HTTP_THREADS="$THREADS")
env "${ENVS[@]}" "$INGEST_BIN" 2>"$TMP/ingest.log" &
INGEST_PID=$!
wait_port "$INGEST_PORT"
wait_ready "http://127.0.0.1:$INGEST_PORT/ready"
BASE="http://127.0.0.1:$INGEST_PORT"

accepted() { curl -s "$BASE/metrics" | awk '/^epp_ingest_events_accepted_total/ { print $2 }'; }

# run_phase PATH SCRIPT CONNS -> "events_per_s rps p50 p99 non2xx cpu_us_per_event": one wrk run;
# events/s from the accepted-events counter over the run, epp-ingest's CPU time per accepted event.
run_phase() {
    local a0 a1
    a0=$(accepted)
    read -r rps p50 p99 bad cpu < <(run_wrk "$BASE$1" "$2" "$3" "$INGEST_PID")
    a1=$(accepted)
    # run_wrk's CPU figure is per request: per event it is that times requests / events.
    awk -v a0="$a0" -v a1="$a1" -v d="$DUR" -v rps="$rps" -v p50="$p50" -v p99="$p99" \
        -v bad="$bad" -v cpu="$cpu" 'BEGIN { ev = (a1 - a0) / d;
        printf "%.0f %s %s %s %s %.2f\n", ev, rps, p50, p99, bad, (ev > 0 ? cpu * rps / ev : 0) }'
}

# median FILE COLUMN -> the median of the ratio column of FILE (one line per round)
median_line() {
    sort -g -k"$2" "$1" | awk -v m="$(( (ROUNDS + 1) / 2 ))" 'NR == m'
}

# --- batches of 100 ---
: >"$TMP/batch_rounds"
for r in $(seq 1 "$ROUNDS"); do
    # Alternate which goes first, so that neither always runs on a warmer (or busier) machine.
    if [ $((r % 2)) = 1 ]; then
        read -r E_EPS _ _ E_P99 E_BAD E_CPU < <(run_phase /events/batch "$TMP/events_batch.lua" "$BCONNS")
        read -r S_EPS _ _ S_P99 S_BAD S_CPU < <(run_phase /v1/batch "$TMP/segment_batch.lua" "$BCONNS")
    else
        read -r S_EPS _ _ S_P99 S_BAD S_CPU < <(run_phase /v1/batch "$TMP/segment_batch.lua" "$BCONNS")
        read -r E_EPS _ _ E_P99 E_BAD E_CPU < <(run_phase /events/batch "$TMP/events_batch.lua" "$BCONNS")
    fi
    ratio=$(awk -v s="$S_EPS" -v e="$E_EPS" 'BEGIN { printf "%.3f", (e > 0 ? s / e : 0) }')
    echo "$E_EPS $S_EPS $ratio $E_P99 $S_P99 $E_BAD $S_BAD $E_CPU $S_CPU" >>"$TMP/batch_rounds"
    printf '  batch round %d: /events/batch %s events/s (p99 %s, %s us CPU/event), /v1/batch %s events/s (p99 %s, %s us CPU/event), ratio %.2fx\n' \
        "$r" "$E_EPS" "$E_P99" "$E_CPU" "$S_EPS" "$S_P99" "$S_CPU" "$ratio"
done

# --- single messages ---
: >"$TMP/single_rounds"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        read -r _ E_RPS _ E_P99 E_BAD E_CPU < <(run_phase /events "$TMP/post.lua" "$CONNS")
        read -r _ S_RPS _ S_P99 S_BAD S_CPU < <(run_phase /v1/track "$TMP/segment_track.lua" "$CONNS")
    else
        read -r _ S_RPS _ S_P99 S_BAD S_CPU < <(run_phase /v1/track "$TMP/segment_track.lua" "$CONNS")
        read -r _ E_RPS _ E_P99 E_BAD E_CPU < <(run_phase /events "$TMP/post.lua" "$CONNS")
    fi
    ratio=$(awk -v s="$S_RPS" -v e="$E_RPS" 'BEGIN { printf "%.3f", (e > 0 ? s / e : 0) }')
    echo "$E_RPS $S_RPS $ratio $E_P99 $S_P99 $E_BAD $S_BAD $E_CPU $S_CPU" >>"$TMP/single_rounds"
    printf '  single round %d: POST /events %.0f req/s (p99 %s, %s us CPU), /v1/track %.0f req/s (p99 %s, %s us CPU), ratio %.2fx\n' \
        "$r" "$E_RPS" "$E_P99" "$E_CPU" "$S_RPS" "$S_P99" "$S_CPU" "$ratio"
done
RSS_KB=$(awk '/VmHWM/ { print $2 }' "/proc/$INGEST_PID/status")

read -r BE BS BR BEP99 BSP99 _ _ BECPU BSCPU < <(median_line "$TMP/batch_rounds" 3)
read -r SE SS SR SEP99 SSP99 _ _ SECPU SSCPU < <(median_line "$TMP/single_rounds" 3)
BAD=$(awk '{ s += $6 + $7 } END { print s + 0 }' "$TMP/batch_rounds" "$TMP/single_rounds")
printf 'POST /events/batch x100: %10.0f events/s  p99 %s   %s us CPU/event\n' "$BE" "$BEP99" "$BECPU"
printf 'POST /v1/batch x100:     %10.0f events/s  p99 %s   %s us CPU/event   (%.2fx /events/batch; target >= 250000 events/s)\n' "$BS" "$BSP99" "$BSCPU" "$BR"
printf 'POST /events:            %10.0f req/s     p99 %s   %s us CPU/request\n' "$SE" "$SEP99" "$SECPU"
printf 'POST /v1/track:          %10.0f req/s     p99 %s   %s us CPU/request   (%.2fx POST /events; target >= 0.9x)\n' "$SS" "$SSP99" "$SSCPU" "$SR"
echo "medians of $ROUNDS alternating rounds; wrk -t1, -c$BCONNS (batches) / -c$CONNS (single), ${DUR}s each; epp-ingest HTTP_THREADS ${THREADS:-default}; peak RSS $((RSS_KB / 1024)) MB"
status=0
if [ "$BAD" != 0 ]; then
    echo "$BENCH_NAME: $BAD non-2xx answers: see the service log"
    tail -5 "$TMP/ingest.log"
    status=1
fi
if ! awk -v s="$BS" 'BEGIN { exit !(s >= 250000) }'; then
    echo "$BENCH_NAME: MISSED: /v1/batch $BS events/s < 250000"
    status=1
fi
if ! awk -v r="$SR" 'BEGIN { exit !(r >= 0.9) }'; then
    echo "$BENCH_NAME: MISSED: /v1/track at ${SR}x of POST /events < 0.9x"
    status=1
fi
exit $status
