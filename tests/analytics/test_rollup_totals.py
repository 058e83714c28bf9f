#!/usr/bin/env python3
"""sql/010 and 011: the per-bucket totals follow every change to the by-name rollups (insert, upsert,
decrement, delete, truncate), and a database migrated with data already in the rollups is
backfilled exactly. The view of users per day (epp_daily_active_users, sql/020; over the user
bitmaps since sql/031) of a database migrated with events in it equals the users of public.events
per UTC day (the backfills of sql/030 and 031). The consumer's bitmap writes are checked by
consumer.user_bitmaps."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import epp_rollups  # noqa: E402
import epp_testlib as t  # noqa: E402

LEVELS = ("minute", "hour", "day")


def mismatches(cur):
    return epp_rollups.derived_problems(cur)


def add_events(cur, instants, users):
    """Rows of public.events, as a database from before the user bitmaps holds them."""
    cur.execute("""INSERT INTO public.events (event_id, user_id, event_name, "timestamp")
                   SELECT gen_random_uuid(), u, 'ev', b
                   FROM unnest(%s::timestamptz[], %s::text[]) AS x(b, u)""", (instants, users))


def upsert(cur, lvl, bucket, name, n):
    cur.execute(f"""INSERT INTO public.epp_rollup_{lvl} AS r (bucket, event_name, n)
                    VALUES (%s, %s, %s)
                    ON CONFLICT (bucket, event_name) DO UPDATE SET n = r.n + EXCLUDED.n""",
                (bucket, name, n))


def main():
    env = t.load_env()
    sql_dir = os.path.join(t.REPO, "sql")
    files = sorted(f for f in os.listdir(sql_dir) if f.endswith(".sql"))
    before = [f for f in files if int(f.split("_")[0]) < 10]
    url = t.create_database(env)
    try:
        conn = t.pg_connect(url)
        cur = conn.cursor()
        for f in before:  # a database from before 010, with data
            cur.execute(open(os.path.join(sql_dir, f)).read())
        for i in range(50):
            for lvl in LEVELS:
                upsert(cur, lvl, "2026-03-29 0%d:00:00+00" % (i % 5), "ev%d" % (i % 7), i + 1)
        add_events(cur, ["2026-03-2%d %02d:00:00+00" % (7 + i % 3, i % 24) for i in range(50)],
                   ["u%d" % (i % 13) for i in range(50)])
        for f in files:
            if f not in before:
                cur.execute(open(os.path.join(sql_dir, f)).read())
        t.check(not mismatches(cur), "backfill: %r" % mismatches(cur))
        cur.execute("SELECT count(*), sum(active_users) FROM public.epp_daily_active_users")
        t.check(cur.fetchone() == (3, 39), "users per day: three days of 13 users each")

        # Every kind of change the writers make, in one transaction and across several.
        conn.autocommit = False
        for i in range(200):
            lvl = LEVELS[i % 3]
            upsert(cur, lvl, "2026-03-29 %02d:%02d:00+00" % (i % 24, i % 60), "ev%d" % (i % 9),
                   (i % 11) + 1)
        conn.commit()
        # The consumer's shape: one INSERT ... ON CONFLICT DO UPDATE over arrays, mixing rows
        # that exist (updated) and rows that do not (inserted), in one statement.
        for lvl in LEVELS:
            cur.execute(f'''INSERT INTO public.epp_rollup_{lvl} AS r (bucket, event_name, n)
                            SELECT b, e, c FROM unnest(%s::timestamptz[], %s::text[], %s::int8[])
                                AS u(b, e, c)
                            ON CONFLICT (bucket, event_name) DO UPDATE SET n = r.n + EXCLUDED.n''',
                        (["2026-03-29 01:01:00+00", "2026-03-30 05:00:00+00",
                          "2026-03-29 02:02:00+00"], ["ev1", "new", "ev2"], [7, 3, 5]))
        conn.commit()
        t.check(not mismatches(cur), "after a mixed multi-row upsert: %r" % mismatches(cur))
        cur.execute("UPDATE public.epp_rollup_hour SET n = n - 1 WHERE event_name = 'ev3'")
        cur.execute("DELETE FROM public.epp_rollup_minute WHERE event_name = 'ev4'")
        cur.execute("DELETE FROM public.epp_rollup_day WHERE n <= 5")
        conn.commit()
        t.check(not mismatches(cur), "after upserts, decrements, deletes: %r" % mismatches(cur))
        cur.execute("UPDATE public.epp_rollup_minute SET n = n + 1000")
        conn.rollback()  # rolled back: the totals roll back with it
        t.check(not mismatches(cur), "after a rollback: %r" % mismatches(cur))
        cur.execute("TRUNCATE public.epp_rollup_hour")
        conn.commit()
        cur.execute("SELECT count(*) FROM public.epp_rollup_hour_total")
        t.check(cur.fetchone()[0] == 0, "TRUNCATE empties the hour totals")
        t.check(not mismatches(cur), "after truncate: %r" % mismatches(cur))

        # sql/011: one trigger function for every level, and writers of totals take turns (a
        # transaction-level advisory lock), so two writers can never lock total rows in opposite
        # orders. A second writer touching other buckets than the first must wait for its COMMIT.
        cur.execute("""SELECT count(*) FROM pg_proc WHERE proname ~ '^epp_rollup_.*_total_(ins|upd|del)$'""")
        t.check(cur.fetchone()[0] == 0, "the per-level trigger functions of 010 are dropped")
        cur.execute("""SELECT count(DISTINCT tgfoid::regproc) FROM pg_trigger
                       WHERE tgname ~ '^epp_rollup_.*_total_(ins|upd|del)$'""")
        t.check(cur.fetchone()[0] == 1, "every total trigger runs one function")
        upsert(cur, "minute", "2026-04-01 10:00:00+00", "first", 1)  # held open
        other = t.pg_connect(url)
        other.autocommit = False
        ocur = other.cursor()
        ocur.execute("SET lock_timeout = '300ms'")
        import psycopg2
        try:
            upsert(ocur, "minute", "2026-04-02 11:00:00+00", "second", 1)
            t.check(False, "a second writer of totals went ahead while the first was open")
        except psycopg2.errors.LockNotAvailable:
            other.rollback()
        conn.commit()
        ocur.execute("SET lock_timeout = '5s'")
        upsert(ocur, "minute", "2026-04-02 11:00:00+00", "second", 1)
        other.commit()
        other.close()
        t.check(not mismatches(cur), "after two writers in turn: %r" % mismatches(cur))
        conn.close()
    finally:
        t.drop_database(env, url)
    print("rollup totals: exact")


if __name__ == "__main__":
    main()
