"""CONSUMER_MERGE_BATCHES: a lane holds a few batches' worth of messages and writes the oldest
first across its partitions, so that a batch of a backlog covers a short stretch of time rather
than one partition's fetch chunk, hours of it (event_consumer/README.md, "Batches in event time
order").

8 partitions x 400 events, message i of partition p at minute 8i + p (its Kafka timestamp is the
event's) -- but partition 7's in reverse order, newest first: a partition's messages still go in
offset order (a gap in a batch would make the writer refuse it and the consumer exit) -- all
produced before the consumer starts; one writer, batches of 200, held (a lock on public.events)
until the pool is full. The same topic is
stored twice, into two databases: with a pool of 8 batches' worth (CONSUMER_MERGE_BATCHES=8) and
of 1 (a batch takes the next batch's worth, in effect the order the messages came in). Both store
every event exactly once. The consumer fetches up to 1 MB of a partition at a time, so all 400 of
a partition's messages come in one run, one partition after another: a batch of 200 in arrival
order spans 1,592 minutes of one partition. From the pool, after the first batch (taken at once:
its writer is free) and except partition 7's, a batch interleaves every partition the pool holds:
the median transaction holds rows of at least 4 partitions and spans under half the minutes."""

import datetime
import os
import statistics
import subprocess
import sys
import time
import uuid

import consumer_testlib as c

t = c.t

PARTITIONS, PER_PARTITION = 8, 400


def messages():
    out = []
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            k = PER_PARTITION - 1 - i if p == PARTITIONS - 1 else i
            ts = c.BASE_TS + datetime.timedelta(minutes=k * PARTITIONS + p)
            eid = uuid.UUID(int=(p << 32) | i, version=4)
            user = "user-%d" % (i % 50)
            md = '{"i":%d,"p":%d,"pad":"%s"}' % (i, p, "x" * 40)
            out.append((p, int(ts.timestamp() * 1000),
                        c.canonical(eid, user, "page_view", ts, md)))
    return out


def transactions(url):
    """(minutes spanned, partitions) of each transaction's rows."""
    conn = t.pg_connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM max(\"timestamp\") - min(\"timestamp\")) / 60, "
                    "count(*), count(DISTINCT metadata->>'p') "
                    "FROM public.events GROUP BY xmin::text ORDER BY xmin::text::bigint")
        rows = cur.fetchall()
        out = [(float(m), k) for m, _, k in rows]
        print("  transactions (minutes spanned, rows, partitions): %s" %
              " ".join("%.0f/%d/%d" % (float(m), n, k) for m, n, k in rows))
    conn.close()
    return out


def store(env, topic, msgs, tag, extra):
    url = t.create_database(env, t.unique_name("cons_merge_" + tag))
    # The writer is held until the pool is full: a SHARE lock on public.events (taken on the
    # schema epp-admin applies) stops the first batch's COPY while the poll thread reads on.
    # Without it, a writer faster than the fetches (the Release build) or slower (ASan, beside
    # other tests) sees pools of different depths, and the partitions per batch vary with the
    # machine (an ASan run in CI: 3 instead of 4 to 7).
    mig = subprocess.run([t.bin_path(env, "epp-admin"), "migrate"], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, DATABASE_URL=url))
    t.check(mig.returncode == 0, "epp-admin migrate: %s %s" % (mig.stdout, mig.stderr))
    lock = t.pg_connect(url, autocommit=False)
    with lock.cursor() as cur:
        cur.execute("LOCK TABLE public.events IN SHARE MODE")
    svc = c.consumer(env, url, topic, group="g_%s_%s" % (topic, tag),
                     extra_env=dict({"CONSUMER_WRITERS": "1", "CONSUMER_BATCH_SIZE": "200",
                                     "CONSUMER_BATCH_MS": "1000",
                                     "KAFKA_CONSUMER_CONFIG": "max.partition.fetch.bytes=1048576"},
                                    **extra),
                     log_name="consumer-merge-" + tag)
    svc.start()
    try:
        # The batch in the writer, the pool, and the batch taken ahead of it.
        held = min(len(msgs), (int(extra["CONSUMER_MERGE_BATCHES"]) + 1) * 200)
        t.wait_for(lambda: c.metric(svc, "epp_consumer_messages_consumed_total") >= held,
                   timeout=60, msg="%s: %d messages read while the writer is held" % (tag, held))
        lock.rollback()
        c.wait_rows(url, len(msgs), timeout=90, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, _, v in msgs})
        s = transactions(url)
    finally:
        lock.rollback()
        lock.close()
        rc = svc.stop()
    t.check(rc == 0, "%s: exit code %s:\n%s" % (tag, rc, svc.log_tail()))
    t.drop_database(env, url)
    return s


def main():
    t0 = time.monotonic()
    env, unused, topic = c.setup("cons_merge", partitions=PARTITIONS)
    t.drop_database(env, unused)
    msgs = messages()
    p = t.kafka_producer(env)
    for part, ts_ms, value in msgs:
        p.produce(topic, value=value, key=b"k", partition=part, timestamp=ts_ms)
        p.poll(0)
    t.check(p.flush(30) == 0, "produce: messages still queued")
    merged = store(env, topic, msgs, "on", {"CONSUMER_MERGE_BATCHES": "8"})
    arrival = store(env, topic, msgs, "off", {"CONSUMER_MERGE_BATCHES": "1"})
    m = statistics.median(x[0] for x in merged)
    a = statistics.median(x[0] for x in arrival)
    mp = statistics.median(x[1] for x in merged)
    ap = statistics.median(x[1] for x in arrival)
    print("median per transaction: merged %.0f minutes, %.1f partitions (%d transactions); in "
          "arrival order %.0f minutes, %.1f partitions (%d)" %
          (m, mp, len(merged), a, ap, len(arrival)))
    t.check(mp >= 4 and mp > ap, "the merged batches hold %.1f partitions (in arrival order %.1f)"
            % (mp, ap))
    t.check(a > 0 and m < 0.5 * a,
            "the merged batches span %.0f minutes, not under half of %.0f" % (m, a))
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
