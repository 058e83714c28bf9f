"""Poison messages mixed into good ones: each lands in the DLQ topic with its headers (error code
and text, source topic/partition/offset, and the original headers), every good message is
stored, rollups are exact, and the consumer never stops. Includes a value that passes decoding
but that Postgres rejects (a CHECK constraint added for the test), which the consumer must
isolate row by row."""

import json
import sys
import time
import uuid

import consumer_testlib as c

t = c.t


def poison_messages():
    good_ts = c.BASE_TS
    eid = lambda: str(uuid.uuid4())  # noqa: E731
    return [
        ("not_json", b"this is not json {"),
        ("missing_fields", b'{"user_id":"u1"}'),
        ("nul_in_metadata", c.canonical(eid(), "u1", "click", good_ts, '{"a":"x\\u0000y"}')),
        ("overlong_field", c.canonical(eid(), "u" * 300, "click", good_ts)),
        ("bad_timestamp", c.canonical(eid(), "u1", "click", good_ts).replace(
            b'"timestamp":"2026-11-27T08:00:00.000Z"', b'"timestamp":"2026-13-45T99:00:00Z"')),
        ("empty", b""),
        ("db_rejected", c.canonical(eid(), "db-reject-me", "click", good_ts)),
    ]


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_poison")
    dlq = topic + ".dlq"
    t.create_topic(env, dlq, partitions=1)
    group = "g_" + topic
    svc = c.consumer(env, url, topic, group=group)
    svc.start()
    try:
        t.wait_schema(url)
        conn = t.pg_connect(url)
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE public.events ADD CONSTRAINT test_reject "
                        "CHECK (user_id <> 'db-reject-me')")
        conn.close()

        good = c.make_events(3000, seed=11)
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 5})
        kinds = {}
        gi = 0
        sent_values = {}
        for round_ in range(2):
            # Fresh event_ids each round: the same event_id twice would be a duplicate.
            for kind, value in poison_messages():
                sent_values.setdefault(kind, set()).add(value)
                for _ in range(200):
                    k, v = good[gi]
                    gi += 1
                    p.produce(topic, key=k, value=v)
                # Key "k0" for all poison: one partition, several poison messages in a batch.
                p.produce(topic, key=b"k0", value=value or None,
                          headers=[("traceparent", b"00-abc-def-01"), ("x-kind", kind.encode())])
                kinds.setdefault(kind, 0)
                kinds[kind] += 1
        while gi < len(good):
            k, v = good[gi]
            gi += 1
            p.produce(topic, key=k, value=v)
        t.check(p.flush(30) == 0, "produce did not finish")

        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, v in good})
        t.check(svc.alive(), "consumer stopped")

        letters = c.consume_dlq(env, dlq, sum(kinds.values()))
        t.check(len(letters) == sum(kinds.values()),
                "%d dead letters, expected %d" % (len(letters), sum(kinds.values())))
        seen = {}
        for m in letters:
            h = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
            for k in ("error.code", "error.message", "source.topic", "source.partition",
                      "source.offset", "traceparent", "x-kind"):
                t.check(h.get(k), "dead letter without header %s: %r" % (k, h))
            t.check(h["source.topic"] == topic, "source.topic %r" % h["source.topic"])
            kind = h["x-kind"]
            seen[kind] = seen.get(kind, 0) + 1
            t.check((m.value() or b"") in sent_values[kind], "dead letter value changed: %s" % kind)
            t.check(m.key() == b"k0", "key not kept")
            int(h["source.partition"]), int(h["source.offset"])
            if kind == "db_rejected":
                t.check(h["error.code"] == "db_rejected", "code %r" % h["error.code"])
                t.check("23514" in h["error.message"], "message %r" % h["error.message"])
            print("  %-16s -> %s: %s" % (kind, h["error.code"], h["error.message"][:70]))
        t.check(seen == kinds, "dead letters by kind %r, expected %r" % (seen, kinds))
        total = c.metric(svc, "epp_consumer_dead_lettered_total")
        t.check(total == sum(kinds.values()), "dead_lettered_total %s" % total)
        t.check(c.metric(svc, "epp_consumer_dead_lettered_total", {"reason": "db_rejected"}) == 2,
                "db_rejected not counted by reason")
        status, _, _ = t.http_request("GET", svc.url("/ready"))
        t.check(status == 200, "/ready %s" % status)
    finally:
        rc = svc.stop()
    c.finish(env, url, svc, rc, t0)


if __name__ == "__main__":
    sys.exit(main())
