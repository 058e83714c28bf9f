-- 010: per-bucket totals over all event names, so that the unfiltered count and timeseries read
-- one row per bucket instead of one per (bucket, event_name): a 30-day hourly series sums 720
-- rows instead of 720 x the number of event names.
--
-- They are kept by statement-level triggers on the rollup tables, in the same transaction as
-- every change to those (the consumer's upserts, epp-admin restore and delete-test), so they are exact by
-- construction and no writer needs to know about them. A rollup row's bucket never changes.

CREATE TABLE IF NOT EXISTS public.epp_rollup_minute_total (
    bucket timestamptz PRIMARY KEY,
    n      bigint      NOT NULL
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS public.epp_rollup_hour_total (
    bucket timestamptz PRIMARY KEY,
    n      bigint      NOT NULL
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS public.epp_rollup_day_total (
    bucket timestamptz PRIMARY KEY,
    n      bigint      NOT NULL
) WITH (fillfactor = 50);

-- Statement-level triggers with transition tables: one aggregated upsert per statement, not a
-- PL/pgSQL call per row (the consumer changes hundreds of rollup rows per batch in a single
-- INSERT ... ON CONFLICT DO UPDATE, which fires the INSERT and the UPDATE trigger once each).
-- Transition tables allow one event per trigger, hence three triggers per table.
CREATE OR REPLACE FUNCTION public.epp_rollup_minute_total_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_minute_total AS t (bucket, n)
        SELECT bucket, sum(n) FROM new_rows GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_minute_total_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_minute_total AS t (bucket, n)
        SELECT bucket, sum(n) FROM (SELECT bucket, n FROM new_rows
                                    UNION ALL SELECT bucket, -n FROM old_rows) d
        GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_minute_total_del() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_minute_total AS t (bucket, n)
        SELECT bucket, -sum(n) FROM old_rows GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_hour_total_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_hour_total AS t (bucket, n)
        SELECT bucket, sum(n) FROM new_rows GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_hour_total_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_hour_total AS t (bucket, n)
        SELECT bucket, sum(n) FROM (SELECT bucket, n FROM new_rows
                                    UNION ALL SELECT bucket, -n FROM old_rows) d
        GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_hour_total_del() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_hour_total AS t (bucket, n)
        SELECT bucket, -sum(n) FROM old_rows GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_day_total_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_day_total AS t (bucket, n)
        SELECT bucket, sum(n) FROM new_rows GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_day_total_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_day_total AS t (bucket, n)
        SELECT bucket, sum(n) FROM (SELECT bucket, n FROM new_rows
                                    UNION ALL SELECT bucket, -n FROM old_rows) d
        GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_day_total_del() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.epp_rollup_day_total AS t (bucket, n)
        SELECT bucket, -sum(n) FROM old_rows GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket
    ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END $$;

-- Existing rollups first (a database migrated from 003 with data in it), under a lock so that
-- no write slips between the backfill and the trigger.
LOCK TABLE public.epp_rollup_minute, public.epp_rollup_hour, public.epp_rollup_day
    IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO public.epp_rollup_minute_total (bucket, n)
    SELECT bucket, sum(n) FROM public.epp_rollup_minute GROUP BY bucket ON CONFLICT DO NOTHING;
INSERT INTO public.epp_rollup_hour_total (bucket, n)
    SELECT bucket, sum(n) FROM public.epp_rollup_hour GROUP BY bucket ON CONFLICT DO NOTHING;
INSERT INTO public.epp_rollup_day_total (bucket, n)
    SELECT bucket, sum(n) FROM public.epp_rollup_day GROUP BY bucket ON CONFLICT DO NOTHING;

-- (Development databases that ran an earlier draft of this migration had row-level triggers.)
DROP TRIGGER IF EXISTS epp_rollup_minute_total ON public.epp_rollup_minute;
DROP TRIGGER IF EXISTS epp_rollup_hour_total ON public.epp_rollup_hour;
DROP TRIGGER IF EXISTS epp_rollup_day_total ON public.epp_rollup_day;
DROP FUNCTION IF EXISTS public.epp_rollup_minute_total_trg();
DROP FUNCTION IF EXISTS public.epp_rollup_hour_total_trg();
DROP FUNCTION IF EXISTS public.epp_rollup_day_total_trg();

DROP TRIGGER IF EXISTS epp_rollup_minute_total_ins ON public.epp_rollup_minute;
CREATE TRIGGER epp_rollup_minute_total_ins AFTER INSERT ON public.epp_rollup_minute
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_minute_total_ins();
DROP TRIGGER IF EXISTS epp_rollup_minute_total_upd ON public.epp_rollup_minute;
CREATE TRIGGER epp_rollup_minute_total_upd AFTER UPDATE ON public.epp_rollup_minute
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_minute_total_upd();
DROP TRIGGER IF EXISTS epp_rollup_minute_total_del ON public.epp_rollup_minute;
CREATE TRIGGER epp_rollup_minute_total_del AFTER DELETE ON public.epp_rollup_minute
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_minute_total_del();

DROP TRIGGER IF EXISTS epp_rollup_hour_total_ins ON public.epp_rollup_hour;
CREATE TRIGGER epp_rollup_hour_total_ins AFTER INSERT ON public.epp_rollup_hour
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_hour_total_ins();
DROP TRIGGER IF EXISTS epp_rollup_hour_total_upd ON public.epp_rollup_hour;
CREATE TRIGGER epp_rollup_hour_total_upd AFTER UPDATE ON public.epp_rollup_hour
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_hour_total_upd();
DROP TRIGGER IF EXISTS epp_rollup_hour_total_del ON public.epp_rollup_hour;
CREATE TRIGGER epp_rollup_hour_total_del AFTER DELETE ON public.epp_rollup_hour
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_hour_total_del();

DROP TRIGGER IF EXISTS epp_rollup_day_total_ins ON public.epp_rollup_day;
CREATE TRIGGER epp_rollup_day_total_ins AFTER INSERT ON public.epp_rollup_day
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_day_total_ins();
DROP TRIGGER IF EXISTS epp_rollup_day_total_upd ON public.epp_rollup_day;
CREATE TRIGGER epp_rollup_day_total_upd AFTER UPDATE ON public.epp_rollup_day
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_day_total_upd();
DROP TRIGGER IF EXISTS epp_rollup_day_total_del ON public.epp_rollup_day;
CREATE TRIGGER epp_rollup_day_total_del AFTER DELETE ON public.epp_rollup_day
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_day_total_del();

-- A TRUNCATE of a rollup table (bulk reloads) empties its totals too.
CREATE OR REPLACE FUNCTION public.epp_rollup_total_truncate_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'epp_rollup_minute' THEN
        TRUNCATE public.epp_rollup_minute_total;
    ELSIF TG_TABLE_NAME = 'epp_rollup_hour' THEN
        TRUNCATE public.epp_rollup_hour_total;
    ELSIF TG_TABLE_NAME = 'epp_rollup_day' THEN
        TRUNCATE public.epp_rollup_day_total;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS epp_rollup_minute_total_truncate ON public.epp_rollup_minute;
CREATE TRIGGER epp_rollup_minute_total_truncate AFTER TRUNCATE ON public.epp_rollup_minute
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_total_truncate_trg();
DROP TRIGGER IF EXISTS epp_rollup_hour_total_truncate ON public.epp_rollup_hour;
CREATE TRIGGER epp_rollup_hour_total_truncate AFTER TRUNCATE ON public.epp_rollup_hour
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_total_truncate_trg();
DROP TRIGGER IF EXISTS epp_rollup_day_total_truncate ON public.epp_rollup_day;
CREATE TRIGGER epp_rollup_day_total_truncate AFTER TRUNCATE ON public.epp_rollup_day
    FOR EACH STATEMENT EXECUTE FUNCTION public.epp_rollup_total_truncate_trg();
