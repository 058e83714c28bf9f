"""The per-bucket user bitmaps (sql/031): each writer lane remembers the user ids it knows stored
in each bucket and sends only new ones (event_consumer/consumer_users.h); deletions must make it
forget. After every step the rollups and the bitmaps are exact (tests/lib/epp_rollups.py: per
minute, hour and day, the union of a bucket's rows = the uids of its events' users; a minute's
rows are those of its hour, sql/032, each holding the hour's minutes packed):

1. events of normal and test users are stored, in small batches (so that buckets get many
   appended rows and are merged: the rows per hour and day bucket, and the minute rows per hour,
   stay bounded);
2. epp-admin delete-test removes the test events, and the uids of the users left without an
   event in a bucket;
3. new events of exactly those (bucket, user) pairs -- uids the running consumer remembers as
   stored -- are stored: the uids must come back (the generation bump made it forget);
4. epp-admin restore of the backup puts the deleted rows back;
5. delete-test runs repeatedly while the consumer stores a stream of test and normal events of
   the same users and days;
6. the same with a consumer that remembers nothing (CONSUMER_USER_BITMAP_MEMORY_MB=0)."""

import datetime
import os
import subprocess
import sys
import threading
import time
import uuid

import consumer_testlib as c

t = c.t
DAY0 = datetime.datetime(2026, 11, 20, 0, 0, 0, tzinfo=datetime.timezone.utc)


def events(n, users, days, seed, marker=None, span_s=86400):
    import random
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        user = rnd.choice(users)
        day = rnd.choice(days)
        ts = DAY0 + datetime.timedelta(days=day, milliseconds=rnd.randrange(span_s * 1000))
        md = '{"epp_test":"%s"}' % marker if marker else '{"i":%d}' % i
        out.append((user.encode(), c.canonical(uuid.UUID(int=rnd.getrandbits(128), version=4),
                                               user, "click", ts, md)))
    return out


def admin(env, url, *args):
    e = dict(os.environ, DATABASE_URL=url)
    p = subprocess.run([t.bin_path(env, "epp-admin")] + list(args), capture_output=True,
                       text=True, timeout=120, env=e)
    t.check(p.returncode == 0, "epp-admin %s -> %d\n%s\n%s" % (" ".join(args), p.returncode,
                                                               p.stdout, p.stderr))
    return p.stdout


def check_rollups(url, what):
    conn = t.pg_connect(url)
    try:
        c.epp_rollups.assert_exact(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.events")
            rows = cur.fetchone()[0]
            cur.execute("SELECT sum(active_users) FROM public.epp_daily_active_users")
            pairs = int(cur.fetchone()[0] or 0)
            cur.execute("SELECT max(c) FROM (SELECT count(*) AS c FROM "
                        "public.epp_user_bitmap_hour GROUP BY bucket "
                        "UNION ALL SELECT count(*) FROM public.epp_user_bitmap_day "
                        "GROUP BY bucket) x")
            most = cur.fetchone()[0] or 0
            # A minute row's bucket is its hour (sql/032): the rows of an hour of minutes.
            cur.execute("SELECT max(c) FROM (SELECT count(*) AS c FROM "
                        "public.epp_user_bitmap_minute GROUP BY bucket) x")
            most_minutes = cur.fetchone()[0] or 0
        layout = c.epp_rollups.bitmap_rows(conn)
    finally:
        conn.close()
    print("%s: rollups and bitmaps exact (%d rows, %d user-days; bitmap buckets/rows %s -- minute "
          "buckets are hours; at most %d rows in an hour or day bucket, %d in an hour of "
          "minutes)" % (what, rows, pairs, " ".join(
              "%s %d/%d" % (k, v[0], v[1]) for k, v in layout.items()), most, most_minutes))
    return rows, pairs, (most, most_minutes)


def check_bounded(most, what=""):
    """Two lanes, each merging a bucket after consumer_users_merge_after(level) of its own appends
    (event_consumer/consumer_users.h: 8 for hours and days, 32 for an hour of minutes), plus what
    the other lane appended meanwhile: a bucket never holds many rows."""
    rows, minute_rows = most
    t.check(rows <= 2 * 8 + 2, "an hour or day bucket holds %d rows%s: merges do not happen"
            % (rows, what))
    t.check(minute_rows <= 2 * 32 + 2, "an hour of minutes holds %d rows%s: merges do not happen"
            % (minute_rows, what))


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_userday")
    group = "g_" + topic
    normal = ["user-%d" % i for i in range(200)]
    testers = ["tuser-%d" % i for i in range(60)]
    tmp = "/tmp/%s.ndjson" % topic
    svc = c.consumer(env, url, topic, group=group,
                     extra_env={"CONSUMER_BATCH_MS": "20", "CONSUMER_BATCH_SIZE": "100"})
    svc.start()
    try:
        # 1. Normal users on days 0-2; testers' test events on days 0-1, and some testers also
        # have normal events on day 1 (their day-1 pair must survive the delete); then normal
        # events in one hour (day 0, 00:00-01:00), 60 batches or more: with the ~40 batches of
        # the rest that touch it, unmerged, that hour of minutes would hold over 2 x 32 + 2 rows.
        first = events(4000, normal, [0, 1, 2], 1) + events(1500, testers, [0, 1], 2, "m1") + \
            events(200, testers[:20], [1], 3) + events(6000, normal, [0], 5, span_s=3600)
        t.produce(env, topic, first)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        _, _, most = check_rollups(url, "stored")
        check_bounded(most)

        # 2. delete-test: the test events go, and the pairs without events left.
        out = admin(env, url, "delete-test", "--backup-out", tmp)
        t.check("deleted rows=1500" in out, out)
        _, pairs, _ = check_rollups(url, "after delete-test")

        # 3. The same testers on the same days again: the consumer cached these pairs before the
        # delete; they must be stored again.
        again = events(300, testers, [0, 1], 4)
        t.produce(env, topic, again)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        _, pairs2, _ = check_rollups(url, "same users and days after the delete")
        t.check(pairs2 > pairs, "no user-day came back: %d -> %d" % (pairs, pairs2))

        # 4. restore puts the deleted rows back (pairs with DO NOTHING).
        out = admin(env, url, "restore", tmp)
        t.check("inserted=1500" in out, out)
        check_rollups(url, "after restore")

        # 5. delete-test while the consumer stores test and normal events of the same pairs.
        stream = []
        for k in range(10):
            stream.append(events(600, testers, [0, 1, 2], 100 + k, "m2") +
                          events(100, testers[k * 6:(k + 1) * 6], [2], 200 + k))
        done = threading.Event()
        errors = []

        def produce():
            try:
                for chunk in stream:
                    t.produce(env, topic, chunk)
                    time.sleep(0.15)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                done.set()

        th = threading.Thread(target=produce)
        th.start()
        deletes = 0
        while not done.is_set() or deletes < 3:
            admin(env, url, "delete-test", "--backup-out", tmp)
            deletes += 1
            time.sleep(0.1)
        th.join()
        t.check(not errors, "produce failed: %r" % errors)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        check_rollups(url, "%d concurrent delete-test runs" % deletes)
        admin(env, url, "delete-test", "--backup-out", tmp)
        check_rollups(url, "final delete-test")
    finally:
        rc = svc.stop()
    t.check(rc == 0, "SIGTERM exit code %s; log:\n%s" % (rc, svc.log_tail()))

    # 6. A consumer that remembers no user id: every batch sends all of its own.
    svc = c.consumer(env, url, topic, group=group,
                     extra_env={"CONSUMER_BATCH_MS": "20", "CONSUMER_BATCH_SIZE": "100",
                                "CONSUMER_USER_BITMAP_MEMORY_MB": "0"}, log_name=topic + "-nomem")
    svc.start()
    try:
        t.produce(env, topic, events(1500, testers + normal[:50], [0, 1, 2], 300, "m3") +
                  events(500, normal, [1, 2], 301))
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        _, _, most = check_rollups(url, "remembering nothing")
        check_bounded(most, " (remembering nothing)")
        admin(env, url, "delete-test", "--backup-out", tmp)
        check_rollups(url, "remembering nothing, after delete-test")
    finally:
        rc = svc.stop()
        if os.path.exists(tmp):
            os.unlink(tmp)
    t.check(rc == 0, "SIGTERM exit code %s; log:\n%s" % (rc, svc.log_tail()))
    t.drop_database(env, url)
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
