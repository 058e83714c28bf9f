#!/usr/bin/env python3
"""Provisioning is idempotent and says what it did (docs/superset.md):

- the fixture's Superset was provisioned by `scripts/superset.sh` from nothing; running
  `scripts/superset.sh provision` again on the same SUPERSET_HOME and database changes nothing
  and says so, and leaves one events_db connection, one epp-events dashboard, one admin user;
- SUPERSET_HOME is 0700, the secret key and the role's password are 0600 files there, and
  neither is in the repository;
- a second run with a different SUPERSET_ADMIN_PASSWORD leaves the user's password alone and
  says so in a WARNING (the old password still logs in, the new one does not); with
  SUPERSET_RESET_ADMIN_PASSWORD=1 it sets it and says so. (On a second admin user, epp_check,
  so that the fixture's admin keeps working for the tests running beside this one.)
- a bundle object deleted in Superset is put back by the next run.
"""

import os
import secrets
import sqlite3
import stat
import subprocess

import superset_util as u
from superset_util import S, t


def provision(env, **extra):
    e = dict(os.environ, SUPERSET_HOME=env["EPP_SUPERSET_HOME"],
             DATABASE_URL=env["EPP_SUPERSET_DB_URL"], EPP_RUN_DIR=env["EPP_SUPERSET_RUN_DIR"],
             SUPERSET_ADMIN_PASSWORD=env["EPP_SUPERSET_PASSWORD"])
    e.update(extra)
    p = subprocess.run(["bash", os.path.join(u.REPO, "scripts", "superset.sh"), "provision"],
                       env=e, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=600)
    print(p.stdout)
    t.check(p.returncode == 0, "provision exited %d:\n%s%s" % (p.returncode, p.stdout, p.stderr))
    return p.stdout


def counts(env):
    db = sqlite3.connect(os.path.join(env["EPP_SUPERSET_HOME"], "superset.db"))
    try:
        q = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
        return {"events_db connections": q("SELECT count(*) FROM dbs WHERE database_name = 'events_db'"),
                "databases": q("SELECT count(*) FROM dbs"),
                "epp-events dashboards": q("SELECT count(*) FROM dashboards WHERE slug = 'epp-events'"),
                "dashboards": q("SELECT count(*) FROM dashboards"),
                "admin users": q("SELECT count(*) FROM ab_user WHERE username = 'admin'"),
                "charts": q("SELECT count(*) FROM slices")}
    finally:
        db.close()


def can_login(env, user, password):
    try:
        S.Client(env["EPP_SUPERSET_URL"], user, password)
        return True
    except S.SupersetError:
        return False


def main():
    env = u.load_env()
    home = env["EPP_SUPERSET_HOME"]
    t.check(stat.S_IMODE(os.stat(home).st_mode) == 0o700, "SUPERSET_HOME is not 0700")
    for name in ("secret_key", "db_password"):
        path = os.path.join(home, name)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        t.check(mode == 0o600, "%s is %o, not 0600" % (path, mode))
        with open(path) as f:
            secret = f.read().strip()
        t.check(len(secret) >= 32, "%s is too short" % path)
        r = t.git("grep", "-q", "-F", "-e", secret, ok=(0, 1))
        t.check(r.returncode == 1, "%s's value is in the repository" % name)
    print("ok: SUPERSET_HOME 0700, secret_key and db_password 0600, not in the repository")

    before = counts(env)
    out = provision(env)
    t.check("provisioning changed nothing" in out, "a second run changed something:\n" + out)
    after = counts(env)
    t.check(after == before, "counts changed: %s -> %s" % (before, after))
    t.check(after["events_db connections"] == 1 and after["epp-events dashboards"] == 1 and
            after["admin users"] == 1 and after["charts"] == 5, "counts: %s" % after)
    print("ok: the second run changed nothing: %s" % after)

    # A wrong password on a later run, on a user of its own.
    first, second = secrets.token_urlsafe(9), secrets.token_urlsafe(9)
    out = provision(env, SUPERSET_ADMIN_USER="epp_check", SUPERSET_ADMIN_PASSWORD=first)
    t.check("created epp_check" in out, "epp_check not created:\n" + out)
    out = provision(env, SUPERSET_ADMIN_USER="epp_check", SUPERSET_ADMIN_PASSWORD=second)
    t.check("WARNING: epp_check exists and its password is NOT SUPERSET_ADMIN_PASSWORD" in out and
            "left as it was" in out and "provisioning changed nothing" in out,
            "a different password is not reported as such:\n" + out)
    t.check(can_login(env, "epp_check", first) and not can_login(env, "epp_check", second),
            "the password changed although the run said it did not")
    print("ok: a different SUPERSET_ADMIN_PASSWORD is reported and changes nothing")
    out = provision(env, SUPERSET_ADMIN_USER="epp_check", SUPERSET_ADMIN_PASSWORD=second,
                    SUPERSET_RESET_ADMIN_PASSWORD="1")
    t.check("password reset to SUPERSET_ADMIN_PASSWORD" in out, "no reset reported:\n" + out)
    t.check(can_login(env, "epp_check", second) and not can_login(env, "epp_check", first),
            "SUPERSET_RESET_ADMIN_PASSWORD=1 did not set the password")
    print("ok: SUPERSET_RESET_ADMIN_PASSWORD=1 sets it, and says so")

    # A chart deleted in Superset comes back with the next run (by its uuid, so once).
    s = u.client(env)
    chart = s.dashboard_charts()["Total events"]
    status, body = s.request("DELETE", "/api/v1/chart/%d" % chart["id"])
    t.check(status == 200, "DELETE chart: %s %r" % (status, body))
    out = provision(env)
    t.check("1 of its objects were missing" in out, "the missing chart was not noticed:\n" + out)
    t.check(counts(env) == after, "counts after re-import: %s" % counts(env))
    t.check("Total events" in s.dashboard_charts(), "the chart is not back on the dashboard")
    out = provision(env)
    t.check("provisioning changed nothing" in out, "the run after the re-import changed:\n" + out)
    print("ok: a deleted chart is put back once, then nothing changes")


if __name__ == "__main__":
    main()
