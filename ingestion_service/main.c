/* epp-ingest: the Ingestion Service (docs/contract.md §4). The service's logic is the library
 * epp_ingest_core (the other ingestion_service/ files); main() only wires it up.
 *
 * Start-up: configuration, logging, metrics, the Kafka producer, then the HTTP server. The
 * main thread then waits for SIGTERM/SIGINT/SIGHUP and shuts down in the order that keeps every
 * answer truthful (ingest_app_shutdown), then stops the server and destroys the producer. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_http.h"
#include "epp_log.h"
#include "epp_metrics.h"
#include "epp_start.h"
#include "epp_trace.h"
#include "ingest_config.h"
#include "ingest_http.h"
#include "ingest_producer.h"

/* The HTTP workers' loop hook: delivery reports, and the replies they make, on the worker. */
static void serve_reports(void *ud, int fd_readable)
{
    ingest_producer_poll(ud, fd_readable);
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
    ingest_app_shutdown(app, srv);
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
