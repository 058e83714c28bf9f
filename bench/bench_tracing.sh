#!/usr/bin/env bash
# bench_tracing: epp-ingest throughput with tracing off, and with tracing on while the collector
# is down (a closed port) or hangs (accepts connections, never answers) -- issue 6: throughput
# must stay within 10% of the tracing-off figure, and spans are dropped and counted instead.
#
# Each variant is its own epp-ingest (sampling 1.0, so every request makes two spans) against one
# dev broker; wrk -t1 -c256 POST /events, one event per request, reply after the Kafka ack.
# Variants run in alternating rounds (BENCH_ROUNDS, default 3), the median per variant is
# reported with its ratio to "off", and epp_otel_spans_dropped_total from each /metrics.
# Env: EPP_BUILD_DIR (./build), BENCH_DURATION (5 s per wrk run), BENCH_ROUNDS, BENCH_CONNECTIONS.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
BENCH_NAME=bench_tracing
BUILD=${EPP_BUILD_DIR:-build}
DUR=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-256}
command -v wrk >/dev/null || { echo "bench_tracing: wrk not installed"; exit 1; }
for b in "$BUILD/bin/epp-ingest" "$BUILD/bin/epp-devbroker"; do
    [ -x "$b" ] || { echo "bench_tracing: $b not built"; exit 1; }
done

TMP=$(mktemp -d /tmp/epp-bench-tracing.XXXXXX)
PIDS=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local rc=$?
    set +e # a killed child's status must not stop the clean-up half-way
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT


BODY='{"user_id":"user-000042","event_name":"page_view","metadata":{"path":"/pricing","n":12}}'
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
    "'$BODY'" >"$TMP/post.lua"

"$BUILD/bin/epp-devbroker" --brokers 1 --partitions 6 --addr-file "$TMP/addr" --log-level warn \
    >/dev/null 2>"$TMP/broker.log" &
PIDS+=($!)
for _ in $(seq 1 200); do [ -s "$TMP/addr" ] && break; sleep 0.05; done
[ -s "$TMP/addr" ] || { echo "bench_tracing: epp-devbroker did not start"; exit 1; }

# A collector that accepts connections and never answers (the slow-collector case).
HANG_PORT=$(free_port)
python3 - "$HANG_PORT" <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1024)
held = []
while True:
    c, _ = s.accept()
    held.append(c)  # read nothing, answer nothing
PY
PIDS+=($!)
CLOSED_PORT=$(free_port) # nothing listens there

declare -A PORT
for v in off closed hang; do
    PORT[$v]=$(free_port)
    ENVS=(KAFKA_BOOTSTRAP_SERVERS="$(cat "$TMP/addr")" KAFKA_TOPIC=events HTTP_PORT="${PORT[$v]}"
          LOG_LEVEL=error OTEL_TRACES_SAMPLER_ARG=1.0)
    case $v in
    closed) ENVS+=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$CLOSED_PORT") ;;
    hang) ENVS+=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$HANG_PORT") ;;
    esac
    env "${ENVS[@]}" "$BUILD/bin/epp-ingest" 2>"$TMP/ingest-$v.log" &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:${PORT[$v]}/ready"
done

: >"$TMP/rounds"
ORDERS=("off closed hang" "closed hang off" "hang off closed")
for r in $(seq 1 "$ROUNDS"); do
    # Each round starts with another variant (the machine's load drifts within a round).
    for v in ${ORDERS[$(((r - 1) % 3))]}; do
        wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$TMP/post.lua" "http://127.0.0.1:${PORT[$v]}/events" \
            >"$TMP/wrk.out" 2>&1
        rps=$(awk '/Requests\/sec:/ { print $2 }' "$TMP/wrk.out")
        bad=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' "$TMP/wrk.out")
        echo "$v $rps ${bad:-0}" >>"$TMP/rounds"
        printf '  round %d: %-6s %8.0f req/s (non-2xx %s)\n' "$r" "$v" "$rps" "${bad:-0}"
    done
done

median_of() { awk -v v="$1" '$1 == v { print $2 }' "$TMP/rounds" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
OFF=$(median_of off)
status=0
echo "median of $ROUNDS rounds, wrk -t1 -c$CONNS -d${DUR}s; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'tracing off:                         %8.0f req/s\n' "$OFF"
for v in closed hang; do
    m=$(median_of "$v")
    dropped=$(curl -s "http://127.0.0.1:${PORT[$v]}/metrics" |
        awk '/^epp_otel_spans_dropped_total/ { s += $2 } END { print s + 0 }')
    label=$([ "$v" = closed ] && echo "collector on a closed port:" || echo "collector that never answers:")
    awk -v m="$m" -v off="$OFF" -v l="$label" -v d="$dropped" 'BEGIN {
        printf "%-36s %8.0f req/s  ratio %.2fx of off (target >= 0.90x); spans dropped: %d\n", l, m, m / off, d }'
    if awk -v m="$m" -v off="$OFF" 'BEGIN { exit !(m / off < 0.90) }'; then status=1; fi
    [ "$dropped" -gt 0 ] || { echo "bench_tracing: no dropped spans counted for $v"; status=1; }
done
if awk '$3 != 0 { bad = 1 } END { exit !bad }' "$TMP/rounds"; then
    echo "bench_tracing: non-2xx answers"; status=1
fi
exit $status
