#!/usr/bin/env python3
"""Reading a backlog, the consumer wakes librdkafka's fetcher before its prefetch queue runs dry.

librdkafka 2.0 (Debian 12's) stops fetching while the consumer queue holds queued.min.messages
and decides again only when its broker thread wakes, up to a second later; the consumer empties
the queue long before that and its writers wait for data that is in the topic. The consumer
sends a request to the brokers when the queue, having been full, falls below half
(consumer_refill_due, epp_consumer_fetch_wakeups_total).

The same backlog (24,000 events, 4 partitions) is read twice with a queue of 500 messages and
batches of 1,000, each time by a fresh consumer into a fresh database: once with the failpoint
no_fetch_wakeups (the fetcher left to its own wake-ups: it fetches a few queuefuls every second)
and once as shipped. Both store every event exactly once; the shipped one counts wake-ups and
drains at least 3 times as fast -- a ratio of two drains in the same run, measured from the
first row stored to the last. Without the wake-ups both drains take the same time.

    test_consumer_refill.py BUILD_DIR
"""
import time

import consumer_testlib as ct
from consumer_testlib import t

N = 24000
# A queue of 500 messages, and small batches and pools, so that the consumer holds little
# beside the queue and the poll thread waits for the writers while the queue is full.
SMALL_QUEUE = {"KAFKA_CONSUMER_CONFIG": "queued.min.messages=500", "CONSUMER_BATCH_SIZE": "1000",
               "CONSUMER_MERGE_BATCHES": "1"}


def drain(env, topic, ids, tag, failpoint):
    """Seconds from the first row stored to the last, and the wake-ups counted."""
    name = t.unique_name("cons_refill_" + ("off" if failpoint else "on"))
    url = t.create_database(env, name)
    extra = dict(SMALL_QUEUE)
    if failpoint:
        extra["EPP_FAILPOINT"] = "no_fetch_wakeups"
    svc = ct.consumer(env, url, topic, group=name, extra_env=extra, log_name=name).start()
    try:
        t.wait_for(lambda: ct.count_rows(url) > 0, timeout=60, interval=0.02,
                   msg="%s: the first rows" % tag)
        first = time.monotonic()
        t.wait_for(lambda: ct.count_rows(url) >= N, timeout=120, interval=0.02,
                   msg="%s: %d rows" % (tag, N))
        seconds = time.monotonic() - first
        wakeups = ct.metric(svc, "epp_consumer_fetch_wakeups_total")
        ct.check_exact(url, ids)
    finally:
        rc = svc.stop()
    t.check(rc == 0, "%s: exit code %s:\n%s" % (tag, rc, svc.log_tail()))
    t.drop_database(env, url)
    print("%s: %d events stored in %.2f s after the first, %d fetcher wake-ups" %
          (tag, N, seconds, wakeups), flush=True)
    return seconds, wakeups


def main():
    env = t.load_env()
    t0 = time.monotonic()
    topic = t.create_topic(env, t.unique_name("cons_refill"), partitions=4)
    events = ct.make_events(N, seed=11)
    t.produce(env, topic, events)
    ids = {ct.event_id_of(v) for _, v in events}
    slow, slow_wakeups = drain(env, topic, ids, "without wake-ups", failpoint=True)
    fast, fast_wakeups = drain(env, topic, ids, "with wake-ups", failpoint=False)
    t.check(slow_wakeups == 0, "the failpoint still woke the fetcher %d times" % slow_wakeups)
    t.check(fast_wakeups > 0, "no fetcher wake-up counted while reading a backlog")
    t.check(fast * 3 <= slow, "the backlog drained in %.2f s with the wake-ups and %.2f s "
            "without: not 3 times as fast" % (fast, slow))
    print("ok (%s)" % ct.elapsed(t0))


if __name__ == "__main__":
    main()
