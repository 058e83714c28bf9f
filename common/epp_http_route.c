/* epp_http_route.c: routes and what is decided from a request's head -- matching the path
 * against the route patterns (404, 405 with Allow), CORS (the allow-list and preflight), the
 * order of the checks (epp_http__on_head), the built-in routes GET /health, /ready and /metrics,
 * and the request metrics (epp_http_requests_total, epp_http_request_duration_seconds, the
 * in-flight and open-connection gauges). The checks on keys, rates and budgets themselves are
 * epp_http_guard.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_http_internal.h"
#include "epp_json.h"

const char *const epp_http__method_names[EPP_HTTP__M_COUNT] = {"GET",   "POST", "PUT",     "DELETE",
                                                               "PATCH", "HEAD", "OPTIONS", "other"};

int epp_http__method_index(const char *m)
{
    for (int i = 0; i < EPP_HTTP__M_OTHER; i++) {
        if (strcmp(m, epp_http__method_names[i]) == 0)
            return i;
    }
    return EPP_HTTP__M_OTHER;
}

/* --- metrics --------------------------------------------------------------------------------- */

void epp_http__metrics_init(epp_http_server_t *srv)
{
    epp_metrics_t *m = srv->opts.metrics;
    if (m) {
        srv->m_requests = epp_metrics_counter(
            m, "epp_http_requests_total",
            "HTTP requests answered, by route pattern, method and status.", "route,method,status");
        epp_metric_t *g = epp_metrics_gauge(m, "epp_http_requests_in_flight",
                                            "HTTP requests received and not yet completed.", NULL);
        srv->g_inflight = g ? epp_metric_default(g) : NULL;
        g = epp_metrics_gauge(m, "epp_http_connections_open", "Open HTTP client connections.",
                              NULL);
        srv->g_conns = g ? epp_metric_default(g) : NULL;
        epp_metric_t *c = epp_metrics_counter(
            m, "epp_http_connections_refused_total",
            "Connections closed at accept: over HTTP_MAX_CONNECTIONS or the per-address limit.",
            NULL);
        srv->c_refused_conns = c ? epp_metric_default(c) : NULL;
        c = epp_metrics_counter(m, "epp_http_body_budget_refusals_total",
                                "Requests answered 503 because the bodies in flight would "
                                "exceed their budget (server-wide or per client).",
                                NULL);
        srv->c_busy = c ? epp_metric_default(c) : NULL;
    }
    epp_http__stats_init(srv, &srv->unmatched, "unmatched");
}

void epp_http__stats_init(epp_http_server_t *srv, epp_http__stats_t *st, const char *pattern)
{
    st->pattern = pattern;
    if (!srv->opts.metrics)
        return;
    epp_metric_t *h =
        epp_metrics_histogram(srv->opts.metrics, "epp_http_request_duration_seconds",
                              "Time from the start of a request to its reply being queued.",
                              "route", epp_metrics_latency_buckets, epp_metrics_latency_buckets_n);
    st->duration = h ? epp_metric_series(h, pattern) : NULL;
}

/* The series of (method, status) for a route: a slot's key is (method index + 1) << 10 |
 * status, its series pointer published after the key; looked up once, then lock-free. */
static epp_series_t *stats_counter(epp_http_server_t *srv, epp_http__stats_t *st, int midx,
                                   unsigned status)
{
    unsigned key = ((unsigned)midx + 1) << 10 | (status & 1023);
    unsigned h = (key * 2654435761u) >> 26; /* 6 bits */
    char code[12];
    for (unsigned i = 0; i < EPP_HTTP__STATS_SLOTS; i++) {
        epp_http__stats_slot_t *s = &st->slots[(h + i) & (EPP_HTTP__STATS_SLOTS - 1)];
        unsigned k = atomic_load_explicit(&s->key, memory_order_acquire);
        if (k == key) {
            epp_series_t *ser = atomic_load_explicit(&s->series, memory_order_acquire);
            if (ser)
                return ser;
            break; /* being filled in by another thread: look it up ourselves */
        }
        if (k == 0) {
            unsigned zero = 0;
            snprintf(code, sizeof(code), "%u", status);
            epp_series_t *ser =
                epp_metric_series(srv->m_requests, st->pattern, epp_http__method_names[midx], code);
            if (atomic_compare_exchange_strong(&s->key, &zero, key)) {
                atomic_store_explicit(&s->series, ser, memory_order_release);
                return ser;
            }
            if (zero == key)
                return ser;
        }
    }
    snprintf(code, sizeof(code), "%u", status);
    return epp_metric_series(srv->m_requests, st->pattern, epp_http__method_names[midx], code);
}

void epp_http__stats_count(epp_http_req_t *req)
{
    epp_http_server_t *srv = req->srv;
    epp_http__stats_t *st = req->stats ? req->stats : &srv->unmatched;
    if (srv->m_requests) {
        epp_series_t *c = stats_counter(srv, st, req->method_idx, req->status);
        if (c)
            epp_series_inc(c);
    }
    if (st->duration)
        epp_series_observe(st->duration, (double)(epp_http__now_us() - req->start_us) / 1e6);
}

/* --- routes ---------------------------------------------------------------------------------- */

static void route_free(epp_http__route_t *r)
{
    free(r->method);
    free(r->pattern);
    free(r->segbuf);
}

void epp_http__routes_free(epp_http_server_t *srv)
{
    for (size_t i = 0; i < srv->nroutes; i++)
        route_free(&srv->routes[i]);
    free(srv->routes);
    srv->routes = NULL;
    srv->nroutes = 0;
}

int epp_http__route_add(epp_http_server_t *srv, const char *method, const char *pattern,
                        epp_http_handler_t handler, void *ud, unsigned flags)
{
    if (!method || !pattern || !handler || pattern[0] != '/')
        return EPP_EINVAL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        if (strcmp(srv->routes[i].method, method) == 0 &&
            strcmp(srv->routes[i].pattern, pattern) == 0)
            return EPP_EINVAL;
    }
    /* Routes are added before start only, so reallocation moves nothing in use. */
    if (epp_grow(&srv->routes, &srv->route_cap, srv->nroutes, sizeof *srv->routes, 8) != 0)
        return EPP_ENOMEM;
    epp_http__route_t *r = &srv->routes[srv->nroutes];
    memset(r, 0, sizeof(*r));
    r->method = strdup(method);
    r->pattern = strdup(pattern);
    r->segbuf = strdup(pattern + 1);
    if (!r->method || !r->pattern || !r->segbuf) {
        route_free(r);
        return EPP_ENOMEM;
    }
    unsigned nparams = 0;
    char *p = r->segbuf;
    for (;;) {
        char *e = strchr(p, '/');
        if (e)
            *e = '\0';
        if (r->nsegs == EPP_HTTP__MAX_SEGS) {
            route_free(r);
            return EPP_EINVAL;
        }
        size_t len = strlen(p);
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if (++nparams > EPP_HTTP__MAX_PARAMS) {
                route_free(r);
                return EPP_EINVAL;
            }
            p[len - 1] = '\0';
            r->is_param[r->nsegs] = 1;
            p++;
        }
        r->segs[r->nsegs++] = p;
        if (!e)
            break;
        p = e + 1;
    }
    r->handler = handler;
    r->ud = ud;
    r->flags = flags;
    r->method_idx = epp_http__method_index(method);
    srv->nroutes++;
    return 0;
}

/* Splits the raw path into decoded segments (in the connection arena). Returns the count, or
 * -1 for a path we refuse (too many segments, an encoded NUL, not absolute). Decoding after the
 * split keeps "%2F" inside a {param} part of the parameter. */
static int split_path(epp_http__conn_t *c, const char *url, char **segs)
{
    if (url[0] != '/')
        return -1;
    int n = 0;
    const char *p = url + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == EPP_HTTP__MAX_SEGS)
            return -1;
        char *d = epp_http__arena_alloc(c, len + 1);
        if (!d || epp_http__url_decode(d, p, len, 0) < 0)
            return -1;
        segs[n++] = d;
        if (!e)
            break;
        p = e + 1;
    }
    return n;
}

static int route_match(const epp_http__route_t *r, char **segs, int n)
{
    if ((unsigned)n != r->nsegs)
        return 0;
    for (int i = 0; i < n; i++) {
        if (r->is_param[i] ? segs[i][0] == '\0' : strcmp(r->segs[i], segs[i]) != 0)
            return 0;
    }
    return 1;
}

static int origin_allowed(const epp_http_server_t *srv, const char *origin)
{
    if (!origin)
        return 0;
    if (srv->cors_any)
        return 1;
    for (size_t i = 0; i < srv->ncors; i++) {
        if (strcmp(srv->cors[i], origin) == 0)
            return 1;
    }
    return 0;
}

/* Builds "GET, POST" for the routes matching the path. */
static void allow_list(epp_http_server_t *srv, char **segs, int n, char *out, size_t outsz)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < srv->nroutes; i++) {
        epp_http__route_t *r = &srv->routes[i];
        if (!route_match(r, segs, n) || strstr(out, r->method))
            continue;
        int w = snprintf(out + o, outsz - o, "%s%s", o ? ", " : "", r->method);
        if (w < 0 || (size_t)w >= outsz - o)
            break;
        o += (size_t)w;
    }
    if (srv->cors && o && o + 9 < outsz)
        snprintf(out + o, outsz - o, ", OPTIONS");
}

static void preflight(epp_http_req_t *req, const char *allow)
{
    if (epp_http__claim(req, 0) < 0)
        return;
    epp_http__fill_reply(req, 204, NULL, NULL, 0);
    if (req->cors_ok) {
        epp_http__hdr_add(req, "Access-Control-Allow-Methods", allow);
        epp_http__hdr_add(
            req, "Access-Control-Allow-Headers",
            "Content-Type, Content-Encoding, Authorization, X-API-Key, X-Retry-Count, "
            "traceparent");
        epp_http__hdr_add(req, "Access-Control-Max-Age", "600");
    }
    atomic_fetch_or(&req->state, EPP_HTTP__ST_READY);
}

/* The body's size, decided before any of it is read. 0 to go on, 1 when answered. */
static int body_limits(epp_http_req_t *req, const epp_http__route_t *route)
{
    epp_http__conn_t *c = req->conn;
    epp_http_server_t *srv = req->srv;
    if (c->phase == EPP_HTTP__P_DONE)
        return 0;
    if (route->flags & EPP_HTTP_ROUTE_NO_BODY) {
        epp_http__early_error(req, 413, "payload_too_large", "this route takes no request body", 0);
        return 1;
    }
    if (c->phase != EPP_HTTP__P_BODY)
        return 0; /* chunked: checked as it arrives */
    if (c->body_left > srv->opts.max_body) {
        epp_http__early_error(req, 413, "payload_too_large", "the request body is too large", 0);
        return 1;
    }
    if (c->body_left > EPP_HTTP__SMALL_BODY &&
        epp_http__body_reserve(req, (size_t)c->body_left) < 0) {
        epp_http__early_error(req, 503, "server_busy",
                              "too many request bodies are in flight; retry later", 1);
        return 1;
    }
    /* One allocation for the whole body: no copy as it grows. A large one is within the budget
     * reserved above, and its pages are only touched as the bytes arrive. */
    if (c->body_left >= req->body.cap)
        epp_buf_reserve(&req->body, (size_t)c->body_left);
    return 0;
}

void epp_http__on_head(epp_http_req_t *req)
{
    epp_http_server_t *srv = req->srv;
    epp_http__conn_t *c = req->conn;
    char *segs[EPP_HTTP__MAX_SEGS];

    if (srv->cors) {
        req->origin = epp_http__find_header(req, "Origin");
        req->cors_ok = origin_allowed(srv, req->origin);
    }
    if (atomic_load(&srv->stopping)) {
        epp_http__refuse_shutdown(req);
        return;
    }
    int n = split_path(c, req->url, segs);
    if (n < 0) {
        epp_http__early_error(req, 400, "invalid_path", "the request path is malformed", 0);
        return;
    }
    int midx = req->method_idx == EPP_HTTP__M_HEAD ? EPP_HTTP__M_GET : req->method_idx;
    epp_http__route_t *found = NULL, *path_route = NULL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        epp_http__route_t *r = &srv->routes[i];
        if (!route_match(r, segs, n))
            continue;
        if (!path_route)
            path_route = r;
        if (r->method_idx == midx &&
            (midx != EPP_HTTP__M_OTHER || strcmp(r->method, req->method) == 0)) {
            found = r;
            break;
        }
    }
    if (!path_route) {
        epp_http__early_error(req, 404, "not_found", "no such route", 0);
        return;
    }
    if (!found) {
        char allow[128];
        allow_list(srv, segs, n, allow, sizeof(allow));
        req->stats = &path_route->stats;
        if (req->method_idx == EPP_HTTP__M_OPTIONS && srv->cors) {
            preflight(req, allow);
            return;
        }
        epp_http__early_error(req, 405, "method_not_allowed", "method not allowed on this route",
                              0);
        epp_http__hdr_add(req, "Allow", allow);
        return;
    }
    req->route = found;
    req->stats = &found->stats;
    unsigned np = 0;
    for (unsigned i = 0; i < found->nsegs && np < EPP_HTTP__MAX_PARAMS; i++) {
        if (found->is_param[i])
            req->params[np++] = segs[i];
    }
    if (epp_http__guard_check(req, found))
        return;
    /* A query argument that does not decode (a %00) would otherwise read as absent, and a
     * handler would answer as if the filter had not been given: refuse the request instead. */
    const char *bad = epp_http__query_check(req);
    if (bad) {
        char msg[160];
        snprintf(msg, sizeof msg, "query parameter %.64s is not valid percent-encoding text", bad);
        epp_http__early_error_field(req, 400, "invalid_parameter", msg, bad);
        return;
    }
    body_limits(req, found);
}

/* --- built-in routes ------------------------------------------------------------------------- */

static void h_health(epp_http_req_t *req, void *ud)
{
    epp_http_server_t *srv = ud;
    epp_buf_t b = {0};
    epp_buf_append_str(&b, "{\"status\":\"ok\",\"service\":");
    epp_json_write_string(&b, srv->service, strlen(srv->service));
    epp_buf_append_str(&b, "}");
    epp_http_reply_json(req, 200, b.data ? b.data : "{}", b.data ? b.len : 2);
    epp_buf_free(&b);
}

static void h_ready(epp_http_req_t *req, void *ud)
{
    epp_http_server_t *srv = ud;
    char reason[256] = "";
    if (!srv->opts.ready || srv->opts.ready(srv->opts.ready_ud, reason, sizeof(reason))) {
        static const char ok[] = "{\"status\":\"ready\"}";
        epp_http_reply_json(req, 200, ok, sizeof(ok) - 1);
        return;
    }
    epp_buf_t b = {0};
    reason[sizeof(reason) - 1] = '\0';
    const char *why = reason[0] ? reason : "not ready";
    epp_buf_append_str(&b, "{\"status\":\"not_ready\",\"reason\":");
    epp_json_write_string(&b, why, strlen(why));
    epp_buf_append_str(&b, "}");
    epp_http_reply_json(req, 503, b.data ? b.data : "{}", b.data ? b.len : 2);
    epp_buf_free(&b);
}

static void h_metrics(epp_http_req_t *req, void *ud)
{
    epp_http_server_t *srv = ud;
    if (!srv->opts.metrics) {
        epp_http_reply_error(req, 404, "not_found", "metrics are not enabled", NULL, 0);
        return;
    }
    epp_buf_t b = {0};
    if (epp_metrics_render(srv->opts.metrics, &b) < 0) {
        epp_buf_free(&b);
        epp_http_reply_error(req, 500, "internal", "metrics rendering failed", NULL, 0);
        return;
    }
    epp_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "",
                   b.len);
    epp_buf_free(&b);
}

int epp_http__builtins_add(epp_http_server_t *srv)
{
    unsigned quiet = EPP_HTTP_ROUTE_NO_BODY | EPP_HTTP__ROUTE_NO_RATELIMIT;
    if (epp_http__route_add(srv, "GET", "/health", h_health, srv, quiet | EPP_HTTP_ROUTE_PUBLIC) <
            0 ||
        epp_http__route_add(srv, "GET", "/ready", h_ready, srv, quiet) < 0 ||
        epp_http__route_add(srv, "GET", "/metrics", h_metrics, srv, quiet) < 0)
        return EPP_ENOMEM;
    return 0;
}
