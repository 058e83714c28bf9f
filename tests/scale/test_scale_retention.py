"""Retention (issue 18's acceptance): 30 days of events sent through epp-ingest and stored by
epp-consumer (the past days land in events_default, and a maintenance run gives each its day
partition); then the consumer restarted with EVENTS_RETENTION=7d.

- `epp-admin retention --dry-run` lists the day partitions that would go and changes nothing;
- the consumer's maintenance drops every raw partition older than 7 days (with their event ids);
- the daily counts of the whole 30 days, and counts over whole-minute ranges in the dropped
  days, are what they were before (rollups);
- a question that needs dropped raw rows (a sub-minute edge, a count by user_id, distinct users
  over a sub-minute edge) gets 409 retention_expired instead of a smaller number;
- ROLLUP_RETENTION (epp-admin retention, not dry) drops old rollups the same way: a daily series
  reaching into them is refused, one after them answers as before.
"""
import datetime
import os
import random
import re
import subprocess
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))
import epp_stack  # noqa: E402
import epp_testlib as t  # noqa: E402

UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)


def iso(dt):
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def floor_day(dt):
    return dt.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def get(s, path, **params):
    return t.http_json("GET", s.analytics_url + path + "?" + urllib.parse.urlencode(params),
                       timeout=30)


def ok(s, path, **params):
    st, _, body = get(s, path, **params)
    t.check(st == 200, "GET %s %r -> %s %r" % (path, params, st, body))
    return body


def refused(s, path, **params):
    st, _, body = get(s, path, **params)
    t.check(st == 409 and isinstance(body, dict) and body["error"]["code"] == "retention_expired",
            "GET %s %r -> %s %r, expected 409 retention_expired" % (path, params, st, body))
    return body["error"]["message"]


def admin(env, s, *args):
    p = subprocess.run([t.bin_path(env, "epp-admin")] + list(args), capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, DATABASE_URL=s.db_url))
    t.check(p.returncode == 0, "epp-admin %s -> %d\n%s%s" % (" ".join(args), p.returncode,
                                                             p.stdout, p.stderr))
    return p.stdout


def sql(s, query, args=()):
    conn = s.db()
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def send_history(s, now, rnd):
    """Events every ~20 minutes over the 30 days before now (3 users of 40 per slot), through
    POST /events/batch; returns how many were accepted."""
    start = now - 30 * DAY
    events = []
    ts = start
    while ts < now:
        for _ in range(3):
            events.append({"event_id": str(uuid.uuid4()), "user_id": "u%d" % rnd.randrange(40),
                           "event_name": rnd.choice(["view", "click", "buy"]),
                           "timestamp": iso(ts + datetime.timedelta(
                               milliseconds=rnd.randrange(20 * 60 * 1000)))})
        ts += datetime.timedelta(minutes=20)
    for i in range(0, len(events), 500):
        st, _, body = t.http_json("POST", s.ingest_url + "/events/batch",
                                  {"events": events[i:i + 500]}, timeout=30)
        t.check(st in (200, 202) and body["rejected"] == 0, "batch -> %s %r" % (st, body))
    return len(events)


def main():
    t0 = time.monotonic()
    env = t.load_env()
    rnd = random.Random(18)
    now = datetime.datetime.now(UTC)
    first_day = floor_day(now - 30 * DAY)
    end_day = floor_day(now) + DAY
    horizon = floor_day(now - 7 * DAY)
    with epp_stack.Stack(env, "scale_ret") as s:
        n = send_history(s, now, rnd)
        s.wait_rows(n, timeout=60)
        # The past days had no partition yet: their rows wait in events_default until a
        # maintenance run gives each day its partition (the consumer's next run; here at once).
        out = admin(env, s, "retention")
        t.check(len(re.findall(r"done create", out)) >= 22, out)
        t.check(sql(s, "SELECT count(*) FROM public.events_default")[0][0] == 0,
                "rows left in events_default:\n" + out)

        # Before retention: the answers to compare with afterwards.
        daily = ok(s, "/analytics/events/timeseries", from_ts=iso(first_day), to_ts=iso(end_day),
                   interval="day")["points"]
        t.check(sum(p["count"] for p in daily) == n, "daily points sum to %d of %d" % (
            sum(p["count"] for p in daily), n))
        old = now - 20 * DAY
        aligned = (iso(old.replace(second=0, microsecond=0)), iso(now))
        edge = (iso(old.replace(second=17, microsecond=500000)), iso(now))
        whole_days = (iso(floor_day(now - 20 * DAY)), iso(floor_day(now - 10 * DAY)))
        count_aligned = ok(s, "/analytics/events/count", from_ts=aligned[0],
                           to_ts=aligned[1])["count"]
        top_aligned = ok(s, "/analytics/events/top", from_ts=aligned[0], to_ts=aligned[1])
        users_aligned = ok(s, "/analytics/users/active", from_ts=aligned[0],
                           to_ts=aligned[1])["unique_users"]
        users_days = ok(s, "/analytics/users/active", from_ts=whole_days[0],
                        to_ts=whole_days[1])["unique_users"]
        parts_before = sql(s, "SELECT count(*) FROM public.epp_events_partitions()"
                              " WHERE hi <= %s", (horizon,))[0][0]
        t.check(parts_before >= 22, "only %d day partitions before the horizon" % parts_before)

        # The dry run lists exactly those partitions and changes nothing.
        out = admin(env, s, "retention", "--dry-run", "--events-retention", "7d")
        drops = re.findall(r"would drop\s+(events_p\d{8})", out)
        t.check(len(drops) == parts_before, "dry run lists %d drops, expected %d:\n%s" %
                (len(drops), parts_before, out))
        t.check("nothing changed" in out, out)
        t.check(s.count_rows() == n, "the dry run changed public.events")

        # The consumer owns retention: restarted with EVENTS_RETENTION=7d, its maintenance run at
        # start-up drops the old partitions.
        s.procs.pop("consumer").stop()
        s.service_env["consumer"] = {"EVENTS_RETENTION": "7d"}
        consumer = s.start_service("consumer")
        t.wait_for(lambda: sql(s, "SELECT count(*) FROM public.epp_events_partitions()"
                                  " WHERE hi <= %s", (horizon,))[0][0] == 0,
                   timeout=60, msg="the old partitions dropped")
        t.wait_for(lambda: "maintenance step done" in consumer.log_text(), timeout=10,
                   msg="the maintenance log")
        kept = sql(s, 'SELECT count(*) FROM public.events WHERE "timestamp" < %s', (horizon,))
        t.check(kept[0][0] == 0, "%d raw rows older than the horizon remain" % kept[0][0])
        ids, rows = sql(s, "SELECT (SELECT count(*) FROM public.epp_event_ids),"
                           " (SELECT count(*) FROM public.events)")[0]
        t.check(ids == rows, "epp_event_ids holds %d ids for %d rows" % (ids, rows))
        raw_from = sql(s, "SELECT raw_from FROM public.epp_retention")[0][0]
        t.check(raw_from == horizon, "raw_from %s, expected %s" % (raw_from, horizon))

        # Rollups answer whatever covers whole buckets, exactly as before.
        after = ok(s, "/analytics/events/timeseries", from_ts=iso(first_day), to_ts=iso(end_day),
                   interval="day")["points"]
        t.check(after == daily, "daily counts changed:\nbefore %r\nafter  %r" % (daily, after))
        t.check(ok(s, "/analytics/events/count", from_ts=aligned[0],
                   to_ts=aligned[1])["count"] == count_aligned, "whole-minute count changed")
        t.check(ok(s, "/analytics/events/top", from_ts=aligned[0], to_ts=aligned[1]) ==
                top_aligned, "top changed")
        t.check(ok(s, "/analytics/users/active", from_ts=whole_days[0],
                   to_ts=whole_days[1])["unique_users"] == users_days, "distinct users changed")
        # Distinct users of whole minutes come from the minute, hour and day user bitmaps.
        t.check(ok(s, "/analytics/users/active", from_ts=aligned[0],
                   to_ts=aligned[1])["unique_users"] == users_aligned,
                "whole-minute distinct users changed")

        # Questions that need dropped raw rows are refused, with the horizon named.
        msg = refused(s, "/analytics/events/count", from_ts=edge[0], to_ts=edge[1])
        t.check(iso(horizon)[:19] in msg, "the refusal does not name the horizon: %r" % msg)
        refused(s, "/analytics/events/count", from_ts=aligned[0], to_ts=aligned[1], user_id="u1")
        refused(s, "/analytics/events/top", from_ts=edge[0], to_ts=edge[1])
        refused(s, "/analytics/events/timeseries", from_ts=edge[0], to_ts=edge[1],
                interval="day")
        refused(s, "/analytics/users/active", from_ts=edge[0], to_ts=edge[1])
        # After the horizon, raw rows answer as always.
        ok(s, "/analytics/events/count", from_ts=iso(horizon + datetime.timedelta(seconds=5)),
           to_ts=iso(now), user_id="u1")

        # ROLLUP_RETENTION: rollups older than 20 days go; a daily series into them is refused,
        # one after them is unchanged.
        out = admin(env, s, "retention", "--events-retention", "7d", "--rollup-retention", "20d")
        t.check("done purge-rollups" in out, out)
        roll_h = floor_day(now - 20 * DAY)
        refused(s, "/analytics/events/timeseries", from_ts=iso(first_day), to_ts=iso(end_day),
                interval="day")
        tail = ok(s, "/analytics/events/timeseries", from_ts=iso(roll_h), to_ts=iso(end_day),
                  interval="day")["points"]
        t.check(tail == [p for p in daily if p["ts"] >= iso(roll_h)],
                "daily counts after the rollup horizon changed")
        t.check(consumer.alive(), "the consumer died")
    print("ok: %d events over 30 days, %d partitions dropped (%.1fs)" %
          (n, parts_before, time.monotonic() - t0))


if __name__ == "__main__":
    sys.exit(main())
