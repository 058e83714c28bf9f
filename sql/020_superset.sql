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
-- changes this view and not the dashboard.

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

CREATE OR REPLACE VIEW public.epp_daily_active_users AS
    SELECT bucket AS day, count(*)::bigint AS active_users
    FROM public.epp_user_day
    GROUP BY bucket;
