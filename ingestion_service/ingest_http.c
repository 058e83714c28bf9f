/* POST /events and POST /events/batch, answered after Kafka's acknowledgement; the app's
 * public functions. See ingest_http.h; the request machinery is ingest_req.c. */
#include "ingest_http.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "epp_error.h"
#include "epp_event.h"
#include "epp_json.h"
#include "epp_log.h"
#include "epp_time.h"
#include "epp_uuid.h"
#include "ingest_batch.h"
#include "ingest_req.h"
#include "ingest_segment_http.h"

/* --- replies --- */

static void reply_fail(ingest_app_t *app, epp_http_req_t *http, const ingest_fail_t *fail,
                       epp_span_t *span)
{
    ingest_count_rejected(app, fail->code, 1);
    epp_http_reply_error(http, fail->status, fail->code, fail->message,
                         fail->field[0] ? fail->field : NULL, 0);
    ingest_server_span_end(span, fail->status);
}

static void reply_event_error(ingest_app_t *app, epp_http_req_t *http, int rc,
                              const epp_event_error_t *err, epp_span_t *span)
{
    const char *code = err->code ? err->code : "invalid_json";
    unsigned status = ingest_event_error_status(rc);
    ingest_count_rejected(app, code, 1);
    epp_http_reply_error(http, status, code, err->message, err->field[0] ? err->field : NULL, 0);
    ingest_server_span_end(span, status);
}

static void finish_single(ingest_req_t *r)
{
    ingest_res_t *res = &r->one;
    if (res->state == INGEST_RES_ACCEPTED) {
        char body[96];
        int len = snprintf(body, sizeof body, "{\"event_id\":\"%s\",\"status\":\"accepted\"}",
                           res->event_id);
        epp_http_reply_json(r->http, 202, body, (size_t)len);
        ingest_req_spans_end(r, 202, 1, 0);
        return;
    }
    /* The error shape of docs/contract.md §4 plus the event_id, so that a client can resend the
     * event under the same id and have it stored once whatever happened to this attempt. */
    const char *code, *msg;
    unsigned retry;
    char body[320], ra[16];
    ingest_kafka_failure(res, &code, &msg, &retry);
    ingest_count_rejected(r->app, code, 1);
    int len = snprintf(body, sizeof body,
                       "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"},\"event_id\":\"%s\"}", code,
                       msg, res->event_id);
    snprintf(ra, sizeof ra, "%u", retry);
    epp_http_add_header(r->http, "Retry-After", ra);
    epp_http_reply_json(r->http, 503, body, (size_t)len);
    ingest_req_spans_end(r, 503, 0, 1);
}

static void finish_batch(ingest_req_t *r)
{
    size_t accepted = 0, invalid = 0, failed = 0;
    unsigned retry = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->res[i].state == INGEST_RES_ACCEPTED)
            accepted++;
        else if (r->res[i].state == INGEST_RES_INVALID)
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
        if (res->state != INGEST_RES_INVALID) {
            epp_buf_append_str(&out, ",\"event_id\":\"");
            epp_buf_append(&out, res->event_id, EPP_UUID_STRLEN);
            epp_buf_append_char(&out, '"');
        }
        if (res->state == INGEST_RES_INVALID) {
            const epp_event_error_t *e = res->err;
            const char *code = e && e->code ? e->code : "invalid_json";
            ingest_count_rejected(r->app, code, 1);
            epp_buf_append_char(&out, ',');
            ingest_append_error(&out, code, e ? e->message : "invalid event", e ? e->field : NULL);
        } else if (res->state != INGEST_RES_ACCEPTED) {
            const char *code, *msg;
            unsigned ra;
            ingest_kafka_failure(res, &code, &msg, &ra);
            retry = ra > retry ? ra : retry;
            ingest_count_rejected(r->app, code, 1);
            epp_buf_append_char(&out, ',');
            ingest_append_error(&out, code, msg, NULL);
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
    ingest_req_reply(r, status, &out, oom, accepted, failed);
}

/* Common request checks: Content-Type, then Content-Encoding and the size limit. On failure
 * the request has been answered and 0 is returned. */
static int read_body(ingest_app_t *app, epp_http_req_t *http, bool batch, epp_buf_t *scratch,
                     const char **body, size_t *len, ingest_media_t *media, epp_span_t *span)
{
    ingest_fail_t fail = {0};
    *media = ingest_media_type(epp_http_header(http, "Content-Type"));
    if (*media == INGEST_MEDIA_OTHER || *media == INGEST_MEDIA_TEXT ||
        (!batch && *media != INGEST_MEDIA_JSON)) {
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
    epp_span_t *span = ingest_server_span_start(app, http, "POST /events", "/events");
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
    ingest_req_t *r = ingest_req_create(app, http, span, false, finish_single);
    if (!r) {
        epp_event_clear(&ev);
        epp_http_reply_error(http, 503, "out_of_memory", "out of memory", NULL, 1);
        ingest_server_span_end(span, 503);
        return;
    }
    r->n = 1;
    ingest_req_send(&r->one, &ev);
    epp_event_clear(&ev);
    ingest_req_release(r);
}

/* The batch visitor: each valid event is sent as soon as it is validated, so a batch never
 * holds more than one parsed event at a time. */
static int batch_begin(size_t n, void *ud)
{
    return ingest_req_results(ud, n);
}

static int batch_event(size_t index, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                       void *ud)
{
    ingest_req_t *r = ud;
    if (rc < 0)
        ingest_req_reject(&r->res[index], err, NULL, 0);
    else
        ingest_req_send(&r->res[index], ev);
    return 0;
}

static void handle_batch(epp_http_req_t *http, void *ud)
{
    ingest_app_t *app = ud;
    epp_span_t *span = ingest_server_span_start(app, http, "POST /events/batch", "/events/batch");
    epp_buf_t scratch = {0};
    const char *body;
    size_t len;
    ingest_media_t media;
    if (!read_body(app, http, true, &scratch, &body, &len, &media, span)) {
        epp_buf_free(&scratch);
        return;
    }
    ingest_req_t *r = ingest_req_create(app, http, span, true, finish_batch);
    if (!r) {
        epp_buf_free(&scratch);
        epp_http_reply_error(http, 503, "out_of_memory", "out of memory", NULL, 1);
        ingest_server_span_end(span, 503);
        return;
    }
    ingest_batch_visitor_t vis = {.begin = batch_begin, .event = batch_event, .ud = r};
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
        ingest_req_abandon(r, &span);
        reply_fail(app, http, &fail, span);
        return;
    }
    /* Drops the handler's hold. Without a valid event nothing was suspended and the reply (all
     * rejected) goes out right here, on this thread. */
    ingest_req_release(r);
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
    if (metrics)
        ingest_req_metrics(app, metrics);
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
    if (!rc)
        rc = ingest_segment_routes(app, srv);
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

static void wait_answered(epp_http_server_t *srv, int64_t deadline_us)
{
    while (epp_http_inflight(srv) > 0 && epp_time_mono_us() < deadline_us) {
        struct timespec ts = {0, 10L * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void ingest_app_shutdown(ingest_app_t *app, epp_http_server_t *srv)
{
    const ingest_conf_t *conf = app->conf;
    ingest_producer_t *producer = app->producer;
    epp_http_quiesce(srv);
    int64_t deadline = epp_time_mono_us() + conf->shutdown_timeout_ms * 1000;
    wait_answered(srv, deadline);
    /* Requests still arriving on open connections were served above. From here each one gets
     * 503 without its handler, and once the handlers already called are answered nothing can
     * produce: a message produced after the drain below would be reported after its request
     * and its connection are gone. */
    epp_http_refuse(srv);
    wait_answered(srv, deadline);
    int64_t left_ms = (deadline - epp_time_mono_us()) / 1000;
    /* Anything still queued now gets a failure report, hence a truthful 503. */
    size_t unreported = ingest_producer_drain(producer, left_ms > 0 ? (int)left_ms : 0, 1);
    char inflight[24], unrep[24];
    snprintf(inflight, sizeof inflight, "%u", epp_http_inflight(srv));
    snprintf(unrep, sizeof unrep, "%zu", unreported);
    EPP_LOGKV(EPP_LOG_INFO, "drained", "unanswered_requests", inflight, "unreported_messages",
              unrep);
}
