-- 011: the per-bucket totals of 010, kept by one trigger function instead of nine, and under a
-- transaction-level advisory lock.
--
-- Why the lock: one INSERT ... ON CONFLICT DO UPDATE on a rollup table fires its INSERT trigger
-- (the rows it created) and its UPDATE trigger (the rows it changed), and each upserts the totals
-- of its own buckets in bucket order. Two writers whose batches span two buckets the other way
-- round -- writer A creates a row in bucket 2 and changes one in bucket 1, writer B creates one in
-- bucket 1 and changes one in bucket 2 -- lock the two total rows in opposite orders: a deadlock,
-- which Postgres breaks after deadlock_timeout (1 s) by failing one transaction (the consumer then
-- retries it). Today's day total is touched by every batch, so writers already queue one behind
-- the other from their first total upsert to their COMMIT; taking this lock at that same point
-- costs nothing more and makes the crossing impossible (at midnight, or for late events).
--
-- The function takes the totals table as its argument; the statement is built with format(%I),
-- so the table name is quoted as an identifier.

CREATE OR REPLACE FUNCTION public.epp_rollup_total_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    totals text := TG_ARGV[0];
    delta text;
BEGIN
    PERFORM pg_advisory_xact_lock(x'657070746f74'::bigint); -- "epptot"
    IF TG_OP = 'INSERT' THEN
        delta := 'SELECT bucket, n FROM new_rows';
    ELSIF TG_OP = 'UPDATE' THEN
        delta := 'SELECT bucket, n FROM new_rows UNION ALL SELECT bucket, -n FROM old_rows';
    ELSE
        delta := 'SELECT bucket, -n FROM old_rows';
    END IF;
    EXECUTE format('INSERT INTO public.%I AS t (bucket, n)'
                   ' SELECT bucket, sum(n) FROM (%s) d(bucket, n)'
                   ' GROUP BY bucket HAVING sum(n) <> 0 ORDER BY bucket'
                   ' ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n', totals, delta);
    RETURN NULL;
END $$;

DO $$
DECLARE
    level text;
BEGIN
    FOREACH level IN ARRAY ARRAY['minute', 'hour', 'day'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS epp_rollup_%1$s_total_ins ON public.epp_rollup_%1$s;'
                       'CREATE TRIGGER epp_rollup_%1$s_total_ins AFTER INSERT ON public.epp_rollup_%1$s'
                       ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION public.epp_rollup_total_apply(''epp_rollup_%1$s_total'');'
                       'DROP TRIGGER IF EXISTS epp_rollup_%1$s_total_upd ON public.epp_rollup_%1$s;'
                       'CREATE TRIGGER epp_rollup_%1$s_total_upd AFTER UPDATE ON public.epp_rollup_%1$s'
                       ' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION public.epp_rollup_total_apply(''epp_rollup_%1$s_total'');'
                       'DROP TRIGGER IF EXISTS epp_rollup_%1$s_total_del ON public.epp_rollup_%1$s;'
                       'CREATE TRIGGER epp_rollup_%1$s_total_del AFTER DELETE ON public.epp_rollup_%1$s'
                       ' REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION public.epp_rollup_total_apply(''epp_rollup_%1$s_total'');'
                       'DROP FUNCTION IF EXISTS public.epp_rollup_%1$s_total_ins();'
                       'DROP FUNCTION IF EXISTS public.epp_rollup_%1$s_total_upd();'
                       'DROP FUNCTION IF EXISTS public.epp_rollup_%1$s_total_del();', level);
    END LOOP;
END $$;
