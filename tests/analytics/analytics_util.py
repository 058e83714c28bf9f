"""Helpers shared by the tests/analytics programs: a database with the schema, events loaded
with COPY, the rollups computed the way the consumer maintains them, and epp-analytics started
on it. Built on tests/lib/epp_testlib.py."""

import datetime
import io
import json
import os
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import epp_testlib as t  # noqa: E402

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
US_MINUTE = 60 * 1000000
US_HOUR = 60 * US_MINUTE
US_DAY = 24 * US_HOUR
WIDTHS = {"minute": US_MINUTE, "hour": US_HOUR, "day": US_DAY}

FULL = os.environ.get("EPP_TEST_FULL") == "1"

# What the consumer keeps in the same transaction as its inserts (sql/002_rollups.sql):
# UTC-aligned half-open buckets counted by event_name; the user dictionary (sql/030) and the
# per-bucket user bitmaps (sql/031), built with sql/031's epp_user_bitmap -- the minute level one
# row per UTC hour holding its minutes' bitmaps packed (sql/032's epp_user_minute_bitmaps) -- and
# each bucket (each hour of minutes) split into two overlapping rows (uid % 3 <> 0,
# uid % 3 <> 1), as the consumer's appends leave them before a merge, so that readers are tested
# on unions with duplicates.
ROLLUP_SQL = """
SET TIME ZONE 'UTC';
TRUNCATE public.epp_rollup_minute, public.epp_rollup_hour, public.epp_rollup_day,
         public.epp_user_bitmap_minute, public.epp_user_bitmap_hour, public.epp_user_bitmap_day;
INSERT INTO public.epp_rollup_minute SELECT date_trunc('minute', "timestamp"), event_name, count(*)
    FROM public.events GROUP BY 1, 2;
INSERT INTO public.epp_rollup_hour SELECT date_trunc('hour', "timestamp"), event_name, count(*)
    FROM public.events GROUP BY 1, 2;
INSERT INTO public.epp_rollup_day SELECT date_trunc('day', "timestamp"), event_name, count(*)
    FROM public.events GROUP BY 1, 2;
INSERT INTO public.epp_user_ids (user_id) SELECT user_id FROM public.events GROUP BY 1
    ORDER BY min("timestamp"), user_id ON CONFLICT DO NOTHING;
""" + "".join("""
INSERT INTO public.epp_user_bitmap_minute (bucket, n, bits)
    SELECT date_trunc('hour', m, 'UTC'), count(*),
           public.epp_user_minute_bitmaps(array_agg(public.epp_minute_of_hour(m)), array_agg(uid))
    FROM (SELECT DISTINCT date_trunc('minute', "timestamp", 'UTC') AS m, uid
          FROM public.events JOIN public.epp_user_ids USING (user_id)) p
    WHERE uid %% 3 <> %(r)d GROUP BY 1;""" % {"r": r} for r in (0, 1)) + "".join("""
INSERT INTO public.epp_user_bitmap_%(l)s (bucket, n, bits)
    SELECT bucket, count(*), public.epp_user_bitmap(array_agg(uid)) FROM
    (SELECT DISTINCT date_trunc('%(l)s', "timestamp") AS bucket, uid
     FROM public.events JOIN public.epp_user_ids USING (user_id)) p
    WHERE uid %% 3 <> %(r)d GROUP BY bucket;""" % {"l": level, "r": r}
                for level in ("hour", "day") for r in (0, 1)) + """
ANALYZE;
"""


def us_to_dt(us, tz=UTC):
    return (EPOCH + datetime.timedelta(microseconds=us)).astimezone(tz)


def rfc3339(us, tz=UTC):
    s = us_to_dt(us, tz).isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def parse_ts(s):
    """RFC 3339 text (as the service writes it) to epoch microseconds."""
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    delta = d - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds


def floor(t, w):
    return t - t % w


def setup_db(env, prefix):
    url = t.create_database(env, t.unique_name(prefix))
    t.apply_migrations(url)
    return url


def copy_events(url, rows):
    """rows: iterable of (event_id, user_id, event_name, metadata_json_text, timestamp_text)."""
    buf = io.StringIO()

    def esc(v):
        return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")

    for r in rows:
        buf.write("\t".join(esc(x) for x in r))
        buf.write("\n")
    buf.seek(0)
    conn = t.pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.copy_expert('COPY public.events (event_id, user_id, event_name, metadata, "timestamp") '
                            "FROM STDIN", buf)
    finally:
        conn.close()


def build_rollups(url):
    conn = t.pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(ROLLUP_SQL)
    finally:
        conn.close()


def sql(url, query, args=None):
    conn = t.pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def start_service(env, url, extra_env=None, log_name=None):
    e = {"DATABASE_URL": url, "LOG_LEVEL": "warn", "HTTP_BIND_ADDRESS": "127.0.0.1"}
    e.update(extra_env or {})
    return t.start_process(env, "epp-analytics", port=t.free_port(), extra_env=e,
                           log_name=log_name)


def get(svc, path, params=None, headers=None, timeout=20.0):
    """GET path?params on the service; returns (status, headers, parsed JSON or text)."""
    url = svc.url(path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    return t.http_json("GET", url, headers=headers, timeout=timeout)


def dumps(v):
    return json.dumps(v, sort_keys=True)
