#!/usr/bin/env python3
"""The chaos check itself must be able to fail (issue 19, item 8). The harness runs its usual
stack -- private Postgres, private dev broker, the real epp-consumer -- but with epp-ingest
replaced by a fake HTTP server, under the usual load, with a fault window marked:

    503      the fake answers every write with 503 kafka_unavailable. Nothing is lost, phantom or
             duplicated, so a check that only counts those passes; the scenario must FAIL
             because no event is acknowledged or refused after the resends, and there is no
             acknowledgement before or after the fault.
    drop202  the fake answers 202 (with the event_id) and stores nothing: the scenario must
             FAIL with every acknowledged event lost. In the same run the consumer dies on its
             own (a SIGKILL the scenario did not plan) and is then killed and restarted as
             planned: the check must still count it as a crash, not a planned death.

    test_check.py BUILD_DIR
"""

import http.server
import json
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import epp_testlib as t  # noqa: E402
import harness as H  # noqa: E402


class FakeIngest:
    """Answers POST /events and /events/batch without Kafka; GET /ready 200. Looks enough like
    harness.Svc for the Harness (port, url, alive, crashes)."""

    def __init__(self, mode):
        self.mode = mode
        self.name = "fake-ingest-" + mode
        self.kind = "ingest"
        self.proc = None
        self.killed_on_purpose = False
        self.crashes = []
        self.posts = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def reply(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.reply(200, {"status": "ok"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                doc = json.loads(self.rfile.read(n) or b"null")
                fake.posts += 1
                if fake.mode == "503":
                    self.reply(503, {"error": {"code": "kafka_unavailable",
                                               "message": "the fake refuses everything"}})
                elif self.path == "/events/batch":
                    self.reply(202, {"results": [{"event_id": e.get("event_id")} for e in doc]})
                else:
                    self.reply(202, {"event_id": doc.get("event_id")})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.th = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.th.start()

    def url(self, path=""):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def alive(self):
        return True

    def check_unplanned(self, before):
        pass

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def run_with_fake(env, pg, mode, unplanned_death=False):
    fake = FakeIngest(mode)
    h = H.Harness(env, pg, "check_" + mode)
    h.make_ingest = lambda: fake
    h.retry_patience = 3.0
    try:
        h.start()
        h.load()
        time.sleep(2)
        with h.fault("nothing (the fake ingest is the fault)"):
            time.sleep(1)
            if unplanned_death:
                os.kill(h.consumer.proc.proc.pid, signal.SIGKILL)   # behind the harness's back
                time.sleep(1)
                h.consumer.kill()                                   # then a planned kill
                h.consumer.start()
        time.sleep(2)
        r = h.finish()
    finally:
        h.stop()
        fake.close()
    print(H.check.format_line(r))
    print(H.check.format_details(r))
    t.check(fake.posts > 50, "the load reached the fake (%d requests)" % fake.posts)
    return r


def main():
    env = t.load_env(t.build_dir_from())
    pg = H.PgCluster(env["EPP_BUILD_DIR"]).start()
    try:
        r = run_with_fake(env, pg, "503")
        t.check(r["lost"] == 0 and r["phantom"] == 0 and r["duplicated"] == 0,
                "503 only: nothing is lost, phantom or duplicated (%s)" % r)
        t.check(not r["passed"], "a scenario in which ingest answers only 503s must fail")
        probs = "\n".join(r["problems"])
        for want in ("neither acknowledged nor refused", "acknowledged before the first fault",
                     "sent after the last fault were acknowledged"):
            t.check(want in probs, "503 only: the problems name %r:\n%s" % (want, probs))

        r = run_with_fake(env, pg, "drop202", unplanned_death=True)
        t.check(not r["passed"] and r["lost"] > 0 and r["lost"] == r["final_ok"],
                "202 without storing: every acknowledged event is lost (%d of %d)" %
                (r["lost"], r["final_ok"]))
        t.check(r["crashed"] == ["consumer0"] and
                any("consumer0 died without a planned kill" in p and "before a planned kill" in p
                    for p in r["problems"]),
                "a consumer that died between planned kills is a crash: %s" % r["crashed"])
    finally:
        pg.destroy()
    print("ok: the check fails a 503-only ingest, a 202-and-drop ingest, and a service that "
          "died between planned kills")


if __name__ == "__main__":
    main()
