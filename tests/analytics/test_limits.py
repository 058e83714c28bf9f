"""Issue 19, item 10: two promises of epp-analytics that nothing tested.

- The database pool's wait (DB_POOL_WAIT_MS): with one connection (DB_POOL_SIZE=1) held by a
  query that a lock keeps waiting, another request waits DB_POOL_WAIT_MS and is answered 503
  with Retry-After and a JSON error; once the lock goes, the held query answers 200.
- The rate limit (RATE_LIMIT_RPS, RATE_LIMIT_BURST): past the burst, 429 with Retry-After and
  a JSON error; /health is never limited.
"""
import threading
import time

import analytics_util as a
from analytics_util import t

COUNT = "/analytics/events/count"
RANGE = {"from_ts": "2026-03-01T00:00:00Z", "to_ts": "2026-03-02T00:00:00Z"}


def pool_exhausted(env):
    url = a.setup_db(env, "an_pool")
    svc = a.start_service(env, url, extra_env={"HTTP_THREADS": "2", "DB_POOL_SIZE": "1",
                                               "DB_POOL_WAIT_MS": "300",
                                               "QUERY_TIMEOUT_MS": "20000"},
                          log_name="analytics-pool")
    locker = t.pg_connect(url, autocommit=False)
    try:
        st, _, _ = a.get(svc, COUNT, RANGE)
        t.check(st == 200, "a count before the lock -> 200 (got %s)" % st)
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE public.events IN ACCESS EXCLUSIVE MODE")
        held = {}

        def slow():
            held["st"] = a.get(svc, COUNT, RANGE, timeout=30)[0]
        th = threading.Thread(target=slow)
        th.start()
        time.sleep(0.5)  # the only pool connection now waits on the lock
        t0 = time.monotonic()
        st, hdrs, body = a.get(svc, COUNT, RANGE, timeout=10)
        el = time.monotonic() - t0
        t.check(st == 503, "a second count while the pool is empty -> 503 (got %s %r)" % (st, body))
        t.check(isinstance(body, dict) and "error" in body, "the 503 is a JSON error: %r" % body)
        t.check(hdrs.get("retry-after") is not None, "the 503 carries Retry-After")
        t.check(0.25 <= el < 5, "it waited DB_POOL_WAIT_MS (300 ms) first: %.2f s" % el)
        locker.rollback()
        th.join(30)
        t.check(held.get("st") == 200, "the held count answers 200 once the lock is gone (got %s)"
                % held.get("st"))
    finally:
        locker.close()
        svc.stop()


def rate_limited(env):
    url = a.setup_db(env, "an_rate")
    svc = a.start_service(env, url, extra_env={"RATE_LIMIT_RPS": "0.5", "RATE_LIMIT_BURST": "3"},
                          log_name="analytics-rate")
    try:
        sts = [a.get(svc, COUNT, RANGE)[0] for _ in range(3)]
        t.check(sts == [200, 200, 200], "3 counts within the burst -> 200 (got %s)" % sts)
        st, hdrs, body = a.get(svc, COUNT, RANGE)
        t.check(st == 429, "the 4th -> 429 (got %s)" % st)
        t.check(isinstance(body, dict) and body.get("error", {}).get("code") == "rate_limited",
                "the 429 is a JSON error rate_limited: %r" % body)
        t.check(hdrs.get("retry-after") == "2", "Retry-After: 2 = ceil(1 / 0.5) (got %s)" %
                hdrs.get("retry-after"))
        st, _, _ = a.get(svc, "/health")
        t.check(st == 200, "/health is never limited (got %s)" % st)
    finally:
        svc.stop()


def main():
    env = t.load_env()
    pool_exhausted(env)
    rate_limited(env)
    print("limits: ok")


if __name__ == "__main__":
    main()
