/* The /analytics routes. Every handler checks its parameters first (analytics_params.c: 400
 * with the field named), then holds one pool connection for the duration of its single
 * statement. Database failures become 503 with Retry-After (the service recovers by itself);
 * nothing here aborts.
 *
 * Tracing: every request is a SERVER span (see dispatch()); its context is handed to the pool
 * connection, which makes the statement a CLIENT child span. Without a tracer the span pointer
 * is NULL and every span call returns at once. */
#include "analytics_handlers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analytics_params.h"
#include "epp_buf.h"
#include "epp_error.h"
#include "epp_json.h"
#include "epp_log.h"
#include "epp_time.h"
#include "epp_trace.h"
#include "analytics_queries.h"
#include "analytics_plan.h"

typedef struct route route_t;

/* One request being answered: the reply helpers below record the status for the span. */
typedef struct {
    epp_http_req_t *req;
    analytics_ctx_t *ctx;
    const route_t *route;
    epp_span_t *span; /* NULL when tracing is off */
    unsigned status;  /* of the reply sent, 0 before */
    analytics_params_t p;
} call_t;

static void reply_error(call_t *c, unsigned status, const char *code, const char *message,
                        const char *field, unsigned retry_after_s)
{
    c->status = status;
    epp_http_reply_error(c->req, status, code, message, field, retry_after_s);
}

static void reply_db_error(call_t *c, int rc, const epp_pg_error_t *err)
{
    if (strcmp(err->sqlstate, ANALYTICS_SQLSTATE_RETENTION) == 0) {
        /* Not a server fault and not bad syntax: the range is fine, the data is gone. */
        char msg[sizeof err->message + 160];
        snprintf(msg, sizeof msg,
                 "%s; counts over whole UTC minutes, hours and days (no user_id) still come from "
                 "the rollups",
                 err->message);
        reply_error(c, 409, "retention_expired", msg, "from_ts", 0);
        return;
    }
    switch (rc) {
    case EPP_EAGAIN:
        reply_error(c, 503, "database_unavailable",
                    "every database connection is busy; retry later", NULL, 1);
        break;
    case EPP_ETIMEDOUT:
        reply_error(c, 503, "query_timeout",
                    "the query took longer than QUERY_TIMEOUT_MS; retry later or ask for a "
                    "shorter range",
                    NULL, 1);
        break;
    case EPP_EIO:
    case EPP_EUNAVAIL:
        reply_error(c, 503, "database_unavailable", "the database is unavailable; retry later",
                    NULL, 1);
        break;
    default:
        EPP_LOGKV(EPP_LOG_ERROR, "unexpected database error", "route",
                  epp_http_route_pattern(c->req), "sqlstate", err->sqlstate, "error", err->message);
        reply_error(c, 500, "internal_error", "unexpected database error", NULL, 0);
        break;
    }
}

/* Acquires a connection for this request. 0, or -1 after replying 503. */
static int acquire(call_t *c, analytics_conn_t **conn)
{
    epp_pg_error_t err = {0};
    int rc = analytics_pool_acquire(c->ctx->pool, c->ctx->pool_wait_ms, conn, &err);
    if (rc < 0) {
        reply_db_error(c, rc == EPP_EINVAL ? EPP_EUNAVAIL : rc, &err);
        return -1;
    }
    analytics_conn_trace(*conn, epp_span_ctx(c->span));
    return 0;
}

static void json_ts(epp_buf_t *b, const char *key, int64_t us)
{
    char ts[EPP_TIME_BUFSZ];
    epp_time_format(us, ts);
    epp_buf_printf(b, "\"%s\":\"%s\"", key, ts);
}

static void json_str(epp_buf_t *b, const char *key, const char *s)
{
    epp_buf_printf(b, "\"%s\":", key);
    if (s)
        epp_json_write_string(b, s, strlen(s));
    else
        epp_buf_append_str(b, "null");
}

static void reply_buf(call_t *c, epp_buf_t *b)
{
    if (!b->data) {
        reply_error(c, 500, "internal_error", "out of memory", NULL, 0);
        return;
    }
    c->status = 200;
    epp_http_reply_json(c->req, 200, b->data, b->len);
    epp_buf_free(b);
}

static void h_count(call_t *c)
{
    const analytics_params_t *p = &c->p;
    int64_t n = 0;
    analytics_conn_t *conn;
    if (acquire(c, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    int rc = analytics_q_count(conn, p->from, p->to, p->event_name, p->user_id, &n, &err);
    analytics_pool_release(c->ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(c, rc, &err);
        return;
    }
    epp_buf_t b = {0};
    epp_buf_printf(&b, "{\"count\":%" PRId64 ",", n);
    json_ts(&b, "from_ts", p->from);
    epp_buf_append_char(&b, ',');
    json_ts(&b, "to_ts", p->to);
    if (p->event_name) {
        epp_buf_append_char(&b, ',');
        json_str(&b, "event_name", p->event_name);
    }
    if (p->user_id) {
        epp_buf_append_char(&b, ',');
        json_str(&b, "user_id", p->user_id);
    }
    epp_buf_append_char(&b, '}');
    reply_buf(c, &b);
}

static void h_timeseries(call_t *c)
{
    const analytics_params_t *p = &c->p;
    int64_t *counts = calloc((size_t)p->npoints, sizeof(*counts));
    if (!counts) {
        reply_error(c, 500, "internal_error", "out of memory", NULL, 0);
        return;
    }
    analytics_conn_t *conn;
    if (acquire(c, &conn) < 0) {
        free(counts);
        return;
    }
    epp_pg_error_t err = {0};
    int rc =
        analytics_q_series(conn, p->from, p->to, p->width, p->event_name, counts, p->npoints, &err);
    analytics_pool_release(c->ctx->pool, conn);
    if (rc < 0) {
        free(counts);
        reply_db_error(c, rc, &err);
        return;
    }
    epp_buf_t b = {0};
    epp_buf_reserve(&b, 64 + (size_t)p->npoints * 48);
    epp_buf_printf(&b, "{\"interval\":\"%s\",", p->interval);
    json_ts(&b, "from_ts", p->from);
    epp_buf_append_char(&b, ',');
    json_ts(&b, "to_ts", p->to);
    if (p->event_name) {
        epp_buf_append_char(&b, ',');
        json_str(&b, "event_name", p->event_name);
    }
    epp_buf_append_str(&b, ",\"points\":[");
    int64_t first = analytics_floor(p->from, p->width);
    for (int64_t i = 0; i < p->npoints; i++) {
        char ts[EPP_TIME_BUFSZ];
        epp_time_format(first + i * p->width, ts);
        epp_buf_printf(&b, "%s{\"ts\":\"%s\",\"count\":%" PRId64 "}", i ? "," : "", ts, counts[i]);
    }
    epp_buf_append_str(&b, "]}");
    free(counts);
    reply_buf(c, &b);
}

static void h_top(call_t *c)
{
    const analytics_params_t *p = &c->p;
    analytics_conn_t *conn;
    if (acquire(c, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    PGresult *res = NULL;
    int rc = analytics_q_top(conn, p->from, p->to, (int)p->limit, &res, &err);
    analytics_pool_release(c->ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(c, rc, &err);
        return;
    }
    epp_buf_t b = {0};
    epp_buf_append_str(&b, "{\"items\":[");
    for (int r = 0; r < PQntuples(res); r++) {
        epp_buf_append_str(&b, r ? ",{" : "{");
        json_str(&b, "event_name", PQgetvalue(res, r, 0));
        epp_buf_printf(&b, ",\"count\":%s}", PQgetvalue(res, r, 1));
    }
    PQclear(res);
    epp_buf_append_str(&b, "],");
    json_ts(&b, "from_ts", p->from);
    epp_buf_append_char(&b, ',');
    json_ts(&b, "to_ts", p->to);
    epp_buf_printf(&b, ",\"limit\":%ld}", p->limit);
    reply_buf(c, &b);
}

static void h_active(call_t *c)
{
    const analytics_params_t *p = &c->p;
    int series = p->interval != NULL;
    int64_t n = 0, *points = NULL;
    if (series && !(points = calloc((size_t)p->npoints, sizeof(*points)))) {
        reply_error(c, 500, "internal_error", "out of memory", NULL, 0);
        return;
    }
    analytics_conn_t *conn;
    if (acquire(c, &conn) < 0) {
        free(points);
        return;
    }
    epp_pg_error_t err = {0};
    int rc = analytics_q_active(conn, c->ctx->ucache, p->from, p->to, series ? p->period : -1,
                                p->npoints, &n, points, &err);
    analytics_pool_release(c->ctx->pool, conn);
    if (rc < 0) {
        free(points);
        reply_db_error(c, rc, &err);
        return;
    }
    epp_buf_t b = {0};
    epp_buf_printf(&b, "{\"unique_users\":%" PRId64 ",", n);
    json_ts(&b, "from_ts", p->from);
    epp_buf_append_char(&b, ',');
    json_ts(&b, "to_ts", p->to);
    if (series) {
        epp_buf_reserve(&b, 64 + (size_t)p->npoints * 56);
        epp_buf_printf(&b, ",\"interval\":\"%s\",\"points\":[", p->interval);
        for (int64_t i = 0; i < p->npoints; i++) {
            char ts[EPP_TIME_BUFSZ];
            epp_time_format(analytics_period_start(p->period, p->from, i), ts);
            epp_buf_printf(&b, "%s{\"ts\":\"%s\",\"unique_users\":%" PRId64 "}", i ? "," : "", ts,
                           points[i]);
        }
        epp_buf_append_char(&b, ']');
    }
    epp_buf_append_char(&b, '}');
    free(points);
    reply_buf(c, &b);
}

/* One stored row as a JSON object (columns of analytics_queries.h). metadata is jsonb's text: valid
 * JSON, embedded as is. */
static void json_row(epp_buf_t *b, const PGresult *res, int r)
{
    epp_buf_append_char(b, '{');
    json_str(b, "event_id", PQgetvalue(res, r, ANALYTICS_COL_EVENT_ID));
    epp_buf_append_char(b, ',');
    json_str(b, "user_id", PQgetvalue(res, r, ANALYTICS_COL_USER_ID));
    epp_buf_append_char(b, ',');
    json_str(b, "event_name", PQgetvalue(res, r, ANALYTICS_COL_EVENT_NAME));
    epp_buf_printf(b, ",\"metadata\":%s,", PQgetvalue(res, r, ANALYTICS_COL_METADATA));
    json_ts(b, "timestamp", strtoll(PQgetvalue(res, r, ANALYTICS_COL_TS_US), NULL, 10));
    epp_buf_append_char(b, ',');
    json_ts(b, "processed_at", strtoll(PQgetvalue(res, r, ANALYTICS_COL_PROCESSED_US), NULL, 10));
    epp_buf_append_char(b, '}');
}

static void h_user_events(call_t *c)
{
    const analytics_params_t *p = &c->p;
    analytics_conn_t *conn;
    if (acquire(c, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    PGresult *res = NULL;
    /* One row more than asked tells whether another page exists. */
    int rc = analytics_q_user_events(conn, p->user_id, p->before_us,
                                     p->have_before_id ? p->before_id : NULL, (int)p->limit + 1,
                                     &res, &err);
    analytics_pool_release(c->ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(c, rc, &err);
        return;
    }
    int rows = PQntuples(res);
    int shown = rows > p->limit ? (int)p->limit : rows;
    epp_buf_t b = {0};
    epp_buf_append_char(&b, '{');
    json_str(&b, "user_id", p->user_id);
    epp_buf_append_str(&b, ",\"events\":[");
    for (int r = 0; r < shown; r++) {
        if (r)
            epp_buf_append_char(&b, ',');
        json_row(&b, res, r);
    }
    epp_buf_append_str(&b, "],\"next_cursor\":");
    if (rows > p->limit) {
        epp_buf_printf(&b, "\"%s_%s\"", PQgetvalue(res, shown - 1, ANALYTICS_COL_TS_US),
                       PQgetvalue(res, shown - 1, ANALYTICS_COL_EVENT_ID));
    } else {
        epp_buf_append_str(&b, "null");
    }
    epp_buf_printf(&b, ",\"limit\":%ld}", p->limit);
    PQclear(res);
    reply_buf(c, &b);
}

static void h_event(call_t *c)
{
    analytics_conn_t *conn;
    if (acquire(c, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    PGresult *res = NULL;
    int rc = analytics_q_event(conn, c->p.event_id, &res, &err);
    analytics_pool_release(c->ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(c, rc, &err);
        return;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        reply_error(c, 404, "not_found", "no event with this event_id", "event_id", 0);
        return;
    }
    epp_buf_t b = {0};
    json_row(&b, res, 0);
    PQclear(res);
    reply_buf(c, &b);
}

struct route {
    const char *pattern;
    const char *span_name;  /* "GET <pattern>" */
    const char *path_param; /* the "{name}" in pattern, or NULL */
    analytics_route_t route;
    void (*fn)(call_t *c);
};

static const route_t routes[] = {
    /* The fixed paths first, so that /analytics/events/count is never taken for an event_id. */
    {"/analytics/events/count", "GET /analytics/events/count", NULL, ANALYTICS_ROUTE_COUNT,
     h_count},
    {"/analytics/events/timeseries", "GET /analytics/events/timeseries", NULL,
     ANALYTICS_ROUTE_SERIES, h_timeseries},
    {"/analytics/events/top", "GET /analytics/events/top", NULL, ANALYTICS_ROUTE_TOP, h_top},
    {"/analytics/users/active", "GET /analytics/users/active", NULL, ANALYTICS_ROUTE_ACTIVE,
     h_active},
    {"/analytics/users/{user_id}/events", "GET /analytics/users/{user_id}/events", "user_id",
     ANALYTICS_ROUTE_USER_EVENTS, h_user_events},
    {"/analytics/events/{event_id}", "GET /analytics/events/{event_id}", "event_id",
     ANALYTICS_ROUTE_EVENT, h_event},
};

/* The route's path parameter comes from the path only (a query argument of the same name is
 * ignored); every other parameter from the query string. */
static const char *get_param(void *ud, const char *name)
{
    const call_t *c = ud;
    if (c->route->path_param && strcmp(name, c->route->path_param) == 0)
        return epp_http_path_param(c->req, name);
    return epp_http_query(c->req, name);
}

/* The SERVER span of a request: child of the client's traceparent when it sent a valid one
 * (an invalid header starts a new trace, as W3C trace context says). */
static epp_span_t *server_span_start(analytics_ctx_t *ctx, epp_http_req_t *req, const route_t *r)
{
    if (!ctx->tracer)
        return NULL;
    epp_trace_ctx_t parent;
    const char *tp = epp_http_header(req, "traceparent");
    int has_parent = tp && epp_traceparent_parse(tp, &parent) == 0;
    /* The request began when its first byte was read, before routing: back-date the span by
     * the time spent since (the HTTP layer's start is on the same monotonic clock). */
    int64_t start_us = epp_time_now_us() - (epp_time_mono_us() - epp_http_start_us(req));
    epp_span_t *span = epp_span_start(ctx->tracer, r->span_name, EPP_SPAN_SERVER,
                                      has_parent ? &parent : NULL, start_us);
    if (!epp_span_recording(span))
        return span;
    epp_span_set_str(span, "http.request.method", "GET");
    epp_span_set_str(span, "http.route", r->pattern);
    epp_span_set_str(span, "url.path", epp_http_path(req));
    if (ctx->srv)
        epp_span_set_int(span, "server.port", epp_http_port(ctx->srv));
    return span;
}

static void server_span_end(epp_span_t *span, unsigned status)
{
    if (!span)
        return;
    epp_span_set_int(span, "http.response.status_code", status);
    /* OTel HTTP conventions: 5xx is a server error; 4xx is the client's, so no error here. */
    if (status >= 500) {
        char msg[32];
        snprintf(msg, sizeof(msg), "HTTP %u", status);
        epp_span_set_status(span, EPP_SPAN_STATUS_ERROR, msg);
    }
    epp_span_end(span, 0);
}

/* The epp_http handler of every route: span, parameters, then the route's own handler. The
 * request must not be touched after the reply, so the span reads what it needs before. */
static void dispatch(epp_http_req_t *req, void *ud)
{
    const analytics_binding_t *bind = ud;
    const route_t *r = bind->route;
    call_t c = {.req = req, .ctx = bind->ctx, .route = r};
    c.span = server_span_start(c.ctx, req, r);
    analytics_param_error_t perr;
    if (analytics_params_parse(r->route, get_param, &c, c.ctx->max_points, &c.p, &perr) < 0)
        reply_error(&c, 400, "invalid_parameter", perr.message, perr.field, 0);
    else
        r->fn(&c);
    server_span_end(c.span, c.status);
}

int analytics_handlers_register(epp_http_server_t *srv, analytics_ctx_t *ctx)
{
    _Static_assert(sizeof(routes) / sizeof(routes[0]) == ANALYTICS_NROUTES, "route table size");
    ctx->srv = srv;
    for (size_t i = 0; i < ANALYTICS_NROUTES; i++) {
        ctx->bindings[i].ctx = ctx;
        ctx->bindings[i].route = &routes[i];
        int rc = epp_http_route(srv, "GET", routes[i].pattern, dispatch, &ctx->bindings[i],
                                EPP_HTTP_ROUTE_NO_BODY);
        if (rc < 0)
            return rc;
    }
    return 0;
}
