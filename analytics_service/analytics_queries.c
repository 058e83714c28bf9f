/* SQL for the analytics questions; see analytics_queries.h. The statement texts are composed once
 * at start-up from fixed fragments (never from request data) and prepared on every connection. */
#include "analytics_queries.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <roaring/roaring.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_log.h"
#include "epp_pgcopy.h"
#include "epp_time.h"
#include "epp_users.h"
#include "analytics_plan.h"
#include "analytics_ucache.h"

enum {
    ST_COUNT,
    ST_COUNT_EV,
    ST_COUNT_USER,
    ST_COUNT_USER_EV,
    ST_SERIES_MINUTE,
    ST_SERIES_MINUTE_EV,
    ST_SERIES_HOUR,
    ST_SERIES_HOUR_EV,
    ST_SERIES_DAY,
    ST_SERIES_DAY_EV,
    ST_TOP,
    ST_ACTIVE,
    ST_UIDS,
    ST_USER_EVENTS,
    ST_EVENT,
    ST_N
};

/* Parameters of one planned range: 7 spans, 14 timestamps. */
#define PLAN_PARAMS 14

static analytics_stmt_t stmts[ST_N];
static epp_buf_t sql_text[ST_N];

/* Appends " AND " the retention guard (sql/040) of the range piece [$p, $p+1): the statement
 * fails with SQLSTATE ANALYTICS_SQLSTATE_RETENTION instead of answering from a range whose raw
 * rows ("raw") or rollup buckets ("rollup") retention has dropped. Evaluated once per piece,
 * inside the statement that reads it, so with the same snapshot. */
static void guard(epp_buf_t *b, const char *kind, int p)
{
    epp_buf_printf(b, " AND public.epp_retention_guard('%s', $%d::timestamptz, $%d::timestamptz)",
                   kind, p, p + 1);
}

/* The tables of spans 0-4 of a plan (day, hours, minutes: analytics_plan.h): per event name,
 * per bucket in all (sql/010), and the user bitmaps (sql/031). */
static const char *const span_rollup[5] = {"public.epp_rollup_day", "public.epp_rollup_hour",
                                           "public.epp_rollup_hour", "public.epp_rollup_minute",
                                           "public.epp_rollup_minute"};
static const char *const span_totals[5] = {
    "public.epp_rollup_day_total", "public.epp_rollup_hour_total", "public.epp_rollup_hour_total",
    "public.epp_rollup_minute_total", "public.epp_rollup_minute_total"};
/* Spans 0-2 only: the minute level's rows hold an hour each and have their own SQL. */
static const char *const span_bitmaps[3] = {
    "public.epp_user_bitmap_day", "public.epp_user_bitmap_hour", "public.epp_user_bitmap_hour"};

/* Appends "SELECT what" over span i (0..6) of a planned range whose span bounds are $p ..
 * $p+13 (see plan_values), with filter after the span's condition, and its retention guard.
 * Spans 0-4 are whole buckets of the rollup table tables[i]; spans 5 and 6 are the raw
 * sub-minute edges, read from public.events (analytics_plan.h). */
static void span_select(epp_buf_t *b, const char *what, const char *const *tables, int i,
                        const char *filter, int p)
{
    int lo = p + 2 * i;
    if (i < 5)
        epp_buf_printf(b,
                       "SELECT %s FROM %s WHERE bucket >= $%d::timestamptz AND "
                       "bucket < $%d::timestamptz%s",
                       what, tables[i], lo, lo + 1, filter);
    else
        epp_buf_printf(b,
                       "SELECT %s FROM public.events WHERE \"timestamp\" >= $%d::timestamptz "
                       "AND \"timestamp\" < $%d::timestamptz%s",
                       what, lo, lo + 1, filter);
    guard(b, i < 5 ? "rollup" : "raw", lo);
}

/* Appends the exact count of events in a planned range whose 14 span bounds are parameters
 * $p .. $p+13 (see plan_values), optionally filtered by event_name = $ev (ev 0: no filter). */
static void count_expr(epp_buf_t *b, int p, int ev)
{
    char evf[48] = "";
    if (ev)
        snprintf(evf, sizeof(evf), " AND event_name = $%d::text", ev);
    /* Without a name filter, the per-bucket totals (sql/010) answer with one row per bucket. */
    const char *const *tables = ev ? span_rollup : span_totals;
    epp_buf_append_str(b, "(");
    for (int i = 0; i < 7; i++) {
        epp_buf_append_str(b, "(");
        span_select(b, i < 5 ? "coalesce(sum(n), 0)" : "count(*)", tables, i, evf, p);
        epp_buf_append_str(b, i < 6 ? ") + " : ")");
    }
    epp_buf_append_str(b, ")::int8");
}

static void series_sql(epp_buf_t *b, const char *table, int ev)
{
    char evf[48] = "";
    if (ev)
        snprintf(evf, sizeof(evf), " AND event_name = $%d::text", 3 + 2 * (1 + PLAN_PARAMS));
    /* A totals table (no name filter) holds one row per bucket: no GROUP BY, whose sort was
     * most of a 30-day hourly series. Buckets are whole seconds, so the double of date_part is
     * exact (and cheaper than extract's numeric). */
    epp_buf_printf(b,
                   "SELECT (date_part('epoch', bucket) * 1000000)::int8, n FROM ("
                   "SELECT bucket, %s AS n FROM %s WHERE bucket >= $1::timestamptz "
                   "AND bucket < $2::timestamptz%s",
                   ev ? "sum(n)::int8" : "n::int8", table, evf);
    guard(b, "rollup", 1);
    if (ev)
        epp_buf_append_str(b, " GROUP BY bucket");
    for (int e = 0; e < 2; e++) {
        int p = 3 + e * (1 + PLAN_PARAMS);
        epp_buf_printf(b, " UNION ALL SELECT $%d::timestamptz, ", p);
        count_expr(b, p + 1, ev ? 3 + 2 * (1 + PLAN_PARAMS) : 0);
    }
    epp_buf_append_str(b, ") t");
}

/* The generation of the tables whose rows analytics_ucache keeps (analytics_ucache.h): the
 * server's start and the tables' files (a TRUNCATE, VACUUM FULL or a re-created table gives
 * them new ones). */
#define GENERATION_SQL                                                                             \
    "concat_ws(' ', pg_postmaster_start_time(), "                                                  \
    "pg_relation_filenode('public.epp_user_bitmap_minute'), "                                      \
    "pg_relation_filenode('public.epp_user_bitmap_hour'), "                                        \
    "pg_relation_filenode('public.epp_user_bitmap_day'), "                                         \
    "pg_relation_filenode('public.epp_user_ids'))"

/* Result columns of ST_ACTIVE (binary). kind: */
enum { AK_MINUTE, AK_HOUR, AK_DAY, AK_USER, AK_GENERATION };
enum { AC_TAG, AC_KIND, AC_ID, AC_N, AC_BITS, AC_USER };

/* Distinct users of a planned range (parameters as for count_expr, then $15, $16 and $17: the
 * ids of the hour, day and minute bitmaps the cache pinned, whose bits are left out): the rows of
 * the per-bucket user bitmaps (sql/031) of its whole days, hours and minutes with their bucket, and
 * the users of its sub-minute edges with their uid (NULL for a user the dictionary does not
 * know: counted apart) tagged with the UTC day they lie in, so that a series of days, weeks or
 * months groups them; and one row with the tables' generation (analytics_ucache.h).
 * Columns: tag timestamptz, kind int4 (AK_*), id int8 (bitmap id, or the edge user's uid),
 * n int8 (the bitmap's cardinality), bits bytea, user_id text (or the generation). */
static void active_sql(epp_buf_t *b)
{
    static const char *const kind[5] = {"2", "1", "1", "0", "0"};
    static const char *const skip[5] = {"$16", "$15", "$15", NULL, NULL};
    epp_buf_append_str(b, "WITH raw AS (SELECT DISTINCT date_trunc('day', \"timestamp\", 'UTC') "
                          "AS tag, user_id FROM (");
    for (int i = 5; i < 7; i++) {
        span_select(b, "\"timestamp\", user_id", NULL, i, "", 1);
        epp_buf_append_str(b, i == 5 ? " UNION ALL " : ") e) ");
    }
    for (int i = 0; i < 5; i++) {
        char what[200];
        if (i >= 3) {
            /* The minute level's rows hold an hour each (sql/032): the hours that overlap the
             * span, bits left out for the ids in $17 (cached); the service keeps the span's
             * minutes of them (minutes_wanted). */
            int lo = 1 + 2 * i;
            epp_buf_printf(b,
                           "SELECT bucket, 0, id, n, "
                           "CASE WHEN id = ANY($17::int8[]) THEN NULL ELSE bits END, NULL::text "
                           "FROM public.epp_user_bitmap_minute "
                           "WHERE bucket > $%d::timestamptz - interval '1 hour' AND "
                           "bucket < $%d::timestamptz AND $%d::timestamptz < $%d::timestamptz",
                           lo, lo + 1, lo, lo + 1);
            guard(b, "rollup", lo);
            epp_buf_append_str(b, " UNION ALL ");
            continue;
        }
        if (skip[i])
            snprintf(what, sizeof what,
                     "bucket, %s, id, n, CASE WHEN id = ANY(%s::int8[]) THEN NULL ELSE bits END, "
                     "NULL::text",
                     kind[i], skip[i]);
        else
            snprintf(what, sizeof what, "bucket, %s, id, n, bits, NULL::text", kind[i]);
        span_select(b, what, span_bitmaps, i, "", 1);
        epp_buf_append_str(b, " UNION ALL ");
    }
    /* The edge users by name: the service maps them to uids from its copy of the dictionary,
     * asking ST_UIDS for the ones it lacks. (Probing the dictionary here, once per edge user,
     * was ~0.4 ms of a 1-day answer's ~1 ms statement at 10M events; joining it hashed all of
     * it, ~20 ms.) */
    epp_buf_append_str(b, "SELECT tag, 3, NULL, NULL, NULL, user_id FROM raw");
    /* The generation: the server's start and the cached tables' files (a TRUNCATE, VACUUM FULL
     * or a re-created table gives them new ones). */
    epp_buf_printf(b, " UNION ALL SELECT NULL, 4, NULL, NULL, NULL, %s", GENERATION_SQL);
}

static void set_stmt(int i, const char *name, int nparams, const char *label)
{
    stmts[i].name = name;
    stmts[i].sql = sql_text[i].data;
    stmts[i].nparams = nparams;
    stmts[i].label = label;
}

int analytics_queries_init(void)
{
    epp_buf_t *b;

    b = &sql_text[ST_COUNT];
    epp_buf_append_str(b, "SELECT ");
    count_expr(b, 1, 0);
    set_stmt(ST_COUNT, "count", PLAN_PARAMS, "count");

    b = &sql_text[ST_COUNT_EV];
    epp_buf_append_str(b, "SELECT ");
    count_expr(b, 1, PLAN_PARAMS + 1);
    set_stmt(ST_COUNT_EV, "count_ev", PLAN_PARAMS + 1, "count");

    /* A user's events are found through events_user_timestamp_idx (user_id, "timestamp"). */
    epp_buf_append_str(&sql_text[ST_COUNT_USER],
                       "SELECT count(*) FROM public.events WHERE user_id = $1::text "
                       "AND \"timestamp\" >= $2::timestamptz AND \"timestamp\" < $3::timestamptz");
    guard(&sql_text[ST_COUNT_USER], "raw", 2);
    set_stmt(ST_COUNT_USER, "count_user", 3, "count_user");
    epp_buf_append_str(&sql_text[ST_COUNT_USER_EV],
                       "SELECT count(*) FROM public.events WHERE user_id = $1::text "
                       "AND \"timestamp\" >= $2::timestamptz AND \"timestamp\" < $3::timestamptz "
                       "AND event_name = $4::text");
    guard(&sql_text[ST_COUNT_USER_EV], "raw", 2);
    set_stmt(ST_COUNT_USER_EV, "count_user_ev", 4, "count_user");

    static const char *const tables[] = {"public.epp_rollup_minute", "public.epp_rollup_hour",
                                         "public.epp_rollup_day"};
    static const char *const total_tables[] = {"public.epp_rollup_minute_total",
                                               "public.epp_rollup_hour_total",
                                               "public.epp_rollup_day_total"};
    static const char *const names[] = {"series_minute",  "series_minute_ev", "series_hour",
                                        "series_hour_ev", "series_day",       "series_day_ev"};
    for (int w = 0; w < 3; w++)
        for (int ev = 0; ev < 2; ev++) {
            int i = ST_SERIES_MINUTE + 2 * w + ev;
            series_sql(&sql_text[i], ev ? tables[w] : total_tables[w], ev);
            set_stmt(i, names[2 * w + ev], 2 + 2 * (1 + PLAN_PARAMS) + ev, "timeseries");
        }

    b = &sql_text[ST_TOP];
    epp_buf_append_str(b, "SELECT event_name, sum(n)::int8 AS n FROM (");
    for (int i = 0; i < 7; i++) {
        span_select(b, i < 5 ? "event_name, n" : "event_name, count(*)", span_rollup, i, "", 1);
        epp_buf_append_str(b, i < 5    ? " UNION ALL "
                              : i == 5 ? " GROUP BY event_name UNION ALL "
                                       : " GROUP BY event_name");
    }
    epp_buf_printf(b,
                   ") t GROUP BY event_name HAVING sum(n) > 0 "
                   "ORDER BY sum(n) DESC, event_name COLLATE \"C\" ASC LIMIT $%d::int8",
                   PLAN_PARAMS + 1);
    set_stmt(ST_TOP, "top", PLAN_PARAMS + 1, "top");

    active_sql(&sql_text[ST_ACTIVE]);
    set_stmt(ST_ACTIVE, "active", PLAN_PARAMS + 3, "active_users");
    stmts[ST_ACTIVE].binary = 1;
    /* The uids of the edge users the cache lacks ($1: a text[] literal), and the generation
     * (user_id NULL) read in the same snapshot. */
    epp_buf_printf(&sql_text[ST_UIDS],
                   "SELECT user_id, uid FROM public.epp_user_ids WHERE user_id = ANY($1::text[]) "
                   "UNION ALL SELECT %s, NULL",
                   GENERATION_SQL);
    set_stmt(ST_UIDS, "uids", 1, "active_users");

#define ROW_COLUMNS                                                                                \
    "event_id::text, user_id, event_name, metadata::text, "                                        \
    "(extract(epoch FROM \"timestamp\") * 1000000)::int8, "                                        \
    "(extract(epoch FROM processed_at) * 1000000)::int8"
    /* Keyset pagination in the order of events_user_timestamp_idx. ORDER BY names the table's
     * columns (e.event_id, a uuid), not the output column of the same name (its text). The plain
     * bounds on "timestamp" ($5 <= timestamp <= $2) repeat what the keyset says in a form that
     * prunes the day partitions (sql/041); see analytics_q_user_events for $5. */
    epp_buf_append_str(&sql_text[ST_USER_EVENTS],
                       "SELECT " ROW_COLUMNS " FROM public.events e WHERE user_id = $1::text "
                       "AND \"timestamp\" >= $5::timestamptz AND \"timestamp\" <= $2::timestamptz "
                       "AND (\"timestamp\", event_id) < ($2::timestamptz, $3::uuid) "
                       "ORDER BY e.\"timestamp\" DESC, e.event_id DESC LIMIT $4::int8");
    set_stmt(ST_USER_EVENTS, "user_events", 5, "user_events");
    /* The timestamp from epp_event_ids (sql/041) prunes the day partitions to one at run time:
     * event_id alone would probe the key of every partition. */
    epp_buf_append_str(&sql_text[ST_EVENT],
                       "SELECT " ROW_COLUMNS " FROM public.events WHERE event_id = $1::uuid "
                       "AND \"timestamp\" = (SELECT i.\"timestamp\" FROM public.epp_event_ids i "
                       "WHERE i.event_id = $1::uuid)");
    set_stmt(ST_EVENT, "event", 1, "event");
#undef ROW_COLUMNS

    for (int i = 0; i < ST_N; i++)
        if (!sql_text[i].data) {
            analytics_queries_free();
            return EPP_ENOMEM;
        }
    return 0;
}

const analytics_stmt_t *analytics_queries_stmts(size_t *n)
{
    *n = ST_N;
    return stmts;
}

void analytics_queries_free(void)
{
    for (int i = 0; i < ST_N; i++)
        epp_buf_free(&sql_text[i]);
    memset(stmts, 0, sizeof(stmts));
}

/* Text parameters for timestamps. */
typedef char ts_text_t[EPP_TIME_BUFSZ];

static const char *ts_param(int64_t us, ts_text_t buf)
{
    epp_time_format(us, buf);
    return buf;
}

/* Fills values[0..13] with the span bounds of p in the order count_expr expects. */
static void plan_values(const analytics_plan_t *p, ts_text_t *bufs, const char **values)
{
    const analytics_span_t *spans[7] = {&p->day,       &p->hour[0], &p->hour[1], &p->minute[0],
                                        &p->minute[1], &p->raw[0],  &p->raw[1]};
    for (size_t i = 0; i < 7; i++) {
        values[2 * i] = ts_param(spans[i]->lo, bufs[2 * i]);
        values[2 * i + 1] = ts_param(spans[i]->hi, bufs[2 * i + 1]);
    }
}

static int64_t get_int(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static int single_int(analytics_conn_t *conn, int stmt, const char *const *values, int64_t *out,
                      epp_pg_error_t *err)
{
    PGresult *res = NULL;
    int rc = analytics_conn_exec(conn, (size_t)stmt, values, &res, err);
    if (rc < 0)
        return rc;
    *out = PQntuples(res) > 0 ? get_int(res, 0, 0) : 0;
    PQclear(res);
    return 0;
}

int analytics_q_count(analytics_conn_t *conn, int64_t from, int64_t to, const char *event_name,
                      const char *user_id, int64_t *count, epp_pg_error_t *err)
{
    ts_text_t bufs[PLAN_PARAMS];
    const char *values[PLAN_PARAMS + 1];
    if (user_id) {
        values[0] = user_id;
        values[1] = ts_param(from, bufs[0]);
        values[2] = ts_param(to, bufs[1]);
        values[3] = event_name;
        return single_int(conn, event_name ? ST_COUNT_USER_EV : ST_COUNT_USER, values, count, err);
    }
    analytics_plan_t plan;
    analytics_plan_range(from, to, &plan);
    plan_values(&plan, bufs, values);
    values[PLAN_PARAMS] = event_name;
    return single_int(conn, event_name ? ST_COUNT_EV : ST_COUNT, values, count, err);
}

int analytics_q_series(analytics_conn_t *conn, int64_t from, int64_t to, int64_t width,
                       const char *event_name, int64_t *counts, int64_t npoints,
                       epp_pg_error_t *err)
{
    int stmt;
    if (width == ANALYTICS_US_MINUTE)
        stmt = ST_SERIES_MINUTE;
    else if (width == ANALYTICS_US_HOUR)
        stmt = ST_SERIES_HOUR;
    else if (width == ANALYTICS_US_DAY)
        stmt = ST_SERIES_DAY;
    else
        return EPP_EINVAL;
    if (event_name)
        stmt++;

    analytics_span_t inner;
    analytics_edge_t edges[2];
    int nedges;
    analytics_plan_series(from, to, width, &inner, edges, &nedges);
    int64_t first = analytics_floor(from, width);

    enum { N = 2 + 2 * (1 + PLAN_PARAMS) + 1 };
    ts_text_t bufs[N];
    const char *values[N];
    values[0] = ts_param(inner.lo, bufs[0]);
    values[1] = ts_param(inner.hi, bufs[1]);
    for (int e = 0; e < 2; e++) {
        int p = 2 + e * (1 + PLAN_PARAMS);
        analytics_plan_t plan;
        if (e < nedges) {
            analytics_plan_range(edges[e].span.lo, edges[e].span.hi, &plan);
            values[p] = ts_param(edges[e].bucket, bufs[p]);
        } else {
            /* An unused slot counts an empty range: it adds 0 to the first point. */
            analytics_plan_range(from, from + 1, &plan);
            plan.raw[0].hi = plan.raw[0].lo;
            values[p] = ts_param(first, bufs[p]);
        }
        plan_values(&plan, bufs + p + 1, values + p + 1);
    }
    values[N - 1] = event_name;

    PGresult *res = NULL;
    int rc = analytics_conn_exec(conn, (size_t)stmt, values, &res, err);
    if (rc < 0)
        return rc;
    memset(counts, 0, (size_t)npoints * sizeof(*counts));
    for (int r = 0; r < PQntuples(res); r++) {
        int64_t bucket = get_int(res, r, 0), n = get_int(res, r, 1);
        int64_t i = (bucket - first) / width;
        if (bucket >= first && i < npoints)
            counts[i] += n;
    }
    PQclear(res);
    return 0;
}

int analytics_q_top(analytics_conn_t *conn, int64_t from, int64_t to, int limit, PGresult **out,
                    epp_pg_error_t *err)
{
    ts_text_t bufs[PLAN_PARAMS];
    const char *values[PLAN_PARAMS + 1];
    char lim[24];
    analytics_plan_t plan;
    analytics_plan_range(from, to, &plan);
    plan_values(&plan, bufs, values);
    snprintf(lim, sizeof(lim), "%d", limit);
    values[PLAN_PARAMS] = lim;
    return analytics_conn_exec(conn, ST_TOP, values, out, err);
}

/* A user of a raw edge that the dictionary does not know (its uid cannot be in any bitmap):
 * counted by name, once per point and once in the total. */
typedef struct {
    int64_t point;
    const char *name;
    int len;
} unknown_user_t;

/* Orders user names bytewise, a shorter name before its extensions (0: the same name). */
static int cmp_name(const char *a, int alen, const char *b, int blen)
{
    int c = memcmp(a, b, (size_t)(alen < blen ? alen : blen));
    return c ? c : (alen > blen) - (alen < blen);
}

static int cmp_unknown(const void *pa, const void *pb)
{
    const unknown_user_t *a = pa, *b = pb;
    if (a->point != b->point)
        return a->point < b->point ? -1 : 1;
    return cmp_name(a->name, a->len, b->name, b->len);
}

/* Adds the distinct unknown users to points[] and *total. */
static void count_unknown(unknown_user_t *u, size_t n, int64_t *points, int64_t *total)
{
    qsort(u, n, sizeof *u, cmp_unknown);
    for (size_t i = 0; i < n; i++)
        if (points != NULL && (i == 0 || u[i].point != u[i - 1].point ||
                               cmp_name(u[i].name, u[i].len, u[i - 1].name, u[i - 1].len) != 0))
            points[u[i].point]++;
    /* The total: distinct names over all points. */
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = cmp_name(u[i].name, u[i].len, u[j].name, u[j].len) == 0;
        *total += !seen;
    }
}

static int64_t be64_at(const PGresult *res, int row, int col)
{
    return (int64_t)epp_pgcopy_get_be64((const unsigned char *)PQgetvalue(res, row, col));
}

static int kind_at(const PGresult *res, int row)
{
    if (PQgetisnull(res, row, AC_KIND) || PQgetlength(res, row, AC_KIND) != 4)
        return -1;
    return (int)epp_pgcopy_get_be32((const unsigned char *)PQgetvalue(res, row, AC_KIND));
}

/* The users of an answer's sub-minute edges, by name, and the answer's generation. */
typedef struct {
    analytics_uc_user_t *u;
    int64_t *point;
    size_t n;
    const char *gen;
} edge_users_t;

typedef struct {
    const char *name;
    int len;
    int64_t uid;
} uid_row_t;

static int cmp_uid_row(const void *pa, const void *pb)
{
    const uid_row_t *a = pa, *b = pb;
    return cmp_name(a->name, a->len, b->name, b->len);
}

/* Appends name as an element of a Postgres array literal: quoted, '"' and '\' escaped. */
static int array_elem(epp_buf_t *b, const char *name, int len)
{
    int rc = epp_buf_append_str(b, b->len > 1 ? ",\"" : "\"");
    for (int i = 0; i < len && rc == 0; i++) {
        if (name[i] == '"' || name[i] == '\\')
            rc = epp_buf_append_char(b, '\\');
        if (rc == 0)
            rc = epp_buf_append_char(b, name[i]);
    }
    return rc == 0 ? epp_buf_append_char(b, '"') : rc;
}

/* Looks up the uids of the edge users the cache lacks (ST_UIDS) and hands them to the cache.
 * EPP_EAGAIN when the dictionary's generation is not the answer's. */
static int fetch_uids(analytics_conn_t *conn, analytics_ucache_t *cache,
                      const analytics_uc_req_t *r, edge_users_t *e, epp_pg_error_t *err)
{
    epp_buf_t arr = {0};
    int rc = epp_buf_append_char(&arr, '{');
    for (size_t i = 0; i < e->n && rc == 0; i++)
        if (e->u[i].uid < 0)
            rc = array_elem(&arr, e->u[i].name, e->u[i].len);
    if (rc == 0)
        rc = epp_buf_append_char(&arr, '}');
    PGresult *res = NULL;
    if (rc == 0) {
        const char *values[1] = {arr.data};
        rc = analytics_conn_exec(conn, ST_UIDS, values, &res, err);
    } else {
        rc = EPP_ENOMEM;
    }
    epp_buf_free(&arr);
    if (rc < 0)
        return rc;
    int rows = PQntuples(res);
    uid_row_t *found = calloc((size_t)rows + 1, sizeof *found);
    size_t nfound = 0;
    const char *gen = NULL;
    for (int i = 0; found != NULL && i < rows; i++) {
        if (PQgetisnull(res, i, 1))
            gen = PQgetvalue(res, i, 0);
        else
            found[nfound++] = (uid_row_t){PQgetvalue(res, i, 0), PQgetlength(res, i, 0),
                                          strtoll(PQgetvalue(res, i, 1), NULL, 10)};
    }
    if (found == NULL) {
        rc = EPP_ENOMEM;
    } else if (gen == NULL || strcmp(gen, e->gen) != 0) {
        rc = EPP_EAGAIN;
    } else {
        qsort(found, nfound, sizeof *found, cmp_uid_row);
        for (size_t i = 0; i < e->n; i++) {
            if (e->u[i].uid >= 0)
                continue;
            uid_row_t key = {e->u[i].name, e->u[i].len, 0};
            const uid_row_t *f = bsearch(&key, found, nfound, sizeof *found, cmp_uid_row);
            if (f != NULL)
                e->u[i].uid = f->uid;
        }
        analytics_ucache_put_uids(cache, r, e->u, e->n);
    }
    free(found);
    PQclear(res);
    return rc;
}

/* The users of one point of an answer: a stored bitmap borrowed while it is the only one (a day
 * of a DAU series: counted without a copy), or the point's own union once a second one comes. A
 * borrowed bitmap is pinned in the cache or handed to it by this request: alive until its
 * release, which comes after the count. */
typedef struct {
    roaring_bitmap_t *own;
    const roaring_bitmap_t *ref;
} point_acc_t;

/* The point's own union (made from its borrowed bitmap, if any); NULL when out of memory. */
static roaring_bitmap_t *point_own(point_acc_t *p)
{
    if (p->own == NULL)
        p->own = p->ref ? roaring_bitmap_copy(p->ref) : roaring_bitmap_create();
    return p->own;
}

/* Adds b; borrow: b outlives the count (else it is OR-ed into the point's own union). */
static int point_add(point_acc_t *p, const roaring_bitmap_t *b, int borrow)
{
    if (borrow && p->own == NULL && p->ref == NULL) {
        p->ref = b;
        return 0;
    }
    if (point_own(p) == NULL)
        return EPP_ENOMEM;
    roaring_bitmap_lazy_or_inplace(p->own, b, true);
    return 0;
}

static void points_free(point_acc_t *acc, size_t n)
{
    for (size_t i = 0; acc != NULL && i < n; i++) {
        epp_users_free(acc[i].own);
        acc[i] = (point_acc_t){NULL, NULL};
    }
}

/* The distinct users of each point into points[] (NULL: no series) and of all of them, with the
 * unknown edge users, into *total. */
static int active_count(point_acc_t *acc, size_t nacc, unknown_user_t *unknown, size_t nunknown,
                        int64_t *points, int64_t *total)
{
    const roaring_bitmap_t *only = NULL;
    size_t used = 0;
    for (size_t i = 0; i < nacc; i++) {
        if (acc[i].own == NULL && acc[i].ref == NULL)
            continue;
        if (acc[i].own != NULL)
            roaring_bitmap_repair_after_lazy(acc[i].own);
        only = acc[i].own ? acc[i].own : acc[i].ref;
        used++;
        if (points != NULL)
            points[i] = (int64_t)roaring_bitmap_get_cardinality(only);
    }
    *total = 0;
    if (used == 1) {
        *total = (int64_t)roaring_bitmap_get_cardinality(only);
    } else if (used > 1) {
        roaring_bitmap_t *all = roaring_bitmap_create();
        if (all == NULL)
            return EPP_ENOMEM;
        for (size_t i = 0; i < nacc; i++)
            if (acc[i].own != NULL || acc[i].ref != NULL)
                roaring_bitmap_lazy_or_inplace(all, acc[i].own ? acc[i].own : acc[i].ref, true);
        roaring_bitmap_repair_after_lazy(all);
        *total = (int64_t)roaring_bitmap_get_cardinality(all);
        roaring_bitmap_free(all);
    }
    count_unknown(unknown, nunknown, points, total);
    return 0;
}

/* Adds the edge users to their points by uid, from the cache or the dictionary; those the
 * dictionary does not know go to unknown[] (counted by name). */
static int resolve_edges(analytics_conn_t *conn, analytics_ucache_t *cache,
                         const analytics_uc_req_t *r, edge_users_t *e, point_acc_t *acc,
                         unknown_user_t *unknown, size_t *nunknown, epp_pg_error_t *err)
{
    int rc = analytics_ucache_uids(cache, r, e->u, e->n);
    size_t missing = 0;
    for (size_t i = 0; i < e->n; i++)
        missing += e->u[i].uid < 0;
    if (rc == 0 && missing > 0)
        rc = fetch_uids(conn, cache, r, e, err);
    for (size_t i = 0; i < e->n && rc == 0; i++) {
        if (e->u[i].uid >= 0) {
            roaring_bitmap_t *own = point_own(&acc[e->point[i]]);
            if (own == NULL)
                return EPP_ENOMEM;
            roaring_bitmap_add(own, (uint32_t)e->u[i].uid);
        } else
            unknown[(*nunknown)++] = (unknown_user_t){e->point[i], e->u[i].name, e->u[i].len};
    }
    return rc;
}

/* The minutes of the hour starting at hour that lie in the plan's whole-minute spans. */
static uint64_t minutes_wanted(const analytics_plan_t *plan, int64_t hour)
{
    uint64_t want = 0;
    for (int k = 0; k < EPP_USERS_MINUTES; k++) {
        int64_t t = hour + k * ANALYTICS_US_MINUTE;
        for (int e = 0; e < 2; e++)
            if (t >= plan->minute[e].lo && t < plan->minute[e].hi)
                want |= (uint64_t)1 << k;
    }
    return want;
}

/* The span's minutes of a stored minute row (an hour: sql/032) added to point p. */
static int minute_row_add(point_acc_t *p, const analytics_plan_t *plan, int64_t hour,
                          const char *data, size_t len)
{
    roaring_bitmap_t *minutes[EPP_USERS_MINUTES];
    if (epp_users_unpack_minutes(data, len, minutes_wanted(plan, hour), minutes) != 0)
        return EPP_EINVAL;
    int rc = 0;
    for (int k = 0; k < EPP_USERS_MINUTES && rc == 0; k++)
        if (minutes[k] != NULL)
            rc = point_add(p, minutes[k], 0);
    epp_users_free_minutes(minutes);
    return rc;
}

/* The bitmap rows of one ST_ACTIVE answer added to their points, and its edge users collected. Rows
 * whose bits were left out come from r's pins; a decoded hour or day row goes to the cache.
 * EPP_EAGAIN: the answer cannot be used with r's pins (the generation changed, or a row the cache
 * should hold is missing): run it again without them. */
static int active_rows(const PGresult *res, analytics_ucache_t *cache, analytics_uc_req_t *r,
                       const analytics_plan_t *plan, int period, int64_t first, point_acc_t *acc,
                       size_t nacc, edge_users_t *edges)
{
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++)
        if (kind_at(res, i) == AK_GENERATION) {
            edges->gen = PQgetvalue(res, i, AC_USER);
            if (!analytics_ucache_check(cache, r, edges->gen))
                return EPP_EAGAIN;
        }
    if (edges->gen == NULL)
        return EPP_EINVAL;
    for (int i = 0; i < rows; i++) {
        int kind = kind_at(res, i);
        if (kind == AK_GENERATION)
            continue;
        if (kind < AK_MINUTE || kind > AK_USER || PQgetisnull(res, i, AC_TAG))
            return EPP_EINVAL;
        int64_t ts = be64_at(res, i, AC_TAG) + EPP_PGCOPY_PG_EPOCH_US;
        int64_t tag = epp_time_floor(ts, ANALYTICS_US_DAY);
        int64_t point = period >= 0 ? analytics_period_index(period, first, tag) : 0;
        if (point < 0 || point >= (int64_t)nacc)
            return EPP_EINVAL; /* cannot happen: every piece lies inside [from, to) */
        if (kind == AK_USER) {
            size_t k = edges->n++;
            edges->u[k] = (analytics_uc_user_t){PQgetvalue(res, i, AC_USER),
                                                PQgetlength(res, i, AC_USER), -1};
            edges->point[k] = point;
            continue;
        }
        analytics_uc_level_t level = kind == AK_DAY    ? ANALYTICS_UC_DAY
                                     : kind == AK_HOUR ? ANALYTICS_UC_HOUR
                                                       : ANALYTICS_UC_MINUTE;
        int64_t id = be64_at(res, i, AC_ID), n = be64_at(res, i, AC_N);
        if (PQgetisnull(res, i, AC_BITS)) {
            size_t len = 0;
            const void *cached = level == ANALYTICS_UC_MINUTE
                                     ? (const void *)analytics_ucache_get_packed(r, id, n, &len)
                                     : (const void *)analytics_ucache_get(r, level, id, n);
            if (cached == NULL) {
                /* Left out for an id r pinned, yet not that row: only a hand-restarted
                 * identity does this. */
                EPP_LOGKV(EPP_LOG_WARN, "user bitmap cache emptied", "reason",
                          "a stored row does not match the cached one of its id");
                analytics_ucache_reset(cache);
                return EPP_EAGAIN;
            }
            int rc = level == ANALYTICS_UC_MINUTE
                         ? minute_row_add(&acc[point], plan, ts, cached, len)
                         : point_add(&acc[point], cached, 1);
            if (rc != 0)
                return rc;
            continue;
        }
        if (level == ANALYTICS_UC_MINUTE) {
            /* Kept packed: the next answer decodes the minutes it needs, which may be others. */
            const char *data = PQgetvalue(res, i, AC_BITS);
            size_t len = (size_t)PQgetlength(res, i, AC_BITS);
            int rc = minute_row_add(&acc[point], plan, ts, data, len);
            if (rc == 0)
                rc = analytics_ucache_add_packed(cache, r, id, ts, n, data, len);
            if (rc != 0)
                return rc;
            continue;
        }
        roaring_bitmap_t *bits = epp_users_deserialize(PQgetvalue(res, i, AC_BITS),
                                                       (size_t)PQgetlength(res, i, AC_BITS));
        if (bits == NULL)
            return EPP_EINVAL;
        /* An hour or day bitmap goes to the cache, which keeps it (or frees it) only on
         * release -- without a cache, at once. */
        int rc = point_add(&acc[point], bits, cache != NULL);
        if (analytics_ucache_add(cache, r, level, id, ts, n, bits) != 0)
            rc = EPP_ENOMEM;
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Pins the minute rows (an hour each: sql/032) that overlap the plan's whole-minute spans, the
 * hours the statement selects for them. The two spans' hours are pinned once where they meet. */
static int pin_minutes(analytics_ucache_t *cache, analytics_uc_req_t *r,
                       const analytics_plan_t *plan)
{
    int64_t lo[2], hi[2];
    int n = 0;
    for (int e = 0; e < 2; e++) {
        if (plan->minute[e].lo >= plan->minute[e].hi)
            continue;
        int64_t a = epp_time_floor(plan->minute[e].lo, ANALYTICS_US_HOUR);
        if (n > 0 && a <= hi[n - 1]) {
            hi[n - 1] = plan->minute[e].hi > hi[n - 1] ? plan->minute[e].hi : hi[n - 1];
            continue;
        }
        lo[n] = a;
        hi[n++] = plan->minute[e].hi;
    }
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++)
        rc = analytics_ucache_pin(cache, r, ANALYTICS_UC_MINUTE, lo[k], hi[k]);
    return rc;
}

/* Runs ST_ACTIVE for plan with the bitmaps of the range the cache holds pinned in r. */
static int active_exec(analytics_conn_t *conn, analytics_ucache_t *cache, analytics_uc_req_t *r,
                       const analytics_plan_t *plan, PGresult **res, epp_pg_error_t *err)
{
    static const analytics_uc_level_t skip_level[3] = {ANALYTICS_UC_HOUR, ANALYTICS_UC_DAY,
                                                       ANALYTICS_UC_MINUTE};
    ts_text_t bufs[PLAN_PARAMS];
    const char *values[PLAN_PARAMS + 3];
    epp_buf_t ids[3] = {{0}};
    plan_values(plan, bufs, values);
    int rc = analytics_ucache_pin(cache, r, ANALYTICS_UC_DAY, plan->day.lo, plan->day.hi);
    for (int k = 0; k < 2 && rc == 0; k++)
        rc = analytics_ucache_pin(cache, r, ANALYTICS_UC_HOUR, plan->hour[k].lo, plan->hour[k].hi);
    if (rc == 0)
        rc = pin_minutes(cache, r, plan);
    for (int k = 0; k < 3 && rc == 0; k++) {
        rc = analytics_ucache_ids(r, skip_level[k], &ids[k]);
        values[PLAN_PARAMS + k] = ids[k].data;
    }
    if (rc == 0)
        rc = analytics_conn_exec(conn, ST_ACTIVE, values, res, err);
    else
        snprintf(err->message, sizeof err->message, "out of memory");
    for (int k = 0; k < 3; k++)
        epp_buf_free(&ids[k]);
    return rc;
}

int analytics_q_active(analytics_conn_t *conn, analytics_ucache_t *cache, int64_t from, int64_t to,
                       int period, int64_t npoints, int64_t *total, int64_t *points,
                       epp_pg_error_t *err)
{
    analytics_plan_t plan;
    analytics_plan_range(from, to, &plan);
    /* One accumulator per point (a single one without a series): rows are OR-ed in lazily as
     * they are read, so only one stored minute bitmap is decoded at a time. */
    size_t nacc = period >= 0 ? (size_t)npoints : 1;
    int64_t first = period >= 0 ? analytics_period_floor(period, from) : 0;
    point_acc_t *acc = calloc(nacc, sizeof *acc);
    unknown_user_t *unknown = NULL;
    size_t nunknown = 0;
    PGresult *res = NULL;
    int rc = acc != NULL ? 0 : EPP_ENOMEM;
    /* A second attempt runs without the pins of the first (the cache was emptied); a third,
     * should the generation move again meanwhile, without the cache at all. */
    for (int attempt = 0; attempt < 3 && rc == 0; attempt++) {
        analytics_ucache_t *c = attempt < 2 ? cache : NULL;
        analytics_uc_req_t r = {0};
        rc = active_exec(conn, c, &r, &plan, &res, err);
        if (rc < 0) {
            analytics_ucache_release(c, &r, 0);
            break;
        }
        size_t rows = (size_t)PQntuples(res) + 1;
        unknown = calloc(rows, sizeof *unknown);
        nunknown = 0;
        edge_users_t edges = {calloc(rows, sizeof *edges.u), calloc(rows, sizeof *edges.point), 0,
                              NULL};
        if (unknown == NULL || edges.u == NULL || edges.point == NULL)
            rc = EPP_ENOMEM;
        if (rc == 0)
            rc = active_rows(res, c, &r, &plan, period, first, acc, nacc, &edges);
        if (rc == 0)
            rc = resolve_edges(conn, c, &r, &edges, acc, unknown, &nunknown, err);
        /* Counted before the release: the points borrow bitmaps r holds. */
        if (rc == 0)
            rc = active_count(acc, nacc, unknown, nunknown, period >= 0 ? points : NULL, total);
        free(edges.u);
        free(edges.point);
        points_free(acc, nacc);
        analytics_ucache_release(c, &r, rc == 0);
        if (rc != EPP_EAGAIN)
            break;
        /* Start over: nothing of this answer is kept. */
        free(unknown);
        unknown = NULL;
        PQclear(res);
        res = NULL;
        rc = 0;
    }
    if (rc == EPP_EAGAIN)
        rc = EPP_EINVAL; /* cannot happen: the last attempt pins nothing */
    if (rc == EPP_EINVAL) {
        snprintf(err->message, sizeof err->message, "a stored user bitmap cannot be read");
        EPP_LOGKV(EPP_LOG_ERROR, "unreadable user bitmap", "query", "active_users");
    } else if (rc == EPP_ENOMEM) {
        snprintf(err->message, sizeof err->message, "out of memory");
    }
    points_free(acc, nacc);
    free(acc);
    free(unknown);
    PQclear(res);
    return rc;
}

/* How far back each attempt of a user's listing looks, from the cursor (or now); 0: all the
 * way. The newest `limit` events before the cursor are the same in any window that holds at
 * least `limit` of them, and a window reads only its own day partitions -- where one statement
 * over all of them would read the newest rows of every day partition of the user's index
 * (bench/README.md, bench_partitions, "user newest 50"). An
 * active user's page is found in the first window; one with no event in 32 days costs the last,
 * full, statement more. */
static const int64_t listing_windows_us[] = {ANALYTICS_US_DAY, 8 * ANALYTICS_US_DAY,
                                             32 * ANALYTICS_US_DAY, 0};

int analytics_q_user_events(analytics_conn_t *conn, const char *user_id, int64_t before_us,
                            const char *before_id, int limit, PGresult **out, epp_pg_error_t *err)
{
    ts_text_t ts, lo;
    char lim[24];
    const char *values[5];
    int64_t ref = before_us;
    values[0] = user_id;
    if (before_us == INT64_MAX) {
        values[1] = "infinity";
        values[2] = "ffffffff-ffff-ffff-ffff-ffffffffffff";
        ref = epp_time_now_us();
    } else {
        values[1] = ts_param(before_us, ts);
        /* Timestamp only: every event of an earlier instant, none at before_us itself. */
        values[2] = before_id ? before_id : "00000000-0000-0000-0000-000000000000";
    }
    snprintf(lim, sizeof(lim), "%d", limit);
    values[3] = lim;
    size_t n = sizeof listing_windows_us / sizeof listing_windows_us[0];
    for (size_t i = 0; i < n; i++) {
        int64_t w = listing_windows_us[i];
        values[4] = w == 0 ? "-infinity" : ts_param(ref - w, lo);
        int rc = analytics_conn_exec(conn, ST_USER_EVENTS, values, out, err);
        if (rc < 0 || w == 0 || PQntuples(*out) >= limit)
            return rc;
        PQclear(*out);
        *out = NULL;
    }
    return 0;
}

int analytics_q_event(analytics_conn_t *conn, const char *event_id, PGresult **out,
                      epp_pg_error_t *err)
{
    const char *values[1] = {event_id};
    return analytics_conn_exec(conn, ST_EVENT, values, out, err);
}
