"""A day partition attached while the consumer writes rows of that day loses nothing.

Rows of a day without a partition go to events_default; epp_events_partition_create (sql/040)
later attaches the day's partition beside the writers (ATTACH PARTITION takes only SHARE UPDATE
EXCLUSIVE on public.events). A COPY that routed a row to events_default just before, and then
waited for that table's lock, fails the narrowed default's partition constraint (SQLSTATE 23514)
when it gets the lock. That is a race, not a bad row: routed again, the row goes to its new
partition. Found by CI: the consumer took it for a rejected value, isolated the batch row by
row, and dead-lettered a row whose day was being attached at that moment.

Here, deterministically: one batch holds a row of day X and one of day Y, neither with a
partition. A transaction creates X's partition and holds its lock on events_default; the
consumer's COPY waits behind it; a second transaction queues to create Y's. X commits: the COPY
fails; Y's creation takes the lock, so the consumer's next attempt, which routes the row of Y to
events_default again, waits and fails in the same way when Y commits. Both rows must be stored
in their partitions, nothing dead-lettered, and the failures counted as retries."""

import datetime
import sys
import threading
import time
import uuid

import consumer_testlib as c

t = c.t

DAY_X = datetime.datetime(2021, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
DAY_Y = DAY_X + datetime.timedelta(days=1)


def waiting_writers(url):
    """Backends of the consumer's writers waiting for a lock."""
    return c.pg_value(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                      "current_database() AND application_name = 'epp-consumer' AND "
                      "wait_event_type = 'Lock'")


def create_partition_tx(url, day):
    """An open transaction that has created day's partition like epp_events_partition_create
    (the CHECK, the lock on events_default, the rows moved in, ATTACH). Returns the connection."""
    conn = t.pg_connect(url, autocommit=False)
    part = "events_p" + day.strftime("%Y%m%d")
    lo = day.replace(hour=0)
    hi = lo + datetime.timedelta(days=1)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.%s (LIKE public.events INCLUDING DEFAULTS INCLUDING "
                    "CONSTRAINTS)" % part)
        cur.execute("ALTER TABLE public.%s ADD CONSTRAINT %s_range CHECK (\"timestamp\" >= %%s "
                    "AND \"timestamp\" < %%s)" % (part, part), (lo, hi))
        cur.execute("LOCK TABLE public.events_default IN ACCESS EXCLUSIVE MODE")
        cur.execute("WITH m AS (DELETE FROM public.events_default WHERE \"timestamp\" >= %%s AND "
                    "\"timestamp\" < %%s RETURNING *) INSERT INTO public.%s SELECT * FROM m"
                    % part, (lo, hi))
        cur.execute("ALTER TABLE public.events ATTACH PARTITION public.%s FOR VALUES FROM (%%s) "
                    "TO (%%s)" % part, (lo, hi))
    return conn


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_prace", partitions=1)
    dlq = topic + ".dlq"
    t.create_topic(env, dlq, partitions=1)
    group = "g_" + topic
    svc = c.consumer(env, url, topic, group=group,
                     extra_env={"CONSUMER_BATCH_MS": "300", "CONSUMER_WRITERS": "1",
                                "MAINTENANCE_INTERVAL_S": "86400"})
    svc.start()
    y_conn = None
    try:
        t.wait_schema(url)
        # The start-up maintenance has run: nothing else creates partitions from here on.
        t.wait_for(lambda: c.metric(svc, "epp_consumer_maintenance_last_success_timestamp_seconds")
                   > 0, timeout=60, msg="the start-up maintenance")
        n_parts = c.pg_value(url, "SELECT count(*) FROM public.epp_events_partitions() "
                             "WHERE lo < %s", (DAY_Y + datetime.timedelta(days=1),))
        t.check(n_parts == 0, "%d partitions of March 2021 already" % n_parts)

        x_conn = create_partition_tx(url, DAY_X)
        ids = [str(uuid.uuid4()), str(uuid.uuid4())]
        t.produce(env, topic, [(b"k", c.canonical(ids[0], "u-x", "click", DAY_X)),
                               (b"k", c.canonical(ids[1], "u-y", "click", DAY_Y))])
        t.wait_for(lambda: waiting_writers(url) == 1, timeout=30,
                   msg="the consumer's COPY waiting for events_default")
        # Y's creation queues for events_default behind the waiting COPY.
        holder = {}

        def create_y():
            try:
                holder["conn"] = create_partition_tx(url, DAY_Y)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                holder["error"] = repr(e)

        th = threading.Thread(target=create_y)
        th.start()
        t.wait_for(lambda: c.pg_value(
            url, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
            "'public.events_default'::regclass") == 2, timeout=30,
            msg="Y's creation queued behind the COPY")
        x_conn.commit()
        x_conn.close()
        th.join(30)
        t.check("error" not in holder and "conn" in holder,
                "creating Y's partition: %s" % holder.get("error"))
        y_conn = holder["conn"]
        # The consumer's next attempt routes the row of Y to events_default: it waits again.
        t.wait_for(lambda: waiting_writers(url) == 1, timeout=30,
                   msg="the consumer's next attempt waiting for events_default")
        y_conn.commit()
        y_conn.close()
        y_conn = None

        c.wait_rows(url, 2, timeout=60, procs=[svc])
        conn = t.pg_connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT event_id::text, tableoid::regclass::text FROM public.events")
            where = dict(cur.fetchall())
        conn.close()
        t.check(where == {ids[0]: "events_p20210301", ids[1]: "events_p20210302"},
                "rows stored as %r" % where)
        t.check(c.metric(svc, "epp_consumer_dead_lettered_total") == 0,
                "dead letters:\n" + svc.log_tail())
        retries = c.metric(svc, "epp_consumer_retries_total")
        t.check(retries >= 2, "%d retries: the races were not both met" % retries)
        t.check("isolating it row by row" not in svc.log_text(),
                "a routing race taken for a bad row:\n" + svc.log_tail())
        print("rows of two days whose partitions were attached under the COPY: both stored in "
              "their partitions after %d retries, none dead-lettered" % retries)
    finally:
        if y_conn is not None:
            y_conn.rollback()
            y_conn.close()
        rc = svc.stop()
    c.finish(env, url, svc, rc, t0)


if __name__ == "__main__":
    sys.exit(main())
