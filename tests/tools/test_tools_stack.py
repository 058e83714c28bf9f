"""epp-send and epp-admin against the real stack (issue 7's acceptance): 1,000 marked and 1,000
unmarked events through epp-ingest -> Kafka -> epp-consumer -> Postgres; backup (NDJSON and
CSV, row count and CRC-32 checked against the file); delete-test removes exactly the marked rows
and leaves every rollup and every analytics answer equal to SQL; restore puts the rows back
exactly once; --user-prefix is taken literally (LIKE wildcards escaped); migrate on an empty
database. EPP_TEST_FULL=1 sends 10x more events.
"""
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "lib"))
import epp_rollups  # noqa: E402
import epp_stack  # noqa: E402
import epp_testlib as t  # noqa: E402

N = 10000 if os.environ.get("EPP_TEST_FULL") == "1" else 1000


def run(env, name, *args, extra_env=None, timeout=120, ok=True):
    e = dict(os.environ)
    e.update(extra_env or {})
    p = subprocess.run([t.bin_path(env, name)] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=e)
    if ok:
        t.check(p.returncode == 0, "%s %s -> %d\nstdout: %s\nstderr: %s" %
                (name, " ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def kv(line):
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S+)", line))


def ids(conn, where="true"):
    with conn.cursor() as cur:
        cur.execute("SELECT event_id::text FROM public.events WHERE " + where)
        return {r[0] for r in cur.fetchall()}


def file_rows(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    return data, [json.loads(ln) for ln in data.splitlines() if ln.strip()]


def analytics_equals_sql(s, conn):
    """Every aggregate endpoint over a range around now equals the same SQL."""
    now = time.time()
    frm, to = int(now - 3600), int(now + 3600)
    q = "from_ts=%d&to_ts=%d" % (frm, to)
    base = s.analytics_url

    def get(path):
        st, _, body = t.http_json("GET", base + path)
        t.check(st == 200, "GET %s -> %s %r" % (path, st, body))
        return body

    with conn.cursor() as cur:
        rng = "\"timestamp\" >= to_timestamp(%s) AND \"timestamp\" < to_timestamp(%s)"
        cur.execute("SELECT count(*), count(DISTINCT user_id) FROM public.events WHERE " + rng,
                    (frm, to))
        count, users = cur.fetchone()
        cur.execute("SELECT event_name, count(*) FROM public.events WHERE " + rng +
                    " GROUP BY 1", (frm, to))
        top = dict(cur.fetchall())
        cur.execute("SELECT count(*) FROM public.events WHERE " + rng +
                    " AND event_name = 'purchase'", (frm, to))
        purchases = cur.fetchone()[0]
        cur.execute("SELECT count(DISTINCT date_trunc('minute', \"timestamp\", 'UTC')) "
                    "FROM public.events WHERE " + rng, (frm, to))
        minutes = cur.fetchone()[0]
    t.check(get("/analytics/events/count?" + q)["count"] == count, "count = SQL")
    t.check(get("/analytics/events/count?" + q + "&event_name=purchase")["count"] == purchases,
            "count by event_name = SQL")
    t.check(get("/analytics/users/active?" + q)["unique_users"] == users, "active users = SQL")
    items = get("/analytics/events/top?" + q + "&limit=100")["items"]
    t.check({i["event_name"]: i["count"] for i in items} == top, "top = SQL: %r vs %r" %
            (items, top))
    pts = get("/analytics/events/timeseries?" + q + "&interval=minute")["points"]
    t.check(sum(p["count"] for p in pts) == count and
            sum(1 for p in pts if p["count"]) == minutes, "timeseries = SQL")
    return count


def main():
    env = t.load_env()
    services = ["consumer", "ingest"]
    have_analytics = os.access(t.bin_path(env, "epp-analytics"), os.X_OK)
    if have_analytics:
        services.append("analytics")
    work = tempfile.mkdtemp(prefix="tools-stack-")
    with epp_stack.Stack(env, "tools_stack", services=tuple(services)) as s:
        db_env = {"DATABASE_URL": s.db_url}
        t0 = time.monotonic()
        p = run(env, "epp-send", "--url", s.ingest_url, "--count", str(N), "--test-marker", "t1")
        t.check(kv(p.stdout).get("accepted") == str(N), p.stdout)
        p = run(env, "epp-send", "--url", s.ingest_url + "/events", "--count", str(N),
                "--batch", "100", "--users", "40")
        t.check(kv(p.stdout).get("accepted") == str(N), p.stdout)
        s.wait_rows(2 * N, timeout=60)
        print("sent %d events in %.1fs" % (2 * N, time.monotonic() - t0), flush=True)
        conn = s.db()
        all_ids = ids(conn)
        marked = ids(conn, "metadata ? 'epp_test'")
        unmarked = all_ids - marked
        t.check(len(all_ids) == 2 * N and len(marked) == N, "%d rows, %d marked" %
                (len(all_ids), len(marked)))
        epp_rollups.assert_exact(conn)
        if have_analytics:
            analytics_equals_sql(s, conn)

        # Backups: everything as NDJSON.gz; the test rows as CSV. Summary = file content.
        full = os.path.join(work, "all.ndjson.gz")
        p = run(env, "epp-admin", "backup", "--out", full, extra_env=db_env)
        summ = kv(p.stdout)
        data, rows = file_rows(full)
        t.check(summ["rows"] == str(2 * N) and len(rows) == 2 * N, p.stdout)
        t.check(int(summ["bytes"]) == len(data) and
                int(summ["crc32"], 16) == zlib.crc32(data), "checksum of the content")
        t.check({r["event_id"] for r in rows} == all_ids, "backup holds every row")
        with conn.cursor() as cur:
            cur.execute("SELECT event_id::text, metadata FROM public.events")
            stored = dict(cur.fetchall())
        t.check(all(stored[r["event_id"]] == r["metadata"] for r in rows), "metadata kept")
        csv_path = os.path.join(work, "test.csv")
        now = time.time()
        p = run(env, "epp-admin", "backup", "--where-test", "--format", "csv", "--out", csv_path,
                "--from", str(int(now - 3600)), "--to",
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)), extra_env=db_env)
        t.check(kv(p.stdout)["rows"] == str(N), p.stdout)
        with open(csv_path) as f:
            t.check(f.readline().startswith("event_id,user_id,event_name,timestamp"), "header")

        # delete-test: dry run first (changes nothing), then for real.
        p = run(env, "epp-admin", "delete-test", "--dry-run", extra_env=db_env)
        t.check(kv(p.stdout).get("rows") == str(N) and len(ids(conn)) == 2 * N, p.stdout)
        bk = os.path.join(work, "deleted.ndjson.gz")
        p = run(env, "epp-admin", "delete-test", "--backup-out", bk, extra_env=db_env)
        t.check(kv(p.stdout.splitlines()[-1]).get("rows") == str(N), p.stdout)
        t.check(ids(conn) == unmarked, "exactly the marked rows are gone")
        _, drows = file_rows(bk)
        t.check({r["event_id"] for r in drows} == marked, "the backup holds the deleted rows")
        epp_rollups.assert_exact(conn)
        if have_analytics:
            t.check(analytics_equals_sql(s, conn) == N, "analytics count after delete")

        # restore: back once; a second restore and the CSV restore insert nothing.
        p = run(env, "epp-admin", "restore", bk, extra_env=db_env)
        t.check(kv(p.stdout)["inserted"] == str(N), p.stdout)
        t.check(ids(conn) == all_ids, "rows back")
        p = run(env, "epp-admin", "restore", bk, extra_env=db_env)
        t.check(kv(p.stdout)["inserted"] == "0", p.stdout)
        p = run(env, "epp-admin", "restore", csv_path, extra_env=db_env)
        t.check(kv(p.stdout)["inserted"] == "0" and kv(p.stdout)["rows"] == str(N), p.stdout)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.events")
            t.check(cur.fetchone()[0] == 2 * N, "each row exactly once")
            cur.execute("SELECT event_id::text, metadata FROM public.events")
            t.check(dict(cur.fetchall()) == stored, "restored rows equal the originals")
        epp_rollups.assert_exact(conn)
        if have_analytics:
            analytics_equals_sql(s, conn)

        # --user-prefix is literal: "a_b%" must not match "aXb-..." users.
        run(env, "epp-send", "--url", s.ingest_url, "--count", "20", "--user-prefix", "a_b%",
            "--users", "3")
        run(env, "epp-send", "--url", s.ingest_url, "--count", "20", "--user-prefix", "aXb-",
            "--users", "3")
        s.wait_rows(2 * N + 40, timeout=30)
        p = run(env, "epp-admin", "delete-test", "--user-prefix", "a_b%", "--backup-out",
                os.path.join(work, "prefix.ndjson"), extra_env=db_env)
        t.check(kv(p.stdout.splitlines()[-1]).get("rows") == "20", p.stdout)
        t.check(len(ids(conn, "user_id LIKE 'aXb-%'")) == 20 and
                len(ids(conn, "starts_with(user_id, 'a_b%')")) == 0, "prefix taken literally")
        epp_rollups.assert_exact(conn)

        # Awkward values survive delete-test -> backup -> restore exactly, in CSV and in NDJSON:
        # separators, quotes, backslashes, newlines and tabs in metadata, non-ASCII, number text
        # that a double would change.
        users = ['comma,user', 'quote"user', 'back\\slash', 'ünï 日本']
        for i, u in enumerate(users):
            st, _, body = t.http_json("POST", s.ingest_url + "/events", body=(
                '{"user_id":%s,"event_name":"odd \\"name\\", %d","metadata":{"s":"a,b\\"c\\nd'
                '\\\\e\\tf\\r","n":12345678901234567890,"f":0.1,"g":1.50e300,'
                '"nested":{"x":[1,"\\u00e9",null,true]},"epp_test":"t3"}}' % (json.dumps(u), i)),
                headers={"Content-Type": "application/json"})
            t.check(st == 202, "POST awkward event: %s %r" % (st, body))
        odd = "metadata->>'epp_test' = 't3'"
        s.wait_rows(4, where=odd)
        snap_sql = ("SELECT event_id::text, user_id, event_name, metadata::text, "
                    "\"timestamp\"::text, processed_at::text FROM public.events WHERE " + odd +
                    " ORDER BY 1")

        def snapshot():
            with conn.cursor() as cur:
                cur.execute(snap_sql)
                return cur.fetchall()
        before = snapshot()
        t.check(len(before) == 4 and {r[1] for r in before} == set(users), before)
        for name in ("odd.csv.gz", "odd.ndjson"):
            path = os.path.join(work, name)
            fmt = "csv" if ".csv" in name else "ndjson"
            p = run(env, "epp-admin", "delete-test", "--test-marker", "t3", "--format", fmt,
                    "--backup-out", path, extra_env=db_env)
            t.check(kv(p.stdout.splitlines()[-1]).get("rows") == "4" and snapshot() == [],
                    p.stdout)
            p = run(env, "epp-admin", "restore", path, extra_env=db_env)
            t.check(kv(p.stdout)["inserted"] == "4", p.stdout)
            t.check(snapshot() == before, "%s round trip: %r != %r" % (fmt, snapshot(), before))
        epp_rollups.assert_exact(conn)

        # delete-test while marked events are still streaming in: the backup holds exactly the
        # rows deleted (none of them remain), nothing is lost between backup and delete, and the
        # rollups stay exact under the consumer's concurrent upserts.
        m = 2000
        sender = subprocess.Popen([t.bin_path(env, "epp-send"), "--url", s.ingest_url, "--count",
                                   str(m), "--test-marker", "t2", "--concurrency", "2"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t.wait_for(lambda: s.count_rows("metadata->>'epp_test' = 't2'") > 0, timeout=30,
                   msg="the first t2 rows")
        live = os.path.join(work, "live.ndjson")
        p = run(env, "epp-admin", "delete-test", "--test-marker", "t2", "--backup-out", live,
                extra_env=db_env)
        out, err = sender.communicate(timeout=60)
        t.check(sender.returncode == 0 and kv(out).get("accepted") == str(m), out + err)
        _, lrows = file_rows(live)
        backed = {r["event_id"] for r in lrows}
        t.check(kv(p.stdout.splitlines()[-1]).get("rows") == str(len(backed)), p.stdout)
        t.wait_for(lambda: len(backed) + s.count_rows("metadata->>'epp_test' = 't2'") >= m,
                   timeout=30, msg="every t2 event deleted-and-backed-up or stored")
        left = ids(conn, "metadata->>'epp_test' = 't2'")
        print("delete-test during ingestion: %d deleted, %d arrived after" %
              (len(backed), len(left)), flush=True)
        t.check(not (left & backed) and len(left) + len(backed) == m,
                "each t2 event either deleted (and in the backup) or stored, never both")
        epp_rollups.assert_exact(conn)
        conn.close()

    # migrate on an empty database: creates the schema once.
    url = t.create_database(env, t.unique_name("tools_migrate"))
    try:
        p = run(env, "epp-admin", "migrate", extra_env={"DATABASE_URL": url})
        t.check(int(kv(p.stdout)["applied"]) >= 2, p.stdout)
        p = run(env, "epp-admin", "migrate", "--database-url", url)
        t.check(kv(p.stdout)["applied"] == "0", p.stdout)
        c = t.pg_connect(url)
        with c.cursor() as cur:
            cur.execute("SELECT to_regclass('public.events') IS NOT NULL, "
                        "to_regclass('public.epp_user_bitmap_day') IS NOT NULL")
            t.check(cur.fetchone() == (True, True), "schema created")
        c.close()
        p = run(env, "epp-admin", "backup", "--from", "yesterday", extra_env={"DATABASE_URL": url},
                ok=False)
        t.check(p.returncode == 2 and "--from" in p.stderr, p.stderr)
    finally:
        t.drop_database(env, url)
    print("ok")


if __name__ == "__main__":
    main()
