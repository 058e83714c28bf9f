"""Rollup consistency check, reusable by every test that writes events (consumer, analytics,
chaos, tools): each rollup table must equal the same GROUP BY over public.events.

    import epp_rollups
    problems = epp_rollups.check(conn)      # [] when every rollup is exact
    epp_rollups.assert_exact(conn)          # raises AssertionError listing the differences

conn is a psycopg2 connection (autocommit or not; only SELECTs are run).
"""

# (table, key column, the GROUP BY over public.events that it must equal)
ROLLUPS = [
    ("epp_rollup_minute", "event_name",
     "SELECT date_trunc('minute', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,"
     " event_name AS key, count(*) AS n FROM public.events GROUP BY 1, 2"),
    ("epp_rollup_hour", "event_name",
     "SELECT date_trunc('hour', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,"
     " event_name AS key, count(*) AS n FROM public.events GROUP BY 1, 2"),
    ("epp_rollup_day", "event_name",
     "SELECT date_trunc('day', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,"
     " event_name AS key, count(*) AS n FROM public.events GROUP BY 1, 2"),
    ("epp_user_day", "user_id",
     "SELECT date_trunc('day', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,"
     " user_id AS key, count(*) AS n FROM public.events GROUP BY 1, 2"),
]

# One query per table: rows present on one side only, or with different counts. Rows with n = 0
# in a rollup (left by deletes) are the same as absent.
DIFF_SQL = """
WITH expected AS ({expected}),
     actual AS (SELECT bucket, {key} AS key, n FROM public.{table} WHERE n <> 0)
SELECT coalesce(e.bucket, a.bucket), coalesce(e.key, a.key), e.n, a.n
FROM expected e FULL JOIN actual a ON e.bucket = a.bucket AND e.key = a.key
WHERE e.n IS DISTINCT FROM a.n
ORDER BY 1, 2
LIMIT 20
"""


def check(conn):
    """Returns a list of human-readable differences (empty when every rollup is exact)."""
    problems = []
    with conn.cursor() as cur:
        for table, key, expected in ROLLUPS:
            cur.execute(DIFF_SQL.format(expected=expected, key=key, table=table))
            for bucket, k, want, got in cur.fetchall():
                problems.append("%s[%s, %r]: events say %s, rollup says %s" %
                                (table, bucket, k, want, got))
    return problems


def assert_exact(conn):
    problems = check(conn)
    if problems:
        raise AssertionError("rollups differ from GROUP BY over public.events:\n  " +
                             "\n  ".join(problems))
