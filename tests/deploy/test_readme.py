#!/usr/bin/env python3
"""Runs every `build/bin/...` command of the README's shell blocks, in order, against a fresh
local stack, as a user following the README would (the docs cannot go stale). Each must exit 0.
After an `epp-send`, it waits for the events to be stored, as the user would wait for the
dashboard before backing them up."""
import os
import re
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import epp_testlib as t  # noqa: E402
from epp_stack import Stack  # noqa: E402


def readme_commands():
    readme = open(os.path.join(t.REPO, "README.md")).read()
    cmds = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            cmd = line.split("#")[0].strip()
            if cmd.startswith("build/bin/"):
                cmds.append(cmd)
    return cmds


def main():
    env = t.load_env()
    cmds = readme_commands()
    t.check(len(cmds) >= 5, "the README shows the tools (found %d commands)" % len(cmds))
    with Stack(env, "readme") as s, tempfile.TemporaryDirectory() as work:
        os.symlink(env["EPP_BUILD_DIR"], os.path.join(work, "build"))
        child = dict(os.environ)
        child.update(s.service_environ("tools"))
        child["EPP_INGEST_URL"] = s.ingest_url + "/events"
        stored = 0
        for cmd in cmds:
            print("$", cmd, flush=True)
            r = subprocess.run(shlex.split(cmd), cwd=work, env=child, capture_output=True,
                               text=True, timeout=120)
            print(r.stdout[-2000:], r.stderr[-2000:], sep="\n", flush=True)
            t.check(r.returncode == 0, "README command failed (exit %d): %s" % (r.returncode, cmd))
            m = re.search(r"epp-send .*--count (\d+)", cmd)
            if m:
                stored += int(m.group(1))
                s.wait_rows(stored, timeout=60)
        # The walk-through ends with the test rows restored, each exactly once.
        t.check(s.count_rows("metadata ? 'epp_test'") == stored,
                "after restore, the %d test rows are back exactly once" % stored)
    print("readme: %d commands ran" % len(cmds))


if __name__ == "__main__":
    main()
