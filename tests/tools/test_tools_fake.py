"""epp-send and epp-load against a small Python HTTP server that records every request: what the
tools put on the wire (bodies, routes, markers, event_ids), how they count answers (202, 400,
503 with retries, partial batch rejections, connection refused), their summary formats and
exit codes. No fixture needed; the real-stack tests are test_tools_stack.py and
test_tools_load.py.
"""
import calendar
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))
import epp_testlib as t  # noqa: E402

DEFAULT_NAMES = {"page_view", "click", "signup", "purchase", "add_to_cart", "search", "login",
                 "logout"}


class Recorder(BaseHTTPRequestHandler):
    """Modes by path prefix: /ok (202), /reject (400), /flaky (503 on the first attempt of each
    body, then 202), /half (batch: odd indexes rejected)."""
    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    requests = []      # (path, parsed body)
    seen_bodies = set()

    def log_message(self, *a):
        pass

    def reply(self, status, obj, extra=b""):
        out = json.dumps(obj).encode()
        # One write: headers and body together (a second small write would meet Nagle plus
        # delayed ACK and add 40 ms to every request).
        self.wfile.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s"
                         b"Content-Length: %d\r\n\r\n%s" % (status, extra, len(out), out))

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        body = json.loads(raw)
        with Recorder.lock:
            Recorder.requests.append((self.path, body, dict(self.headers)))
            first = raw not in Recorder.seen_bodies
            Recorder.seen_bodies.add(raw)
        events = body if isinstance(body, list) else [body]
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        if self.path.startswith("/reject"):
            return self.reply(400, {"error": {"code": "invalid_field", "message": "no"}})
        if self.path.startswith("/flaky") and first:
            return self.reply(503, {"error": {"code": "unavailable", "message": "try later"}},
                              b"Retry-After: 0\r\n")
        if isinstance(body, list):
            results = []
            acc = rej = 0
            for i, e in enumerate(events):
                if self.path.startswith("/half") and i % 2 == 1:
                    rej += 1
                    results.append({"index": i, "error": {"code": "invalid_field"}})
                else:
                    acc += 1
                    results.append({"index": i, "event_id": e.get("event_id", "x")})
            return self.reply(200, {"accepted": acc, "rejected": rej, "results": results})
        return self.reply(202, {"event_id": body.get("event_id", "x"), "status": "accepted"})


def run(build, name, *args, timeout=60):
    p = subprocess.run([t.bin_path(build, name)] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def summary(out):
    m = re.search(r"sent=(\d+) accepted=(\d+) rejected=(\d+) failed=(\d+) rate=([\d.]+)/s "
                  r"errors=(\{.*\})", out)
    t.check(m, "no summary line in %r" % out)
    return {"sent": int(m.group(1)), "accepted": int(m.group(2)), "rejected": int(m.group(3)),
            "failed": int(m.group(4)), "rate": float(m.group(5)),
            "errors": json.loads(m.group(6))}


def take():
    with Recorder.lock:
        r = list(Recorder.requests)
        Recorder.requests.clear()
        Recorder.seen_bodies.clear()
    return r


def events_of(reqs):
    out = []
    for _, body, _ in reqs:
        out.extend(body if isinstance(body, list) else [body])
    return out


def test_send_defaults(build, base):
    rc, out, err = run(build, "epp-send", "--url", base + "/ok")
    t.check(rc == 0, "epp-send failed: %s %s" % (out, err))
    s = summary(out)
    t.check(s == dict(s, sent=300, accepted=300, rejected=0, failed=0, errors={}), s)
    t.check("\r" not in err, "a progress bar was drawn although stdout is not a terminal")
    reqs = take()
    t.check(len(reqs) == 300 and all(p == "/ok/events" for p, _, _ in reqs),
            "300 POST /events expected, got %d %r" % (len(reqs), {p for p, _, _ in reqs}))
    t.check(all(h.get("Content-Type") == "application/json" for _, _, h in reqs), "content type")
    evs = events_of(reqs)
    users = {}
    for e in evs:
        users[e["user_id"]] = users.get(e["user_id"], 0) + 1
        t.check(e["event_name"] in DEFAULT_NAMES, e)
        t.check(isinstance(e["metadata"], dict) and "epp_test" not in e["metadata"], e)
        t.check(uuid.UUID(e["event_id"]).version == 7, e)
    t.check(len(users) == 30 and set(users.values()) == {10}, "300 events over 30 users: %r" % users)
    t.check(len({e["event_id"] for e in evs}) == 300, "event_ids are unique")
    ts = [calendar.timegm(time.strptime(e["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) for e in evs]
    t.check(all(abs(x - time.time()) < 120 for x in ts), "timestamps are now: %r" % ts[:3])


def test_send_batch_marker(build, base):
    rc, out, err = run(build, "epp-send", "--url", base + "/ok/events", "--batch", "50",
                       "--count", "1000", "--test-marker", "t1", "--users", "7",
                       "--event-names", "a,b", "--user-prefix", "tst_")
    t.check(rc == 0, "epp-send --batch failed: %s %s" % (out, err))
    s = summary(out)
    t.check(s["accepted"] == 1000 and s["sent"] == 1000, s)
    reqs = take()
    t.check(len(reqs) == 20, "20 batch requests, got %d" % len(reqs))
    t.check(all(p == "/ok/events/batch" and isinstance(b, list) and len(b) == 50
                for p, b, _ in reqs), "batches of 50 to /events/batch")
    evs = events_of(reqs)
    t.check(all(e["metadata"].get("epp_test") == "t1" for e in evs), "every event marked")
    t.check({e["event_name"] for e in evs} <= {"a", "b"}, "event names from --event-names")
    t.check({e["user_id"] for e in evs} == {"tst_%d" % i for i in range(7)}, "user prefix")


def test_send_partial_batch(build, base):
    rc, out, _ = run(build, "epp-send", "--url", base + "/half", "--batch", "10", "--count", "100")
    s = summary(out)
    t.check(rc == 1 and s["accepted"] == 50 and s["rejected"] == 50, (rc, s))
    take()


def test_send_retries(build, base):
    rc, out, err = run(build, "epp-send", "--url", base + "/flaky", "--count", "100")
    s = summary(out)
    t.check(rc == 0 and s["accepted"] == 100 and s["failed"] == 0, (rc, s, err))
    reqs = take()
    t.check(len(reqs) == 200, "each request retried once after its 503: %d" % len(reqs))
    ids = [e["event_id"] for e in events_of(reqs)]
    t.check(len(set(ids)) == 100, "a retry resends the same event_id")
    # Without retries the 503s are failures.
    rc, out, _ = run(build, "epp-send", "--url", base + "/flaky", "--count", "20", "--retries", "0")
    s = summary(out)
    t.check(rc == 1 and s["failed"] == 20 and s["errors"] == {"503": 20}, (rc, s))
    take()


def test_send_rejected_and_unreachable(build, base):
    rc, out, _ = run(build, "epp-send", "--url", base + "/reject", "--count", "30")
    s = summary(out)
    t.check(rc == 1 and s["rejected"] == 30 and s["accepted"] == 0 and s["errors"] == {"400": 30},
            (rc, s))
    take()
    port = t.free_port()
    rc, out, _ = run(build, "epp-send", "--url", "http://127.0.0.1:%d" % port, "--count", "5",
                     "--retries", "1")
    s = summary(out)
    t.check(rc == 1 and s["failed"] == 5 and s["errors"].get("connect") == 5, (rc, s))
    rc, _, err = run(build, "epp-send", "--count", "0")
    t.check(rc == 2 and "count" in err, "bad flag value: rc=%d %s" % (rc, err))
    rc, out, _ = run(build, "epp-send", "--help")
    for flag in ("--count", "--users", "--batch", "--url", "--api-key", "--event-names",
                 "--test-marker", "--concurrency"):
        t.check(flag in out, "--help lists %s" % flag)


def test_load(build, base):
    rec = os.path.join(build, "test-logs", t.unique_name("load-record") + ".txt")
    os.makedirs(os.path.dirname(rec), exist_ok=True)
    rc, out, err = run(build, "epp-load", "--url", base + "/ok", "--rps", "200", "--duration",
                       "2s", "--connections", "32", "--record", rec, "--json", "--users", "5")
    t.check(rc == 0, "epp-load failed: %s %s" % (out, err))
    r = json.loads(out)
    t.check(r["scheduled"] == 400 and r["completed"] == 400 and r["status"] == {"202": 400}, r)
    t.check(abs(r["achieved_rps"] - 200) <= 4, "achieved %.1f of 200 req/s" % r["achieved_rps"])
    lat = r["latency_us"]
    t.check(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], lat)
    reqs = take()
    sent_ids = [e["event_id"] for e in events_of(reqs)]
    with open(rec) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    os.unlink(rec)
    t.check(len(lines) == 400 and all(st == "202" for _, st in lines), "record: 400 lines")
    t.check(sorted(i for i, _ in lines) == sorted(sent_ids) and len(set(sent_ids)) == 400,
            "the record names exactly the event_ids sent")
    t.check({e["user_id"] for e in events_of(reqs)} <= {"load-%d" % i for i in range(5)}, "users")

    rc, out, _ = run(build, "epp-load", "--url", base + "/ok/events/batch", "--batch", "10",
                     "--rps", "50", "--duration", "500ms", "--json")
    r = json.loads(out)
    reqs = take()
    t.check(rc == 0 and r["completed"] == 25 and len(reqs) == 25, (rc, r, len(reqs)))
    t.check(all(p == "/ok/events/batch" and len(b) == 10 for p, b, _ in reqs), "batches of 10")
    t.check(abs(r["events_per_s"] - 500) < 25, r)

    # Human-readable report.
    rc, out, _ = run(build, "epp-load", "--url", base + "/reject", "--rps", "20",
                     "--duration", "0.5")
    take()
    t.check(rc == 1 and "400=10" in out and "p99=" in out, "report: %s" % out)

    # Nobody listening: connection errors, not-sent requests, exit 1.
    port = t.free_port()
    rc, out, _ = run(build, "epp-load", "--url", "http://127.0.0.1:%d" % port, "--rps", "20",
                     "--duration", "300ms", "--timeout", "0.5", "--json")
    r = json.loads(out)
    t.check(rc == 1 and r["errors"].get("connect", 0) > 0 and r["completed"] == 0, r)
    # No answer within --timeout: timeouts, in the report and in the record.
    rc, out, _ = run(build, "epp-load", "--url", base + "/slow", "--rps", "10", "--duration",
                     "500ms", "--timeout", "0.3", "--record", rec, "--json")
    r = json.loads(out)
    with open(rec) as f:
        statuses = [ln.split()[1] for ln in f if ln.strip()]
    os.unlink(rec)
    t.check(rc == 1 and r["errors"] == {"timeout": 5} and r["answered"] == 0 and
            r["latency_us"]["p50"] >= 300000 and statuses == ["timeout"] * 5, (r, statuses))
    time.sleep(1.5)  # let the slow handlers finish before their requests are counted below
    take()
    rc, _, err = run(build, "epp-load", "--duration", "10x")
    t.check(rc == 2 and "duration" in err, err)


def main():
    build = t.build_dir_from()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    base = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        for test in (test_send_defaults, test_send_batch_marker, test_send_partial_batch,
                     test_send_retries, test_send_rejected_and_unreachable, test_load):
            t0 = time.monotonic()
            test(build, base)
            print("ok %s (%.1fs)" % (test.__name__, time.monotonic() - t0), flush=True)
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
