/* ingest_req: the machinery every ingestion route shares (private to epp-ingest): one request
 * suspended until Kafka has reported on each of its events, the per-event outcomes, the
 * request-level metrics, and the request's trace spans. The routes themselves -- POST /events
 * and /events/batch (ingest_http.c), the Segment-compatible /v1 routes (ingest_segment_http.c) --
 * decide how a finished request is answered, through its finish callback.
 *
 * A request's life: ingest_req_create() holds it once for the handler; ingest_req_send() hands
 * an event to the producer and holds it once more until that event's delivery report; the
 * handler's ingest_req_release() drops its own hold. Whoever drops the last hold -- the handler,
 * or a delivery report on the thread serving reports -- calls finish (which replies) and frees
 * the request. The atomic's acquire/release ordering publishes each outcome to that thread.
 *
 * Threads: handlers on the HTTP worker threads, delivery reports wherever the producer's
 * reports are served (ingest_producer.h); nothing here takes a lock. */
#ifndef INGEST_REQ_H
#define INGEST_REQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "epp_buf.h"
#include "epp_event.h"
#include "epp_http.h"
#include "epp_metrics.h"
#include "epp_trace.h"
#include "epp_uuid.h"
#include "ingest_config.h"
#include "ingest_producer.h"

/* Retry-After (seconds) for each kind of 503. */
#define INGEST_RETRY_QUEUE_FULL  1
#define INGEST_RETRY_UNAVAILABLE 2

/* Reasons counted by epp_ingest_events_rejected_total (see ingest_req.c). */
#define INGEST_N_REASONS 10

/* The application: configuration, producer, tracer and metrics, shared by every route. */
typedef struct ingest_app {
    const ingest_conf_t *conf;
    ingest_producer_t *producer;
    epp_tracer_t *tracer; /* NULL: tracing off, every span call is a no-op */
    epp_series_t *accepted;
    epp_series_t *rejected[INGEST_N_REASONS];
} ingest_app_t;

/* The outcome of one event of a request. */
typedef enum {
    INGEST_RES_INVALID = 0, /* failed validation; err holds the rejection */
    INGEST_RES_SENT,        /* handed to the producer, waiting for its delivery report */
    INGEST_RES_ACCEPTED,    /* acknowledged by Kafka */
    INGEST_RES_FAILED,      /* not acknowledged (kerr) or never enqueued (send_rc) */
} ingest_res_state_t;

typedef struct ingest_req ingest_req_t;

typedef struct {
    ingest_req_t *req;
    ingest_res_state_t state;
    rd_kafka_resp_err_t kerr;
    int send_rc;
    epp_event_error_t *err; /* INVALID: a copy of the rejection (NULL if out of memory) */
    char *ref; /* INVALID: the client's own name for the message (Segment's messageId), or NULL */
    char event_id[EPP_UUID_STRLEN + 1];
} ingest_res_t;

/* Called once, by whoever drops the last hold: must reply to r->http (exactly once) and end
 * the spans (ingest_req_spans_end). ingest_req_release() frees r afterwards. */
typedef void (*ingest_finish_fn)(ingest_req_t *r);

struct ingest_req {
    ingest_app_t *app;
    epp_http_req_t *http;
    atomic_uint pending;
    bool is_batch;  /* spans report accepted/rejected counts */
    bool suspended; /* the handler called epp_http_suspend() */
    size_t n;
    ingest_res_t *res; /* n entries: &one for a single-event request */
    ingest_res_t one;
    epp_span_t *span;  /* SERVER span of the request (NULL without tracing) */
    epp_span_t *pspan; /* PRODUCER span whose context the Kafka messages carry */
    ingest_finish_fn finish;
    char traceparent[56]; /* the messages' traceparent header (ingest_req_create) */
};

/* A new request with one hold (the handler's) and room for one event (r->one); starts the
 * PRODUCER span under span (the SERVER span, owned by the request from now on; may be NULL) and
 * fills r->traceparent. NULL when out of memory (span is then still the caller's). */
ingest_req_t *ingest_req_create(ingest_app_t *app, epp_http_req_t *http, epp_span_t *span,
                                bool is_batch, ingest_finish_fn finish);

/* Room for n results (replacing r->one). 0 or EPP_ENOMEM. Before the first send. */
int ingest_req_results(ingest_req_t *r, size_t n);

/* Marks res (of r) invalid with a copy of err and of ref (may be NULL; at most ref_len bytes). */
void ingest_req_reject(ingest_res_t *res, const epp_event_error_t *err, const char *ref,
                       size_t ref_len);

/* Serialises ev and hands it to the producer; res (of r) records the outcome. Suspends the HTTP
 * request before the first send, since from then on the reply may come from another thread. */
void ingest_req_send(ingest_res_t *res, const epp_event_t *ev);

/* Drops one hold; the last one calls finish and frees r. */
void ingest_req_release(ingest_req_t *r);

/* A finish callback's last step: replies status with the JSON in out (or 503 when oom, the
 * building of out having run out of memory), frees out, and ends the spans. */
void ingest_req_reply(ingest_req_t *r, unsigned status, epp_buf_t *out, int oom, size_t accepted,
                      size_t failed);

/* Frees a request that never sent anything, without replying (the caller replies; the SERVER
 * span is ended by the caller too: it is returned in *span, the PRODUCER span is dropped). */
void ingest_req_abandon(ingest_req_t *r, epp_span_t **span);

/* Registers the request counters (epp_ingest_events_accepted_total, ..._rejected_total{reason})
 * in metrics (borrowed) and keeps their series in app. */
void ingest_req_metrics(ingest_app_t *app, epp_metrics_t *metrics);

/* Counts n rejections for reason (an error code; unknown ones count as "other"). */
void ingest_count_rejected(ingest_app_t *app, const char *reason, double n);

/* The 503 code, message and Retry-After for an event that Kafka did not take. */
void ingest_kafka_failure(const ingest_res_t *res, const char **code, const char **msg,
                          unsigned *retry);

/* Appends "error":{"code":...,"message":...[,"field":...]} (no braces around it) to out. */
void ingest_append_error(epp_buf_t *out, const char *code, const char *msg, const char *field);

/* The SERVER span of a request (NULL without a tracer), a child of the client's traceparent. */
epp_span_t *ingest_server_span_start(ingest_app_t *app, epp_http_req_t *http, const char *name,
                                     const char *route);

/* Ends a SERVER span with the reply's status (>= 500 is an error). Accepts NULL. */
void ingest_server_span_end(epp_span_t *span, unsigned status);

/* Ends both spans of r once its reply is decided. */
void ingest_req_spans_end(ingest_req_t *r, unsigned status, size_t accepted, size_t failed);

#endif
