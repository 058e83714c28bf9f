#!/usr/bin/env python3
"""Exact numbers: every chart of the dashboard, asked through POST /api/v1/chart/data with its
saved query_context and a time range, answers what epp-analytics answers for the same range on
the same data -- through the read-only role, the rollups and sql/020's epp_event_counts.

The events go in the way a client sends them: through the fixture stack's epp-ingest, Kafka and
epp-consumer (which keeps the rollups), with timestamps on and around bucket edges (a
microsecond before and after midnight, whole hours and minutes, and inside each minute) over
four days of 2025 that no other test writes. Their event ids are fixed (a rerun stores nothing
new). Eight event names with different counts, 23 users.

Ranges: whole days; ranges starting and ending inside a minute (so every piece of the plan is
used: days, hours, minutes, raw sub-minute edges); one inside a single minute; one inside an
hour; and "No filter" (all time). For each:
  Total events           = /analytics/events/count
  Events over time       = /analytics/events/timeseries?interval=hour (non-zero points; the
                           chart's zero-filled gaps are zeros there too)
  Events by type ...     = /analytics/events/timeseries?interval=day per event_name (a
                           partial first day: its part of the range, stamped at midnight)
  Top event types        = /analytics/events/top?limit=10 (as counts by name, in count order)
  Active users per day   = /analytics/users/active over each UTC day that starts in the range
"""

import datetime
import json
import time
import urllib.parse
import uuid

import superset_util as u
from superset_util import S, t

UTC = datetime.timezone.utc
DAY0 = datetime.datetime(2025, 3, 9, tzinfo=UTC)
NAMES = ["page_view", "click", "search", "add_to_cart", "purchase", "signup", "login", "share"]
NS = uuid.UUID("5e7c0c1e-0000-4000-8000-00000000e9e9")


def ts(d):
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events():
    """The test events: (event_id, user_id, event_name, timestamp datetime)."""
    us = datetime.timedelta(microseconds=1)
    instants = []
    for day in range(4):
        d = DAY0 + datetime.timedelta(days=day)
        for h in (0, 1, 7, 13, 23):
            hour = d + datetime.timedelta(hours=h)
            instants += [hour, hour - us, hour + us, hour + datetime.timedelta(minutes=59, seconds=59, microseconds=999999)]
            for m in (0, 1, 17, 59):
                minute = hour + datetime.timedelta(minutes=m)
                instants += [minute, minute - us, minute + datetime.timedelta(seconds=29.5),
                             minute + datetime.timedelta(seconds=59, microseconds=999999)]
    instants = sorted(set(instants))
    out = []
    for i, when in enumerate(instants):
        # Skewed names: counts differ by name, so "top" has no ties to order.
        name = NAMES[min(int((i * 7919 % 1000) ** 0.5 / 4), len(NAMES) - 1)]
        out.append((str(uuid.uuid5(NS, str(i))), "user-%d" % (i * 31 % 23), name, when))
    return out


def send(env, evs):
    base = env["EPP_SUPERSET_INGEST_URL"]
    for i in range(0, len(evs), 500):
        batch = [{"event_id": e, "user_id": usr, "event_name": n, "timestamp": ts(w),
                  "metadata": {"test": "superset.chart_data"}} for e, usr, n, w in evs[i:i + 500]]
        status, _, body = t.http_json("POST", base + "/events/batch", {"events": batch}, timeout=30)
        t.check(status in (200, 202) and body.get("rejected") == 0,
                "POST /events/batch: %s %r" % (status, body if status >= 300 else body.get("results", [])[:3]))
    ids = [e[0] for e in evs]

    def stored():
        conn = t.pg_connect(env["EPP_SUPERSET_DB_URL"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM public.events WHERE event_id = ANY(%s::uuid[])",
                            (ids,))
                return cur.fetchone()[0] == len(ids)
        finally:
            conn.close()

    t.wait_for(stored, timeout=60, interval=0.5, msg="%d events in Postgres" % len(ids))


def analytics(env, path, **params):
    url = env["EPP_SUPERSET_ANALYTICS_URL"] + path + "?" + urllib.parse.urlencode(params)
    status, _, body = t.http_json("GET", url, timeout=30)
    t.check(status == 200, "%s: %s %r" % (url, status, body))
    return body


def us(v):
    """Superset's epoch milliseconds, or an RFC 3339 text, to a UTC datetime."""
    if isinstance(v, (int, float)):
        return datetime.datetime.fromtimestamp(v / 1000.0, UTC)
    return datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))


def chart_rows(s, chart, time_range):
    status, body = s.chart_data(S.with_time_range(chart["query_context"], time_range))
    t.check(status == 200, "%s: %s %s" % (chart["slice_name"], status, json.dumps(body)[:800]))
    res = body["result"][0]
    t.check(not res.get("error"), "%s: %s" % (chart["slice_name"], res.get("error")))
    return res["data"]


def compare(name, got, want, failures):
    if got != want:
        keys = sorted(set(got) | set(want), key=str)
        diff = {str(k): (got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)}
        failures.append("%s: %d differences (chart, analytics): %s" % (
            name, len(diff), json.dumps(dict(list(diff.items())[:8]))))
    else:
        print("  ok %-26s %s" % (name, json.dumps({str(k): v for k, v in list(got.items())[:4]})[:110]))


def series(data, column):
    """{bucket: n} of a pivoted chart answer, zeros left out."""
    return {us(r["bucket"]): r[column] for r in data if r.get(column)}


def main():
    env = u.load_env()
    s = u.client(env)
    charts = s.dashboard_charts()
    t.check(sorted(charts) == sorted(u.CHART_NAMES), "charts %s" % sorted(charts))
    evs = events()
    send(env, evs)
    print("%d events stored, %s .. %s" % (len(evs), ts(evs[0][3]), ts(evs[-1][3])))

    d = datetime.timedelta
    ranges = [
        (DAY0, DAY0 + d(days=2)),
        (DAY0 + d(hours=7, minutes=13, seconds=27.5), DAY0 + d(days=2, hours=13, minutes=1, seconds=29.5)),
        (DAY0 + d(hours=23, minutes=59, seconds=59, microseconds=999999), DAY0 + d(days=1, hours=1, microseconds=1)),
        (DAY0 + d(days=1, hours=7, minutes=17, seconds=10), DAY0 + d(days=1, hours=7, minutes=17, seconds=45)),
        (DAY0 + d(days=2, hours=13, minutes=0, seconds=30), DAY0 + d(days=2, hours=13, minutes=59, seconds=30)),
        (None, None),
    ]
    failures = []
    for lo, hi in ranges:
        if lo is None:
            time_range, a_lo, a_hi = "No filter", "0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"
        else:
            fmt = "%Y-%m-%dT%H:%M:%S.%f"
            time_range, a_lo, a_hi = "%s : %s" % (lo.strftime(fmt), hi.strftime(fmt)), ts(lo), ts(hi)
        print("range %s" % time_range)

        got = chart_rows(s, charts["Total events"], time_range)[0]["events"] or 0
        want = analytics(env, "/analytics/events/count", from_ts=a_lo, to_ts=a_hi)["count"]
        compare("Total events", {"count": got}, {"count": want}, failures)

        top = chart_rows(s, charts["Top event types"], time_range)
        want = analytics(env, "/analytics/events/top", from_ts=a_lo, to_ts=a_hi, limit=10)["items"]
        compare("Top event types", {r["event_name"]: r["events"] for r in top},
                {i["event_name"]: i["count"] for i in want}, failures)
        counts = [r["events"] for r in top]
        if counts != sorted(counts, reverse=True):
            failures.append("Top event types: not in count order: %s" % counts)

        dau = chart_rows(s, charts["Active users per day"], time_range)
        got = {us(r["day"]): r["active_users"] for r in dau}
        days = sorted(got) if lo is None else [
            datetime.datetime.combine(lo.date(), datetime.time(), UTC) + d(days=k) for k in range(6)]
        want = {}
        for day in days:
            if lo is not None and not (lo <= day < hi):
                continue
            n = analytics(env, "/analytics/users/active", from_ts=ts(day),
                          to_ts=ts(day + d(days=1)))["unique_users"]
            if n:
                want[day] = n
        compare("Active users per day", got, want, failures)

        if lo is None:
            continue  # an all-time hourly series is longer than analytics' MAX_POINTS
        over = chart_rows(s, charts["Events over time"], time_range)
        points = analytics(env, "/analytics/events/timeseries", from_ts=a_lo, to_ts=a_hi,
                           interval="hour")["points"]
        compare("Events over time", series(over, "events"),
                {us(p["ts"]): p["count"] for p in points if p["count"]}, failures)

        bytype = chart_rows(s, charts["Events by type over time"], time_range)
        for name in NAMES:
            points = analytics(env, "/analytics/events/timeseries", from_ts=a_lo, to_ts=a_hi,
                               interval="day", event_name=name)["points"]
            compare("Events by type: " + name, series(bytype, name),
                    {us(p["ts"]): p["count"] for p in points if p["count"]}, failures)
    for f in failures:
        print("FAIL:", f)
    t.check(not failures, "%d differences between Superset's charts and epp-analytics" %
            len(failures))
    print("ok: every chart equals epp-analytics over %d ranges" % len(ranges))


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print("(%.1f s)" % (time.monotonic() - t0))
