"""The test-only failpoint EPP_FAILPOINT=after_db_commit: the consumer dies (exit 137) right after
a batch's database COMMIT and before the Kafka commit. After a restart: no duplicate, no gap --
the offsets table, not Kafka, says where to resume."""

import sys
import time

import consumer_testlib as c

t = c.t


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_fp")
    group = "g_" + topic
    extra = {"CONSUMER_BATCH_SIZE": "1000", "KAFKA_SESSION_TIMEOUT_MS": "6000"}
    msgs = c.make_events(10000, seed=5)
    t.produce(env, topic, msgs)
    fp = c.consumer(env, url, topic, group=group,
                    extra_env=dict(extra, EPP_FAILPOINT="after_db_commit"),
                    log_name=topic + "-failpoint")
    fp.start()
    rc = fp.wait(60)
    fp.stop()
    t.check(rc == 137, "failpoint exit code %s:\n%s" % (rc, fp.log_tail()))
    at_crash = c.count_rows(url)
    stored = sum(c.offsets(url, group, topic).values())
    t.check(0 < at_crash <= 1000 and stored == at_crash,
            "after the failpoint: %d rows, offsets table says %d" % (at_crash, stored))
    # Kafka never heard of that commit: its committed offsets are behind the table.
    svc = c.consumer(env, url, topic, group=group, extra_env=extra, log_name=topic + "-after")
    svc.start()
    try:
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
        dups = c.metric(svc, "epp_consumer_duplicates_skipped_total")
        t.check(dups == 0, "the restart re-read %s stored messages" % dups)
    finally:
        rc = svc.stop()
    t.check(rc == 0, "exit code %s" % rc)
    t.drop_database(env, url)
    print("failpoint: %d rows at the crash, %d exact after restart; ok (%s)" %
          (at_crash, len(msgs), c.elapsed(t0)))


if __name__ == "__main__":
    sys.exit(main())
