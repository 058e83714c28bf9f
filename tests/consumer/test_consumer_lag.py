#!/usr/bin/env python3
"""epp_consumer_lag follows the real backlog (the topic's high watermarks minus the rows
stored) in the two cases where a watermark cached from fetch responses would stand still:

1. the consumer is behind and its prefetch queue is full (it stops fetching): a slow consumer
   (one row per transaction) with a small queue, and 20,000 more messages produced;
2. the consumer's writer waits for Postgres (a test transaction holds a SHARE lock on
   public.events, which stops inserts but not reads) and the polling loop waits for the writer:
   10,000 more messages.

In both the gauge must reach 90% of the backlog within 10 s (the lag thread queries the brokers
every second). Without it the EppConsumerLagGrowing alert cannot fire when a consumer falls
behind (docs/operations.md).

    test_consumer_lag.py BUILD_DIR
"""
import sys

import consumer_testlib as ct
from consumer_testlib import t


def lag_sum(svc):
    return t.metric_value(svc, "epp_consumer_lag")


def backlog(env, topic, url):
    high = sum(hi for _, hi in t.topic_offsets(env, topic).values())
    return high - max(ct.count_rows(url), 0)


def wait_tracking(env, topic, url, svc, what):
    """Waits until the gauge is at least 90% of the backlog; returns (gauge, backlog)."""
    seen = []

    def close():
        lag, real = lag_sum(svc), backlog(env, topic, url)
        seen.append((lag, real))
        return lag is not None and lag >= 0.9 * real and (lag, real)
    try:
        got = t.wait_for(close, timeout=10, interval=0.5, msg="the lag gauge near the backlog")
    except t.TestFailure:
        raise t.TestFailure("%s: epp_consumer_lag does not follow the backlog; (gauge, backlog) "
                            "every 0.5 s: %r" % (what, seen))
    print("%s: epp_consumer_lag %d, backlog %d" % (what, got[0], got[1]))
    return got


def main():
    env = t.load_env()
    name = t.unique_name("cons_lag")
    url = t.create_database(env, name)
    topic = name + "_events"
    t.create_topic(env, topic, partitions=4)
    events = ct.make_events(40000, seed=7)
    t.produce(env, topic, events[:20000])
    slow = {"CONSUMER_BATCH_SIZE": "1", "CONSUMER_WRITERS": "1", "CONSUMER_PIPELINE": "false",
            "KAFKA_CONSUMER_CONFIG": "queued.max.messages.kbytes=64"}
    svc = ct.consumer(env, url, topic, extra_env=slow, log_name=name + "-consumer").start()
    lock = None
    try:
        t.wait_for(lambda: (lag_sum(svc) or 0) > 0, timeout=60, interval=0.2,
                   msg="the consumer reporting its lag")
        t.wait_for(lambda: ct.count_rows(url) > 0, timeout=30, msg="the first rows stored")
        t.produce(env, topic, events[20000:40000])
        wait_tracking(env, topic, url, svc, "behind, prefetch queue full")

        lock = t.pg_connect(url, autocommit=False)
        with lock.cursor() as cur:
            cur.execute("LOCK TABLE public.events IN SHARE MODE")
        rows = ct.count_rows(url)
        t.produce(env, topic, ct.make_events(10000, seed=8))
        wait_tracking(env, topic, url, svc, "writer waiting for Postgres")
        t.check(ct.count_rows(url) == rows, "rows were stored through the lock?")
        lock.rollback()
        lock.close()
        lock = None
        t.check(svc.alive(), "the consumer died:\n" + svc.log_tail())
    finally:
        if lock is not None:
            lock.rollback()
            lock.close()
        svc.stop()
        t.drop_database(env, url)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
