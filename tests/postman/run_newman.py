#!/usr/bin/env python3
"""Runs postman/Event_Processing_Platform.postman_collection.json with newman against a fresh
local stack; fails when any Postman test fails."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import epp_testlib as t  # noqa: E402
from epp_stack import Stack  # noqa: E402


def ensure_newman():
    newman = os.path.join(HERE, "node_modules", ".bin", "newman")
    if not os.path.exists(newman):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    return newman


def main():
    env = t.load_env()
    newman = ensure_newman()
    with Stack(env, "postman") as s:
        collection = os.path.join(t.REPO, "postman", "Event_Processing_Platform.postman_collection.json")
        environment = os.path.join(t.REPO, "postman", "epp-local.postman_environment.json")
        r = subprocess.run([newman, "run", collection, "-e", environment,
                            "--env-var", "ingest_url=" + s.ingest_url,
                            "--env-var", "analytics_url=" + s.analytics_url,
                            "--color", "off", "--disable-unicode"])
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
