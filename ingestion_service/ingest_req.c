/* The request machinery shared by every ingestion route. See ingest_req.h. */
#include "ingest_req.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_json.h"
#include "epp_time.h"
#include "ingest_http.h"

/* Reasons counted by epp_ingest_events_rejected_total; anything else counts as "other". The
 * order is ingest_app_t.rejected's. */
static const char *const ingest_reject_reasons[INGEST_N_REASONS] = {
    "invalid_json",      "invalid_field",
    "missing_field",     "unknown_field",
    "payload_too_large", "unsupported_media_type",
    "invalid_encoding",  "kafka_unavailable",
    "queue_full",        "other",
};

/* --- metrics --- */

void ingest_req_metrics(ingest_app_t *app, epp_metrics_t *metrics)
{
    epp_metric_t *acc =
        epp_metrics_counter(metrics, "epp_ingest_events_accepted_total",
                            "Events acknowledged by Kafka and answered as accepted", NULL);
    app->accepted = acc ? epp_metric_default(acc) : NULL;
    epp_metric_t *rej = epp_metrics_counter(
        metrics, "epp_ingest_events_rejected_total",
        "Events (or whole requests that failed before their events were read) not accepted, "
        "by reason",
        "reason");
    for (size_t i = 0; rej && i < INGEST_N_REASONS; i++)
        app->rejected[i] = epp_metric_series(rej, ingest_reject_reasons[i]);
}

void ingest_count_rejected(ingest_app_t *app, const char *reason, double n)
{
    size_t i = 0, len = strlen(reason);
    while (i + 1 < INGEST_N_REASONS && !(strlen(ingest_reject_reasons[i]) == len &&
                                         memcmp(ingest_reject_reasons[i], reason, len) == 0))
        i++;
    if (app->rejected[i])
        epp_series_add(app->rejected[i], n);
}

/* --- spans ---
 *
 * With a tracer (OTEL_EXPORTER_OTLP_ENDPOINT set) every request is a SERVER span, a child of the
 * client's traceparent when it sent a valid one, and its events are published under a PRODUCER
 * child span whose context is the messages' traceparent header, so that the consumer's spans
 * join the same trace. Without a tracer the spans are NULL and epp_traceparent_child() makes the
 * header. */

epp_span_t *ingest_server_span_start(ingest_app_t *app, epp_http_req_t *http, const char *name,
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

/* OTel asks for >= 500 to be an error on SERVER spans. */
void ingest_server_span_end(epp_span_t *span, unsigned status)
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
        epp_traceparent_child(epp_http_header(http, "traceparent"), tp);
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
void ingest_req_spans_end(ingest_req_t *r, unsigned status, size_t accepted, size_t failed)
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
    ingest_server_span_end(r->span, status);
    r->span = NULL;
}

/* --- requests --- */

void ingest_kafka_failure(const ingest_res_t *res, const char **code, const char **msg,
                          unsigned *retry)
{
    if (res->send_rc == EPP_EAGAIN) {
        *code = "queue_full";
        *msg = "the producer queue is full; retry later";
        *retry = INGEST_RETRY_QUEUE_FULL;
    } else if (res->send_rc == EPP_ENOMEM) {
        *code = "out_of_memory";
        *msg = "out of memory; retry later";
        *retry = INGEST_RETRY_QUEUE_FULL;
    } else {
        *code = "kafka_unavailable";
        /* Not "not stored": a purged or timed-out message may still have reached Kafka. */
        *msg = res->send_rc == EPP_ETOOBIG ? "the event is too large for Kafka"
               : res->kerr == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
                   ? "Kafka did not acknowledge the event within the delivery timeout"
                   : "Kafka did not acknowledge the event; retry with the same event_id";
        *retry = INGEST_RETRY_UNAVAILABLE;
    }
}

void ingest_append_error(epp_buf_t *out, const char *code, const char *msg, const char *field)
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

void ingest_req_reply(ingest_req_t *r, unsigned status, epp_buf_t *out, int oom, size_t accepted,
                      size_t failed)
{
    if (oom == 0)
        epp_http_reply_json(r->http, status, out->data, out->len);
    else
        epp_http_reply_error(r->http, status = 503, "out_of_memory", "out of memory", NULL, 1);
    epp_buf_free(out);
    ingest_req_spans_end(r, status, accepted, failed);
}

ingest_req_t *ingest_req_create(ingest_app_t *app, epp_http_req_t *http, epp_span_t *span,
                                bool is_batch, ingest_finish_fn finish)
{
    ingest_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->app = app;
    r->http = http;
    r->span = span;
    r->is_batch = is_batch;
    r->finish = finish;
    r->res = &r->one;
    r->one.req = r;
    atomic_init(&r->pending, 1);
    producer_span_start(app, r, http, r->traceparent);
    return r;
}

int ingest_req_results(ingest_req_t *r, size_t n)
{
    ingest_res_t *res = calloc(n, sizeof *res);
    if (!res)
        return EPP_ENOMEM;
    for (size_t i = 0; i < n; i++)
        res[i].req = r;
    r->res = res;
    r->n = n;
    return 0;
}

void ingest_req_reject(ingest_res_t *res, const epp_event_error_t *err, const char *ref,
                       size_t ref_len)
{
    res->state = INGEST_RES_INVALID;
    res->err = malloc(sizeof *res->err);
    if (res->err)
        *res->err = *err;
    if (ref) {
        res->ref = malloc(ref_len + 1);
        if (res->ref) {
            memcpy(res->ref, ref, ref_len);
            res->ref[ref_len] = '\0';
        }
    }
}

static void req_free(ingest_req_t *r)
{
    if (r->res != &r->one) {
        for (size_t i = 0; i < r->n; i++) {
            free(r->res[i].err);
            free(r->res[i].ref);
        }
        free(r->res);
    } else {
        free(r->one.err);
        free(r->one.ref);
    }
    free(r);
}

void ingest_req_abandon(ingest_req_t *r, epp_span_t **span)
{
    /* Nothing was published: the producer span is dropped with the request. */
    epp_span_end(r->pspan, 0);
    *span = r->span;
    req_free(r);
}

void ingest_req_release(ingest_req_t *r)
{
    if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) != 1)
        return;
    r->finish(r);
    req_free(r);
}

void ingest_app_on_delivery(void *msg_opaque, rd_kafka_resp_err_t err, void *ud)
{
    ingest_app_t *app = ud;
    ingest_res_t *res = msg_opaque;
    res->kerr = err;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        res->state = INGEST_RES_ACCEPTED;
        if (app->accepted)
            epp_series_inc(app->accepted);
    } else {
        res->state = INGEST_RES_FAILED;
    }
    ingest_req_release(res->req);
}

void ingest_req_send(ingest_res_t *res, const epp_event_t *ev)
{
    ingest_req_t *r = res->req;
    if (!r->suspended) {
        /* From the first send on, the reply may come from the delivery-report side. */
        r->suspended = true;
        epp_http_suspend(r->http);
    }
    epp_uuid_format(&ev->event_id, res->event_id);
    epp_buf_t value = {0};
    if (epp_event_serialize(ev, &value) < 0) {
        epp_buf_free(&value);
        res->state = INGEST_RES_FAILED;
        res->send_rc = EPP_ENOMEM;
        return;
    }
    size_t len = value.len;
    char *data = epp_buf_steal(&value);
    res->state = INGEST_RES_SENT;
    atomic_fetch_add_explicit(&r->pending, 1, memory_order_relaxed);
    int rc = ingest_producer_send(r->app->producer, ev->user_id, ev->user_id_len, data, len,
                                  r->traceparent, res);
    if (rc < 0) {
        free(data);
        res->state = INGEST_RES_FAILED;
        res->send_rc = rc;
        atomic_fetch_sub_explicit(&r->pending, 1, memory_order_relaxed);
    }
}
