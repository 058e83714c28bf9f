"""The conversion of an existing, unpartitioned public.events (sql/041) with the services
running (issue 18's acceptance).

A database at the schema before the partitioning (migrations up to 040, which adds only
functions and a view) holds N events over the last 30 days (EPP_SCALE_MIGRATE_ROWS, default
100,000; 1,000,000 with EPP_TEST_FULL=1) and their rollups. epp-ingest takes ~1,000 events/s,
consumer A (built with the old schema's migrations, EPP_SQL_DIR) stores them and epp-analytics
answers. Then consumer B starts with every migration and converts the table while all of that
goes on. Checked:
- every analytics answer over the history is the same before and after, and analytics answered
  every request during the conversion (the longest wait is printed: the read downtime);
- every event accepted during the conversion is stored exactly once, the rollups are exact;
- the longest pause of the writers (the gap in processed_at) and the conversion time are
  printed: docs/scaling.md records them for 1M rows.
"""
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))
import epp_rollups  # noqa: E402
import epp_stack  # noqa: E402
import epp_testlib as t  # noqa: E402

UTC = datetime.timezone.utc
FULL = os.environ.get("EPP_TEST_FULL") == "1"
N = int(os.environ.get("EPP_SCALE_MIGRATE_ROWS", "1000000" if FULL else "100000"))

LOAD_SQL = """
SET maintenance_work_mem = '256MB';
ALTER TABLE public.events DROP CONSTRAINT events_pkey;
DROP INDEX public.events_timestamp_idx, public.events_user_timestamp_idx;
INSERT INTO public.events (event_id, user_id, event_name, metadata, "timestamp")
SELECT gen_random_uuid(), 'user-' || (i %% 5000),
       (ARRAY['view', 'click', 'buy', 'search'])[1 + i %% 4], '{"k": 1}',
       %(start)s::timestamptz + (i - 1 + random()) * (interval '29 days' / %(n)s)
FROM generate_series(1, %(n)s) AS i;
ALTER TABLE public.events ADD PRIMARY KEY (event_id);
CREATE INDEX events_timestamp_idx ON public.events ("timestamp");
CREATE INDEX events_user_timestamp_idx ON public.events (user_id, "timestamp" DESC, event_id DESC);
SET TIME ZONE 'UTC';
INSERT INTO public.epp_rollup_minute SELECT date_trunc('minute', "timestamp"), event_name, count(*)
    FROM public.events GROUP BY 1, 2 ORDER BY 1, 2;
INSERT INTO public.epp_rollup_hour SELECT date_trunc('hour', "timestamp"), event_name, count(*)
    FROM public.events GROUP BY 1, 2 ORDER BY 1, 2;
INSERT INTO public.epp_rollup_day SELECT date_trunc('day', "timestamp"), event_name, count(*)
    FROM public.events GROUP BY 1, 2 ORDER BY 1, 2;
"""


def iso(dt):
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def log_ts(line):
    m = re.search(r'"ts":"([^"]+)"', line)
    return datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()


class Sender(threading.Thread):
    """~1,000 events/s through POST /events/batch (20 per request); keeps the accepted ids."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.accepted = set()
        self.errors = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            batch = [{"event_id": str(uuid.uuid4()), "user_id": "live-%d" % (i % 50),
                      "event_name": "live"} for i in range(20)]
            try:
                st, _, body = t.http_json("POST", self.url + "/events/batch",
                                          {"events": batch}, timeout=30)
                if st in (200, 202):
                    self.accepted.update(r["event_id"] for r in body["results"]
                                         if "event_id" in r)
                else:
                    self.errors.append(st)
            except OSError as e:
                self.errors.append(repr(e))
            time.sleep(0.02)


class Poller(threading.Thread):
    """Asks analytics for the last hour's count over and over; keeps every latency and status."""

    def __init__(self, url, now):
        super().__init__(daemon=True)
        self.path = url + "/analytics/events/count?" + urllib.parse.urlencode(
            {"from_ts": iso(now - datetime.timedelta(hours=1)),
             "to_ts": iso(now + datetime.timedelta(hours=1))})
        self.samples = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            t0 = time.monotonic()
            try:
                st, _, _ = t.http_request("GET", self.path, timeout=60)
            except OSError as e:
                st = repr(e)
            self.samples.append((t0, time.monotonic() - t0, st))
            time.sleep(0.01)


def answers(s, now):
    """The analytics answers over the loaded history (the live events are newer)."""
    lo, hi = iso(now - datetime.timedelta(days=25, seconds=-17.3)), iso(now - datetime.timedelta(
        days=2, seconds=5.1))
    qs = [("/analytics/events/count", {}), ("/analytics/events/count", {"event_name": "click"}),
          ("/analytics/events/count", {"user_id": "user-7"}),
          ("/analytics/events/timeseries", {"interval": "day"}),
          ("/analytics/events/top", {"limit": 3}), ("/analytics/users/active", {})]
    out = {}
    for path, extra in qs:
        params = dict(extra, from_ts=lo, to_ts=hi)
        st, _, body = t.http_json("GET", s.analytics_url + path + "?" +
                                  urllib.parse.urlencode(params), timeout=60)
        t.check(st == 200, "GET %s %r -> %s %r" % (path, params, st, body))
        out[path + repr(sorted(extra.items()))] = body
    hour = {"from_ts": iso(now - datetime.timedelta(days=10, seconds=30)),
            "to_ts": iso(now - datetime.timedelta(days=8)), "interval": "hour"}
    st, _, body = t.http_json("GET", s.analytics_url + "/analytics/events/timeseries?" +
                              urllib.parse.urlencode(hour), timeout=60)
    t.check(st == 200, "hourly series -> %s" % st)
    out["hourly"] = body
    return out


def main():
    t0 = time.monotonic()
    env = t.load_env()
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    old_sql = tempfile.mkdtemp(prefix="epp-sql-old-")
    for f in os.listdir(os.path.join(t.REPO, "sql")):
        if f.endswith(".sql") and int(f.split("_")[0]) <= 40:
            shutil.copy(os.path.join(t.REPO, "sql", f), old_sql)
    s = epp_stack.Stack(env, "scale_mig", services=(), partitions=4)
    b = None
    try:
        s.start()
        p = subprocess.run([t.bin_path(env, "epp-admin"), "migrate", "--sql-dir", old_sql],
                           capture_output=True, text=True, env=dict(os.environ,
                                                                    DATABASE_URL=s.db_url))
        t.check(p.returncode == 0, "migrate to 040: %s%s" % (p.stdout, p.stderr))
        tl = time.monotonic()
        conn = s.db()
        with conn.cursor() as cur:
            cur.execute(LOAD_SQL, {"n": N, "start": now - datetime.timedelta(days=30)})
            # The user dictionary and bitmaps of the loaded events: the backfills of sql/030 and
            # sql/031, which fill their tables when they are empty, then sql/032's conversion of
            # the minute level to a row per hour -- the order of a migration of a database with
            # data. (032, applied by the migrate above to the empty table, left its constraints,
            # which 031's rows of single minutes would break and which make 032 do nothing: they
            # are dropped first, and 032 adds them again.)
            cur.execute("ALTER TABLE public.epp_user_bitmap_minute "
                        "DROP CONSTRAINT epp_user_bitmap_minute_whole_hours, "
                        "DROP CONSTRAINT epp_user_bitmap_minute_packed")
            for f in ("030_user_ids.sql", "031_user_bitmaps.sql", "032_user_minutes_by_hour.sql"):
                cur.execute(open(os.path.join(t.REPO, "sql", f)).read())
            cur.execute("VACUUM ANALYZE")
            cur.execute("SELECT relkind FROM pg_class WHERE oid = 'public.events'::regclass")
            t.check(cur.fetchone()[0] == "r", "public.events should start unpartitioned")
        print("  loaded %d events over 30 days in %.1fs" % (N, time.monotonic() - tl))

        # The running platform at the old schema: consumer A, ingest, analytics.
        s.service_env["consumer"] = {"EPP_SQL_DIR": old_sql}
        s.start_service("consumer")
        s.start_service("ingest")
        s.start_service("analytics")
        before = answers(s, now)
        sender, poller = Sender(s.ingest_url), Poller(s.analytics_url, now)
        sender.start()
        poller.start()
        time.sleep(3)

        # Consumer B, with every migration: it converts the table while A writes.
        env_b = s.service_environ("consumer")
        env_b.pop("EPP_SQL_DIR")
        b = t.ServiceProcess(env, "epp-consumer", port=t.free_port(), extra_env=env_b,
                             log_name=s.name + "-consumer-b")
        tb = time.time()
        b.start()
        t.wait_schema(s.db_url, timeout=600 if FULL else 180)
        applied = t.wait_for(lambda: [ln for ln in b.log_text().splitlines()
                                      if "migration applied" in ln and "041_" in ln],
                             timeout=10, msg="consumer B's log of 041")
        migrate_s = log_ts(applied[0]) - tb
        time.sleep(3)
        sender.done.set()
        sender.join()
        poller.done.set()
        poller.join()
        t.check(not sender.errors, "ingest errors during the conversion: %r" % sender.errors[:5])

        def stored():
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM public.events WHERE event_name = 'live'")
                return cur.fetchone()[0] >= len(sender.accepted)
        t.wait_for(stored, timeout=120, msg="%d live events stored" % len(sender.accepted))
        with conn.cursor() as cur:
            cur.execute("SELECT relkind FROM pg_class WHERE oid = 'public.events'::regclass")
            t.check(cur.fetchone()[0] == "p", "public.events is not partitioned")
            cur.execute("SELECT event_id::text FROM public.events WHERE event_name = 'live'")
            live = [r[0] for r in cur.fetchall()]
            t.check(len(live) == len(set(live)) and set(live) == sender.accepted,
                    "live events: %d rows, %d distinct, %d accepted" %
                    (len(live), len(set(live)), len(sender.accepted)))
            cur.execute("SELECT count(*), (SELECT count(*) FROM public.epp_event_ids)"
                        " FROM public.events")
            rows, ids = cur.fetchone()
            t.check(rows == N + len(live) == ids, "%d rows, %d ids, expected %d" %
                    (rows, ids, N + len(live)))
            # The writers' pause: the longest gap between the transactions that wrote the live
            # events (processed_at is each transaction's start).
            cur.execute("SELECT coalesce(extract(epoch FROM max(g)), 0) FROM ("
                        " SELECT processed_at - lag(processed_at) OVER (ORDER BY processed_at) g"
                        " FROM (SELECT DISTINCT processed_at FROM public.events"
                        "       WHERE event_name = 'live') d) x")
            write_pause = float(cur.fetchone()[0])
        epp_rollups.assert_exact(conn)
        conn.close()

        after = answers(s, now)
        for k in before:
            t.check(before[k] == after[k], "%s changed:\nbefore %r\nafter  %r" %
                    (k, before[k], after[k]))
        bad = [x for x in poller.samples if x[2] != 200]
        t.check(not bad, "analytics failed during the conversion: %r" % bad[:5])
        longest = max(x[1] for x in poller.samples)
        print("ok: %d rows converted in %.1fs with the services running; writers paused %.1fs, "
              "ingest accepted %d events meanwhile (all stored once); analytics answered %d of "
              "%d requests, the slowest in %.0f ms (%.1fs in all)" %
              (N, migrate_s, write_pause, len(sender.accepted), len(poller.samples) - len(bad),
               len(poller.samples), longest * 1000, time.monotonic() - t0))
    finally:
        if b is not None:
            b.stop()
        s.stop()
        shutil.rmtree(old_sql, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
