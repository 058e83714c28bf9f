/* epp_http_guard.c: who may use the server, and how much of it -- API keys (Bearer, X-API-Key,
 * or Basic with the key as user name and an empty password; compared in constant time), the
 * throttle on failed authentications, the request rate limit, the per-address connection
 * counts and the budget of request bodies in flight. Also the copies of the key and CORS lists.
 *
 * Clients are told apart by address: IPv4 by the whole address, IPv6 by its /64 (the prefix
 * one subscriber gets; rotating the low 64 bits must not buy a fresh bucket).
 *
 * Failed authentications: every request that presents a key (in a header, or in its body on an
 * EPP_HTTP_ROUTE_SELF_AUTH route through epp_http_auth_key) is first checked against its client's
 * failure bucket (auth_fail_rps, auth_fail_burst). When the bucket is empty the request is
 * answered 429 without comparing the key, so guessing runs at the bucket's rate whatever the key;
 * a wrong key takes a token. Requests without a key, and public routes, cost nothing there. With
 * rate limits on, every failed authentication also draws from the client's rate-limit bucket.
 *
 * Bodies in flight: a body larger than EPP_HTTP__SMALL_BODY reserves its size (its declared
 * Content-Length, or a chunked body's buffer as it grows) from the server-wide budget and from
 * its client's share, and gives it back when its request ends. A request that does not fit is
 * answered 503 + Retry-After before more of its body is read, so slow clients holding large
 * bodies can never hold more than the budget together. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "epp_error.h"
#include "epp_http_internal.h"

#define STRIPES  16
#define SLOTS    256 /* buckets per stripe */
#define PROBE    8
#define IP_TABLE 1024

/* --- token buckets: a striped, fixed-size table; a full probe window evicts its least
 * recently used bucket, so the table stays bounded whatever the number of clients --- */

typedef struct {
    epp_http__addr_key_t key;
    unsigned char used;
    double tokens;
    int64_t last_us;
} bucket_t;

typedef struct {
    pthread_mutex_t lock;
    bucket_t b[SLOTS];
} stripe_t;

struct epp_http__buckets {
    double rps, burst;
    stripe_t s[STRIPES];
};

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static epp_http__buckets_t *buckets_create(double rps, double burst)
{
    epp_http__buckets_t *bs = calloc(1, sizeof(*bs));
    if (!bs)
        return NULL;
    bs->rps = rps;
    bs->burst = burst > 0 ? burst : rps;
    if (bs->burst < 1)
        bs->burst = 1;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&bs->s[i].lock, NULL);
    return bs;
}

static void buckets_destroy(epp_http__buckets_t *bs)
{
    if (!bs)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&bs->s[i].lock);
    free(bs);
}

/* With take, takes one token from key's bucket; without, only looks. 0 when a token was (or
 * is) there, else the seconds until one will be. */
static unsigned buckets_take(epp_http__buckets_t *bs, const epp_http__addr_key_t *key, int take)
{
    uint64_t h = fnv1a(key->b, sizeof(key->b));
    stripe_t *st = &bs->s[h % STRIPES];
    unsigned start = (unsigned)(h >> 8) % SLOTS;
    int64_t now = epp_http__now_us();
    unsigned wait = 0;
    pthread_mutex_lock(&st->lock);
    bucket_t *b = NULL, *victim = NULL;
    for (unsigned i = 0; i < PROBE; i++) {
        bucket_t *c = &st->b[(start + i) % SLOTS];
        if (c->used && memcmp(&c->key, key, sizeof(*key)) == 0) {
            b = c;
            break;
        }
        /* Victim: the first free slot, else the least recently used one. */
        if (!victim || (victim->used && (!c->used || c->last_us < victim->last_us)))
            victim = c;
    }
    if (!b) {
        b = victim;
        b->key = *key;
        b->used = 1;
        b->tokens = bs->burst;
        b->last_us = now;
    }
    double t = b->tokens + (double)(now - b->last_us) / 1e6 * bs->rps;
    if (t > bs->burst)
        t = bs->burst;
    b->last_us = now;
    if (t >= 1.0) {
        b->tokens = take ? t - 1.0 : t;
    } else {
        b->tokens = t;
        double s = ceil((1.0 - t) / bs->rps);
        wait = s < 1 ? 1 : (unsigned)s;
    }
    pthread_mutex_unlock(&st->lock);
    return wait;
}

void epp_http__addr_key(const struct sockaddr *sa, epp_http__addr_key_t *key)
{
    memset(key, 0, sizeof(*key));
    if (sa->sa_family == AF_INET) {
        key->b[0] = 4;
        memcpy(key->b + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            key->b[0] = 4;
            memcpy(key->b + 1, a->s6_addr + 12, 4);
        } else {
            key->b[0] = 6;
            memcpy(key->b + 1, a->s6_addr, 8); /* the /64 */
        }
    }
}

/* --- per-address counts: an entry lives while its address has a connection --- */

struct epp_http__ipent {
    epp_http__ipent_t *next;
    epp_http__addr_key_t key;
    unsigned stripe;
    unsigned conns;
    size_t body_bytes;
};

static int tracking(const epp_http_server_t *srv)
{
    return srv->opts.max_per_ip > 0 || srv->opts.max_body_inflight_per_ip > 0;
}

int epp_http__ip_admit(epp_http_server_t *srv, epp_http__conn_t *c)
{
    if (!tracking(srv))
        return 0;
    unsigned slot = (unsigned)(fnv1a(c->key.b, sizeof(c->key.b)) % IP_TABLE);
    unsigned stripe = slot % 16;
    int rc = 0;
    pthread_mutex_lock(&srv->ip_locks[stripe]);
    epp_http__ipent_t **pp = &srv->ip_table[slot];
    while (*pp && memcmp(&(*pp)->key, &c->key, sizeof(c->key)) != 0)
        pp = &(*pp)->next;
    if (!*pp) {
        epp_http__ipent_t *e = calloc(1, sizeof(*e));
        if (e) {
            e->key = c->key;
            e->stripe = stripe;
            *pp = e;
        }
    }
    if (!*pp || (srv->opts.max_per_ip && (*pp)->conns >= srv->opts.max_per_ip)) {
        rc = -1;
        if (*pp && (*pp)->conns == 0) {
            epp_http__ipent_t *e = *pp;
            *pp = e->next;
            free(e);
        }
    } else {
        (*pp)->conns++;
        c->ipent = *pp;
    }
    pthread_mutex_unlock(&srv->ip_locks[stripe]);
    return rc;
}

void epp_http__ip_release(epp_http_server_t *srv, epp_http__conn_t *c)
{
    epp_http__ipent_t *e = c->ipent;
    if (!e)
        return;
    c->ipent = NULL;
    unsigned slot = (unsigned)(fnv1a(e->key.b, sizeof(e->key.b)) % IP_TABLE);
    pthread_mutex_lock(&srv->ip_locks[e->stripe]);
    if (--e->conns == 0) {
        epp_http__ipent_t **pp = &srv->ip_table[slot];
        while (*pp && *pp != e)
            pp = &(*pp)->next;
        if (*pp)
            *pp = e->next;
        pthread_mutex_unlock(&srv->ip_locks[e->stripe]);
        free(e);
        return;
    }
    pthread_mutex_unlock(&srv->ip_locks[e->stripe]);
}

int epp_http__body_reserve(epp_http_req_t *req, size_t total)
{
    epp_http_server_t *srv = req->srv;
    if (total <= req->reserved)
        return 0;
    size_t need = total - req->reserved;
    if (srv->opts.max_body_inflight) {
        size_t now = atomic_fetch_add(&srv->body_inflight, need) + need;
        if (now > srv->opts.max_body_inflight) {
            atomic_fetch_sub(&srv->body_inflight, need);
            goto busy;
        }
    }
    epp_http__ipent_t *e = req->conn->ipent;
    if (e && srv->opts.max_body_inflight_per_ip) {
        pthread_mutex_lock(&srv->ip_locks[e->stripe]);
        int over = e->body_bytes + need > srv->opts.max_body_inflight_per_ip;
        if (!over)
            e->body_bytes += need;
        pthread_mutex_unlock(&srv->ip_locks[e->stripe]);
        if (over) {
            if (srv->opts.max_body_inflight)
                atomic_fetch_sub(&srv->body_inflight, need);
            goto busy;
        }
    }
    req->reserved = total;
    return 0;
busy:
    if (srv->c_busy)
        epp_series_inc(srv->c_busy);
    return -1;
}

void epp_http__body_release(epp_http_req_t *req)
{
    epp_http_server_t *srv = req->srv;
    if (!req->reserved)
        return;
    if (srv->opts.max_body_inflight)
        atomic_fetch_sub(&srv->body_inflight, req->reserved);
    epp_http__ipent_t *e = req->conn->ipent;
    if (e && srv->opts.max_body_inflight_per_ip) {
        pthread_mutex_lock(&srv->ip_locks[e->stripe]);
        e->body_bytes -= req->reserved;
        pthread_mutex_unlock(&srv->ip_locks[e->stripe]);
    }
    req->reserved = 0;
}

/* --- API keys --- */

/* Compares the candidate against every key over a fixed length, without an early exit, so the
 * time taken does not depend on how much of a key matched, on which key matched, or on the key
 * lengths. Returns the matching key index or -1. */
static int key_match(const epp_http_server_t *srv, const char *cand, size_t len)
{
    unsigned char pad[EPP_HTTP__MAX_KEY_LEN];
    uint64_t too_long = len > EPP_HTTP__MAX_KEY_LEN;
    size_t n = too_long ? EPP_HTTP__MAX_KEY_LEN : len;
    memset(pad, 0, sizeof(pad));
    memcpy(pad, cand, n);
    int found = -1;
    for (size_t k = 0; k < srv->nkeys; k++) {
        const epp_http__key_t *key = &srv->keys[k];
        volatile uint64_t diff = (uint64_t)(key->len ^ n) | too_long;
        unsigned acc = 0;
        for (size_t i = 0; i < EPP_HTTP__MAX_KEY_LEN; i++)
            acc |= (unsigned)(pad[i] ^ key->bytes[i]);
        diff |= acc;
        /* mask is all ones when diff == 0, without a branch on the secret. */
        uint64_t d = diff;
        uint64_t mask = ((d | (0 - d)) >> 63) - 1;
        found = (int)(((uint64_t)(unsigned)found & ~mask) | ((uint64_t)k & mask));
    }
    return found;
}

static int b64val(int ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Decodes standard base64 (RFC 4648 section 4, padding optional) into out (at most outsz
 * bytes). The decoded length, or -1 when the text is not base64 or does not fit. */
static long b64_decode(const char *in, size_t len, unsigned char *out, size_t outsz)
{
    while (len > 0 && in[len - 1] == '=')
        len--;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == outsz)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/* The API key presented in a header: "Authorization: Bearer K", "Authorization: Basic
 * base64(K:password)" (the form HTTP Basic clients such as the Segment SDKs use: the key is the
 * user name, the password is ignored), else "X-API-Key: K". Returns the key (pointing into the
 * header or into dec) or NULL; *presented is 1 when a Bearer/Basic Authorization or an
 * X-API-Key header was there at all, so that a malformed one is refused as a wrong key. */
static const char *key_candidate(const epp_http_req_t *req, char dec[EPP_HTTP__MAX_KEY_LEN + 1],
                                 size_t *len, int *presented)
{
    *presented = 0;
    const char *a = epp_http__find_header(req, "Authorization");
    if (a) {
        int bearer = strncasecmp(a, "Bearer ", 7) == 0;
        if (bearer || strncasecmp(a, "Basic ", 6) == 0) {
            *presented = 1;
            a += bearer ? 7 : 6;
            while (*a == ' ')
                a++;
            size_t l = strlen(a);
            while (l > 0 && a[l - 1] == ' ')
                l--;
            if (bearer) {
                *len = l;
                return a;
            }
            long n = b64_decode(a, l, (unsigned char *)dec, EPP_HTTP__MAX_KEY_LEN + 1);
            if (n < 0)
                return NULL;
            const char *colon = memchr(dec, ':', (size_t)n);
            *len = colon ? (size_t)(colon - dec) : (size_t)n;
            return *len > 0 ? dec : NULL;
        }
    }
    const char *x = epp_http__find_header(req, "X-API-Key");
    if (x) {
        *presented = 1;
        *len = strlen(x);
        return x;
    }
    return NULL;
}

/* Before a presented key is compared: 0, or the seconds until the client may try again. */
static unsigned authfail_wait(epp_http_req_t *req)
{
    epp_http_server_t *srv = req->srv;
    return srv->authfail ? buckets_take(srv->authfail, &req->conn->key, 0) : 0;
}

/* A failed authentication, from a header or from epp_http_auth_key(). A presented key takes a
 * token from the client's failed-authentication bucket; with rate limits on, any failure also
 * takes one from the client's rate-limit bucket, so that guessing is throttled like anything
 * else (429 once it is empty); otherwise 401. Returns the status chosen. */
static unsigned auth_refuse(epp_http_req_t *req, int presented, int from_handler)
{
    epp_http_server_t *srv = req->srv;
    unsigned wait = 0;
    if (presented && srv->authfail)
        buckets_take(srv->authfail, &req->conn->key, 1);
    if (srv->rl)
        wait = buckets_take(srv->rl, &req->conn->key, 1);
    unsigned status = wait ? 429 : 401;
    const char *code = wait ? "rate_limited" : "unauthorized";
    const char *msg = wait        ? "rate limit exceeded"
                      : presented ? "invalid API key"
                                  : "an API key is required";
    if (!wait)
        epp_http__hdr_add(req, "WWW-Authenticate", "Bearer");
    if (from_handler)
        epp_http_reply_error(req, status, code, msg, NULL, wait);
    else
        epp_http__early_error(req, status, code, msg, wait);
    return status;
}

/* The per-key (or, without a key, per-client) rate limit: 0, or the seconds to wait. */
static unsigned rate_take(epp_http_req_t *req, int key_idx)
{
    epp_http__addr_key_t key = req->conn->key;
    if (key_idx >= 0) {
        memset(&key, 0, sizeof(key));
        key.b[0] = 1;
        memcpy(key.b + 1, &key_idx, sizeof(key_idx));
    }
    return buckets_take(req->srv->rl, &key, 1);
}

int epp_http_auth_key(epp_http_req_t *req, const char *key, size_t len)
{
    static const char throttled[] = "too many failed authentications from this client";
    if (!req->auth_pending)
        return 0;
    epp_http_server_t *srv = req->srv;
    unsigned wait = key ? authfail_wait(req) : 0;
    if (wait) {
        epp_http_reply_error(req, 429, "too_many_auth_failures", throttled, NULL, wait);
        return EPP_EAGAIN;
    }
    int key_idx = key && len > 0 ? key_match(srv, key, len) : -1;
    if (key_idx < 0)
        return auth_refuse(req, key != NULL, 1) == 429 ? EPP_EAGAIN : EPP_EINVAL;
    req->auth_pending = 0;
    if (srv->rl && !(req->route->flags & EPP_HTTP__ROUTE_NO_RATELIMIT) &&
        (wait = rate_take(req, key_idx)) > 0) {
        epp_http_reply_error(req, 429, "rate_limited", "rate limit exceeded", NULL, wait);
        return EPP_EAGAIN;
    }
    return 0;
}

int epp_http__guard_check(epp_http_req_t *req, const epp_http__route_t *route)
{
    epp_http_server_t *srv = req->srv;
    int key_idx = -1;
    if (srv->nkeys > 0 && !(route->flags & EPP_HTTP_ROUTE_PUBLIC)) {
        char dec[EPP_HTTP__MAX_KEY_LEN + 1];
        size_t len = 0;
        int presented;
        const char *cand = key_candidate(req, dec, &len, &presented);
        unsigned wait = presented ? authfail_wait(req) : 0;
        if (wait) {
            epp_http__early_error(req, 429, "too_many_auth_failures",
                                  "too many failed authentications from this client", wait);
            return 1;
        }
        key_idx = cand ? key_match(srv, cand, len) : -1;
        if (key_idx < 0 && !presented && (route->flags & EPP_HTTP_ROUTE_SELF_AUTH)) {
            req->auth_pending = 1; /* the handler settles it with epp_http_auth_key() */
        } else if (key_idx < 0) {
            auth_refuse(req, presented, 0);
            return 1;
        }
    }
    if (srv->rl && !req->auth_pending &&
        !(route->flags & (EPP_HTTP__ROUTE_NO_RATELIMIT | EPP_HTTP_ROUTE_PUBLIC))) {
        unsigned wait = rate_take(req, key_idx);
        if (wait > 0) {
            epp_http__early_error(req, 429, "rate_limited", "rate limit exceeded", wait);
            return 1;
        }
    }
    return 0;
}

/* --- set-up --- */

/* Splits a comma-separated list into trimmed, non-empty, malloc'd strings. */
static char **split_list(const char *s, size_t *n)
{
    *n = 0;
    if (!s)
        return NULL;
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap, sizeof(*v));
    if (!v)
        return NULL;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *a = p, *z = p + len;
        while (a < z && (*a == ' ' || *a == '\t'))
            a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
            z--;
        if (z > a) {
            v[*n] = strndup(a, (size_t)(z - a));
            if (!v[*n]) {
                for (size_t i = 0; i < *n; i++)
                    free(v[i]);
                free(v);
                *n = 0;
                return NULL;
            }
            (*n)++;
        }
        p = e ? e + 1 : p + len;
    }
    return v;
}

int epp_http__guard_init(epp_http_server_t *srv, char *err, size_t errsz)
{
    const epp_http_opts_t *o = &srv->opts;
    for (unsigned i = 0; i < 16; i++)
        pthread_mutex_init(&srv->ip_locks[i], NULL);
    srv->ip_table = calloc(IP_TABLE, sizeof(epp_http__ipent_t *));
    if (!srv->ip_table)
        goto nomem;
    size_t nkeys = 0;
    char **keys = split_list(o->api_keys, &nkeys);
    if (o->api_keys && o->api_keys[0] && !keys)
        goto nomem;
    if (nkeys > 0) {
        srv->keys = calloc(nkeys, sizeof(*srv->keys));
        if (!srv->keys) {
            for (size_t i = 0; i < nkeys; i++)
                free(keys[i]);
            free(keys);
            goto nomem;
        }
    }
    int bad_key = 0;
    for (size_t i = 0; i < nkeys; i++) {
        size_t len = strlen(keys[i]);
        if (len > EPP_HTTP__MAX_KEY_LEN)
            bad_key = 1;
        else
            memcpy(srv->keys[i].bytes, keys[i], len);
        srv->keys[i].len = len;
        memset(keys[i], 0, len); /* the copy in our table is the only one kept */
        free(keys[i]);
    }
    free(keys);
    srv->nkeys = nkeys;
    srv->opts.api_keys = NULL;
    if (bad_key) {
        snprintf(err, errsz, "an API key is longer than %d bytes", EPP_HTTP__MAX_KEY_LEN);
        return EPP_EINVAL;
    }
    if (o->cors_origins) {
        srv->cors = split_list(o->cors_origins, &srv->ncors);
        if (!srv->cors) {
            srv->cors = calloc(1, sizeof(char *)); /* CORS on, empty allow-list */
            if (!srv->cors)
                goto nomem;
        }
        for (size_t i = 0; i < srv->ncors; i++)
            srv->cors_any |= strcmp(srv->cors[i], "*") == 0;
    }
    srv->opts.cors_origins = NULL;
    if (o->rate_limit_rps > 0 &&
        !(srv->rl = buckets_create(o->rate_limit_rps, o->rate_limit_burst)))
        goto nomem;
    if (o->auth_fail_rps > 0 &&
        !(srv->authfail = buckets_create(o->auth_fail_rps, o->auth_fail_burst)))
        goto nomem;
    return 0;
nomem:
    snprintf(err, errsz, "out of memory");
    return EPP_ENOMEM;
}

void epp_http__guard_free(epp_http_server_t *srv)
{
    if (srv->keys) {
        memset(srv->keys, 0, srv->nkeys * sizeof(*srv->keys));
        free(srv->keys);
    }
    for (size_t i = 0; i < srv->ncors; i++)
        free(srv->cors[i]);
    free(srv->cors);
    buckets_destroy(srv->rl);
    buckets_destroy(srv->authfail);
    if (srv->ip_table) {
        for (unsigned i = 0; i < IP_TABLE; i++) {
            while (srv->ip_table[i]) {
                epp_http__ipent_t *e = srv->ip_table[i];
                srv->ip_table[i] = e->next;
                free(e);
            }
        }
        free(srv->ip_table);
        for (unsigned i = 0; i < 16; i++)
            pthread_mutex_destroy(&srv->ip_locks[i]);
    }
}
