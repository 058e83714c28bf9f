/* epp_http_reply.c: the reply state machine -- which thread answers a request, and when -- and
 * the public reply functions.
 *
 * req->state holds atomic bits (epp_http_internal.h):
 *   DISPATCHED  the worker is about to call the handler;
 *   CLAIMED     a reply function won the right to answer (exactly one caller wins);
 *   READY       the reply (status, body, headers) is written into the request;
 *   SUSPENDED   the handler returned without a reply.
 * A reply function claims, writes the reply into the request, then sets READY. If SUSPENDED was
 * already set, the worker is no longer looking at the request, so the replier hands it over:
 * on the worker's own thread (a delivery report served by the loop hook) onto a plain local
 * list the worker writes before it sleeps; from any other thread onto the worker's lock-free
 * resume stack, waking the worker with one eventfd write only when it may be asleep. After the
 * handler returns, the worker writes the reply at once when READY is set; otherwise it sets
 * SUSPENDED, and if READY appeared in between it writes the reply itself. So exactly one of the
 * two threads arranges the write, and the reply is always written by the worker that owns the
 * connection, which alone touches its socket and buffers. */
#include <stdio.h>
#include <string.h>

#include "epp_error.h"
#include "epp_http_internal.h"
#include "epp_json.h"
#include "epp_log.h"

int epp_http__hdr_add(epp_http_req_t *req, const char *name, const char *value)
{
    if (epp_buf_append(&req->hdrs, name, strlen(name) + 1) < 0 ||
        epp_buf_append(&req->hdrs, value, strlen(value) + 1) < 0)
        return EPP_ENOMEM;
    return 0;
}

int epp_http__claim(epp_http_req_t *req, int require_dispatched)
{
    unsigned old = atomic_load(&req->state);
    do {
        if (old & EPP_HTTP__ST_CLAIMED)
            return EPP_ESTATE;
        if (require_dispatched && !(old & EPP_HTTP__ST_DISPATCHED))
            return EPP_ESTATE;
    } while (!atomic_compare_exchange_weak(&req->state, &old, old | EPP_HTTP__ST_CLAIMED));
    return 0;
}

/* Publishes a claimed reply and, when the handler has returned, hands the request to its worker.
 * After this the caller must not touch req (unless it is the worker inside dispatch). */
static void publish(epp_http_req_t *req)
{
    epp_http__conn_t *c = req->conn;
    epp_http__worker_t *w = c->worker;
    unsigned old = atomic_fetch_or(&req->state, EPP_HTTP__ST_READY);
    if (!(old & EPP_HTTP__ST_SUSPENDED))
        return; /* the worker, still in dispatch, sees READY and writes the reply */
    if (epp_http__self() == w) {
        c->ready_next = w->ready_head;
        w->ready_head = c;
        return;
    }
    epp_http_req_t *head = atomic_load(&w->resume_head);
    do {
        req->resume_next = head;
    } while (!atomic_compare_exchange_weak(&w->resume_head, &head, req));
    /* Sequentially consistent with the worker's clearing of `kicked` before it looks at the
     * stack one last time: either it sees this request, or this kick sees 0 and wakes it. */
    epp_http__kick(w);
}

int epp_http__fill_reply(epp_http_req_t *req, unsigned status, const char *content_type,
                         const char *body, size_t len)
{
    req->status = status;
    epp_buf_reset(&req->out);
    int rc = 0;
    if (len > 0)
        rc = epp_buf_append(&req->out, body, len);
    if (rc == 0 && content_type)
        rc = epp_http__hdr_add(req, "Content-Type", content_type);
    if (rc < 0) {
        /* Out of memory: answer 500 without a body rather than not at all. */
        req->status = 500;
        epp_buf_reset(&req->out);
    }
    return rc;
}

static int fill_error(epp_http_req_t *req, unsigned status, const char *code, const char *message,
                      const char *field, unsigned retry_after_s)
{
    epp_buf_t *b = &req->out;
    req->status = status;
    epp_buf_reset(b);
    if (!code)
        code = "error";
    if (!message)
        message = "";
    int rc = epp_buf_append_str(b, "{\"error\":{\"code\":");
    if (rc == 0)
        rc = epp_json_write_string(b, code, strlen(code));
    if (rc == 0)
        rc = epp_buf_append_str(b, ",\"message\":");
    if (rc == 0)
        rc = epp_json_write_string(b, message, strlen(message));
    if (rc == 0 && field) {
        rc = epp_buf_append_str(b, ",\"field\":");
        if (rc == 0)
            rc = epp_json_write_string(b, field, strlen(field));
    }
    if (rc == 0)
        rc = epp_buf_append_str(b, "}}");
    if (rc == 0)
        rc = epp_http__hdr_add(req, "Content-Type", "application/json");
    if (rc == 0 && retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", retry_after_s);
        rc = epp_http__hdr_add(req, "Retry-After", ra);
    }
    if (rc < 0) {
        req->status = 500;
        epp_buf_reset(b);
    }
    return rc;
}

int epp_http_reply(epp_http_req_t *req, unsigned status, const char *content_type, const char *body,
                   size_t len)
{
    int rc = epp_http__claim(req, 1);
    if (rc < 0)
        return rc;
    rc = epp_http__fill_reply(req, status, content_type, body, len);
    publish(req);
    return rc;
}

int epp_http_reply_json(epp_http_req_t *req, unsigned status, const char *json, size_t len)
{
    return epp_http_reply(req, status, "application/json", json, len);
}

int epp_http_reply_error(epp_http_req_t *req, unsigned status, const char *code,
                         const char *message, const char *field, unsigned retry_after_s)
{
    int rc = epp_http__claim(req, 1);
    if (rc < 0)
        return rc;
    rc = fill_error(req, status, code, message, field, retry_after_s);
    publish(req);
    return rc;
}

/* The application may be adding reply headers at this very moment (epp_http_add_header needs no
 * claim), so this reply leaves req->hdrs alone: the writer uses fixed headers for it. */
void epp_http__reply_shutdown(epp_http_req_t *req)
{
    static const char body[] =
        "{\"error\":{\"code\":\"shutting_down\",\"message\":\"the service is shutting down\"}}";
    if (epp_http__claim(req, 1) < 0)
        return;
    req->status = 503;
    req->stock_503 = 1;
    epp_buf_reset(&req->out);
    if (epp_buf_append(&req->out, body, sizeof(body) - 1) < 0)
        epp_buf_reset(&req->out);
    publish(req);
}

void epp_http__early_error(epp_http_req_t *req, unsigned status, const char *code,
                           const char *message, unsigned retry_after_s)
{
    if (epp_http__claim(req, 0) < 0)
        return;
    fill_error(req, status, code, message, NULL, retry_after_s);
    atomic_fetch_or(&req->state, EPP_HTTP__ST_READY);
}

void epp_http__refuse_shutdown(epp_http_req_t *req)
{
    epp_http__early_error(req, 503, "shutting_down", "the service is shutting down", 1);
}

void epp_http__early_error_field(epp_http_req_t *req, unsigned status, const char *code,
                                 const char *message, const char *field)
{
    if (epp_http__claim(req, 0) < 0)
        return;
    fill_error(req, status, code, message, field, 0);
    atomic_fetch_or(&req->state, EPP_HTTP__ST_READY);
}

int epp_http_add_header(epp_http_req_t *req, const char *name, const char *value)
{
    if (!name || !value || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return EPP_EINVAL;
    return epp_http__hdr_add(req, name, value);
}

void epp_http_suspend(epp_http_req_t *req)
{
    req->suspend_requested = 1;
}

int epp_http__dispatch(epp_http_req_t *req)
{
    epp_http_server_t *srv = req->srv;
    /* Checked before the request is marked dispatched, so answer_pending() never races this
     * answer; a request whose body completes after epp_http_refuse() starts nothing. */
    if (atomic_load(&srv->stopping)) {
        epp_http__refuse_shutdown(req);
        return 1;
    }
    atomic_fetch_or(&req->state, EPP_HTTP__ST_DISPATCHED);
    req->route->handler(req, req->route->ud);
    unsigned st = atomic_load(&req->state);
    if (!(st & EPP_HTTP__ST_READY) && !req->suspend_requested) {
        EPP_ERROR("http handler for %s %s returned without replying or suspending", req->method,
                  req->route->pattern);
        if (epp_http_reply_error(req, 500, "internal", "the handler did not reply", NULL, 0) == 0)
            st = atomic_load(&req->state);
    }
    if (st & EPP_HTTP__ST_READY)
        return 1;
    unsigned old = atomic_fetch_or(&req->state, EPP_HTTP__ST_SUSPENDED);
    if (old & EPP_HTTP__ST_READY)
        return 1; /* the reply arrived between the check and the suspension */
    if (atomic_load(&srv->destroying))
        epp_http__reply_shutdown(req); /* destroy() may have looked before this dispatch */
    return 0;
}
