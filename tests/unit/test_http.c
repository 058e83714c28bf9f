/* epp_http: a real server on a free loopback port, driven with libcurl. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_http.h"
#include "epp_http_internal.h"
#include "epp_log.h"
#include "epp_metrics.h"
#include "epp_test.h"

/* ---- an HTTP client on top of curl ---------------------------------------------------------- */

typedef struct {
    long status;
    epp_buf_t body;
    epp_buf_t headers; /* raw response header lines */
} resp_t;

static size_t on_write(char *p, size_t sz, size_t n, void *ud)
{
    epp_buf_append(ud, p, sz * n);
    return sz * n;
}

typedef struct {
    const char *data;
    size_t len, off;
} upload_t;

static size_t on_read(char *p, size_t sz, size_t n, void *ud)
{
    upload_t *u = ud;
    size_t k = sz * n;
    if (k > u->len - u->off)
        k = u->len - u->off;
    if (k > 300)
        k = 300; /* several chunks */
    memcpy(p, u->data + u->off, k);
    u->off += k;
    return k;
}

/* headers: NULL-terminated "Name: value" list. chunked: send body with Transfer-Encoding. */
static void http(int port, const char *method, const char *path, const char *const *headers,
                 const char *body, size_t body_len, int chunked, resp_t *r)
{
    char url[1024];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    upload_t up = {body, body_len, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body && chunked) {
        hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else
        r->status = -1;
    epp_buf_append(&r->body, "", 0);
    epp_buf_append(&r->headers, "", 0);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}

static void resp_free(resp_t *r)
{
    epp_buf_free(&r->body);
    epp_buf_free(&r->headers);
}

/* The value of a response header (case-insensitive name), copied into out, or NULL. */
static const char *resp_header(const resp_t *r, const char *name, char *out, size_t outsz)
{
    const char *p = r->headers.data;
    size_t nl = strlen(name);
    while (p && *p) {
        const char *e = strstr(p, "\r\n");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, outsz, "%.*s", (int)(len - (size_t)(v - p)), v);
            return out;
        }
        p = e ? e + 2 : NULL;
    }
    return NULL;
}

/* ---- handlers ------------------------------------------------------------------------------- */

static void h_item(epp_http_req_t *req, void *ud)
{
    (void)ud;
    char out[512];
    const char *q = epp_http_query(req, "q");
    snprintf(out, sizeof(out), "{\"id\":\"%s\",\"q\":\"%s\",\"route\":\"%s\"}",
             epp_http_path_param(req, "id"), q ? q : "(none)", epp_http_route_pattern(req));
    epp_http_reply_json(req, 200, out, strlen(out));
}

static void h_two(epp_http_req_t *req, void *ud)
{
    (void)ud;
    char out[512];
    snprintf(out, sizeof(out), "%s|%s", epp_http_path_param(req, "user"),
             epp_http_path_param(req, "kind"));
    epp_http_add_header(req, "X-Test", "yes");
    epp_http_reply(req, 200, "text/plain", out, strlen(out));
}

static void h_echo(epp_http_req_t *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *b = epp_http_body(req, &len);
    epp_http_reply(req, 200, "application/octet-stream", b, len);
}

/* A self-authenticating route: the body is the key (as Segment's writeKey is in its body). */
static void h_selfauth(epp_http_req_t *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *b = epp_http_body(req, &len);
    if (epp_http_auth_key(req, len ? b : NULL, len) < 0)
        return; /* answered 401 or 429 */
    epp_http_reply(req, 200, "text/plain", "in", 2);
}

/* Async: the handler suspends and queues the request; replier threads answer it. */
#define QCAP 4096
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    epp_http_req_t *q[QCAP];
    size_t head, tail;
    int stop;
    int hold; /* 1: keep requests unanswered (destroy must answer them) */
    atomic_int replied;
    atomic_int errors;
} async_t;

static async_t A = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void h_async(epp_http_req_t *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *b = epp_http_body(req, &len);
    /* Per-request data that the replier reads back (copy of the body). */
    char *copy = strndup(b, len);
    epp_http_set_data(req, copy);
    epp_http_suspend(req);
    pthread_mutex_lock(&A.lock);
    if (A.hold) {
        free(copy);
        epp_http_set_data(req, NULL);
    } else {
        A.q[A.tail++ % QCAP] = req;
        pthread_cond_signal(&A.cond);
    }
    pthread_mutex_unlock(&A.lock);
}

static void *replier(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&A.lock);
    for (;;) {
        while (A.head == A.tail && !A.stop)
            pthread_cond_wait(&A.cond, &A.lock);
        if (A.head == A.tail && A.stop)
            break;
        /* Take a burst, as a delivery-report thread would. */
        epp_http_req_t *batch[64];
        size_t n = 0;
        while (A.head != A.tail && n < 64)
            batch[n++] = A.q[A.head++ % QCAP];
        pthread_mutex_unlock(&A.lock);
        for (size_t i = 0; i < n; i++) {
            char *data = epp_http_get_data(batch[i]);
            char out[128];
            snprintf(out, sizeof(out), "{\"got\":\"%s\"}", data ? data : "");
            free(data);
            if (epp_http_reply_json(batch[i], 202, out, strlen(out)) == 0)
                atomic_fetch_add(&A.replied, 1);
            else
                atomic_fetch_add(&A.errors, 1);
        }
        pthread_mutex_lock(&A.lock);
    }
    pthread_mutex_unlock(&A.lock);
    return NULL;
}

static void h_slow(epp_http_req_t *req, void *ud)
{
    (void)ud;
    usleep(300000);
    epp_http_reply(req, 200, "text/plain", "slow", 4);
}

static int ready_value = 1;
static int ready_fn(void *ud, char *reason, size_t rsz)
{
    (void)ud;
    if (!ready_value)
        snprintf(reason, rsz, "kafka \"unreachable\"");
    return ready_value;
}

/* ---- fixtures ------------------------------------------------------------------------------- */

static epp_http_server_t *start(epp_http_opts_t *o)
{
    char err[256];
    o->bind_address = "127.0.0.1";
    o->port = 0;
    epp_http_server_t *s = epp_http_create(o, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "create: %s\n", err);
        return NULL;
    }
    if (epp_http_route(s, "GET", "/items/{id}", h_item, NULL, EPP_HTTP_ROUTE_NO_BODY) != 0 ||
        epp_http_route(s, "GET", "/users/{user}/events/{kind}", h_two, NULL, 0) != 0 ||
        epp_http_route(s, "POST", "/echo", h_echo, NULL, 0) != 0 ||
        epp_http_route(s, "PUT", "/echo", h_echo, NULL, 0) != 0 ||
        epp_http_route(s, "POST", "/async", h_async, NULL, 0) != 0 ||
        epp_http_route(s, "GET", "/open", h_echo, NULL, EPP_HTTP_ROUTE_PUBLIC) != 0 ||
        epp_http_route(s, "GET", "/slow", h_slow, NULL, 0) != 0 ||
        epp_http_route(s, "POST", "/selfauth", h_selfauth, NULL, EPP_HTTP_ROUTE_SELF_AUTH) != 0) {
        epp_http_destroy(s);
        return NULL;
    }
    /* Bad registrations. */
    if (epp_http_route(s, "GET", "/items/{id}", h_item, NULL, 0) != EPP_EINVAL ||
        epp_http_route(s, "GET", "nope", h_item, NULL, 0) != EPP_EINVAL) {
        epp_http_destroy(s);
        return NULL;
    }
    if (epp_http_start(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "start: %s\n", err);
        epp_http_destroy(s);
        return NULL;
    }
    return s;
}

static epp_metrics_t *M;
static epp_http_server_t *S; /* the open server: no keys, CORS on, metrics */
static int P;

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_routing(void)
{
    resp_t r;
    http(P, "GET", "/items/a%2Fb%20c?q=x%20y+z&other=1", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body.data, "{\"id\":\"a/b c\",\"q\":\"x y z\",\"route\":\"/items/{id}\"}");
    resp_free(&r);

    http(P, "GET", "/items/42", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body.data, "{\"id\":\"42\",\"q\":\"(none)\",\"route\":\"/items/{id}\"}");
    resp_free(&r);

    char v[128];
    http(P, "GET", "/users/u%C3%A9/events/click", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body.data, "u\xc3\xa9|click");
    CHECK_STR_EQ(resp_header(&r, "X-Test", v, sizeof(v)), "yes");
    CHECK_STR_EQ(resp_header(&r, "Content-Type", v, sizeof(v)), "text/plain");
    resp_free(&r);

    /* HEAD is answered by GET routes, without a body. */
    http(P, "HEAD", "/items/1", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(r.body.len, 0);
    resp_free(&r);

    /* An encoded NUL is refused. */
    http(P, "GET", "/items/a%00b", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 400);
    resp_free(&r);

    /* ... in a query value too: it must not read as an absent filter (regression: the handler
     * saw q == NULL and answered as if unfiltered). */
    http(P, "GET", "/items/1?q=%00", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 400);
    CHECK(strstr(r.body.data, "\"code\":\"invalid_parameter\"") != NULL);
    CHECK(strstr(r.body.data, "\"field\":\"q\"") != NULL);
    resp_free(&r);
}

static void test_404_405(void)
{
    resp_t r;
    char v[128];
    const char *paths[] = {"/nope", "/items", "/items/1/2", "/items/", "/"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        http(P, "GET", paths[i], NULL, NULL, 0, 0, &r);
        CHECK_INT_EQ(r.status, 404);
        CHECK(strstr(r.body.data, "{\"error\":{\"code\":\"not_found\",\"message\":") ==
              r.body.data);
        CHECK_STR_EQ(resp_header(&r, "Content-Type", v, sizeof(v)), "application/json");
        resp_free(&r);
    }
    http(P, "DELETE", "/items/1", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 405);
    CHECK(strstr(r.body.data, "\"code\":\"method_not_allowed\"") != NULL);
    CHECK_STR_EQ(resp_header(&r, "Allow", v, sizeof(v)), "GET, OPTIONS");
    resp_free(&r);

    http(P, "GET", "/echo", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 405);
    CHECK_STR_EQ(resp_header(&r, "Allow", v, sizeof(v)), "POST, PUT, OPTIONS");
    resp_free(&r);
}

static void test_body_cap(void)
{
    resp_t r;
    char big[3000];
    memset(big, 'x', sizeof(big));

    http(P, "POST", "/echo", NULL, big, 1000, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_MEM_EQ(r.body.data, r.body.len, big, 1000);
    resp_free(&r);

    http(P, "POST", "/echo", NULL, big, 2000, 0, &r);
    CHECK_INT_EQ(r.status, 413);
    CHECK(strstr(r.body.data, "\"code\":\"payload_too_large\"") != NULL);
    resp_free(&r);

    /* Chunked: the size is only known while reading. */
    http(P, "POST", "/echo", NULL, big, 900, 1, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_MEM_EQ(r.body.data, r.body.len, big, 900);
    resp_free(&r);

    http(P, "POST", "/echo", NULL, big, 3000, 1, &r);
    CHECK_INT_EQ(r.status, 413);
    CHECK(strstr(r.body.data, "\"code\":\"payload_too_large\"") != NULL);
    resp_free(&r);

    /* Empty bodies are fine; a body on a GET-like route is not. */
    http(P, "POST", "/echo", NULL, "", 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(r.body.len, 0);
    resp_free(&r);

    http(P, "GET", "/items/1", NULL, "abc", 3, 0, &r);
    CHECK_INT_EQ(r.status, 413);
    resp_free(&r);

    /* The connection reuse after a 413 still works (a fresh request answers). */
    http(P, "POST", "/echo", NULL, "ok", 2, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body.data, "ok");
    resp_free(&r);
}

static void test_cors(void)
{
    resp_t r;
    char v[256];
    const char *ok[] = {"Origin: https://ok.example", "Access-Control-Request-Method: POST", NULL};
    http(P, "OPTIONS", "/echo", ok, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 204);
    CHECK_STR_EQ(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)),
                 "https://ok.example");
    CHECK_STR_EQ(resp_header(&r, "Vary", v, sizeof(v)), "Origin");
    CHECK_STR_EQ(resp_header(&r, "Access-Control-Allow-Methods", v, sizeof(v)),
                 "POST, PUT, OPTIONS");
    CHECK(resp_header(&r, "Access-Control-Allow-Headers", v, sizeof(v)) != NULL);
    CHECK(strstr(v, "Content-Type") && strstr(v, "Authorization") && strstr(v, "X-API-Key") &&
          strstr(v, "traceparent") && strstr(v, "Content-Encoding"));
    CHECK(resp_header(&r, "Access-Control-Max-Age", v, sizeof(v)) != NULL);
    resp_free(&r);

    const char *bad[] = {"Origin: https://evil.example", NULL};
    http(P, "OPTIONS", "/echo", bad, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 204);
    CHECK(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)) == NULL);
    CHECK(resp_header(&r, "Access-Control-Allow-Methods", v, sizeof(v)) == NULL);
    resp_free(&r);

    http(P, "OPTIONS", "/nope", ok, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 404);
    resp_free(&r);

    http(P, "POST", "/echo", ok, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)),
                 "https://ok.example");
    resp_free(&r);

    http(P, "POST", "/echo", bad, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)) == NULL);
    resp_free(&r);

    /* Error replies carry ACAO too, so that browsers can read them. */
    http(P, "GET", "/nope", ok, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 404);
    CHECK(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)) != NULL);
    resp_free(&r);
}

static void test_builtins(void)
{
    resp_t r;
    char v[256];
    http(P, "GET", "/health", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body.data, "{\"status\":\"ok\",\"service\":\"epp-test\"}");
    resp_free(&r);

    http(P, "GET", "/ready", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body.data, "{\"status\":\"ready\"}");
    resp_free(&r);

    ready_value = 0;
    http(P, "GET", "/ready", NULL, NULL, 0, 0, &r);
    ready_value = 1;
    CHECK_INT_EQ(r.status, 503);
    CHECK_STR_EQ(r.body.data,
                 "{\"status\":\"not_ready\",\"reason\":\"kafka \\\"unreachable\\\"\"}");
    resp_free(&r);

    http(P, "GET", "/metrics", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(resp_header(&r, "Content-Type", v, sizeof(v)),
                 "text/plain; version=0.0.4; charset=utf-8");
    CHECK(strstr(r.body.data,
                 "epp_http_requests_total{route=\"/items/{id}\",method=\"GET\",status=\"200\"}") !=
          NULL);
    CHECK(strstr(r.body.data,
                 "epp_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}") !=
          NULL);
    CHECK(strstr(r.body.data, "epp_http_request_duration_seconds_bucket{route=\"/echo\"") != NULL);
    CHECK(strstr(r.body.data, "\nepp_http_requests_in_flight ") != NULL);
    resp_free(&r);
}

/* Opens one connection per request (CURLMOPT cap) and runs them all at once. */
static void run_multi(int port, int n, const char *path, long *statuses, epp_buf_t *bodies,
                      long timeout_ms)
{
    CURLM *m = curl_multi_init();
    CURL **e = calloc((size_t)n, sizeof(*e));
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    char(*payload)[32] = calloc((size_t)n, sizeof(*payload));
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    for (int i = 0; i < n; i++) {
        e[i] = curl_easy_init();
        snprintf(payload[i], sizeof(payload[i]), "req-%d", i);
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, payload[i]);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e[i], CURLOPT_WRITEDATA, &bodies[i]);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(e[i], CURLOPT_PRIVATE, (void *)(intptr_t)i);
        curl_multi_add_handle(m, e[i]);
        statuses[i] = -1;
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        void *priv;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        int i = (int)(intptr_t)priv;
        if (msg->data.result == CURLE_OK)
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &statuses[i]);
    }
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        epp_buf_append(&bodies[i], "", 0);
    }
    curl_slist_free_all(hl);
    curl_multi_cleanup(m);
    free(payload);
    free(e);
}

static void test_async_many(void)
{
    enum { N = 500 };
    pthread_t th[2];
    A.stop = 0;
    atomic_store(&A.replied, 0);
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, replier, NULL);
    long st[N];
    epp_buf_t bodies[N];
    memset(bodies, 0, sizeof(bodies));
    run_multi(P, N, "/async", st, bodies, 10000);
    pthread_mutex_lock(&A.lock);
    A.stop = 1;
    pthread_cond_broadcast(&A.cond);
    pthread_mutex_unlock(&A.lock);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof(want), "{\"got\":\"req-%d\"}", i);
        if (st[i] == 202 && strcmp(bodies[i].data, want) == 0)
            ok++;
        else if (ok == i)
            fprintf(stderr, "request %d: %ld %s\n", i, st[i], bodies[i].data);
        epp_buf_free(&bodies[i]);
    }
    CHECK_INT_EQ(ok, N);
    CHECK_INT_EQ(atomic_load(&A.replied), N);
    CHECK_INT_EQ(atomic_load(&A.errors), 0);
    for (int i = 0; i < 100 && epp_http_inflight(S) > 0; i++)
        usleep(10000);
    CHECK_INT_EQ(epp_http_inflight(S), 0);
}

/* The client gives up while its request is suspended; the late reply must be accepted and
 * everything freed (ASan/valgrind runs check the freeing). */
static void test_async_client_gone(void)
{
    enum { N = 20 };
    long st[N];
    epp_buf_t bodies[N];
    memset(bodies, 0, sizeof(bodies));
    A.stop = 0;
    run_multi(P, N, "/async", st, bodies, 300); /* nobody replies yet: all time out */
    for (int i = 0; i < N; i++) {
        CHECK_INT_EQ(st[i], -1);
        epp_buf_free(&bodies[i]);
    }
    CHECK_INT_EQ(epp_http_inflight(S), N);
    pthread_t th;
    atomic_store(&A.replied, 0);
    pthread_create(&th, NULL, replier, NULL);
    pthread_mutex_lock(&A.lock);
    A.stop = 1;
    pthread_cond_broadcast(&A.cond);
    pthread_mutex_unlock(&A.lock);
    pthread_join(th, NULL);
    CHECK_INT_EQ(atomic_load(&A.replied), N);
    for (int i = 0; i < 200 && epp_http_inflight(S) > 0; i++)
        usleep(10000);
    CHECK_INT_EQ(epp_http_inflight(S), 0);
    /* The server still serves. */
    resp_t r;
    http(P, "GET", "/health", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
}

static void test_auth(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.service = "epp-auth";
    o.max_body = 1024;
    o.api_keys = " k1 , secret-two-is-longer ";
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    resp_t r;
    char v[128];

    http(port, "POST", "/echo", NULL, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 401);
    CHECK(strstr(r.body.data, "{\"error\":{\"code\":\"unauthorized\"") == r.body.data);
    CHECK_STR_EQ(resp_header(&r, "WWW-Authenticate", v, sizeof(v)), "Bearer");
    resp_free(&r);

    const char *cases[][2] = {
        {"Authorization: Bearer wrong", "401"},
        {"Authorization: Bearer secret-two-is-longe", "401"}, /* truncated */
        {"Authorization: Bearer secret-two-is-longerr", "401"},
        {"Authorization: Bearer k", "401"},
        {"Authorization: Bearer ", "401"},
        {"Authorization: Basic k1", "401"},
        {"X-API-Key: K1", "401"},
        {"Authorization: Bearer secret-two-is-longer", "200"},
        {"Authorization: bearer k1", "200"},
        {"X-API-Key: k1", "200"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *h[] = {cases[i][0], NULL};
        http(port, "POST", "/echo", h, "x", 1, 0, &r);
        if (r.status != strtol(cases[i][1], NULL, 10))
            fprintf(stderr, "case %s\n", cases[i][0]);
        CHECK_INT_EQ(r.status, strtol(cases[i][1], NULL, 10));
        resp_free(&r);
    }
    /* A very long key is refused, not crashed on. */
    char longkey[2000] = "X-API-Key: ";
    memset(longkey + 11, 'k', sizeof(longkey) - 12);
    const char *h[] = {longkey, NULL};
    http(port, "POST", "/echo", h, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 401);
    resp_free(&r);

    /* Public routes: /health and routes flagged public. /ready and /metrics need a key. */
    http(port, "GET", "/health", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    http(port, "GET", "/open", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    http(port, "GET", "/ready", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 401);
    resp_free(&r);
    /* Unknown routes stay 404 without a key (nothing to protect). */
    http(port, "GET", "/nope", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 404);
    resp_free(&r);
    /* No metrics registry: /metrics is 404. */
    const char *hk[] = {"X-API-Key: k1", NULL};
    http(port, "GET", "/metrics", hk, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 404);
    resp_free(&r);
    epp_http_destroy(s);
}

/* HTTP Basic with the key as user name (the Segment SDKs' form), and routes whose handler finds
 * the key in the body (EPP_HTTP_ROUTE_SELF_AUTH). */
static void test_auth_basic_self(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.service = "epp-auth";
    o.max_body = 4096;
    o.api_keys = "k1,secret-two-is-longer";
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    resp_t r;
    char longbasic[600] = "Authorization: Basic ";
    memset(longbasic + 21, 'a', 404); /* base64 of a 303-byte user name: longer than any key */
    const char *cases[][3] = {
        /* header, path, body -> status */
        {"Authorization: Basic azE6", "/echo", "200"},                         /* k1: */
        {"Authorization: Basic azE=", "/echo", "200"},                         /* k1 (no colon) */
        {"Authorization: Basic azE6cHc=", "/echo", "200"},                     /* k1:pw */
        {"Authorization: basic c2VjcmV0LXR3by1pcy1sb25nZXI6", "/echo", "200"}, /* case */
        {"Authorization: Basic Omsx", "/echo", "401"},                         /* :k1 */
        {"Authorization: Basic d3Jvbmc6", "/echo", "401"},                     /* wrong: */
        {"Authorization: Basic !!!!", "/echo", "401"},                         /* not base64 */
        {"Authorization: Basic ", "/echo", "401"},
        {longbasic, "/echo", "401"},
        /* The body's key, when no header presents one. */
        {NULL, "/selfauth:k1", "200"},
        {NULL, "/selfauth:secret-two-is-longer", "200"},
        {NULL, "/selfauth:wrong", "401"},
        {NULL, "/selfauth:", "401"},
        /* A key in a header settles it: a right one wins over the body, a wrong one is refused
         * before the handler runs. */
        {"Authorization: Basic azE6", "/selfauth:wrong", "200"},
        {"Authorization: Basic d3Jvbmc6", "/selfauth:k1", "401"},
        {"X-API-Key: nope", "/selfauth:k1", "401"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *h[] = {cases[i][0], NULL};
        const char *path = cases[i][1], *colon = strchr(path, ':');
        char p[32];
        snprintf(p, sizeof p, "%.*s", colon ? (int)(colon - path) : (int)strlen(path), path);
        const char *body = colon ? colon + 1 : "x";
        http(port, "POST", p, cases[i][0] ? h : NULL, body, strlen(body), 0, &r);
        if (r.status != strtol(cases[i][2], NULL, 10))
            fprintf(stderr, "case %zu: %.40s %s\n", i, cases[i][0] ? cases[i][0] : "-", path);
        CHECK_INT_EQ(r.status, strtol(cases[i][2], NULL, 10));
        if (r.status == 401)
            CHECK(strstr(r.body.data, "\"code\":\"unauthorized\"") != NULL);
        resp_free(&r);
    }
    epp_http_destroy(s);

    /* Keys off: any key, or none, is accepted in the body as in headers. */
    epp_http_opts_default(&o);
    s = start(&o);
    CHECK(s != NULL);
    port = epp_http_port(s);
    http(port, "POST", "/selfauth", NULL, "anything", 8, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    const char *hb[] = {"Authorization: Basic d3Jvbmc6", NULL};
    http(port, "POST", "/selfauth", hb, "", 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    epp_http_destroy(s);
}

/* Failed authentications draw from the client address's bucket, wherever the key came from:
 * guessing is throttled (429) while a valid key keeps its own bucket. */
static void test_auth_rate_limit(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.rate_limit_rps = 0.5;
    o.rate_limit_burst = 4;
    o.api_keys = "a";
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    resp_t r;
    char v[64];
    const char *wrong[] = {"X-API-Key: b", NULL};
    const char *basic_wrong[] = {"Authorization: Basic Yjo=", NULL}; /* b: */
    const char *good[] = {"X-API-Key: a", NULL};
    long st[6];
    http(port, "POST", "/echo", wrong, "x", 1, 0, &r);
    st[0] = r.status;
    resp_free(&r);
    http(port, "POST", "/echo", basic_wrong, "x", 1, 0, &r);
    st[1] = r.status;
    resp_free(&r);
    http(port, "POST", "/selfauth", NULL, "b", 1, 0, &r);
    st[2] = r.status;
    resp_free(&r);
    http(port, "POST", "/selfauth", NULL, NULL, 0, 0, &r);
    st[3] = r.status;
    resp_free(&r);
    http(port, "POST", "/selfauth", NULL, "c", 1, 0, &r);
    st[4] = r.status;
    CHECK_STR_EQ(resp_header(&r, "Retry-After", v, sizeof(v)), "2");
    CHECK(strstr(r.body.data, "\"code\":\"rate_limited\"") != NULL);
    resp_free(&r);
    http(port, "POST", "/echo", wrong, "x", 1, 0, &r);
    st[5] = r.status;
    resp_free(&r);
    CHECK_INT_EQ(st[0], 401);
    CHECK_INT_EQ(st[1], 401);
    CHECK_INT_EQ(st[2], 401);
    CHECK_INT_EQ(st[3], 401);
    CHECK_INT_EQ(st[4], 429);
    CHECK_INT_EQ(st[5], 429);
    /* The valid key, in a header or in the body, is limited on its own bucket. */
    http(port, "POST", "/echo", good, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 3; i++) {
        http(port, "POST", "/selfauth", NULL, "a", 1, 0, &r);
        CHECK_INT_EQ(r.status, 200);
        resp_free(&r);
    }
    http(port, "POST", "/selfauth", NULL, "a", 1, 0, &r);
    CHECK_INT_EQ(r.status, 429);
    resp_free(&r);
    epp_http_destroy(s);
}

static void test_rate_limit(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.rate_limit_rps = 0.5;
    o.rate_limit_burst = 3;
    o.api_keys = "a,b";
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    resp_t r;
    char v[64];
    const char *ka[] = {"X-API-Key: a", NULL};
    const char *kb[] = {"X-API-Key: b", NULL};
    for (int i = 0; i < 3; i++) {
        http(port, "POST", "/echo", ka, "x", 1, 0, &r);
        CHECK_INT_EQ(r.status, 200);
        resp_free(&r);
    }
    http(port, "POST", "/echo", ka, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 429);
    CHECK(strstr(r.body.data, "\"code\":\"rate_limited\"") != NULL);
    CHECK_STR_EQ(resp_header(&r, "Retry-After", v, sizeof(v)), "2"); /* ceil(1 / 0.5) */
    resp_free(&r);
    /* Another key has its own bucket; /health is never limited. */
    http(port, "POST", "/echo", kb, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 5; i++) {
        http(port, "GET", "/health", NULL, NULL, 0, 0, &r);
        CHECK_INT_EQ(r.status, 200);
        resp_free(&r);
    }
    epp_http_destroy(s);

    /* Without keys: per client address. */
    epp_http_opts_default(&o);
    o.rate_limit_rps = 1000;
    o.rate_limit_burst = 2;
    s = start(&o);
    CHECK(s != NULL);
    port = epp_http_port(s);
    int limited = 0;
    for (int i = 0; i < 4; i++) {
        http(port, "POST", "/echo", NULL, "x", 1, 0, &r);
        limited += r.status == 429;
        if (r.status == 429)
            CHECK_STR_EQ(resp_header(&r, "Retry-After", v, sizeof(v)), "1");
        resp_free(&r);
    }
    /* 1000 rps refills one token per ms: the exact count depends on timing; some pass. */
    CHECK(limited <= 2);
    epp_http_destroy(s);
}

/* destroy() answers suspended requests that never got a reply with 503. */
static void *destroy_later(void *arg)
{
    epp_http_server_t *s = arg;
    while (epp_http_inflight(s) < 10)
        usleep(5000);
    epp_http_destroy(s);
    return NULL;
}

static void test_destroy_pending(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    pthread_mutex_lock(&A.lock);
    A.hold = 1;
    pthread_mutex_unlock(&A.lock);
    pthread_t th;
    pthread_create(&th, NULL, destroy_later, s);
    long st[10];
    epp_buf_t bodies[10];
    memset(bodies, 0, sizeof(bodies));
    run_multi(port, 10, "/async", st, bodies, 5000);
    pthread_join(th, NULL);
    A.hold = 0;
    for (int i = 0; i < 10; i++) {
        CHECK_INT_EQ(st[i], 503);
        CHECK(strstr(bodies[i].data, "shutting_down") != NULL);
        epp_buf_free(&bodies[i]);
    }
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Regression (from the libmicrohttpd days): its own epoll loop stalled (until the 30 s connection
 * timeout) when a multiple of 128 connections became ready at once on one thread (it waits again
 * with the full timeout after a full batch of events). One worker is kept busy by a slow request
 * while 256 connections send theirs, so that all of them are ready when it looks again. */
static void test_many_ready_at_once(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.threads = 1;
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    enum { N = 256 };
    int fds[N];
    int port = epp_http_port(s);
    for (int i = 0; i < N; i++)
        fds[i] = tcp_connect(port);
    usleep(200000); /* all accepted and idle */
    int slow = tcp_connect(port);
    const char slow_req[] = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(send(slow, slow_req, sizeof(slow_req) - 1, MSG_NOSIGNAL) > 0);
    usleep(100000); /* the worker is in h_slow now */
    const char req[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    for (int i = 0; i < N; i++) {
        if (fds[i] >= 0 && send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL) < 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        char buf[1024];
        size_t got = 0;
        while (fds[i] >= 0 && got < sizeof(buf) - 1) {
            ssize_t n = recv(fds[i], buf + got, sizeof(buf) - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "\r\n\r\nhi")) {
                ok += strncmp(buf, "HTTP/1.1 200", 12) == 0;
                break;
            }
        }
        if (fds[i] >= 0)
            close(fds[i]);
    }
    close(slow);
    CHECK_INT_EQ(ok, N);
    epp_http_destroy(s);
}

/* Connection limits: per client address, and the idle timeout (slowloris). */
static void test_connection_limits(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.max_per_ip = 3;
    o.timeout_s = 1;
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = tcp_connect(port);
        CHECK(fds[i] >= 0);
    }
    usleep(100000);
    /* The fourth is accepted by the kernel, then closed by the server without a reply. */
    int extra = tcp_connect(port);
    CHECK(extra >= 0);
    char buf[256];
    const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    ssize_t w = send(extra, req, sizeof(req) - 1, MSG_NOSIGNAL);
    (void)w;
    ssize_t n = recv(extra, buf, sizeof(buf), 0);
    CHECK(n <= 0);
    close(extra);
    /* Slowloris: a request line and half the headers, then silence: closed after ~1 s. */
    const char part[] = "GET /health HTTP/1.1\r\nHost: x\r\n";
    w = send(fds[0], part, sizeof(part) - 1, MSG_NOSIGNAL);
    CHECK(w == (ssize_t)(sizeof(part) - 1));
    int64_t t0 = time(NULL);
    n = recv(fds[0], buf, sizeof(buf), 0);
    CHECK(n <= 0);
    CHECK(time(NULL) - t0 <= 3);
    /* A body dribbled a byte at a time (each byte resets the idle timeout) is cut off after
     * 4 timeouts. */
    const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    for (int i = 0; i < 3; i++)
        close(fds[i]); /* all timed out by now */
    usleep(100000);
    int slow = tcp_connect(port);
    w = send(slow, head, sizeof(head) - 1, MSG_NOSIGNAL);
    CHECK(w == (ssize_t)(sizeof(head) - 1));
    struct timeval t_start, t_end;
    gettimeofday(&t_start, NULL);
    int closed = 0;
    for (int i = 0; i < 20 && !closed; i++) {
        usleep(400000);
        if (send(slow, "x", 1, MSG_NOSIGNAL) < 0 || recv(slow, buf, sizeof(buf), MSG_DONTWAIT) == 0)
            closed = 1;
    }
    gettimeofday(&t_end, NULL);
    double secs =
        (double)(t_end.tv_sec - t_start.tv_sec) + (double)(t_end.tv_usec - t_start.tv_usec) / 1e6;
    CHECK(closed);
    if (!(secs > 3.5 && secs < 8.0))
        fprintf(stderr, "dribbled body cut after %.2f s\n", secs);
    close(slow);
    CHECK(secs > 3.5 && secs < 8.0);
    usleep(100000);
    /* The address may connect again. */
    resp_t r;
    http(port, "GET", "/health", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    epp_http_destroy(s);
}

/* After quiesce, new connections are refused; destroy still works. */
static void test_quiesce(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    resp_t r;
    http(port, "GET", "/health", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    epp_http_quiesce(s);
    epp_http_quiesce(s); /* idempotent */
    int fd = tcp_connect(port);
    CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    CHECK_INT_EQ(epp_http_inflight(s), 0);
    epp_http_destroy(s);
}

/* Sends raw bytes on a new connection and returns the status of the reply (0: none). */
static int raw_status(int port, const char *data, size_t len)
{
    int fd = tcp_connect(port);
    if (fd < 0)
        return -1;
    if (send(fd, data, len, MSG_NOSIGNAL) < 0) {
        close(fd);
        return 0;
    }
    char buf[64] = "";
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (n < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
        return 0;
    return (int)strtol(buf + 9, NULL, 10);
}

/* Hostile input gets a bounded refusal and the server keeps serving. */
static void test_hostile(void)
{
    resp_t r;
    char *big = malloc(20020);
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'a', 20000);
    big[20007] = '\0';
    const char *h[] = {big, NULL};
    http(P, "GET", "/health", h, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 431);
    resp_free(&r);
    free(big);

    static const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n";
    int st = raw_status(P, garbage, sizeof(garbage) - 1);
    CHECK(st == 0 || st == 400);
    static const char bad_chunk[] = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                    "\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    st = raw_status(P, bad_chunk, sizeof(bad_chunk) - 1);
    CHECK(st == 0 || st == 400);
    static const char bad_len[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n";
    st = raw_status(P, bad_len, sizeof(bad_len) - 1);
    CHECK(st == 0 || st == 400 || st == 413);
    char longurl[9000] = "GET /items/";
    memset(longurl + 11, 'u', 8000);
    static const char tail[] = " HTTP/1.1\r\nHost: x\r\n\r\n";
    memcpy(longurl + 8011, tail, sizeof tail);
    st = raw_status(P, longurl, strlen(longurl));
    CHECK_INT_EQ(st, 200); /* fits in the buffer: a long id is the handler's business */
    http(P, "GET", "/health", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
}

/* Reads one reply's head from fd (up to the blank line) into buf; its status, or 0. */
static int read_status(int fd, char *buf, size_t bufsz)
{
    size_t got = 0;
    buf[0] = '\0';
    while (got < bufsz - 1 && !strstr(buf, "\r\n\r\n")) {
        ssize_t n = recv(fd, buf + got, bufsz - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
    }
    if (got < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
        return 0;
    return (int)strtol(buf + 9, NULL, 10);
}

/* Issue 19, defect 6: wrong keys are throttled per client before any key is compared (so
 * guessing runs at the throttle's rate), wherever they are presented (a header, or the body of
 * a self-authenticating route); requests without a key and public routes are not. */
static void test_auth_throttle(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.api_keys = "k1";
    o.auth_fail_rps = 0.5;
    o.auth_fail_burst = 3;
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    resp_t r;
    char v[64];
    const char *wrong[] = {"X-API-Key: nope", NULL};
    const char *right[] = {"X-API-Key: k1", NULL};
    for (int i = 0; i < 3; i++) {
        http(port, "POST", "/echo", wrong, "x", 1, 0, &r);
        CHECK_INT_EQ(r.status, 401);
        resp_free(&r);
    }
    http(port, "POST", "/echo", wrong, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 429);
    CHECK(strstr(r.body.data, "\"code\":\"too_many_auth_failures\"") != NULL);
    CHECK_STR_EQ(resp_header(&r, "Retry-After", v, sizeof(v)), "2");
    resp_free(&r);
    /* Even the right key is not compared while the client is throttled. */
    http(port, "POST", "/echo", right, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 429);
    resp_free(&r);
    /* No key at all: a plain 401, not a guess. Public routes: served. */
    http(port, "POST", "/echo", NULL, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 401);
    resp_free(&r);
    http(port, "GET", "/health", NULL, NULL, 0, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    /* A key in the body of a self-authenticating route is a guess like any other. */
    http(port, "POST", "/selfauth", NULL, "k1", 2, 0, &r);
    CHECK_INT_EQ(r.status, 429);
    CHECK(strstr(r.body.data, "\"code\":\"too_many_auth_failures\"") != NULL);
    resp_free(&r);
    epp_http_destroy(s);

    /* Guesses in bodies fill the bucket too; without the throttle nothing is refused early. */
    s = start(&o);
    CHECK(s != NULL);
    port = epp_http_port(s);
    for (int i = 0; i < 3; i++) {
        http(port, "POST", "/selfauth", NULL, "guess", 5, 0, &r);
        CHECK_INT_EQ(r.status, 401);
        resp_free(&r);
    }
    http(port, "POST", "/echo", right, "x", 1, 0, &r);
    CHECK_INT_EQ(r.status, 429);
    resp_free(&r);
    epp_http_destroy(s);
    o.auth_fail_rps = 0;
    s = start(&o);
    CHECK(s != NULL);
    port = epp_http_port(s);
    for (int i = 0; i < 5; i++) {
        http(port, "POST", "/echo", wrong, "x", 1, 0, &r);
        CHECK_INT_EQ(r.status, 401);
        resp_free(&r);
    }
    epp_http_destroy(s);
}

/* Issue 19, defect 6: IPv6 clients share a bucket per /64; IPv4-mapped addresses are IPv4. */
static void test_addr_key(void)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6}, b = a, c = a, d = a;
    inet_pton(AF_INET6, "2001:db8:1:2::1", &a.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:2:ffff:ffff:ffff:fffe", &b.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:3::1", &c.sin6_addr);
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &d.sin6_addr);
    struct sockaddr_in e = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.1.2.3", &e.sin_addr);
    epp_http__addr_key_t ka, kb, kc, kd, ke;
    epp_http__addr_key((struct sockaddr *)&a, &ka);
    epp_http__addr_key((struct sockaddr *)&b, &kb);
    epp_http__addr_key((struct sockaddr *)&c, &kc);
    epp_http__addr_key((struct sockaddr *)&d, &kd);
    epp_http__addr_key((struct sockaddr *)&e, &ke);
    CHECK(memcmp(&ka, &kb, sizeof(ka)) == 0);
    CHECK(memcmp(&ka, &kc, sizeof(ka)) != 0);
    CHECK(memcmp(&kd, &ke, sizeof(kd)) == 0);
}

/* Opens a connection and sends a POST head declaring len body bytes plus `send` of them. */
static int post_partial(int port, size_t len, size_t send_n, int chunked)
{
    int fd = tcp_connect(port);
    if (fd < 0)
        return -1;
    char head[256];
    int n = chunked
                ? snprintf(head, sizeof(head),
                           "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                : snprintf(head, sizeof(head),
                           "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", len);
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) < 0) {
        close(fd);
        return -1;
    }
    char *body = malloc(send_n + 32);
    memset(body, 'b', send_n);
    size_t off = 0;
    if (chunked) {
        char sz[32];
        int k = snprintf(sz, sizeof(sz), "%zx\r\n", send_n);
        send(fd, sz, (size_t)k, MSG_NOSIGNAL);
    }
    while (off < send_n) {
        ssize_t w = send(fd, body + off, send_n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(body);
    return fd;
}

/* Issue 19, defect 5: bodies over 16 KiB reserve their size from a server-wide budget and a
 * per-client share; a request that does not fit is answered 503 + Retry-After at once (before
 * its body is read); small bodies always pass; a finished request gives its share back. */
static void test_body_budget(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.max_body = (size_t)1024 * 1024;
    o.max_body_inflight = (size_t)1024 * 1024;
    o.max_body_inflight_per_ip = (size_t)200 * 1024;
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    char buf[1024];
    /* The per-client share: 150 KiB held, 100 KiB more refused. */
    int a = post_partial(port, (size_t)150 * 1024, 10, 0);
    CHECK(a >= 0);
    usleep(100000);
    int b = post_partial(port, (size_t)100 * 1024, 0, 0);
    CHECK(b >= 0);
    CHECK_INT_EQ(read_status(b, buf, sizeof(buf)), 503);
    CHECK(strstr(buf, "Retry-After: 1") != NULL);
    close(b);
    /* A small body is part of the connection's own allowance. */
    resp_t r;
    char small[2000];
    memset(small, 's', sizeof(small));
    http(port, "POST", "/echo", NULL, small, sizeof(small), 0, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    close(a);
    usleep(200000);
    /* Given back: the same 100 KiB now fits. */
    char *big = malloc((size_t)100 * 1024);
    memset(big, 'x', (size_t)100 * 1024);
    http(port, "POST", "/echo", NULL, big, (size_t)100 * 1024, 0, &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_INT_EQ(r.body.len, (size_t)100 * 1024);
    resp_free(&r);
    epp_http_destroy(s);

    /* The server-wide budget, and a chunked body that grows past it. */
    o.max_body_inflight = (size_t)200 * 1024;
    o.max_body_inflight_per_ip = 0;
    s = start(&o);
    CHECK(s != NULL);
    port = epp_http_port(s);
    a = post_partial(port, (size_t)150 * 1024, 10, 0);
    usleep(100000);
    b = post_partial(port, (size_t)100 * 1024, 0, 0);
    CHECK_INT_EQ(read_status(b, buf, sizeof(buf)), 503);
    CHECK(strstr(buf, "\"code\":\"server_busy\"") != NULL || strstr(buf, "Retry-After") != NULL);
    close(b);
    int c = post_partial(port, 0, (size_t)120 * 1024, 1);
    CHECK_INT_EQ(read_status(c, buf, sizeof(buf)), 503);
    close(c);
    close(a);
    usleep(200000);
    http(port, "POST", "/echo", NULL, big, (size_t)100 * 1024, 1, &r);
    CHECK_INT_EQ(r.status, 200);
    resp_free(&r);
    free(big);
    epp_http_destroy(s);
}

/* Issue 19, item 10: connections over max_connections are closed without a reply; closing one
 * makes room again. */
static void test_max_connections(void)
{
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.max_connections = 3;
    epp_http_server_t *s = start(&o);
    CHECK(s != NULL);
    int port = epp_http_port(s);
    int fds[3];
    char buf[512];
    const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 3; i++) {
        fds[i] = tcp_connect(port);
        CHECK(fds[i] >= 0);
        CHECK(send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL) > 0);
        CHECK_INT_EQ(read_status(fds[i], buf, sizeof(buf)), 200);
    }
    int extra = tcp_connect(port);
    CHECK(extra >= 0);
    ssize_t w = send(extra, req, sizeof(req) - 1, MSG_NOSIGNAL);
    (void)w;
    CHECK_INT_EQ(read_status(extra, buf, sizeof(buf)), 0);
    close(extra);
    close(fds[0]);
    usleep(200000);
    int again = tcp_connect(port);
    CHECK(send(again, req, sizeof(req) - 1, MSG_NOSIGNAL) > 0);
    CHECK_INT_EQ(read_status(again, buf, sizeof(buf)), 200);
    close(again);
    close(fds[1]);
    close(fds[2]);
    epp_http_destroy(s);
}

/* The wire: pipelined requests answered in order, HTTP/1.0 closes unless asked, 100-continue,
 * and a line ending that is not CRLF is refused. */
static void test_wire(void)
{
    char buf[4096];
    int fd = tcp_connect(P);
    const char two[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
                       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo";
    CHECK(send(fd, two, sizeof(two) - 1, MSG_NOSIGNAL) > 0);
    size_t got = 0;
    while (got < sizeof(buf) - 1) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "two"))
            break;
    }
    close(fd);
    CHECK(strstr(buf, "one") && strstr(buf, "two") && strstr(buf, "one") < strstr(buf, "two"));

    fd = tcp_connect(P);
    const char old[] = "GET /health HTTP/1.0\r\n\r\n";
    CHECK(send(fd, old, sizeof(old) - 1, MSG_NOSIGNAL) > 0);
    CHECK_INT_EQ(read_status(fd, buf, sizeof(buf)), 200);
    CHECK(strstr(buf, "Connection: close") != NULL);
    close(fd);

    fd = tcp_connect(P);
    const char cont[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: "
                        "100-continue\r\n\r\n";
    CHECK(send(fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL) > 0);
    CHECK_INT_EQ(read_status(fd, buf, sizeof(buf)), 100);
    CHECK(send(fd, "hi", 2, MSG_NOSIGNAL) == 2);
    CHECK_INT_EQ(read_status(fd, buf, sizeof(buf)), 200);
    close(fd);

    const char bare_lf[] = "GET /health HTTP/1.1\nHost: x\n\n";
    CHECK_INT_EQ(raw_status(P, bare_lf, sizeof(bare_lf) - 1), 400);
    const char smuggle[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    CHECK_INT_EQ(raw_status(P, smuggle, sizeof(smuggle) - 1), 400);
}

int main(void)
{
    epp_log_init("test_http", EPP_LOG_ERROR, 1);
    curl_global_init(CURL_GLOBAL_ALL);
    M = epp_metrics_create();
    epp_http_opts_t o;
    epp_http_opts_default(&o);
    o.service = "epp-test";
    o.max_body = 1500;
    o.threads = 2;
    o.cors_origins = "https://ok.example, https://other.example";
    o.metrics = M;
    o.ready = ready_fn;
    S = start(&o);
    if (!S) {
        fprintf(stderr, "cannot start the server\n");
        return 1;
    }
    P = epp_http_port(S);

    EPP_RUN(test_routing);
    EPP_RUN(test_404_405);
    EPP_RUN(test_body_cap);
    EPP_RUN(test_cors);
    EPP_RUN(test_builtins);
    EPP_RUN(test_hostile);
    EPP_RUN(test_async_many);
    EPP_RUN(test_async_client_gone);
    EPP_RUN(test_auth);
    EPP_RUN(test_auth_basic_self);
    EPP_RUN(test_auth_rate_limit);
    EPP_RUN(test_rate_limit);
    EPP_RUN(test_destroy_pending);
    EPP_RUN(test_many_ready_at_once);
    EPP_RUN(test_connection_limits);
    EPP_RUN(test_quiesce);
    EPP_RUN(test_auth_throttle);
    EPP_RUN(test_addr_key);
    EPP_RUN(test_body_budget);
    EPP_RUN(test_max_connections);
    EPP_RUN(test_wire);

    epp_http_destroy(S);
    epp_metrics_destroy(M);
    curl_global_cleanup();
    return EPP_TEST_RESULT();
}
