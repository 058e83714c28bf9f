#!/usr/bin/env bash
# bench_analytics: epp-analytics against plain SQL over public.events, on the same data, in the
# same run.
#
# Data: 10,000,000 events over 30 days, cached between runs (bench/analytics_data.sh).
#
# 1. count, timeseries (hour) and top over a 7-day and a 30-day range (edges not aligned, so the
#    raw-edge path is measured too), through HTTP (keep-alive, sequential): p50/p99 over
#    BENCH_ANALYTICS_REQUESTS requests each (default 500), and the plain SQL query for the same
#    answer (median of 3 runs). Prints both and the ratio SQL / HTTP p99 (target: p99 < 5 ms and
#    ratio >= 50). Every HTTP answer is compared with the SQL one.
# 2. 200 concurrent dashboard-style clients (wrk, a Lua script cycling through the five URLs the
#    dashboard polls) for BENCH_DURATION seconds (default 10): throughput and latency percentiles.
#
# Env: EPP_BUILD_DIR, BENCH_ANALYTICS_EVENTS, BENCH_ANALYTICS_CACHE, BENCH_ANALYTICS_REQUESTS,
# BENCH_DURATION, BENCH_CONNECTIONS (200), BENCH_HTTP_THREADS (epp-analytics HTTP_THREADS, 4).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=$(cd "${EPP_BUILD_DIR:-build}" && pwd)
REQS=${BENCH_ANALYTICS_REQUESTS:-500}
DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-200}
THREADS=${BENCH_HTTP_THREADS:-4}
BIN="$BUILD/bin/epp-analytics"
PY=/usr/bin/python3
# shellcheck source=bench/analytics_data.sh
. bench/analytics_data.sh

command -v wrk >/dev/null || { echo "bench_analytics: wrk not installed"; exit 1; }
[ -x "$BIN" ] || { echo "bench_analytics: $BIN not built"; exit 1; }

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

TMP=$(mktemp -d /tmp/epp-bench-analytics.XXXXXX)
SVC_PID=""
cleanup() {
    [ -n "$SVC_PID" ] && kill "$SVC_PID" 2>/dev/null && wait "$SVC_PID" 2>/dev/null
    analytics_data_stop
    rm -rf "$TMP"
}
trap cleanup EXIT

analytics_data_start

PORT=$(free_port)
DATABASE_URL="$DB" HTTP_PORT=$PORT HTTP_BIND_ADDRESS=127.0.0.1 HTTP_THREADS=$THREADS LOG_LEVEL=warn \
    QUERY_TIMEOUT_MS=30000 "$BIN" 2>"$TMP/analytics.log" &
SVC_PID=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

$PY - "$PORT" "$DB" "$REQS" <<'PYEOF'
import http.client, json, statistics, sys, time, urllib.parse
import psycopg2

port, db, reqs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
END = "2026-11-01T00:00:00Z"
# Ranges that end 17.3 s before the data's end and are 7 or 30 days long: whole days, hours
# and minutes from the rollups, raw rows at both sub-minute edges.
ranges = {"7d": ("2026-10-24T23:59:42.7Z", "2026-10-31T23:59:42.7Z"),
          "30d": ("2026-10-01T23:59:42.7Z", "2026-10-31T23:59:42.7Z")}
conn = psycopg2.connect(db)
conn.autocommit = True
cur = conn.cursor()
cur.execute("SET TIME ZONE 'UTC'")
cur.execute("SET max_parallel_workers_per_gather = 2")
SQL = {
    "count": ('SELECT count(*) FROM public.events WHERE "timestamp" >= %s AND "timestamp" < %s', None),
    "timeseries(hour)": ("SELECT (extract(epoch FROM date_trunc('hour', \"timestamp\"))*1000000)::int8, count(*) "
                         'FROM public.events WHERE "timestamp" >= %s AND "timestamp" < %s GROUP BY 1 ORDER BY 1', None),
    "top": ('SELECT event_name, count(*) FROM public.events WHERE "timestamp" >= %s AND "timestamp" < %s '
            'GROUP BY 1 ORDER BY 2 DESC, event_name COLLATE "C" LIMIT 10', None),
}
PATH = {"count": ("/analytics/events/count", {}), "timeseries(hour)": ("/analytics/events/timeseries", {"interval": "hour"}),
        "top": ("/analytics/events/top", {"limit": 10})}

def to_us(s):
    import datetime
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    e = d - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (e.days * 86400 + e.seconds) * 1000000 + e.microseconds

def same(q, body, rows):
    if q == "count":
        return body["count"] == rows[0][0]
    if q == "top":
        return [(i["event_name"], i["count"]) for i in body["items"]] == [tuple(r) for r in rows]
    got = {to_us(p["ts"]): p["count"] for p in body["points"] if p["count"]}
    return got == {r[0]: r[1] for r in rows}

h = http.client.HTTPConnection("127.0.0.1", port)
def get(path):
    t0 = time.perf_counter()
    h.request("GET", path)
    r = h.getresponse()
    data = r.read()
    return (time.perf_counter() - t0) * 1000.0, r.status, data

print("%-18s %-4s %10s %10s %12s %10s %10s" % ("query", "range", "http p50", "http p99", "plain SQL", "SQL/p99", "SQL/p50"))
worst_p99, worst_ratio, all_same = 0.0, 1e18, True
for rname, (lo, hi) in ranges.items():
    for q, (sql, _) in SQL.items():
        path, extra = PATH[q]
        url = path + "?" + urllib.parse.urlencode(dict(extra, from_ts=lo, to_ts=hi))
        for _ in range(20):
            get(url)
        lat = []
        for _ in range(reqs):
            ms, st, data = get(url)
            assert st == 200, (st, data)
            lat.append(ms)
        lat.sort()
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            cur.execute(sql, (lo, hi))
            rows = cur.fetchall()
            times.append((time.perf_counter() - t0) * 1000.0)
        sql_ms = statistics.median(times)
        ok = same(q, json.loads(data), rows)
        all_same &= ok
        worst_p99 = max(worst_p99, p99)
        worst_ratio = min(worst_ratio, sql_ms / p99)
        print("%-18s %-4s %8.2fms %8.2fms %10.1fms %9.0fx %9.0fx%s" % (q, rname, p50, p99, sql_ms, sql_ms / p99, sql_ms / p50,
                                                           "" if ok else "  ANSWERS DIFFER"))
print("worst p99 %.2f ms (target < 5 ms): %s; worst ratio SQL/p99 %.0fx (target >= 50x): %s; answers equal: %s" % (
    worst_p99, "PASS" if worst_p99 < 5 else "FAIL", worst_ratio, "PASS" if worst_ratio >= 50 else "FAIL", all_same))

# Informational (no target): exact distinct users costs O(sum of daily active users) from
# epp_user_day plus the raw rows of the partial days.
for rname, (lo, hi) in ranges.items():
    url = "/analytics/users/active?" + urllib.parse.urlencode({"from_ts": lo, "to_ts": hi})
    get(url)
    lat = sorted(get(url)[0] for _ in range(10))
    t0 = time.perf_counter()
    cur.execute('SELECT count(DISTINCT user_id) FROM public.events WHERE "timestamp" >= %s AND "timestamp" < %s', (lo, hi))
    (n,), = cur.fetchall()
    sql_ms = (time.perf_counter() - t0) * 1000.0
    _, _, data = get(url)
    print("%-18s %-4s %8.2fms %8.2fms %10.1fms %9.0fx  (10 requests; equal: %s)" % (
        "users/active", rname, lat[5], lat[-1], sql_ms, sql_ms / lat[-1], json.loads(data)["unique_users"] == n))
PYEOF

# Dashboard-style load: the five URLs the page polls, for the last hour and day of the data.
cat > "$TMP/dash.lua" <<'LUA'
local paths = {
  "/analytics/events/count?from_ts=0001-01-01T00:00:00Z&to_ts=2026-11-02T00:00:00Z",
  "/analytics/events/count?from_ts=2026-10-31T23:00:00Z&to_ts=2026-11-01T00:00:00Z",
  "/analytics/users/active?from_ts=2026-10-31T23:00:00Z&to_ts=2026-11-01T00:00:00Z",
  "/analytics/events/timeseries?from_ts=2026-10-31T23:00:00Z&to_ts=2026-11-01T00:00:00Z&interval=minute",
  "/analytics/events/top?from_ts=2026-10-31T23:00:00Z&to_ts=2026-11-01T00:00:00Z&limit=10",
  "/analytics/events/timeseries?from_ts=2026-10-31T00:00:00Z&to_ts=2026-11-01T00:00:00Z&interval=hour",
}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d status, %d connect, %d read, %d timeout\n",
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.timeout))
end
LUA
echo "--- $CONNS concurrent dashboard clients, ${DUR}s (wrk -t2 -c$CONNS, HTTP_THREADS=$THREADS)"
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$TMP/dash.lua" "http://127.0.0.1:$PORT" |
    grep -E "Requests/sec|Latency|50%|90%|99%|requests in|non-2xx"
