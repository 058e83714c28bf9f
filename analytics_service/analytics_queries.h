/* The analytics questions as prepared SQL over the rollups and public.events.
 *
 * Each function answers one docs/contract.md §7 question exactly for [from, to) (microseconds,
 * from < to): whole days, hours and minutes come from epp_rollup_day/hour/minute, the
 * sub-minute edges from public.events (see analytics_plan.h). Every statement is one round trip,
 * so each answer is taken from one snapshot of the database.
 *
 * Retention (docs/scaling.md): every range piece read from the rollups or from public.events is
 * guarded by public.epp_retention_guard (sql/040), so a question that needs rows or buckets that
 * retention dropped fails with SQLSTATE ANALYTICS_SQLSTATE_RETENTION (the caller answers 409)
 * instead of answering a smaller number. Whole days, hours and minutes keep being answered from
 * the rollups after their raw rows are gone.
 *
 * All SQL is parameterised; user input only ever travels as statement parameters.
 * Threads: any thread, with a connection it holds from the pool. */
#ifndef ANALYTICS_QUERIES_H
#define ANALYTICS_QUERIES_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "analytics_pool.h"
#include "analytics_ucache.h"

/* The SQLSTATE of a question that needs data retention dropped (sql/040). */
#define ANALYTICS_SQLSTATE_RETENTION "EPP01"

/* Builds the statement table once at start-up (before any other thread). 0 or EPP_ENOMEM. */
int analytics_queries_init(void);
/* The statement table for analytics_pool_opts_t (valid after analytics_queries_init). */
const analytics_stmt_t *analytics_queries_stmts(size_t *n);
void analytics_queries_free(void);

/* Number of events in [from, to), optionally only event_name and/or user_id (NULL: any). */
int analytics_q_count(analytics_conn_t *conn, int64_t from, int64_t to, const char *event_name,
                      const char *user_id, int64_t *count, epp_pg_error_t *err);

/* Zero-filled series of buckets of width (minute, hour or day in microseconds): counts[i] is
 * the number of events in [max(b_i, from), min(b_i + width, to)) where
 * b_i = floor(from, width) + i * width, for i < npoints (npoints from analytics_plan_series). */
int analytics_q_series(analytics_conn_t *conn, int64_t from, int64_t to, int64_t width,
                       const char *event_name, int64_t *counts, int64_t npoints,
                       epp_pg_error_t *err);

/* The limit most frequent event names in [from, to): *out rows (event_name text, n int8),
 * by count descending, ties by event_name in byte order. Caller PQclear()s. */
int analytics_q_top(analytics_conn_t *conn, int64_t from, int64_t to, int limit, PGresult **out,
                    epp_pg_error_t *err);

/* Exact number of distinct user_id in [from, to) into *total, from the per-bucket user bitmaps
 * (sql/031) of the range's whole days, hours and minutes and the users of its sub-minute edges,
 * unioned here with CRoaring; all read by one statement (one snapshot), the hour and day
 * bitmaps that cache (may be NULL) holds left out of its answer (analytics_ucache.h). With
 * period >= 0 (an analytics_period_t) also points[0..npoints): the distinct users of each day,
 * week or month from the one holding from, each counting only its part inside [from, to). A
 * stored bitmap that cannot be read is EPP_EINVAL (logged; never a wrong number). */
int analytics_q_active(analytics_conn_t *conn, analytics_ucache_t *cache, int64_t from, int64_t to,
                       int period, int64_t npoints, int64_t *total, int64_t *points,
                       epp_pg_error_t *err);

/* Result columns of analytics_q_user_events and analytics_q_event. */
enum {
    ANALYTICS_COL_EVENT_ID,
    ANALYTICS_COL_USER_ID,
    ANALYTICS_COL_EVENT_NAME,
    ANALYTICS_COL_METADATA, /* jsonb as text */
    ANALYTICS_COL_TS_US,    /* "timestamp" as epoch microseconds */
    ANALYTICS_COL_PROCESSED_US,
};

/* A user's events newest first ("timestamp" DESC, event_id DESC) strictly before the keyset
 * position (before_us, before_id); before_id NULL means every event before before_us;
 * before_us INT64_MAX means from the newest. At most limit rows. Caller PQclear()s. The rows
 * come from one statement (one snapshot), possibly after narrower ones that found fewer than
 * limit rows: each looks back a longer window, so that an active user's page reads only the
 * newest day partitions. */
int analytics_q_user_events(analytics_conn_t *conn, const char *user_id, int64_t before_us,
                            const char *before_id, int limit, PGresult **out, epp_pg_error_t *err);

/* The row of event_id (canonical UUID text): *out has 0 or 1 rows. Caller PQclear()s. */
int analytics_q_event(analytics_conn_t *conn, const char *event_id, PGresult **out,
                      epp_pg_error_t *err);

#endif
