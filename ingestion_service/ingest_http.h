/* ingest_http: the HTTP routes of epp-ingest (POST /events, POST /events/batch, the readiness
 * callback, and the test-only POST /debug/fatal) and the delivery-report side that answers them.
 *
 * Every accepted event is sent to Kafka and its request is suspended; the request is answered
 * from the poll thread when the last of its events has a delivery report, so no thread waits
 * for Kafka. Request-level counters live here too (epp_ingest_events_*).
 *
 * Threads: handlers run on the HTTP worker threads, ingest_http_on_delivery() on the producer's
 * poll thread; the per-request countdown (an atomic) decides which of them replies. */
#ifndef INGEST_HTTP_H
#define INGEST_HTTP_H

#include <librdkafka/rdkafka.h>

#include "epp_http.h"
#include "epp_metrics.h"
#include "epp_trace.h"
#include "ingest_config.h"
#include "ingest_producer.h"

typedef struct ingest_app ingest_app_t;

/* Creates the application state and registers its metrics in metrics (borrowed; must outlive
 * the app). conf is borrowed for the app's lifetime. NULL on allocation failure. */
ingest_app_t *ingest_app_create(const ingest_conf_t *conf, epp_metrics_t *metrics);

/* The producer to send to (set once, before the server starts). Borrowed. */
void ingest_app_set_producer(ingest_app_t *app, ingest_producer_t *producer);

/* The tracer for request spans (NULL: tracing off). Borrowed; set before the server starts. */
void ingest_app_set_tracer(ingest_app_t *app, epp_tracer_t *tracer);

/* Adds the service's routes to srv. 0 or a negative EPP_E* code. */
int ingest_app_routes(ingest_app_t *app, epp_http_server_t *srv);

/* The producer's delivery callback (ingest_producer_opts_t.on_delivery, ud = app). */
void ingest_app_on_delivery(void *msg_opaque, rd_kafka_resp_err_t err, void *ud);

/* The /ready callback (epp_http_opts_t.ready, ud = app). */
int ingest_app_ready(void *ud, char *reason, size_t reason_size);

/* The shutdown that keeps every answer truthful, after SIGTERM: srv stops accepting connections;
 * the requests in flight are waited for (up to SHUTDOWN_TIMEOUT_MS), answered from their delivery
 * reports; then requests are refused (503, no produce) and those already being handled waited
 * for; what Kafka still has not acknowledged is then purged, so its requests get 503. The
 * caller destroys srv (which answers anything left) and then the producer. Main thread. */
void ingest_app_shutdown(ingest_app_t *app, epp_http_server_t *srv);

/* Frees the app. Every request must have been answered. Accepts NULL. */
void ingest_app_destroy(ingest_app_t *app);

#endif
