"""epp_user_day is a set (sql/004) and the consumer caches the (day, user) pairs it knows stored
(event_consumer/consumer_udcache.h). Deletions must invalidate that cache:

1. events of normal and test users are stored; rollups exact (epp_user_day = DISTINCT pairs);
2. epp-admin delete-test removes the test events, and the (day, user) pairs left without an
   event; rollups exact;
3. new events for exactly those (day, user) pairs -- pairs the running consumer has cached --
   are stored: the pairs must come back (the generation bump made the consumer drop its cache);
4. epp-admin restore of the backup puts the deleted rows back; rollups exact;
5. delete-test runs repeatedly while the consumer stores a stream of test and normal events of
   the same users and days; at the end the rollups are still exact."""

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
            cur.execute("SELECT count(*) FROM public.epp_user_day")
            pairs = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM public.events")
            rows = cur.fetchone()[0]
    finally:
        conn.close()
    print("%s: rollups exact (%d rows, %d user-day pairs)" % (what, rows, pairs))
    return rows, pairs


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_userday")
    group = "g_" + topic
    normal = ["user-%d" % i for i in range(200)]
    testers = ["tuser-%d" % i for i in range(60)]
    tmp = "/tmp/%s.ndjson" % topic
    svc = c.consumer(env, url, topic, group=group, extra_env={"CONSUMER_BATCH_MS": "20"})
    svc.start()
    try:
        # 1. Normal users on days 0-2; testers' test events on days 0-1, and some testers also
        # have normal events on day 1 (their day-1 pair must survive the delete).
        first = events(4000, normal, [0, 1, 2], 1) + events(1500, testers, [0, 1], 2, "m1") + \
            events(200, testers[:20], [1], 3)
        t.produce(env, topic, first)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        check_rollups(url, "stored")

        # 2. delete-test: the test events go, and the pairs without events left.
        out = admin(env, url, "delete-test", "--backup-out", tmp)
        t.check("deleted rows=1500" in out, out)
        _, pairs = check_rollups(url, "after delete-test")

        # 3. The same testers on the same days again: the consumer cached these pairs before the
        # delete; they must be stored again.
        again = events(300, testers, [0, 1], 4)
        t.produce(env, topic, again)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        _, pairs2 = check_rollups(url, "same pairs after the delete")
        t.check(pairs2 > pairs, "no pair came back: %d -> %d" % (pairs, pairs2))

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
        if os.path.exists(tmp):
            os.unlink(tmp)
    t.check(rc == 0, "SIGTERM exit code %s; log:\n%s" % (rc, svc.log_tail()))
    t.drop_database(env, url)
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
