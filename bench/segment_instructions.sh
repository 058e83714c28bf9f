#!/usr/bin/env bash
# segment_instructions: CPU work per request of epp-ingest, counted in instructions (valgrind
# callgrind, every thread of the process), for bench_segment.sh's requests: POST /events and
# /v1/track, POST /events/batch and /v1/batch (100 each), and /events/batch with events as large
# as the Segment messages. Unlike time, an instruction count does
# not move with the load of a shared machine, so it compares the routes when the throughput
# figures cannot (bench/README.md). Each route runs twice, with N1 and N2 sequential keep-alive
# requests, in a fresh epp-ingest under callgrind against the dev broker; the difference divided
# by N2 - N1 leaves out start-up and shutdown. Not named bench_*.sh: `make bench` does not run it
# (it takes a few minutes).
#
#   bash bench/segment_instructions.sh          (EPP_BUILD_DIR, default ./build)
#
# With SEGMENT_IR_PROFILE=1 it also prints callgrind's top functions of each N2 run.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
BENCH_NAME=segment_instructions
BUILD=${EPP_BUILD_DIR:-build}
require_tools valgrind callgrind_annotate curl python3
TMP=$(mktemp -d /tmp/epp-segment-ir.XXXXXX)
BROKER_PID=""
INGEST_PID=""
cleanup() {
    for p in "$INGEST_PID" "$BROKER_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
write_post_lua "$TMP/post.lua"
python3 bench/segment_bodies.py "$TMP"
devbroker_start "$BUILD/bin/epp-devbroker"

# instructions SCRIPT PATH N -> total instructions of epp-ingest serving N requests of SCRIPT
instructions() {
    local port
    port=$(free_port)
    KAFKA_BOOTSTRAP_SERVERS="$BROKER_ADDR" HTTP_PORT="$port" LOG_LEVEL=warn \
        valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$BUILD/bin/epp-ingest" \
        2>"$TMP/valgrind.log" &
    INGEST_PID=$!
    wait_ready "http://127.0.0.1:$port/ready"
    python3 - "$TMP/$1.lua" "$port" "$2" "$3" <<'PY'
import http.client, re, sys
lua, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
src = open(lua).read()
m = re.search(r"wrk.body = (?:\[==\[(.*)\]==\]|'(.*)')", src, re.S)
body = (m.group(1) or m.group(2)).encode()
headers = dict(re.findall(r'wrk.headers\["([^"]+)"\] = "([^"]*)"', src))
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(n):
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    r.read()
    if r.status not in (200, 202):
        sys.exit("%s answered %d" % (path, r.status))
PY
    kill "$INGEST_PID"
    wait "$INGEST_PID" 2>/dev/null || true
    INGEST_PID=""
    awk '/^summary:/ { s += $2 } END { print s }' "$TMP"/cg.out*
    if [ -n "${SEGMENT_IR_PROFILE:-}" ]; then
        callgrind_annotate "$TMP"/cg.out* 2>/dev/null | sed -n '/file:function/,$p' | sed -n 2,16p >&2
    fi
    rm -f "$TMP"/cg.out*
}

# script path N1 N2 events-per-request
for spec in "post /events 200 1200 1" "segment_track /v1/track 200 1200 1" \
            "events_batch /events/batch 20 120 100" "segment_batch /v1/batch 20 120 100" \
            "events_batch_same /events/batch 20 120 100"; do
    read -r script path n1 n2 per <<<"$spec"
    a=$(instructions "$script" "$path" "$n1")
    b=$(instructions "$script" "$path" "$n2")
    awk -v a="$a" -v b="$b" -v n="$((n2 - n1))" -v per="$per" -v p="$path" 'BEGIN {
        printf "%-16s %9.0f instructions per request, %7.0f per event\n", p, (b - a) / n, (b - a) / n / per }'
    [ "$script" = events_batch_same ] && echo "  (the last: /events/batch with the Segment batch's bytes per event)"
done
