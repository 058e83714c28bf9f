/* OpenTelemetry tracing: W3C trace context, spans, and an OTLP/HTTP (JSON encoding) exporter.
 *
 * Spans are recorded in memory and handed to a background exporter thread through a bounded
 * queue; the thread POSTs batches to <endpoint>/v1/traces with libcurl. When the collector is
 * down, slow or the queue is full, spans are dropped and counted
 * (epp_otel_spans_dropped_total{reason}) -- the request path never waits for the exporter.
 * After a failed export the exporter pauses (1 s, doubling up to 8 s) and spans started during
 * the pause, or while the queue is full, are dropped at once instead of being recorded.
 *
 * Sampling is parent-based: a span whose parent context is sampled is sampled; a new trace is
 * sampled with probability sample_ratio, decided from the trace id so that every service takes
 * the same decision for the same trace. Unsampled spans still carry a context to propagate
 * (traceparent flags 00) but are never exported.
 *
 * Threads: a tracer is shared by every thread. A span belongs to one thread at a time (it may be
 * handed to another thread, e.g. from an HTTP worker to the Kafka delivery-report thread). Every
 * span function accepts NULL and then does nothing, so call sites need no "is tracing on" test. */
#ifndef EPP_TRACE_H
#define EPP_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "epp_metrics.h"
#include "epp_options.h"

typedef struct {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; /* bit 0: sampled */
} epp_trace_ctx_t;

#define EPP_TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

/* Parses a W3C traceparent header (version 00; all-zero ids are invalid). 0 or EPP_EINVAL. */
int epp_traceparent_parse(const char *s, epp_trace_ctx_t *out);
/* Writes the header value and a NUL into out (EPP_TRACEPARENT_LEN + 1 bytes). */
void epp_traceparent_format(const epp_trace_ctx_t *ctx, char *out);
/* The traceparent of an operation made without a span (tracing off) on behalf of a request that
 * sent parent (may be NULL): a child of it -- the same trace id and flags, a new span id -- when
 * it is a valid traceparent, else the root of a new sampled trace, so that whoever records spans
 * downstream still sees one trace per request. Writes EPP_TRACEPARENT_LEN + 1 bytes into out.
 * Any thread. */
void epp_traceparent_child(const char *parent, char *out);

typedef enum {
    EPP_SPAN_INTERNAL = 1,
    EPP_SPAN_SERVER = 2,
    EPP_SPAN_CLIENT = 3,
    EPP_SPAN_PRODUCER = 4,
    EPP_SPAN_CONSUMER = 5,
} epp_span_kind_t;

typedef enum {
    EPP_SPAN_STATUS_UNSET = 0,
    EPP_SPAN_STATUS_OK = 1,
    EPP_SPAN_STATUS_ERROR = 2,
} epp_span_status_t;

typedef struct {
    const char *endpoint;   /* OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://collector:4318; NULL or
                               "": tracing off (epp_tracer_create returns NULL, no error) */
    const char *service;    /* service.name */
    double sample_ratio;    /* OTEL_TRACES_SAMPLER_ARG, 0..1 */
    size_t queue_size;      /* spans waiting for export; 0: 4096 */
    size_t batch_size;      /* spans per POST; 0: 512 */
    unsigned timeout_ms;    /* per POST; 0: 2000 */
    unsigned interval_ms;   /* longest wait before a partial batch is sent; 0: 1000 */
    epp_metrics_t *metrics; /* borrowed; may be NULL */
} epp_tracer_opts_t;

typedef struct epp_tracer epp_tracer_t;
typedef struct epp_span epp_span_t;

/* Starts the exporter thread. Returns NULL with err empty when tracing is off, NULL with a
 * message in err on failure. */
epp_tracer_t *epp_tracer_create(const epp_tracer_opts_t *opts, char *err, size_t errsz);

/* epp_tracer_create from a program's tracing options (EPP_OPTS_TRACE in epp_options.h):
 * service is the name used when OTEL_SERVICE_NAME is empty. Same returns as epp_tracer_create. */
epp_tracer_t *epp_tracer_start(const epp_opts_trace_t *conf, const char *service,
                               epp_metrics_t *metrics, char *err, size_t errsz);
/* Exports what is queued (bounded by one timeout), stops the thread, frees. Accepts NULL. */
void epp_tracer_destroy(epp_tracer_t *t);

/* Counters, for tests and metrics: spans exported, and dropped (queue full or export failed). */
uint64_t epp_tracer_exported(const epp_tracer_t *t);
uint64_t epp_tracer_dropped(const epp_tracer_t *t);

/* Starts a span: a child of parent when given, else the root of a new trace. start_us is wall
 * time in microseconds, 0 for now. Returns NULL when t is NULL or on allocation failure. The
 * caller owns the span until epp_span_end(). */
epp_span_t *epp_span_start(epp_tracer_t *t, const char *name, epp_span_kind_t kind,
                           const epp_trace_ctx_t *parent, int64_t start_us);

/* Starts the root of a new trace that links to links[0..nlinks) -- e.g. a consumer's batch span,
 * whose messages belong to many traces (links, not parents). Sampled when any link is sampled,
 * else by sample_ratio like any new trace. The links are added in order (at most 128, as
 * epp_span_add_link). Returns NULL when t is NULL or on allocation failure. */
epp_span_t *epp_span_start_linked(epp_tracer_t *t, const char *name, epp_span_kind_t kind,
                                  const epp_trace_ctx_t *links, size_t nlinks, int64_t start_us);

/* The span's context (to propagate or to parent children). Borrowed until epp_span_end(). */
const epp_trace_ctx_t *epp_span_ctx(const epp_span_t *s);
int epp_span_sampled(const epp_span_t *s);
/* Whether attributes, links and status are kept: sampled, and the exporter able to take the
 * span. While the export queue is full, or after a failed export until the next attempt, sampled
 * spans are not recorded -- they still propagate a sampled context, and their end counts them in
 * epp_otel_spans_dropped_total. Callers may skip building attribute values when this is 0. */
int epp_span_recording(const epp_span_t *s);

/* Attributes (copied; at most 24 per span, further ones ignored). */
void epp_span_set_str(epp_span_t *s, const char *key, const char *value);
void epp_span_set_int(epp_span_t *s, const char *key, int64_t value);
/* A link to another span's context (at most 128 per span; further ones counted in the
 * attribute epp.links.dropped). */
void epp_span_add_link(epp_span_t *s, const epp_trace_ctx_t *ctx);
void epp_span_set_status(epp_span_t *s, epp_span_status_t status, const char *message);

/* Ends the span at end_us (0 for now) and queues it for export (or frees it when unsampled or
 * the queue is full). The span must not be used afterwards. */
void epp_span_end(epp_span_t *s, int64_t end_us);

#endif
