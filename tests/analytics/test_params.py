"""Parameter errors (table-driven: status, error code, field) and SQL-injection strings in every
parameter of every analytics route: each answer is a 400 naming the field or the correct (empty)
answer, never a 500, and the data is untouched afterwards."""

import sys
import urllib.parse
import uuid

import analytics_util as a
from analytics_util import t

F, T = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
R = {"from_ts": F, "to_ts": T}
INJ_NAME = "'; DROP TABLE events; --"

# (path, params, status, error code or None, field or None)
CASES = [
    ("/analytics/events/count", {}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/count", {"from_ts": F}, 400, "invalid_parameter", "to_ts"),
    ("/analytics/events/count", {"to_ts": T}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/count", {"from_ts": "", "to_ts": T}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/count", {"from_ts": "yesterday", "to_ts": T}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/count", {"from_ts": F, "to_ts": "2026-13-01T00:00:00Z"}, 400, "invalid_parameter", "to_ts"),
    ("/analytics/events/count", {"from_ts": F, "to_ts": "2026-03-02T24:00:00Z"}, 400, "invalid_parameter", "to_ts"),
    ("/analytics/events/count", {"from_ts": F, "to_ts": "2026-03-02"}, 400, "invalid_parameter", "to_ts"),
    ("/analytics/events/count", {"from_ts": "-5", "to_ts": T}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/count", {"from_ts": "1e9", "to_ts": T}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/count", {"from_ts": "99999999999999999", "to_ts": T}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/count", {"from_ts": "0000-01-01T00:00:00Z", "to_ts": T}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/count", {"from_ts": F, "to_ts": F}, 400, "invalid_parameter", "to_ts"),
    ("/analytics/events/count", {"from_ts": T, "to_ts": F}, 400, "invalid_parameter", "to_ts"),
    ("/analytics/events/count", dict(R, event_name=""), 400, "invalid_parameter", "event_name"),
    ("/analytics/events/count", dict(R, event_name="x" * 257), 400, "invalid_parameter", "event_name"),
    ("/analytics/events/count", dict(R, event_name="a\x01b"), 400, "invalid_parameter", "event_name"),
    ("/analytics/events/count", dict(R, user_id=""), 400, "invalid_parameter", "user_id"),
    ("/analytics/events/count", dict(R, user_id=b"\xff\xfe"), 400, "invalid_parameter", "user_id"),
    ("/analytics/events/count", dict(R, event_name="x" * 256), 200, None, None),
    ("/analytics/events/count", dict(R, unknown_param="1"), 200, None, None),  # lenient
    ("/analytics/events/count", {"from_ts": "1772323200", "to_ts": "1772409600.5"}, 200, None, None),
    ("/analytics/events/timeseries", R, 400, "invalid_parameter", "interval"),
    ("/analytics/events/timeseries", dict(R, interval="week"), 400, "invalid_parameter", "interval"),
    ("/analytics/events/timeseries", dict(R, interval="HOUR"), 400, "invalid_parameter", "interval"),
    ("/analytics/events/timeseries", dict(R, interval=""), 400, "invalid_parameter", "interval"),
    ("/analytics/events/timeseries", {"from_ts": F, "to_ts": "2026-03-07T22:40:00Z", "interval": "minute"},
     200, None, None),  # exactly 10,000 points
    ("/analytics/events/timeseries", {"from_ts": F, "to_ts": "2026-03-07T22:40:00.000001Z", "interval": "minute"},
     400, "invalid_parameter", "interval"),  # 10,001
    ("/analytics/events/timeseries", {"from_ts": "1970-01-01T00:00:00Z", "to_ts": T, "interval": "hour"},
     400, "invalid_parameter", "interval"),
    ("/analytics/events/timeseries", {"from_ts": "x", "to_ts": T, "interval": "hour"}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/events/timeseries", dict(R, interval="day", event_name=""), 400, "invalid_parameter", "event_name"),
    ("/analytics/events/top", dict(R, limit="0"), 400, "invalid_parameter", "limit"),
    ("/analytics/events/top", dict(R, limit="101"), 400, "invalid_parameter", "limit"),
    ("/analytics/events/top", dict(R, limit="-1"), 400, "invalid_parameter", "limit"),
    ("/analytics/events/top", dict(R, limit="1.5"), 400, "invalid_parameter", "limit"),
    ("/analytics/events/top", dict(R, limit=""), 400, "invalid_parameter", "limit"),
    ("/analytics/events/top", dict(R, limit="ten"), 400, "invalid_parameter", "limit"),
    ("/analytics/events/top", dict(R, limit="99999999999999999999"), 400, "invalid_parameter", "limit"),
    ("/analytics/events/top", dict(R, limit="1"), 200, None, None),
    ("/analytics/events/top", dict(R, limit="100"), 200, None, None),
    ("/analytics/events/top", {"to_ts": T}, 400, "invalid_parameter", "from_ts"),
    ("/analytics/users/active", {"from_ts": F}, 400, "invalid_parameter", "to_ts"),
    ("/analytics/users/active", {"from_ts": T, "to_ts": F}, 400, "invalid_parameter", "to_ts"),
    ("/analytics/users/active", {"from_ts": F, "to_ts": T, "interval": "hour"}, 400,
     "invalid_parameter", "interval"),
    ("/analytics/users/active", {"from_ts": F, "to_ts": T, "interval": "Day"}, 400,
     "invalid_parameter", "interval"),
    ("/analytics/users/active", {"from_ts": F, "to_ts": T, "interval": ""}, 400,
     "invalid_parameter", "interval"),
    ("/analytics/users/active", {"from_ts": "0001-01-01T00:00:00Z", "to_ts": T, "interval": "day"},
     400, "invalid_parameter", "interval"),
    ("/analytics/users/u1/events", {"limit": "0"}, 400, "invalid_parameter", "limit"),
    ("/analytics/users/u1/events", {"limit": "1001"}, 400, "invalid_parameter", "limit"),
    ("/analytics/users/u1/events", {"limit": "1000"}, 200, None, None),
    ("/analytics/users/u1/events", {"before": "garbage"}, 400, "invalid_parameter", "before"),
    ("/analytics/users/u1/events", {"before": "123_notauuid"}, 400, "invalid_parameter", "before"),
    ("/analytics/users/u1/events", {"before": "1772323200"}, 200, None, None),
    ("/analytics/users/u1/events", {"before": "1772323200000000_" + str(uuid.uuid4())}, 200, None, None),
    ("/analytics/events/not-a-uuid", {}, 400, "invalid_parameter", "event_id"),
    ("/analytics/events/123", {}, 400, "invalid_parameter", "event_id"),
    ("/analytics/events/" + str(uuid.uuid4()), {}, 404, "not_found", None),
    ("/analytics/nothing", {}, 404, None, None),
]

INJECTIONS = ["' OR '1'='1", INJ_NAME, "1; SELECT pg_sleep(10)", "\" OR \"\"=\"", "$1", "%27--",
              "\\x27", "' UNION SELECT event_id::text FROM events --", "NULL", "*", "%", "_",
              "1) OR (1=1", "2026-03-01T00:00:00Z'; DELETE FROM events; --"]

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def quote_path(s):
    return urllib.parse.quote(s, safe="")


def main():
    env = t.load_env()
    url = a.setup_db(env, "an_params")
    rows = []
    for i in range(1000):
        rows.append((str(uuid.uuid4()), "u%d" % (i % 10), INJ_NAME if i == 0 else "view",
                     "{}", a.rfc3339(a.parse_ts(F) + i * 60 * 1000000)))
    a.copy_events(url, rows)
    a.build_rollups(url)
    svc = a.start_service(env, url, log_name="analytics-params")
    try:
        for path, params, status, code, field in CASES:
            st, hdrs, body = a.get(svc, path, params)
            ok = st == status
            if code is not None:
                ok = ok and isinstance(body, dict) and body.get("error", {}).get("code") == code
                ok = ok and hdrs.get("content-type", "").startswith("application/json")
            if field is not None:
                ok = ok and body["error"].get("field") == field and body["error"].get("message")
            expect(ok, "%s %r: want %s %s %s, got %s %r" % (path, params, status, code, field, st, body))

        # The event named like an injection is counted exactly (1), not executed.
        st, _, body = a.get(svc, "/analytics/events/count", dict(R, event_name=INJ_NAME))
        expect(st == 200 and body["count"] == 1, "count of the injection-named event: %s %r" % (st, body))

        routes = [("/analytics/events/count", ["from_ts", "to_ts", "event_name", "user_id"]),
                  ("/analytics/events/timeseries", ["from_ts", "to_ts", "interval", "event_name"]),
                  ("/analytics/events/top", ["from_ts", "to_ts", "limit"]),
                  ("/analytics/users/active", ["from_ts", "to_ts"]),
                  ("/analytics/users/u1/events", ["limit", "before"])]
        base = {"from_ts": F, "to_ts": T, "interval": "hour", "limit": "5"}
        for path, names in routes:
            for name in names:
                for inj in INJECTIONS:
                    q = {k: v for k, v in base.items() if k in names}
                    q[name] = inj
                    st, _, body = a.get(svc, path, q)
                    if st == 200:
                        # Only text filters can take arbitrary strings: they then match nothing
                        # (except the one event really named so).
                        expect(name in ("event_name", "user_id"), "%s %s=%r: 200 %r" % (path, name, inj, body))
                        if path.endswith("/count"):
                            want = 1 if (name == "event_name" and inj == INJ_NAME) else 0
                            expect(body["count"] == want, "%s %s=%r: %r" % (path, name, inj, body))
                        else:
                            expect(all(p["count"] == 0 for p in body["points"]) or inj == INJ_NAME,
                                   "%s %s=%r: %r" % (path, name, inj, body))
                    else:
                        expect(st == 400 and body["error"]["field"] == name,
                               "%s %s=%r: %s %r" % (path, name, inj, st, body))
        for inj in INJECTIONS:
            st, _, body = a.get(svc, "/analytics/users/%s/events" % quote_path(inj), {})
            expect(st == 200 and body["events"] == [] and body["user_id"] == inj,
                   "user path %r: %s %r" % (inj, st, body))
            st, _, body = a.get(svc, "/analytics/events/%s" % quote_path(inj), {})
            expect(st == 400 and body["error"]["field"] == "event_id", "event path %r: %s" % (inj, st))

        (n,), = a.sql(url, "SELECT count(*) FROM public.events")
        expect(n == 1000, "events intact: %d" % n)
        t.check(svc.alive(), "service alive")
    finally:
        svc.stop()
    t.drop_database(env, url)
    if failures:
        print("%d failures" % len(failures))
        sys.exit(1)
    print("ok: %d parameter cases, %d injection strings" % (len(CASES), len(INJECTIONS)))


if __name__ == "__main__":
    main()
