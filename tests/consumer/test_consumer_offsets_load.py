"""A partition is never started past its stored offset, and a writer never stores an offset across
messages its process did not read (issue 19, defect 1). Two test-only fault points:

1. EPP_FAILPOINT=offsets_load_fails: the offset load on assignment fails (as it does when a stop
   comes while Postgres is unreachable). Events produced before and after the assignment; the
   consumer reads nothing and stores nothing (no row, no offsets row) while it holds the
   partitions, logs the paused assignment at error level and exits 0 on SIGTERM. A consumer
   started next, without the fault point, stores every event exactly once. (Before the fix the
   partitions started at their end: the events produced after the assignment were stored with
   the offsets at the end, and those produced before were never stored.)
2. EPP_FAILPOINT=assign_at_end: the assignment starts every partition at its end without telling
   the writers (what the failed load used to do). The first batch finds the stored offset behind
   the start of what it read: it is refused (an OFFSET GAP error line), nothing is stored, and the
   consumer leaves by itself with exit 1. Next, a consumer without the fault point stores every
   event exactly once."""

import sys
import threading
import time

import consumer_testlib as c

t = c.t


def start_faulty(prefix, failpoint, seed):
    """A fresh database and topic holding 3000 events, and a consumer with the fault point that
    holds the partitions. Returns env, url, topic, group, the events, the consumer."""
    env, url, topic = c.setup(prefix)
    group = "g_" + topic
    before = c.make_events(3000, seed=seed)
    t.produce(env, topic, before)
    svc = c.consumer(env, url, topic, group=group, extra_env={"EPP_FAILPOINT": failpoint},
                     log_name=topic + "-" + failpoint)
    svc.start()
    try:
        t.wait_for(lambda: '"msg":"partitions assigned' in svc.log_text(), timeout=60,
                   msg="the assignment")
    except BaseException:
        svc.stop()
        raise
    return env, url, topic, group, before, svc


def traffic(env, topic, seed):
    """3000 events produced evenly over 3 s from now (a thread); returns (events, thread,
    errors). Wherever a start at the end falls, most of them come after it."""
    msgs = c.make_events(3000, seed=seed)
    errors = []
    th = threading.Thread(target=c.produce_evenly, args=(env, topic, msgs, 3.0, errors))
    th.start()
    return msgs, th, errors


def join_traffic(th, errors):
    th.join(60)
    t.check(not th.is_alive() and not errors, "producing failed: %s" % errors[:3])


def check_nothing_stored(url, group, topic, what):
    rows = c.count_rows(url)
    offs = {p: n for p, n in c.offsets(url, group, topic).items() if n >= 0}
    t.check(rows == 0 and not offs,
            "%s: %d rows stored, offsets table %s (must be none)" % (what, rows, offs))


def finish_clean(env, url, topic, group, msgs, name):
    """A consumer without a fault point stores every event of msgs exactly once."""
    svc = c.consumer(env, url, topic, group=group, log_name=topic + "-" + name)
    svc.start()
    try:
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
    finally:
        rc = svc.stop()
    t.check(rc == 0, "clean consumer exit code %s" % rc)


def load_fails():
    env, url, topic, group, before, svc = start_faulty("cons_offload", "offsets_load_fails", 21)
    try:
        # Traffic after the assignment: what a start at the end would read and store.
        after, th, errors = traffic(env, topic, 22)
        join_traffic(th, errors)
        # 2 s is twenty batch intervals: a consumer reading anything has stored some of it.
        time.sleep(2)
        consumed = c.metric(svc, "epp_consumer_messages_consumed_total")
        check_nothing_stored(url, group, topic, "offsets_load_fails")
        t.check(consumed == 0, "%d messages read from partitions without a start offset" %
                consumed)
        log = svc.log_text()
        t.check('"msg":"partitions assigned paused' in log and
                '"msg":"stored offsets could not be read' in log,
                "no error line for the paused assignment:\n%s" % svc.log_tail())
    finally:
        rc = svc.stop()
    t.check(rc == 0, "exit code %s after SIGTERM; log:\n%s" % (rc, svc.log_tail()))
    finish_clean(env, url, topic, group, before + after, "after-load-fails")
    t.drop_database(env, url)
    print("offsets_load_fails: nothing read while paused; %d events exact after restart" %
          len(before + after))


def assign_at_end():
    env, url, topic, group, before, svc = start_faulty("cons_gap", "assign_at_end", 23)
    try:
        after, th, errors = traffic(env, topic, 24)
        try:
            rc = svc.wait(60)
        except Exception:  # noqa: BLE001 - still running: it stored across the gap
            rc = None
        join_traffic(th, errors)
        log = svc.log_text()
        check_nothing_stored(url, group, topic, "assign_at_end")
        t.check('"msg":"OFFSET GAP' in log, "no OFFSET GAP line:\n%s" % svc.log_tail())
        t.check(rc == 1, "exit code %s (must leave with 1 after the gap); log:\n%s" %
                (rc, svc.log_tail()))
    finally:
        svc.stop()
    finish_clean(env, url, topic, group, before + after, "after-gap")
    t.drop_database(env, url)
    print("assign_at_end: the gap was refused, nothing stored; %d events exact after restart" %
          len(before + after))


def main():
    t0 = time.monotonic()
    load_fails()
    assign_at_end()
    print("offsets_load: ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
