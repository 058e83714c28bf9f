#!/usr/bin/env python3
"""CTest fixture `superset`: ONE Superset for every test of tests/superset, started the way a
person does it -- `scripts/superset.sh BUILD` (`make superset`) with no `make run` going, so it
installs Superset from the lock (when the virtual environment is not there yet), starts
`scripts/run.sh` itself, provisions everything and serves.

    fixture.py BUILD setup | cleanup

Setup runs it in the background with a private run directory (BUILD/test-env/superset-stack:
Postgres, logs, SUPERSET_HOME) and free ports, waits for "Superset is running", and writes into
BUILD/test-env/env (tests/lib/epp_superset.py):
    EPP_SUPERSET_URL EPP_SUPERSET_USER EPP_SUPERSET_PASSWORD EPP_SUPERSET_HOME
    EPP_SUPERSET_DB_URL      events_db of that stack, as the superuser
    EPP_SUPERSET_RUN_DIR     its run directory (its Postgres: RUN_DIR/pg, port EPP_SUPERSET_PG_PORT)
    EPP_SUPERSET_PG_PORT EPP_SUPERSET_INGEST_URL EPP_SUPERSET_ANALYTICS_URL
Cleanup sends SIGTERM (scripts/superset.sh then stops Superset and the stack it started) and
waits. Like the pg and broker fixtures (tests/fixtures/fixture.py, whose helpers this uses), a
detached watchdog runs the cleanup if CTest itself dies. Setup prints how long the install, the
provisioning and the whole start took.
"""

import importlib.util
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import epp_testlib as t  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "epp_fixture", os.path.join(REPO, "tests", "fixtures", "fixture.py"))
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

KEYS = ("EPP_SUPERSET_URL", "EPP_SUPERSET_USER", "EPP_SUPERSET_PASSWORD", "EPP_SUPERSET_HOME",
        "EPP_SUPERSET_DB_URL", "EPP_SUPERSET_RUN_DIR", "EPP_SUPERSET_PG_PORT",
        "EPP_SUPERSET_INGEST_URL", "EPP_SUPERSET_ANALYTICS_URL")
START_TIMEOUT = float(os.environ.get("EPP_SUPERSET_START_TIMEOUT", "1200"))


def log(msg):
    print("fixture: " + msg, flush=True)


def paths(build):
    d = os.path.join(build, "test-env")
    return {"run": os.path.join(d, "superset-stack"), "pid": os.path.join(d, "superset.pid"),
            "log": os.path.join(build, "test-logs", "superset-fixture.log")}


def alive_with(pid, text):
    """True when pid is a live process whose command line contains text."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read()
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and text in cmd


def mine(pid):
    """True when pid is a live scripts/superset.sh."""
    return alive_with(pid, b"superset.sh")


def stop(build):
    """Stops a running fixture Superset (and the stack it started). True when it exited by
    itself within 90 s."""
    p = paths(build)
    pid = F.read_pid(p["pid"])
    clean = True
    if pid and mine(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while mine(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if mine(pid):
            log("scripts/superset.sh %d ignored SIGTERM for 90 s: SIGKILL" % pid)
            clean = False
            os.kill(pid, signal.SIGKILL)
    # What a killed scripts/superset.sh leaves running (each in its own session): gunicorn and
    # the scripts/run.sh it started, which stops its services and Postgres on SIGTERM.
    for f, what in ((os.path.join(p["run"], "superset", "gunicorn.pid"), b"gunicorn"),
                    (os.path.join(p["run"], "superset-stack.pid"), b"run.sh")):
        left = F.read_pid(f)
        if left and alive_with(left, what):
            os.kill(left, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while alive_with(left, what) and time.monotonic() < deadline:
                time.sleep(0.2)
    if os.path.exists(p["pid"]):
        os.unlink(p["pid"])
    # Whatever a killed run left: its Postgres is stopped by pg.sh, which knows its directory.
    subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh"), "stop",
                    os.path.join(p["run"], "pg")], stdin=subprocess.DEVNULL,
                   capture_output=True)
    return clean


def setup(build):
    p = paths(build)
    stop(build)
    shutil.rmtree(p["run"], ignore_errors=True)
    os.makedirs(os.path.join(p["run"], "logs"))
    # Postgres runs as the postgres user when we are root: it must reach its directory.
    os.chmod(p["run"], 0o755)
    os.makedirs(os.path.dirname(p["log"]), exist_ok=True)
    ports = {k: t.free_port() for k in ("SUPERSET_PORT", "EPP_PG_PORT", "INGEST_PORT",
                                          "ANALYTICS_PORT", "CONSUMER_PORT")}
    password = secrets.token_urlsafe(12)
    env = dict(os.environ, EPP_RUN_DIR=p["run"], SUPERSET_ADMIN_PASSWORD=password,
               LOG_LEVEL="info", EPP_BROKER="dev", **{k: str(v) for k, v in ports.items()})
    env.pop("DATABASE_URL", None)
    env.pop("SUPERSET_HOME", None)
    t0 = time.monotonic()
    with open(p["log"], "w") as logf:
        proc = subprocess.Popen(["bash", os.path.join(REPO, "scripts", "superset.sh"), build],
                                env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    with open(p["pid"], "w") as f:
        f.write("%d\n" % proc.pid)
    F.start_watchdog(build, "superset", script=os.path.abspath(__file__))

    def text():
        with open(p["log"], errors="replace") as f:
            return f.read()

    while "Superset is running" not in text():
        if proc.poll() is not None or time.monotonic() - t0 > START_TIMEOUT:
            log("scripts/superset.sh %s; its output:\n%s" % (
                "exited with %s" % proc.returncode if proc.poll() is not None else
                "not up after %.0f s" % START_TIMEOUT, text()[-6000:]))
            cleanup(build)
            return 1
        time.sleep(0.5)
    out = text()
    print(out)
    total = time.monotonic() - t0
    installed = re.search(r"installed Superset \S+ in (\d+) s", out)
    provision = re.findall(r"(metadata database|roles and permissions|dashboard bundle): .*? in "
                           r"([\d.]+) s", out)
    log("Superset up in %.0f s (install %s, %s)" % (
        total, installed.group(1) + " s" if installed else "skipped: already installed",
        ", ".join("%s %s s" % kv for kv in provision) or "nothing to provision"))
    db_url = subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh"), "url",
                             os.path.join(p["run"], "pg")], capture_output=True, text=True,
                            check=True).stdout.strip()
    F.update_env(build, {
        "EPP_SUPERSET_URL": "http://127.0.0.1:%d" % ports["SUPERSET_PORT"],
        "EPP_SUPERSET_USER": "admin",
        "EPP_SUPERSET_PASSWORD": password,
        "EPP_SUPERSET_HOME": os.path.join(p["run"], "superset"),
        "EPP_SUPERSET_DB_URL": db_url,
        "EPP_SUPERSET_RUN_DIR": p["run"],
        "EPP_SUPERSET_PG_PORT": str(ports["EPP_PG_PORT"]),
        "EPP_SUPERSET_INGEST_URL": "http://127.0.0.1:%d" % ports["INGEST_PORT"],
        "EPP_SUPERSET_ANALYTICS_URL": "http://127.0.0.1:%d" % ports["ANALYTICS_PORT"],
    })
    return 0


def cleanup(build):
    F.stop_watchdog(build, "superset")
    clean = stop(build)
    F.update_env(build, remove_keys=KEYS)
    log("superset stopped" + ("" if clean else " (killed)"))
    return 0 if clean else 1


def main(argv):
    if len(argv) == 5 and argv[2] == "watchdog":
        return F.watchdog(os.path.abspath(argv[1]), argv[3], int(argv[4]), cleanup=cleanup)
    if len(argv) != 3 or argv[2] not in ("setup", "cleanup"):
        print(__doc__, file=sys.stderr)
        return 2
    build = os.path.abspath(argv[1])
    return (setup if argv[2] == "setup" else cleanup)(build)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
