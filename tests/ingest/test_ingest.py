#!/usr/bin/env python3
"""Integration tests of epp-ingest (issue 3, docs/contract.md §4) against the dev broker.

    test_ingest.py BUILD_DIR e2e            10,000 events in the topic exactly once (shared broker)
    test_ingest.py BUILD_DIR tracing        OTLP spans per request, trace context into Kafka
    test_ingest.py BUILD_DIR bad_input      table of bad requests: status + error.code
    test_ingest.py BUILD_DIR brokers_down   503 within the delivery timeout; recovery (private broker)
    test_ingest.py BUILD_DIR retriable      injected retriable produce errors cost latency only
    test_ingest.py BUILD_DIR sigterm        SIGTERM with 200 requests in flight: truthful answers
    test_ingest.py BUILD_DIR fatal          fatal producer error: 503s, then 202s again

Tests that inject faults start a private epp-devbroker so that they never disturb other tests
that share the fixture broker.
"""

import concurrent.futures
import gzip
import http.client
import json
import os
import re
import signal
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import epp_testlib as t  # noqa: E402

TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection (http.client), reconnecting when the server closes."""

    def __init__(self, port, timeout=30.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=b"", headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                raw = resp.read()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if hdrs.get("connection", "").lower() == "close":
                    self.close()
                parsed = None
                if raw[:1] in (b"{", b"["):
                    parsed = json.loads(raw)
                return resp.status, hdrs, parsed if parsed is not None else raw
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise

    def post_json(self, path, obj, gz=False, headers=None, ndjson=False):
        if ndjson:
            body = "".join(json.dumps(o) + "\n" for o in obj).encode()
            ctype = "application/x-ndjson"
        else:
            body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            ctype = "application/json"
        h = {"Content-Type": ctype}
        if gz:
            body = gzip.compress(body)
            h["Content-Encoding"] = "gzip"
        h.update(headers or {})
        return self.request("POST", path, body, h)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def start_ingest(env, topic, extra=None, log_name=None):
    e = {"KAFKA_TOPIC": topic, "LOG_LEVEL": "info"}
    e.update(extra or {})
    port = t.free_port()
    svc = t.ServiceProcess(env, "epp-ingest", port=port, extra_env=e,
                           log_name=log_name or t.unique_name("ingest"))
    svc.start()
    return svc


def wait_ready(svc, timeout=20.0, headers=None):
    t.wait_for(lambda: t.http_request("GET", svc.url("/ready"), headers=headers,
                                      timeout=2)[0] == 200, timeout, msg="GET /ready == 200")


def consume_with_headers(env, topic, count=None, timeout=60.0, idle_timeout=None, want=None):
    """Every message of topic as dicts {key, value, headers, partition, offset}. Stops after
    count messages, or once every event_id in want was seen (then after 1 s more, to catch
    duplicates), or after idle_timeout without a message, or at timeout."""
    from confluent_kafka import Consumer, KafkaError
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
                  "group.id": t.unique_name("g"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    out = []
    idle_timeout = idle_timeout or (timeout if count is not None or want else 3.0)
    missing = set(want or ())
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while count is None or len(out) < count:
            now = time.monotonic()
            # Idle time counts only once messages flow: joining the group takes a while.
            if now >= deadline or (out and now - last >= idle_timeout):
                break
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise t.TestFailure("consume: %s" % m.error())
                out.append({"key": m.key(), "value": m.value(),
                            "headers": dict(m.headers() or []),
                            "partition": m.partition(), "offset": m.offset()})
                last = time.monotonic()
                if want and missing:
                    missing.discard(json.loads(m.value()).get("event_id"))
                    if not missing:
                        deadline = min(deadline, time.monotonic() + 1.0)
    finally:
        c.close()
    return out


metric_value = t.metric_value


def ev(i, **kw):
    e = {"user_id": "user-%d" % (i % 97), "event_name": "evt_%d" % (i % 7),
         "metadata": {"i": i, "tag": "t%d" % i}}
    e.update(kw)
    return e


# ---------------------------------------------------------------------------------------------
# e2e: 10,000 events, each exactly once, with fields, key and headers
# ---------------------------------------------------------------------------------------------

def e2e(env):
    topic = t.create_topic(env, t.unique_name("ingest_e2e"), 4)
    # 80 batches of 100 (array, {"events"}, NDJSON; half gzip'd), 1,999 single POSTs and the
    # exact-metadata event: 10,000 events.
    n_batches = 80
    n_single = 10000 - 1 - n_batches * 100
    svc = start_ingest(env, topic)
    try:
        wait_ready(svc)
        expected = {}       # event_id -> the event as sent (plus what the server must add)
        lock = threading.Lock()
        client_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

        def record(sent, event_id):
            with lock:
                t.check(event_id not in expected, "event_id %s returned twice" % event_id)
                expected[event_id] = sent

        # Singles: a client event_id on every 3rd, an RFC 3339 timestamp on every 5th, epoch ms
        # on every 7th, gzip on every 10th, a client traceparent on every 4th.
        def singles(worker, nworkers):
            c = Client(svc.port)
            for i in range(worker, n_single, nworkers):
                kw = {}
                if i % 3 == 0:
                    kw["event_id"] = str(uuid.uuid4())
                if i % 5 == 0:
                    kw["timestamp"] = "2026-01-02T03:04:05.678Z"
                elif i % 7 == 0:
                    kw["timestamp"] = 1767225600000 + i
                e = ev(i, **kw)
                hdrs = {"traceparent": client_trace} if i % 4 == 0 else None
                status, _, body = c.post_json("/events", e, gz=(i % 10 == 0), headers=hdrs)
                t.check(status == 202, "single %d: %s %r" % (i, status, body))
                t.check(body["status"] == "accepted", "single body %r" % body)
                if "event_id" in kw:
                    t.check(body["event_id"] == kw["event_id"], "client event_id not kept")
                record(dict(e, _trace=bool(hdrs)), body["event_id"])
            c.close()

        def batches(worker, nworkers, n_batches, base):
            c = Client(svc.port)
            for b in range(worker, n_batches, nworkers):
                evs = [ev(base + b * 100 + k) for k in range(100)]
                shape = b % 3
                gz = b % 2 == 0
                if shape == 0:
                    status, _, body = c.post_json("/events/batch", evs, gz=gz)
                elif shape == 1:
                    status, _, body = c.post_json("/events/batch", {"events": evs}, gz=gz)
                else:
                    status, _, body = c.post_json("/events/batch", evs, gz=gz, ndjson=True)
                t.check(status == 202, "batch %d: %s %r" % (b, status, body))
                t.check(body["accepted"] == 100 and body["rejected"] == 0, "batch %r" % body)
                for r, e in zip(body["results"], evs):
                    t.check("error" not in r, "batch item error %r" % r)
                    record(dict(e, _trace=False), r["event_id"])
            c.close()

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            futs = [pool.submit(singles, w, 8) for w in range(8)]
            futs += [pool.submit(batches, w, 4, n_batches, 100000) for w in range(4)]
            for f in futs:
                f.result()
        # The exact-metadata event, sent as raw text.
        raw = ('{"user_id": "exact", "event_name": "meta", "metadata": {"big": '
               '12345678901234567890, "x": 0.1, "s": "\u00e9\U0001F600"}}').encode("utf-8")
        status, _, body = Client(svc.port).post_json("/events", raw)
        t.check(status == 202, "exact metadata: %s %r" % (status, body))
        exact_id = body["event_id"]
        expected[exact_id] = {"user_id": "exact", "event_name": "meta", "_trace": False}
        total = len(expected)
        print("e2e: %d events accepted in %.1fs" % (total, time.monotonic() - start))
        t.check(total == n_single + n_batches * 100 + 1, "accepted %d" % total)

        msgs = consume_with_headers(env, topic, count=total, timeout=60)
        seen = {}
        for m in msgs:
            v = json.loads(m["value"])
            eid = v["event_id"]
            t.check(eid in expected, "unexpected event_id in topic: %s" % eid)
            t.check(eid not in seen, "event %s stored twice" % eid)
            seen[eid] = m
            sent = expected[eid]
            t.check(list(v.keys()) == ["event_id", "user_id", "event_name", "timestamp",
                                       "received_at", "metadata"], "member order %r" % list(v))
            t.check(m["key"] == sent["user_id"].encode(), "key %r for %r" % (m["key"], sent))
            t.check(v["user_id"] == sent["user_id"] and v["event_name"] == sent["event_name"],
                    "fields %r vs %r" % (v, sent))
            if "metadata" in sent:
                t.check(v["metadata"] == sent["metadata"], "metadata %r" % v)
            t.check(RFC3339_RE.match(v["received_at"]), "received_at %r" % v["received_at"])
            t.check(RFC3339_RE.match(v["timestamp"]), "timestamp %r" % v["timestamp"])
            if sent.get("timestamp") == "2026-01-02T03:04:05.678Z":
                t.check(v["timestamp"] == "2026-01-02T03:04:05.678Z", "ts %r" % v["timestamp"])
            t.check(m["headers"].get("content-type") == b"application/json", "content-type")
            tp = (m["headers"].get("traceparent") or b"").decode()
            mt = TRACEPARENT_RE.match(tp)
            t.check(mt, "traceparent %r" % tp)
            if sent["_trace"]:
                t.check(mt.group(1) == client_trace[3:35], "client trace id not propagated")
                t.check(mt.group(2) != client_trace[36:52], "span id must be new")
        t.check(len(seen) == total, "%d of %d events in the topic" % (len(seen), total))
        exact = seen[exact_id]["value"].decode("utf-8")
        want = '"metadata":{"big":12345678901234567890,"x":0.1,"s":"\u00e9\U0001F600"}'
        t.check(want in exact, "metadata text changed: %s" % exact)
        acc = metric_value(svc, "epp_ingest_events_accepted_total")
        t.check(acc == total, "epp_ingest_events_accepted_total %r != %d" % (acc, total))
        print("e2e: all %d events in the topic exactly once, fields/key/headers ok" % total)
    finally:
        rc = svc.stop()
    t.check(rc == 0, "epp-ingest exit code %s" % rc)


# ---------------------------------------------------------------------------------------------
# bad input: one table, each row the status and error.code it must get
# ---------------------------------------------------------------------------------------------

def bad_input(env):
    topic = t.create_topic(env, t.unique_name("ingest_bad"), 2)
    key = "k-" + uuid.uuid4().hex
    svc = start_ingest(env, topic, {"INGEST_API_KEYS": "other-key," + key,
                                    "MAX_BODY_BYTES": str(256 * 1024),
                                    "CORS_ORIGINS": "https://app.example"})
    limited = start_ingest(env, topic, {"RATE_LIMIT_RPS": "1", "RATE_LIMIT_BURST": "3"})
    try:
        auth = {"Authorization": "Bearer " + key}
        wait_ready(svc, headers=auth)
        J = "application/json"
        good = {"user_id": "u", "event_name": "e"}
        deep = {"a": 1}
        for _ in range(40):
            deep = {"d": deep}
        future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 25 * 3600))
        big_meta = {"blob": "x" * (33 * 1024)}

        def jb(o):
            return json.dumps(o).encode()

        # (name, path, body bytes, headers, status, code)
        cases = [
            ("not json", "/events", b"{not json", {}, 400, "invalid_json"),
            ("empty body", "/events", b"", {}, 400, "invalid_json"),
            ("json array", "/events", b"[1,2]", {}, 400, "invalid_json"),
            ("json string", "/events", b'"x"', {}, 400, "invalid_json"),
            ("missing user_id", "/events", jb({"event_name": "e"}), {}, 400, "missing_field"),
            ("missing event_name", "/events", jb({"user_id": "u"}), {}, 400, "missing_field"),
            ("empty user_id", "/events", jb({"user_id": "", "event_name": "e"}), {}, 400,
             "invalid_field"),
            ("empty event_name", "/events", jb({"user_id": "u", "event_name": ""}), {}, 400,
             "invalid_field"),
            ("long user_id", "/events", jb({"user_id": "u" * 257, "event_name": "e"}), {}, 400,
             "invalid_field"),
            ("long event_name", "/events", jb({"user_id": "u", "event_name": "e" * 257}), {},
             400, "invalid_field"),
            ("user_id number", "/events", jb({"user_id": 5, "event_name": "e"}), {}, 400,
             "invalid_field"),
            ("event_name null", "/events", jb({"user_id": "u", "event_name": None}), {}, 400,
             "invalid_field"),
            ("control char", "/events", jb({"user_id": "u\n", "event_name": "e"}), {}, 400,
             "invalid_field"),
            ("unknown field", "/events", jb({"user_id": "u", "event": "e"}), {}, 400,
             "unknown_field"),
            ("received_at from client", "/events", jb(dict(good, received_at="2026-01-01T00:00:00Z")),
             {}, 400, "unknown_field"),
            ("nul escape", "/events", b'{"user_id":"u\\u0000","event_name":"e"}', {}, 400,
             "invalid_json"),
            ("invalid utf8", "/events", b'{"user_id":"u\xff\xfe","event_name":"e"}', {}, 400,
             "invalid_json"),
            ("lone surrogate", "/events", b'{"user_id":"u","event_name":"e","metadata":{"s":"\\ud800"}}',
             {}, 400, "invalid_json"),
            ("metadata array", "/events", jb(dict(good, metadata=[1])), {}, 400, "invalid_field"),
            ("metadata string", "/events", jb(dict(good, metadata="x")), {}, 400,
             "invalid_field"),
            ("metadata too deep", "/events", jb(dict(good, metadata=deep)), {}, 400,
             "invalid_field"),
            ("metadata too large", "/events", jb(dict(good, metadata=big_meta)), {}, 413,
             "payload_too_large"),
            ("bad timestamp", "/events", jb(dict(good, timestamp="yesterday")), {}, 400,
             "invalid_field"),
            ("bad timestamp type", "/events", jb(dict(good, timestamp=True)), {}, 400,
             "invalid_field"),
            ("far-future timestamp", "/events", jb(dict(good, timestamp=future)), {}, 400,
             "invalid_field"),
            ("far-future epoch ms", "/events",
             jb(dict(good, timestamp=int((time.time() + 25 * 3600) * 1000))), {}, 400,
             "invalid_field"),
            ("bad event_id", "/events", jb(dict(good, event_id="not-a-uuid")), {}, 400,
             "invalid_field"),
            ("event_id number", "/events", jb(dict(good, event_id=7)), {}, 400, "invalid_field"),
            ("body over limit", "/events", b'{"user_id":"u","event_name":"e","metadata":{"p":"' +
             b"x" * (300 * 1024) + b'"}}', {}, 413, "payload_too_large"),
            ("gzip bomb", "/events", gzip.compress(b" " * (20 * 1024 * 1024)),
             {"Content-Encoding": "gzip"}, 413, "payload_too_large"),
            ("corrupt gzip", "/events", b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"},
             400, "invalid_encoding"),
            ("unknown encoding", "/events", jb(good), {"Content-Encoding": "br"}, 415,
             "unsupported_media_type"),
            ("text/plain", "/events", jb(good), {"Content-Type": "text/plain"}, 415,
             "unsupported_media_type"),
            ("no content-type", "/events", jb(good), {"Content-Type": None}, 415,
             "unsupported_media_type"),
            ("latin1 charset", "/events", jb(good),
             {"Content-Type": "application/json; charset=iso-8859-1"}, 415,
             "unsupported_media_type"),
            ("ndjson on /events", "/events", jb(good), {"Content-Type": "application/x-ndjson"},
             415, "unsupported_media_type"),
            ("batch form-data", "/events/batch", jb([good]),
             {"Content-Type": "multipart/form-data"}, 415, "unsupported_media_type"),
            ("batch over 1000", "/events/batch", jb([good] * 1001), {}, 413, "payload_too_large"),
            ("ndjson over 1000", "/events/batch", (jb(good) + b"\n") * 1001,
             {"Content-Type": "application/x-ndjson"}, 413, "payload_too_large"),
            ("batch not json", "/events/batch", b"[{", {}, 400, "invalid_json"),
            ("batch scalar", "/events/batch", b"42", {}, 400, "invalid_json"),
            ("batch empty", "/events/batch", b"[]", {}, 400, "invalid_field"),
            ("batch object without events", "/events/batch", jb({"evts": []}), {}, 400,
             "missing_field"),
            ("batch events not array", "/events/batch", jb({"events": 5}), {}, 400,
             "invalid_json"),
            ("batch all invalid", "/events/batch", jb([{"user_id": ""}, 5]), {}, 400, None),
            ("wrong method", "/events", b"", {"_method": "GET"}, 405, None),
            ("no such route", "/nope", jb(good), {}, 404, None),
            ("missing api key", "/events", jb(good), {"Authorization": None}, 401, None),
            ("wrong api key", "/events", jb(good), {"Authorization": "Bearer wrong"}, 401, None),
            ("wrong X-API-Key", "/events", jb(good), {"Authorization": None, "X-API-Key": "no"},
             401, None),
        ]
        c = Client(svc.port)
        failures = []
        for name, path, body, hdrs, want_status, want_code in cases:
            h = {"Content-Type": J}
            h.update(auth)
            method = "POST"
            for k, v in hdrs.items():
                if k == "_method":
                    method = v
                elif v is None:
                    h.pop(k, None)
                else:
                    h[k] = v
            status, rh, rb = c.request(method, path, body, h)
            code = rb.get("error", {}).get("code") if isinstance(rb, dict) else None
            ok = status == want_status and (want_code is None or code == want_code)
            if want_status >= 400 and want_code is not None and isinstance(rb, dict):
                msg = rb["error"].get("message")
                ok = ok and isinstance(msg, str) and msg
            if want_status == 405:
                ok = ok and "allow" in rh
            print("%-28s %s %-24s %s" % (name, status, code, "ok" if ok else "FAIL %r" % rb))
            if not ok:
                failures.append((name, want_status, want_code, status, rb))
            if status in (413,) or rh.get("connection", "").lower() == "close":
                c.close()
        # Field names in errors: the unknown field is named.
        status, _, rb = c.request("POST", "/events", jb({"user_id": "u", "event": "e"}),
                                  dict(auth, **{"Content-Type": J}))
        t.check(rb["error"].get("field") == "event", "unknown field not named: %r" % rb)
        # Partial acceptance by index.
        batch = [good, {"user_id": ""}, dict(good, metadata=[1]), good, {"x": 1}]
        status, _, rb = c.request("POST", "/events/batch", jb(batch),
                                  dict(auth, **{"Content-Type": J}))
        t.check(status == 202, "partial batch: %s %r" % (status, rb))
        t.check(rb["accepted"] == 2 and rb["rejected"] == 3, "partial counts %r" % rb)
        t.check([r["index"] for r in rb["results"]] == [0, 1, 2, 3, 4], "indexes %r" % rb)
        t.check("event_id" in rb["results"][0] and "event_id" in rb["results"][3], "ids %r" % rb)
        t.check(rb["results"][1]["error"]["code"] == "invalid_field", "%r" % rb)
        t.check(rb["results"][2]["error"]["field"] == "metadata", "%r" % rb)
        t.check(rb["results"][4]["error"]["code"] == "unknown_field", "%r" % rb)
        # X-API-Key works as well as Bearer; /health needs no key.
        status, _, _ = c.request("POST", "/events", jb(good), {"Content-Type": J,
                                                               "X-API-Key": key})
        t.check(status == 202, "X-API-Key: %s" % status)
        status, _, _ = c.request("GET", "/health", b"", {})
        t.check(status == 200, "/health without a key: %s" % status)
        # CORS preflight from an allowed origin.
        status, rh, _ = c.request("OPTIONS", "/events", b"", {
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key"})
        t.check(status in (200, 204), "preflight: %s" % status)
        t.check(rh.get("access-control-allow-origin") == "https://app.example",
                "preflight allow-origin %r" % rh)
        # ... and the actual request's reply, sent later from the delivery-report thread.
        status, rh, _ = c.request("POST", "/events", jb(good), dict(auth, **{
            "Content-Type": J, "Origin": "https://app.example"}))
        t.check(status == 202 and rh.get("access-control-allow-origin") == "https://app.example",
                "CORS on the 202: %s %r" % (status, rh))
        status, rh, _ = c.request("POST", "/events", jb(good), dict(auth, **{
            "Content-Type": J, "Origin": "https://evil.example"}))
        t.check("access-control-allow-origin" not in rh, "CORS for a foreign origin: %r" % rh)
        # The rejected counter moved.
        rej = metric_value(svc, "epp_ingest_events_rejected_total", {"reason": "invalid_field"},
                           headers=auth)
        t.check(rej and rej >= 10, "epp_ingest_events_rejected_total{invalid_field} = %r" % rej)

        # Rate limit: burst 3 at 1 rps -> the 4th and later within a second get 429.
        wait_ready(limited)
        lc = Client(limited.port)
        statuses = []
        retry_after = None
        for _ in range(6):
            status, rh, rb = lc.post_json("/events", good)
            statuses.append(status)
            if status == 429:
                retry_after = rh.get("retry-after")
                t.check(rb["error"]["code"], "429 body %r" % rb)
        print("rate limit statuses: %s" % statuses)
        t.check(statuses[:3] == [202] * 3 and 429 in statuses[3:], "rate limit %r" % statuses)
        t.check(retry_after and int(retry_after) >= 1, "429 without Retry-After")
        t.check(not failures, "%d cases failed: %r" % (len(failures), failures))
    finally:
        rc1 = svc.stop()
        rc2 = limited.stop()
    t.check(rc1 == 0 and rc2 == 0, "exit codes %s %s" % (rc1, rc2))


# ---------------------------------------------------------------------------------------------
# faults (private broker)
# ---------------------------------------------------------------------------------------------

def brokers_down(env):
    """Brokers down -> 503 with Retry-After within the delivery timeout, never a 202 for an
    event that is not in the topic; brokers up -> 202 again without a restart. A private Apache
    Kafka node, SIGKILLed and restarted."""
    with t.KafkaCluster(env, nodes=1) as kc:
        kenv = kc.env
        topic = t.create_topic(kenv, t.unique_name("ingest_down"), 2)
        # A small producer queue, so that the outage also fills it: queue_full must be
        # answered at once, not after the delivery timeout.
        svc = start_ingest(kenv, topic, {"KAFKA_DELIVERY_TIMEOUT_MS": "5000",
                                         "KAFKA_QUEUE_MAX_MESSAGES": "12"})
        try:
            wait_ready(svc)
            c = Client(svc.port)
            accepted = []
            status, _, body = c.post_json("/events", ev(1))
            t.check(status == 202, "before: %s" % status)
            accepted.append(body["event_id"])

            kc.kill(1)
            # Concurrent requests during the outage, single and batch.
            results = []

            def one(i):
                cl = Client(svc.port, timeout=30)
                s0 = time.monotonic()
                if i % 4 == 0:
                    st, rh, b = cl.post_json("/events/batch", [ev(i), ev(i + 1)])
                else:
                    st, rh, b = cl.post_json("/events", ev(i))
                results.append((st, rh, b, time.monotonic() - s0))
                cl.close()

            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(one, range(16)))
            worst = max(r[3] for r in results)
            print("brokers down: statuses %s, slowest %.2fs" %
                  (sorted(r[0] for r in results), worst))
            for st, rh, b, secs in results:
                if st == 202:  # only possible if the broker took it before going down
                    accepted += [b["event_id"]] if "event_id" in b else \
                        [r["event_id"] for r in b["results"] if "error" not in r]
                    continue
                t.check(st == 503, "during outage: %s %r" % (st, b))
                t.check(int(rh.get("retry-after", "0")) >= 1, "503 without Retry-After")
                if "error" in b:
                    t.check(b["error"]["code"] in ("kafka_unavailable", "queue_full") and
                            len(b.get("event_id", "")) == 36, "503 body %r" % b)
                t.check(secs <= 5.0 + 1.5, "503 after %.2fs (delivery timeout 5 s)" % secs)
            t.check(sum(1 for r in results if r[0] == 503) >= 12, "expected 503s")
            def codes(b):
                if not isinstance(b, dict):
                    return set()
                if "error" in b:
                    return {b["error"].get("code")}
                return {r["error"]["code"] for r in b.get("results", []) if "error" in r}

            full = [r for r in results if r[0] == 503 and codes(r[2]) == {"queue_full"}]
            t.check(full, "no queue_full 503 with 20 events for a 12-message queue")
            t.check(min(r[3] for r in full) < 1.0, "queue_full was not immediate: %.2fs" %
                    min(r[3] for r in full))
            timed_out = [r for r in results if r[0] == 503 and "queue_full" not in codes(r[2])]
            t.check(timed_out and min(r[3] for r in timed_out) >= 2.0,
                    "kafka_unavailable 503s should wait for the delivery timeout")
            t.wait_for(lambda: t.http_request("GET", svc.url("/ready"))[0] == 503, 10,
                       msg="/ready 503 while brokers are down")

            kc.start_node(1)
            ok = t.wait_for(lambda: c.post_json("/events", ev(99))[0] == 202 or None, 20,
                            interval=0.2, msg="202 after brokers up")
            for i in range(20):
                status, _, body = c.post_json("/events", ev(200 + i))
                t.check(status == 202, "after: %s %r" % (status, body))
                accepted.append(body["event_id"])
            wait_ready(svc)
            msgs = consume_with_headers(kenv, topic, timeout=30, want=accepted)
            ids = {json.loads(m["value"])["event_id"] for m in msgs}
            missing = [e for e in accepted if e not in ids]
            t.check(not missing, "202'd events missing from the topic: %r" % missing)
            print("brokers down: every 202'd event (%d) is in the topic (%d messages)" %
                  (len(accepted), len(msgs)))
            del ok
        finally:
            rc = svc.stop()
        t.check(rc == 0, "exit code %s" % rc)


def retriable(env):
    """NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS on Produce cost latency
    only: every event is 202'd and each 202'd event_id is in the topic (duplicates possible only
    where the mock lost an ack; counted). Mock-only fault: error codes injected into chosen
    Produce requests."""
    with t.DevBroker(env, brokers=3) as kenv:
        topic = t.create_topic(kenv, t.unique_name("ingest_retry"), 3)
        # One produce request in flight per broker. The idempotent producer pipelines up to 5,
        # and when a later batch of a partition succeeds after an earlier one failed it counts
        # the earlier one as delivered ("implicitly acked"): Kafka enforces the sequence numbers
        # and would have refused the later batch (OUT_OF_ORDER_SEQUENCE_NUMBER) had the earlier
        # one not been written. The mock cluster does not check sequences for non-transactional
        # producers, so with pipelining an injected NOT_ENOUGH_REPLICAS makes a batch vanish
        # while librdkafka reports it delivered (seen here: "3 message(s) implicitly acked by
        # subsequent batch success", and 3 of 570 events missing). That is a dev-broker
        # artifact, not what a real cluster does, so this test runs without pipelining.
        svc = start_ingest(kenv, topic, {
            "KAFKA_DELIVERY_TIMEOUT_MS": "20000",
            "KAFKA_PRODUCER_CONFIG": "max.in.flight.requests.per.connection=1"})
        try:
            wait_ready(svc)
            c = Client(svc.port)
            status, _, _ = c.post_json("/events", ev(0))
            t.check(status == 202, "warm-up %s" % status)
            st, b = t.broker_control(kenv, "POST", "/errors?api=Produce&count=30&codes="
                                     "NOT_LEADER_FOR_PARTITION,REQUEST_TIMED_OUT,"
                                     "NOT_ENOUGH_REPLICAS")
            t.check(st == 200, "inject: %s %r" % (st, b))
            accepted = []
            lock = threading.Lock()

            def worker(w):
                cl = Client(svc.port, timeout=60)
                for i in range(w, 300, 6):
                    if i % 10 == 0:
                        s, _, body = cl.post_json("/events/batch", [ev(i * 10 + k)
                                                                    for k in range(10)])
                        ids = [r.get("event_id") for r in body["results"]]
                    else:
                        s, _, body = cl.post_json("/events", ev(i))
                        ids = [body.get("event_id")] if isinstance(body, dict) else []
                    t.check(s == 202, "request %d: %s %r" % (i, s, body))
                    with lock:
                        accepted.extend(ids)
                cl.close()

            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                for f in [pool.submit(worker, w) for w in range(6)]:
                    f.result()
            print("retriable: %d events 202'd in %.1fs despite injected errors" %
                  (len(accepted), time.monotonic() - start))
            msgs = consume_with_headers(kenv, topic, timeout=30, want=accepted)
            counts = {}
            for m in msgs:
                eid = json.loads(m["value"])["event_id"]
                counts[eid] = counts.get(eid, 0) + 1
            missing = [e for e in accepted if e not in counts]
            dups = sum(n - 1 for n in counts.values() if n > 1)
            print("retriable: %d messages, %d duplicates (resent after a lost ack)" %
                  (len(msgs), dups))
            t.check(not missing, "%d 202'd events missing: %r" % (len(missing), missing[:5]))
            t.check(dups <= 100 * 10, "implausible duplicate count %d" % dups)
        finally:
            rc = svc.stop()
        t.check(rc == 0, "exit code %s" % rc)


def sigterm(env):
    """SIGTERM with 200 requests in flight (broker slowed): every request gets a truthful
    answer, every 202'd event is in the topic, exit code 0. Mock-only fault: a broker round-trip
    time set to a chosen value (1.5 s, then 4 s)."""
    with t.DevBroker(env, brokers=1) as kenv:
        topic = t.create_topic(kenv, t.unique_name("ingest_term"), 2)
        svc = start_ingest(kenv, topic, {"SHUTDOWN_TIMEOUT_MS": "8000",
                                         "KAFKA_DELIVERY_TIMEOUT_MS": "20000"})
        exit_code = None
        try:
            wait_ready(svc)
            status, _, _ = Client(svc.port).post_json("/events", ev(0))
            t.check(status == 202, "warm-up %s" % status)
            t.broker_control(kenv, "POST", "/brokers/1/rtt?ms=1500")
            results = []
            lock = threading.Lock()
            errors = []

            def one(i):
                cl = Client(svc.port, timeout=30)
                try:
                    s, rh, b = cl.post_json("/events", ev(i))
                    with lock:
                        results.append((s, b))
                except Exception as e:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(repr(e))
                finally:
                    cl.close()

            threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
            for th in threads:
                th.start()
            # Wait until the server holds all of them (each one's event is in the producer's
            # queue), then stop it: a connection still in the listen backlog would be refused.
            def all_in_flight():
                q = metric_value(svc, "epp_ingest_producer_queue_messages") or 0
                h = metric_value(svc, "epp_http_requests_in_flight") or 0
                return (q, h) if q >= 200 and h >= 200 else None

            q, h = t.wait_for(all_in_flight, 20, interval=0.05, msg="200 requests in flight")
            print("sigterm: %d messages queued, %d requests in flight at SIGTERM" % (q, h))
            svc.proc.send_signal(signal.SIGTERM)
            for th in threads:
                th.join(40)
            exit_code = svc.wait(30)
            statuses = [s for s, _ in results]
            print("sigterm: %d answers: 202=%d 503=%d other=%d; errors=%d; exit %s" %
                  (len(results), statuses.count(202), statuses.count(503),
                   len(statuses) - statuses.count(202) - statuses.count(503), len(errors),
                   exit_code))
            t.check(not errors, "requests without an answer: %r" % errors[:3])
            t.check(len(results) == 200, "%d answers" % len(results))
            t.check(set(statuses) <= {202, 503}, "statuses %r" % set(statuses))
            t.broker_control(kenv, "POST", "/brokers/1/rtt?ms=0")
            accepted = [b["event_id"] for s, b in results if s == 202]
            msgs = consume_with_headers(kenv, topic, timeout=30, want=accepted)
            ids = {json.loads(m["value"])["event_id"] for m in msgs}
            missing = [e for e in accepted if e not in ids]
            t.check(not missing, "202'd but not in the topic: %r" % missing[:5])
            t.check(len(accepted) >= 150, "only %d of 200 delivered before shutdown" %
                    len(accepted))
        finally:
            svc.stop()
        t.check(exit_code == 0, "exit code %s" % exit_code)

        # Phase 2: the acks take longer than SHUTDOWN_TIMEOUT_MS. Every request still gets an
        # answer -- 503, since nothing was acknowledged -- and the exit is prompt and clean.
        svc = start_ingest(kenv, topic, {"SHUTDOWN_TIMEOUT_MS": "500",
                                         "KAFKA_DELIVERY_TIMEOUT_MS": "20000"})
        try:
            wait_ready(svc)
            t.broker_control(kenv, "POST", "/brokers/1/rtt?ms=4000")
            results, errors = [], []
            threads = [threading.Thread(target=one, args=(1000 + i,)) for i in range(50)]
            for th in threads:
                th.start()
            t.wait_for(lambda: (metric_value(svc, "epp_ingest_producer_queue_messages") or 0)
                       >= 50, 20, interval=0.05, msg="50 requests in flight")
            start = time.monotonic()
            svc.proc.send_signal(signal.SIGTERM)
            for th in threads:
                th.join(40)
            exit_code = svc.wait(30)
            took = time.monotonic() - start
            statuses = [s for s, _ in results]
            print("sigterm (acks slower than the shutdown timeout): 202=%d 503=%d errors=%d, "
                  "exit %s after %.1fs" % (statuses.count(202), statuses.count(503), len(errors),
                                           exit_code, took))
            t.check(not errors and len(results) == 50, "unanswered: %r" % errors[:3])
            t.check(statuses.count(503) >= 45 and set(statuses) <= {202, 503},
                    "statuses %r" % statuses)
            t.check(took < 3.5, "shutdown took %.1fs with SHUTDOWN_TIMEOUT_MS=500" % took)
        finally:
            svc.stop()
        t.check(exit_code == 0, "exit code %s" % exit_code)
        sigterm_late_body(kenv, topic)


def sigterm_late_body(kenv, topic):
    """Phase 3: a request whose head came before SIGTERM and whose body completes after the
    drain (SHUTDOWN_TIMEOUT_MS passed) is refused with 503 and produces nothing: its message
    would be reported after its request and connection were freed (a use after free, or a leak
    at exit, under ASan). The exit is clean."""
    import socket
    t.broker_control(kenv, "POST", "/brokers/1/rtt?ms=0")
    svc = start_ingest(kenv, topic, {"SHUTDOWN_TIMEOUT_MS": "300"})
    exit_code = None
    try:
        wait_ready(svc)
        event_id = str(uuid.uuid4())
        body = json.dumps(ev(7, event_id=event_id)).encode()
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
        s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
        t.wait_for(lambda: (metric_value(svc, "epp_http_requests_in_flight") or 0) >= 1, 10,
                   interval=0.02, msg="the head is in flight")
        svc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.8)  # past SHUTDOWN_TIMEOUT_MS: the drain is over, the server still open
        s.sendall(body[5:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        s.close()
        exit_code = svc.wait(30)
        print("sigterm (body after the drain): %r, exit %s" % (reply[:40], exit_code))
        t.check(reply.startswith(b"HTTP/1.1 503") and b"shutting_down" in reply,
                "a body completed after the drain: %r" % reply[:200])
        msgs = consume_with_headers(kenv, topic, timeout=10, idle_timeout=3)
        found = [m for m in msgs if json.loads(m["value"]).get("event_id") == event_id]
        t.check(not found, "the refused request's event was produced anyway")
    finally:
        svc.stop()
    t.check(exit_code == 0, "exit code %s" % exit_code)


def fatal(env):
    """A fatal producer error (injected through POST /debug/fatal, EPP_TEST_FAULTS=1) fails the
    affected requests with 503; the producer is recreated and the service serves 202 again.
    Mock-only fault: a 1 s broker round-trip time, so that requests are in flight when the fatal
    error hits."""
    with t.DevBroker(env, brokers=1) as kenv:
        topic = t.create_topic(kenv, t.unique_name("ingest_fatal"), 2)
        svc = start_ingest(kenv, topic, {"EPP_TEST_FAULTS": "1",
                                         "KAFKA_DELIVERY_TIMEOUT_MS": "20000"})
        plain = start_ingest(kenv, topic)
        try:
            wait_ready(svc)
            c = Client(svc.port)
            status, _, _ = c.post_json("/events", ev(0))
            t.check(status == 202, "warm-up %s" % status)
            # The route exists only with EPP_TEST_FAULTS=1.
            status, _, _ = Client(plain.port).request("POST", "/debug/fatal", b"", {})
            t.check(status == 404, "/debug/fatal without EPP_TEST_FAULTS: %s" % status)

            # Requests pending in a slowed broker when the fatal error hits.
            t.broker_control(kenv, "POST", "/brokers/1/rtt?ms=1000")
            results = []
            lock = threading.Lock()

            def one(i):
                cl = Client(svc.port, timeout=30)
                s, rh, b = cl.post_json("/events", ev(i))
                with lock:
                    results.append((s, rh, b))
                cl.close()

            threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
            for th in threads:
                th.start()
            t.wait_for(lambda: (metric_value(svc, "epp_ingest_producer_queue_messages") or 0)
                       >= 15, 10, interval=0.05, msg="requests in flight")
            status, _, body = c.request("POST", "/debug/fatal", b"", {})
            t.check(status == 200, "inject: %s %r" % (status, body))
            for th in threads:
                th.join(30)
            t.broker_control(kenv, "POST", "/brokers/1/rtt?ms=0")
            statuses = sorted(s for s, _, _ in results)
            print("fatal: in-flight requests answered %s" % statuses)
            t.check(len(results) == 20, "%d answers" % len(results))
            t.check(set(statuses) <= {202, 503}, "statuses %r" % statuses)
            t.check(503 in statuses, "no request failed with the fatal error")
            for s, rh, b in results:
                if s == 503:
                    t.check(int(rh.get("retry-after", "0")) >= 1, "503 without Retry-After")
            t.wait_for(lambda: metric_value(svc, "epp_ingest_producer_recreated_total") == 1, 10,
                       msg="producer recreated")
            accepted = [b["event_id"] for s, _, b in results if s == 202]
            t.wait_for(lambda: c.post_json("/events", ev(500))[0] == 202, 15, interval=0.2,
                       msg="202 after recovery")
            for i in range(20):
                status, _, body = c.post_json("/events", ev(600 + i))
                t.check(status == 202, "after recovery: %s %r" % (status, body))
                accepted.append(body["event_id"])
            wait_ready(svc)
            msgs = consume_with_headers(kenv, topic, timeout=30, want=accepted)
            ids = {json.loads(m["value"])["event_id"] for m in msgs}
            missing = [e for e in accepted if e not in ids]
            t.check(not missing, "202'd but not in the topic: %r" % missing[:5])
            print("fatal: recovered; %d 202'd events all in the topic" % len(accepted))
        finally:
            rc = svc.stop()
            plain.stop()
        t.check(rc == 0, "exit code %s" % rc)


def tracing(env):
    """With OTEL_EXPORTER_OTLP_ENDPOINT set: a SERVER span per request, child of the client's
    traceparent, and a PRODUCER child whose context is the Kafka message's traceparent header
    (so the consumer's spans join the trace)."""
    import http.server
    spans = []
    lock = threading.Lock()

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/v1/traces":
                doc = json.loads(body)
                with lock:
                    for rs in doc.get("resourceSpans", []):
                        for ss in rs.get("scopeSpans", []):
                            spans.extend(ss.get("spans", []))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    topic = t.create_topic(env, t.unique_name("ingest_trace"), 2)
    svc = start_ingest(env, topic, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:%d" % server.server_address[1],
        "OTEL_TRACES_SAMPLER_ARG": "1"})
    try:
        wait_ready(svc)
        c = Client(svc.port)
        trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        tp = "00-%s-%s-01" % (trace_id, parent)
        status, _, body = c.post_json("/events", ev(1), headers={"traceparent": tp})
        t.check(status == 202, "single: %s %r" % (status, body))
        single_id = body["event_id"]
        status, _, body = c.post_json("/events/batch", [ev(2), ev(3), {"user_id": ""}])
        t.check(status == 202, "batch: %s %r" % (status, body))
        status, _, _ = c.post_json("/events", b"{bad")
        t.check(status == 400, "bad: %s" % status)

        def have_spans():
            with lock:
                names = [sp["name"] for sp in spans]
            return names.count("POST /events") >= 2 and "POST /events/batch" in names and \
                names.count(topic + " publish") >= 2
        t.wait_for(have_spans, 15, interval=0.2, msg="spans at the collector")
        with lock:
            got = list(spans)
        server_spans = [sp for sp in got if sp["name"] == "POST /events" and
                        sp["traceId"] == trace_id]
        t.check(len(server_spans) == 1, "server span of the traced request: %r" % got)
        srv_span = server_spans[0]
        t.check(srv_span.get("parentSpanId") == parent, "server span parent %r" % srv_span)
        prod = [sp for sp in got if sp["name"] == topic + " publish" and
                sp.get("parentSpanId") == srv_span["spanId"]]
        t.check(len(prod) == 1 and prod[0]["traceId"] == trace_id, "producer span %r" % got)
        msgs = consume_with_headers(env, topic, timeout=30, want=[single_id])
        hdr = {json.loads(m["value"])["event_id"]: m["headers"]["traceparent"].decode()
               for m in msgs}
        t.check(hdr[single_id] == "00-%s-%s-01" % (trace_id, prod[0]["spanId"]),
                "message traceparent %r, producer span %s" % (hdr[single_id], prod[0]["spanId"]))
        print("tracing: %d spans exported; the message carries the producer span's context" %
              len(got))
    finally:
        rc = svc.stop()
        server.shutdown()
    t.check(rc == 0, "exit code %s" % rc)


def http_limits(env):
    """Issue 19, item 10: HTTP_MAX_PER_IP and HTTP_MAX_CONNECTIONS refuse (close at accept,
    without a reply) the connections over them, count them in
    epp_http_connections_refused_total, and make room again when a connection closes."""
    import socket
    topic = t.unique_name("limits")
    t.create_topic(env, topic)
    svc = start_ingest(env, topic, {"HTTP_MAX_PER_IP": "3", "HTTP_MAX_CONNECTIONS": "5"})
    try:
        wait_ready(svc)

        def conn(src):
            s = socket.socket()
            s.bind((src, 0))
            s.settimeout(3)
            s.connect(("127.0.0.1", svc.port))
            return s

        def served(s):
            try:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                return s.recv(4096).startswith(b"HTTP/1.1 200")
            except OSError:
                return False

        def metric_over(s, name):
            """A metric, asked over the held keep-alive connection s: a new connection would
            itself count, and be refused while the server has not yet seen closed connections
            close."""
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < length:
                body += s.recv(65536)
            m = re.search(rb"^" + name.encode() + rb"(?:\{[^}]*\})? +(\S+)", body, re.M)
            return float(m.group(1))

        def settle(s, n):
            """Waits until the server counts n open connections: a client's close reaches the
            server asynchronously, so the next connect must not race it."""
            t.wait_for(lambda: metric_over(s, "epp_http_connections_open") == n, 10.0,
                       msg="epp_http_connections_open == %d" % n)

        held = [conn("127.0.0.2") for _ in range(3)]
        t.check(all(served(s) for s in held), "3 connections from one address are served")
        settle(held[0], 3)  # the readiness probe's connection is gone
        fourth = conn("127.0.0.2")
        t.check(not served(fourth), "a 4th connection from 127.0.0.2 is closed without a reply "
                "(HTTP_MAX_PER_IP=3)")
        fourth.close()
        settle(held[0], 3)
        other = [conn("127.0.0.3") for _ in range(2)]
        t.check(all(served(s) for s in other), "connections 4 and 5 from another address are served")
        sixth = conn("127.0.0.4")
        t.check(not served(sixth), "a 6th connection is closed without a reply "
                "(HTTP_MAX_CONNECTIONS=5)")
        sixth.close()
        held[0].close()
        settle(held[1], 4)
        again = conn("127.0.0.4")
        t.check(served(again), "after one closes, a new connection is served")
        # Counted at accept, before the refused connections were closed (and seen closed above).
        refused = metric_over(again, "epp_http_connections_refused_total")
        for s in held[1:] + other + [again]:
            s.close()
        t.check(refused == 2, "epp_http_connections_refused_total == 2 (got %s)" % refused)
    finally:
        svc.stop()


TESTS = {"http_limits": http_limits, "e2e": e2e, "tracing": tracing, "bad_input": bad_input, "brokers_down": brokers_down,
         "retriable": retriable, "sigterm": sigterm, "fatal": fatal}


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in TESTS:
        sys.exit("usage: test_ingest.py BUILD_DIR {%s}" % "|".join(TESTS))
    env = t.load_env(sys.argv[1])
    start = time.monotonic()
    TESTS[sys.argv[2]](env)
    print("%s: ok (%.1fs)" % (sys.argv[2], time.monotonic() - start))


if __name__ == "__main__":
    main()
