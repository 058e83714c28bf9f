-- 031: per-bucket user bitmaps -- for every UTC minute, hour and day, the uids (sql/030) of the
-- users with an event in it -- replacing epp_user_day. Design and measurements:
-- event_consumer/README.md, "Design: the user dictionary and the user bitmaps".
--
-- A bucket's set is the UNION of its rows. Writers append a row holding the uids new to them
-- (common/epp_users.c, in the transaction that stores the events); rows of one bucket are
-- merged from time to time (compaction); epp-admin delete-test removes the uids of users left
-- without an event in a bucket. bits is a Roaring bitmap in CRoaring's portable format without
-- run containers (cookie 12346), n its cardinality. A bucket without a row has no user.

CREATE TABLE IF NOT EXISTS public.epp_user_bitmap_minute (
    bucket timestamptz NOT NULL,
    id     bigint      GENERATED ALWAYS AS IDENTITY,
    n      bigint      NOT NULL CHECK (n > 0),
    bits   bytea       NOT NULL,
    PRIMARY KEY (bucket, id)
);
CREATE TABLE IF NOT EXISTS public.epp_user_bitmap_hour (LIKE public.epp_user_bitmap_minute
    INCLUDING CONSTRAINTS INCLUDING IDENTITY, PRIMARY KEY (bucket, id));
CREATE TABLE IF NOT EXISTS public.epp_user_bitmap_day (LIKE public.epp_user_bitmap_minute
    INCLUDING CONSTRAINTS INCLUDING IDENTITY, PRIMARY KEY (bucket, id));
-- Bitmaps do not compress (pglz would only spend CPU on every write and read); large ones still
-- move out of line (TOAST).
ALTER TABLE public.epp_user_bitmap_minute ALTER COLUMN bits SET STORAGE EXTERNAL;
ALTER TABLE public.epp_user_bitmap_hour ALTER COLUMN bits SET STORAGE EXTERNAL;
ALTER TABLE public.epp_user_bitmap_day ALTER COLUMN bits SET STORAGE EXTERNAL;

-- Little-endian hex of an unsigned 16- and 32-bit value (the portable format is little-endian).
CREATE OR REPLACE FUNCTION public.epp_le16_hex(v bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT lpad(to_hex(((v & 255) << 8) | ((v >> 8) & 255)), 4, '0') $$;
CREATE OR REPLACE FUNCTION public.epp_le32_hex(v bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT public.epp_le16_hex(v & 65535) || public.epp_le16_hex((v >> 16) & 65535) $$;
CREATE OR REPLACE FUNCTION public.epp_le_get(b bytea, off bigint, nbytes int) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT sum(get_byte(b, (off + k)::int)::bigint << (8 * k)) FROM generate_series(0, nbytes - 1) k $$;

-- A bitmap of the uids given (NULLs, duplicates and order do not matter), built in SQL: for bulk
-- loads (this migration's backfill, epp-admin restore, test fixtures, bench_analytics). Per
-- container of 65536 uids: an array of 16-bit values when it holds 4096 or fewer, else a 8 KiB
-- bitset -- exactly what CRoaring writes, so both read each other's bitmaps.
CREATE OR REPLACE FUNCTION public.epp_user_bitmap(uids bigint[]) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
WITH c AS (
    SELECT u >> 16 AS key, count(*) AS card, array_agg(u & 65535 ORDER BY u) AS lows
    FROM (SELECT DISTINCT u FROM unnest(uids) AS u WHERE u IS NOT NULL) v
    GROUP BY 1
), body AS (
    SELECT key, card,
           CASE WHEN card <= 4096 THEN
               (SELECT string_agg(public.epp_le16_hex(l), '' ORDER BY o)
                FROM unnest(lows) WITH ORDINALITY AS x(l, o))
           ELSE
               (SELECT string_agg(lpad(to_hex(coalesce(b.byte, 0)), 2, '0'), '' ORDER BY k)
                FROM generate_series(0, 8191) AS k
                LEFT JOIN (SELECT l >> 3 AS k2, bit_or((1 << (l & 7)::int)::int) AS byte
                           FROM unnest(lows) AS l GROUP BY 1) b ON b.k2 = k)
           END AS hex
    FROM c
), o AS (
    SELECT key, card, hex, count(*) OVER () AS n,
           coalesce(sum(length(hex) / 2) OVER (ORDER BY key ROWS BETWEEN UNBOUNDED PRECEDING
                                                             AND 1 PRECEDING), 0) AS before
    FROM body
)
SELECT decode('3a300000' || coalesce(
    (SELECT public.epp_le32_hex(max(n))
            || string_agg(public.epp_le16_hex(key) || public.epp_le16_hex(card - 1), '' ORDER BY key)
            || string_agg(public.epp_le32_hex(8 + 8 * n + before), '' ORDER BY key)
            || string_agg(hex, '' ORDER BY key) FROM o),
    '00000000'), 'hex')
$$;

-- The stored bitmap itself when it is in the format above; an error otherwise (never a wrong
-- count).
CREATE OR REPLACE FUNCTION public.epp_user_bitmap_checked(b bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF length(b) < 8 OR substring(b FROM 1 FOR 4) <> '\x3a300000'::bytea THEN
        RAISE EXCEPTION 'not a user bitmap without run containers (cookie %)',
            encode(substring(b FROM 1 FOR 4), 'hex') USING ERRCODE = 'data_corrupted';
    END IF;
    RETURN b;
END $$;

-- Exact cardinality of the union of bitmaps (NULLs ignored), for SQL clients: bitset containers
-- are OR-ed as bit strings, array values counted when no bitset of their container has them.
CREATE OR REPLACE FUNCTION public.epp_user_bitmap_count(bitmaps bytea[]) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
WITH b AS (
    SELECT public.epp_user_bitmap_checked(x) AS x FROM unnest(bitmaps) AS x WHERE x IS NOT NULL
), h AS (
    SELECT x, public.epp_le_get(x, 4, 4) AS n FROM b
), c AS (
    SELECT x, public.epp_le_get(x, 8 + 4 * i, 2) AS key,
           public.epp_le_get(x, 10 + 4 * i, 2) + 1 AS card,
           public.epp_le_get(x, 8 + 4 * n + 4 * i, 4) AS off
    FROM h, generate_series(0, n - 1) AS i
), bits AS (
    SELECT key, bit_or(('x' || encode(substring(x FROM (off + 1)::int FOR 8192), 'hex'))::bit(65536))
               AS s
    FROM c WHERE card > 4096 GROUP BY key
), arr AS (
    SELECT DISTINCT key, get_byte(x, (off + 2 * j)::int) + (get_byte(x, (off + 2 * j + 1)::int) << 8)
               AS v
    FROM c, generate_series(0, card - 1) AS j WHERE card <= 4096
)
SELECT coalesce((SELECT sum(bit_count(s)) FROM bits), 0)::bigint
       + (SELECT count(*) FROM arr LEFT JOIN bits USING (key)
          WHERE bits.s IS NULL OR get_bit(bits.s, ((v >> 3) * 8 + 7 - (v & 7))::int) = 0)
$$;

-- Exact distinct users per UTC day with events (what Superset's chart of active users reads).
-- One row per day: its cardinality; several (recent appends not yet merged): their union.
CREATE OR REPLACE VIEW public.epp_daily_active_users AS
    SELECT bucket AS day,
           CASE WHEN count(*) = 1 THEN min(n)
                ELSE public.epp_user_bitmap_count(array_agg(bits)) END::bigint AS active_users
    FROM public.epp_user_bitmap_day
    GROUP BY bucket;

-- The bitmaps of a database migrated with data in it, under a lock so that no row is stored
-- between the backfill and the first writer that maintains them. (Only into empty tables: the
-- file may be applied again by hand, e.g. by bench/bench_analytics.sh on its cached data.)
LOCK TABLE public.events IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO public.epp_user_bitmap_day (bucket, n, bits)
    SELECT bucket, count(*), public.epp_user_bitmap(array_agg(uid))
    FROM (SELECT DISTINCT date_trunc('day', e."timestamp", 'UTC') AS bucket, d.uid
          FROM public.events e JOIN public.epp_user_ids d USING (user_id)
          WHERE NOT EXISTS (SELECT 1 FROM public.epp_user_bitmap_day)) p
    GROUP BY bucket ORDER BY bucket;
INSERT INTO public.epp_user_bitmap_hour (bucket, n, bits)
    SELECT bucket, count(*), public.epp_user_bitmap(array_agg(uid))
    FROM (SELECT DISTINCT date_trunc('hour', e."timestamp", 'UTC') AS bucket, d.uid
          FROM public.events e JOIN public.epp_user_ids d USING (user_id)
          WHERE NOT EXISTS (SELECT 1 FROM public.epp_user_bitmap_hour)) p
    GROUP BY bucket ORDER BY bucket;
INSERT INTO public.epp_user_bitmap_minute (bucket, n, bits)
    SELECT bucket, count(*), public.epp_user_bitmap(array_agg(uid))
    FROM (SELECT DISTINCT date_trunc('minute', e."timestamp", 'UTC') AS bucket, d.uid
          FROM public.events e JOIN public.epp_user_ids d USING (user_id)
          WHERE NOT EXISTS (SELECT 1 FROM public.epp_user_bitmap_minute)) p
    GROUP BY bucket ORDER BY bucket;

-- epp_user_day is no longer written or read (the view above replaced the one of sql/020 that
-- read it, when that ran first). Consumers built before this migration fail their batches
-- (and retry) once it is applied: upgrade every consumer together.
DROP TABLE IF EXISTS public.epp_user_day;
-- What sql/020 kept for the view it had (the count of epp_user_day's pairs per day, gone with
-- the table's triggers): nothing reads it since the view above.
DROP TABLE IF EXISTS public.epp_user_day_count;
DROP FUNCTION IF EXISTS public.epp_user_day_count_apply();
DROP FUNCTION IF EXISTS public.epp_user_day_count_truncate();
