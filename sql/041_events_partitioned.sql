-- 041: public.events partitioned by day, with event_id unique across all partitions.
--
-- Why and what it costs: docs/scaling.md ("Time partitions"). In short:
--  * public.events is PARTITION BY RANGE ("timestamp"), one partition per UTC day named
--    events_pYYYYMMDD ([day 00:00Z, next day 00:00Z)), plus events_default for rows no day
--    partition takes (a day not created yet, or one retention dropped). Dropping a day is a
--    DROP TABLE instead of a DELETE of a million rows, and the indexes a day writes into stay
--    small. Partitions are created ahead and dropped by age by the maintenance (sql/040,
--    run by epp-consumer and `epp-admin retention`).
--  * A unique index on a partitioned table must contain the partition key, so the primary key
--    becomes (event_id, "timestamp"). event_id alone stays unique through public.epp_event_ids
--    (event_id PRIMARY KEY, "timestamp"), kept by statement-level triggers on public.events in
--    the same transaction as every change: an insert of an event_id already stored -- with any
--    timestamp -- fails with unique_violation (23505), exactly as the old primary key did, so
--    every writer (the consumer's COPY, epp-admin restore, users' SQL) keeps the guarantee.
--    Cost: one more B-tree insert of (uuid, timestamptz) per row, and ~60 bytes per stored
--    event (heap tuple + index entry).
--  * Write through public.events: rows written into a partition directly bypass the triggers.
--
-- Converting an existing unpartitioned table (a database from before this migration): the rows
-- are copied into the new layout while the old table is locked in SHARE mode -- writers (the
-- consumer) wait, readers (analytics, Superset) go on reading the old table -- and the old table
-- is then swapped out under a brief ACCESS EXCLUSIVE lock. Views on public.events are
-- recreated, with their owners, privileges and comments, as are the table's own. Downtime
-- measured on 1M rows: docs/scaling.md ("Migrating an existing database").

-- Keeps public.epp_event_ids equal to the (event_id, "timestamp") pairs of public.events. One
-- statement per triggering statement (transition tables), never a call per row.
CREATE OR REPLACE FUNCTION public.epp_event_ids_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.epp_event_ids (event_id, "timestamp")
            SELECT event_id, "timestamp" FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM public.epp_event_ids i USING old_rows o
            WHERE i.event_id = o.event_id AND i."timestamp" = o."timestamp";
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM public.epp_event_ids i
            USING (SELECT event_id, "timestamp" FROM old_rows
                   EXCEPT SELECT event_id, "timestamp" FROM new_rows) o
            WHERE i.event_id = o.event_id AND i."timestamp" = o."timestamp";
        INSERT INTO public.epp_event_ids (event_id, "timestamp")
            SELECT event_id, "timestamp" FROM new_rows
            EXCEPT SELECT event_id, "timestamp" FROM old_rows;
    ELSE
        TRUNCATE public.epp_event_ids;
    END IF;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t0 timestamptz := clock_timestamp();
    old_rel regclass := 'public.events'::regclass;
    d date;
    v record;
    g record;
    rows bigint;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = old_rel) = 'p' THEN
        RETURN; -- converted already
    END IF;
    -- Writers wait from here to COMMIT; readers keep reading the old table until the swap.
    LOCK TABLE public.events IN SHARE MODE;

    CREATE TABLE public.epp_events_new (
        event_id     uuid        NOT NULL,
        user_id      text        NOT NULL,
        event_name   text        NOT NULL,
        metadata     jsonb       NOT NULL DEFAULT '{}',
        "timestamp"  timestamptz NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now()
    ) PARTITION BY RANGE ("timestamp");
    CREATE TABLE public.events_default PARTITION OF public.epp_events_new DEFAULT;
    -- A partition for every day that has rows, and for yesterday to a week ahead.
    FOR d IN SELECT ("timestamp" AT TIME ZONE 'UTC')::date FROM public.events
             UNION SELECT generate_series((now() AT TIME ZONE 'UTC')::date - 1,
                                          (now() AT TIME ZONE 'UTC')::date + 7, interval '1 day')::date
             ORDER BY 1 LOOP
        EXECUTE format('CREATE TABLE public.%I PARTITION OF public.epp_events_new'
                       ' FOR VALUES FROM (%L) TO (%L)', 'events_p' || to_char(d, 'YYYYMMDD'),
                       d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
    -- Rows first, indexes after: building an index once is several times faster than keeping
    -- it row by row.
    PERFORM set_config('maintenance_work_mem', '256MB', true);
    INSERT INTO public.epp_events_new (event_id, user_id, event_name, metadata, "timestamp",
                                       processed_at)
        SELECT event_id, user_id, event_name, metadata, "timestamp", processed_at
        FROM public.events;
    GET DIAGNOSTICS rows = ROW_COUNT;
    ALTER TABLE public.epp_events_new ADD CONSTRAINT epp_events_new_pkey
        PRIMARY KEY (event_id, "timestamp");
    CREATE INDEX epp_events_new_timestamp_idx ON public.epp_events_new ("timestamp");
    CREATE INDEX epp_events_new_user_timestamp_idx
        ON public.epp_events_new (user_id, "timestamp" DESC, event_id DESC);
    -- event_id's own uniqueness: a table of every stored (event_id, "timestamp"), which
    -- replaces the view sql/040 put in its place. The BRIN index on "timestamp" lets retention
    -- delete the ids of one day (sql/040) without scanning them all; rows arrive roughly in
    -- time order, so its block ranges stay narrow, and it costs next to nothing per insert (a
    -- B-tree on "timestamp" would cost as much as the key).
    CREATE TABLE public.epp_event_ids_new (
        event_id    uuid        NOT NULL,
        "timestamp" timestamptz NOT NULL
    );
    INSERT INTO public.epp_event_ids_new (event_id, "timestamp")
        SELECT event_id, "timestamp" FROM public.events;
    ALTER TABLE public.epp_event_ids_new ADD CONSTRAINT epp_event_ids_pkey PRIMARY KEY (event_id);
    CREATE INDEX epp_event_ids_timestamp_brin ON public.epp_event_ids_new
        USING brin ("timestamp") WITH (autosummarize = on);

    -- Views that read public.events (directly or through other views) are dropped and
    -- recreated from their definitions, which name public.events and so bind to the new table.
    CREATE TEMP TABLE epp_saved_views ON COMMIT DROP AS
        WITH RECURSIVE dep(oid) AS (
            SELECT DISTINCT r.ev_class FROM pg_depend pd JOIN pg_rewrite r ON r.oid = pd.objid
            WHERE pd.classid = 'pg_rewrite'::regclass AND pd.refobjid = old_rel
              AND r.ev_class <> old_rel
            UNION
            SELECT r.ev_class FROM dep JOIN pg_depend pd ON pd.refobjid = dep.oid
            JOIN pg_rewrite r ON r.oid = pd.objid
            WHERE pd.classid = 'pg_rewrite'::regclass AND r.ev_class <> dep.oid)
        SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS qname, c.relkind,
               pg_get_viewdef(c.oid) AS def, pg_get_userbyid(c.relowner) AS owner, c.relacl,
               obj_description(c.oid, 'pg_class') AS comment, c.reloptions
        FROM dep JOIN pg_class c ON c.oid = dep.oid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid IS DISTINCT FROM to_regclass('public.epp_event_ids');
    FOR v IN SELECT * FROM epp_saved_views ORDER BY oid DESC LOOP
        EXECUTE format('DROP %s IF EXISTS %s CASCADE',
                       CASE v.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, v.qname);
    END LOOP;

    -- CHECK constraints and further indexes someone added to the old table come along (a
    -- unique index cannot: on a partitioned table it would have to include "timestamp").
    CREATE TEMP TABLE epp_saved_extras ON COMMIT DROP AS
        SELECT format('ALTER TABLE public.events ADD CONSTRAINT %I %s', conname,
                      pg_get_constraintdef(oid)) AS ddl, NULL::text AS skipped
        FROM pg_constraint WHERE conrelid = old_rel AND contype = 'c'
        UNION ALL
        SELECT CASE WHEN NOT i.indisunique THEN pg_get_indexdef(i.indexrelid) END,
               CASE WHEN i.indisunique THEN pg_get_indexdef(i.indexrelid) END
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = old_rel
          AND c.relname NOT IN ('events_pkey', 'events_timestamp_idx', 'events_user_timestamp_idx');

    -- The swap: ACCESS EXCLUSIVE from here to COMMIT, a few milliseconds.
    ALTER TABLE public.events RENAME TO epp_events_unpartitioned;
    ALTER TABLE public.epp_events_new RENAME TO events;
    DROP VIEW IF EXISTS public.epp_event_ids;
    ALTER TABLE public.epp_event_ids_new RENAME TO epp_event_ids;
    -- The old table's owner, comments and privileges.
    EXECUTE format('ALTER TABLE public.events OWNER TO %I', pg_get_userbyid(
        (SELECT relowner FROM pg_class WHERE oid = old_rel)));
    EXECUTE format('COMMENT ON TABLE public.events IS %L', obj_description(old_rel, 'pg_class'));
    FOR v IN SELECT a.attname, col_description(old_rel, a.attnum) AS comment
             FROM pg_attribute a WHERE a.attrelid = old_rel AND a.attnum > 0
               AND NOT a.attisdropped AND col_description(old_rel, a.attnum) IS NOT NULL LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.events'::regclass
                   AND attname = v.attname) THEN
            EXECUTE format('COMMENT ON COLUMN public.events.%I IS %L', v.attname, v.comment);
        END IF;
    END LOOP;
    FOR v IN SELECT a.privilege_type, a.is_grantable,
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                         ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
             FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = old_rel LOOP
        EXECUTE format('GRANT %s ON public.events TO %s%s', v.privilege_type, v.grantee,
                       CASE WHEN v.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    DROP TABLE public.epp_events_unpartitioned;
    ALTER TABLE public.events RENAME CONSTRAINT epp_events_new_pkey TO events_pkey;
    ALTER INDEX public.epp_events_new_timestamp_idx RENAME TO events_timestamp_idx;
    ALTER INDEX public.epp_events_new_user_timestamp_idx RENAME TO events_user_timestamp_idx;
    FOR v IN SELECT * FROM epp_saved_extras LOOP
        IF v.ddl IS NOT NULL THEN
            EXECUTE v.ddl;
        ELSE
            RAISE WARNING 'not carried over to the partitioned public.events: %', v.skipped;
        END IF;
    END LOOP;

    FOR v IN SELECT * FROM epp_saved_views ORDER BY oid LOOP
        EXECUTE format('CREATE %s %s%s AS %s',
                       CASE v.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, v.qname,
                       CASE WHEN v.reloptions IS NULL THEN ''
                            ELSE ' WITH (' || array_to_string(v.reloptions, ', ') || ')' END,
                       rtrim(v.def, ';'));
        EXECUTE format('ALTER TABLE %s OWNER TO %I', v.qname, v.owner);
        IF v.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON %s %s IS %L',
                           CASE v.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                           v.qname, v.comment);
        END IF;
        FOR g IN SELECT * FROM aclexplode(v.relacl) LOOP
            EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, v.qname,
                           CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
    RAISE NOTICE 'public.events partitioned by day: % rows moved in % s', rows,
        round(extract(epoch FROM clock_timestamp() - t0)::numeric, 2);
END $$;

-- One trigger per kind of statement (a trigger with transition tables takes one event).
DO $$
DECLARE
    ev text;
BEGIN
    FOREACH ev IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON public.events', 'epp_event_ids_' || ev);
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON public.events %s FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION public.epp_event_ids_apply()', 'epp_event_ids_' || ev,
                       upper(ev), CASE ev
                           WHEN 'insert' THEN 'REFERENCING NEW TABLE AS new_rows'
                           WHEN 'update' THEN 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                           WHEN 'delete' THEN 'REFERENCING OLD TABLE AS old_rows'
                           ELSE '' END);
    END LOOP;
END $$;
