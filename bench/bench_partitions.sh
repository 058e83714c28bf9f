#!/usr/bin/env bash
# bench_partitions: daily against monthly partitions of public.events, with the unpartitioned
# table as the baseline, at 10M and 100M rows (issue 18: the choice of sql/041 rests on these).
#
# For each size N (BENCH_PARTITION_ROWS, default "10000000 100000000") and each layout
# (BENCH_PARTITION_LAYOUTS, default "none daily monthly"), a fresh database gets N events over
# the 90 days before 2026-11-01 (BENCH_PARTITION_DAYS), generated in SQL with generate_series in
# time order (as bench_analytics.sh does), 5,000 users, 20 skewed event names, then its indexes:
#   none     public.events as sql/001 made it: PRIMARY KEY (event_id), two indexes;
#   daily    sql/041's layout: one partition per UTC day, PRIMARY KEY (event_id, "timestamp"),
#            the same two indexes per partition, epp_event_ids (event_id PRIMARY KEY, BRIN on
#            "timestamp") and its insert trigger;
#   monthly  the same with one partition per calendar month.
# Then, per layout:
#   insert   the consumer's write: 40 COPY batches of 5,000 rows of the last day, one transaction
#            each: rows/s, and the backend's CPU µs per row (steadier on a shared machine); the
#            second 20 batches without the epp_event_ids trigger for the partitioned layouts
#            (what event_id's uniqueness across partitions costs);
#   queries  1001 executions of prepared statements with generic plans, in the forms and with the
#            session settings of epp-analytics' pool: the median wall time and the backend's CPU per
#            execution, in ms, of a 30 s raw edge count, a user's count over 7 days, a user's
#            newest 50 events, one event by id, distinct users of a 30 s edge; and the planning
#            time of the raw edge count (a custom plan);
#   drop     removing the oldest day (retention): DROP of its partition with its ids (daily),
#            DELETE of its rows and ids (monthly: a month can only be dropped whole; none);
#   size     table + indexes (+ epp_event_ids), GB; epp_event_ids alone (ids GB).
# Ratios are printed against `none` measured in the same run. Each database is dropped after its
# layout is measured (100M rows need ~40 GB while they exist).
#
# Env: EPP_BUILD_DIR, BENCH_PARTITION_ROWS, BENCH_PARTITION_LAYOUTS, BENCH_PARTITION_DAYS,
# BENCH_PARTITION_CACHE (the cluster's directory, default $EPP_BUILD_DIR/bench-cache/partitions).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=$(cd "${EPP_BUILD_DIR:-build}" && pwd)
SIZES=${BENCH_PARTITION_ROWS:-10000000 100000000}
LAYOUTS=${BENCH_PARTITION_LAYOUTS:-none daily monthly}
DAYS=${BENCH_PARTITION_DAYS:-90}
CACHE=${BENCH_PARTITION_CACHE:-$BUILD/bench-cache/partitions}
PY=/usr/bin/python3

cleanup() {
    bash "$REPO/scripts/pg.sh" stop "$CACHE/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT

mkdir -p "$CACHE"
PG_PORT=$(python3 scripts/lib/free_port.py)
EPP_PG_FAST=1 bash scripts/pg.sh start "$CACHE/pg" "$PG_PORT" >/dev/null
echo "load: $(uptime | sed 's/.*load average/load average/')"

$PY - "postgresql://postgres:postgres@127.0.0.1:$PG_PORT" "$SIZES" "$LAYOUTS" "$DAYS" "$REPO" <<'PYEOF'
import datetime, io, os, random, statistics, sys, time, uuid
import psycopg2
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "lib"))
import epp_testlib as t

base, sizes, layouts, days, repo = sys.argv[1], [int(x) for x in sys.argv[2].split()], \
    sys.argv[3].split(), int(sys.argv[4]), sys.argv[5]
END = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
RUNS = 1001  # executions of each query (the median skips the first 5: caches warming)
START = END - datetime.timedelta(days=days)
NAMES = ("ARRAY['page_view','click','search','add_to_cart','purchase','signup','login','logout',"
         "'share','comment','like','follow','scroll','video_play','video_pause','download',"
         "'upload','settings','error','checkout']")
COLUMNS = ('event_id uuid NOT NULL, user_id text NOT NULL, event_name text NOT NULL, '
           "metadata jsonb NOT NULL DEFAULT '{}', \"timestamp\" timestamptz NOT NULL, "
           'processed_at timestamptz NOT NULL DEFAULT now()')


def connect(db):
    c = psycopg2.connect(base + "/" + db)
    c.autocommit = True
    return c


def ddl_sql(layout):
    """The table, its partitions, no index yet."""
    if layout == "none":
        return ["CREATE TABLE public.events (%s)" % COLUMNS]
    out = ["CREATE TABLE public.events (%s) PARTITION BY RANGE (\"timestamp\")" % COLUMNS,
           "CREATE TABLE public.events_default PARTITION OF public.events DEFAULT"]
    d = START
    while d < END + datetime.timedelta(days=8):
        if layout == "daily":
            nxt = d + datetime.timedelta(days=1)
        else:
            nxt = (d.replace(day=1) + datetime.timedelta(days=32)).replace(day=1)
        out.append("CREATE TABLE public.events_p%s PARTITION OF public.events FOR VALUES "
                   "FROM ('%s') TO ('%s')" % (d.strftime("%Y%m%d"), d.isoformat(), nxt.isoformat()))
        d = nxt
    return out


def load(db, layout, n):
    c = connect(db)
    cur = c.cursor()
    for s in ddl_sql(layout):
        cur.execute(s)
    cur.execute("SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 2")
    t0 = time.time()
    cur.execute("""
        INSERT INTO public.events (event_id, user_id, event_name, metadata, "timestamp")
        SELECT gen_random_uuid(), 'user-' || (random() * 4999)::int,
               (%s)[1 + floor(20 * power(random(), 2))::int], '{"path":"/a/b","n":1}',
               %%s::timestamptz + (i - 1 + random()) * (%%s::interval / %%s)
        FROM generate_series(1, %%s) AS i""" % NAMES,
                (START, "%d days" % days, n, n))
    if layout == "none":
        cur.execute("ALTER TABLE public.events ADD PRIMARY KEY (event_id)")
    else:
        cur.execute('ALTER TABLE public.events ADD PRIMARY KEY (event_id, "timestamp")')
    cur.execute('CREATE INDEX events_timestamp_idx ON public.events ("timestamp")')
    cur.execute('CREATE INDEX events_user_timestamp_idx ON public.events '
                '(user_id, "timestamp" DESC, event_id DESC)')
    if layout != "none":
        cur.execute('CREATE TABLE public.epp_event_ids (event_id uuid NOT NULL, '
                    '"timestamp" timestamptz NOT NULL)')
        cur.execute('INSERT INTO public.epp_event_ids SELECT event_id, "timestamp" '
                    'FROM public.events')
        cur.execute("ALTER TABLE public.epp_event_ids ADD PRIMARY KEY (event_id)")
        cur.execute('CREATE INDEX ON public.epp_event_ids USING brin ("timestamp") '
                    "WITH (autosummarize = on)")
        # The trigger of sql/041, as it is there.
        sql = open(os.path.join(repo, "sql", "041_events_partitioned.sql")).read()
        fn = sql[sql.index("CREATE OR REPLACE FUNCTION public.epp_event_ids_apply()"):]
        fn = fn[:fn.index("END $$;") + len("END $$;")]
        cur.execute(fn)
        cur.execute("CREATE TRIGGER epp_event_ids_insert AFTER INSERT ON public.events "
                    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                    "EXECUTE FUNCTION public.epp_event_ids_apply()")
    cur.execute("VACUUM ANALYZE")
    secs = time.time() - t0
    c.close()
    return secs


def copy_batches(rnd, k, n=5000):
    """k COPY text buffers of n rows each, in the last day of the data, in time order."""
    out = []
    day0 = END - datetime.timedelta(days=1)
    step = 86400.0 / (k * n)
    i = 0
    for _ in range(k):
        b = io.StringIO()
        for _ in range(n):
            ts = day0 + datetime.timedelta(seconds=i * step)
            b.write("%s\tuser-%d\tclick\t{\"path\":\"/a/b\",\"n\":1}\t%s\n" %
                    (uuid.UUID(int=rnd.getrandbits(128), version=4), rnd.randrange(5000),
                     ts.isoformat()))
            i += 1
        out.append(b.getvalue())
    return out


def backend_cpu(cur):
    """CPU seconds the connection's backend process has used (this machine is shared: CPU time
    moves much less with the load than wall time does)."""
    cur.execute("SELECT pg_backend_pid()")
    return t.cpu_seconds([cur.fetchone()[0]])


def insert_rate(db, batches, with_ids=True):
    """(rows/s, backend CPU µs per row) of COPY batches, one transaction each."""
    c = connect(db)
    c.autocommit = False
    cur = c.cursor()
    if not with_ids:
        cur.execute("ALTER TABLE public.events DISABLE TRIGGER epp_event_ids_insert")
        c.commit()
    cpu0 = backend_cpu(cur)
    c.commit()
    t0 = time.perf_counter()
    for b in batches:
        cur.copy_expert('COPY public.events (event_id, user_id, event_name, metadata, '
                        '"timestamp") FROM STDIN', io.StringIO(b))
        c.commit()
    secs = time.perf_counter() - t0
    cpu = backend_cpu(cur) - cpu0
    c.commit()
    if not with_ids:
        cur.execute("ALTER TABLE public.events ENABLE TRIGGER epp_event_ids_insert")
        c.commit()
    c.close()
    rows = sum(b.count("\n") for b in batches)
    return rows / secs, cpu * 1e6 / rows


def query_times(db, layout, rnd, n):
    c = connect(db)
    cur = c.cursor()
    cur.execute("SET TIME ZONE 'UTC'")
    # The session settings of epp-analytics' pool (analytics_service/README.md).
    cur.execute("SET plan_cache_mode = force_generic_plan; SET jit = off;"
                " SET max_parallel_workers_per_gather = 0")
    cur.execute("SELECT event_id FROM public.events TABLESAMPLE SYSTEM (%s) LIMIT 50",
                (max(0.01, min(100.0, 2e6 / n)),))
    ids = [r[0] for r in cur.fetchall()]
    lookup = ("SELECT * FROM public.events WHERE event_id = $1" if layout == "none" else
              'SELECT * FROM public.events WHERE event_id = $1 AND "timestamp" = '
              '(SELECT i."timestamp" FROM public.epp_event_ids i WHERE i.event_id = $1)')
    # The statements in the forms epp-analytics sends (analytics_queries.c): both bounds of a
    # range are parameters, so partitions are pruned at executor start-up in a generic plan.
    qs = {
        "edge count 30s": ('SELECT count(*) FROM public.events WHERE "timestamp" >= $1 '
                           'AND "timestamp" < $2', "ts,ts30"),
        "user count 7d": ('SELECT count(*) FROM public.events WHERE user_id = $3 AND '
                          '"timestamp" >= $1 AND "timestamp" < $2', "ts,ts7d,user"),
        "user newest 50": ('SELECT event_id FROM public.events WHERE user_id = $1 '
                           'ORDER BY "timestamp" DESC, event_id DESC LIMIT 50', "user"),
        "event by id": (lookup, "id"),
        "edge users 30s": ('SELECT count(DISTINCT user_id) FROM public.events WHERE '
                           '"timestamp" >= $1 AND "timestamp" < $2', "ts,ts30"),
    }
    out = {}
    types = {"ts": "timestamptz", "ts30": "timestamptz", "ts7d": "timestamptz", "user": "text",
             "id": "uuid"}
    for name, (sql, kinds) in qs.items():
        kinds = kinds.split(",")
        cur.execute("PREPARE q (%s) AS %s" % (", ".join(types[k] for k in kinds), sql))
        times = []
        cpu0 = backend_cpu(cur)
        for i in range(RUNS):
            lo = START + datetime.timedelta(seconds=rnd.uniform(86400, (days - 8) * 86400))
            args = []
            for k in kinds:
                args.append({"ts": lo, "ts30": lo + datetime.timedelta(seconds=30),
                             "ts7d": lo + datetime.timedelta(days=7),
                             "user": "user-%d" % rnd.randrange(5000),
                             "id": ids[i % len(ids)]}[k])
            t0 = time.perf_counter()
            cur.execute("EXECUTE q (%s)" % ", ".join(["%s"] * len(args)), args)
            cur.fetchall()
            times.append((time.perf_counter() - t0) * 1000)
        cpu = backend_cpu(cur) - cpu0
        cur.execute("DEALLOCATE q")
        out[name + " ms"] = statistics.median(times[5:])
        out[name + " cpu ms"] = cpu * 1000 / RUNS
    cur.execute('EXPLAIN (ANALYZE, SUMMARY) SELECT count(*) FROM public.events WHERE '
                '"timestamp" >= %s AND "timestamp" < %s',
                (END - datetime.timedelta(days=2), END - datetime.timedelta(days=2, seconds=-30)))
    plan = [r[0] for r in cur.fetchall()]
    out["planning ms (custom)"] = float([l for l in plan if l.startswith("Planning Time")][0].split()[2])
    c.close()
    return out


def drop_oldest_day(db, layout):
    c = connect(db)
    cur = c.cursor()
    lo, hi = START, START + datetime.timedelta(days=1)
    t0 = time.perf_counter()
    if layout == "daily":
        cur.execute("BEGIN")
        cur.execute('DELETE FROM public.epp_event_ids WHERE "timestamp" >= %s AND "timestamp" < %s',
                    (lo, hi))
        cur.execute("DROP TABLE public.events_p%s" % lo.strftime("%Y%m%d"))
        cur.execute("COMMIT")
    else:
        cur.execute("BEGIN")
        cur.execute('DELETE FROM public.events WHERE "timestamp" >= %s AND "timestamp" < %s',
                    (lo, hi))
        if layout == "monthly":
            cur.execute('DELETE FROM public.epp_event_ids WHERE "timestamp" >= %s '
                        'AND "timestamp" < %s', (lo, hi))
        cur.execute("COMMIT")
    secs = time.perf_counter() - t0
    c.close()
    return secs


def size_gb(db):
    """(all tables with their indexes, epp_event_ids with its indexes), GB."""
    c = connect(db)
    cur = c.cursor()
    cur.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'")
    v = float(cur.fetchone()[0]) / 1e9
    cur.execute("SELECT coalesce(pg_total_relation_size(to_regclass('public.epp_event_ids')), 0)")
    ids = float(cur.fetchone()[0]) / 1e9
    c.close()
    return v, ids


admin = connect("postgres")
for n in sizes:
    rnd = random.Random(n)
    batches = copy_batches(rnd, 40)
    results = {}
    for layout in layouts:
        db = "bench_parts_%s" % layout
        a = admin.cursor()
        a.execute("DROP DATABASE IF EXISTS %s" % db)
        a.execute("CREATE DATABASE %s" % db)
        r = {"load s": load(db, layout, n)}
        r["size GB"], r["ids GB"] = size_gb(db)
        r["insert rows/s"], r["insert cpu us/row"] = insert_rate(db, batches[:20])
        r["insert rows/s, no ids"], r["insert cpu us/row, no ids"] = insert_rate(
            db, batches[20:], with_ids=layout == "none")
        r.update(query_times(db, layout, random.Random(7), n))
        r["drop oldest day s"] = drop_oldest_day(db, layout)
        results[layout] = r
        a.execute("DROP DATABASE %s" % db)
        print("%s rows, %s: %s" % (format(n, ","), layout,
                                    ", ".join("%s %.3g" % kv for kv in r.items())), flush=True)
    keys = list(next(iter(results.values())).keys())
    print("\n%s rows over %d days (%s)" % (format(n, ","), days, ", ".join(layouts)))
    print("%-24s" % "" + "".join("%14s" % l for l in layouts) +
          ("".join("%14s" % ("%s/none" % l) for l in layouts if l != "none")
           if "none" in results else ""))
    for k in keys:
        row = "%-24s" % k + "".join("%14.3g" % results[l][k] for l in layouts)
        if "none" in results and results["none"][k]:
            row += "".join("%13.2fx" % (results[l][k] / results["none"][k])
                           for l in layouts if l != "none")
        print(row)
    print(flush=True)
PYEOF
