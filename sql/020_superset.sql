-- 020: what the Superset dashboard reads (docs/superset.md), so that its charts stay exact and
-- fast at any size: they read the rollups through these two objects, never public.events alone.
--
-- public.epp_event_counts(from_ts, to_ts, width, by_name) counts the events of [from_ts, to_ts)
-- exactly, with the plan epp-analytics uses (analytics_service/README.md, "How an answer is
-- computed"): whole buckets from the rollups, coarsest first, and only the sub-minute edges from
-- public.events. No piece is coarser than `width` (minute, hour or day), so grouping the rows by
-- date_trunc(width or coarser, bucket) gives exact per-bucket counts; the first and last bucket
-- count only their part inside the range, as /analytics/events/timeseries does. Every row's
-- bucket lies inside [from_ts, to_ts) -- a partial bucket is stamped at from_ts, not before it --
-- so a time filter Superset adds around the call keeps every row. NULL bounds are open ends.
-- With zero_fill (for by_name = false), every bucket of `width` in a bounded range of at most
-- 10,000 buckets also gets a row with n = 0, so that a chart of the series is zero-filled like
-- /analytics/events/timeseries instead of joining its points across the empty buckets.
--
-- public.epp_daily_active_users is one row per UTC day with events: its distinct users. The
-- chart reads this view, never epp_user_day, so a later change of how user days are stored
-- changes this view and not the dashboard. Counting a day's pairs in epp_user_day at read time
-- costs O(users per day): 3-4 s for a week at 10M events (bench/bench_superset.sh), so
-- statement-level triggers on epp_user_day append, in the same transaction as every change to
-- it (the consumer's new pairs, epp-admin delete-test and restore), one row per day touched to
-- public.epp_user_day_count: +k for k pairs inserted, -k for k deleted. The view sums them
-- (a row per statement that brought a day new pairs). Appending, not upserting one row per day, because the consumer writes
-- epp_user_day first in its transaction so that writers overlap (consumer_writer.c): an upsert
-- of today's row there locked it until COMMIT and serialized the writers (bench_consumer on a
-- busy machine: 0.31x and 0.36x of \copy with that upsert, 0.64x without it).

CREATE OR REPLACE FUNCTION public.epp_event_counts(from_ts timestamptz, to_ts timestamptz,
                                                   width text DEFAULT 'day',
                                                   by_name boolean DEFAULT true,
                                                   zero_fill boolean DEFAULT false)
RETURNS TABLE (bucket timestamptz, event_name text, n bigint)
LANGUAGE plpgsql STABLE
-- date_trunc below cuts UTC buckets whatever the caller's session time zone is.
SET "TimeZone" = 'UTC'
AS $$
DECLARE
    levels text[];
    lvl text;
    lo timestamptz := coalesce(from_ts, '-infinity');
    hi timestamptz := coalesce(to_ts, 'infinity');
    a timestamptz;
    b timestamptz;
    x timestamptz; -- [x, y): the part already counted from coarser rollups (NULL: none yet)
    y timestamptz;
    pieces timestamptz[] := '{}'; -- pairs (start, end) for the current level
    i int;
    rollup text;
    name_col text := CASE WHEN by_name THEN 'event_name' ELSE 'NULL::text' END;
BEGIN
    levels := CASE width WHEN 'day' THEN ARRAY['day', 'hour', 'minute']
                         WHEN 'hour' THEN ARRAY['hour', 'minute']
                         WHEN 'minute' THEN ARRAY['minute'] END;
    IF levels IS NULL THEN
        RAISE EXCEPTION 'epp_event_counts: width must be minute, hour or day, not %', width
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lo >= hi THEN
        RETURN;
    END IF;
    FOREACH lvl IN ARRAY levels LOOP
        a := date_trunc(lvl, lo);
        IF a < lo THEN
            a := a + ('1 ' || lvl)::interval;
        END IF;
        b := date_trunc(lvl, hi);
        IF x IS NULL THEN
            IF a < b THEN
                pieces := ARRAY[a, b];
                x := a;
                y := b;
            ELSE
                pieces := '{}';
            END IF;
        ELSE
            pieces := ARRAY[a, x, y, b];
            x := a;
            y := b;
        END IF;
        -- The per-bucket totals (sql/010) when names are not wanted: one row per bucket.
        rollup := 'epp_rollup_' || lvl || CASE WHEN by_name THEN '' ELSE '_total' END;
        FOR i IN 1 .. coalesce(array_length(pieces, 1), 0) / 2 LOOP
            IF pieces[2 * i - 1] < pieces[2 * i] THEN
                RETURN QUERY EXECUTE format(
                    'SELECT bucket, %s, n FROM public.%I'
                    ' WHERE bucket >= $1 AND bucket < $2 AND n <> 0',
                    name_col, rollup)
                    USING pieces[2 * i - 1], pieces[2 * i];
            END IF;
        END LOOP;
    END LOOP;
    -- The sub-minute edges (or the whole range when it holds no whole minute) from the events.
    pieces := CASE WHEN x IS NULL THEN ARRAY[lo, hi] ELSE ARRAY[lo, x, y, hi] END;
    FOR i IN 1 .. array_length(pieces, 1) / 2 LOOP
        IF pieces[2 * i - 1] < pieces[2 * i] THEN
            RETURN QUERY EXECUTE format(
                'SELECT greatest(date_trunc(''minute'', "timestamp"), $1), %s, count(*)'
                ' FROM public.events WHERE "timestamp" >= $1 AND "timestamp" < $2'
                ' GROUP BY 1, 2', name_col)
                USING pieces[2 * i - 1], pieces[2 * i];
        END IF;
    END LOOP;
    IF zero_fill AND isfinite(lo) AND isfinite(hi)
       AND hi - date_trunc(width, lo) <= 10000 * ('1 ' || width)::interval THEN
        RETURN QUERY SELECT greatest(g, lo), NULL::text, 0::bigint
            FROM generate_series(date_trunc(width, lo), hi - interval '1 microsecond',
                                 ('1 ' || width)::interval) g;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS public.epp_user_day_count (
    bucket timestamptz NOT NULL,
    n      bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS epp_user_day_count_bucket_idx ON public.epp_user_day_count (bucket);

CREATE OR REPLACE FUNCTION public.epp_user_day_count_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.epp_user_day_count (bucket, n)
            SELECT bucket, count(*) FROM new_rows GROUP BY bucket;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO public.epp_user_day_count (bucket, n)
            SELECT bucket, -count(*) FROM old_rows GROUP BY bucket;
    ELSE
        INSERT INTO public.epp_user_day_count (bucket, n)
            SELECT bucket, sum(n) FROM (SELECT bucket, 1 FROM new_rows
                                        UNION ALL SELECT bucket, -1 FROM old_rows) d(bucket, n)
            GROUP BY bucket HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_user_day_count_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE public.epp_user_day_count;
    RETURN NULL;
END $$;

-- The pairs' counts and the view, while epp_user_day exists: sql/031 replaces both with the
-- user bitmaps and drops epp_user_day, and this file must still run again harmlessly after it
-- (the benchmarks re-apply every migration to their cached data sets).
DO $do$
BEGIN
    IF to_regclass('public.epp_user_day') IS NULL THEN
        RETURN;
    END IF;
    -- Existing pairs first, under a lock so that no write slips between the backfill and the
    -- triggers.
    LOCK TABLE public.epp_user_day IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO public.epp_user_day_count (bucket, n)
        SELECT bucket, count(*) FROM public.epp_user_day
        WHERE NOT EXISTS (SELECT 1 FROM public.epp_user_day_count)
        GROUP BY bucket;
    DROP TRIGGER IF EXISTS epp_user_day_count_ins ON public.epp_user_day;
    CREATE TRIGGER epp_user_day_count_ins AFTER INSERT ON public.epp_user_day
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION public.epp_user_day_count_apply();
    DROP TRIGGER IF EXISTS epp_user_day_count_upd ON public.epp_user_day;
    CREATE TRIGGER epp_user_day_count_upd AFTER UPDATE ON public.epp_user_day
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION public.epp_user_day_count_apply();
    DROP TRIGGER IF EXISTS epp_user_day_count_del ON public.epp_user_day;
    CREATE TRIGGER epp_user_day_count_del AFTER DELETE ON public.epp_user_day
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION public.epp_user_day_count_apply();
    DROP TRIGGER IF EXISTS epp_user_day_count_truncate ON public.epp_user_day;
    CREATE TRIGGER epp_user_day_count_truncate AFTER TRUNCATE ON public.epp_user_day
        FOR EACH STATEMENT EXECUTE FUNCTION public.epp_user_day_count_truncate();

    CREATE OR REPLACE VIEW public.epp_daily_active_users AS
        SELECT bucket AS day, sum(n)::bigint AS active_users
        FROM public.epp_user_day_count
        GROUP BY bucket
        HAVING sum(n) > 0;
END $do$;
