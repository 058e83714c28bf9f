"""Property test: every analytics endpoint equals the SQL answer over public.events.

Loads N events (200,000; 1,000,000 with EPP_TEST_FULL=1) with timestamps that sit exactly on
minute/hour/day boundaries, one microsecond beside them, at sub-second fractions, and around the
2026-03-29 DST change written with Europe/Paris offsets (01:59:59+01:00 / 03:00:00+02:00);
builds the rollups as the consumer does; then, for hundreds of random ranges (aligned and not,
given as RFC 3339 with various offsets or as epoch seconds), event names and users, compares
count, timeseries (minute/hour/day), top, users/active, users/{id}/events (every page) and
events/{id} with the truth. The truth is computed from the rows read back from public.events;
for a sample of the ranges it is also asked of Postgres directly, so the checker itself is
checked against SQL."""

import bisect
import os
import json
import random
import sys
import time
import uuid

import analytics_util as a
from analytics_util import t

N_EVENTS = 1000000 if a.FULL else 200000
N_RANGES = 1500 if a.FULL else 300
N_SQL_CHECKED = 40
SEED = int(os.environ.get("EPP_TEST_SEED") or int(time.time()) % 100000)  # printed; set it to replay
rng = random.Random(SEED)

WIN_LO = a.parse_ts("2026-03-26T00:00:00Z")
WIN_HI = a.parse_ts("2026-04-03T00:00:00Z")
DST = a.parse_ts("2026-03-29T01:00:00Z")  # 02:00 CET -> 03:00 CEST in Europe/Paris
PARIS_WINTER = a.datetime.timezone(a.datetime.timedelta(hours=1))
PARIS_SUMMER = a.datetime.timezone(a.datetime.timedelta(hours=2))
OTHER_TZ = [a.datetime.timezone(a.datetime.timedelta(hours=h, minutes=m))
            for h, m in ((0, 0), (5, 30), (-3, 0), (-9, -30), (14, 0))]

NAMES = ["page_view", "click", "purchase", "signup", "login", "logout", "add_to_cart",
         "search", "Ünïcödé ✓", "name with spaces", "quote'and\"dq", "x; DROP TABLE events;--"]
NAME_WEIGHTS = [40, 25, 5, 3, 8, 6, 7, 10, 2, 1, 1, 1]
USERS = ["user-%04d" % i for i in range(600)] + ["ü-user", "user/with/slash", "o'brien"]


def random_instant():
    """An instant of the data set: sub-second, on a boundary, beside one, or around DST."""
    k = rng.random()
    base = rng.randrange(WIN_LO, WIN_HI)
    if k < 0.35:
        return base
    if k < 0.50:
        return a.floor(base, a.US_MINUTE)
    if k < 0.58:
        return a.floor(base, a.US_HOUR)
    if k < 0.64:
        return a.floor(base, a.US_DAY)
    if k < 0.74:
        return a.floor(base, rng.choice([a.US_MINUTE, a.US_HOUR, a.US_DAY])) + rng.choice([-1, 1])
    if k < 0.84:
        return a.floor(base, 1000000) + rng.choice([1, 999999, 500000, 123456])
    # Around the DST change: the hour before and after 01:00Z.
    return DST + rng.randrange(-2 * a.US_HOUR, 2 * a.US_HOUR)


def render_instant(us):
    """Text for COPY: around DST in Paris local time with its offset, else a random offset."""
    if abs(us - DST) <= 2 * a.US_HOUR:
        return a.rfc3339(us, PARIS_WINTER if us < DST else PARIS_SUMMER)
    return a.rfc3339(us, rng.choice(OTHER_TZ))


def gen_rows(n):
    for i in range(n):
        meta = {"i": i, "big": 12345678901234567890, "f": 0.1, "nested": {"k": [1, "two", None]}}
        if i % 7 == 0:
            meta = {}
        yield (str(uuid.UUID(int=rng.getrandbits(128), version=4)),
               rng.choice(USERS), rng.choices(NAMES, NAME_WEIGHTS)[0], json.dumps(meta),
               render_instant(random_instant()))


class Truth:
    """Exact answers from the rows as stored (read back from public.events)."""

    def __init__(self, rows):
        rows.sort(key=lambda r: r[3])
        self.ts = [r[3] for r in rows]
        self.by_name, self.by_user, self.by_user_name = {}, {}, {}
        for eid, user, name, ts in rows:
            self.by_name.setdefault(name, []).append(ts)
            self.by_user.setdefault(user, []).append((ts, eid))
            self.by_user_name.setdefault((user, name), []).append(ts)
        self.user_ts = {u: [x[0] for x in v] for u, v in self.by_user.items()}

    @staticmethod
    def _n(lst, lo, hi):
        return bisect.bisect_left(lst, hi) - bisect.bisect_left(lst, lo)

    def count(self, lo, hi, name=None, user=None):
        if user is not None and name is not None:
            return self._n(self.by_user_name.get((user, name), []), lo, hi)
        if user is not None:
            return self._n(self.user_ts.get(user, []), lo, hi)
        if name is not None:
            return self._n(self.by_name.get(name, []), lo, hi)
        return self._n(self.ts, lo, hi)

    def series(self, lo, hi, w, name=None):
        first = a.floor(lo, w)
        out = []
        b = first
        while b < hi:
            out.append((b, self.count(max(b, lo), min(b + w, hi), name)))
            b += w
        return out

    def top(self, lo, hi, limit):
        items = [(n, self.count(lo, hi, n)) for n in self.by_name]
        items = [x for x in items if x[1] > 0]
        items.sort(key=lambda x: (-x[1], x[0].encode()))
        return items[:limit]

    def active(self, lo, hi):
        return sum(1 for u, lst in self.user_ts.items() if self._n(lst, lo, hi) > 0)

    def active_series(self, lo, hi, interval):
        """[(period start, distinct users in its part of [lo, hi))] for days, ISO weeks (from
        Monday) or calendar months, UTC."""
        def floor(us):
            day = a.floor(us, a.US_DAY)
            if interval == "day":
                return day
            d = a.us_to_dt(day)
            if interval == "week":
                return day - d.weekday() * a.US_DAY
            return a.parse_ts("%04d-%02d-01T00:00:00Z" % (d.year, d.month))

        def after(start):
            if interval == "day":
                return start + a.US_DAY
            if interval == "week":
                return start + 7 * a.US_DAY
            d = a.us_to_dt(start)
            y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
            return a.parse_ts("%04d-%02d-01T00:00:00Z" % (y, m))
        out, start = [], floor(lo)
        while start < hi:
            nxt = after(start)
            out.append((start, self.active(max(start, lo), min(nxt, hi))))
            start = nxt
            if len(out) > 10001:
                break
        return out

    def user_events(self, user):
        return [eid for ts, eid in sorted(self.by_user.get(user, []), reverse=True)]


def random_bound():
    k = rng.random()
    base = rng.randrange(WIN_LO - a.US_DAY, WIN_HI + a.US_DAY)
    if k < 0.3:
        return base
    if k < 0.6:
        return a.floor(base, rng.choice([a.US_MINUTE, a.US_HOUR, a.US_DAY]))
    if k < 0.75:
        return a.floor(base, rng.choice([a.US_MINUTE, a.US_HOUR, a.US_DAY])) + rng.choice([-1, 1])
    if k < 0.85:
        return DST + rng.randrange(-a.US_HOUR, a.US_HOUR)
    return a.floor(base, 1000000)


def random_range(truth):
    """from < to; some short (seconds to hours), some days long, some the whole window; and
    some that start or end exactly on an existing event's timestamp."""
    lo = random_bound()
    if rng.random() < 0.15:
        lo = truth.ts[rng.randrange(len(truth.ts))]
    span = rng.choice([rng.randrange(1, 120 * 1000000), rng.randrange(1, 3 * a.US_HOUR),
                       rng.randrange(1, 3 * a.US_DAY), rng.randrange(1, 12 * a.US_DAY)])
    hi = lo + span
    if rng.random() < 0.2:
        hi = a.floor(hi, rng.choice([a.US_MINUTE, a.US_HOUR, a.US_DAY]))
    if rng.random() < 0.1:
        hi = truth.ts[rng.randrange(len(truth.ts))]
    if hi <= lo:
        hi = lo + rng.randrange(1, a.US_HOUR)
    return lo, hi


def render_param(us):
    """A time parameter in one of the accepted spellings, with the same value."""
    k = rng.random()
    if k < 0.4:
        return a.rfc3339(us)
    if k < 0.7:
        return a.rfc3339(us, rng.choice(OTHER_TZ + [PARIS_WINTER, PARIS_SUMMER]))
    if us % 1000000 == 0 and rng.random() < 0.5:
        return str(us // 1000000)
    return "%d.%06d" % (us // 1000000, us % 1000000)


failures = []


def expect(cond, what):
    if not cond:
        what = what() if callable(what) else what
        failures.append(what)
        if len(failures) <= 20:
            print("MISMATCH:", what, file=sys.stderr)


def check_range(svc, truth, lo, hi, url=None):
    p = {"from_ts": render_param(lo), "to_ts": render_param(hi)}
    ctx = "[%s, %s) %r" % (a.rfc3339(lo), a.rfc3339(hi), p)
    name = rng.choice(NAMES + ["no_such_event"])
    user = rng.choice(USERS + ["no_such_user"])

    st, _, body = a.get(svc, "/analytics/events/count", p)
    expect(st == 200 and body["count"] == truth.count(lo, hi), "count %s: %s %r want %d" %
           (ctx, st, body, truth.count(lo, hi)))
    if st == 200:
        expect(a.parse_ts(body["from_ts"]) == lo and a.parse_ts(body["to_ts"]) == hi,
               "count echo %s: %r" % (ctx, body))
    st, _, body = a.get(svc, "/analytics/events/count", dict(p, event_name=name))
    expect(st == 200 and body["count"] == truth.count(lo, hi, name),
           "count name=%r %s: %r want %d" % (name, ctx, body, truth.count(lo, hi, name)))
    st, _, body = a.get(svc, "/analytics/events/count", dict(p, user_id=user))
    expect(st == 200 and body["count"] == truth.count(lo, hi, None, user),
           "count user=%r %s: %r" % (user, ctx, body))
    st, _, body = a.get(svc, "/analytics/events/count", dict(p, user_id=user, event_name=name))
    expect(st == 200 and body["count"] == truth.count(lo, hi, name, user),
           "count user+name %s: %r" % (ctx, body))

    for interval, w in a.WIDTHS.items():
        npoints = (a.floor(hi - 1, w) - a.floor(lo, w)) // w + 1
        q = dict(p, interval=interval)
        use_name = rng.random() < 0.4
        if use_name:
            q["event_name"] = name
        st, _, body = a.get(svc, "/analytics/events/timeseries", q)
        if npoints > 10000:
            expect(st == 400 and body["error"]["field"] == "interval",
                   "timeseries %s %s: %d points should be 400, got %s" % (interval, ctx, npoints, st))
            continue
        want = truth.series(lo, hi, w, name if use_name else None)
        got = [(a.parse_ts(x["ts"]), x["count"]) for x in body.get("points", [])] if st == 200 else None
        expect(got == want, lambda: "timeseries %s name=%s %s: %s" % (
            interval, use_name and name, ctx,
            "status %s %r" % (st, body) if st != 200 else
            "first diff %r" % (next(((g, w_) for g, w_ in zip(got, want) if g != w_), (len(got), len(want))),)))

    limit = rng.choice([1, 3, 10, 100])
    st, _, body = a.get(svc, "/analytics/events/top", dict(p, limit=limit))
    got = [(x["event_name"], x["count"]) for x in body["items"]] if st == 200 else body
    expect(got == truth.top(lo, hi, limit), "top %s limit %d: %r want %r" %
           (ctx, limit, got, truth.top(lo, hi, limit)))

    st, _, body = a.get(svc, "/analytics/users/active", p)
    expect(st == 200 and body["unique_users"] == truth.active(lo, hi),
           "active %s: %r want %d" % (ctx, body, truth.active(lo, hi)))
    # The DAU/WAU/MAU series: every point exact over its part of the range.
    interval = rng.choice(["day", "week", "month"])
    st, _, body = a.get(svc, "/analytics/users/active", dict(p, interval=interval))
    want = truth.active_series(lo, hi, interval)
    if len(want) > 10000:
        expect(st == 400 and body["error"]["field"] == "interval",
               "active %s %s: %d points should be 400" % (interval, ctx, len(want)))
    else:
        got = [(a.parse_ts(x["ts"]), x["unique_users"]) for x in body.get("points", [])] \
            if st == 200 else None
        expect(st == 200 and got == want and body["unique_users"] == truth.active(lo, hi),
               lambda: "active %s %s: %s %r want %r" % (interval, ctx, st,
                                                        got[:4] if got else body, want[:4]))

    if url is not None:
        # The checker against Postgres itself.
        lo_s, hi_s = a.rfc3339(lo), a.rfc3339(hi)
        (n,), = a.sql(url, 'SELECT count(*) FROM public.events WHERE "timestamp" >= %s AND '
                           '"timestamp" < %s', (lo_s, hi_s))
        expect(n == truth.count(lo, hi), "truth vs SQL count %s" % ctx)
        (n,), = a.sql(url, 'SELECT count(DISTINCT user_id) FROM public.events WHERE '
                           '"timestamp" >= %s AND "timestamp" < %s', (lo_s, hi_s))
        expect(n == truth.active(lo, hi), "truth vs SQL distinct users %s" % ctx)
        rows = a.sql(url, 'SELECT event_name, count(*) FROM public.events WHERE "timestamp" >= %s '
                          'AND "timestamp" < %s GROUP BY 1 ORDER BY 2 DESC, event_name COLLATE "C" LIMIT 100',
                     (lo_s, hi_s))
        expect([tuple(r) for r in rows] == truth.top(lo, hi, 100), "truth vs SQL top %s" % ctx)
        for interval, w in a.WIDTHS.items():
            if (hi - lo) // w > 3000:
                continue
            rows = a.sql(url, "SELECT (extract(epoch FROM date_trunc(%s, \"timestamp\")) * 1000000)::int8, "
                              "count(*) FROM public.events WHERE \"timestamp\" >= %s AND "
                              "\"timestamp\" < %s GROUP BY 1", (interval, lo_s, hi_s))
            got = dict(rows)
            want = truth.series(lo, hi, w)
            expect(all(got.get(b, 0) == c for b, c in want) and sum(got.values()) == sum(c for _, c in want),
                   "truth vs SQL series %s %s" % (interval, ctx))


def check_users(svc, truth, url):
    users = rng.sample(USERS, 25) + ["no_such_user"]
    for user in users:
        want = truth.user_events(user)
        got, cursor, pages = [], None, 0
        limit = rng.choice([1, 7, 50, 1000])
        while True:
            q = {"limit": limit}
            if cursor:
                q["before"] = cursor
            st, _, body = a.get(svc, "/analytics/users/%s/events" % a.urllib.parse.quote(user, safe=""), q)
            if st != 200:
                expect(False, "user events %r: %s %r" % (user, st, body))
                break
            got += [e["event_id"] for e in body["events"]]
            expect(all(e["user_id"] == user for e in body["events"]), "user events user_id %r" % user)
            cursor = body["next_cursor"]
            pages += 1
            if not cursor or pages > 2000:
                break
        expect(got == want, "user events %r limit %d: %d events, want %d" % (user, limit, len(got), len(want)))
        if want:
            # before = a timestamp: strictly earlier events only.
            ts_list = sorted(truth.by_user[user], reverse=True)
            pivot = ts_list[len(ts_list) // 2][0]
            st, _, body = a.get(svc, "/analytics/users/%s/events" % a.urllib.parse.quote(user, safe=""),
                                {"before": a.rfc3339(pivot), "limit": 1000})
            want2 = [eid for ts, eid in ts_list if ts < pivot][:1000]
            expect(st == 200 and [e["event_id"] for e in body["events"]] == want2,
                   "user events before=%s for %r" % (a.rfc3339(pivot), user))

    ids = [r[0] for r in a.sql(url, "SELECT event_id::text FROM public.events ORDER BY random() LIMIT 40")]
    for eid in ids:
        (user, name, meta, ts_us, pa_us), = a.sql(
            url, 'SELECT user_id, event_name, metadata::text, (extract(epoch FROM "timestamp")*1000000)::int8, '
                 "(extract(epoch FROM processed_at)*1000000)::int8 FROM public.events WHERE event_id = %s", (eid,))
        st, _, body = a.get(svc, "/analytics/events/" + eid.upper() if rng.random() < 0.2 else "/analytics/events/" + eid)
        expect(st == 200 and body["event_id"] == eid and body["user_id"] == user and
               body["event_name"] == name and a.dumps(body["metadata"]) == a.dumps(json.loads(meta)) and
               a.parse_ts(body["timestamp"]) == ts_us and a.parse_ts(body["processed_at"]) == pa_us,
               "event %s: %s %r" % (eid, st, body))
    for _ in range(5):
        st, _, body = a.get(svc, "/analytics/events/%s" % uuid.uuid4())
        expect(st == 404 and body["error"]["code"] == "not_found", "absent event: %s %r" % (st, body))


def main():
    env = t.load_env()
    url = a.setup_db(env, "an_prop")
    t0 = time.monotonic()
    a.copy_events(url, gen_rows(N_EVENTS))
    a.build_rollups(url)
    print("seed %d: loaded %d events and rollups in %.1fs" % (SEED, N_EVENTS, time.monotonic() - t0))
    rows = a.sql(url, 'SELECT event_id::text, user_id, event_name, '
                      '(extract(epoch FROM "timestamp") * 1000000)::int8 FROM public.events')
    truth = Truth([tuple(r) for r in rows])
    # The DST instants really are on both sides of the change, and boundaries are present.
    t.check(truth.count(DST - 1000000, DST) > 0 and truth.count(DST, DST + 1000000) >= 0,
            "DST neighbourhood is populated")
    svc = a.start_service(env, url, log_name="analytics-property")
    try:
        t1 = time.monotonic()
        for i in range(N_RANGES):
            lo, hi = random_range(truth)
            check_range(svc, truth, lo, hi, url if i < N_SQL_CHECKED else None)
        # Fixed cases: the whole window, exactly one day/hour/minute, 1 microsecond, DST hour.
        for lo, hi in [(WIN_LO, WIN_HI), (DST, DST + a.US_DAY), (DST - a.US_HOUR, DST + a.US_HOUR),
                       (DST, DST + 1), (DST - 1, DST), (WIN_LO + a.US_MINUTE, WIN_LO + 2 * a.US_MINUTE),
                       (a.parse_ts("2026-03-29T01:59:59+01:00"), a.parse_ts("2026-03-29T03:00:00+02:00") + 1)]:
            check_range(svc, truth, lo, hi, url)
        check_users(svc, truth, url)
        print("checked %d ranges in %.1fs" % (N_RANGES + 7, time.monotonic() - t1))
        t.check(svc.alive(), "service still running")
    finally:
        svc.stop()
    if failures:
        print("%d mismatches (seed %d)" % (len(failures), SEED))
        sys.exit(1)
    t.drop_database(env, url)
    print("ok: every answer equals SQL over public.events")


if __name__ == "__main__":
    main()
