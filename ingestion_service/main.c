/* epp-ingest: the Ingestion Service (docs/contract.md §4).
 *
 * Start-up: configuration, logging, metrics, the Kafka producer, then the HTTP server. The
 * main thread then waits for SIGTERM/SIGINT and shuts down in the order that keeps every
 * answer truthful: stop accepting connections; wait (up to SHUTDOWN_TIMEOUT_MS) for the requests
 * in flight, which are answered from their delivery reports; purge what Kafka still has not
 * acknowledged (those requests get 503); stop the server; destroy the producer. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "epp_config.h"
#include "epp_error.h"
#include "epp_http.h"
#include "epp_log.h"
#include "epp_metrics.h"
#include "epp_time.h"
#include "epp_trace.h"
#include "ingest_config.h"
#include "ingest_http.h"
#include "ingest_producer.h"

static int setup_logging(const ingest_conf_t *conf)
{
    epp_log_level_t level;
    int json;
    if (epp_log_level_parse(conf->log_level, &level) < 0) {
        fprintf(stderr, "%s: bad LOG_LEVEL \"%s\"\n", INGEST_PROG, conf->log_level);
        return EPP_EINVAL;
    }
    if (epp_log_format_parse(conf->log_format, &json) < 0) {
        fprintf(stderr, "%s: bad LOG_FORMAT \"%s\"\n", INGEST_PROG, conf->log_format);
        return EPP_EINVAL;
    }
    epp_log_init(INGEST_PROG, level, json);
    return 0;
}

/* The HTTP workers' loop hook: delivery reports, and the replies they make, on the worker. */
static void serve_reports(void *ud, int fd_readable)
{
    ingest_producer_poll(ud, fd_readable);
}

/* Waits for SIGTERM or SIGINT (blocked in every thread, see main). */
static int wait_for_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}

static void shutdown_service(const ingest_conf_t *conf, epp_http_server_t *srv,
                             ingest_producer_t *producer)
{
    epp_http_quiesce(srv);
    int64_t deadline = epp_time_mono_us() + conf->shutdown_timeout_ms * 1000;
    while (epp_http_inflight(srv) > 0 && epp_time_mono_us() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int64_t left_ms = (deadline - epp_time_mono_us()) / 1000;
    /* Anything still queued now gets a failure report, hence a truthful 503. */
    size_t unreported = ingest_producer_drain(producer, left_ms > 0 ? (int)left_ms : 0, 1);
    char inflight[24], unrep[24];
    snprintf(inflight, sizeof inflight, "%u", epp_http_inflight(srv));
    snprintf(unrep, sizeof unrep, "%zu", unreported);
    EPP_LOGKV(EPP_LOG_INFO, "drained", "unanswered_requests", inflight, "unreported_messages",
              unrep);
}

int main(int argc, char **argv)
{
    ingest_conf_t conf = {0};
    char err[512] = "";
    int rc = epp_config_parse(ingest_conf_table, &conf, argc, argv, INGEST_PROG, INGEST_SUMMARY,
                              NULL, err, sizeof err);
    if (rc == 1) {
        epp_config_free(ingest_conf_table, &conf);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", INGEST_PROG, err);
        epp_config_free(ingest_conf_table, &conf);
        return 2;
    }
    if (conf.help_markdown) {
        epp_config_print_markdown(stdout, ingest_conf_table);
        epp_config_free(ingest_conf_table, &conf);
        return 0;
    }
    if (setup_logging(&conf) < 0) {
        epp_config_free(ingest_conf_table, &conf);
        return 2;
    }
    epp_config_log(ingest_conf_table, &conf);
    if (conf.test_faults)
        EPP_WARN("EPP_TEST_FAULTS is on: POST /debug/fatal can break the producer");

    /* Block the shutdown signals before any thread starts so that every thread inherits the
     * mask and only sigwait() in this thread sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    epp_metrics_t *metrics = epp_metrics_create();
    ingest_app_t *app = metrics ? ingest_app_create(&conf, metrics) : NULL;
    ingest_producer_t *producer = NULL;
    epp_http_server_t *srv = NULL;
    epp_tracer_t *tracer = NULL;
    if (!app) {
        EPP_ERROR("out of memory");
        goto out;
    }
    epp_metrics_add_process(metrics, INGEST_PROG);

    /* NULL without an endpoint: then every span call is a no-op. */
    epp_tracer_opts_t topts = {0};
    topts.endpoint = conf.otel_endpoint;
    topts.service =
        conf.otel_service_name && *conf.otel_service_name ? conf.otel_service_name : INGEST_PROG;
    topts.sample_ratio = conf.otel_sampler_arg;
    topts.metrics = metrics;
    tracer = epp_tracer_create(&topts, err, sizeof err);
    if (!tracer && err[0]) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot start tracing", "error", err);
        status = 2;
        goto out;
    }
    ingest_app_set_tracer(app, tracer);

    ingest_producer_opts_t popts = {
        .bootstrap = conf.bootstrap,
        .topic = conf.topic,
        .topic_partitions = (int)conf.topic_partitions,
        .delivery_timeout_ms = (int)conf.delivery_timeout_ms,
        .linger_ms = (int)conf.linger_ms,
        .batch_num_messages = (int)conf.batch_num_messages,
        .queue_max_messages = (int)conf.queue_max_messages,
        .queue_max_kbytes = (int)conf.queue_max_kbytes,
        .overrides = conf.producer_config,
        .on_delivery = ingest_app_on_delivery,
        .ud = app,
        .metrics = metrics,
        .external_poll = 1,
    };
    producer = ingest_producer_create(&popts, err, sizeof err);
    if (!producer) {
        EPP_LOGKV(EPP_LOG_ERROR, "kafka producer", "error", err);
        status = 2;
        goto out;
    }
    ingest_app_set_producer(app, producer);

    epp_http_opts_t hopts;
    epp_http_opts_default(&hopts);
    hopts.service = INGEST_PROG;
    hopts.bind_address = conf.bind_address;
    hopts.port = (int)conf.http_port;
    hopts.threads = (unsigned)conf.http_threads;
    hopts.max_connections = (unsigned)conf.http_max_connections;
    hopts.max_per_ip = (unsigned)conf.http_max_per_ip;
    hopts.timeout_s = (unsigned)conf.http_timeout_s;
    hopts.max_body = (size_t)conf.max_body_bytes;
    hopts.api_keys = conf.api_keys;
    hopts.rate_limit_rps = conf.rate_limit_rps;
    hopts.rate_limit_burst = conf.rate_limit_burst;
    hopts.cors_origins = conf.cors_origins;
    hopts.metrics = metrics;
    hopts.ready = ingest_app_ready;
    hopts.ready_ud = app;
    srv = epp_http_create(&hopts, err, sizeof err);
    /* The HTTP workers serve the delivery reports themselves (see ingest_producer.h). */
    if (srv)
        epp_http_set_loop_hook(srv, ingest_producer_poll_fd(producer), serve_reports, producer);
    if (!srv || ingest_app_routes(app, srv) < 0 || epp_http_start(srv, err, sizeof err) < 0) {
        EPP_LOGKV(EPP_LOG_ERROR, "http server", "error", err[0] ? err : "could not add routes");
        status = 2;
        goto out;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", epp_http_port(srv));
    EPP_LOGKV(EPP_LOG_INFO, "listening", "port", port, "topic", conf.topic);

    int sig = wait_for_signal();
    EPP_LOGKV(EPP_LOG_INFO, "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    shutdown_service(&conf, srv, producer);
    status = 0;

out:
    /* Order matters: the server (and /metrics, whose gauge reads the producer) goes first; the
     * producer's reports must all have been served before the requests they answer vanish. */
    epp_http_destroy(srv);
    ingest_producer_destroy(producer);
    epp_tracer_destroy(tracer); /* after the last request's spans ended */
    ingest_app_destroy(app);
    epp_metrics_destroy(metrics);
    epp_config_free(ingest_conf_table, &conf);
    if (status == 0)
        EPP_INFO("stopped");
    return status;
}
