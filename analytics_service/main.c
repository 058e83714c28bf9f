/* epp-analytics: the analytics API and the live dashboard (docs/contract.md §7).
 *
 * main() wires the pieces together: configuration (analytics_config.c), the Postgres pool
 * (analytics_pool.c) with the prepared statements (analytics_queries.c), the HTTP routes
 * (analytics_handlers.c, analytics_dashboard.c), then waits for SIGINT/SIGTERM and shuts down in
 * order. */
#include <pthread.h>
#include <signal.h>
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
    analytics_conf_t conf;
    char err[512];
    memset(&conf, 0, sizeof(conf));
    int rc = epp_config_parse(analytics_conf_opts, &conf, argc, argv, "epp-analytics",
                              "Analytics API and live dashboard over the epp event store", NULL,
                              err, sizeof(err));
    if (rc == 1) {
        epp_config_free(analytics_conf_opts, &conf);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "epp-analytics: %s\n", err);
        epp_config_free(analytics_conf_opts, &conf);
        return 2;
    }
    if (conf.help_markdown) {
        epp_config_print_markdown(stdout, analytics_conf_opts);
        epp_config_free(analytics_conf_opts, &conf);
        return 0;
    }
    epp_log_level_t level;
    int json;
    if (epp_log_level_parse(conf.log_level, &level) < 0 ||
        epp_log_format_parse(conf.log_format, &json) < 0) {
        fprintf(stderr, "epp-analytics: bad LOG_LEVEL or LOG_FORMAT\n");
        epp_config_free(analytics_conf_opts, &conf);
        return 2;
    }
    epp_log_init("epp-analytics", level, json);
    epp_config_log(analytics_conf_opts, &conf);

    /* Signals are taken by sigwait() below; block them before any thread starts so that
     * every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    epp_metrics_t *metrics = epp_metrics_create();
    analytics_pool_t *pool = NULL;
    epp_http_server_t *srv = NULL;
    epp_tracer_t *tracer = NULL;
    if (!metrics || epp_metrics_add_process(metrics, "epp-analytics") < 0 ||
        analytics_queries_init() < 0) {
        EPP_ERROR("out of memory at start-up");
        goto out;
    }

    /* NULL without an endpoint: then every span call below is a no-op. */
    epp_tracer_opts_t topts = {0};
    topts.endpoint = conf.otel_endpoint;
    topts.service = conf.otel_service_name && *conf.otel_service_name ? conf.otel_service_name
                                                                      : "epp-analytics";
    topts.sample_ratio = conf.otel_sampler_arg;
    topts.metrics = metrics;
    tracer = epp_tracer_create(&topts, err, sizeof(err));
    if (!tracer && err[0]) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot start tracing", "error", err);
        goto out;
    }

    analytics_pool_opts_t popts = {0};
    popts.url = conf.database_url;
    popts.size = (unsigned)(conf.db_pool_size > 0 ? conf.db_pool_size : conf.http_threads);
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
    hopts.service = "epp-analytics";
    hopts.bind_address = conf.bind_address;
    hopts.port = (int)conf.http_port;
    hopts.threads = (unsigned)conf.http_threads;
    hopts.max_connections = (unsigned)conf.max_connections;
    hopts.max_body = 4096; /* GET only: no route takes a body */
    hopts.api_keys = conf.api_keys;
    hopts.rate_limit_rps = conf.rate_limit_rps;
    hopts.rate_limit_burst = conf.rate_limit_burst;
    hopts.timeout_s = (unsigned)conf.http_timeout_s;
    hopts.max_per_ip = (unsigned)conf.max_per_ip;
    hopts.cors_origins = conf.cors_origins;
    hopts.metrics = metrics;
    hopts.ready = ready;
    hopts.ready_ud = pool;
    srv = epp_http_create(&hopts, err, sizeof(err));
    if (!srv) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot create the HTTP server", "error", err);
        goto out;
    }
    analytics_ctx_t ctx = {
        .pool = pool,
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

    int sig = 0;
    sigwait(&sigs, &sig);
    EPP_LOGKV(EPP_LOG_INFO, "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    epp_http_quiesce(srv);
    status = 0;
out:
    /* The server first: its handlers use the pool. */
    epp_http_destroy(srv);
    analytics_pool_destroy(pool);
    /* After the last span has ended: exports what is queued, bounded by one POST timeout. */
    epp_tracer_destroy(tracer);
    analytics_queries_free();
    epp_metrics_destroy(metrics);
    epp_config_free(analytics_conf_opts, &conf);
    return status;
}
