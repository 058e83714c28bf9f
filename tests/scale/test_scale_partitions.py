"""Day partitions of public.events (sql/041) and event_id unique across them.

- a fresh database gets the partitioned layout: day partitions from yesterday to a week ahead,
  events_default, the epp_event_ids triggers;
- an event resent with the same event_id and another timestamp (another day, so another
  partition) is stored once -- sent again later, and twice in one batch; the consumer counts it
  as a duplicate and the rollups count it once;
- any SQL writer gets unique_violation for such a resend;
- an event of a day without a partition waits in events_default; a maintenance run gives that
  day its partition, moves the row in, and the id still guards it;
- a deleted event's id is freed (a resend is stored again);
- a user's listing (GET /analytics/users/{id}/events), which looks back in widening windows so
  that an active user's page reads only the newest day partitions, pages through events an hour,
  days, weeks and months old exactly as SQL orders them.
"""
import datetime
import os
import re
import subprocess
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))
import epp_rollups  # noqa: E402
import epp_stack  # noqa: E402
import epp_testlib as t  # noqa: E402

UTC = datetime.timezone.utc


def iso(dt):
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def post(s, eid, ts, user="u1", name="click"):
    st, _, body = t.http_json("POST", s.ingest_url + "/events",
                              {"event_id": eid, "user_id": user, "event_name": name,
                               "timestamp": iso(ts)})
    t.check(st == 202, "POST /events -> %s %r" % (st, body))


def rows_of(s, eid):
    conn = s.db()
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT tableoid::regclass::text, "timestamp" FROM public.events'
                        " WHERE event_id = %s ORDER BY 2", (eid,))
            return cur.fetchall()
    finally:
        conn.close()


def sync(s):
    """Sends a fresh event and waits for it: everything sent before is written by then (one
    Kafka partition per user, and every marker uses user u1 like the events under test)."""
    marker = str(uuid.uuid4())
    post(s, marker, datetime.datetime.now(UTC))
    t.wait_for(lambda: rows_of(s, marker), timeout=30, msg="the marker event")


def main():
    t0 = time.monotonic()
    env = t.load_env()
    now = datetime.datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what iso() sends
    with epp_stack.Stack(env, "scale_parts") as s:
        conn = s.db()
        cur = conn.cursor()
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'public.events'::regclass")
        t.check(cur.fetchone()[0] == "p", "public.events is not partitioned")
        cur.execute("SELECT name FROM public.epp_events_partitions()")
        names = {r[0] for r in cur.fetchall()}
        for d in range(-1, 8):
            want = "events_p" + (now + datetime.timedelta(days=d)).strftime("%Y%m%d")
            t.check(want in names, "no partition %s (have %s)" % (want, sorted(names)))
        cur.execute("SELECT to_regclass('public.events_default') IS NOT NULL")
        t.check(cur.fetchone()[0], "no events_default")

        # A resend with another timestamp, later: stored once, with its first timestamp.
        x = str(uuid.uuid4())
        t1 = now - datetime.timedelta(hours=1)
        post(s, x, t1)
        t.wait_for(lambda: rows_of(s, x), timeout=30, msg="the first copy")
        post(s, x, now - datetime.timedelta(days=3))
        sync(s)
        got = rows_of(s, x)
        t.check(len(got) == 1 and got[0][1] == t1, "resend stored again: %r" % got)

        # Twice in one batch, two days apart: stored once.
        z = str(uuid.uuid4())
        st, _, body = t.http_json("POST", s.ingest_url + "/events/batch", {"events": [
            {"event_id": z, "user_id": "u1", "event_name": "view", "timestamp": iso(t1)},
            {"event_id": z, "user_id": "u1", "event_name": "view",
             "timestamp": iso(now - datetime.timedelta(days=2))}]})
        t.check(st in (200, 202) and body["accepted"] == 2, "batch -> %s %r" % (st, body))
        sync(s)
        t.check(len(rows_of(s, z)) == 1, "one batch stored %r" % rows_of(s, z))

        # Any writer: the same id with another timestamp is a unique_violation.
        import psycopg2
        try:
            cur.execute("INSERT INTO public.events (event_id, user_id, event_name, \"timestamp\")"
                        " VALUES (%s, 'sql', 'x', now() - interval '5 days')", (x,))
            t.check(False, "SQL insert of a stored event_id with another timestamp succeeded")
        except psycopg2.errors.UniqueViolation as e:
            print("  SQL resend refused: %s" % str(e).splitlines()[0])

        # A day without a partition: the row waits in events_default, a maintenance run moves it
        # into that day's new partition, and its id still guards it.
        w = str(uuid.uuid4())
        old = now - datetime.timedelta(days=400)
        post(s, w, old)
        t.wait_for(lambda: rows_of(s, w), timeout=30, msg="the late event")
        t.check(rows_of(s, w)[0][0] == "events_default", "late event in %r" % rows_of(s, w))
        p = subprocess.run([t.bin_path(env, "epp-admin"), "retention"], capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, DATABASE_URL=s.db_url))
        part = "events_p" + old.strftime("%Y%m%d")
        t.check(p.returncode == 0 and re.search(r"done create\s+%s .* rows=1" % part, p.stdout),
                "epp-admin retention -> %d\n%s%s" % (p.returncode, p.stdout, p.stderr))
        t.check(rows_of(s, w)[0][0] == part, "late event in %r" % rows_of(s, w))
        post(s, w, now)
        sync(s)
        t.check(len(rows_of(s, w)) == 1, "resend of the moved event stored: %r" % rows_of(s, w))

        # Every copy the consumer skipped was counted once in the rollups.
        epp_rollups.assert_exact(conn)

        # A deleted event's id is free again.
        cur.execute("DELETE FROM public.events WHERE event_id = %s", (x,))
        cur.execute("SELECT count(*) FROM public.epp_event_ids WHERE event_id = %s", (x,))
        t.check(cur.fetchone()[0] == 0, "the deleted event's id is still held")
        post(s, x, now)
        t.wait_for(lambda: rows_of(s, x), timeout=30, msg="x stored again after its delete")

        # A user's listing across the windows it looks back (1 day, 8, 32, all): ages from an
        # hour to 100 days, paged two at a time, equals SQL's order.
        lister = "lister-" + uuid.uuid4().hex[:6]
        for age_h in (1, 2, 30, 75, 24 * 5, 24 * 20, 24 * 40, 24 * 100, 24 * 100 + 1):
            post(s, str(uuid.uuid4()), now - datetime.timedelta(hours=age_h), user=lister)
        t.wait_for(lambda: s.count_rows("user_id = %s", (lister,)) == 9, timeout=30,
                   msg="the lister's events")
        cur.execute('SELECT event_id::text FROM public.events WHERE user_id = %s'
                    ' ORDER BY "timestamp" DESC, event_id DESC', (lister,))
        want = [r[0] for r in cur.fetchall()]
        got, cursor = [], None
        for _ in range(10):
            q = {"limit": 2}
            if cursor:
                q["before"] = cursor
            st, _, body = t.http_json("GET", s.analytics_url + "/analytics/users/%s/events?%s" %
                                      (lister, urllib.parse.urlencode(q)))
            t.check(st == 200, "listing -> %s %r" % (st, body))
            got += [e["event_id"] for e in body["events"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        t.check(got == want, "listing pages %r, SQL %r" % (got, want))

        cur.execute("SELECT (SELECT count(*) FROM public.events),"
                    " (SELECT count(DISTINCT event_id) FROM public.events),"
                    " (SELECT count(*) FROM public.epp_event_ids)")
        total, distinct, ids = cur.fetchone()
        t.check(total == distinct == ids, "rows %d, distinct ids %d, epp_event_ids %d" %
                (total, distinct, ids))
        conn.close()
    print("ok (%.1fs)" % (time.monotonic() - t0))


if __name__ == "__main__":
    sys.exit(main())
