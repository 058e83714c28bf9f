"""One event's trace, end to end, at the OTLP test receiver (otlp_receiver.py), with the whole
stack (tests/lib/epp_stack.py) exporting to it:

- epp-ingest: POST /events with a client traceparent is a SERVER span in the client's trace,
  child of the client's span, with a PRODUCER child span (messaging.system kafka, the topic as
  destination); the Kafka message's traceparent header is exactly the PRODUCER span's context.
  A batch of events is one SERVER and one PRODUCER span, every message carrying its context.
- epp-consumer: once the consumer exports spans (its /metrics then has
  epp_otel_spans_exported_total), the batch that stored the event is a CONSUMER span linked to
  the PRODUCER span of the event's message. Until then that part is reported as not wired.
- epp-analytics: a query in the same client trace adds its SERVER and CLIENT spans to it.
Every payload passes the OTLP JSON mapping checks.

Usage: test_traces_e2e.py BUILD_DIR (needs the pg and broker fixtures)."""
import os
import sys
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import epp_testlib as t  # noqa: E402
from epp_stack import Stack  # noqa: E402
from otlp_receiver import OtlpReceiver  # noqa: E402

failures = []
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def headers_of(env, topic, count, timeout=20.0):
    """{event_id: traceparent header} of the first count messages of topic."""
    import json
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
                  "group.id": t.unique_name("obs_e2e"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    out = {}
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for m in c.consume(num_messages=100, timeout=0.5):
                if m.error():
                    continue
                hdrs = {k: (v.decode() if v else None) for k, v in (m.headers() or [])}
                out[json.loads(m.value())["event_id"]] = hdrs.get("traceparent")
    finally:
        c.close()
    return out


def main():
    env = t.load_env(sys.argv[1] if len(sys.argv) > 1 else None)
    with OtlpReceiver() as rx, Stack(env, name="obs_e2e",
                                     extra_env={"HTTP_BIND_ADDRESS": "127.0.0.1",
                                                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint}) as s:
        trace_id, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        tp = "00-%s-%s-01" % (trace_id, client_span)
        st, _, body = t.http_json("POST", s.ingest_url + "/events",
                                  {"user_id": "u-e2e", "event_name": "traced"},
                                  headers={"traceparent": tp}, timeout=30)
        expect(st == 202, "POST /events: %s %r" % (st, body))
        event_id = body.get("event_id") if isinstance(body, dict) else None
        batch_trace, batch_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        st, _, body = t.http_json("POST", s.ingest_url + "/events/batch",
                                  [{"user_id": "b%d" % i, "event_name": "traced_batch"}
                                   for i in range(3)],
                                  headers={"traceparent": "00-%s-%s-01" % (batch_trace, batch_span)},
                                  timeout=30)
        expect(st in (200, 202, 207), "POST /events/batch: %s %r" % (st, body))
        batch_ids = [r.get("event_id") for r in body.get("results", [])] if isinstance(body, dict) else []
        s.wait_rows(4, timeout=30)

        # Ingest: SERVER (child of the client's span) -> PRODUCER; the message carries PRODUCER.
        def ingest_spans(tid):
            return [x for x in rx.snapshot() if x["trace_id"] == tid and x["service"] == "epp-ingest"]
        rx.wait_spans(lambda _: len(ingest_spans(trace_id)) >= 2 and len(ingest_spans(batch_trace)) >= 2)
        msgs = headers_of(env, s.topic, 4)
        producers = {}
        for tid, parent, ids, route in ((trace_id, client_span, [event_id], "/events"),
                                        (batch_trace, batch_span, batch_ids, "/events/batch")):
            spans = ingest_spans(tid)
            srv = [x for x in spans if x["kind"] == SERVER]
            prod = [x for x in spans if x["kind"] == PRODUCER]
            if not expect(len(srv) == 1 and len(prod) == 1,
                          "%s: want one SERVER and one PRODUCER span, got %r" % (route, spans)):
                continue
            srv, prod = srv[0], prod[0]
            expect(srv["parent"] == parent, "%s: SERVER parent %s, want %s" % (route, srv["parent"], parent))
            expect(srv["attrs"].get("http.route") == route and
                   srv["attrs"].get("http.response.status_code") in (200, 202, 207),
                   "%s: SERVER attributes %r" % (route, srv["attrs"]))
            expect(prod["parent"] == srv["span_id"], "%s: PRODUCER is not the SERVER span's child" % route)
            expect(prod["attrs"].get("messaging.system") == "kafka" and
                   prod["attrs"].get("messaging.destination.name") == s.topic,
                   "%s: PRODUCER attributes %r" % (route, prod["attrs"]))
            want = "00-%s-%s-01" % (tid, prod["span_id"])
            for eid in ids:
                expect(msgs.get(eid) == want, "%s: message %s traceparent %r, want %r"
                       % (route, eid, msgs.get(eid), want))
            producers[tid] = prod

        # Consumer: a CONSUMER span per batch, linked to the messages' PRODUCER spans.
        if t.metric_present(s.consumer_url, "epp_otel_spans_exported_total"):
            for tid, prod in producers.items():
                def linked(spans, tid=tid, prod=prod):
                    return [x for x in spans if x["service"] == "epp-consumer" and
                            x["kind"] == CONSUMER and (tid, prod["span_id"]) in x["links"]]
                try:
                    spans = rx.wait_spans(lambda sp: linked(sp), timeout=15)
                    c = linked(spans)[0]
                    expect(c["attrs"].get("messaging.system") == "kafka",
                           "CONSUMER span attributes %r" % c["attrs"])
                except AssertionError as e:
                    expect(False, "no CONSUMER span linked to the PRODUCER span of trace %s: %s"
                           % (tid, e))
            print("consumer: CONSUMER spans linked to the producer spans")
        else:
            print("consumer: exports no spans yet (no epp_otel_spans_exported_total): "
                  "the ingest -> Kafka part of the trace is checked, the consumer part is not wired")

        # Analytics: the same client trace continues into a query.
        q = urllib.parse.urlencode({"from_ts": "2020-01-01T00:00:00Z", "to_ts": "2040-01-01T00:00:00Z"})
        st, _, _ = t.http_request("GET", s.analytics_url + "/analytics/events/count?" + q,
                                  headers={"traceparent": tp})
        expect(st == 200, "analytics count: %s" % st)
        spans = rx.wait_spans(lambda sp: len([x for x in sp if x["trace_id"] == trace_id
                                              and x["service"] == "epp-analytics"]) >= 2)
        kinds = sorted(x["kind"] for x in spans if x["trace_id"] == trace_id
                       and x["service"] == "epp-analytics")
        expect(kinds == [SERVER, CLIENT], "analytics spans in the client's trace: kinds %r" % kinds)
        expect(not rx.errors, "invalid OTLP payloads: %r" % rx.errors[:5])
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
