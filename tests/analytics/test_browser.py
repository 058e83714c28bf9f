"""The dashboard in a real browser (headless Chromium via playwright-core): after events arrive,
it shows the right total, window count and unique users, draws the line chart (events per
minute) and the bar chart (top event types) -- checked on the charts' data and on their canvas
pixels -- refreshes itself, loads nothing from other origins, and with API keys on asks for a key
and then works. Saves screenshots into BUILD/test-artifacts/ for people to look at."""

import json
import os
import sys
import time
import uuid

import analytics_util as a
from analytics_util import t
import epp_browser as b

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["page_view", "click", "purchase", "signup", "search"]


def check_command(env, base, total, shot, key=None, profile="{profile}"):
    """The dashboard_check.js command line (node's arguments); "{profile}": a fresh one."""
    args = [os.path.join(HERE, "dashboard_check.js"), base, str(total), shot, profile]
    if key:
        args.append(key)
    return args


def run_check(env, base, total, shot, key=None):
    return b.run_node(env, check_command(env, base, total, shot, key))


def main():
    env = t.load_env()
    url = a.setup_db(env, "an_browser")
    now = int(time.time() * 1000000)
    # The last 50 minutes (inside the default 1-hour window), skewed names, 37 users; plus some
    # older events that count only in the all-time total.
    rows, window_n = [], 0
    for i in range(3000):
        ts = now - (i * 997 * 1000) % (50 * a.US_MINUTE)
        rows.append((str(uuid.uuid4()), "user-%d" % (i % 37), NAMES[min(i % 11, 4)], "{}", a.rfc3339(ts)))
        window_n += 1
    for i in range(500):
        rows.append((str(uuid.uuid4()), "old-%d" % i, "legacy", "{}", a.rfc3339(now - 3 * a.US_DAY - i * 1000000)))
    a.copy_events(url, rows)
    a.build_rollups(url)
    total = len(rows)
    art = os.path.join(env["EPP_BUILD_DIR"], "test-artifacts")
    os.makedirs(art, exist_ok=True)

    failures = []

    def expect(cond, msg):
        if not cond:
            failures.append(msg)
            print("FAIL:", msg, file=sys.stderr)

    svc = a.start_service(env, url, log_name="analytics-browser")
    keyed = a.start_service(env, url, extra_env={"ANALYTICS_API_KEYS": "dash-key"},
                            log_name="analytics-browser-keys")
    try:
        shot = os.path.join(art, "dashboard.png")
        r = run_check(env, svc.url(""), total, shot)
        print(json.dumps({k: v for k, v in r.items() if k != "requests"}, indent=1))
        expect("error" not in r, "browser: %s" % r.get("error"))
        expect(r.get("total") == total and r.get("total_text") == "{:,}".format(total),
               "total %r / %r, want %d" % (r.get("total"), r.get("total_text"), total))
        expect(r.get("window_count") == window_n, "window count %r want %d" % (r.get("window_count"), window_n))
        expect(r.get("unique_users") == 37, "unique users %r" % r.get("unique_users"))
        expect(r.get("series_sum") == window_n and r.get("series_plot_data") == window_n,
               "line chart data %r/%r" % (r.get("series_sum"), r.get("series_plot_data")))
        expect([i["event_name"] for i in r.get("top", [])][:1] == ["search"],
               "top event types %r" % r.get("top"))
        expect(sum(r.get("top_plot_data") or []) == window_n, "bar chart data %r" % r.get("top_plot_data"))
        expect(r.get("line_series_pixels", 0) > 200, "line chart not drawn (%r pixels)" % r.get("line_series_pixels"))
        expect(r.get("bar_pixels_n", 0) > 500, "bar chart not drawn (%r pixels)" % r.get("bar_pixels_n"))
        expect(r.get("auto_refreshed"), "no auto-refresh")
        expect(not r.get("foreign"), "requests to other origins: %r" % r.get("foreign"))
        expect(not r.get("console_errors"), "console errors: %r" % r.get("console_errors"))
        expect(os.path.getsize(shot) > 10000 if os.path.exists(shot) else False, "screenshot saved")

        r = run_check(env, keyed.url(""), total, os.path.join(art, "dashboard-with-key.png"), key="dash-key")
        expect("error" not in r and r.get("asked_for_key") and r.get("total") == total,
               "with API keys: %r" % {k: v for k, v in r.items() if k != "requests"})
        t.check(svc.alive() and keyed.alive(), "services alive")
    finally:
        svc.stop()
        keyed.stop()
    t.drop_database(env, url)
    if failures:
        print("%d failures" % len(failures))
        sys.exit(1)
    print("ok: dashboard shows %d events and draws both charts; screenshot %s" % (total, shot))


if __name__ == "__main__":
    main()
