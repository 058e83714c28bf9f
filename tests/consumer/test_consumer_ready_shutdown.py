"""/ready never touches freed objects (issue 19, defect 4). Four threads hammer GET /ready and
GET /metrics on one epp-consumer while it

1. stops on SIGTERM, five times in a row with traffic flowing (the shutdown frees the Kafka
   handle, the writers and the dead-letter producers); the probes start once it is running;
2. starts and fails after its writer started, three times (KAFKA_CONSUMER_CONFIG names an
   unknown property: the consumer cannot be created, and the start-up error path frees the
   writers); the probes start before the process, so they also hit the moments before the
   writers exist.

Every answer must be 200 or 503 with a JSON body, the process must exit with its normal code
(0 after SIGTERM, 1 after the failed start-up) and never by a signal, and its log must hold no
sanitizer report. Run against the ASan build (build-asan, as CI does) it shows the
use-after-free the old destruction order had; the Release build may only crash sometimes."""

import json
import signal
import sys
import threading
import time

import consumer_testlib as c

t = c.t


class Hammer:
    """Threads that GET /ready and /metrics as fast as the consumer answers."""

    def __init__(self, port, threads=4):
        self.port = port
        self.stop = threading.Event()
        self.bad = []
        self.answers = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, i):
        path = "/metrics" if i == 0 else "/ready"
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        while not self.stop.is_set():
            try:
                status, _, body = t.http_request("GET", url, timeout=5)
            except OSError:
                time.sleep(0.002)  # not listening (yet, or any more)
                continue
            with self.lock:
                self.answers += 1
            if path == "/ready":
                ok = status in (200, 503)
                try:
                    json.loads(body)
                except ValueError:
                    ok = False
            else:
                ok = status in (200, 503)
            if not ok:
                with self.lock:
                    self.bad.append((path, status, body[:200]))

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(30)
        return False


def check_exit(svc, rc, want, what):
    log = svc.log_text()
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        t.check(marker not in log, "%s: %s in the log:\n%s" % (what, marker,
                                                              log[log.find(marker) - 200:][:4000]))
    t.check(rc == want, "%s: exit code %s (want %d); log:\n%s" % (what, rc, want, svc.log_tail()))


def sigterm_rounds(env, url, topic, rounds):
    # Traffic through every round (ended once the rounds are done).
    msgs = c.make_events(1000 * 30 * rounds, seed=41)
    errors = []
    done = threading.Event()
    producer = threading.Thread(target=c.produce_evenly,
                                args=(env, topic, msgs, 30.0 * rounds, errors),
                                kwargs={"stop": done})
    producer.start()
    answers = 0
    try:
        for r in range(rounds):
            port = t.free_port()
            svc = c.consumer(env, url, topic, port=port, log_name="%s-stop%d" % (topic, r))
            try:
                svc.start()
                # Running, partitions assigned, batches being written.
                t.wait_for(lambda: c.metric(svc, "epp_consumer_batches_total") > 0,
                           timeout=60, msg="a written batch")
                with Hammer(port) as h:
                    time.sleep(0.3)
                    rc = svc.stop(timeout=60, sig=signal.SIGTERM)
            finally:
                svc.stop()
            check_exit(svc, rc, 0, "SIGTERM round %d" % r)
            t.check(not h.bad, "round %d: bad answers %s" % (r, h.bad[:3]))
            answers += h.answers
    finally:
        done.set()
        producer.join(120)
    t.check(not errors, "producing: %s" % errors[:3])
    return answers


def startup_failure_rounds(env, url, topic, rounds):
    answers = 0
    for r in range(rounds):
        port = t.free_port()
        svc = c.consumer(env, url, topic, port=port, log_name="%s-badconf%d" % (topic, r),
                         extra_env={"KAFKA_CONSUMER_CONFIG": "no.such.property=1"})
        try:
            with Hammer(port) as h:
                svc.start(wait_healthy=False)
                rc = svc.wait(60)
        finally:
            svc.stop()
        check_exit(svc, rc, 1, "start-up failure round %d" % r)
        t.check("cannot create the Kafka consumer" in svc.log_text(),
                "round %d: not the expected failure:\n%s" % (r, svc.log_tail()))
        t.check(not h.bad, "start-up round %d: bad answers %s" % (r, h.bad[:3]))
        answers += h.answers
    return answers


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_readyfree")
    n1 = sigterm_rounds(env, url, topic, 5)
    n2 = startup_failure_rounds(env, url, topic, 3)
    t.drop_database(env, url)
    print("ready during shutdown: %d answers over 5 SIGTERMs, %d over 3 failed start-ups; ok (%s)"
          % (n1, n2, c.elapsed(t0)))


if __name__ == "__main__":
    sys.exit(main())
