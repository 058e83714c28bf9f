"""Postgres restarts in the middle of a stream (`pg_ctl restart -m fast`, then a stop with a few
seconds of downtime, then 3 s of pg_terminate_backend on the consumer's connections): no loss,
no duplicate, the consumer recovers by itself (reconnect with
backoff), rollups exact. Restarts the shared test cluster, so it is RUN_SERIAL in CTest, and
this test waits for the server to be back before it ends."""

import os
import subprocess
import sys
import threading
import time

import consumer_testlib as c

t = c.t


def pg_ctl(env, *args):
    cmd = [os.path.join(env["EPP_TEST_PG_BINDIR"], "pg_ctl"), "-D", env["EPP_TEST_PG_DATA"]]
    cmd += list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                   timeout=90)


def server_up(env):
    try:
        t.pg_connect(env["EPP_TEST_PG_URL"]).close()
        return True
    except Exception:  # noqa: BLE001
        return False


def main():
    t0 = time.monotonic()
    env, url, topic = c.setup("cons_pgrestart", partitions=8)
    group = "g_" + topic
    n = 60000 if not c.FULL else 200000
    msgs = c.make_events(n, seed=9)
    log = os.path.join(env["EPP_TEST_PG_DATA"], "server.log")
    svc = c.consumer(env, url, topic, group=group,
                     extra_env={"CONSUMER_BATCH_SIZE": "2000", "RETRY_MAX_BACKOFF_MS": "1000"})
    svc.start()
    errors = []
    producer = threading.Thread(target=c.produce_evenly, args=(env, topic, msgs, 16.0, errors))
    producer.start()
    try:
        c.wait_rows(url, 5000, timeout=30, procs=[svc])
        print("restart -m fast at %d rows (%s)" % (c.count_rows(url), c.elapsed(t0)))
        pg_ctl(env, "restart", "-m", "fast", "-w", "-t", "60", "-l", log)
        t.wait_for(lambda: server_up(env), timeout=60, msg="postgres back")
        before = max(0, c.count_rows(url))
        t.wait_for(lambda: c.count_rows(url) > before, timeout=30, msg="rows moving again")
        print("stop, 3 s down, start at %d rows (%s)" % (c.count_rows(url), c.elapsed(t0)))
        pg_ctl(env, "stop", "-m", "fast", "-w", "-t", "60")
        time.sleep(3)
        status, _, _ = t.http_request("GET", svc.url("/ready"))
        t.check(status == 503, "/ready answered %s with the database down" % status)
        pg_ctl(env, "start", "-w", "-t", "60", "-l", log)
        t.wait_for(lambda: server_up(env), timeout=60, msg="postgres back")
        # Connections killed under the consumer's feet for 3 s, at random points of its
        # transactions (sometimes during COMMIT: outcome unknown until the offsets table says).
        admin = t.pg_connect(env["EPP_TEST_PG_URL"])
        killed = 0
        end = time.monotonic() + 3
        while time.monotonic() < end:
            with admin.cursor() as cur:
                cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE application_name = 'epp-consumer'")
                killed += cur.fetchone()[0]
            time.sleep(0.05 + 0.1 * (killed % 3))
        admin.close()
        print("terminated %d consumer connections (%s)" % (killed, c.elapsed(t0)))
        producer.join(60)
        t.check(not errors, "producer: %s" % errors)
        c.wait_caught_up(env, url, group, topic, timeout=60, procs=[svc])
        c.check_exact(url, {c.event_id_of(v) for _, v in msgs})
        retries = c.metric(svc, "epp_consumer_retries_total")
        t.check(retries > 0, "no retry counted")
        t.check(svc.alive(), "consumer died")
        unknown = c.metric(svc, "epp_consumer_commit_unknown_total")
        print("%d rows exact after two restarts and the kills, %d retries, %d unknown COMMITs (%s)"
              % (n, retries, unknown, c.elapsed(t0)))
    finally:
        if not server_up(env):
            try:
                pg_ctl(env, "start", "-w", "-t", "60", "-l", log)
            except Exception as e:  # noqa: BLE001
                print("could not restart postgres: %r" % e)
        rc = svc.stop()
    c.finish(env, url, svc, rc, t0)


if __name__ == "__main__":
    sys.exit(main())
