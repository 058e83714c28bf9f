#!/usr/bin/env bash
# bench_superset: the Superset dashboard (docs/superset.md) at 10,000,000 events -- every chart's
# query under 200 ms, the whole dashboard drawn in a browser under 3 s -- against the same
# questions in plain SQL over public.events, on the same data, in the same run.
#
# Data: the 10M events of bench_analytics (bench/analytics_data.sh, cached between runs).
# Superset: installed and provisioned on that database by scripts/superset.sh (SUPERSET_HOME
# cached in $EPP_BUILD_DIR/bench-cache/superset-home), then served on a free port.
#
# 1. For each chart and a 7-day and a 30-day range (edges inside a minute, as bench_analytics
#    uses), the chart's saved query context through POST /api/v1/chart/data (forced, no cache):
#    the SQL Superset ran (from the answer) is timed on its own through the read-only role
#    (median of BENCH_SUPERSET_RUNS, default 5; target < 200 ms per chart), the whole API call
#    too, and the plain SQL over public.events for the same answer (once) as the baseline.
# 2. Headless Chromium (tests/superset/superset_check.js) logs in and opens the dashboard with the
#    30-day range BENCH_SUPERSET_LOADS times (default 6): time from navigation to every chart
#    drawn. The first load fills the browser's cache (Superset's JavaScript, ~10 MB); target
#    < 3 s for the median of the loads after it, as a person who has opened Superset before sees
#    it (one load on this 2-core machine moves by ±0.5 s). Every load's time is printed, and the
#    slowest.
# Prints figures, exits 1 when a target is missed.
#
# Env: EPP_BUILD_DIR, BENCH_ANALYTICS_EVENTS, BENCH_ANALYTICS_CACHE, BENCH_SUPERSET_RUNS,
# BENCH_SUPERSET_LOADS.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=$(cd "${EPP_BUILD_DIR:-build}" && pwd)
export BENCH_NAME=bench_superset # bench/lib.sh's messages
# shellcheck source=bench/lib.sh
. bench/lib.sh
# shellcheck source=bench/analytics_data.sh
. bench/analytics_data.sh

TMP=$(mktemp -d /tmp/epp-bench-superset.XXXXXX)
SUPERSET_PID=""
cleanup() {
    if [ -n "$SUPERSET_PID" ]; then
        kill "$SUPERSET_PID" 2>/dev/null || true
        wait "$SUPERSET_PID" 2>/dev/null || true
    fi
    analytics_data_stop
    rm -rf "$TMP"
}
trap cleanup EXIT

require_tools node /usr/bin/chromium
# The browser driver's npm tools (playwright-core), as the tests install them.
cmake -DSRC="$REPO/tests/analytics" -DDST="$BUILD/tests/analytics/npm" \
    -P tests/analytics/npm_ci.cmake >/dev/null
bash scripts/superset.sh install

analytics_data_start

export SUPERSET_HOME=$BUILD/bench-cache/superset-home
export SUPERSET_PORT
SUPERSET_PORT=$(free_port)
PASSWORD=epp-bench-only
DATABASE_URL=$DB SUPERSET_ADMIN_PASSWORD=$PASSWORD SUPERSET_RESET_ADMIN_PASSWORD=1 \
    bash scripts/superset.sh provision | grep -E "changed|failed" || true
setsid bash scripts/superset.sh serve >"$TMP/superset.log" 2>&1 &
SUPERSET_PID=$!
for _ in $(seq 1 240); do
    curl -fsS -o /dev/null "http://127.0.0.1:$SUPERSET_PORT/health" 2>/dev/null && break
    kill -0 "$SUPERSET_PID" 2>/dev/null || { cat "$TMP/superset.log"; exit 1; }
    sleep 0.5
done
echo "Superset on port $SUPERSET_PORT, $N events (load: $(cut -d' ' -f1-3 /proc/loadavg))"

/usr/bin/python3 - "$SUPERSET_PORT" "$PASSWORD" "$DB" "$SUPERSET_HOME" "$BUILD" <<'PYEOF'
import json, os, statistics, sys, time, urllib.parse
sys.path.insert(0, "tests/lib")
sys.path.insert(0, "tests/superset")
import psycopg2
import epp_superset as S
import superset_util as u

port, password, db, home, build = sys.argv[1:6]
RUNS = int(os.environ.get("BENCH_SUPERSET_RUNS", "5"))
LOADS = int(os.environ.get("BENCH_SUPERSET_LOADS", "6"))
base = "http://127.0.0.1:%s" % port
s = S.Client(base, "admin", password)
charts = s.dashboard_charts()
# The bench_analytics ranges: 7 and 30 days ending 17.3 s before the data's end.
ranges = {"7d": ("2026-10-24T23:59:42.700000", "2026-10-31T23:59:42.700000"),
          "30d": ("2026-10-01T23:59:42.700000", "2026-10-31T23:59:42.700000")}
# The same questions in plain SQL over public.events (the baseline).
PLAIN = {
    "Total events": "SELECT count(*) FROM public.events WHERE \"timestamp\" >= %(lo)s AND \"timestamp\" < %(hi)s",
    "Events over time": "SELECT date_trunc('hour', \"timestamp\"), count(*) FROM public.events "
                        "WHERE \"timestamp\" >= %(lo)s AND \"timestamp\" < %(hi)s GROUP BY 1",
    "Top event types": "SELECT event_name, count(*) FROM public.events WHERE \"timestamp\" >= %(lo)s "
                       "AND \"timestamp\" < %(hi)s GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
    "Active users per day": "SELECT date_trunc('day', \"timestamp\"), count(DISTINCT user_id) FROM public.events "
                            "WHERE \"timestamp\" >= date_trunc('day', %(lo)s::timestamptz) + interval '1 day' "
                            "AND \"timestamp\" < %(hi)s GROUP BY 1",
    "Events by type over time": "SELECT date_trunc('day', \"timestamp\"), event_name, count(*) FROM public.events "
                                "WHERE \"timestamp\" >= %(lo)s AND \"timestamp\" < %(hi)s GROUP BY 1, 2",
}
with open(os.path.join(home, "db_password")) as f:
    role_pw = f.read().strip()
p = urllib.parse.urlsplit(db)
role = psycopg2.connect(host=p.hostname, port=p.port, dbname=p.path[1:], user="epp_superset",
                        password=role_pw)
role.autocommit = True
owner = psycopg2.connect(db)
owner.autocommit = True

def timed(conn, sql, args=None):
    cur = conn.cursor()
    t0 = time.perf_counter()
    cur.execute(sql, args)
    cur.fetchall()
    return (time.perf_counter() - t0) * 1000.0

print("%-26s %-5s %11s %11s %11s %13s %9s" % ("chart", "range", "query p50", "query max",
                                                "API p50", "plain SQL", "SQL/query"))
worst, misses = 0.0, []
for name in u.CHART_NAMES:
    chart = charts[name]
    for rname, (lo, hi) in ranges.items():
        qc = S.with_time_range(chart["query_context"], "%s : %s" % (lo, hi))
        api = []
        for i in range(RUNS + 1):
            t0 = time.perf_counter()
            status, body = s.chart_data(qc, timeout=120)
            if i:
                api.append((time.perf_counter() - t0) * 1000.0)
            assert status == 200 and not body["result"][0].get("error"), (name, status, str(body)[:500])
        sqls = [r["query"] for r in body["result"]]
        runs = sorted(sum(timed(role, q) for q in sqls) for _ in range(RUNS))
        q50, qmax = statistics.median(runs), runs[-1]
        plain = timed(owner, PLAIN[name], {"lo": lo + "Z", "hi": hi + "Z"})
        worst = max(worst, q50)
        if q50 >= 200:
            misses.append("%s %s: %.0f ms" % (name, rname, q50))
        print("%-26s %-5s %9.1fms %9.1fms %9.0fms %11.0fms %8.0fx" % (
            name, rname, q50, qmax, statistics.median(api), plain, plain / q50))
print("worst chart query (median of %d) %.1f ms (target < 200 ms): %s" % (
    RUNS, worst, "PASS" if not misses else "FAIL " + "; ".join(misses)))

lo, hi = ranges["30d"]
rng = "%s : %s" % (lo, hi)
fid = "NATIVE_FILTER-epp-time-range"
os.environ["DASH_URL_QUERY"] = "?native_filters=" + urllib.parse.quote(
    "(%s:(extraFormData:(time_range:'%s'),filterState:(value:'%s'),id:%s))" % (fid, rng, rng, fid))
env = dict(u.t.load_env(build), EPP_SUPERSET_URL=base, EPP_SUPERSET_USER="admin",
           EPP_SUPERSET_PASSWORD=password)
shot = os.path.join(build, "bench-cache", "superset-dashboard-10m.png")
r = u.open_dashboard(env, shot, loads=LOADS)
with open(os.path.join(build, "bench-cache", "superset-dashboard-10m.json"), "w") as f:
    json.dump(r, f)  # every load's requests with their start and end, to study
assert "error" not in r, r.get("error")
loads_ok = True
for i, load in enumerate(r["loads"]):
    states = {c["name"]: c["state"] for c in load["charts"]}
    total = [c["text"].split("\n")[-1] for c in load["charts"] if c["name"] == "Total events"]
    print("dashboard load %d: %d ms, %s; Total events shows %s" % (
        i + 1, load["ms"], "every chart drawn" if set(states.values()) == {"rendered"} and load["done"]
        else "NOT all drawn: %s" % states, total))
    if set(states.values()) != {"rendered"}:
        loads_ok = False
    # Where the load's time went: the page's own requests, each chart's data and drawing.
    net = load.get("network", [])
    api = [n for n in net if n["type"] in ("xhr", "fetch")]
    static = [n for n in net if n["type"] not in ("xhr", "fetch")]
    print("  DOMContentLoaded %d ms; %d requests (%d API, last API answer at %d ms; %d other, "
          "last at %d ms)" % (load.get("dom_ms", -1), len(net), len(api),
                              max([n["end"] for n in api] or [0]), len(static),
                              max([n["end"] for n in static] or [0])))
    for ch in sorted(load["charts"], key=lambda c: c.get("drawn_ms") or 0):
        data = [q for q in load["requests"] if q["chart_id"] == ch["id"]]
        print("  %-26s data answered at %s ms, drawn at %s ms" % (
            ch["name"], data[-1]["received_ms"] if data else "-", ch.get("drawn_ms")))
    for n in sorted(net, key=lambda n: n["end"] - n["start"], reverse=True)[:6]:
        print("  slowest: %5d-%5d ms %s %s (%s)" % (n["start"], n["end"], n["method"], n["path"],
                                                   n["type"]))
later = [load["ms"] for load in r["loads"][1:]] or [r["loads"][0]["ms"]]
drawn = statistics.median(later)
print("dashboard drawn in %d ms (median of the %d loads after the first: %s; slowest %d ms; "
      "first load %d ms) (target < 3000 ms): %s"
      % (drawn, len(later), " ".join(str(ms) for ms in later), max(later), r["loads"][0]["ms"],
         "PASS" if loads_ok and drawn < 3000 else "FAIL"))
print("screenshot: %s" % shot)
sys.exit(0 if not misses and loads_ok and drawn < 3000 else 1)
PYEOF
