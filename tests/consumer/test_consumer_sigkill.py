"""SIGKILL the consumer at random moments during a stream (5 times), restarting it each time:
exactly every event once in public.events, rollups exact. Acceptance size (100,000 events)."""

import random
import signal
import sys
import threading
import time

import consumer_testlib as c

t = c.t


def main():
    t0 = time.monotonic()
    rnd = random.Random(42)
    # 16 partitions: the dev broker keeps only ~5 MiB per partition.
    env, url, topic = c.setup("cons_kill", partitions=16)
    group = "g_" + topic
    n = 100000
    msgs = c.make_events(n, seed=3)
    errors = []
    producer = threading.Thread(target=c.produce_evenly, args=(env, topic, msgs, 30.0, errors),
                                kwargs={"wait_when_full": True})
    # Batches of 1000 so that every kill lands between or inside several transactions.
    # A killed member holds its partitions until its session expires (6 s, the broker's minimum),
    # so the stream lasts long enough for every kill to land inside it.
    extra = {"CONSUMER_BATCH_SIZE": "1000", "KAFKA_SESSION_TIMEOUT_MS": "6000"}
    svc = c.consumer(env, url, topic, group=group, extra_env=extra, log_name=topic + "-0")
    svc.start()
    producer.start()
    kills = 0
    try:
        while kills < 5:
            # Kill while it writes: once rows are moving again, after a random delay.
            before = max(0, c.count_rows(url))
            t.wait_for(lambda: c.count_rows(url) > before, timeout=30, interval=0.05,
                       msg="rows moving")
            time.sleep(rnd.uniform(0.0, 0.6))
            svc.kill()
            kills += 1
            print("kill %d at %d rows (%s)" % (kills, c.count_rows(url), c.elapsed(t0)))
            svc = c.consumer(env, url, topic, group=group, extra_env=extra,
                             log_name="%s-%d" % (topic, kills))
            svc.start()
        producer.join(60)
        t.check(not errors, "producer: %s" % errors)
        lows = {p: lo for p, (lo, hi) in t.topic_offsets(env, topic).items() if lo != 0}
        t.check(not lows, "the dev broker dropped data (low watermarks %r)" % lows)
        # A killed member stays in the group until its session times out: allow for that.
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
        print("%d kills: %d rows exact, rollups exact (%s)" % (kills, n, c.elapsed(t0)))

    finally:
        rc = svc.stop()
    t.check(rc == 0, "exit code %s" % rc)
    t.drop_database(env, url)
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
