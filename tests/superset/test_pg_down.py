#!/usr/bin/env python3
"""Postgres down: Superset's charts show Superset's own error, and recover by themselves when
Postgres is back (docs/superset.md, "When Postgres is down").

The fixture's stack has its own Postgres (not the shared pg fixture's): this test stops it
(scripts/pg.sh stop), asks every chart for its data through the API (each answers an error
naming the connection, no chart data) and opens the dashboard in headless Chromium (each chart
shows an error, none shows numbers), starts Postgres again on the same port, and checks that
the same chart requests answer data again within 30 s with nothing restarted -- and the
dashboard draws every chart. Screenshot of the error state: BUILD/test-artifacts/
superset-postgres-down.png.
"""

import json
import os
import subprocess
import time

import superset_util as u
from superset_util import t


def pg(env, *args):
    p = subprocess.run(["bash", os.path.join(u.REPO, "scripts", "pg.sh")] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    t.check(p.returncode == 0, "pg.sh %s: %s%s" % (" ".join(args), p.stdout, p.stderr))
    print(p.stdout.strip())


def chart_answers(s, charts):
    """{name: (status, error text or None, rows)} for every chart's saved query context."""
    out = {}
    for name, c in charts.items():
        status, body = s.chart_data(dict(c["query_context"], force=True), timeout=60)
        err = None
        rows = None
        if status != 200:
            err = json.dumps(body)[:300]
        else:
            res = body["result"][0]
            err = res.get("error")
            rows = res.get("rowcount")
        out[name] = (status, err, rows)
    return out


def main():
    env = u.load_env()
    s = u.client(env)
    charts = s.dashboard_charts()
    pg_dir = os.path.join(env["EPP_SUPERSET_RUN_DIR"], "pg")
    art = u.artifacts(env)
    before = chart_answers(s, charts)
    t.check(all(st == 200 and err is None for st, err, _ in before.values()),
            "charts fail before the test: %r" % before)

    pg(env, "stop", pg_dir)
    try:
        down = chart_answers(s, charts)
        for name, (status, err, rows) in sorted(down.items()):
            print("Postgres down: %-26s HTTP %s: %s" % (name, status, (err or "")[:160]))
            t.check(status != 200 and err, "%s answered data while Postgres was down" % name)
        r = u.open_dashboard(env, os.path.join(art, "superset-postgres-down.png"),
                             timeout_ms=90000)
        t.check("error" not in r, "browser: %s" % r.get("error"))
        for c in r["loads"][0]["charts"]:
            print("Postgres down, in the browser: %-26s %s: %s" % (
                c["name"], c["state"], (c["alert"] or "; ".join(c["errors"]) or "")[:160]))
            t.check(c["state"] == "error" and (c["alert"] or c["errors"]),
                    "%s shows %s, not Superset's error" % (c["name"], c["state"]))
    finally:
        pg(env, "start", pg_dir, env["EPP_SUPERSET_PG_PORT"])

    t0 = time.monotonic()

    def recovered():
        now = chart_answers(s, charts)
        return now if all(st == 200 and err is None for st, err, _ in now.values()) else None

    after = t.wait_for(recovered, timeout=30, interval=1, msg="charts answering again")
    print("charts answer again %.1f s after Postgres started: %s" % (
        time.monotonic() - t0, {k: v[2] for k, v in after.items()}))
    r = u.open_dashboard(env, os.path.join(art, "superset-postgres-back.png"))
    t.check("error" not in r, "browser: %s" % r.get("error"))
    states = {c["name"]: c["state"] for c in r["loads"][0]["charts"]}
    t.check(set(states.values()) == {"rendered"}, "after recovery: %s" % states)
    print("ok: Superset's own error while Postgres was down, every chart back without a restart")


if __name__ == "__main__":
    main()
