"""epp-consumer asked to stop while it waits for Postgres at start-up (no batch in hand) exits 0
at once -- not after the shutdown timeout that a batch in hand gets to be written (30 s) -- and
its Kafka clients log through the JSON logger, not librdkafka's own stderr lines."""

import json
import signal
import time

import consumer_testlib as c

t = c.t


def main():
    env = t.load_env()
    topic = t.unique_name("cons_stopwait")
    # Nothing listens on this port: the consumer retries its first connection forever.
    url = "postgresql://postgres@127.0.0.1:%d/postgres" % t.free_port()
    svc = c.consumer(env, url, topic, extra_env={"SHUTDOWN_TIMEOUT_MS": "30000"})
    svc.start()
    try:
        t.wait_for(lambda: "cannot connect to Postgres; retrying" in svc.log_text(), timeout=30,
                   msg="the consumer retrying its first database connection")
        t0 = time.monotonic()
        rc = svc.stop(timeout=20, sig=signal.SIGTERM)
        took = time.monotonic() - t0
    finally:
        svc.stop()
    log = svc.log_text()
    print("SIGTERM while waiting for Postgres: exit %s after %.1f s" % (rc, took))
    t.check(rc == 0, "exit status %s after SIGTERM; log:\n%s" % (rc, log[-2000:]))
    # The bound is far below the 30 s shutdown timeout and far above a busy machine's delays.
    t.check(took < 10, "took %.1f s to stop with nothing in hand" % took)
    t.check('"msg":"stopped while waiting for Postgres' in log, "no 'stopped' line in the log")
    bad = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith("{")]
    t.check(not bad, "log lines that are not JSON (first 3): %r" % bad[:3])
    for ln in log.splitlines():
        json.loads(ln)
    print("stop while waiting: ok")


if __name__ == "__main__":
    main()
