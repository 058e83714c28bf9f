/* epp_http_req.c: the request accessors of epp_http.h (method, path, route, path parameters,
 * query arguments, headers, body, client address, per-request data) and the per-connection
 * arena that decoded path segments and query strings live in until the next request on the
 * connection. Everything here runs on the connection's worker thread, or on the thread that
 * holds a suspended request, between the handler call and the reply. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_hex.h"
#include "epp_http_internal.h"

#define ARENA_MIN 1024 /* first arena block of a connection */

struct epp_http__arena {
    epp_http__arena_t *next;
    size_t used, size;
    char data[];
};

char *epp_http__arena_alloc(epp_http__conn_t *c, size_t n)
{
    epp_http__arena_t *b = c->arena;
    if (!b || b->size - b->used < n) {
        size_t size = n > ARENA_MIN ? n : ARENA_MIN;
        epp_http__arena_t *nb = malloc(sizeof(*nb) + size);
        if (!nb)
            return NULL;
        nb->size = size;
        nb->used = 0;
        nb->next = b;
        c->arena = b = nb;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

void epp_http__arena_reset(epp_http__conn_t *c)
{
    epp_http__arena_t *b = c->arena;
    if (!b)
        return;
    while (b->next) {
        epp_http__arena_t *n = b->next;
        free(b);
        b = n;
    }
    /* Keep the oldest (first) block only when it is the small default one. */
    if (b->size > ARENA_MIN) {
        free(b);
        c->arena = NULL;
        return;
    }
    b->used = 0;
    c->arena = b;
}

void epp_http__arena_free(epp_http__conn_t *c)
{
    epp_http__arena_reset(c);
    free(c->arena);
    c->arena = NULL;
}

int epp_http__url_decode(char *dst, const char *src, size_t len, int plus)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%' && i + 2 < len && epp_hex_digit((unsigned char)src[i + 1]) >= 0 &&
            epp_hex_digit((unsigned char)src[i + 2]) >= 0) {
            int v = epp_hex_digit((unsigned char)src[i + 1]) * 16 +
                    epp_hex_digit((unsigned char)src[i + 2]);
            if (v == 0)
                return -1;
            dst[o++] = (char)v;
            i += 2;
        } else if (plus && src[i] == '+') {
            dst[o++] = ' ';
        } else {
            dst[o++] = src[i];
        }
    }
    dst[o] = '\0';
    return 0;
}

/* Walks the query's arguments: fn(key, key_len, value or NULL, value_len, ud) until it
 * returns non-zero. */
static void query_walk(const char *q, int (*fn)(const char *, size_t, const char *, size_t, void *),
                       void *ud)
{
    while (q && *q) {
        size_t n = strcspn(q, "&");
        if (n > 0) {
            const char *eq = memchr(q, '=', n);
            size_t kl = eq ? (size_t)(eq - q) : n;
            if (fn(q, kl, eq ? eq + 1 : NULL, eq ? n - kl - 1 : 0, ud))
                return;
        }
        q += n;
        if (*q == '&')
            q++;
    }
}

typedef struct {
    epp_http_req_t *req;
    const char *name;
    const char *found;
} query_find_t;

static int query_find(const char *k, size_t kl, const char *v, size_t vl, void *ud)
{
    query_find_t *q = ud;
    char *key = epp_http__arena_alloc(q->req->conn, kl + 1);
    if (!key || epp_http__url_decode(key, k, kl, 1) < 0 || strcmp(key, q->name) != 0)
        return 0;
    if (!v) {
        q->found = "";
        return 1;
    }
    char *val = epp_http__arena_alloc(q->req->conn, vl + 1);
    if (val && epp_http__url_decode(val, v, vl, 1) == 0)
        q->found = val;
    return 1;
}

typedef struct {
    epp_http_req_t *req;
    const char *bad;
} query_bad_t;

static int query_bad(const char *k, size_t kl, const char *v, size_t vl, void *ud)
{
    query_bad_t *q = ud;
    char *key = epp_http__arena_alloc(q->req->conn, kl + 1);
    if (!key || epp_http__url_decode(key, k, kl, 1) < 0) {
        q->bad = "(name)";
        return 1;
    }
    char *val = v ? epp_http__arena_alloc(q->req->conn, vl + 1) : NULL;
    if (v && (!val || epp_http__url_decode(val, v, vl, 1) < 0)) {
        q->bad = key;
        return 1;
    }
    return 0;
}

const char *epp_http__query_check(epp_http_req_t *req)
{
    query_bad_t q = {req, NULL};
    query_walk(req->query, query_bad, &q);
    return q.bad;
}

const char *epp_http_query(const epp_http_req_t *req, const char *name)
{
    query_find_t q = {(epp_http_req_t *)req, name, NULL};
    if (!name)
        return NULL;
    query_walk(req->query, query_find, &q);
    return q.found;
}

const char *epp_http_method(const epp_http_req_t *req)
{
    return req->method;
}

const char *epp_http_path(const epp_http_req_t *req)
{
    return req->url;
}

const char *epp_http_route_pattern(const epp_http_req_t *req)
{
    return req->route ? req->route->pattern : "unmatched";
}

const char *epp_http_path_param(const epp_http_req_t *req, const char *name)
{
    const epp_http__route_t *r = req->route;
    if (!r || !name)
        return NULL;
    unsigned np = 0;
    for (unsigned i = 0; i < r->nsegs && np < EPP_HTTP__MAX_PARAMS; i++) {
        if (!r->is_param[i])
            continue;
        if (strcmp(r->segs[i], name) == 0)
            return req->params[np];
        np++;
    }
    return NULL;
}

const char *epp_http_header(const epp_http_req_t *req, const char *name)
{
    return name ? epp_http__find_header(req, name) : NULL;
}

const char *epp_http_body(const epp_http_req_t *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

const char *epp_http_client_ip(const epp_http_req_t *req)
{
    epp_http_req_t *r = (epp_http_req_t *)req;
    if (!r->ip[0]) {
        const epp_http__conn_t *c = req->conn;
        const void *a = NULL;
        if (c->addr.ss_family == AF_INET)
            a = &((const struct sockaddr_in *)&c->addr)->sin_addr;
        else if (c->addr.ss_family == AF_INET6)
            a = &((const struct sockaddr_in6 *)&c->addr)->sin6_addr;
        if (!a || !inet_ntop(c->addr.ss_family, a, r->ip, sizeof(r->ip)))
            snprintf(r->ip, sizeof(r->ip), "unknown");
    }
    return r->ip;
}

int64_t epp_http_start_us(const epp_http_req_t *req)
{
    return req->start_us;
}

void epp_http_set_data(epp_http_req_t *req, void *data)
{
    req->data = data;
}

void *epp_http_get_data(const epp_http_req_t *req)
{
    return req->data;
}
