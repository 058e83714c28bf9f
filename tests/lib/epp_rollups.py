"""Rollup consistency check, reusable by every test that writes events (consumer, analytics,
chaos, tools): each rollup table must equal the same GROUP BY over public.events, and what the
migrations derive from the rollups must agree with them (sql/010's per-bucket totals, sql/020's
users per day).

epp_user_day is a set of (UTC day, user_id) pairs since sql/004 (no count): it must equal
SELECT DISTINCT day, user_id FROM public.events -- no pair missing, none left over -- and
the rows of epp_user_day_count (sql/020) must add up to the number of its pairs per day. (On a schema
before 004, where it still has n, the counts are compared as for the other tables.)

The user dictionary (sql/030, epp_user_ids): every user_id of public.events has a uid (the
table's constraints make each uid unique and in 0 .. 2^32 - 1).

The user bitmaps (sql/031, epp_user_bitmap_minute|hour|day): for every bucket, the union of its
rows is exactly the set of uids of the users with an event in it, and each row's n is its
cardinality. The bitmaps are parsed here (CRoaring's portable format, parse_bitmap), a third
reader beside CRoaring and the SQL functions, so a writer that breaks the format shows too.
Since sql/032 a row of the minute level holds the minutes of one UTC hour (bucket = the hour,
bits = its minutes' bitmaps packed, parse_minute_row, n = the number of (minute, uid) pairs): the
union for minute k of hour H is that of minute k over the rows of H, and every row's bucket
must be a whole hour. (On a schema before sql/032 the minute rows are read as single minutes.)

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

# The set form of epp_user_day: pairs on one side only (n reported as 1 = present, NULL = absent).
SET_DIFF_SQL = """
WITH expected AS (SELECT DISTINCT date_trunc('day', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                         AS bucket, user_id AS key FROM public.events),
     actual AS (SELECT bucket, user_id AS key FROM public.epp_user_day)
SELECT coalesce(e.bucket, a.bucket), coalesce(e.key, a.key),
       CASE WHEN e.key IS NULL THEN NULL ELSE 1 END, CASE WHEN a.key IS NULL THEN NULL ELSE 1 END
FROM expected e FULL JOIN actual a ON e.bucket = a.bucket AND e.key = a.key
WHERE e.key IS NULL OR a.key IS NULL
ORDER BY 1, 2
LIMIT 20
"""


def parse_bitmap(b):
    """The set of uids in a stored bitmap (portable format without run containers: cookie 12346;
    an array of uint16 per container of at most 4096 values, else a bitset of 1024 uint64)."""
    import struct
    b = bytes(b)
    cookie, n = struct.unpack_from("<II", b, 0)
    if cookie != 12346:
        raise AssertionError("bitmap cookie %d, not 12346" % cookie)
    out = set()
    for i in range(n):
        key, card1 = struct.unpack_from("<HH", b, 8 + 4 * i)
        off, = struct.unpack_from("<I", b, 8 + 4 * n + 4 * i)
        card = card1 + 1
        if card <= 4096:
            vals = struct.unpack_from("<%dH" % card, b, off)
            if list(vals) != sorted(set(vals)):
                raise AssertionError("array container not sorted")
            out.update((key << 16) | v for v in vals)
        else:
            words = struct.unpack_from("<1024Q", b, off)
            got = [(key << 16) | (w * 64 + j) for w, word in enumerate(words) if word
                   for j in range(64) if word >> j & 1]
            if len(got) != card:
                raise AssertionError("bitset container holds %d, header says %d" % (len(got), card))
            out.update(got)
    if len(b) != (8 + 8 * n + sum(2 * (c + 1) if c + 1 <= 4096 else 8192 for c in
                                   (struct.unpack_from("<H", b, 10 + 4 * i)[0] for i in range(n)))):
        raise AssertionError("bitmap length %d does not match its containers" % len(b))
    return out


MINUTE_ROW_MAGIC = b"EPM1"
MINUTES_PER_ROW = 60


def parse_minute_row(b):
    """{minute of the hour (0..59): set of uids} of a packed minute row (sql/032): 'EPM1', a u64
    little-endian mask (bit k: minute k has a bitmap; at least one, none above 59), then for each
    minute of the mask in ascending order a u32 little-endian length L and L bytes of a non-empty
    bitmap (parse_bitmap); nothing after the last one."""
    import struct
    b = bytes(b)
    if len(b) < 12 or b[:4] != MINUTE_ROW_MAGIC:
        raise AssertionError("not a packed minute row (starts %s, %d bytes)"
                             % (b[:4].hex(), len(b)))
    mask, = struct.unpack_from("<Q", b, 4)
    if mask == 0:
        raise AssertionError("packed minute row without a minute (mask 0)")
    if mask >> MINUTES_PER_ROW:
        raise AssertionError("packed minute row: mask %#x has minutes beyond 59" % mask)
    out, off = {}, 12
    for k in range(MINUTES_PER_ROW):
        if not mask >> k & 1:
            continue
        if len(b) - off < 4:
            raise AssertionError("packed minute row: minute %d's length cut off at byte %d of %d"
                                 % (k, off, len(b)))
        size, = struct.unpack_from("<I", b, off)
        off += 4
        if size > len(b) - off:
            raise AssertionError("packed minute row: minute %d's bitmap of %d bytes runs past the "
                                 "end (%d left)" % (k, size, len(b) - off))
        try:
            uids = parse_bitmap(b[off:off + size])
        except Exception as e:  # noqa: BLE001 - struct.error too: re-raised with the minute
            raise AssertionError("packed minute row: minute %d: %s" % (k, e))
        if not uids:
            raise AssertionError("packed minute row: minute %d's bitmap is empty" % k)
        out[k] = uids
        off += size
    if off != len(b):
        raise AssertionError("packed minute row: %d bytes after the last minute's bitmap"
                             % (len(b) - off))
    return out


def _whole_hour(bucket):
    """Whether a timestamptz (an aware datetime) is the start of a UTC hour."""
    import datetime
    d = bucket - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return d.microseconds == 0 and (d.days * 86400 + d.seconds) % 3600 == 0


def minutes_packed(cur):
    """Whether the minute rows hold an hour each (sql/032 applied: its constraint is there)."""
    cur.execute("SELECT 1 FROM pg_constraint WHERE conname = 'epp_user_bitmap_minute_whole_hours'"
                " AND conrelid = to_regclass('public.epp_user_bitmap_minute')")
    return cur.fetchone() is not None


BITMAP_LEVELS = ("minute", "hour", "day")


def _read_level(cur, level, packed, problems):
    """{bucket: union of its uids} of one level's stored rows, each row checked on its own. With
    packed (the minute level since sql/032) a row holds an hour: minute k of the row of hour H
    goes to bucket H + k minutes."""
    import datetime
    table = "epp_user_bitmap_%s" % level
    cur.execute("SELECT bucket, n, bits FROM public.%s ORDER BY bucket, id" % table)
    got = {}
    for bucket, n, bits in cur.fetchall():
        where = "%s[row of hour %s]" % (table, bucket) if packed else "%s[%s]" % (table, bucket)
        try:
            if packed:
                minutes = parse_minute_row(bits)
            else:
                minutes = {0: parse_bitmap(bits)}
        except Exception as e:  # noqa: BLE001 - reported
            problems.append("%s: unreadable row: %s" % (where, e))
            continue
        held = sum(len(u) for u in minutes.values())
        if held != n:
            problems.append("%s: n = %d, %s %d" % (
                where, n, "its minutes hold (minute, uid) pairs:" if packed else
                "the bitmap holds", held))
        if packed and not _whole_hour(bucket):
            problems.append("%s: the bucket is not a whole UTC hour" % where)
        for k, uids in minutes.items():
            got.setdefault(bucket + datetime.timedelta(minutes=k), set()).update(uids)
    return got


def check_bitmaps(cur, problems):
    packed = minutes_packed(cur)
    for level in BITMAP_LEVELS:
        cur.execute("SELECT DISTINCT date_trunc(%s, e.\"timestamp\", 'UTC'), d.uid "
                    "FROM public.events e JOIN public.epp_user_ids d USING (user_id)", (level,))
        want = {}
        for bucket, uid in cur.fetchall():
            want.setdefault(bucket, set()).add(uid)
        by_hour = packed and level == "minute"
        got = _read_level(cur, level, by_hour, problems)
        for bucket in sorted(set(want) | set(got)):
            w, g = want.get(bucket, set()), got.get(bucket, set())
            if w != g and len(problems) < 40:
                problems.append("epp_user_bitmap_%s[%s%s]: %d uids missing (e.g. %s), %d extra "
                                "(e.g. %s)" % (level, "minute " if by_hour else "", bucket,
                                               len(w - g), sorted(w - g)[:3],
                                               len(g - w), sorted(g - w)[:3]))


def bitmap_rows(conn):
    """{level: (buckets, rows)} of the user bitmaps, for tests that print them (the minute
    level's buckets are the hours of its rows since sql/032)."""
    out = {}
    with conn.cursor() as cur:
        for level in BITMAP_LEVELS:
            cur.execute("SELECT count(DISTINCT bucket), count(*) FROM public.epp_user_bitmap_%s"
                        % level)
            out[level] = cur.fetchone()
    return out


def _has_count_column(cur, table):
    cur.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name = %s AND column_name = 'n'", (table,))
    return cur.fetchone() is not None

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


# sql/020: the number of users per day, the sum of epp_user_day_count's rows for that day.
USER_DAY_COUNT_DIFF_SQL = """
WITH expected AS (SELECT bucket, count(*) AS n FROM public.epp_user_day GROUP BY bucket),
     actual AS (SELECT bucket, sum(n) AS n FROM public.epp_user_day_count GROUP BY bucket
                HAVING sum(n) <> 0)
SELECT coalesce(e.bucket, a.bucket), e.n, a.n
FROM expected e FULL JOIN actual a ON e.bucket = a.bucket
WHERE e.n IS DISTINCT FROM a.n
ORDER BY 1
LIMIT 20
"""


DICT_MISSING_SQL = """
SELECT DISTINCT e.user_id FROM public.events e
WHERE NOT EXISTS (SELECT 1 FROM public.epp_user_ids d WHERE d.user_id = e.user_id)
ORDER BY 1 LIMIT 20
"""


# sql/010: each level's per-bucket total equals the sum of that level's rollup (a bucket whose
# rollup rows add up to 0 may have no total row).
TOTALS_DIFF_SQL = """
SELECT coalesce(a.bucket, b.bucket), a.n, b.n
FROM (SELECT bucket, sum(n) AS n FROM public.epp_rollup_{level} GROUP BY bucket) a
FULL JOIN (SELECT bucket, n FROM public.epp_rollup_{level}_total WHERE n <> 0) b
  ON a.bucket = b.bucket
WHERE a.n IS DISTINCT FROM b.n AND NOT (a.n = 0 AND b.n IS NULL)
ORDER BY 1
LIMIT 20
"""

# sql/020, sql/031: the view of users per day agrees with the users of public.events per UTC day
# (over epp_user_day's counts before sql/031, over the day bitmaps since).
ACTIVE_USERS_DIFF_SQL = """
SELECT coalesce(v.day, e.bucket), e.n, v.active_users
FROM public.epp_daily_active_users v
FULL JOIN (SELECT date_trunc('day', "timestamp", 'UTC') AS bucket, count(DISTINCT user_id) AS n
           FROM public.events GROUP BY 1) e ON v.day = e.bucket
WHERE v.active_users IS DISTINCT FROM e.n
ORDER BY 1
LIMIT 20
"""


def _exists(cur, relation):
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,))
    return cur.fetchone()[0]


def derived_problems(cur):
    """The differences between the rollups and what sql/010 and sql/020 derive from them (the
    per-bucket totals, the users per day), for the migrations the database has."""
    problems = []
    if _exists(cur, "public.epp_user_day_count"):
        cur.execute(USER_DAY_COUNT_DIFF_SQL)
        for bucket, want, got in cur.fetchall():
            problems.append("epp_user_day_count[%s]: epp_user_day has %s pairs, the counts "
                            "add up to %s" % (bucket, want, got))
    if _exists(cur, "public.epp_daily_active_users"):
        cur.execute(ACTIVE_USERS_DIFF_SQL)
        for day, want, got in cur.fetchall():
            problems.append("epp_daily_active_users[%s]: public.events has %s users, the view "
                            "says %s" % (day, want, got))
    for level in ("minute", "hour", "day"):
        if not _exists(cur, "public.epp_rollup_%s_total" % level):
            continue
        cur.execute(TOTALS_DIFF_SQL.format(level=level))
        for bucket, want, got in cur.fetchall():
            problems.append("epp_rollup_%s_total[%s]: the rollup adds up to %s, the total says %s"
                            % (level, bucket, want, got))
    return problems


def check(conn):
    """Returns a list of human-readable differences (empty when every rollup, and everything
    derived from the rollups, is exact)."""
    problems = []
    with conn.cursor() as cur:
        problems += derived_problems(cur)
        if _exists(cur, "public.epp_user_ids"):
            cur.execute(DICT_MISSING_SQL)
            for (user,) in cur.fetchall():
                problems.append("epp_user_ids: user %r of public.events has no uid" % user)
        if _exists(cur, "public.epp_user_bitmap_day"):
            check_bitmaps(cur, problems)
        for table, key, expected in ROLLUPS:
            if table == "epp_user_day" and not _exists(cur, "public." + table):
                continue  # replaced by the user bitmaps (sql/031)
            if table == "epp_user_day" and not _has_count_column(cur, table):
                cur.execute(SET_DIFF_SQL)
            else:
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
