/* The Postgres connection pool; see analytics_pool.h for the contract. */
#include "analytics_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "epp_error.h"
#include "epp_log.h"
#include "epp_time.h"

/* After a failed connect, acquires that would need a new connection fail at once for this
 * long: while the database is down, requests answer 503 in microseconds instead of queueing
 * behind connect attempts. Short, so recovery is noticed within a fraction of a second. */
#define POOL_DOWN_BACKOFF_US 250000

struct analytics_conn {
    analytics_pool_t *pool;
    PGconn *pg; /* NULL: closed, (re)opened by the next acquire */
    int busy;   /* under pool->mu */
    int opened; /* 1 when pg was opened by the current acquire (no retry then) */
    int traced; /* parent is set: statements record spans (until release) */
    epp_trace_ctx_t parent;
};

struct analytics_pool {
    char *url;
    unsigned size;
    int statement_timeout_ms;
    int connect_timeout_s;
    const analytics_stmt_t *stmts;
    size_t nstmts;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    analytics_conn_t *conns;
    unsigned in_use;       /* under mu */
    int64_t down_until_us; /* under mu */
    atomic_int healthy;    /* outcome of the most recent connect or statement */

    epp_tracer_t *tracer; /* borrowed; may be NULL */
    char **span_names;    /* per statement: "SELECT <label>" (only with a tracer) */

    epp_series_t **durations; /* per statement; NULL entries when metrics are off */
    epp_series_t *in_use_gauge;
    epp_series_t *err_connect, *err_query, *err_timeout;
};

analytics_pool_t *analytics_pool_create(const analytics_pool_opts_t *opts)
{
    analytics_pool_t *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->size = opts->size ? opts->size : 1;
    pool->statement_timeout_ms = opts->statement_timeout_ms;
    pool->connect_timeout_s = opts->connect_timeout_s;
    pool->stmts = opts->stmts;
    pool->nstmts = opts->nstmts;
    pool->url = strdup(opts->url ? opts->url : "");
    pool->conns = calloc(pool->size, sizeof(*pool->conns));
    pool->durations = calloc(opts->nstmts ? opts->nstmts : 1, sizeof(epp_series_t *));
    if (!pool->url || !pool->conns || !pool->durations) {
        analytics_pool_destroy(pool);
        return NULL;
    }
    if (opts->tracer) {
        pool->tracer = opts->tracer;
        pool->span_names = calloc(opts->nstmts ? opts->nstmts : 1, sizeof(*pool->span_names));
        for (size_t i = 0; pool->span_names && i < opts->nstmts; i++) {
            const char *label = opts->stmts[i].label;
            size_t len = strlen(label);
            pool->span_names[i] = malloc(len + 8);
            if (!pool->span_names[i]) {
                analytics_pool_destroy(pool);
                return NULL;
            }
            snprintf(pool->span_names[i], 7 + len + 1, "SELECT %s", label);
        }
        if (!pool->span_names) {
            analytics_pool_destroy(pool);
            return NULL;
        }
    }
    for (unsigned i = 0; i < pool->size; i++)
        pool->conns[i].pool = pool;
    atomic_store(&pool->healthy, 1); /* until a connect fails: the first failure is then logged */
    if (opts->metrics) {
        static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
        epp_metric_t *dur =
            epp_metrics_histogram(opts->metrics, "epp_analytics_db_query_duration_seconds",
                                  "Duration of analytics database statements", "query", buckets,
                                  sizeof(buckets) / sizeof(buckets[0]));
        epp_metric_t *errs = epp_metrics_counter(opts->metrics, "epp_analytics_db_errors_total",
                                                 "Database failures by kind", "kind");
        epp_metric_t *in_use = epp_metrics_gauge(opts->metrics, "epp_analytics_db_pool_in_use",
                                                 "Pool connections handed out", NULL);
        epp_metric_t *size = epp_metrics_gauge(opts->metrics, "epp_analytics_db_pool_size",
                                               "Pool connections in all", NULL);
        for (size_t i = 0; dur && i < opts->nstmts; i++)
            pool->durations[i] = epp_metric_series(dur, opts->stmts[i].label);
        if (errs) {
            pool->err_connect = epp_metric_series(errs, "connect");
            pool->err_query = epp_metric_series(errs, "query");
            pool->err_timeout = epp_metric_series(errs, "timeout");
        }
        if (in_use)
            pool->in_use_gauge = epp_metric_default(in_use);
        if (size)
            epp_series_set(epp_metric_default(size), pool->size);
    }
    return pool;
}

void analytics_pool_destroy(analytics_pool_t *pool)
{
    if (!pool)
        return;
    for (unsigned i = 0; pool->conns && i < pool->size; i++)
        if (pool->conns[i].pg)
            PQfinish(pool->conns[i].pg);
    free(pool->conns);
    free(pool->durations);
    for (size_t i = 0; pool->span_names && i < pool->nstmts; i++)
        free(pool->span_names[i]);
    free(pool->span_names);
    free(pool->url);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

static void count(epp_series_t *s)
{
    if (s)
        epp_series_inc(s);
}

/* Opens conn->pg, sets the session's statement_timeout and prepares every statement. Runs
 * without the pool lock (it blocks on the network). */
static int conn_open(analytics_conn_t *conn, epp_pg_error_t *err)
{
    analytics_pool_t *pool = conn->pool;
    PGconn *pg = NULL;
    int rc = epp_pg_connect(pool->url, pool->connect_timeout_s, "epp-analytics", &pg, err);
    if (rc < 0)
        return rc;
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%d", pool->statement_timeout_ms);
    const char *values[1] = {timeout};
    rc = epp_pg_exec_params(pg, "SELECT set_config('statement_timeout', $1, false)", 1, values, 0,
                            NULL, err);
    /* Every statement is a handful of range lookups on (bucket, ...) and ("timestamp") indexes,
     * whose best plan does not depend on the bounds: a generic plan saves re-planning the
     * seven-part range query on every request. */
    if (rc == 0)
        rc = epp_pg_exec(pg, "SET plan_cache_mode = force_generic_plan", err);
    /* They touch a few thousand rows at most: starting parallel workers costs more (measured:
     * 6 ms of an 8 ms top query) than it saves. */
    if (rc == 0)
        rc = epp_pg_exec(pg, "SET max_parallel_workers_per_gather = 0", err);
    /* Generic plans of the raw-edge pieces are costed for unknown (wide) ranges, which crosses
     * jit_above_cost: JIT compilation then took 18 ms of a 19 ms top query on 10M events. */
    if (rc == 0)
        rc = epp_pg_exec(pg, "SET jit = off", err);
    for (size_t i = 0; rc == 0 && i < pool->nstmts; i++) {
        PGresult *res =
            PQprepare(pg, pool->stmts[i].name, pool->stmts[i].sql, pool->stmts[i].nparams, NULL);
        /* A failure here is usually a schema not migrated yet (the consumer applies it): the
         * caller logs it once per outage and retries after the back-off. */
        rc = epp_pg_result_error(pg, res, err);
        PQclear(res);
    }
    if (rc < 0) {
        PQfinish(pg);
        return rc;
    }
    conn->pg = pg;
    return 0;
}

static void set_in_use(analytics_pool_t *pool)
{
    if (pool->in_use_gauge)
        epp_series_set(pool->in_use_gauge, pool->in_use);
}

int analytics_pool_acquire(analytics_pool_t *pool, int wait_ms, analytics_conn_t **out,
                           epp_pg_error_t *err)
{
    epp_pg_error_t own; /* the caller may not want the error; the log line still does */
    if (!err)
        err = &own;
    *out = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += wait_ms / 1000;
    deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&pool->mu);
    analytics_conn_t *conn = NULL;
    for (;;) {
        /* Prefer a connection that is already open. */
        for (unsigned i = 0; i < pool->size; i++) {
            analytics_conn_t *c = &pool->conns[i];
            if (!c->busy && (!conn || (c->pg && !conn->pg)))
                conn = c;
        }
        if (conn)
            break;
        if (pthread_cond_timedwait(&pool->cv, &pool->mu, &deadline) != 0) {
            pthread_mutex_unlock(&pool->mu);
            memset(err, 0, sizeof(*err));
            err->code = EPP_EAGAIN;
            snprintf(err->message, sizeof(err->message), "every database connection is busy");
            return EPP_EAGAIN;
        }
    }
    if (!conn->pg && epp_time_mono_us() < pool->down_until_us) {
        pthread_mutex_unlock(&pool->mu);
        memset(err, 0, sizeof(*err));
        err->code = EPP_EUNAVAIL;
        snprintf(err->message, sizeof(err->message), "database unreachable (retrying)");
        return EPP_EUNAVAIL;
    }
    conn->busy = 1;
    pool->in_use++;
    set_in_use(pool);
    pthread_mutex_unlock(&pool->mu);

    conn->opened = 0;
    if (conn->pg && PQstatus(conn->pg) != CONNECTION_OK) {
        PQfinish(conn->pg);
        conn->pg = NULL;
    }
    if (!conn->pg) {
        int rc = conn_open(conn, err);
        if (rc < 0) {
            count(pool->err_connect);
            /* Warn once per outage; the retries every POOL_DOWN_BACKOFF_US log at debug. */
            int was_healthy = atomic_exchange(&pool->healthy, 0);
            pthread_mutex_lock(&pool->mu);
            pool->down_until_us = epp_time_mono_us() + POOL_DOWN_BACKOFF_US;
            pthread_mutex_unlock(&pool->mu);
            EPP_LOGKV(was_healthy ? EPP_LOG_WARN : EPP_LOG_DEBUG,
                      "database unusable (unreachable, or schema not migrated yet)", "error",
                      err->message);
            analytics_pool_release(pool, conn);
            return rc == EPP_EINVAL ? EPP_EINVAL : EPP_EUNAVAIL;
        }
        conn->opened = 1;
        if (!atomic_exchange(&pool->healthy, 1))
            EPP_INFO("database connection established");
    }
    *out = conn;
    return 0;
}

void analytics_pool_release(analytics_pool_t *pool, analytics_conn_t *conn)
{
    if (!conn)
        return;
    /* A session that broke, or was left inside a transaction by an error path, is not reused. */
    if (conn->pg &&
        (PQstatus(conn->pg) != CONNECTION_OK || PQtransactionStatus(conn->pg) != PQTRANS_IDLE)) {
        PQfinish(conn->pg);
        conn->pg = NULL;
    }
    conn->traced = 0;
    pthread_mutex_lock(&pool->mu);
    conn->busy = 0;
    pool->in_use--;
    set_in_use(pool);
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}

static int connection_lost(int rc)
{
    return rc == EPP_EIO || rc == EPP_EUNAVAIL;
}

void analytics_conn_trace(analytics_conn_t *conn, const epp_trace_ctx_t *parent)
{
    conn->traced = parent && conn->pool->tracer;
    if (conn->traced)
        conn->parent = *parent;
}

/* The CLIENT span of one statement execution (see analytics_conn_trace). */
static epp_span_t *query_span_start(analytics_conn_t *conn, size_t stmt)
{
    analytics_pool_t *pool = conn->pool;
    epp_span_t *span =
        epp_span_start(pool->tracer, pool->span_names[stmt], EPP_SPAN_CLIENT, &conn->parent, 0);
    if (!epp_span_recording(span))
        return span; /* attributes of a span not recorded are never exported: skip them */
    epp_span_set_str(span, "db.system", "postgresql");
    epp_span_set_str(span, "db.namespace", PQdb(conn->pg));
    epp_span_set_str(span, "db.operation.name", "SELECT");
    epp_span_set_str(span, "db.query.text", pool->stmts[stmt].sql);
    const char *host = PQhost(conn->pg);
    if (host && *host)
        epp_span_set_str(span, "server.address", host);
    const char *port = PQport(conn->pg);
    if (port && *port)
        epp_span_set_int(span, "server.port", strtol(port, NULL, 10));
    return span;
}

static void query_span_end(epp_span_t *span, int rc, const epp_pg_error_t *err)
{
    if (!span)
        return;
    if (rc < 0) {
        if (err && err->sqlstate[0])
            epp_span_set_str(span, "db.response.status_code", err->sqlstate);
        epp_span_set_status(span, EPP_SPAN_STATUS_ERROR,
                            err && err->message[0] ? err->message : epp_strerror(rc));
    }
    epp_span_end(span, 0);
}

int analytics_conn_exec(analytics_conn_t *conn, size_t stmt, const char *const *values,
                        PGresult **out, epp_pg_error_t *err)
{
    analytics_pool_t *pool = conn->pool;
    *out = NULL;
    if (stmt >= pool->nstmts)
        return EPP_EINVAL;
    for (int attempt = 0;; attempt++) {
        epp_span_t *span = conn->traced ? query_span_start(conn, stmt) : NULL;
        int64_t t0 = epp_time_mono_us();
        PGresult *res = PQexecPrepared(conn->pg, pool->stmts[stmt].name, pool->stmts[stmt].nparams,
                                       values, NULL, NULL, pool->stmts[stmt].binary);
        int rc = epp_pg_result_error(conn->pg, res, err);
        query_span_end(span, rc, err);
        if (pool->durations[stmt])
            epp_series_observe(pool->durations[stmt], (double)(epp_time_mono_us() - t0) / 1e6);
        if (rc == 0) {
            atomic_store(&pool->healthy, 1);
            *out = res;
            return 0;
        }
        PQclear(res);
        if (!connection_lost(rc)) {
            count(rc == EPP_ETIMEDOUT ? pool->err_timeout : pool->err_query);
            if (rc != EPP_ETIMEDOUT)
                EPP_LOGKV(EPP_LOG_ERROR, "query failed", "statement", pool->stmts[stmt].name,
                          "sqlstate", err ? err->sqlstate : "", "error", err ? err->message : "");
            return rc;
        }
        /* The session is gone. A connection that sat idle in the pool may simply have missed a
         * server restart: open a new one and try once more. */
        count(pool->err_query);
        PQfinish(conn->pg);
        conn->pg = NULL;
        if (attempt > 0 || conn->opened) {
            atomic_store(&pool->healthy, 0);
            return rc;
        }
        EPP_LOGKV(EPP_LOG_INFO, "database session lost; reconnecting", "error",
                  err ? err->message : "");
        int orc = conn_open(conn, err);
        if (orc < 0) {
            count(pool->err_connect);
            atomic_store(&pool->healthy, 0);
            pthread_mutex_lock(&pool->mu);
            pool->down_until_us = epp_time_mono_us() + POOL_DOWN_BACKOFF_US;
            pthread_mutex_unlock(&pool->mu);
            return EPP_EUNAVAIL;
        }
        conn->opened = 1;
    }
}

int analytics_pool_ping(analytics_pool_t *pool)
{
    analytics_conn_t *conn = NULL;
    int rc = analytics_pool_acquire(pool, 200, &conn, NULL);
    if (rc == EPP_EAGAIN)
        return atomic_load(&pool->healthy);
    if (rc < 0)
        return 0;
    rc = epp_pg_exec(conn->pg, "SELECT 1", NULL);
    if (rc < 0 && connection_lost(rc) && !conn->opened) {
        /* Same reasoning as in analytics_conn_exec: an idle session may predate a restart. */
        PQfinish(conn->pg);
        conn->pg = NULL;
        if (conn_open(conn, NULL) == 0)
            rc = epp_pg_exec(conn->pg, "SELECT 1", NULL);
    }
    atomic_store(&pool->healthy, rc == 0);
    analytics_pool_release(pool, conn);
    return rc == 0;
}
