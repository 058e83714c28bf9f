/* epp-analytics: the analytics API and the live dashboard (docs/contract.md §7).
 *
 * main() wires the pieces together: configuration (analytics_config.c), the Postgres pool
 * (analytics_pool.c) with the prepared statements (analytics_queries.c), the HTTP routes
 * (analytics_handlers.c, analytics_dashboard.c), then waits for SIGINT/SIGTERM and shuts down in
 * order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analytics_config.h"
#include "analytics_dashboard.h"
#include "analytics_pool.h"
#include "epp_error.h"
#include "epp_http.h"
#include "epp_log.h"
#include "epp_metrics.h"
#include "epp_start.h"
#include "epp_trace.h"
#include "analytics_handlers.h"
#include "analytics_queries.h"

static int ready(void *ud, char *reason, size_t reason_size)
{
    if (analytics_pool_ping(ud))
        return 1;
    snprintf(reason, reason_size, "database unreachable");
    return 0;
}

int main(int argc, char **argv)
{
    analytics_conf_t conf = {0};
    char err[512];
    epp_start_t start = {
        .prog = ANALYTICS_PROG,
        .summary = ANALYTICS_SUMMARY,
        .table = analytics_conf_opts,
        .cfg = &conf,
        .log = &conf.log,
        .flags = EPP_START_IGNORE_SIGPIPE | EPP_START_BLOCK_STOP,
    };
    int rc = epp_start(&start, argc, argv);
    if (rc != 0)
        return epp_start_exit_status(rc);

    int status = 1;
    epp_metrics_t *metrics = epp_metrics_create();
    analytics_pool_t *pool = NULL;
    epp_http_server_t *srv = NULL;
    epp_tracer_t *tracer = NULL;
    analytics_ucache_t *ucache = NULL;
    if (!metrics || epp_metrics_add_process(metrics, ANALYTICS_PROG) < 0 ||
        analytics_queries_init() < 0) {
        EPP_ERROR("out of memory at start-up");
        goto out;
    }

    /* NULL without an endpoint: then every span call below is a no-op. */
    tracer = epp_tracer_start(&conf.trace, ANALYTICS_PROG, metrics, err, sizeof(err));
    if (!tracer && err[0]) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot start tracing", "error", err);
        goto out;
    }

    analytics_pool_opts_t popts = {0};
    popts.url = conf.database_url;
    popts.size = (unsigned)(conf.db_pool_size > 0 ? conf.db_pool_size : conf.http.threads);
    popts.statement_timeout_ms = (int)conf.query_timeout_ms;
    popts.connect_timeout_s = (int)conf.connect_timeout_s;
    popts.stmts = analytics_queries_stmts(&popts.nstmts);
    popts.metrics = metrics;
    popts.tracer = tracer;
    pool = analytics_pool_create(&popts);
    if (!pool) {
        EPP_ERROR("cannot create the database pool");
        goto out;
    }
    /* Not fatal: the service starts without its database and /ready says so until it is up. */
    if (!analytics_pool_ping(pool))
        EPP_WARN("database not reachable at start-up; /ready answers 503 until it is");

    epp_http_opts_t hopts;
    epp_http_opts_default(&hopts);
    hopts.service = ANALYTICS_PROG;
    epp_http_opts_set(&hopts, &conf.http);
    hopts.max_body = 4096; /* GET only: no route takes a body */
    hopts.metrics = metrics;
    hopts.ready = ready;
    hopts.ready_ud = pool;
    srv = epp_http_create(&hopts, err, sizeof(err));
    if (!srv) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot create the HTTP server", "error", err);
        goto out;
    }
    ucache = analytics_ucache_create((size_t)conf.user_bitmap_cache_mb << 20, metrics);
    if (!ucache && conf.user_bitmap_cache_mb > 0) {
        EPP_ERROR("out of memory at start-up");
        goto out;
    }
    analytics_ctx_t ctx = {
        .pool = pool,
        .ucache = ucache,
        .pool_wait_ms = (int)conf.pool_wait_ms,
        .max_points = conf.max_points,
        .tracer = tracer,
    };
    if (analytics_handlers_register(srv, &ctx) < 0 || analytics_dashboard_register(srv) < 0) {
        EPP_ERROR("cannot register routes");
        goto out;
    }
    if (epp_http_start(srv, err, sizeof(err)) < 0) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot listen", "error", err);
        goto out;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", epp_http_port(srv));
    EPP_LOGKV(EPP_LOG_INFO, "listening", "port", port, "dashboard", "/dashboard");

    int sig = epp_start_wait_stop();
    EPP_LOGKV(EPP_LOG_INFO, "shutting down", "signal", strsignal(sig));
    epp_http_quiesce(srv);
    status = 0;
out:
    /* The server first: its handlers use the pool. */
    epp_http_destroy(srv);
    analytics_pool_destroy(pool);
    analytics_ucache_destroy(ucache);
    /* After the last span has ended: exports what is queued, bounded by one POST timeout. */
    epp_tracer_destroy(tracer);
    analytics_queries_free();
    epp_metrics_destroy(metrics);
    epp_config_free(analytics_conf_opts, &conf);
    return status;
}
