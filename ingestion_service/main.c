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

#include "epp_error.h"
#include "epp_http.h"
#include "epp_log.h"
#include "epp_metrics.h"
#include "epp_start.h"
#include "epp_time.h"
#include "epp_trace.h"
#include "ingest_config.h"
#include "ingest_http.h"
#include "ingest_producer.h"

/* The HTTP workers' loop hook: delivery reports, and the replies they make, on the worker. */
static void serve_reports(void *ud, int fd_readable)
{
    ingest_producer_poll(ud, fd_readable);
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
    epp_start_t start = {
        .prog = INGEST_PROG,
        .summary = INGEST_SUMMARY,
        .table = ingest_conf_table,
        .cfg = &conf,
        .log = &conf.log,
        .flags = EPP_START_IGNORE_SIGPIPE | EPP_START_BLOCK_STOP,
    };
    int rc = epp_start(&start, argc, argv);
    if (rc != 0)
        return epp_start_exit_status(rc);
    if (conf.test_faults)
        EPP_WARN("EPP_TEST_FAULTS is on: POST /debug/fatal can break the producer");

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
    tracer = epp_tracer_start(&conf.trace, INGEST_PROG, metrics, err, sizeof err);
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
    epp_http_opts_set(&hopts, &conf.http);
    hopts.max_body = (size_t)conf.max_body_bytes;
    hopts.max_body_inflight = (size_t)conf.max_body_inflight;
    hopts.max_body_inflight_per_ip = (size_t)conf.max_body_inflight_per_ip;
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

    int sig = epp_start_wait_stop();
    EPP_LOGKV(EPP_LOG_INFO, "shutting down", "signal", strsignal(sig));
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
