#!/usr/bin/env python3
"""Each chart's saved query_context (the one /api/v1/chart/{id}/data and the chart-data test
use) is the one Superset's own Explore view builds from the chart's params -- so that what the
tests compute is what the dashboard shows. Explore runs in headless Chromium against the
fixture's Superset; the instance's ids are left out of the comparison (tests/superset/
superset_util.py: portable).

    test_query_context.py BUILD            check (CTest superset.query_context)
    test_query_context.py BUILD --write    write Explore's query contexts into the bundle's
                                           chart files (after changing a chart's params; then
                                           provision again)
"""

import json
import sys

import superset_util as u
from superset_util import t


def main():
    env = u.load_env()
    write = "--write" in sys.argv
    s = u.client(env)
    charts = s.dashboard_charts()
    t.check(sorted(charts) == sorted(u.CHART_NAMES), "dashboard charts: %s" % sorted(charts))
    built = u.explore_query_contexts(env, [c["id"] for c in charts.values()])
    files = u.bundle_charts()
    failures = []
    for name, chart in sorted(charts.items()):
        fresh = built.get(str(chart["id"]))
        if fresh is None:
            failures.append("%s: Explore sent no chart data request" % name)
            continue
        fresh = u.portable(fresh)
        if write:
            path, doc = files[name]
            with open(path) as f:
                text = f.read()
            old = "query_context: %s\n" % (
                "null" if doc.get("query_context") is None else
                json.dumps(doc["query_context"]))
            t.check(old in text, "%s: cannot find its query_context line" % path)
            text = text.replace(old, "query_context: %s\n" % json.dumps(
                json.dumps(fresh, sort_keys=True)))
            with open(path, "w") as f:
                f.write(text)
            print("wrote %s" % path)
            continue
        saved = chart["query_context"]
        if saved is None:
            failures.append("%s: no saved query_context" % name)
            continue
        if u.portable(saved) != fresh:
            a, b = u.portable(saved), fresh
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            failures.append("%s: saved query_context differs from Explore's in %s:\n saved %s\n"
                            " built %s" % (name, diff, json.dumps({k: a.get(k) for k in diff})[:1500],
                                           json.dumps({k: b.get(k) for k in diff})[:1500]))
        else:
            print("ok: %s: the saved query_context is Explore's" % name)
    for f in failures:
        print("FAIL:", f)
    t.check(not failures, "%d charts differ" % len(failures))
    print("ok: %d charts" % len(charts))


if __name__ == "__main__":
    main()
