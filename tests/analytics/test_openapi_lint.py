"""analytics_service/openapi.json passes `redocly lint` (the recommended rules) with no error
and no warning. @redocly/cli is pinned in tests/analytics/package-lock.json and installed into
the build directory by the analytics.npm fixture."""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def main():
    npm_dir = os.environ.get("EPP_ANALYTICS_NPM")
    if not npm_dir:
        build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build")
        npm_dir = os.path.join(build, "tests", "analytics", "npm")
    npm_dir = os.path.abspath(npm_dir)
    redocly = os.path.join(npm_dir, "node_modules", ".bin", "redocly")
    if not os.access(redocly, os.X_OK):
        print("redocly is not installed in %s (run the analytics.npm_setup test)" % npm_dir)
        sys.exit(1)
    doc = os.path.join(REPO, "analytics_service", "openapi.json")
    p = subprocess.run([redocly, "lint", doc], cwd=npm_dir,
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true"))
    out = p.stdout + p.stderr
    print(out)
    if p.returncode != 0:
        print("redocly lint failed (exit %d)" % p.returncode)
        sys.exit(1)
    if re.search(r"You have \d+ warnings?", out) or "Woohoo" not in out:
        print("redocly lint reported warnings")
        sys.exit(1)
    print("ok: openapi.json is valid with no warnings")


if __name__ == "__main__":
    main()
