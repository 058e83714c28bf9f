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
        # The collection expects a warm pipeline (the consumer joined its group and stores events
        # within a second), as a user's running stack would be: one event end to end first.
        status, _, _ = t.http_json("POST", s.ingest_url + "/events",
                                   {"user_id": "postman-warmup", "event_name": "warmup",
                                    "metadata": {"epp_test": "postman"}})
        t.check(status == 202, "warm-up event accepted (got %s)" % status)
        s.wait_rows(1, timeout=60)
        collection = os.path.join(t.REPO, "postman", "Event_Processing_Platform.postman_collection.json")
        environment = os.path.join(t.REPO, "postman", "epp-local.postman_environment.json")
        r = subprocess.run([newman, "run", collection, "-e", environment,
                            "--env-var", "ingest_url=" + s.ingest_url,
                            "--env-var", "analytics_url=" + s.analytics_url,
                            "--color", "off", "--disable-unicode"])
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
