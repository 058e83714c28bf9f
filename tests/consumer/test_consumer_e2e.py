"""End to end: events POSTed to epp-ingest (batches of 1000) appear in public.events exactly
once, with metadata::text exactly what jsonb makes of what was sent (big integers and 0.1 keep
every digit), and the rollups equal GROUP BY over the table. 50,000 events (acceptance size)."""

import json
import random
import sys
import time

import consumer_testlib as c

t = c.t


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_e2e", partitions=8)
    if not __import__("os").access(t.bin_path(env, "epp-ingest"), __import__("os").X_OK):
        print("epp-ingest not built; skipping")
        return 0
    group = "g_" + topic
    n = 50000
    rnd = random.Random(21)
    events = []
    for i in range(n):
        events.append({
            "user_id": "user-%d" % rnd.randrange(700),
            "event_name": rnd.choice(["page_view", "click", "signup", "purchase"]),
            "timestamp": "2026-11-%02dT%02d:%02d:%02d.%03dZ" % (
                rnd.randrange(20, 27), rnd.randrange(24), rnd.randrange(60), rnd.randrange(60),
                rnd.randrange(1000)),
            "metadata": {"i": i, "big": 12345678901234567890, "f": 0.1,
                         "nested": {"a": [1, 2.50, "x\ty"], "u": "caf\u00e9 \u2603"}},
        })
    ingest = t.ServiceProcess(env, "epp-ingest", port=t.free_port(),
                              extra_env={"KAFKA_TOPIC": topic}, log_name=topic + "-ingest")
    svc = c.consumer(env, url, topic, group=group)
    ingest.start()
    svc.start()
    sent = {}
    try:
        for i in range(0, n, 1000):
            chunk = events[i:i + 1000]
            # The raw text keeps 2.50 and the big integer as written (json.dumps would too).
            body = json.dumps({"events": chunk}).replace('2.5,', '2.50,')
            status, _, reply = t.http_json("POST", ingest.url("/events/batch"), body,
                                           {"Content-Type": "application/json"}, timeout=30)
            t.check(status in (200, 202, 207), "batch answered %s: %r" % (status, reply))
            t.check(reply["accepted"] == len(chunk), "rejected: %r" % reply["results"][:3])
            for r in reply["results"]:
                sent[r["event_id"]] = chunk[r["index"]]
        print("%d events accepted by epp-ingest (%s)" % (len(sent), c.elapsed(t0)))
        c.wait_rows(url, n, timeout=60, procs=[svc, ingest])
        c.check_exact(url, set(sent))
        conn = t.pg_connect(url)
        with conn.cursor() as cur:
            sample = rnd.sample(sorted(sent), 300)
            for eid in sample:
                md = json.dumps(sent[eid]["metadata"]).replace('2.5,', '2.50,')
                cur.execute("SELECT metadata::text = %s::jsonb::text, metadata::text, user_id, "
                            "event_name FROM public.events WHERE event_id = %s", (md, eid))
                same, text, user, name = cur.fetchone()
                t.check(same, "metadata differs for %s: %s vs %s" % (eid, text, md))
                t.check("12345678901234567890" in text and "0.1" in text and "2.50" in text,
                        "digits lost: %s" % text)
                t.check(user == sent[eid]["user_id"] and name == sent[eid]["event_name"],
                        "fields differ for %s" % eid)
        conn.close()
        print("%d rows exact, metadata text exact, rollups exact (%s)" % (n, c.elapsed(t0)))
    finally:
        rc = svc.stop()
        ingest.stop()
    t.check(rc == 0, "consumer exit code %s" % rc)
    t.drop_database(env, url)
    print("ok (%s)" % c.elapsed(t0))


if __name__ == "__main__":
    sys.exit(main())
