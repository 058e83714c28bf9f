#!/usr/bin/env python3
"""The /v1 routes with hand-written requests, for what the SDKs never send (docs/segment.md).

    test_segment_http.py BUILD_DIR http

auth     with INGEST_API_KEYS: the write key as Basic user name or as "writeKey" in the body; a
         missing or wrong key (in either place) is 401 -- and so is any body from a client
         without a key, whatever is wrong with it; failed keys draw from the rate limit (429).
         Without keys any write key, or none, is accepted.
limits   500 KiB per request (identity or after gzip) and 32 KiB per message: 400, as Segment
         answers; corrupt gzip 400; other media types 415; text/plain (analytics.js) accepted.
batches  a batch with invalid messages stores the valid ones and answers 200 with "accepted" and
         "rejected" (each by index and messageId, with the error), counts each refusal in
         epp_ingest_events_rejected_total by reason and logs the request; a batch with nothing
         valid is 400.
rows     every route name (/v1/track ... /v1/import and analytics.js's /v1/t ...) stores its
         message; numbers keep every digit; a UUID messageId is the event_id; a repeated
         messageId is one row; the database ends with exactly the rows answered as stored.
"""
import base64
import gzip
import http.client
import json
import sys
import time
import uuid

import segment_util as u
from segment_util import t
from epp_stack import Stack

KEYS = "seg-k1,seg-k2"


def basic(key):
    return {"Authorization": "Basic " + base64.b64encode((key + ":").encode()).decode()}


def post(base, path, body, headers=None, ctype="application/json", gz=False):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": ctype} if ctype else {}
    if gz:
        raw = gzip.compress(raw)
        h["Content-Encoding"] = "gzip"
    h.update(headers or {})
    st, hdrs, data = t.http_request("POST", base + path, body=raw, headers=h)
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return st, hdrs, parsed


def auth(env, s):
    base = s.ingest_url
    track = {"userId": "auth-user", "event": "auth_check"}
    stored = 0
    cases = [
        ("Basic k1", basic("seg-k1"), track, 200),
        ("writeKey in the body", None, dict(track, writeKey="seg-k2"), 200),
        ("Bearer", {"Authorization": "Bearer seg-k1"}, track, 200),
        ("no key", None, track, 401),
        ("wrong writeKey", None, dict(track, writeKey="nope"), 401),
        ("writeKey not a string", None, dict(track, writeKey=7), 401),
        ("wrong Basic, right body", basic("nope"), dict(track, writeKey="seg-k1"), 401),
        ("not JSON, no key", None, b"{oops", 401),
        ("not JSON, a key", basic("seg-k1"), b"{oops", 400),
        ("invalid message, no key", None, {"event": "x"}, 401),
    ]
    for name, headers, body, want in cases:
        st, _, b = post(base, "/v1/track", body, headers)
        t.check(st == want, "auth %s: %s %r (want %s)" % (name, st, b, want))
        if want == 401:
            t.check(b["error"]["code"] == "unauthorized", "auth %s: %r" % (name, b))
        stored += st == 200
    # A batch authenticates once, by the batch's writeKey.
    st, _, b = post(base, "/v1/batch", {"writeKey": "seg-k2", "batch": [dict(track, type="track")]})
    t.check(st == 200 and b == {"success": True}, "batch writeKey: %s %r" % (st, b))
    stored += 1
    print("auth: %d cases as expected" % (len(cases) + 1))
    return stored


def auth_off_and_rate_limit(env, s):
    """Keys off: any key or none. Keys on with a rate limit: wrong keys are throttled."""
    stored = 0
    environ = s.service_environ("ingest")
    environ.pop("INGEST_API_KEYS", None)
    with t.ServiceProcess(env, "epp-ingest", port=t.free_port(), extra_env=environ,
                          log_name=s.name + "-ingest-open") as open_ingest:
        for headers, body in ((None, {"userId": "open", "event": "e"}),
                              (basic("anything"), {"userId": "open", "event": "e"}),
                              (None, {"userId": "open", "event": "e", "writeKey": "whatever"})):
            st, _, b = post(open_ingest.url(""), "/v1/track", body, headers)
            t.check(st == 200, "keys off: %s %r" % (st, b))
            stored += 1
    environ = dict(s.service_environ("ingest"), RATE_LIMIT_RPS="0.2", RATE_LIMIT_BURST="3")
    with t.ServiceProcess(env, "epp-ingest", port=t.free_port(), extra_env=environ,
                          log_name=s.name + "-ingest-limited") as limited:
        got = [post(limited.url(""), "/v1/track", {"userId": "x", "event": "e", "writeKey": "bad%d" % i})
               for i in range(4)]
        statuses = [g[0] for g in got]
        t.check(statuses == [401, 401, 401, 429] and int(got[3][1]["retry-after"]) >= 1,
                "wrong write keys under a rate limit: %r" % statuses)
        st, _, _ = post(limited.url(""), "/v1/track", {"userId": "x", "event": "e"}, basic("seg-k1"))
        t.check(st == 200, "a valid key keeps its own bucket: %s" % st)
        stored += 1
    print("auth: keys off accepts any write key; failed keys are throttled (401 x3, then 429)")
    return stored


def limits(env, s):
    base, k = s.ingest_url, basic("seg-k1")
    stored = 0
    pad = "x" * (32 * 1024)
    big_batch = {"batch": [{"type": "track", "userId": "u", "event": "e",
                            "properties": {"p": "y" * 1000}} for _ in range(520)]}
    raw = json.dumps(big_batch).encode()
    t.check(len(raw) > 500 * 1024, "the big batch is big")
    for name, body, gz in (("identity", raw, False), ("gzip", raw, True)):
        st, _, b = post(base, "/v1/batch", body, k, gz=gz)
        t.check(st == 400 and b["error"]["code"] == "payload_too_large",
                "batch over 500 KiB (%s): %s %r" % (name, st, b))
    st, _, b = post(base, "/v1/track", {"userId": "u", "event": "e", "properties": {"p": pad}}, k)
    t.check(st == 400 and b["error"]["code"] == "payload_too_large", "a 32 KiB+ track: %s %r" % (st, b))
    # A message of exactly 32 KiB of compact JSON is stored.
    m = {"userId": "u", "event": "exact", "properties": {"p": ""}}
    m["properties"]["p"] = "z" * (32 * 1024 - len(json.dumps(m, separators=(",", ":"))))
    t.check(len(json.dumps(m, separators=(",", ":"))) == 32 * 1024, "32 KiB exactly")
    st, _, b = post(base, "/v1/track", json.dumps(m, separators=(",", ":")).encode(), k)
    t.check(st == 200, "a message of exactly 32 KiB: %s %r" % (st, b))
    stored += 1
    st, _, b = post(base, "/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "e",
                                                    "properties": {"p": pad}},
                                                   {"type": "track", "userId": "u", "event": "ok",
                                                    "properties": {"p": pad[:30000]}}]}, k)
    t.check(st == 200 and b["accepted"] == 1 and b["rejected"][0]["index"] == 0 and
            b["rejected"][0]["error"]["code"] == "payload_too_large",
            "a 32 KiB+ message in a batch: %s %r" % (st, b))
    stored += 1
    st, _, b = post(base, "/v1/batch", {"batch": [{"type": "identify", "userId": "gz"}]}, k, gz=True)
    t.check(st == 200, "gzip batch: %s %r" % (st, b))
    stored += 1
    st, _, b = post(base, "/v1/batch", b"\x1f\x8b\x08\x00garbage", dict(k, **{"Content-Encoding": "gzip"}))
    t.check(st == 400 and b["error"]["code"] == "invalid_encoding", "corrupt gzip: %s %r" % (st, b))
    st, _, b = post(base, "/v1/track", {"userId": "u", "event": "e"}, k, ctype="application/xml")
    t.check(st == 415, "xml: %s" % st)
    st, _, b = post(base, "/v1/track", {"userId": "u", "event": "plain"}, k, ctype="text/plain")
    t.check(st == 200, "text/plain: %s %r" % (st, b))
    stored += 1
    # No Content-Type at all (urllib would add one).
    conn = http.client.HTTPConnection("127.0.0.1", s.procs["ingest"].port, timeout=10)
    conn.request("POST", "/v1/track", body=b'{"userId":"u","event":"no type"}', headers=k)
    resp = conn.getresponse()
    st = resp.status
    resp.read()
    conn.close()
    t.check(st == 200, "no Content-Type: %s" % st)
    stored += 1
    st, hdrs, b = t.http_request("GET", base + "/v1/track", headers=k)
    t.check(st == 405, "GET /v1/track: %s" % st)
    print("limits: 500 KiB and 32 KiB answered 400, gzip, media types as documented")
    return stored


def batches(env, s):
    base, k = s.ingest_url, basic("seg-k1")
    ing = s.procs["ingest"]
    before = {r: t.metric_value(ing, "epp_ingest_events_rejected_total", {"reason": r}, k) or 0
              for r in ("missing_field", "invalid_field", "invalid_json")}
    body = {"batch": [
        {"type": "track", "userId": "b", "event": "one", "messageId": "m-0"},
        {"type": "track", "event": "no user", "messageId": "m-1"},
        {"type": "teleport", "userId": "b", "messageId": "m-2"},
        {"type": "page", "anonymousId": "a", "messageId": "m-3"},
        "not an object",
        {"type": "alias", "userId": "b", "previousId": "a", "messageId": "m-5"},
    ]}
    st, _, b = post(base, "/v1/batch", body, k)
    t.check(st == 200 and b["success"] is True and b["accepted"] == 3, "partial: %s %r" % (st, b))
    rej = {r["index"]: r for r in b["rejected"]}
    t.check(sorted(rej) == [1, 2, 4], "rejected indexes %r" % sorted(rej))
    t.check(rej[1]["messageId"] == "m-1" and rej[1]["error"]["code"] == "missing_field" and
            rej[1]["error"]["field"] == "userId", "rejected[1] %r" % rej[1])
    t.check(rej[2]["error"] == {"code": "invalid_field", "field": "type",
                                "message": rej[2]["error"]["message"]}, "rejected[2] %r" % rej[2])
    t.check("messageId" not in rej[4] and rej[4]["error"]["code"] == "invalid_json", "rejected[4]")
    after = {r: t.metric_value(ing, "epp_ingest_events_rejected_total", {"reason": r}, k) or 0
             for r in before}
    t.check({r: after[r] - before[r] for r in before} ==
            {"missing_field": 1, "invalid_field": 1, "invalid_json": 1},
            "rejections by reason: %r -> %r" % (before, after))
    t.wait_for(lambda: "segment messages refused" in ing.log_text() and '"first_message_id":"m-1"'
               in ing.log_text(), 5, msg="the refusal logged")
    st, _, b = post(base, "/v1/batch", {"batch": [{"type": "track", "userId": "b"}]}, k)
    t.check(st == 400 and b["error"]["code"] == "invalid_messages" and
            b["rejected"][0]["error"]["field"] == "event", "nothing valid: %s %r" % (st, b))
    st, _, b = post(base, "/v1/batch", {"batch": []}, k)
    t.check(st == 400, "empty batch: %s" % st)
    print("batches: partial batch 200 with rejected by index and messageId; counted by reason; logged")
    return 3


def rows(env, s):
    base, k = s.ingest_url, basic("seg-k1")
    routes = [("/v1/track", {"event": "r-track"}, "r-track"), ("/v1/t", {"event": "r-t"}, "r-t"),
              ("/v1/identify", {}, "identify"), ("/v1/i", {}, "identify"),
              ("/v1/page", {}, "page"), ("/v1/p", {}, "page"),
              ("/v1/screen", {}, "screen"), ("/v1/s", {}, "screen"),
              ("/v1/group", {"groupId": "g"}, "group"), ("/v1/g", {"groupId": "g"}, "group"),
              ("/v1/alias", {"previousId": "p"}, "alias"), ("/v1/a", {"previousId": "p"}, "alias")]
    ids = []
    for path, extra, name in routes:
        mid = str(uuid.uuid4())
        st, _, b = post(base, path, dict(extra, userId="routes", messageId=mid), k)
        t.check(st == 200 and b == {"success": True}, "%s: %s %r" % (path, st, b))
        ids.append((mid, name))
    for path in ("/v1/import", "/v1/b"):
        mid = str(uuid.uuid4())
        st, _, b = post(base, path, {"batch": [{"type": "track", "userId": "routes",
                                                "event": "r-batch", "messageId": mid}]}, k)
        t.check(st == 200, "%s: %s %r" % (path, st, b))
        ids.append((mid, "r-batch"))
    # Exact numbers, and the same non-UUID messageId twice (an SDK retry): one row.
    body = b'{"userId":"routes","event":"exact","messageId":"retry-1","properties":' \
           b'{"big":12345678901234567890,"small":0.1}}'
    for _ in range(2):
        st, _, b = post(base, "/v1/track", body, k)
        t.check(st == 200, "exact: %s %r" % (st, b))
    ids.append(("retry-1", "exact"))
    s.wait_rows(len(ids), where="user_id = 'routes'", timeout=60)
    got = u.rows(s, "user_id = 'routes'")
    for mid, name in ids:
        eid = u.event_id(mid)
        t.check(eid in got and got[eid][1] == name, "%s (%s): %r" % (mid, name, got.get(eid)))
    t.check(len(got) == len(ids), "rows %d for %d distinct messages" % (len(got), len(ids)))
    conn = s.db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT metadata->'properties'->>'big', metadata->'properties'->>'small' "
                        "FROM public.events WHERE event_id = %s", (u.event_id("retry-1"),))
            t.check(cur.fetchone() == ("12345678901234567890", "0.1"), "numbers exact")
    finally:
        conn.close()
    print("rows: %d routes, exact numbers, a repeated messageId stored once" % len(routes))
    return len(ids)


def http_routes(env):
    with Stack(env, "seg_http", services=("consumer", "ingest"),
               service_env={"ingest": {"INGEST_API_KEYS": KEYS, "LOG_LEVEL": "info"}}) as s:
        stored = auth(env, s)
        stored += limits(env, s)
        stored += batches(env, s)
        stored += rows(env, s)
        stored += auth_off_and_rate_limit(env, s)
        # Every 200 stored what it said, and nothing else was stored.
        s.wait_rows(stored, timeout=60)
        time.sleep(1.5)
        t.check(s.count_rows() == stored, "rows %d, answered as stored %d" % (s.count_rows(), stored))
        print("http: exactly %d rows, as answered" % stored)


def main():
    env = t.load_env()
    t.check(len(sys.argv) > 2 and sys.argv[2] == "http", "usage: test_segment_http.py BUILD_DIR http")
    http_routes(env)
    print("ok: http")


if __name__ == "__main__":
    main()
