#!/usr/bin/env python3
"""Writes the wrk scripts (request bodies) of bench/bench_segment.sh and
bench/segment_instructions.sh into DIR: events_batch.lua (100 events for POST /events/batch),
segment_batch.lua (100 messages shaped as @segment/analytics-node sends them, for /v1/batch),
events_batch_same.lua (100 events for /events/batch carrying each message's whole content in
their metadata, so the same bytes per event as segment_batch.lua) and segment_track.lua
(POST /events's event as a Segment track message).

    python3 bench/segment_bodies.py DIR
"""
import json, sys
d = sys.argv[1]
ts = "2026-11-27T08:31:45.123Z"
def lua(name, body, ctype="application/json", auth=None):
    with open("%s/%s.lua" % (d, name), "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = [==[%s]==]\n'
                'wrk.headers["Content-Type"] = "%s"\n' % (body, ctype))
        if auth:
            f.write('wrk.headers["Authorization"] = "%s"\n' % auth)
props = lambda i: {"path": "/pricing", "ref": "newsletter", "plan": "pro", "n": i}
events = [{"user_id": "user-%06d" % i, "event_name": "page_view", "timestamp": ts,
           "metadata": props(i)} for i in range(100)]
lua("events_batch", json.dumps(events, separators=(",", ":")))
def message(i):
    return {"timestamp": ts, "integrations": {}, "event": "page_view", "type": "track",
            "properties": props(i),
            "context": {"library": {"name": "@segment/analytics-node", "version": "3.1.0"}},
            "userId": "user-%06d" % i,
            "messageId": "node-next-1796157595693-27e2d822-ae4b-467f-be5d-%012d" % i,
            "_metadata": {"nodeVersion": "v20.20.2", "jsRuntime": "node"}}
batch = {"batch": [message(i) for i in range(100)], "writeKey": "bench",
         "sentAt": "2026-11-27T08:31:45.200Z"}
# The same content as POST /events/batch events: every member of a message but the columns in
# metadata, so that the bytes per event match the Segment batch's.
same = [{"user_id": m["userId"], "event_name": m["event"], "timestamp": ts,
         "metadata": {k: v for k, v in m.items() if k not in ("userId", "event", "timestamp")}}
        for m in batch["batch"]]
lua("events_batch_same", json.dumps(same, separators=(",", ":")))
# Basic base64("bench:"), as the SDKs send it (auth is off: any key is accepted).
lua("segment_batch", json.dumps(batch, separators=(",", ":")), auth="Basic YmVuY2g6")
# /v1/track: the POST /events event as a Segment track message (no integrations, _metadata or
# context, so that both routes carry the same data).
track = {"userId": "user-000042", "event": "page_view", "timestamp": ts,
         "messageId": "node-next-1796157595693-27e2d822-ae4b-467f-be5d-e875dadb526d",
         "properties": {"path": "/pricing", "ref": "newsletter", "plan": "pro", "n": 12}}
lua("segment_track", json.dumps(track, separators=(",", ":")), auth="Basic YmVuY2g6")
