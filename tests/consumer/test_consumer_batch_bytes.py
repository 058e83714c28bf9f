"""CONSUMER_BATCH_BYTES: a batch of large events is written once it holds that many message
bytes, before CONSUMER_BATCH_SIZE rows or CONSUMER_BATCH_MS (it bounds the consumer's memory;
event_consumer/README.md). 600 events of ~4.3 KB, a 64 KiB bound, 5,000 rows and 3 s allowed
otherwise: every batch holds at most 16 messages and every row is stored once."""

import sys
import time

import consumer_testlib as c

t = c.t


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_batch_bytes")
    n = 600
    pad = "x" * 4096
    # make_events' messages with a 4 KB string member added to the metadata.
    msgs = [(k, v.replace(b'"metadata":{', b'"metadata":{"pad":"%s",' % pad.encode()))
            for k, v in c.make_events(n, seed=11)]
    size = len(msgs[0][1])
    t.check(size > 4096, "message of %d bytes" % size)
    t.produce(env, topic, msgs)
    svc = c.consumer(env, url, topic, extra_env={"CONSUMER_BATCH_BYTES": "65536",
                                                 "CONSUMER_BATCH_SIZE": "5000",
                                                 "CONSUMER_BATCH_MS": "3000"})
    svc.start()
    try:
        c.wait_rows(url, n, timeout=60, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
        batches = c.metric(svc, "epp_consumer_batch_size_count")
        small = c.metric(svc, "epp_consumer_batch_size_bucket", {"le": "100"})
        biggest = 65536 // size + 1
        print("%d events of %d bytes in %d batches, %d of them of <= 100 messages" %
              (n, size, batches, small))
        # Without the bound the 600 messages come in one or two batches per lane.
        t.check(batches >= n // biggest, "only %d batches for %d messages" % (batches, n))
        t.check(small == batches, "%d of %d batches held over 100 messages" %
                (batches - small, batches))
        t.check(c.metric(svc, "epp_consumer_messages_consumed_total") == n, "consumed count")
    finally:
        rc = svc.stop()
    c.finish(env, url, svc, rc, t0)


if __name__ == "__main__":
    sys.exit(main())
