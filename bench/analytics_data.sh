# shellcheck shell=bash
# The 10-million-event data set of the analytics benchmarks (bench_analytics.sh,
# bench_superset.sh), in a Postgres cluster cached between runs. Sourced, never run (bench/run.sh
# runs only bench/bench_*.sh).
#
# Data: N events (BENCH_ANALYTICS_EVENTS, default 10,000,000) spread uniformly over the 30 days
# before 2026-11-01T00:00:00Z in time order, 20 event names (skewed), 100,000 users, generated
# with generate_series straight into public.events, then the rollups computed with INSERT ...
# SELECT ... GROUP BY (what the consumer maintains; the user dictionary and bitmaps by the
# backfills of sql/030 and sql/031, the minute level then converted to a row per hour by
# sql/032). Loading takes minutes, so the cluster is
# cached in BENCH_ANALYTICS_CACHE (default $BUILD/bench-cache/analytics) and reused while it
# holds the same N; the migrations from sql/010 on are applied at every start (a data set cached
# before sql/032 gets its minute level converted by it then).
#
# The caller sets REPO (the checkout, also the current directory) and BUILD, and calls
# analytics_data_stop from its EXIT trap. analytics_data_start sets N, CACHE, PG_PORT, ADMIN (the
# postgres database) and DB (bench_analytics), both as the superuser.

analytics_data_start() {
N=${BENCH_ANALYTICS_EVENTS:-10000000}
CACHE=${BENCH_ANALYTICS_CACHE:-$BUILD/bench-cache/analytics}
mkdir -p "$CACHE"
PG_PORT=$(python3 scripts/lib/free_port.py)
EPP_PG_FAST=1 bash scripts/pg.sh start "$CACHE/pg" "$PG_PORT" >/dev/null
ADMIN="postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres"
DB="postgresql://postgres:postgres@127.0.0.1:$PG_PORT/bench_analytics"

DATA_VERSION="$N events, layout v3"
if [ "$(cat "$CACHE/loaded" 2>/dev/null || true)" != "$DATA_VERSION" ]; then
    echo "loading $N events over 30 days (cached in $CACHE for later runs)..."
    t0=$(date +%s)
    psql -X -q -v ON_ERROR_STOP=1 "$ADMIN" -c "DROP DATABASE IF EXISTS bench_analytics" \
        -c "CREATE DATABASE bench_analytics"
    # The schema before the rollup totals (sql/010 and later are applied after the load, below:
    # their backfill is faster than their triggers row by row).
    for f in sql/[0-9]*_*.sql; do
        v=$(basename "$f" | cut -d_ -f1)
        if [ $((10#$v)) -lt 10 ]; then PGOPTIONS="-c client_min_messages=warning" psql -X -q -1 -v ON_ERROR_STOP=1 "$DB" -f "$f"; fi
    done
    # Indexes are built after the load: several times faster than maintaining them row by row.
    psql -X -q -v ON_ERROR_STOP=1 "$DB" <<SQL
SET TIME ZONE 'UTC';
SET max_parallel_maintenance_workers = 2;
SET maintenance_work_mem = '1GB';
ALTER TABLE public.events DROP CONSTRAINT events_pkey;
DROP INDEX public.events_timestamp_idx;
DROP INDEX public.events_user_timestamp_idx;
INSERT INTO public.events (event_id, user_id, event_name, "timestamp")
SELECT gen_random_uuid(), 'user-' || (random() * 99999)::int,
       (ARRAY['page_view','click','search','add_to_cart','purchase','signup','login','logout',
              'share','comment','like','follow','scroll','video_play','video_pause','download',
              'upload','settings','error','checkout'])[1 + floor(20 * power(random(), 2))::int],
       -- In time order with random gaps, as events arrive: the table's physical order follows
       -- "timestamp", as it does when the consumer writes them.
       timestamptz '2026-10-02T00:00:00Z' + (i - 1 + random()) * (interval '30 days' / $N)
FROM generate_series(1, $N) AS i;
ALTER TABLE public.events ADD PRIMARY KEY (event_id);
CREATE INDEX events_timestamp_idx ON public.events ("timestamp");
CREATE INDEX events_user_timestamp_idx ON public.events (user_id, "timestamp" DESC, event_id DESC);
-- In bucket order, as the consumer writes them (time order), so the tables are laid out the
-- way they are in production.
INSERT INTO public.epp_rollup_minute SELECT date_trunc('minute', "timestamp"), event_name, count(*)
    FROM public.events GROUP BY 1, 2 ORDER BY 1, 2;
INSERT INTO public.epp_rollup_hour SELECT date_trunc('hour', bucket), event_name, sum(n)
    FROM public.epp_rollup_minute GROUP BY 1, 2 ORDER BY 1, 2;
INSERT INTO public.epp_rollup_day SELECT date_trunc('day', bucket), event_name, sum(n)
    FROM public.epp_rollup_hour GROUP BY 1, 2 ORDER BY 1, 2;
-- The user dictionary and the per-bucket user bitmaps are built from these events by the
-- backfills of sql/030 and sql/031, applied below (and the minute level packed by hour by
-- sql/032).
VACUUM ANALYZE;
SQL
    echo "$DATA_VERSION" > "$CACHE/loaded"
    echo "loaded in $(( $(date +%s) - t0 )) s"
else
    echo "reusing the cached data set of $N events ($CACHE)"
fi
# Whether the minute bitmaps are already rows per hour (sql/032's constraint is there).
packed=$(psql -X -tA -v ON_ERROR_STOP=1 "$DB" -c "SELECT count(*) FROM pg_constraint WHERE conname = 'epp_user_bitmap_minute_whole_hours'")
# Later migrations (idempotent; on a cached data set they bring the schema up to date).
for f in sql/[0-9]*_*.sql; do
    v=$(basename "$f" | cut -d_ -f1)
    if [ $((10#$v)) -ge 10 ]; then PGOPTIONS="-c client_min_messages=warning" psql -X -q -1 -v ON_ERROR_STOP=1 "$DB" -f "$f"; fi
done
# sql/032 just converted the minute level (rows per minute, from sql/031's backfill of a fresh
# load or from a cache older than 032) by DELETE and INSERT: the dead per-minute rows stay in the
# table's pages, which VACUUM does not give back (the new rows sit after them), and would count in
# the bitmaps' size on disk that bench_analytics prints. Rewritten once.
if [ "$packed" = 0 ]; then
    psql -X -q -v ON_ERROR_STOP=1 "$DB" -c "VACUUM FULL public.epp_user_bitmap_minute"
fi
psql -X -q "$DB" -c "VACUUM ANALYZE public.epp_rollup_minute_total, public.epp_rollup_hour_total, public.epp_rollup_day_total, public.epp_user_ids, public.epp_user_bitmap_minute, public.epp_user_bitmap_hour, public.epp_user_bitmap_day"
}

analytics_data_stop() {
    if [ -n "${CACHE:-}" ]; then
        bash "$REPO/scripts/pg.sh" stop "$CACHE/pg" >/dev/null 2>&1 || true
    fi
}
