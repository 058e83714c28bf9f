/* The Segment-compatible /v1 routes. See ingest_segment_http.h, and docs/segment.md for the
 * answers. */
#include "ingest_segment_http.h"

#include <stdio.h>
#include <string.h>

#include "epp_error.h"
#include "epp_json.h"
#include "epp_log.h"
#include "epp_time.h"
#include "ingest_batch.h"
#include "ingest_segment.h"

/* A messageId is echoed in a refusal up to this many bytes (longer ones are refused anyway). */
#define MAX_REF 256

/* --- replies --- */

/* Appends "rejected":[{"index":i[,"messageId":...],"error":{...}},...] for the refused messages.
 * Each is counted by reason; the first is logged (one line per request, so that a client
 * sending garbage cannot flood the log). */
static void append_rejected(ingest_req_t *r, epp_buf_t *out, size_t invalid)
{
    char num[24];
    int first = 1;
    epp_buf_append_str(out, "\"rejected\":[");
    for (size_t i = 0; i < r->n; i++) {
        const ingest_res_t *res = &r->res[i];
        if (res->state != INGEST_RES_INVALID)
            continue;
        const epp_event_error_t *e = res->err;
        const char *code = e && e->code ? e->code : "invalid_json";
        const char *msg = e ? e->message : "invalid message";
        ingest_count_rejected(r->app, code, 1);
        snprintf(num, sizeof num, "%zu", i);
        epp_buf_append_str(out, first ? "{\"index\":" : ",{\"index\":");
        epp_buf_append_str(out, num);
        if (res->ref) {
            epp_buf_append_str(out, ",\"messageId\":");
            epp_json_write_string(out, res->ref, strlen(res->ref));
        }
        epp_buf_append_char(out, ',');
        ingest_append_error(out, code, msg, e ? e->field : NULL);
        epp_buf_append_char(out, '}');
        if (first) {
            char total[24];
            snprintf(total, sizeof total, "%zu", invalid);
            EPP_LOGKV(EPP_LOG_WARN, "segment messages refused", "route",
                      epp_http_route_pattern(r->http), "refused", total, "first_index", num,
                      "first_message_id", res->ref ? res->ref : "", "first_code", code,
                      "first_message", msg, "client", epp_http_client_ip(r->http));
        }
        first = 0;
    }
    epp_buf_append_char(out, ']');
}

/* The reply, once every stored message has its delivery report:
 *  - 200 {"success":true} when every message was stored;
 *  - 200 {"success":true,"accepted":n,"rejected":[...]} when some were refused (invalid: a
 *    retry cannot help, and the SDKs would drop the whole batch on a 400);
 *  - 400 {"error":{...}[,"rejected":[...]]} when none was valid;
 *  - 503 + Retry-After {"error":{...}} when Kafka did not take one of them: the SDK resends the
 *    request, and the messages already stored are stored once (event_id from messageId). */
static void finish_segment(ingest_req_t *r)
{
    size_t accepted = 0, invalid = 0, failed = 0;
    const ingest_res_t *first_failed = NULL;
    for (size_t i = 0; i < r->n; i++) {
        if (r->res[i].state == INGEST_RES_ACCEPTED) {
            accepted++;
        } else if (r->res[i].state == INGEST_RES_INVALID) {
            invalid++;
        } else {
            failed++;
            first_failed = first_failed ? first_failed : &r->res[i];
        }
    }
    epp_buf_t out = {0};
    unsigned status;
    int oom = epp_buf_reserve(&out, 64 + invalid * 320);
    if (failed) {
        const char *code, *msg;
        unsigned retry;
        ingest_kafka_failure(first_failed, &code, &msg, &retry);
        ingest_count_rejected(r->app, code, (double)failed);
        char ra[16];
        snprintf(ra, sizeof ra, "%u", retry);
        epp_http_add_header(r->http, "Retry-After", ra);
        status = 503;
        epp_buf_append_char(&out, '{');
        ingest_append_error(&out, code, msg, NULL);
        if (invalid) {
            epp_buf_append_char(&out, ',');
            append_rejected(r, &out, invalid);
        }
        oom |= epp_buf_append_char(&out, '}');
    } else if (!accepted) {
        status = 400;
        const epp_event_error_t *e = r->res[0].err;
        if (r->is_batch) {
            epp_buf_append_char(&out, '{');
            ingest_append_error(&out, "invalid_messages",
                                "no message of the batch is valid; see rejected", NULL);
        } else {
            /* A single message: the error is the message's own. */
            epp_buf_append_char(&out, '{');
            ingest_append_error(&out, e && e->code ? e->code : "invalid_json",
                                e ? e->message : "invalid message", e ? e->field : NULL);
        }
        epp_buf_append_char(&out, ',');
        append_rejected(r, &out, invalid);
        oom |= epp_buf_append_char(&out, '}');
    } else if (invalid) {
        status = 200;
        char num[24];
        snprintf(num, sizeof num, "%zu", accepted);
        epp_buf_append_str(&out, "{\"success\":true,\"accepted\":");
        epp_buf_append_str(&out, num);
        epp_buf_append_char(&out, ',');
        append_rejected(r, &out, invalid);
        oom |= epp_buf_append_char(&out, '}');
    } else {
        status = 200;
        oom |= epp_buf_append_str(&out, "{\"success\":true}");
    }
    ingest_req_reply(r, status, &out, oom, accepted, failed);
}

/* --- the handler --- */

typedef struct {
    ingest_req_t *r;
    int auth_answered; /* epp_http_auth_key() refused the request (and answered it) */
    unsigned auth_status;
} seg_handler_t;

static int on_begin(size_t n, const char *write_key, size_t write_key_len, void *ud)
{
    seg_handler_t *h = ud;
    int rc = epp_http_auth_key(h->r->http, write_key, write_key_len);
    if (rc < 0) {
        h->auth_answered = 1;
        h->auth_status = rc == EPP_EAGAIN ? 429 : 401;
        return rc;
    }
    if (n == 1) {
        h->r->n = 1;
        return 0;
    }
    return ingest_req_results(h->r, n);
}

static int on_message(size_t index, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                      const char *message_id, size_t message_id_len, void *ud)
{
    seg_handler_t *h = ud;
    ingest_res_t *res = &h->r->res[index];
    if (rc == EPP_ENOMEM) {
        /* Not the message's fault: the request is answered 503 and may be retried. */
        res->state = INGEST_RES_FAILED;
        res->send_rc = EPP_ENOMEM;
    } else if (rc < 0) {
        ingest_req_reject(res, err, message_id,
                          message_id_len > MAX_REF ? MAX_REF : message_id_len);
    } else {
        ingest_req_send(res, ev);
    }
    return 0;
}

/* A request-level failure: an unauthenticated client only ever learns that it needs a key. */
static void refuse_request(ingest_app_t *app, epp_http_req_t *http, ingest_fail_t *fail,
                           epp_span_t *span)
{
    int rc = epp_http_auth_key(http, NULL, 0);
    if (rc < 0) {
        ingest_server_span_end(span, rc == EPP_EAGAIN ? 429 : 401);
        return;
    }
    /* As Segment answers: a body over the limits is a 400. */
    if (fail->status == 413)
        fail->status = 400;
    ingest_count_rejected(app, fail->code, 1);
    epp_http_reply_error(http, fail->status, fail->code, fail->message,
                         fail->field[0] ? fail->field : NULL, fail->status == 503 ? 1 : 0);
    ingest_server_span_end(span, fail->status);
}

static void handle(epp_http_req_t *http, ingest_app_t *app, ingest_segment_kind_t kind)
{
    epp_span_t *span = NULL;
    if (app->tracer) {
        char name[32];
        snprintf(name, sizeof name, "POST /v1/%s", ingest_segment_kind_name(kind));
        span = ingest_server_span_start(app, http, name, epp_http_route_pattern(http));
    }
    ingest_fail_t fail = {0};
    /* analytics.js sends text/plain (a CORS-simple type); other clients JSON or nothing. */
    const char *ct = epp_http_header(http, "Content-Type");
    ingest_media_t media = ct ? ingest_media_type(ct) : INGEST_MEDIA_JSON;
    if (media != INGEST_MEDIA_JSON && media != INGEST_MEDIA_TEXT) {
        ingest_fail_set(&fail, 415, "unsupported_media_type", NULL,
                        "Content-Type must be application/json or text/plain");
        refuse_request(app, http, &fail, span);
        return;
    }
    size_t raw_len, len;
    const char *raw = epp_http_body(http, &raw_len), *body;
    size_t limit = (size_t)app->conf->max_body_bytes;
    if (limit > INGEST_SEGMENT_MAX_BODY)
        limit = INGEST_SEGMENT_MAX_BODY;
    epp_buf_t scratch = {0};
    if (ingest_body_decode(raw, raw_len, epp_http_header(http, "Content-Encoding"), limit, &scratch,
                           &body, &len, &fail) < 0) {
        epp_buf_free(&scratch);
        refuse_request(app, http, &fail, span);
        return;
    }
    ingest_req_t *r =
        ingest_req_create(app, http, span, kind == INGEST_SEGMENT_BATCH, finish_segment);
    if (!r) {
        epp_buf_free(&scratch);
        ingest_fail_set(&fail, 503, "out_of_memory", NULL, "out of memory");
        refuse_request(app, http, &fail, span);
        return;
    }
    seg_handler_t h = {.r = r};
    ingest_segment_visitor_t vis = {.begin = on_begin, .message = on_message, .ud = &h};
    int rc = ingest_segment_parse(body, len, kind, (size_t)app->conf->max_batch_events,
                                  epp_time_now_us(), &vis, &fail);
    epp_buf_free(&scratch);
    if (rc < 0) {
        /* Nothing was sent: only the body itself, the key or begin's allocation can fail. */
        ingest_req_abandon(r, &span);
        if (h.auth_answered) {
            ingest_server_span_end(span, h.auth_status);
            return;
        }
        if (!fail.code)
            ingest_fail_set(&fail, 503, "out_of_memory", NULL, "out of memory");
        refuse_request(app, http, &fail, span);
        return;
    }
    ingest_req_release(r);
}

static void handle_batch(epp_http_req_t *http, void *ud)
{
    handle(http, ud, INGEST_SEGMENT_BATCH);
}

static void handle_track(epp_http_req_t *http, void *ud)
{
    handle(http, ud, INGEST_SEGMENT_TRACK);
}

static void handle_identify(epp_http_req_t *http, void *ud)
{
    handle(http, ud, INGEST_SEGMENT_IDENTIFY);
}

static void handle_page(epp_http_req_t *http, void *ud)
{
    handle(http, ud, INGEST_SEGMENT_PAGE);
}

static void handle_screen(epp_http_req_t *http, void *ud)
{
    handle(http, ud, INGEST_SEGMENT_SCREEN);
}

static void handle_group(epp_http_req_t *http, void *ud)
{
    handle(http, ud, INGEST_SEGMENT_GROUP);
}

static void handle_alias(epp_http_req_t *http, void *ud)
{
    handle(http, ud, INGEST_SEGMENT_ALIAS);
}

int ingest_segment_routes(ingest_app_t *app, epp_http_server_t *srv)
{
    static const struct {
        const char *path;
        epp_http_handler_t handler;
    } routes[] = {
        {"/v1/batch", handle_batch}, {"/v1/import", handle_batch},
        {"/v1/b", handle_batch},     {"/v1/track", handle_track},
        {"/v1/t", handle_track},     {"/v1/identify", handle_identify},
        {"/v1/i", handle_identify},  {"/v1/page", handle_page},
        {"/v1/p", handle_page},      {"/v1/screen", handle_screen},
        {"/v1/s", handle_screen},    {"/v1/group", handle_group},
        {"/v1/g", handle_group},     {"/v1/alias", handle_alias},
        {"/v1/a", handle_alias},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = epp_http_route(srv, "POST", routes[i].path, routes[i].handler, app,
                                EPP_HTTP_ROUTE_SELF_AUTH);
        if (rc < 0)
            return rc;
    }
    return 0;
}
