#!/usr/bin/env python3
"""Superset's database role cannot change data (docs/superset.md, "The read-only role").

Connecting exactly as Superset's events_db connection does -- the role epp_superset with the
password provisioning generated into SUPERSET_HOME/db_password -- Postgres refuses INSERT,
UPDATE, DELETE, TRUNCATE and CREATE TABLE, also after the session turns its read-only default
off (the privileges stop them, not only the default); SELECT works on what the datasets read
and is refused on the rest (the consumer's offsets, the user dictionary, the migrations table). Through
Superset, SQL Lab refuses a DELETE as well (the connection does not allow DML). Nothing changed:
the row count is the same afterwards.
"""

import os
import urllib.parse

import superset_util as u
from superset_util import t

ALLOWED = ["events", "epp_rollup_minute", "epp_rollup_hour", "epp_rollup_day",
           "epp_rollup_minute_total", "epp_rollup_hour_total", "epp_rollup_day_total",
           "epp_daily_active_users"]
DENIED = ["epp_consumer_offsets", "epp_user_ids", "epp_schema_migrations"]
WRITES = [
    "INSERT INTO public.events (event_id, user_id, event_name, \"timestamp\") "
    "VALUES (gen_random_uuid(), 'intruder', 'x', now())",
    "UPDATE public.events SET user_id = 'intruder'",
    "DELETE FROM public.events",
    "DELETE FROM public.epp_rollup_day",
    "TRUNCATE public.events",
    "CREATE TABLE public.intruder (x int)",
]


def role_url(env):
    with open(os.path.join(env["EPP_SUPERSET_HOME"], "db_password")) as f:
        password = f.read().strip()
    u_ = urllib.parse.urlsplit(env["EPP_SUPERSET_DB_URL"])
    netloc = "epp_superset:%s@%s:%d" % (urllib.parse.quote(password, safe=""), u_.hostname, u_.port)
    return urllib.parse.urlunsplit((u_.scheme, netloc, u_.path, "", ""))


def main():
    import psycopg2

    env = u.load_env()
    admin = t.pg_connect(env["EPP_SUPERSET_DB_URL"])
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM public.events")
        before = cur.fetchone()[0]
    conn = psycopg2.connect(role_url(env))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT current_user, current_setting('default_transaction_read_only'), "
                "current_setting('TimeZone')")
    who = cur.fetchone()
    t.check(who == ("epp_superset", "on", "UTC"), "session: %r" % (who,))
    for table in ALLOWED:
        cur.execute("SELECT count(*) FROM public.%s" % table)
    print("ok: SELECT works on %s" % ", ".join(ALLOWED))
    for table in DENIED:
        try:
            cur.execute("SELECT count(*) FROM public.%s" % table)
            t.check(False, "SELECT on %s was allowed" % table)
        except psycopg2.errors.InsufficientPrivilege:
            pass
    print("ok: SELECT is refused on %s" % ", ".join(DENIED))

    for read_only in ("on", "off"):
        cur.execute("SET default_transaction_read_only = %s" % read_only)
        for stmt in WRITES:
            try:
                cur.execute(stmt)
                t.check(False, "read_only=%s: Postgres ran %r as epp_superset" % (read_only, stmt))
            except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ReadOnlySqlTransaction) as e:
                if read_only == "off":
                    t.check(isinstance(e, psycopg2.errors.InsufficientPrivilege),
                            "%r refused for another reason: %s" % (stmt, e))
                print("  refused (read_only=%s): %s -- %s" % (read_only, stmt[:40],
                                                              str(e).splitlines()[0]))
    conn.close()
    print("ok: every write is refused, by the read-only default and by the missing privileges")

    # Through Superset: SQL Lab on events_db.
    s = u.client(env)
    db = s.list("database", database_name="events_db")
    t.check(len(db) == 1, "events_db connection: %r" % db)
    status, body = s.request("POST", "/api/v1/sqllab/execute/", {
        "database_id": db[0]["id"], "sql": "DELETE FROM public.events", "runAsync": False,
        "schema": "public", "tab": "test", "client_id": "eppro%05d" % (os.getpid() % 100000)})
    t.check(status != 200 or "error" in str(body).lower(),
            "SQL Lab ran a DELETE: %s %r" % (status, body))
    print("ok: SQL Lab refuses a DELETE: %s %s" % (status, str(body)[:200]))
    status, body = s.request("POST", "/api/v1/sqllab/execute/", {
        "database_id": db[0]["id"], "sql": "SELECT count(*) AS n FROM public.events",
        "runAsync": False, "schema": "public", "tab": "test",
        "client_id": "eppr2%05d" % (os.getpid() % 100000)})
    t.check(status == 200 and body.get("data"), "SQL Lab SELECT: %s %r" % (status, body))
    with admin.cursor() as c2:
        c2.execute("SELECT count(*) FROM public.events")
        after = c2.fetchone()[0]
    admin.close()
    t.check(after == before == body["data"][0]["n"],
            "rows before %d, after %d, SQL Lab saw %r" % (before, after, body["data"]))
    print("ok: SQL Lab reads through the same role (%d rows), nothing changed" % after)


if __name__ == "__main__":
    main()
