-- 032: the minute level of the user bitmaps (sql/031) stored one hour per row. A writer that
-- stores a batch appended one row per minute it touched; a history import, whose events land in
-- thousands of distinct minutes per batch, so appended about one minute row per event (946,438
-- rows for 1,000,000 events in bench_consumer's backfill: event_consumer/README.md,
-- "Performance"). Since this migration a row of public.epp_user_bitmap_minute holds the minutes
-- of one UTC hour, so a batch appends one row per hour it touched.
--
-- A row of epp_user_bitmap_minute now:
--   bucket  the UTC hour (a whole hour: checked);
--   bits    the bitmaps of its minutes, packed (little-endian integers):
--             4 bytes  'EPM1' (45 50 4d 31)
--             8 bytes  a mask: bit k set when minute k (0..59) of the hour has a bitmap
--             then, for each minute of the mask in ascending order: 4 bytes, the length L of
--             its bitmap, then its L bytes -- a non-empty bitmap in the format of sql/031
--             (CRoaring's portable format without run containers);
--   n       the number of (minute, uid) pairs the row holds (the sum of its bitmaps'
--           cardinalities).
-- The users of minute k of an hour are the UNION of minute k's bitmaps over the hour's rows.
-- Writers (common/epp_users.c) append and merge rows whole hours at a time.

-- A packed row of (minute of the hour, uid) pairs (NULL uids, duplicates and order do not
-- matter; minutes are 0..59), built in SQL for bulk loads (this migration, epp-admin restore,
-- test fixtures, benches), with epp_user_bitmap (sql/031) for each minute. NULL when no pair.
CREATE OR REPLACE FUNCTION public.epp_user_minute_bitmaps(minutes int[], uids bigint[])
RETURNS bytea LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    packed bytea;
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(minutes, uids) AS x(m, u)
               WHERE u IS NOT NULL AND (m IS NULL OR m < 0 OR m > 59)) THEN
        RAISE EXCEPTION 'a minute of the hour is 0..59' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH b AS (
        SELECT m, public.epp_user_bitmap(array_agg(u)) AS bits
        FROM unnest(minutes, uids) AS x(m, u)
        WHERE u IS NOT NULL
        GROUP BY m
    ), mask AS (
        SELECT bit_or(1::bigint << m) AS v FROM b
    )
    SELECT decode('45504d31' || public.epp_le32_hex(mask.v & 4294967295)
                             || public.epp_le32_hex(mask.v >> 32), 'hex')
           || (SELECT string_agg(decode(public.epp_le32_hex(length(bits)), 'hex') || bits,
                                 ''::bytea ORDER BY m) FROM b)
    INTO packed
    FROM mask WHERE mask.v IS NOT NULL;
    RETURN packed;
END $$;

-- The minute of the UTC hour a time lies in (0..59; right before 1970 too).
CREATE OR REPLACE FUNCTION public.epp_minute_of_hour(t timestamptz) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT (((floor(extract(epoch FROM t))::bigint % 3600) + 3600) % 3600 / 60)::int $$;

-- Rebuilt from public.events under a lock, so that no row is stored between the rebuild and the
-- first writer that packs. Consumers built before this migration append minute rows that the
-- checks below refuse (they fail their batches and retry), and an epp-analytics built before it
-- cannot read the packed rows (its unique-users answers fail with 500): upgrade the consumers
-- and the analytics services together. Retention (sql/040) purges whole days, so it never cuts
-- an hour's row. Applied again, on a table already converted, this does nothing.
LOCK TABLE public.events IN SHARE ROW EXCLUSIVE MODE;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
               WHERE conname = 'epp_user_bitmap_minute_whole_hours') THEN
        RETURN;
    END IF;
    DELETE FROM public.epp_user_bitmap_minute;
    ALTER TABLE public.epp_user_bitmap_minute ADD CONSTRAINT epp_user_bitmap_minute_whole_hours
        CHECK (floor(extract(epoch FROM bucket))::bigint % 3600 = 0);
    ALTER TABLE public.epp_user_bitmap_minute ADD CONSTRAINT epp_user_bitmap_minute_packed
        CHECK (substring(bits FROM 1 FOR 4) = '\x45504d31'::bytea);
    INSERT INTO public.epp_user_bitmap_minute (bucket, n, bits)
        SELECT date_trunc('hour', m, 'UTC'), count(*),
               public.epp_user_minute_bitmaps(array_agg(public.epp_minute_of_hour(m)),
                                              array_agg(uid))
        FROM (SELECT DISTINCT date_trunc('minute', e."timestamp", 'UTC') AS m, d.uid
              FROM public.events e JOIN public.epp_user_ids d USING (user_id)) p
        GROUP BY 1 ORDER BY 1;
END $$;
