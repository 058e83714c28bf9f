#!/usr/bin/env python3
"""The official Segment Node.js library (@segment/analytics-node from npm) against a local epp
stack, changed in nothing but its host (docs/segment.md).

    test_segment_node.py BUILD_DIR every_type|outage|clock_skew

every_type  every message type (track, identify, page, screen, group, alias), with API keys on and
            the write key one of them: each message is exactly one row of public.events with the
            mapped fields (docs/segment.md); a second run of the same messageIds adds no row.
outage      Kafka stopped (a private dev broker, /brokers/down) while the library sends: ingest
            answers 503 (seen by the library), the library retries, and once Kafka is back every
            message is stored exactly once.
clock_skew  the library on a client clock ten minutes ahead (its timestamp and sentAt both): the
            row's timestamp is the server's time of the call, not the client's.
"""
import datetime
import os
import sys
import time

import segment_util as u
from segment_util import t
from epp_stack import Stack

KEY = "wk-node-1"


def host(stack):
    return stack.ingest_url


def calls(tag):
    """One call of every type, with fields in every position the mapping covers."""
    return [
        {"method": "track", "args": {"userId": "u-%s" % tag, "event": "Order Completed",
                                     "properties": {"total": 9007199254740991, "ratio": 0.1,
                                                    "items": [{"sku": "a"}]}}},
        {"method": "identify", "args": {"anonymousId": "anon-%s" % tag,
                                        "traits": {"email": "e@example.com", "plan": "pro"}}},
        {"method": "page", "args": {"userId": "u-%s" % tag, "anonymousId": "anon-%s" % tag,
                                    "category": "Docs", "name": "Pricing",
                                    "properties": {"path": "/pricing"}}},
        {"method": "screen", "args": {"userId": "u-%s" % tag, "name": "Home"}},
        {"method": "group", "args": {"userId": "u-%s" % tag, "groupId": "g-%s" % tag,
                                     "traits": {"employees": 42}}},
        {"method": "alias", "args": {"userId": "u-%s" % tag, "previousId": "anon-%s" % tag}},
    ]


def check_rows(stack, out, tag):
    """Each delivered message is one row with the fields docs/segment.md promises."""
    res = out["results"]
    t.check(all(r["error"] is None for r in res), "delivery errors: %r" % res)
    ids = [u.event_id(r["messageId"]) for r in res]
    t.check(len(set(ids)) == len(ids), "distinct event ids")
    stack.wait_rows(len(ids), timeout=60)
    got = u.rows(stack)
    t.check(len(got) == len(ids) and set(got) == set(ids),
            "rows %d, expected exactly %d: missing %r" % (len(got), len(ids),
                                                          set(ids) - set(got)))
    want = {
        "track": ("u-%s" % tag, "Order Completed"),
        "identify": ("anon-%s" % tag, "identify"),
        "page": ("u-%s" % tag, "page"),
        "screen": ("u-%s" % tag, "screen"),
        "group": ("u-%s" % tag, "group"),
        "alias": ("u-%s" % tag, "alias"),
    }
    for r, eid in zip(res, ids):
        user_id, name, meta, ts = got[eid]
        kind = r["method"]
        t.check((user_id, name) == want[kind], "%s: user_id/event_name %r" % (kind, (user_id, name)))
        t.check(meta["type"] == kind, "%s: type %r" % (kind, meta))
        t.check(meta["messageId"] == r["messageId"], "%s: messageId" % kind)
        t.check(meta["context"]["library"]["name"] == "@segment/analytics-node",
                "%s: context %r" % (kind, meta.get("context")))
        for dropped in ("integrations", "_metadata", "writeKey", "userId", "event"):
            t.check(dropped not in meta, "%s: %s kept in metadata" % (kind, dropped))
        sdk_ts = datetime.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        t.check(abs((ts - sdk_ts).total_seconds()) < 5, "%s: timestamp %s vs the SDK's %s" %
                (kind, ts, sdk_ts))
        t.check(meta["originalTimestamp"] == r["timestamp"] and "sentAt" in meta,
                "%s: originalTimestamp/sentAt %r" % (kind, meta))
        if kind == "track":
            t.check(meta["properties"] == {"total": 9007199254740991, "ratio": 0.1,
                                           "items": [{"sku": "a"}]}, "track properties %r" % meta)
        elif kind == "identify":
            t.check(meta["anonymousId"] == "anon-%s" % tag and
                    meta["traits"] == {"email": "e@example.com", "plan": "pro"},
                    "identify %r" % meta)
        elif kind == "page":
            t.check(meta["name"] == "Pricing" and meta["category"] == "Docs" and
                    meta["anonymousId"] == "anon-%s" % tag and
                    meta["properties"]["path"] == "/pricing", "page %r" % meta)
        elif kind == "screen":
            t.check(meta["name"] == "Home" and meta["properties"] == {}, "screen %r" % meta)
        elif kind == "group":
            t.check(meta["groupId"] == "g-%s" % tag and meta["traits"] == {"employees": 42},
                    "group %r" % meta)
        elif kind == "alias":
            t.check(meta["previousId"] == "anon-%s" % tag, "alias %r" % meta)
    # Numbers arrive as the library wrote them (JavaScript itself holds no more than 2^53 - 1
    # exactly; tests/segment/test_segment_http.py sends longer ones).
    conn = stack.db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT metadata->'properties'->>'total', metadata->'properties'->>'ratio' "
                        "FROM public.events WHERE event_name = 'Order Completed'")
            t.check(cur.fetchone() == ("9007199254740991", "0.1"), "numbers kept exactly")
    finally:
        conn.close()
    return ids


def every_type(env):
    with Stack(env, "seg_node", services=("consumer", "ingest"),
               service_env={"ingest": {"INGEST_API_KEYS": "other-key," + KEY}}) as s:
        plan = {"host": host(s), "writeKey": KEY, "flushAt": 4, "calls": calls("a")}
        out = u.run_node(env, plan)
        t.check(out["statuses"] and set(out["statuses"]) == {200}, "statuses %r" % out["statuses"])
        ids = check_rows(s, out, "a")
        print("every_type: %d messages in %d requests, %d rows, fields as documented" %
              (len(ids), out["requests"], len(ids)))
        # The same messages again (an SDK retry after a lost reply): no new row.
        again = {"host": host(s), "writeKey": KEY, "flushAt": 10,
                 "calls": [{"method": c["method"], "args": dict(c["args"], messageId=r["messageId"])}
                           for c, r in zip(calls("a"), out["results"])]}
        out2 = u.run_node(env, again)
        t.check(set(out2["statuses"]) == {200}, "resend statuses %r" % out2["statuses"])
        time.sleep(2)
        t.check(s.count_rows() == len(ids), "a resend added rows: %d" % s.count_rows())
        # A wrong write key: 401, nothing stored, and the library reports the failure.
        bad = u.run_node(env, {"host": host(s), "writeKey": "not-a-key", "maxRetries": 0,
                               "calls": calls("b")[:1]})
        t.check(bad["statuses"] == [401] and bad["results"][0]["error"], "wrong key: %r" % bad)
        t.check(s.count_rows() == len(ids), "rows after a refused key")
        print("every_type: resend stored nothing new; a wrong write key got 401")


def outage(env):
    """Kafka stopped while the library sends: 503s, retries, then every message stored once."""
    with t.DevBroker(env, brokers=1, partitions=4) as kenv:
        with Stack(kenv, "seg_outage", services=("consumer", "ingest"),
                   service_env={"ingest": {"KAFKA_DELIVERY_TIMEOUT_MS": "1500"}}) as s:
            # The pipeline is warm (the consumer stores) before the fault.
            warm = u.run_node(env, {"host": host(s), "writeKey": KEY, "calls": calls("w")[:1]})
            t.check(set(warm["statuses"]) == {200}, "warm-up %r" % warm["statuses"])
            s.wait_rows(1, timeout=60)
            t.broker_control(kenv, "POST", "/brokers/down")
            n = 60
            plan = {"host": host(s), "writeKey": KEY, "flushAt": 10, "maxRetries": 12,
                    "calls": [{"method": "track", "args": {"userId": "u-%d" % (i % 7),
                                                            "event": "e%d" % i,
                                                            "properties": {"i": i}}}
                              for i in range(n)]}
            proc = u.start_node(env, plan)
            # Kafka stays down until the library has seen 503s for a while.
            t.wait_for(lambda: t.metric_value(s.procs["ingest"], "epp_http_requests_total",
                                              {"route": "/v1/batch", "status": "503"}) or 0, 30,
                       interval=0.2, msg="503s from /v1/batch while Kafka is down")
            time.sleep(4)
            t.broker_control(kenv, "POST", "/brokers/up")
            out = u.finish_node(proc, timeout=240)
            statuses = out["statuses"]
            print("outage: %d requests, statuses %s" %
                  (out["requests"], {c: statuses.count(c) for c in sorted(set(statuses))}))
            t.check(503 in statuses, "the library never saw a 503")
            t.check(all(ra and int(ra) >= 1 for ra in out["retryAfter"]),
                    "503 without Retry-After: %r" % out["retryAfter"])
            t.check(all(r["error"] is None for r in out["results"]),
                    "messages the library gave up on: %r" % [r for r in out["results"] if r["error"]])
            ids = {u.event_id(r["messageId"]) for r in out["results"]}
            t.check(len(ids) == n, "distinct messages %d" % len(ids))
            s.wait_rows(n + 1, timeout=90)
            time.sleep(2)
            got = u.rows(s, "event_name LIKE 'e%%'")
            t.check(set(got) == ids and s.count_rows() == n + 1,
                    "rows: %d stored for %d messages (missing %d)" %
                    (s.count_rows() - 1, n, len(ids - set(got))))
            print("outage: every one of %d messages stored exactly once after the library's retries" % n)


def clock_skew(env):
    """A client whose clock is ten minutes ahead: the row carries the server's time."""
    with Stack(env, "seg_skew", services=("consumer", "ingest")) as s:
        skew_ms = 10 * 60 * 1000
        before = datetime.datetime.now(datetime.timezone.utc)
        out = u.run_node(env, {"host": host(s), "writeKey": KEY, "calls": calls("s")[:1]},
                         node_args=["--require", os.path.join(u.HERE, "skew_clock.js")],
                         extra_env={"EPP_SKEW_MS": str(skew_ms)})
        after = datetime.datetime.now(datetime.timezone.utc)
        t.check(set(out["statuses"]) == {200}, "statuses %r" % out["statuses"])
        r = out["results"][0]
        sdk_ts = datetime.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        t.check(sdk_ts - after > datetime.timedelta(minutes=9), "the client clock was not skewed: %s" % sdk_ts)
        s.wait_rows(1)
        user_id, name, meta, ts = u.rows(s)[u.event_id(r["messageId"])]
        sent = datetime.datetime.fromisoformat(meta["sentAt"].replace("Z", "+00:00"))
        print("clock_skew: client timestamp %s, sentAt %s; stored %s (server %s .. %s)" %
              (sdk_ts, sent, ts, before, after))
        t.check(sent - after > datetime.timedelta(minutes=9), "sentAt not skewed")
        t.check(before - datetime.timedelta(seconds=2) <= ts <= after + datetime.timedelta(seconds=2),
                "stored timestamp %s is not the server's time of the call" % ts)


def main():
    env = t.load_env()
    cases = {"every_type": every_type, "outage": outage, "clock_skew": clock_skew}
    name = sys.argv[2] if len(sys.argv) > 2 else None
    t.check(name in cases, "usage: test_segment_node.py BUILD_DIR %s" % "|".join(cases))
    cases[name](env)
    print("ok: %s" % name)


if __name__ == "__main__":
    main()
