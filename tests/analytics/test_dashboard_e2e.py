"""End to end, as a person would see it after `make run` and `epp-send` (docs/contract.md §3): the
dashboard is open in headless Chromium on an empty store; epp-send sends 300 events through
epp-ingest, Kafka (the dev broker) and epp-consumer into Postgres; the page shows them by itself
within seconds (auto-refresh), with both charts drawn. Screenshot: BUILD/test-artifacts/
dashboard-e2e.png."""

import json
import os
import shutil
import subprocess
import sys
import time

import analytics_util as a
from analytics_util import t
import epp_browser as b
from epp_stack import Stack
import test_browser as tb

N = 300


def main():
    env = t.load_env()
    with Stack(env, "an_e2e", partitions=2,
               extra_env={"LOG_LEVEL": "warn", "HTTP_BIND_ADDRESS": "127.0.0.1"}) as s:
        run(env, s)
    print("ok: events sent through ingest -> Kafka -> consumer appeared on the dashboard")


def run(env, s):
    ingest, svc, url = s.procs["ingest"], s.procs["analytics"], s.db_url
    t.wait_for(lambda: t.http_request("GET", svc.url("/ready"))[0] == 200, timeout=30,
               msg="analytics ready")
    art = os.path.join(env["EPP_BUILD_DIR"], "test-artifacts")
    os.makedirs(art, exist_ok=True)
    shot = os.path.join(art, "dashboard-e2e.png")
    # The browser waits (up to 60 s) for the total to reach N while epp-send runs.
    profile = b.new_profile(env)
    browser = subprocess.Popen(["node"] + tb.check_command(env, svc.url(""), N, shot,
                                                           profile=profile),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=b.node_env(env, timeout_ms=60000))
    time.sleep(2)
    t0 = time.monotonic()
    send = subprocess.run([t.bin_path(env, "epp-send"), "--url", ingest.url("/events"),
                           "--count", str(N), "--users", "30"],
                          capture_output=True, text=True, timeout=120)
    send_s = time.monotonic() - t0
    print("epp-send:", send.stdout.strip()[-300:], send.stderr.strip()[-300:])
    t.check(send.returncode == 0, "epp-send failed: %s" % send.returncode)
    out, err = browser.communicate(timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    r = b.parse_result(out, err, browser.returncode)
    print("epp-send took %.1fs; the dashboard showed all %s events %.1fs after the page loaded "
          "(refresh every 5 s)" % (send_s, r.get("total"), r.get("reached_ms", 0) / 1000.0))
    print(json.dumps({k: v for k, v in r.items() if k != "requests"}))
    t.check("error" not in r, "browser: %s" % r.get("error"))
    t.check(r.get("total") == N and r.get("window_count") == N, "totals %r" % r)
    t.check(r.get("unique_users") == 30, "unique users %r" % r.get("unique_users"))
    t.check(r.get("line_series_pixels", 0) > 50 and r.get("bar_pixels_n", 0) > 200, "charts drawn")
    t.check(not r.get("foreign"), "foreign requests %r" % r.get("foreign"))
    (n,), = a.sql(url, "SELECT count(*) FROM public.events")
    t.check(n == N, "rows stored: %d" % n)


if __name__ == "__main__":
    main()
