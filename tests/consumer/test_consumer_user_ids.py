"""The user dictionary (sql/030, common/epp_users.c): one dense uid per user_id, assigned in the
transaction that stores the user's first row.

1. sql/030 on a database that already holds events gives every existing user an id, 0..U-1 in
   the order of their first event, and sql/031 builds their exact bitmaps (in SQL).
2. Events whose users appear on every partition (keys are not the user_id), written by four
   lanes at once (two consumers of one group, two writers each, small batches): every user gets
   exactly one uid, and no lane waits for another in a cycle (no deadlock, no retry). (Two
   transactions inserting one new user at the same moment skip an id: the sequence is read
   before the conflict is found. Not so with keys = user_id, where a user has one lane.)
3. The consumers restart (their uid caches empty) and store events keyed by user_id, of the
   same users and new ones: the known users keep their ids and draw none, the new ones draw
   exactly one each.
4. epp-admin delete-test then restore: the restored users keep their ids (none drawn)."""

import datetime
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import consumer_testlib as c

t = c.t


def events(n, users, seed, by_user=False):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        user = rnd.choice(users)
        ts = c.BASE_TS + datetime.timedelta(seconds=rnd.randrange(2 * 86400))
        md = '{"i":%d,"epp_test":"m"}' % i if user.startswith("t") else '{"i":%d}' % i
        # A random key: the user's events land on every partition, so every lane meets them.
        key = user.encode() if by_user else ("k%d" % rnd.getrandbits(32)).encode()
        out.append((key, c.canonical(uuid.UUID(int=rnd.getrandbits(128), version=4), user,
                                     "click", ts, md)))
    return out


def dictionary(url):
    conn = t.pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT user_id, uid FROM public.epp_user_ids")
            ids = dict(cur.fetchall())
            cur.execute("SELECT count(DISTINCT user_id) FROM public.events")
            users = cur.fetchone()[0]
            c.epp_rollups.assert_exact(conn)
    finally:
        conn.close()
    return ids, users


def check_ids(ids, what):
    uids = sorted(ids.values())
    t.check(len(set(uids)) == len(uids) and uids[0] >= 0, "%s: uids not unique" % what)
    print("%s: %d users, uids %d..%d (%d skipped)" % (what, len(uids), uids[0], uids[-1],
                                                     uids[-1] + 1 - len(uids)))


def admin(env, url, *args):
    p = subprocess.run([t.bin_path(env, "epp-admin")] + list(args), capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, DATABASE_URL=url))
    t.check(p.returncode == 0, "epp-admin %s: %s %s" % (args[0], p.stdout, p.stderr))
    return p.stdout.strip()


def backfill(env):
    url = t.create_database(env, t.unique_name("cons_uid_mig"))
    old = tempfile.mkdtemp()
    try:
        for f in os.listdir(os.path.join(t.REPO, "sql")):
            if f[:3].isdigit() and int(f[:3]) < 30:
                shutil.copy(os.path.join(t.REPO, "sql", f), old)
        admin(env, url, "migrate", "--sql-dir", old)
    finally:
        shutil.rmtree(old)
    conn = t.pg_connect(url)
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO public.events (event_id, user_id, event_name, "timestamp")
                       SELECT gen_random_uuid(), 'u-' || (i % 50), 'x',
                              timestamptz '2026-11-01' + (i % 97) * interval '1 hour'
                              + (i % 50) * interval '1 day'
                       FROM generate_series(1, 1000) i""")
    admin(env, url, "migrate")
    with conn.cursor() as cur:
        cur.execute("""SELECT user_id, uid, rank() OVER (ORDER BY first, user_id) - 1 FROM
                       (SELECT user_id, min("timestamp") AS first FROM public.events
                        GROUP BY 1) f JOIN public.epp_user_ids USING (user_id)""")
        rows = cur.fetchall()
    t.check(len(rows) == 50 and all(uid == rank for _, uid, rank in rows),
            "sql/030 backfill: %r" % rows[:5])
    # sql/031 built the bitmaps of those events (in SQL): exact, and epp_user_day is gone.
    # (The rows were inserted without their rollups: only the users' structures are checked.)
    problems = [p for p in c.epp_rollups.check(conn) if p.startswith("epp_user")]
    t.check(not problems, "sql/031 backfill:\n" + "\n".join(problems))
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.epp_user_day')")
        t.check(cur.fetchone()[0] is None, "epp_user_day still there")
    conn.close()
    print("sql/030 and sql/031 on existing events: 50 users, ids in order of their first event, "
          "bitmaps exact")
    t.drop_database(env, url)


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_uid", partitions=8)
    backfill(env)
    group = "g_" + topic
    users = ["user-%d" % i for i in range(600)] + ["tuser-%d" % i for i in range(100)]
    extra = {"CONSUMER_BATCH_MS": "10", "CONSUMER_BATCH_SIZE": "200", "CONSUMER_WRITERS": "2"}

    def pair():
        return [c.consumer(env, url, topic, group=group, extra_env=extra,
                           log_name="%s-%d" % (topic, k)) for k in range(2)]

    svcs = pair()
    for s in svcs:
        s.start()
    try:
        first = events(6000, users, 1)
        t.produce(env, topic, first)
        c.wait_rows(url, 6000, procs=svcs)
    finally:
        for s in svcs:
            s.stop()
    for s in svcs:
        t.check("deadlock" not in s.log_text(), "a deadlock:\n" + s.log_tail())
        # The one retry allowed: a row routed to events_default while the start-up maintenance
        # attached its day's partition (test_consumer_partition_race.py), not a lane's wait.
        waits = [ln for ln in s.log_text().splitlines()
                 if "batch write failed" in ln and '"sqlstate":"23514"' not in ln]
        t.check(not waits, "%d retries:\n%s" % (len(waits), "\n".join(waits[:5])))
    ids, n_users = dictionary(url)
    t.check(len(ids) == n_users == len(users), "%d ids, %d users" % (len(ids), n_users))
    check_ids(ids, "four lanes, users on every partition")

    # 3. Cold caches: known users again, and new ones.
    conn = t.pg_connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT last_value + 1 FROM public.epp_user_uid_seq")
        seq_next = cur.fetchone()[0]
    conn.close()
    more = users + ["late-%d" % i for i in range(150)]
    svcs = pair()
    for s in svcs:
        s.start()
    try:
        t.produce(env, topic, events(3000, more, 2, by_user=True))
        # CI once waited for a row that had been dead-lettered: a routing race the consumer
        # took for a bad value (test_consumer_partition_race.py); wait_rows shows the
        # consumers' warnings when it times out.
        c.wait_rows(url, 9000, procs=svcs, timeout=60)
    finally:
        for s in svcs:
            s.stop()
    ids2, _ = dictionary(url)
    t.check(all(ids2[u] == uid for u, uid in ids.items()), "a known user's uid changed")
    new = sorted(uid for u, uid in ids2.items() if u not in ids)
    t.check(len(new) == len(set(ids2) - set(ids)) > 100 and
            new == list(range(seq_next, seq_next + len(new))),
            "the %d new users drew ids %s..%s, not exactly %d.. without a gap" % (
                len(new), new[0] if new else None, new[-1] if new else None, seq_next))
    check_ids(ids2, "after a restart (cold caches), keys = user_id")

    # 4. delete-test removes the testers' events; restore puts them back with the same ids.
    tmp = "/tmp/%s.ndjson" % topic
    print(admin(env, url, "delete-test", "--backup-out", tmp))
    print(admin(env, url, "restore", tmp))
    os.unlink(tmp)
    ids3, _ = dictionary(url)
    t.check(ids3 == ids2, "delete-test + restore changed the dictionary")
    check_ids(ids3, "after delete-test and restore")
    t.drop_database(env, url)
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
