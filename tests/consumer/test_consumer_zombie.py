"""A consumer frozen with SIGSTOP past its session timeout while another takes over its
partitions, then resumed with SIGCONT: its late batch creates no duplicate and moves no offset
backwards (a watcher samples the offsets table all along), and the rollups stay exact."""

import signal
import sys
import threading
import time

import consumer_testlib as c

t = c.t


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_zombie")
    group = "g_" + topic
    n = 40000
    msgs = c.make_events(n, seed=13)
    # Long batches: the frozen consumer almost surely holds a batch in hand.
    extra = {"KAFKA_SESSION_TIMEOUT_MS": "6000", "CONSUMER_BATCH_MS": "1500",
             "CONSUMER_BATCH_SIZE": "50000"}
    a = c.consumer(env, url, topic, group=group, extra_env=extra, log_name=topic + "-a")
    b = c.consumer(env, url, topic, group=group, extra_env=extra, log_name=topic + "-b")
    errors = []
    backwards = []
    stop_watch = threading.Event()

    def watch():
        last = {}
        while not stop_watch.is_set():
            try:
                now = c.offsets(url, group, topic)
            except Exception:  # noqa: BLE001
                now = {}
            for p, off in now.items():
                if off < last.get(p, -1):
                    backwards.append((p, last[p], off))
                last[p] = max(off, last.get(p, -1))
            time.sleep(0.02)

    producer = threading.Thread(target=c.produce_evenly, args=(env, topic, msgs, 25.0, errors))
    watcher = threading.Thread(target=watch)
    a.start()
    producer.start()
    try:
        c.wait_rows(url, 2000, timeout=30, procs=[a])
        watcher.start()
        time.sleep(0.7)
        a.send_signal(signal.SIGSTOP)
        print("A frozen at %d rows (%s)" % (c.count_rows(url), c.elapsed(t0)))
        b.start()
        frozen_at = c.count_rows(url)
        # B takes over once A's session expired.
        t.wait_for(lambda: c.count_rows(url) > frozen_at + 3000, timeout=40, msg="B storing")
        print("B took over, %d rows (%s)" % (c.count_rows(url), c.elapsed(t0)))
        a.send_signal(signal.SIGCONT)
        print("A resumed (%s)" % c.elapsed(t0))
        producer.join(60)
        t.check(not errors, "producer: %s" % errors)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[a, b])
        time.sleep(1.0)
        stop_watch.set()
        watcher.join()
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
        t.check(not backwards, "offsets moved backwards: %r" % backwards[:5])
        late = '"skipping messages already stored by another consumer"' in a.log_text()
        print("zombie's late batch %s; no duplicate, no backward offset (%s)" %
              ("skipped by the offsets check" if late else "did not reach the database",
               c.elapsed(t0)))
    finally:
        stop_watch.set()
        a.send_signal(signal.SIGCONT)
        ra = a.stop()
        rb = b.stop()
    t.check(ra == 0 and rb == 0, "exit codes %s %s" % (ra, rb))
    t.drop_database(env, url)
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
