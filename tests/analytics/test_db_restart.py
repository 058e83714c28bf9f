"""Database restarts and outages while queries run: every answer is either correct (200, equal to
SQL) or a 503 JSON error with Retry-After -- never a crash, a hang, a 500 or a wrong count; /ready
says 503 while the database is down; and answers resume by themselves afterwards, without
restarting epp-analytics.

Restarts the fixture's shared Postgres (pg_ctl restart -m fast, then stop + start after a pause),
so CTest runs this test alone (RUN_SERIAL). It waits until the server is back before it ends."""

import os
import subprocess
import sys
import threading
import time
import uuid

import analytics_util as a
from analytics_util import t

F = a.parse_ts("2026-03-01T00:00:00Z")
failures = []
lock = threading.Lock()


def fail(msg):
    with lock:
        failures.append(msg)
    print("FAIL:", msg, file=sys.stderr)


def pg_ctl(env, *args):
    cmd = [os.path.join(env["EPP_TEST_PG_BINDIR"], "pg_ctl")] + list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def main():
    env = t.load_env()
    for k in ("EPP_TEST_PG_BINDIR", "EPP_TEST_PG_DATA"):
        t.check(env.get(k), "%s missing from the fixture env" % k)
    data = env["EPP_TEST_PG_DATA"]
    url = a.setup_db(env, "an_restart")
    rows = [(str(uuid.uuid4()), "u%d" % (i % 50), ["view", "click", "buy", "login"][i % 4], "{}",
             a.rfc3339(F + i * 13 * 1000000 + i % 1000)) for i in range(20000)]
    a.copy_events(url, rows)
    a.build_rollups(url)
    ts = sorted(a.parse_ts(r[4]) for r in rows)

    queries = []
    for k in range(8):
        lo = F + k * 5 * a.US_HOUR + 1234567
        hi = lo + (k + 1) * 7 * a.US_HOUR + 89
        n = sum(1 for x in ts if lo <= x < hi)
        queries.append(("/analytics/events/count", {"from_ts": a.rfc3339(lo), "to_ts": a.rfc3339(hi)},
                        lambda b, n=n: b["count"] == n))
        queries.append(("/analytics/events/timeseries",
                        {"from_ts": a.rfc3339(lo), "to_ts": a.rfc3339(hi), "interval": "hour"},
                        lambda b, n=n: sum(p["count"] for p in b["points"]) == n))
        queries.append(("/analytics/events/top", {"from_ts": a.rfc3339(lo), "to_ts": a.rfc3339(hi)},
                        lambda b, n=n: sum(i["count"] for i in b["items"]) == n))
    queries.append(("/analytics/users/active", {"from_ts": a.rfc3339(F), "to_ts": a.rfc3339(F + 30 * a.US_DAY)},
                    lambda b: b["unique_users"] == 50))
    queries.append(("/analytics/users/u7/events", {"limit": 5}, lambda b: len(b["events"]) == 5))
    queries.append(("/analytics/events/" + rows[5][0], {}, lambda b: b["event_id"] == rows[5][0]))

    svc = a.start_service(env, url, extra_env={"HTTP_THREADS": "4", "QUERY_TIMEOUT_MS": "5000"},
                          log_name="analytics-db-restart")
    stats = {"ok": 0, "503": 0}
    stop = threading.Event()

    def worker(seed):
        i = seed
        while not stop.is_set():
            path, params, good = queries[i % len(queries)]
            i += 1
            try:
                st, hdrs, body = a.get(svc, path, params, timeout=15)
            except Exception as e:  # noqa: BLE001
                fail("%s: no HTTP answer (%r); service alive: %s" % (path, e, svc.alive()))
                time.sleep(0.2)
                continue
            if st == 200:
                if not good(body):
                    fail("%s %r: wrong answer %r" % (path, params, body))
                with lock:
                    stats["ok"] += 1
            elif st == 503:
                if not (isinstance(body, dict) and body.get("error", {}).get("code") in
                        ("database_unavailable", "query_timeout") and "retry-after" in hdrs):
                    fail("%s: bad 503 %r %r" % (path, hdrs, body))
                with lock:
                    stats["503"] += 1
            else:
                fail("%s: status %s %r" % (path, st, body))

    def ready_status():
        return t.http_request("GET", svc.url("/ready"), timeout=10)[0]

    def answers_resume(timeout=20):
        def ok():
            st, _, body = a.get(svc, *queries[0][:2])
            return st == 200 and queries[0][2](body)
        t.wait_for(ok, timeout=timeout, interval=0.2, msg="answers after the database came back")
        t.wait_for(lambda: ready_status() == 200, timeout=timeout, interval=0.2, msg="/ready 200")

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(6)]
    try:
        t.check(ready_status() == 200, "/ready before the restarts")
        for th in threads:
            th.start()
        time.sleep(1.0)
        for n in range(3):
            pg_ctl(env, "restart", "-D", data, "-m", "fast", "-w", "-t", "60", "-l", os.path.join(data, "server.log"))
            time.sleep(0.5)
            answers_resume()
            print("restart %d: answers resumed (%r)" % (n + 1, stats))
        # A longer outage: stopped for 3 s.
        pg_ctl(env, "stop", "-D", data, "-m", "fast", "-w", "-t", "60")
        try:
            time.sleep(1.0)
            st = ready_status()
            if st != 503:
                fail("/ready while the database is down: %s" % st)
            st, hdrs, body = a.get(svc, *queries[0][:2])
            if not (st == 503 and body["error"]["code"] == "database_unavailable" and hdrs.get("retry-after")):
                fail("query while the database is down: %s %r" % (st, body))
            time.sleep(2.0)
        finally:
            pg_ctl(env, "start", "-D", data, "-w", "-t", "60", "-l", os.path.join(data, "server.log"))
        answers_resume()
        time.sleep(1.0)
        stop.set()
        for th in threads:
            th.join(30)
        print("answers during the run: %r" % stats)
        t.check(stats["ok"] > 100, "too few correct answers: %r" % stats)
        t.check(svc.alive(), "epp-analytics died")
        t.check(t.metric_present(svc, "epp_analytics_db_errors_total"), "db error metric present")
        # After recovery, every query answers correctly again.
        for path, params, good in queries:
            st, _, body = a.get(svc, path, params)
            if st != 200 or not good(body):
                fail("after recovery %s: %s %r" % (path, st, body))
    finally:
        stop.set()
        svc.stop()
        # Leave the shared server running for the tests after this one.
        t.wait_for(lambda: t.pg_connect(env["EPP_TEST_PG_URL"]).close() or True, timeout=60,
                   msg="Postgres back up")
    # statement_timeout: a query stuck behind a lock answers 503 query_timeout after
    # QUERY_TIMEOUT_MS, and the pool connection is fine afterwards.
    svc = a.start_service(env, url, extra_env={"QUERY_TIMEOUT_MS": "500", "HTTP_THREADS": "1"},
                          log_name="analytics-query-timeout")
    locker = t.pg_connect(url, autocommit=False)
    try:
        with locker.cursor() as cur:
            # Both the per-name rollup and the per-bucket totals (sql/010) that count reads.
            cur.execute("LOCK TABLE public.epp_rollup_day, public.epp_rollup_day_total "
                        "IN ACCESS EXCLUSIVE MODE")
            t0 = time.monotonic()
            st, hdrs, body = a.get(svc, *queries[0][:2])
            took = time.monotonic() - t0
            if not (st == 503 and body["error"]["code"] == "query_timeout" and hdrs.get("retry-after")
                    and took < 3):
                fail("query behind a lock: %s %r after %.1fs" % (st, body, took))
        locker.rollback()
        st, _, body = a.get(svc, *queries[0][:2])
        if not (st == 200 and queries[0][2](body)):
            fail("after the timeout: %s %r" % (st, body))
    finally:
        locker.close()
        svc.stop()
    t.drop_database(env, url)
    if failures:
        print("%d failures" % len(failures))
        sys.exit(1)
    print("ok: no crash, no wrong answer, only 503 JSON while down; recovered by itself")


if __name__ == "__main__":
    main()
