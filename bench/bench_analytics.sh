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
# 2. Unique users (issue 21): /analytics/users/active over 1, 7 and 30 days (edges not aligned)
#    and a 30-day DAU series (interval=day), p50/p99 through HTTP over BENCH_USERS_REQUESTS
#    requests each (default 2000: a p99 from the 20 slowest, not the 5 slowest, moves less with
#    this machine's stalls, which the bench measures and prints just before), against
#    count(DISTINCT user_id) in plain SQL (median of 3), every answer compared (targets: p99 < 5
#    ms and >= 100x for the ranges, p99 < 10 ms for the series); the user bitmaps' size on disk
#    per day. Beside each: the first request of the range (before the service's bitmap cache
#    holds it) and p50/p99 of a second epp-analytics with USER_BITMAP_CACHE_MB=0 (every answer
#    moves and decodes its hour and day bitmaps), whose answers must be the same.
# 3. Dashboard-style load (wrk, a Lua script cycling through the URLs the dashboard polls, daily
#    active users included), BENCH_CONNECTIONS connections for BENCH_DURATION seconds (default
#    10): once without pause (saturation: the throughput), then paced as that many dashboards
#    refreshing every BENCH_DASH_REFRESH_S (2 s, the page's fastest) would ask -- latency
#    percentiles (target p99 < 20 ms); then epp-analytics' peak RSS (target < 128 MB).
# 4. With BENCH_ANALYTICS_BIG_USERS (e.g. 100000000): unique users at that many events and
#    BENCH_ANALYTICS_BIG_USERS_N users (1,000,000) over 30 days, generated straight into the
#    user dictionary and bitmaps by bench_users_gen (no events table: the ranges are whole
#    minutes, so no raw edge is read), cached like the main data set; users/active over 1, 7 and
#    30 days and the DAU series, each answer checked against the generator's exact count (target
#    p99 < 20 ms).
#
# Env: EPP_BUILD_DIR, BENCH_ANALYTICS_EVENTS, BENCH_ANALYTICS_CACHE, BENCH_ANALYTICS_REQUESTS,
# BENCH_USERS_REQUESTS (sections 2 and 4),
# BENCH_DURATION, BENCH_CONNECTIONS (200), BENCH_HTTP_THREADS (epp-analytics HTTP_THREADS, 4),
# BENCH_ANALYTICS_BIG_USERS (0: off), BENCH_ANALYTICS_BIG_USERS_N (1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=$(cd "${EPP_BUILD_DIR:-build}" && pwd)
REQS=${BENCH_ANALYTICS_REQUESTS:-500}
UREQS=${BENCH_USERS_REQUESTS:-2000}
DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-200}
THREADS=${BENCH_HTTP_THREADS:-4}
BIN="$BUILD/bin/epp-analytics"
PY=/usr/bin/python3
# shellcheck source=bench/analytics_data.sh
. bench/analytics_data.sh

command -v wrk >/dev/null || { echo "bench_analytics: wrk not installed"; exit 1; }
[ -x "$BIN" ] || { echo "bench_analytics: $BIN not built"; exit 1; }

# free_port -> a free TCP port (scripts/lib/free_port.py, the one picker)
free_port() { python3 scripts/lib/free_port.py; }

TMP=$(mktemp -d /tmp/epp-bench-analytics.XXXXXX)
SVC_PID=""
NC_PID=""
BIG_PID=""
cleanup() {
    [ -n "$SVC_PID" ] && kill "$SVC_PID" 2>/dev/null && wait "$SVC_PID" 2>/dev/null
    [ -n "$NC_PID" ] && kill "$NC_PID" 2>/dev/null && wait "$NC_PID" 2>/dev/null
    [ -n "$BIG_PID" ] && kill "$BIG_PID" 2>/dev/null && wait "$BIG_PID" 2>/dev/null
    analytics_data_stop
    rm -rf "$TMP"
}
trap cleanup EXIT

analytics_data_start

PORT=$(free_port)
DATABASE_URL="$DB" HTTP_PORT=$PORT HTTP_BIND_ADDRESS=127.0.0.1 HTTP_THREADS=$THREADS LOG_LEVEL=warn \
    QUERY_TIMEOUT_MS=30000 "$BIN" 2>"$TMP/analytics.log" &
SVC_PID=$!
# The same without the bitmap cache, for the unique-users comparison.
NC_PORT=$(free_port)
DATABASE_URL="$DB" HTTP_PORT=$NC_PORT HTTP_BIND_ADDRESS=127.0.0.1 HTTP_THREADS=$THREADS LOG_LEVEL=warn \
    QUERY_TIMEOUT_MS=30000 USER_BITMAP_CACHE_MB=0 "$BIN" 2>"$TMP/analytics-nocache.log" &
NC_PID=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 &&
        curl -fs "http://127.0.0.1:$NC_PORT/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

REPO=$REPO $PY - "$PORT" "$DB" "$REQS" "$NC_PORT" "$UREQS" <<'PYEOF' | tee -a "$TMP/verdicts.txt"
import json, os, statistics, sys, time, urllib.parse
import psycopg2
sys.path.insert(0, os.path.join(os.environ["REPO"], "bench"))
from analytics_client import Client, stalls

port, db, reqs, ureqs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
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

svc = Client(port)
nocache = Client(int(sys.argv[4]))

print("%-18s %-4s %10s %10s %12s %10s %10s" % ("query", "range", "http p50", "http p99", "plain SQL", "SQL/p99", "SQL/p50"))
worst_p99, worst_ratio, all_same = 0.0, 1e18, True
for rname, (lo, hi) in ranges.items():
    for q, (sql, _) in SQL.items():
        path, extra = PATH[q]
        url = path + "?" + urllib.parse.urlencode(dict(extra, from_ts=lo, to_ts=hi))
        _, p50, p99, data = svc.measure(url, reqs)
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

# Unique users (issue 21): ranges of 1, 7 and 30 days with the same unaligned edges, and a
# 30-day DAU series.
uranges = {"1d": ("2026-10-30T23:59:42.7Z", "2026-10-31T23:59:42.7Z"), "7d": ranges["7d"],
           "30d": ranges["30d"]}
# Each also without the service's bitmap cache (a second epp-analytics, USER_BITMAP_CACHE_MB=0:
# every answer moves and decodes its hour and day bitmaps), and the first request of each range
# on the cached one (what a range nobody asked for yet costs).
# How late this machine wakes a process that only sleeps, measured alone just before: the tails
# below include such stalls (every request that meets one is that much slower).
n, late, worst = stalls()
print("machine: %d of %d 1-ms sleeps woke over 1 ms late, the latest %.1f ms late (idle, 3 s)" % (
    late, n, worst))
print("%-18s %-4s %10s %10s %12s %10s %12s %12s %12s" % (
    "unique users", "range", "http p50", "http p99", "plain SQL", "SQL/p99", "first req",
    "nocache p50", "nocache p99"))
worst_p99, worst_ratio, all_same = 0.0, 1e18, True
for rname, (lo, hi) in list(uranges.items()) + [("dau", ranges["30d"])]:
    q = {"from_ts": lo, "to_ts": hi}
    if rname == "dau":
        q["interval"] = "day"
    url = "/analytics/users/active?" + urllib.parse.urlencode(q)
    first, p50, p99, data = svc.measure(url, ureqs)
    _, nc_p50, nc_p99, nc_data = nocache.measure(url, ureqs)
    body = json.loads(data)
    same_nc = json.loads(nc_data) == body
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        if rname == "dau":
            cur.execute("SELECT date_trunc('day', \"timestamp\"), count(DISTINCT user_id) FROM "
                        "public.events WHERE \"timestamp\" >= %s AND \"timestamp\" < %s "
                        "GROUP BY 1 ORDER BY 1", (lo, hi))
            rows = cur.fetchall()
            ok = [(to_us(p["ts"]), p["unique_users"]) for p in body["points"] if p["unique_users"]] \
                == [(int(r[0].timestamp()) * 1000000, r[1]) for r in rows]
        else:
            cur.execute('SELECT count(DISTINCT user_id) FROM public.events WHERE "timestamp" >= %s '
                        'AND "timestamp" < %s', (lo, hi))
            (n,), = cur.fetchall()
            ok = body["unique_users"] == n
        times.append((time.perf_counter() - t0) * 1000.0)
    sql_ms = statistics.median(times)
    ok &= same_nc
    all_same &= ok
    if rname != "dau":
        worst_p99 = max(worst_p99, p99)
        worst_ratio = min(worst_ratio, sql_ms / p99)
    else:
        dau_p99 = p99
    print("%-18s %-4s %8.2fms %8.2fms %10.1fms %9.0fx %10.2fms %10.2fms %10.2fms%s" % (
        "users/active" if rname != "dau" else "DAU series (day)", rname if rname != "dau" else "30d",
        p50, p99, sql_ms, sql_ms / p99, first, nc_p50, nc_p99, "" if ok else "  ANSWERS DIFFER"))
print("unique users: worst p99 %.2f ms (target < 5 ms): %s; worst ratio SQL/p99 %.0fx (target >= "
      "100x): %s; DAU series p99 %.2f ms (target < 10 ms): %s; answers equal: %s" % (
          worst_p99, "PASS" if worst_p99 < 5 else "FAIL", worst_ratio,
          "PASS" if worst_ratio >= 100 else "FAIL", dau_p99, "PASS" if dau_p99 < 10 else "FAIL",
          all_same))
# The bitmaps on disk: rows, bytes of bits, and the tables with their indexes and TOAST. (A
# minute row holds an hour of minutes since sql/032: its buckets are hours.)
for level in ("day", "hour", "minute"):
    cur.execute("SELECT count(DISTINCT bucket), count(*), coalesce(sum(pg_column_size(bits)), 0),"
                " pg_total_relation_size('public.epp_user_bitmap_%s') FROM "
                "public.epp_user_bitmap_%s" % (level, level))
    buckets, rows, bits, total = cur.fetchone()
    unit = "hour" if level == "minute" else "bucket"
    print("user bitmaps per %-6s %6d %-7s in %6d rows: %8.1f KB of bitmap per %s, %8.1f KB"
          " on disk per day of data (tables, indexes, TOAST)" % (
              level, buckets, unit + "s", rows, bits / max(buckets, 1) / 1024.0, unit,
              total / 30 / 1024.0))
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
  "/analytics/users/active?from_ts=2026-10-02T00:00:00Z&to_ts=2026-11-01T00:00:00Z&interval=day",
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
# a) Saturation: every connection sends its next request as soon as the last one is answered
#    (no think time: far more than 200 dashboards ask), for the throughput.
echo "--- saturation: $CONNS connections without pause, ${DUR}s (wrk -t2 -c$CONNS, HTTP_THREADS=$THREADS)"
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$TMP/dash.lua" "http://127.0.0.1:$PORT" |
    grep -E "Requests/sec|Latency|50%|90%|99%|requests in|non-2xx"
# b) The target: CONNS dashboards, each asking its URLs once per REFRESH_S (the page's fastest
#    refresh, 2 s; its default is 5 s), one connection each, requests spread over the refresh.
REFRESH_S=${BENCH_DASH_REFRESH_S:-2}
# Each pause is drawn uniformly from [0, 2 x the mean], so that the clients are not in step (the
# same pause everywhere kept all 200 sending in one wave).
sed "s/^local i = 0$/local i = 0\ndelay = function() return math.random(0, math.floor(2 * $REFRESH_S * 1000 \/ #paths)) end/" \
    "$TMP/dash.lua" >"$TMP/paced.lua"
echo "--- $CONNS dashboard clients, each refreshing every ${REFRESH_S}s, ${DUR}s (wrk -t2 -c$CONNS, a pause between a connection's requests; target p99 < 20 ms)"
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$TMP/paced.lua" "http://127.0.0.1:$PORT" >"$TMP/paced.txt"
grep -E "Requests/sec|Latency|50%|90%|99%|requests in|non-2xx" "$TMP/paced.txt"
awk '$1 == "99%" { v = $2; ms = v + 0; if (v ~ /us$/) ms /= 1000; else if (v ~ /[0-9]s$/) ms *= 1000;
      printf "dashboard clients: p99 %.2f ms (target < 20 ms): %s\n", ms, ms < 20 ? "PASS" : "FAIL" }' \
    "$TMP/paced.txt" | tee -a "$TMP/verdicts.txt"
echo "epp-analytics peak RSS: $(awk '/VmHWM/ { printf "%.1f MB", $2 / 1024 }' "/proc/$SVC_PID/status") (target < 128 MB); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# 4. Unique users at BENCH_ANALYTICS_BIG_USERS events, generated into the bitmaps directly.
BIG=${BENCH_ANALYTICS_BIG_USERS:-0}
if [ "$BIG" -gt 0 ]; then
    BIGN=${BENCH_ANALYTICS_BIG_USERS_N:-1000000}
    BIGDB="postgresql://postgres:postgres@127.0.0.1:$PG_PORT/bench_users_big"
    START=$(date -u -d 2026-10-02T00:00:00Z +%s)
    END=$((START + 30 * 86400))
    # Whole-minute ranges ending 17 minutes before the end: days, hours and minutes, no raw edge.
    R1="$((END - 86400 - 1020)) $((END - 1020))"
    R7="$((END - 7 * 86400 - 1020)) $((END - 1020))"
    R30="$((END - 29 * 86400 - 1020)) $((END - 1020))"
    # v2: minute rows hold an hour each (sql/032); a v1 cache holds rows of one minute.
    BIG_VERSION="$BIG events, $BIGN users, layout v2"
    if [ "$(cat "$CACHE/loaded-big-users" 2>/dev/null || true)" != "$BIG_VERSION" ]; then
        echo "generating unique users for $BIG events and $BIGN users (cached)..."
        t0=$(date +%s)
        mkdir -p "$TMP/big"
        # shellcheck disable=SC2086 # R1 R7 R30 are two numbers each
        "$BUILD/bin/bench_users_gen" "$BIG" "$BIGN" 30 "$START" 7 "$TMP/big" $R1 $R7 $R30 \
            >"$CACHE/big-users-expect.txt"
        psql -X -q -v ON_ERROR_STOP=1 "$ADMIN" -c "DROP DATABASE IF EXISTS bench_users_big" \
            -c "CREATE DATABASE bench_users_big"
        for f in sql/[0-9]*_*.sql; do PGOPTIONS="-c client_min_messages=warning" psql -X -q -1 -v ON_ERROR_STOP=1 "$BIGDB" -f "$f"; done
        for t in ids:epp_user_ids minute:epp_user_bitmap_minute hour:epp_user_bitmap_hour day:epp_user_bitmap_day; do
            cols="(bucket, n, bits)"
            [ "${t%%:*}" = ids ] && cols="(user_id, uid)"
            psql -X -q -v ON_ERROR_STOP=1 "$BIGDB" -c "\\copy public.${t#*:} $cols FROM '$TMP/big/${t%%:*}.tsv'"
        done
        psql -X -q "$BIGDB" -c "SELECT setval('public.epp_user_uid_seq', $BIGN)" -c "VACUUM ANALYZE" >/dev/null
        rm -rf "$TMP/big"
        echo "$BIG_VERSION" >"$CACHE/loaded-big-users"
        echo "generated in $(( $(date +%s) - t0 )) s"
    fi
    BIGPORT=$(free_port)
    DATABASE_URL="$BIGDB" HTTP_PORT=$BIGPORT HTTP_BIND_ADDRESS=127.0.0.1 HTTP_THREADS=$THREADS \
        LOG_LEVEL=warn QUERY_TIMEOUT_MS=30000 "$BIN" 2>"$TMP/analytics-big.log" &
    BIG_PID=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$BIGPORT/ready" >/dev/null 2>&1 && break
        sleep 0.1
    done
    REPO=$REPO $PY - "$BIGPORT" "$UREQS" "$CACHE/big-users-expect.txt" "$BIG" "$BIGN" <<'PYEOF' | tee -a "$TMP/verdicts.txt"
import json, os, sys, urllib.parse
sys.path.insert(0, os.path.join(os.environ["REPO"], "bench"))
from analytics_client import Client
port, reqs, expect_file, big, bign = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
expect = [line.split()[1:] for line in open(expect_file) if line.startswith("expect ")]
svc = Client(port)
worst = 0.0
for (lo, hi, n), name in zip(expect, ("1d", "7d", "30d")):
    for interval in (None, "day") if name == "30d" else (None,):
        q = {"from_ts": lo, "to_ts": hi}
        if interval:
            q["interval"] = interval
        url = "/analytics/users/active?" + urllib.parse.urlencode(q)
        _, p50, p99, data = svc.measure(url, reqs)
        body = json.loads(data)
        worst = max(worst, p99)
        print("%s events, %s users: users/active %-4s%s p50 %.2f ms, p99 %.2f ms; %d users, "
              "generator says %s: %s" % (big, bign, name, " (DAU series)" if interval else "",
                                        p50, p99, body["unique_users"], n,
                                        "equal" if body["unique_users"] == int(n) else "DIFFER"))
print("worst p99 %.2f ms at %s events (target < 20 ms): %s" % (worst, big, "PASS" if worst < 20 else "FAIL"))
PYEOF
    echo "epp-analytics peak RSS at $BIG events: $(awk '/VmHWM/ { printf "%.1f MB", $2 / 1024 }' "/proc/$BIG_PID/status")"
    kill "$BIG_PID"
    wait "$BIG_PID" 2>/dev/null || true
    BIG_PID=""
fi

# A benchmark that misses a target says so and fails (bench/run.sh reports it).
if grep -q "FAIL" "$TMP/verdicts.txt"; then
    echo "bench_analytics: targets missed:"
    grep "FAIL" "$TMP/verdicts.txt"
    exit 1
fi
