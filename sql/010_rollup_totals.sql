-- 010: per-bucket totals over all event names, so that the unfiltered count and timeseries read
-- one row per bucket instead of one per (bucket, event_name): a 30-day hourly series sums 720
-- rows instead of 720 x the number of event names.
--
-- They are kept by triggers on the rollup tables, in the same transaction as every change to
-- those (the consumer's upserts, epp-admin restore and delete-test), so they are exact by
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

-- One function per table (static SQL: planned once per session, unlike EXECUTE).
CREATE OR REPLACE FUNCTION public.epp_rollup_minute_total_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta bigint := CASE TG_OP WHEN 'INSERT' THEN NEW.n WHEN 'UPDATE' THEN NEW.n - OLD.n
                               ELSE -OLD.n END;
BEGIN
    IF delta <> 0 THEN
        INSERT INTO public.epp_rollup_minute_total AS t (bucket, n)
        VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.bucket ELSE NEW.bucket END, delta)
        ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_hour_total_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta bigint := CASE TG_OP WHEN 'INSERT' THEN NEW.n WHEN 'UPDATE' THEN NEW.n - OLD.n
                               ELSE -OLD.n END;
BEGIN
    IF delta <> 0 THEN
        INSERT INTO public.epp_rollup_hour_total AS t (bucket, n)
        VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.bucket ELSE NEW.bucket END, delta)
        ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.epp_rollup_day_total_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta bigint := CASE TG_OP WHEN 'INSERT' THEN NEW.n WHEN 'UPDATE' THEN NEW.n - OLD.n
                               ELSE -OLD.n END;
BEGIN
    IF delta <> 0 THEN
        INSERT INTO public.epp_rollup_day_total AS t (bucket, n)
        VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.bucket ELSE NEW.bucket END, delta)
        ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n;
    END IF;
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

DROP TRIGGER IF EXISTS epp_rollup_minute_total ON public.epp_rollup_minute;
CREATE TRIGGER epp_rollup_minute_total AFTER INSERT OR UPDATE OR DELETE ON public.epp_rollup_minute
    FOR EACH ROW EXECUTE FUNCTION public.epp_rollup_minute_total_trg();
DROP TRIGGER IF EXISTS epp_rollup_hour_total ON public.epp_rollup_hour;
CREATE TRIGGER epp_rollup_hour_total AFTER INSERT OR UPDATE OR DELETE ON public.epp_rollup_hour
    FOR EACH ROW EXECUTE FUNCTION public.epp_rollup_hour_total_trg();
DROP TRIGGER IF EXISTS epp_rollup_day_total ON public.epp_rollup_day;
CREATE TRIGGER epp_rollup_day_total AFTER INSERT OR UPDATE OR DELETE ON public.epp_rollup_day
    FOR EACH ROW EXECUTE FUNCTION public.epp_rollup_day_total_trg();

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
