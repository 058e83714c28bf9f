"""Headless Chromium for the browser tests (tests/analytics, tests/superset): a Node script of
theirs drives Debian's /usr/bin/chromium through playwright-core (tests/lib/epp_chromium.js), which
the analytics_npm CTest fixture installs into the build directory (tests/analytics/npm_ci.cmake),
and prints one JSON line of findings as its last line starting with "{".

    import epp_browser as b
    result = b.run_node(env, [script, arg, ...], timeout=120)      # the parsed JSON line

A test that needs it lists "analytics_npm" in its FIXTURES_REQUIRED and gets EPP_ANALYTICS_NPM.
"""

import json
import os
import shutil
import subprocess
import tempfile

import epp_testlib as t


def npm_dir(env):
    """Where the analytics_npm fixture installed playwright-core (checked)."""
    d = os.path.abspath(os.environ.get("EPP_ANALYTICS_NPM") or
                        os.path.join(env["EPP_BUILD_DIR"], "tests", "analytics", "npm"))
    t.check(os.path.isdir(os.path.join(d, "node_modules", "playwright-core")),
            "playwright-core not installed in %s (analytics.npm_setup)" % d)
    return d


def node_env(env, timeout_ms=20000):
    """The environment for the Node scripts: NODE_PATH to playwright-core, DASH_TIMEOUT_MS."""
    return dict(os.environ, NODE_PATH=os.path.join(npm_dir(env), "node_modules"),
                DASH_TIMEOUT_MS=str(timeout_ms))


def new_profile(env):
    """A fresh Chromium profile directory under the build directory (caller removes it)."""
    return tempfile.mkdtemp(prefix="epp-chromium-", dir=env["EPP_BUILD_DIR"])


def parse_result(stdout, stderr, rc):
    if stderr.strip():
        print("browser stderr (rc %s):\n%s" % (rc, stderr.rstrip()))  # e.g. a retried login
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    t.check(lines, "no result from the browser: rc %s\n%s\n%s" % (rc, stdout, stderr))
    return json.loads(lines[-1])


def run_node(env, args, timeout=120, timeout_ms=20000, profile=None):
    """Runs `node args...` (args may contain the placeholder "{profile}", replaced by a fresh
    profile directory that is removed afterwards) and returns its parsed JSON line."""
    own = profile is None
    profile = profile or new_profile(env)
    try:
        p = subprocess.run(["node"] + [a.replace("{profile}", profile) for a in args],
                           capture_output=True, text=True, timeout=timeout,
                           env=node_env(env, timeout_ms))
    finally:
        if own:
            shutil.rmtree(profile, ignore_errors=True)
    return parse_result(p.stdout, p.stderr, p.returncode)
