/* POST /events and POST /events/batch, answered after Kafka's acknowledgement. See
 * ingest_http.h. */
#include "ingest_http.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "epp_error.h"
#include "epp_event.h"
#include "epp_json.h"
#include "epp_log.h"
#include "epp_time.h"
#include "epp_trace.h"
#include "epp_uuid.h"
#include "ingest_batch.h"

/* Retry-After (seconds) for each kind of 503. */
#define RETRY_QUEUE_FULL  1
#define RETRY_UNAVAILABLE 2

/* Reasons counted by epp_ingest_events_rejected_total; anything else counts as "other". */
static const char *const reject_reasons[] = {
    "invalid_json",      "invalid_field",
    "missing_field",     "unknown_field",
    "payload_too_large", "unsupported_media_type",
    "invalid_encoding",  "kafka_unavailable",
    "queue_full",        "other",
};
#define N_REASONS (sizeof reject_reasons / sizeof reject_reasons[0])

struct ingest_app {
    const ingest_conf_t *conf;
    ingest_producer_t *producer;
    epp_tracer_t *tracer; /* NULL: tracing off, every span call is a no-op */
    epp_series_t *accepted;
    epp_series_t *rejected[N_REASONS];
};

/* The outcome of one event of a request. */
typedef enum {
    RES_INVALID = 0, /* failed validation; err holds the rejection */
    RES_SENT,        /* handed to the producer, waiting for its delivery report */
    RES_ACCEPTED,    /* acknowledged by Kafka */
    RES_FAILED,      /* not acknowledged (kerr) or never enqueued (send_rc) */
} res_state_t;

typedef struct ingest_req ingest_req_t;

typedef struct {
    ingest_req_t *req;
    res_state_t state;
    rd_kafka_resp_err_t kerr;
    int send_rc;
    epp_event_error_t *err; /* RES_INVALID: a copy of the rejection (NULL if out of memory) */
    char event_id[EPP_UUID_STRLEN + 1];
} ingest_res_t;

/* One suspended request. pending counts the delivery reports still due plus one hold by the
 * handler while it is still sending; whoever takes it to zero replies and frees the request.
 * The atomic's acquire/release ordering publishes each result to the replying thread. */
struct ingest_req {
    ingest_app_t *app;
    epp_http_req_t *http;
    atomic_uint pending;
    bool is_batch;
    bool suspended; /* the handler called epp_http_suspend() */
    size_t n;
    ingest_res_t *res; /* n entries: &one for POST /events */
    ingest_res_t one;
    epp_span_t *span;  /* SERVER span of the request (NULL without tracing) */
    epp_span_t *pspan; /* PRODUCER span whose context the Kafka messages carry */
};

/* --- metrics --- */

static void count_rejected(ingest_app_t *app, const char *reason, double n)
{
    size_t i = 0, len = strlen(reason);
    while (i + 1 < N_REASONS &&
           !(strlen(reject_reasons[i]) == len && memcmp(reject_reasons[i], reason, len) == 0))
        i++;
    if (app->rejected[i])
        epp_series_add(app->rejected[i], n);
}

/* --- trace context --- */

static uint64_t rng_next(void)
{
    /* xorshift64*, one state per thread, seeded from the kernel: trace and span ids need to be
     * unique, not secret. */
    static _Thread_local uint64_t s;
    while (s == 0) {
        if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s)
            s = (uint64_t)epp_time_mono_us() ^ (uint64_t)(uintptr_t)&s;
    }
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
}

static void hex64(uint64_t v, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[v & 15];
        v >>= 4;
    }
}

static int is_lower_hex(const char *s, size_t n, int *all_zero)
{
    *all_zero = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        if (c != '0')
            *all_zero = 0;
    }
    return 1;
}

void ingest_traceparent(const char *in, char out[56])
{
    /* version "00" - trace-id (32 hex) - parent-id (16 hex) - flags (2 hex): 55 characters. */
    int z1, z2, z3;
    bool valid = in && strlen(in) == 55 && in[0] == '0' && in[1] == '0' && in[2] == '-' &&
                 in[35] == '-' && in[52] == '-' && is_lower_hex(in + 3, 32, &z1) && !z1 &&
                 is_lower_hex(in + 36, 16, &z2) && !z2 && is_lower_hex(in + 53, 2, &z3);
    memcpy(out, "00-", 3);
    if (valid) {
        memcpy(out + 3, in + 3, 32);
    } else {
        uint64_t hi, lo;
        do {
            hi = rng_next();
            lo = rng_next();
        } while ((hi | lo) == 0);
        hex64(hi, out + 3);
        hex64(lo, out + 19);
    }
    out[35] = '-';
    uint64_t span;
    do {
        span = rng_next();
    } while (span == 0);
    hex64(span, out + 36);
    out[52] = '-';
    if (valid) {
        out[53] = in[53];
        out[54] = in[54];
    } else {
        out[53] = '0';
        out[54] = '1';
    }
    out[55] = '\0';
}

/* --- spans ---
 *
 * With a tracer (OTEL_EXPORTER_OTLP_ENDPOINT set) every request is a SERVER span, a child of the
 * client's traceparent when it sent a valid one, and its events are published under a PRODUCER
 * child span whose context is the messages' traceparent header, so that the consumer's spans
 * join the same trace. Without a tracer the spans are NULL and ingest_traceparent() makes the
 * header. */

static epp_span_t *server_span_start(ingest_app_t *app, epp_http_req_t *http, const char *name,
                                     const char *route)
{
    if (!app->tracer)
        return NULL;
    epp_trace_ctx_t parent;
    const char *tp = epp_http_header(http, "traceparent");
    int has_parent = tp && epp_traceparent_parse(tp, &parent) == 0;
    epp_span_t *span =
        epp_span_start(app->tracer, name, EPP_SPAN_SERVER, has_parent ? &parent : NULL, 0);
    if (epp_span_recording(span)) {
        epp_span_set_str(span, "http.request.method", "POST");
        epp_span_set_str(span, "http.route", route);
    }
    return span;
}

/* Ends a span with the HTTP status of the reply (>= 500 is an error, as OTel asks for SERVER
 * spans). Accepts NULL. */
static void server_span_end(epp_span_t *span, unsigned status)
{
    if (!span)
        return;
    epp_span_set_int(span, "http.response.status_code", status);
    if (status >= 500)
        epp_span_set_status(span, EPP_SPAN_STATUS_ERROR, NULL);
    epp_span_end(span, 0);
}

/* Starts the PRODUCER span and writes the traceparent the messages carry into tp. */
static void producer_span_start(ingest_app_t *app, ingest_req_t *r, epp_http_req_t *http,
                                char tp[56])
{
    if (!r->span) {
        ingest_traceparent(epp_http_header(http, "traceparent"), tp);
        return;
    }
    char name[160];
    snprintf(name, sizeof name, "%s publish", app->conf->topic);
    r->pspan = epp_span_start(app->tracer, name, EPP_SPAN_PRODUCER, epp_span_ctx(r->span), 0);
    const epp_trace_ctx_t *ctx = epp_span_ctx(r->pspan ? r->pspan : r->span);
    epp_traceparent_format(ctx, tp);
    if (epp_span_recording(r->pspan)) {
        epp_span_set_str(r->pspan, "messaging.system", "kafka");
        epp_span_set_str(r->pspan, "messaging.operation.type", "publish");
        epp_span_set_str(r->pspan, "messaging.destination.name", app->conf->topic);
    }
}

/* Ends both spans of a request once its reply is decided. */
static void req_spans_end(ingest_req_t *r, unsigned status, size_t accepted, size_t failed)
{
    if (r->pspan) {
        epp_span_set_int(r->pspan, "messaging.batch.message_count", (int64_t)(accepted + failed));
        if (failed)
            epp_span_set_status(r->pspan, EPP_SPAN_STATUS_ERROR, "not acknowledged by Kafka");
        epp_span_end(r->pspan, 0);
        r->pspan = NULL;
    }
    if (r->span && r->is_batch) {
        epp_span_set_int(r->span, "epp.events.accepted", (int64_t)accepted);
        epp_span_set_int(r->span, "epp.events.rejected", (int64_t)(r->n - accepted));
    }
    server_span_end(r->span, status);
    r->span = NULL;
}

/* --- replies --- */

static void reply_fail(ingest_app_t *app, epp_http_req_t *http, const ingest_fail_t *fail,
                       epp_span_t *span)
{
    count_rejected(app, fail->code, 1);
    epp_http_reply_error(http, fail->status, fail->code, fail->message,
                         fail->field[0] ? fail->field : NULL, 0);
    server_span_end(span, fail->status);
}

static void reply_event_error(ingest_app_t *app, epp_http_req_t *http, int rc,
                              const epp_event_error_t *err, epp_span_t *span)
{
    const char *code = err->code ? err->code : "invalid_json";
    unsigned status = ingest_event_error_status(rc);
    count_rejected(app, code, 1);
    epp_http_reply_error(http, status, code, err->message, err->field[0] ? err->field : NULL, 0);
    server_span_end(span, status);
}

/* The 503 code and message for an event that Kafka did not take. */
static void kafka_failure(const ingest_res_t *r, const char **code, const char **msg,
                          unsigned *retry)
{
    if (r->send_rc == EPP_EAGAIN) {
        *code = "queue_full";
        *msg = "the producer queue is full; retry later";
        *retry = RETRY_QUEUE_FULL;
    } else {
        *code = "kafka_unavailable";
        /* Not "not stored": a purged or timed-out message may still have reached Kafka. */
        *msg = r->send_rc == EPP_ETOOBIG ? "the event is too large for Kafka"
               : r->kerr == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
                   ? "Kafka did not acknowledge the event within the delivery timeout"
                   : "Kafka did not acknowledge the event; retry with the same event_id";
        *retry = RETRY_UNAVAILABLE;
    }
}

static void req_free(ingest_req_t *r)
{
    if (r->res != &r->one) {
        for (size_t i = 0; i < r->n; i++)
            free(r->res[i].err);
        free(r->res);
    }
    free(r);
}

static void finish_single(ingest_req_t *r)
{
    ingest_res_t *res = &r->one;
    if (res->state == RES_ACCEPTED) {
        char body[96];
        int len = snprintf(body, sizeof body, "{\"event_id\":\"%s\",\"status\":\"accepted\"}",
                           res->event_id);
        epp_http_reply_json(r->http, 202, body, (size_t)len);
        req_spans_end(r, 202, 1, 0);
        return;
    }
    /* The error shape of docs/contract.md §4 plus the event_id, so that a client can resend the
     * event under the same id and have it stored once whatever happened to this attempt. */
    const char *code, *msg;
    unsigned retry;
    char body[320], ra[16];
    kafka_failure(res, &code, &msg, &retry);
    count_rejected(r->app, code, 1);
    int len = snprintf(body, sizeof body,
                       "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"},\"event_id\":\"%s\"}", code,
                       msg, res->event_id);
    snprintf(ra, sizeof ra, "%u", retry);
    epp_http_add_header(r->http, "Retry-After", ra);
    epp_http_reply_json(r->http, 503, body, (size_t)len);
    req_spans_end(r, 503, 0, 1);
}

static void append_error(epp_buf_t *out, const char *code, const char *msg, const char *field)
{
    epp_buf_append_str(out, "\"error\":{\"code\":");
    epp_json_write_string(out, code, strlen(code));
    epp_buf_append_str(out, ",\"message\":");
    epp_json_write_string(out, msg, strlen(msg));
    if (field && *field) {
        epp_buf_append_str(out, ",\"field\":");
        epp_json_write_string(out, field, strlen(field));
    }
    epp_buf_append_char(out, '}');
}

static void finish_batch(ingest_req_t *r)
{
    size_t accepted = 0, invalid = 0, failed = 0;
    unsigned retry = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->res[i].state == RES_ACCEPTED)
            accepted++;
        else if (r->res[i].state == RES_INVALID)
            invalid++;
        else
            failed++;
    }
    /* Written with appends, not printf: this runs once per event of every batch, on the
     * delivery-report thread. */
    epp_buf_t out = {0};
    char num[24];
    int oom = epp_buf_reserve(&out, 64 + accepted * 72 + (invalid + failed) * 256);
    snprintf(num, sizeof num, "%zu", accepted);
    epp_buf_append_str(&out, "{\"accepted\":");
    epp_buf_append_str(&out, num);
    snprintf(num, sizeof num, "%zu", invalid + failed);
    epp_buf_append_str(&out, ",\"rejected\":");
    epp_buf_append_str(&out, num);
    epp_buf_append_str(&out, ",\"results\":[");
    for (size_t i = 0; i < r->n; i++) {
        ingest_res_t *res = &r->res[i];
        snprintf(num, sizeof num, "%zu", i);
        epp_buf_append_str(&out, i ? ",{\"index\":" : "{\"index\":");
        epp_buf_append_str(&out, num);
        if (res->state != RES_INVALID) {
            epp_buf_append_str(&out, ",\"event_id\":\"");
            epp_buf_append(&out, res->event_id, EPP_UUID_STRLEN);
            epp_buf_append_char(&out, '"');
        }
        if (res->state == RES_INVALID) {
            const epp_event_error_t *e = res->err;
            const char *code = e && e->code ? e->code : "invalid_json";
            count_rejected(r->app, code, 1);
            epp_buf_append_char(&out, ',');
            append_error(&out, code, e ? e->message : "invalid event", e ? e->field : NULL);
        } else if (res->state != RES_ACCEPTED) {
            const char *code, *msg;
            unsigned ra;
            kafka_failure(res, &code, &msg, &ra);
            retry = ra > retry ? ra : retry;
            count_rejected(r->app, code, 1);
            epp_buf_append_char(&out, ',');
            append_error(&out, code, msg, NULL);
        }
        epp_buf_append_char(&out, '}');
    }
    oom |= epp_buf_append_str(&out, "]}");
    /* 202 when anything was stored (the body says what was not); 503 when nothing was and Kafka
     * is to blame (retrying may work); 400 when every event was invalid. */
    unsigned status = accepted ? 202 : failed ? 503 : 400;
    if (status != 202 && retry) {
        snprintf(num, sizeof num, "%u", retry);
        epp_http_add_header(r->http, "Retry-After", num);
    }
    if (oom == 0)
        epp_http_reply_json(r->http, status, out.data, out.len);
    else
        epp_http_reply_error(r->http, status = 503, "out_of_memory", "out of memory", NULL, 1);
    epp_buf_free(&out);
    req_spans_end(r, status, accepted, failed);
}

/* Drops one hold on r; the last one replies and frees. */
static void req_release(ingest_req_t *r)
{
    if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) != 1)
        return;
    if (r->is_batch)
        finish_batch(r);
    else
        finish_single(r);
    req_free(r);
}

void ingest_app_on_delivery(void *msg_opaque, rd_kafka_resp_err_t err, void *ud)
{
    ingest_app_t *app = ud;
    ingest_res_t *res = msg_opaque;
    res->kerr = err;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        res->state = RES_ACCEPTED;
        if (app->accepted)
            epp_series_inc(app->accepted);
    } else {
        res->state = RES_FAILED;
    }
    req_release(res->req);
}

/* Serialises ev and hands it to the producer; res records the outcome. The caller holds one
 * reference on res->req, so a delivery report cannot free it under us. */
static void send_event(ingest_app_t *app, ingest_res_t *res, const epp_event_t *ev,
                       const char *traceparent)
{
    ingest_req_t *r = res->req;
    epp_uuid_format(&ev->event_id, res->event_id);
    epp_buf_t value = {0};
    if (epp_event_serialize(ev, &value) < 0) {
        epp_buf_free(&value);
        res->state = RES_FAILED;
        res->send_rc = EPP_ENOMEM;
        return;
    }
    size_t len = value.len;
    char *data = epp_buf_steal(&value);
    res->state = RES_SENT;
    atomic_fetch_add_explicit(&r->pending, 1, memory_order_relaxed);
    int rc = ingest_producer_send(app->producer, ev->user_id, ev->user_id_len, data, len,
                                  traceparent, res);
    if (rc < 0) {
        free(data);
        res->state = RES_FAILED;
        res->send_rc = rc;
        atomic_fetch_sub_explicit(&r->pending, 1, memory_order_relaxed);
    }
}

/* Common request checks: Content-Type, then Content-Encoding and the size limit. On failure
 * the request has been answered and 0 is returned. */
static int read_body(ingest_app_t *app, epp_http_req_t *http, bool batch, epp_buf_t *scratch,
                     const char **body, size_t *len, ingest_media_t *media, epp_span_t *span)
{
    ingest_fail_t fail = {0};
    *media = ingest_media_type(epp_http_header(http, "Content-Type"));
    if (*media == INGEST_MEDIA_OTHER || (!batch && *media != INGEST_MEDIA_JSON)) {
        fail.status = 415;
        fail.code = "unsupported_media_type";
        snprintf(fail.message, sizeof fail.message, "Content-Type must be %s",
                 batch ? "application/json or application/x-ndjson" : "application/json");
        reply_fail(app, http, &fail, span);
        return 0;
    }
    size_t raw_len;
    const char *raw = epp_http_body(http, &raw_len);
    if (ingest_body_decode(raw, raw_len, epp_http_header(http, "Content-Encoding"),
                           (size_t)app->conf->max_body_bytes, scratch, body, len, &fail) < 0) {
        reply_fail(app, http, &fail, span);
        return 0;
    }
    return 1;
}

static void handle_event(epp_http_req_t *http, void *ud)
{
    ingest_app_t *app = ud;
    epp_span_t *span = server_span_start(app, http, "POST /events", "/events");
    epp_buf_t scratch = {0};
    const char *body;
    size_t len;
    ingest_media_t media;
    if (!read_body(app, http, false, &scratch, &body, &len, &media, span)) {
        epp_buf_free(&scratch);
        return;
    }
    epp_event_t ev;
    epp_event_error_t err = {0};
    epp_event_init(&ev);
    int rc = epp_event_parse(body, len, EPP_EVENT_FROM_CLIENT, epp_time_now_us(), &ev, &err);
    epp_buf_free(&scratch);
    if (rc < 0) {
        reply_event_error(app, http, rc, &err, span);
        epp_event_clear(&ev);
        return;
    }
    ingest_req_t *r = calloc(1, sizeof *r);
    if (!r) {
        epp_event_clear(&ev);
        epp_http_reply_error(http, 503, "out_of_memory", "out of memory", NULL, 1);
        server_span_end(span, 503);
        return;
    }
    r->app = app;
    r->http = http;
    r->span = span;
    r->n = 1;
    r->res = &r->one;
    r->one.req = r;
    atomic_init(&r->pending, 1);
    char tp[56];
    producer_span_start(app, r, http, tp);
    epp_http_suspend(http);
    send_event(app, &r->one, &ev, tp);
    epp_event_clear(&ev);
    req_release(r);
}

/* The batch visitor: each valid event is sent as soon as it is validated, so a batch never
 * holds more than one parsed event at a time. */
typedef struct {
    ingest_app_t *app;
    ingest_req_t *r;
    char traceparent[56];
} batch_ctx_t;

static int batch_begin(size_t n, void *ud)
{
    batch_ctx_t *ctx = ud;
    ctx->r->res = calloc(n, sizeof *ctx->r->res);
    if (!ctx->r->res) {
        ctx->r->res = &ctx->r->one;
        return EPP_ENOMEM;
    }
    ctx->r->n = n;
    return 0;
}

static int batch_event(size_t index, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                       void *ud)
{
    batch_ctx_t *ctx = ud;
    ingest_req_t *r = ctx->r;
    ingest_res_t *res = &r->res[index];
    res->req = r;
    if (rc < 0) {
        res->state = RES_INVALID;
        res->err = malloc(sizeof *res->err);
        if (res->err)
            *res->err = *err;
        return 0;
    }
    if (!r->suspended) {
        /* The first valid event: from now on the reply may come from the delivery thread. */
        r->suspended = true;
        epp_http_suspend(r->http);
    }
    send_event(ctx->app, res, ev, ctx->traceparent);
    return 0;
}

static void handle_batch(epp_http_req_t *http, void *ud)
{
    ingest_app_t *app = ud;
    epp_span_t *span = server_span_start(app, http, "POST /events/batch", "/events/batch");
    epp_buf_t scratch = {0};
    const char *body;
    size_t len;
    ingest_media_t media;
    if (!read_body(app, http, true, &scratch, &body, &len, &media, span)) {
        epp_buf_free(&scratch);
        return;
    }
    ingest_req_t *r = calloc(1, sizeof *r);
    if (!r) {
        epp_buf_free(&scratch);
        epp_http_reply_error(http, 503, "out_of_memory", "out of memory", NULL, 1);
        server_span_end(span, 503);
        return;
    }
    r->app = app;
    r->http = http;
    r->span = span;
    r->is_batch = true;
    r->res = &r->one;
    atomic_init(&r->pending, 1);
    batch_ctx_t ctx = {.app = app, .r = r};
    producer_span_start(app, r, http, ctx.traceparent);
    ingest_batch_visitor_t vis = {.begin = batch_begin, .event = batch_event, .ud = &ctx};
    ingest_fail_t fail = {0};
    int rc = ingest_batch_parse(body, len, media, (size_t)app->conf->max_batch_events,
                                epp_time_now_us(), &vis, &fail);
    epp_buf_free(&scratch);
    if (rc < 0) {
        /* Only begin() can fail once the body is a usable batch, and then nothing was sent. */
        if (!fail.code) {
            fail.status = 503;
            fail.code = "out_of_memory";
            snprintf(fail.message, sizeof fail.message, "out of memory");
        }
        /* Nothing was published: the producer span is dropped with the request's. */
        epp_span_end(r->pspan, 0);
        r->pspan = NULL;
        reply_fail(app, http, &fail, span);
        req_free(r);
        return;
    }
    /* Drops the handler's hold. Without a valid event nothing was suspended and the reply (all
     * rejected) goes out right here, on this thread. */
    req_release(r);
}

static void handle_debug_fatal(epp_http_req_t *http, void *ud)
{
    ingest_app_t *app = ud;
    int rc = ingest_producer_inject_fatal(app->producer);
    if (rc < 0) {
        epp_http_reply_error(http, 500, "internal", "could not inject a fatal error", NULL, 0);
        return;
    }
    static const char ok[] = "{\"injected\":\"fatal\"}";
    epp_http_reply_json(http, 200, ok, sizeof ok - 1);
}

/* --- public --- */

void ingest_app_set_tracer(ingest_app_t *app, epp_tracer_t *tracer)
{
    app->tracer = tracer;
}

ingest_app_t *ingest_app_create(const ingest_conf_t *conf, epp_metrics_t *metrics)
{
    ingest_app_t *app = calloc(1, sizeof *app);
    if (!app)
        return NULL;
    app->conf = conf;
    if (metrics) {
        epp_metric_t *acc =
            epp_metrics_counter(metrics, "epp_ingest_events_accepted_total",
                                "Events acknowledged by Kafka and answered as accepted", NULL);
        app->accepted = acc ? epp_metric_default(acc) : NULL;
        epp_metric_t *rej = epp_metrics_counter(
            metrics, "epp_ingest_events_rejected_total",
            "Events (or whole requests that failed before their events were read) not accepted, "
            "by reason",
            "reason");
        for (size_t i = 0; rej && i < N_REASONS; i++)
            app->rejected[i] = epp_metric_series(rej, reject_reasons[i]);
    }
    return app;
}

void ingest_app_set_producer(ingest_app_t *app, ingest_producer_t *producer)
{
    app->producer = producer;
}

int ingest_app_routes(ingest_app_t *app, epp_http_server_t *srv)
{
    int rc = epp_http_route(srv, "POST", "/events", handle_event, app, 0);
    if (!rc)
        rc = epp_http_route(srv, "POST", "/events/batch", handle_batch, app, 0);
    if (!rc && app->conf->test_faults)
        rc = epp_http_route(srv, "POST", "/debug/fatal", handle_debug_fatal, app, 0);
    return rc;
}

int ingest_app_ready(void *ud, char *reason, size_t reason_size)
{
    ingest_app_t *app = ud;
    if (app->producer && ingest_producer_ready(app->producer))
        return 1;
    snprintf(reason, reason_size, "kafka unreachable");
    return 0;
}

void ingest_app_destroy(ingest_app_t *app)
{
    free(app);
}
