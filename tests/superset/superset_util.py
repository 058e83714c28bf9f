"""Helpers shared by the tests/superset programs, built on tests/lib (epp_testlib, epp_superset,
epp_browser). They all use the ONE Superset of the `superset` CTest fixture (fixture.py here),
which serves the events_db of its own `make run` stack."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUNDLE = os.path.join(REPO, "docker", "superset", "bundle")
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import epp_browser as b  # noqa: E402
import epp_superset as S  # noqa: E402
import epp_testlib as t  # noqa: E402

CHECK_JS = os.path.join(HERE, "superset_check.js")
CHART_NAMES = ["Total events", "Events over time", "Top event types", "Active users per day",
               "Events by type over time"]


def load_env():
    env = t.load_env(t.build_dir_from())
    for k in ("EPP_SUPERSET_URL", "EPP_SUPERSET_PASSWORD", "EPP_SUPERSET_DB_URL"):
        t.check(env.get(k), "test-env/env lacks %s: is the superset fixture up?" % k)
    return env


def client(env):
    return S.Client(env["EPP_SUPERSET_URL"], env["EPP_SUPERSET_USER"],
                    env["EPP_SUPERSET_PASSWORD"])


def artifacts(env):
    d = os.path.join(env["EPP_BUILD_DIR"], "test-artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def open_dashboard(env, screenshot, loads=1, timeout_ms=60000):
    """superset_check.js dashboard: the parsed findings (see its header)."""
    return b.run_node(env, [CHECK_JS, "dashboard", env["EPP_SUPERSET_URL"],
                            env["EPP_SUPERSET_USER"], env["EPP_SUPERSET_PASSWORD"], "{profile}",
                            screenshot, str(loads)],
                      timeout=120 + loads * timeout_ms / 1000.0, timeout_ms=timeout_ms)


def explore_query_contexts(env, chart_ids):
    """{chart id (str): the query context Explore builds for it}."""
    r = b.run_node(env, [CHECK_JS, "explore", env["EPP_SUPERSET_URL"], env["EPP_SUPERSET_USER"],
                         env["EPP_SUPERSET_PASSWORD"], "{profile}"] + [str(i) for i in chart_ids],
                   timeout=120 + 60 * len(chart_ids), timeout_ms=60000)
    t.check("error" not in r, "explore: %s" % r.get("error"))
    return r["query_contexts"]


# The parts of a query context that name this instance's ids or ask for a run, not a query.
VOLATILE = ("datasource", "force", "result_format", "result_type")
VOLATILE_FORM_DATA = ("datasource", "slice_id", "dashboards", "dashboardId", "url_params")


def portable(query_context):
    """A query context without the instance-specific parts (what the bundle keeps)."""
    qc = {k: v for k, v in json.loads(json.dumps(query_context)).items() if k not in VOLATILE}
    qc["form_data"] = {k: v for k, v in qc.get("form_data", {}).items()
                       if k not in VOLATILE_FORM_DATA}
    for q in qc.get("queries", []):
        q.pop("url_params", None)
    return qc


def bundle_charts():
    """{slice_name: (path, chart yaml as a dict)} of the bundle."""
    import yaml
    out = {}
    d = os.path.join(BUNDLE, "charts")
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name)) as f:
            doc = yaml.safe_load(f)
        out[doc["slice_name"]] = (os.path.join(d, name), doc)
    return out
