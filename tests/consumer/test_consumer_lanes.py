"""CONSUMER_WRITERS other than the default 2, and CONSUMER_PIPELINE=false (issue 19, item 10):
the settings take effect and keep the promises. For each of writers=1, writers=3 and
writers=2 without the pipeline, 6000 events on a 6-partition topic:

- every event is stored exactly once, the rollups equal GROUP BY over public.events, and the
  offsets table reaches every partition's high watermark;
- the consumer holds exactly CONSUMER_WRITERS Postgres connections (application_name
  epp-consumer, pg_stat_activity) -- one per lane, each lane owning partitions p % writers;
- it runs one writer thread per lane (thread name epp-writer) with the pipeline, none without
  (the writes then happen on the polling thread);
- SIGTERM: exit 0."""

import os
import sys
import time

import consumer_testlib as c

t = c.t

CASES = (
    {"CONSUMER_WRITERS": "1"},
    {"CONSUMER_WRITERS": "3"},
    {"CONSUMER_WRITERS": "2", "CONSUMER_PIPELINE": "false"},
)


def connections(url):
    return c.pg_value(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                      "current_database() AND application_name = 'epp-consumer'")


def writer_threads(pid):
    n = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                n += f.read().strip() == "epp-writer"
        except OSError:
            pass
    return n


def run_case(extra, seed):
    writers = int(extra["CONSUMER_WRITERS"])
    pipeline = extra.get("CONSUMER_PIPELINE", "true") == "true"
    env, url, topic = c.setup("cons_lanes", partitions=6)
    group = "g_" + topic
    msgs = c.make_events(6000, seed=seed)
    t.produce(env, topic, msgs)
    svc = c.consumer(env, url, topic, group=group, extra_env=extra,
                     log_name="%s-w%d%s" % (topic, writers, "" if pipeline else "-nopipe"))
    svc.start()
    try:
        c.wait_caught_up(env, url, group, topic, timeout=90, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
        n_conn = connections(url)
        n_threads = writer_threads(svc.proc.pid)
        t.check(n_conn == writers, "%s: %d Postgres connections (want %d)" %
                (extra, n_conn, writers))
        want_threads = writers if pipeline else 0
        t.check(n_threads == want_threads, "%s: %d writer threads (want %d)" %
                (extra, n_threads, want_threads))
    finally:
        rc = svc.stop()
    t.check(rc == 0, "%s: exit code %s" % (extra, rc))
    t.drop_database(env, url)
    print("%s: 6000 events exact, %d connections, %d writer threads" %
          (extra, n_conn, n_threads))


def main():
    t0 = time.monotonic()
    for i, extra in enumerate(CASES):
        run_case(extra, seed=50 + i)
    print("lanes: ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
