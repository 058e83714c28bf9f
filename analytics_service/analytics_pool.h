/* A fixed-size pool of Postgres connections with prepared statements.
 *
 * Sized to the HTTP worker threads (each worker holds at most one connection while it answers
 * a request), so a request normally never waits. Connections are opened lazily and re-opened
 * after a failure; every statement of the pool's table is prepared (PQprepare) once per
 * connection, right after it is opened. When the database is unreachable, acquiring a
 * connection fails fast for a short back-off instead of every request paying a connect timeout.
 *
 * Threads: every function may be called from any thread; a connection handed out by
 * analytics_pool_acquire() belongs to the caller until analytics_pool_release(). */
#ifndef ANALYTICS_DB_POOL_H
#define ANALYTICS_DB_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "epp_metrics.h"
#include "epp_pg.h"
#include "epp_trace.h"

/* One prepared statement: name, SQL with $n parameters (typed by casts in the SQL), their
 * count, and the value of the {query} label of its duration metric. */
typedef struct {
    const char *name;
    const char *sql;
    int nparams;
    const char *label;
    int binary; /* results in binary format (bytea without hex decoding); 0: text */
} analytics_stmt_t;

typedef struct {
    const char *url;               /* DATABASE_URL; copied */
    unsigned size;                 /* connections */
    int statement_timeout_ms;      /* statement_timeout of every session */
    int connect_timeout_s;         /* libpq connect_timeout */
    const analytics_stmt_t *stmts; /* prepared on every connection; borrowed, must outlive pool */
    size_t nstmts;
    epp_metrics_t *metrics; /* borrowed; may be NULL */
    epp_tracer_t *tracer;   /* borrowed; NULL: no spans (see analytics_conn_trace) */
} analytics_pool_opts_t;

typedef struct analytics_pool analytics_pool_t;
typedef struct analytics_conn analytics_conn_t;

/* Creates the pool without connecting (the first request, or analytics_pool_ping(), does).
 * NULL on allocation failure. */
analytics_pool_t *analytics_pool_create(const analytics_pool_opts_t *opts);

/* Closes every connection. No connection may be in use. Accepts NULL. */
void analytics_pool_destroy(analytics_pool_t *pool);

/* Waits up to wait_ms for a free connection and makes sure it is open and prepared.
 * 0 with *out set; EPP_EAGAIN when every connection stayed busy; EPP_EUNAVAIL when the
 * database cannot be reached (err filled when non-NULL). */
int analytics_pool_acquire(analytics_pool_t *pool, int wait_ms, analytics_conn_t **out,
                           epp_pg_error_t *err);

/* Gives a connection back. A connection whose session broke is closed and re-opened by the
 * next acquire. */
void analytics_pool_release(analytics_pool_t *pool, analytics_conn_t *conn);

/* Makes every statement run on conn until its release a CLIENT span, child of parent (the
 * request's span): name "SELECT <label>", attributes db.system, db.namespace,
 * db.operation.name, db.query.text (the prepared SQL: parameters only, never values),
 * server.address, server.port, and on failure db.response.status_code (the SQLSTATE) with
 * status ERROR. parent NULL, or a pool without a tracer: nothing is recorded. parent is copied. */
void analytics_conn_trace(analytics_conn_t *conn, const epp_trace_ctx_t *parent);

/* Runs prepared statement number stmt of the pool's table with its nparams text parameters (NULL
 * entries are SQL NULLs). On success returns 0 and *out receives the result (caller PQclear()s it).
 * On failure returns the code of epp_pg_result_error() (EPP_EIO/EPP_EUNAVAIL: the database went
 * away; EPP_ETIMEDOUT: the statement_timeout fired; EPP_EINVAL: the statement failed) with err
 * filled. A connection that turns out to be dead on its first statement after sitting idle (the
 * server restarted in between) is re-opened and the statement retried once, so a restart costs
 * nothing when it happened between requests. The duration is observed in
 * epp_analytics_db_query_duration_seconds{query=<the statement's label>}. */
int analytics_conn_exec(analytics_conn_t *conn, size_t stmt, const char *const *values,
                        PGresult **out, epp_pg_error_t *err);

/* For /ready: 1 when a connection could be opened (or is open) and answers SELECT 1. When every
 * connection is busy, the outcome of the most recent statement decides. */
int analytics_pool_ping(analytics_pool_t *pool);

#endif
