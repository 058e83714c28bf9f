#!/usr/bin/env python3
"""The acceptance path in a real browser: with the fixture's `make superset` (which started its
own `make run`), `build/bin/epp-send` sends 300 events through epp-ingest; headless Chromium
(playwright-core) logs in to Superset, opens the epp-events dashboard and waits for every chart
to finish. Fails on any chart that shows an error or nothing; the big number shows what
epp-analytics counts (the 300 events, plus those of earlier runs of this test on the same
fixture). Opens the dashboard twice (the second load has the browser's cache, as a person who
comes back) and prints both load times. Screenshot: BUILD/test-artifacts/superset-dashboard.png.
"""

import datetime
import json
import os
import subprocess

import superset_util as u
from superset_util import t

N = 300


def count_recent(env):
    """Events of the last eight days, from epp-analytics."""
    now = datetime.datetime.now(datetime.timezone.utc)
    url = env["EPP_SUPERSET_ANALYTICS_URL"] + "/analytics/events/count?from_ts=%d&to_ts=%d" % (
        (now - datetime.timedelta(days=8)).timestamp(), now.timestamp() + 60)
    status, _, body = t.http_json("GET", url)
    t.check(status == 200, "analytics: %s %r" % (status, body))
    return body["count"]


def main():
    env = u.load_env()
    before = count_recent(env)
    send = subprocess.run([t.bin_path(env, "epp-send"), "--url",
                           env["EPP_SUPERSET_INGEST_URL"] + "/events", "--count", str(N)],
                          capture_output=True, text=True, timeout=120)
    print("epp-send:", send.stdout.strip()[-200:])
    t.check(send.returncode == 0, "epp-send failed (%d): %s" % (send.returncode, send.stderr))
    total = t.wait_for(lambda: (lambda n: n if n >= before + N else 0)(count_recent(env)),
                       timeout=30, msg="%d more events stored" % N)
    print("%d events in the last 8 days (%d before epp-send)" % (total, before))

    shot = os.path.join(u.artifacts(env), "superset-dashboard.png")
    r = u.open_dashboard(env, shot, loads=2)
    t.check("error" not in r, "browser: %s" % r.get("error"))
    print("login %d ms; dashboard loads: %s" % (r["login_ms"], ", ".join(
        "%d ms%s" % (load["ms"], "" if load["done"] else " (NOT finished)") for load in r["loads"])))
    failures = []
    for i, load in enumerate(r["loads"]):
        states = {c["name"] or str(c["id"]): c for c in load["charts"]}
        if sorted(states) != sorted(u.CHART_NAMES):
            failures.append("load %d: charts on the page: %s" % (i + 1, sorted(states)))
        for name, c in sorted(states.items()):
            line = "load %d: %-26s %-8s rows %s, finished at %s ms" % (
                i + 1, name, c["state"], c["rows"], c["drawn_ms"])
            print(line)
            if c["state"] != "rendered":
                failures.append("%s: %s" % (line, c.get("alert") or c.get("errors") or c["text"]))
        big = states.get("Total events")
        digits = "".join(ch for ch in (big or {}).get("text", "").split("\n")[-1] if ch.isdigit())
        if not digits or int(digits) != total:
            failures.append("load %d: Total events shows %r, epp-analytics counts %d" % (
                i + 1, big and big["text"], total))
    if r["console_errors"]:
        print("browser console errors (not failures): %s" % json.dumps(r["console_errors"][:5]))
    for f in failures:
        print("FAIL:", f)
    t.check(not failures, "%d failures" % len(failures))
    t.check(os.path.getsize(shot) > 20000, "screenshot %s is too small" % shot)
    print("ok: every chart drawn, Total events = %d; screenshot %s" % (total, shot))


if __name__ == "__main__":
    main()
