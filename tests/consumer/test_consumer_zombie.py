"""A consumer frozen with SIGSTOP past its session timeout while another takes over its
partitions, then resumed with SIGCONT: its late batch is FENCED -- written against the offsets
table, found already stored by the other consumer, and skipped (its log says so and its
epp_consumer_duplicates_skipped_total counts it) -- not merely absent. No duplicate, no offset
moving backwards (a watcher samples the offsets table all along), rollups exact.

The freeze is placed outside the frozen consumer's write transactions
(t.freeze_outside_transaction): frozen inside one, it keeps its offset rows and the rollup rows
it touched locked, the other consumer waits for them, and the frozen one's batch simply commits
first when resumed (docs/reliability.md, Findings). For the late batch to be certain, the other
consumer must have stored everything the frozen one could hold: the high watermarks read right
after the SIGSTOP bound what it fetched, and it is resumed only once the offsets table has
reached them. A freeze that finds no batch in hand (just after a write) proves nothing about
fencing, so the test freezes again, up to four rounds while the producer runs."""

import signal
import sys
import threading
import time

import consumer_testlib as c

t = c.t

FENCED = '"skipping messages already stored by another consumer"'


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_zombie")
    group = "g_" + topic
    n = 45000
    msgs = c.make_events(n, seed=13)
    # Long batches: a frozen consumer almost surely holds a batch in hand.
    extra = {"KAFKA_SESSION_TIMEOUT_MS": "6000", "CONSUMER_BATCH_MS": "2000",
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

    def reached(hw):
        got = c.offsets(url, group, topic)
        return all(got.get(p, 0) >= hi for p, hi in hw.items() if hi > 0)

    producer = threading.Thread(target=c.produce_evenly, args=(env, topic, msgs, 45.0, errors))
    watcher = threading.Thread(target=watch)
    a.start()
    producer.start()
    fenced_round = None
    try:
        c.wait_rows(url, 2000, timeout=30, procs=[a])
        watcher.start()
        for rnd in range(1, 5):
            if not producer.is_alive():
                break
            # A is consuming (it owns partitions again after a previous round).
            seen = c.metric(a, "epp_consumer_messages_consumed_total")
            t.wait_for(lambda: c.metric(a, "epp_consumer_messages_consumed_total") > seen, 30,
                       msg="consumer A consuming")
            time.sleep(0.7)
            skipped0 = c.metric(a, "epp_consumer_duplicates_skipped_total")
            pos = len(a.log_text())
            frozen_at, caught = t.freeze_outside_transaction(a, url)
            t.check(frozen_at is not None, "A was inside a write transaction at every try")
            hw = {p: hi for p, (lo, hi) in t.topic_offsets(env, topic).items()}
            print("round %d: A frozen outside a write transaction (%d tries caught one) at %d "
                  "rows, high watermarks %s (%s)" %
                  (rnd, caught, c.count_rows(url), hw, c.elapsed(t0)))
            if not b.alive():
                b.start()
            # B takes over once A's session expired, and stores past all A could hold.
            t.wait_for(lambda: reached(hw), timeout=40, interval=0.1,
                       msg="B storing past the high watermarks while A is frozen")
            a.send_signal(signal.SIGCONT)
            print("round %d: B stored past them; A resumed (%s)" % (rnd, c.elapsed(t0)))
            try:
                t.wait_for(lambda: FENCED in a.log_text()[pos:], timeout=20,
                           msg="A's late batch fenced")
            except t.TestFailure:
                print("round %d: A had no batch in hand when frozen" % rnd)
                continue
            skipped = c.metric(a, "epp_consumer_duplicates_skipped_total") - skipped0
            t.check(skipped > 0, "A logged the fencing, so its skip counter moved (%d)" % skipped)
            print("round %d: A's late batch was fenced: %d messages skipped as already stored "
                  "by B (%s)" % (rnd, skipped, c.elapsed(t0)))
            fenced_round = rnd
            break
        t.check(fenced_round is not None,
                "no round froze A with a batch in hand outside its transaction: the fencing "
                "was never exercised")
        producer.join(90)
        t.check(not errors, "producer: %s" % errors)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[a, b])
        time.sleep(1.0)
        stop_watch.set()
        watcher.join()
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
        t.check(not backwards, "offsets moved backwards: %r" % backwards[:5])
        print("zombie's late batch fenced (round %d); no duplicate, no backward offset (%s)" %
              (fenced_round, c.elapsed(t0)))
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
