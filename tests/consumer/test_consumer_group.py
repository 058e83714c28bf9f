"""Two consumers in one group: they start together (the migrations are applied exactly once,
under the advisory lock), share the partitions, and when one stops (SIGTERM: it finishes its
batch and leaves the group) the other takes its partitions over with no loss and no duplicate."""

import sys
import threading
import time

import consumer_testlib as c

t = c.t


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_group", partitions=8)
    group = "g_" + topic
    n = 40000
    msgs = c.make_events(n, seed=17)
    extra = {"KAFKA_SESSION_TIMEOUT_MS": "6000", "CONSUMER_BATCH_SIZE": "2000"}
    a = c.consumer(env, url, topic, group=group, extra_env=extra, log_name=topic + "-a")
    b = c.consumer(env, url, topic, group=group, extra_env=extra, log_name=topic + "-b")
    a.start(wait_healthy=False)
    b.start(wait_healthy=False)
    a.wait_healthy()
    b.wait_healthy()
    errors = []
    producer = threading.Thread(target=c.produce_evenly, args=(env, topic, msgs, 12.0, errors))
    producer.start()
    try:
        # Both get partitions.
        def both_assigned():
            return all('"partitions assigned"' in s.log_text() for s in (a, b))
        t.wait_for(both_assigned, timeout=30, msg="both consumers assigned")
        c.wait_rows(url, 8000, timeout=30, procs=[a, b])
        rc = a.stop()
        t.check(rc == 0, "A's SIGTERM exit code %s:\n%s" % (rc, a.log_tail()))
        print("A stopped at %d rows (%s)" % (c.count_rows(url), c.elapsed(t0)))
        producer.join(60)
        t.check(not errors, "producer: %s" % errors)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[b])
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
        applied = sum(s.log_text().count('"migration applied"') for s in (a, b))
        conn = t.pg_connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.epp_schema_migrations")
            recorded = cur.fetchone()[0]
        conn.close()
        t.check(applied == recorded and recorded >= 2,
                "migrations applied %d times, %d recorded" % (applied, recorded))
        print("B took over: %d rows exact; migrations applied once each (%s)" %
              (n, c.elapsed(t0)))
    finally:
        a.stop()
        rb = b.stop()
    t.check(rb == 0, "B exit code %s" % rb)
    t.drop_database(env, url)
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
