-- 040: maintenance of the day partitions of public.events (sql/041) and retention, as
-- data-driven steps, and the record of what retention dropped.
--
-- epp_maintenance_plan() lists what is to be done now; epp_maintenance_apply() does one step.
-- epp-consumer runs every step of the plan periodically (MAINTENANCE_INTERVAL_S), each in its
-- own short transaction, and `epp-admin retention [--dry-run]` runs or shows the same plan
-- (common/epp_maintain.h drives both). The steps:
--   create        the partition of one UTC day: yesterday to `ahead` days ahead when missing,
--                 and every day that has rows waiting in events_default (they move in);
--   drop          a day partition wholly older than the raw horizon, with its event_ids;
--   purge-default rows of events_default older than the raw horizon, with their event_ids;
--   purge-rollups rollup buckets older than the rollup horizon (minute, hour, day, their
--                 totals and the user bitmaps of sql/031).
-- Horizons are UTC midnights: raw events with "timestamp" before
-- date_trunc('day', now() - events_keep) go, so a day is dropped once all of it is older than
-- events_keep. NULL keep intervals keep everything. Each step that removes data moves
-- public.epp_retention forward in its own transaction, so analytics never answers from a
-- partly dropped range (epp_retention_guard below).

-- What retention has dropped (one row): raw events before raw_from and rollup buckets before
-- rollups_from may be gone (NULL: nothing dropped). Only ever moves forward; analytics refuses
-- answers that would need what is below them (public.epp_retention_guard below).
CREATE TABLE IF NOT EXISTS public.epp_retention (
    id           boolean     PRIMARY KEY DEFAULT true CHECK (id), -- one row
    raw_from     timestamptz,
    rollups_from timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.epp_retention (id) VALUES (true) ON CONFLICT (id) DO NOTHING;

-- Until sql/041 partitions public.events, event_id is its primary key, and this view answers
-- for the table sql/041 puts in its place: the readers of public.epp_event_ids (the consumer's
-- and epp-admin restore's skipping of stored ids, analytics' event lookup) are right on either
-- layout, also while the conversion runs.
DO $$
BEGIN
    IF to_regclass('public.epp_event_ids') IS NULL THEN
        CREATE VIEW public.epp_event_ids AS SELECT event_id, "timestamp" FROM public.events;
    END IF;
END $$;

-- The bounds of every day partition of public.events, parsed from the catalog (the literals
-- carry their UTC offset, so the session's TimeZone does not matter).
CREATE OR REPLACE FUNCTION public.epp_events_partitions()
RETURNS TABLE (name text, lo timestamptz, hi timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text, b[1]::timestamptz, b[2]::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$') b
    WHERE i.inhparent = 'public.events'::regclass
    ORDER BY 2
$$;

-- Creates the partition of UTC day `day` unless a partition already overlaps it. Returns the
-- number of rows moved into it from events_default (rows of that day that arrived while it had
-- no partition), or -1 when there was a partition already. Created as a plain table and then
-- attached: ATTACH PARTITION takes only SHARE UPDATE EXCLUSIVE on public.events (readers and
-- writers go on), where CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE. It does lock
-- events_default exclusively until COMMIT: that table is empty unless rows arrived for days
-- without a partition, so the lock is brief.
CREATE OR REPLACE FUNCTION public.epp_events_partition_create(day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    day_lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    day_hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    part text := 'events_p' || to_char(day, 'YYYYMMDD');
    moved bigint := 0;
BEGIN
    -- One creator at a time (several consumers' maintenance, epp-admin).
    PERFORM pg_advisory_xact_lock(x'6570707061727431'::bigint); -- "eppparti"
    IF EXISTS (SELECT 1 FROM public.epp_events_partitions() p WHERE p.lo < day_hi AND p.hi > day_lo) THEN
        RETURN -1;
    END IF;
    EXECUTE format('CREATE TABLE public.%I (LIKE public.events INCLUDING DEFAULTS'
                   ' INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)', part);
    -- The partition constraint as a CHECK first: ATTACH then trusts it instead of scanning.
    EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I CHECK ("timestamp" >= %L AND'
                   ' "timestamp" < %L)', part, part || '_range', day_lo, day_hi);
    IF to_regclass('public.events_default') IS NOT NULL THEN
        LOCK TABLE public.events_default IN ACCESS EXCLUSIVE MODE;
        EXECUTE format('WITH m AS (DELETE FROM public.events_default WHERE "timestamp" >= $1'
                       ' AND "timestamp" < $2 RETURNING *) INSERT INTO public.%I SELECT * FROM m',
                       part) USING day_lo, day_hi;
        GET DIAGNOSTICS moved = ROW_COUNT;
    END IF;
    EXECUTE format('ALTER TABLE public.events ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                   part, day_lo, day_hi);
    EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', part, part || '_range');
    RETURN moved;
END $$;

-- The UTC midnight on or before t.
CREATE OR REPLACE FUNCTION public.epp_utc_day(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT date_trunc('day', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

CREATE OR REPLACE FUNCTION public.epp_maintenance_plan(ahead integer, events_keep interval,
                                                       rollups_keep interval,
                                                       at timestamptz DEFAULT now())
RETURNS TABLE (action text, object text, lo timestamptz, hi timestamptz, est_rows bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    today date := (at AT TIME ZONE 'UTC')::date;
    raw_h timestamptz := public.epp_utc_day(at - events_keep);
    roll_h timestamptz := public.epp_utc_day(at - rollups_keep);
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'public.events'::regclass) <> 'p' THEN
        RETURN; -- not partitioned yet (sql/041): nothing to maintain
    END IF;
    -- Days to create: yesterday .. today + ahead when missing, and the days waiting in
    -- events_default (not those about to be purged).
    RETURN QUERY
        WITH want AS (
            SELECT d::date AS day, 0::bigint AS n
            FROM generate_series(today - 1, today + greatest(ahead, 0), interval '1 day') d
            UNION ALL
            SELECT ("timestamp" AT TIME ZONE 'UTC')::date, count(*)
            FROM public.events_default
            WHERE raw_h IS NULL OR "timestamp" >= raw_h
            GROUP BY 1),
        days AS (SELECT day, sum(n)::bigint AS n FROM want GROUP BY day)
        SELECT 'create'::text, 'events_p' || to_char(days.day, 'YYYYMMDD'),
               days.day::timestamp AT TIME ZONE 'UTC', (days.day + 1)::timestamp AT TIME ZONE 'UTC',
               days.n
        FROM days
        WHERE NOT EXISTS (SELECT 1 FROM public.epp_events_partitions() p
                          WHERE p.lo < (days.day + 1)::timestamp AT TIME ZONE 'UTC'
                            AND p.hi > days.day::timestamp AT TIME ZONE 'UTC')
        ORDER BY days.day;
    IF raw_h IS NOT NULL THEN
        RETURN QUERY
            SELECT 'drop'::text, p.name, p.lo, p.hi,
                   CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END
            FROM public.epp_events_partitions() p
            JOIN pg_class c ON c.oid = ('public.' || quote_ident(p.name))::regclass
            WHERE p.hi <= raw_h
            ORDER BY p.lo;
        RETURN QUERY
            SELECT 'purge-default'::text, 'events_default'::text, min("timestamp"), raw_h, count(*)
            FROM public.events_default WHERE "timestamp" < raw_h
            HAVING count(*) > 0;
    END IF;
    IF roll_h IS NOT NULL THEN
        RETURN QUERY
            SELECT 'purge-rollups'::text, 'epp_rollup_*, epp_user_bitmap_*'::text, min(b), roll_h, count(*)
            FROM (SELECT bucket FROM public.epp_rollup_minute WHERE bucket < roll_h
                  UNION ALL SELECT bucket FROM public.epp_rollup_hour WHERE bucket < roll_h
                  UNION ALL SELECT bucket FROM public.epp_rollup_day WHERE bucket < roll_h
                  UNION ALL SELECT bucket FROM public.epp_user_bitmap_minute WHERE bucket < roll_h
                  UNION ALL SELECT bucket FROM public.epp_user_bitmap_hour WHERE bucket < roll_h
                  UNION ALL SELECT bucket FROM public.epp_user_bitmap_day WHERE bucket < roll_h) r(b)
            HAVING count(*) > 0;
    END IF;
END $$;

-- Drops one day partition and its event_ids in one transaction, then moves the raw horizon to
-- its upper bound. The event_ids go first, while the partition is still attached: a consumer
-- that resends one of those events meanwhile either sees the id (and skips the row) or waits for
-- this COMMIT, after which the old row is gone and the resent one is stored once.
CREATE OR REPLACE FUNCTION public.epp_events_partition_drop(part text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    n bigint;
BEGIN
    SELECT * INTO p FROM public.epp_events_partitions() x WHERE x.name = part;
    IF NOT FOUND THEN
        RETURN -1; -- gone already (another maintenance run)
    END IF;
    -- The ids of exactly this partition's rows: those with a "timestamp" in its bounds (BRIN
    -- index of sql/041; events_default never holds rows of a range that has a partition).
    DELETE FROM public.epp_event_ids
    WHERE "timestamp" >= p.lo AND "timestamp" < p.hi;
    GET DIAGNOSTICS n = ROW_COUNT;
    EXECUTE format('DROP TABLE public.%I', part);
    UPDATE public.epp_retention
    SET raw_from = greatest(raw_from, p.hi), updated_at = now();
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION public.epp_maintenance_apply(action text, object text,
                                                        lo timestamptz, hi timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := 0;
    k bigint;
    t text;
BEGIN
    IF action = 'create' THEN
        RETURN public.epp_events_partition_create((lo AT TIME ZONE 'UTC')::date);
    ELSIF action = 'drop' THEN
        RETURN public.epp_events_partition_drop(object);
    ELSIF action = 'purge-default' THEN
        -- Straight from the partition (the statement triggers on public.events do not fire),
        -- so the event_ids are removed here.
        WITH d AS (DELETE FROM public.events_default e WHERE e."timestamp" < hi
                   RETURNING e.event_id, e."timestamp")
        DELETE FROM public.epp_event_ids i USING d
        WHERE i.event_id = d.event_id AND i."timestamp" = d."timestamp";
        GET DIAGNOSTICS n = ROW_COUNT;
        UPDATE public.epp_retention SET raw_from = greatest(raw_from, hi), updated_at = now();
        RETURN n;
    ELSIF action = 'purge-rollups' THEN
        -- Consumers cache the user ids they know stored in a bucket's bitmaps: deleting bitmap
        -- rows bumps the generation first (the protocol of sql/004), so that they forget them.
        UPDATE public.epp_rollup_generation SET generation = generation + 1;
        -- The by-name rollups first: their totals triggers (sql/011) bring the totals of those
        -- buckets to zero, and the total rows themselves go after them.
        FOREACH t IN ARRAY ARRAY['epp_user_bitmap_minute', 'epp_user_bitmap_hour',
                                 'epp_user_bitmap_day', 'epp_rollup_minute', 'epp_rollup_hour',
                                 'epp_rollup_day', 'epp_rollup_minute_total',
                                 'epp_rollup_hour_total', 'epp_rollup_day_total'] LOOP
            EXECUTE format('DELETE FROM public.%I WHERE bucket < $1', t) USING hi;
            GET DIAGNOSTICS k = ROW_COUNT;
            n := n + CASE WHEN t LIKE '%\_total' THEN 0 ELSE k END;
        END LOOP;
        UPDATE public.epp_retention
        SET rollups_from = greatest(rollups_from, hi), updated_at = now();
        RETURN n;
    END IF;
    RAISE EXCEPTION 'unknown maintenance action %', action USING ERRCODE = '22023';
END $$;

-- Analytics' guard: true when [lo, hi) needs nothing retention dropped ('raw': rows of
-- public.events, 'rollup': rollup buckets), else an error with SQLSTATE EPP01 that
-- epp-analytics answers with 409 retention_expired. Called once per range piece inside the
-- statement that reads it, so it sees the same snapshot as the read: a drop that commits
-- before the statement is seen, one after it waits for the statement's locks.
CREATE OR REPLACE FUNCTION public.epp_retention_guard(kind text, lo timestamptz, hi timestamptz)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    horizon timestamptz;
BEGIN
    IF lo >= hi THEN
        RETURN true;
    END IF;
    SELECT CASE WHEN kind = 'raw' THEN raw_from ELSE rollups_from END INTO horizon
    FROM public.epp_retention;
    IF horizon IS NOT NULL AND lo < horizon THEN
        RAISE EXCEPTION '%', format('this answer needs %s before %s, which retention has dropped',
                                    CASE WHEN kind = 'raw' THEN 'raw events' ELSE 'rollups' END,
                                    to_char(horizon AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
            USING ERRCODE = 'EPP01';
    END IF;
    RETURN true;
END $$;
