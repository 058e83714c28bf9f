"""Dead letters the broker would take, and dead letters it refuses (issue 19, defect 2).

1. A foreign message of 1,000,000 bytes (not an epp event, with its own header) between 300 good
   events on a one-partition topic of the fixture broker: its dead-letter copy (the value plus
   the error headers, over librdkafka's default message.max.bytes of 1,000,000) is produced and
   acknowledged -- value and key byte for byte, the original header, error.code=invalid_json,
   source.partition and source.offset -- and every good event is stored exactly once. (Before
   the fix the copy was refused locally, forever, and the 300 good events behind it waited.)
2. A dead-letter topic that refuses every produce (a private dev broker answering Produce with
   MSG_SIZE_TOO_LARGE, as a DLQ topic with a smaller size limit would): the refusal surfaces --
   epp_consumer_dead_letter_failures_total keeps growing, epp_consumer_dead_letter_blocked is 1,
   /ready answers 503 naming the dead letters, a DEAD LETTER NOT PRODUCED line is logged -- and
   nothing is skipped: the offsets never pass the poison message. Once the broker takes produces
   again, the poison is dead-lettered, every good event is stored, the gauge returns to 0 and
   /ready to 200."""

import json
import sys
import time

import consumer_testlib as c

t = c.t

FOREIGN_BYTES = 1000000


def header(msg, name):
    for k, v in msg.headers() or []:
        if k == name:
            return v
    return None


def foreign_message():
    env, url, topic = c.setup("cons_dlqbig", partitions=1)
    dlq = topic + ".dlq"
    t.create_topic(env, dlq, partitions=1)
    group = "g_" + topic
    good = c.make_events(600, seed=31)
    value = b"<foreign>" + b"x" * (FOREIGN_BYTES - len(b"<foreign></foreign>")) + b"</foreign>"
    assert len(value) == FOREIGN_BYTES
    # A producer sized for it (a Kafka broker takes up to 1,048,588 bytes by default).
    p = t.kafka_producer(env, message_max_bytes=1048576)
    for k, v in good[:300]:
        p.produce(topic, key=k, value=v)
    p.produce(topic, key=b"foreign-key", value=value, headers=[("origin", b"elsewhere")])
    for k, v in good[300:]:
        p.produce(topic, key=k, value=v)
    t.check(p.flush(30) == 0, "producing the foreign message")
    svc = c.consumer(env, url, topic, group=group, log_name=topic)
    svc.start()
    try:
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, v in good})
        letters = c.consume_dlq(env, dlq, 1)
        t.check(len(letters) == 1, "%d dead letters (want 1)" % len(letters))
        m = letters[0]
        t.check(m.value() == value and m.key() == b"foreign-key",
                "the dead letter is not the message: %d bytes, key %r" % (len(m.value() or b""),
                                                                          m.key()))
        t.check(header(m, "origin") == b"elsewhere", "original header lost")
        t.check(header(m, "error.code") == b"invalid_json", "error.code %r" %
                header(m, "error.code"))
        t.check(header(m, "source.partition") == b"0" and header(m, "source.offset") == b"300",
                "source %r/%r" % (header(m, "source.partition"), header(m, "source.offset")))
        t.check(c.metric(svc, "epp_consumer_dead_letter_failures_total") == 0,
                "dead-letter failures counted for a message the DLQ took")
    finally:
        rc = svc.stop()
    t.check(rc == 0, "exit code %s" % rc)
    t.drop_database(env, url)
    print("foreign message: %d-byte dead letter acknowledged, 600 good events exact" %
          FOREIGN_BYTES)


def ready(svc):
    status, _, body = t.http_request("GET", svc.url("/ready"), timeout=10)
    return status, json.loads(body)


def refused_dead_letter():
    env = t.load_env()
    name = t.unique_name("cons_dlqrefused")
    url = t.create_database(env, name)
    with t.DevBroker(env, brokers=1, partitions=1, log_name=name + "-broker") as benv:
        topic = t.create_topic(benv, name, partitions=1)
        dlq = t.create_topic(benv, name + ".dlq", partitions=1)
        group = "g_" + topic
        good = c.make_events(400, seed=32)
        poison_offset = 200
        msgs = good[:poison_offset] + [(b"k", b"not json {")] + good[poison_offset:]
        t.produce(benv, topic, msgs)
        st, body = t.broker_control(benv, "POST",
                                    "/errors?api=Produce&codes=MSG_SIZE_TOO_LARGE&count=1000")
        t.check(st == 200, "injecting Produce errors: %s %r" % (st, body))
        svc = c.consumer(benv, url, topic, group=group, log_name=name,
                         extra_env={"RETRY_MAX_BACKOFF_MS": "300", "SHUTDOWN_TIMEOUT_MS": "2000"})
        svc.start()
        try:
            t.wait_for(lambda: c.metric(svc, "epp_consumer_dead_letter_failures_total") >= 2,
                       timeout=60, msg="dead-letter failures counted")
            t.check(c.metric(svc, "epp_consumer_dead_letter_blocked") == 1,
                    "epp_consumer_dead_letter_blocked is not 1")
            status, body = ready(svc)
            t.check(status == 503 and "dead letters" in body.get("reason", ""),
                    "/ready with the dead letters refused: %s %s" % (status, body))
            t.check('"msg":"DEAD LETTER NOT PRODUCED' in svc.log_text(),
                    "no DEAD LETTER NOT PRODUCED line")
            # Retried, never skipped: more failures, and the offsets stay before the poison.
            before = c.metric(svc, "epp_consumer_dead_letter_failures_total")
            time.sleep(2)
            t.check(c.metric(svc, "epp_consumer_dead_letter_failures_total") > before,
                    "the refused dead letter is no longer retried")
            stored = c.offsets(url, group, topic).get(0, -1)
            t.check(stored <= poison_offset, "offsets moved past the poison (%d) to %d" %
                    (poison_offset, stored))
            t.check(c.count_rows(url) <= poison_offset, "rows behind the poison were stored")

            st, body = t.broker_control(benv, "POST", "/errors/clear?api=Produce")
            t.check(st == 200, "clearing Produce errors: %s %r" % (st, body))
            c.wait_caught_up(benv, url, group, topic, timeout=60, procs=[svc])
            c.check_exact(url, {c.event_id_of(v) for _, v in good})
            t.wait_for(lambda: ready(svc)[0] == 200, timeout=20, msg="/ready 200 again")
            t.check(c.metric(svc, "epp_consumer_dead_letter_blocked") == 0,
                    "epp_consumer_dead_letter_blocked did not return to 0")
            letters = c.consume_dlq(benv, dlq, 1)
            t.check(len(letters) >= 1 and all(m.value() == b"not json {" for m in letters),
                    "dead letters after the recovery: %r" % [m.value()[:40] for m in letters])
        finally:
            rc = svc.stop()
        t.check(rc == 0, "exit code %s; log:\n%s" % (rc, svc.log_tail()))
    t.drop_database(env, url)
    print("refused dead letter: surfaced (metric, gauge, /ready, log), nothing skipped, "
          "recovered")


def main():
    t0 = time.monotonic()
    foreign_message()
    refused_dead_letter()
    print("dlq_limits: ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
