/* epp_trace: W3C traceparent, sampling, and OTLP/HTTP JSON export to a tiny in-process
 * receiver (one thread, blocking sockets), including a collector that is down. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "epp_test.h"
#include "epp_json.h"
#include "epp_metrics.h"
#include "epp_trace.h"

static void test_traceparent(void)
{
    epp_trace_ctx_t ctx;
    const char *good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    CHECK_INT_EQ(epp_traceparent_parse(good, &ctx), 0);
    CHECK_INT_EQ(ctx.flags, 1);
    CHECK_INT_EQ(ctx.trace_id[0], 0x4b);
    CHECK_INT_EQ(ctx.span_id[7], 0xb7);
    char out[EPP_TRACEPARENT_LEN + 1];
    epp_traceparent_format(&ctx, out);
    CHECK_STR_EQ(out, good);

    const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",        /* short */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",       /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",       /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",       /* zero span id */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       /* unknown version */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", /* trailing */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",       /* not hex */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(epp_traceparent_parse(bad[i], &ctx) != 0);
}

/* A receiver that answers `status` to every request and keeps the last body. */
typedef struct {
    int fd;
    int port;
    int status;
    int requests;
    char *last_body;
    pthread_mutex_t lock;
} receiver_t;

static void *receiver_main(void *arg)
{
    receiver_t *r = arg;
    for (;;) {
        int c = accept(r->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        for (;;) { /* keep-alive: serve requests until the client closes */
            char *buf = malloc(1 << 22);
            size_t len = 0;
            ssize_t n;
            char *hdr_end = NULL;
            while (!hdr_end && (n = read(c, buf + len, (1 << 22) - 1 - len)) > 0) {
                len += (size_t)n;
                buf[len] = 0;
                hdr_end = strstr(buf, "\r\n\r\n");
            }
            if (!hdr_end) {
                free(buf);
                break;
            }
            const char *cl = strcasestr(buf, "content-length:");
            size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;
            size_t have = len - (size_t)(hdr_end + 4 - buf);
            while (have < want && (n = read(c, buf + len, (1 << 22) - 1 - len)) > 0) {
                len += (size_t)n;
                have += (size_t)n;
            }
            buf[len] = 0;
            pthread_mutex_lock(&r->lock);
            free(r->last_body);
            r->last_body = strdup(hdr_end + 4);
            r->requests++;
            int status = r->status;
            pthread_mutex_unlock(&r->lock);
            free(buf);
            char reply[128];
            int rl = snprintf(reply, sizeof reply,
                              "HTTP/1.1 %d X\r\nContent-Length: 2\r\nContent-Type: "
                              "application/json\r\n\r\n{}",
                              status);
            if (write(c, reply, (size_t)rl) != rl)
                break;
        }
        close(c);
    }
}

static void receiver_start(receiver_t *r, int status)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    r->status = status;
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(r->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(r->fd, (struct sockaddr *)&a, &al) != 0 || listen(r->fd, 16) != 0) {
        perror("receiver_start");
        abort();
    }
    r->port = ntohs(a.sin_port);
    pthread_t th;
    pthread_create(&th, NULL, receiver_main, r);
    pthread_detach(th);
}

static int hex_len_ok(const epp_json_value_t *v, size_t n)
{
    if (!v || v->type != EPP_JSON_STRING || v->u.s.len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", v->u.s.text[i]))
            return 0;
    return 1;
}

static int uint_string(const epp_json_value_t *v)
{
    if (!v || v->type != EPP_JSON_STRING || !v->u.s.len)
        return 0;
    for (size_t i = 0; i < v->u.s.len; i++)
        if (v->u.s.text[i] < '0' || v->u.s.text[i] > '9')
            return 0;
    return 1;
}

static receiver_t r; /* static: the receiver thread outlives test_export's frame */

static void test_export(void)
{
    receiver_start(&r, 200);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", r.port);
    epp_metrics_t *m = epp_metrics_create();
    epp_tracer_opts_t o = {.endpoint = url,
                           .service = "epp-test",
                           .sample_ratio = 1.0,
                           .interval_ms = 50,
                           .metrics = m};
    char err[128];
    epp_tracer_t *t = epp_tracer_create(&o, err, sizeof err);
    CHECK(t != NULL);

    epp_span_t *root = epp_span_start(t, "POST /events", EPP_SPAN_SERVER, NULL, 0);
    CHECK(epp_span_sampled(root));
    epp_span_set_str(root, "http.request.method", "POST");
    epp_span_set_int(root, "http.response.status_code", 202);
    char long_value[1001]; /* longer than the span's own text area: kept on the heap */
    memset(long_value, 'v', 1000);
    long_value[1000] = '\0';
    epp_span_set_str(root, "epp.long", long_value);
    epp_span_t *child =
        epp_span_start(t, "events publish", EPP_SPAN_PRODUCER, epp_span_ctx(root), 0);
    CHECK(memcmp(epp_span_ctx(child)->trace_id, epp_span_ctx(root)->trace_id, 16) == 0);
    epp_span_t *linked = epp_span_start(t, "batch write", EPP_SPAN_CONSUMER, NULL, 0);
    epp_span_add_link(linked, epp_span_ctx(child));
    epp_span_set_status(linked, EPP_SPAN_STATUS_ERROR, "db \"down\"");
    epp_span_end(child, 0);
    epp_span_end(linked, 0);
    epp_span_end(root, 0);
    epp_tracer_destroy(t); /* flushes */

    pthread_mutex_lock(&r.lock);
    char *body = r.last_body;
    r.last_body = NULL;
    pthread_mutex_unlock(&r.lock);
    CHECK(body != NULL);
    epp_json_doc_t *doc = NULL;
    CHECK_INT_EQ(epp_json_parse(body, strlen(body), NULL, &doc, NULL), 0);
    const epp_json_value_t *rs = epp_json_get(epp_json_root(doc), "resourceSpans");
    CHECK(rs && rs->type == EPP_JSON_ARRAY && rs->u.arr.n == 1);
    const epp_json_value_t *res = epp_json_get(rs->u.arr.items[0], "resource");
    CHECK(strstr(body, "\"service.name\",\"value\":{\"stringValue\":\"epp-test\"}") != NULL);
    CHECK(res != NULL);
    const epp_json_value_t *ss = epp_json_get(rs->u.arr.items[0], "scopeSpans");
    const epp_json_value_t *spans = epp_json_get(ss->u.arr.items[0], "spans");
    CHECK(spans && spans->u.arr.n == 3);
    int kinds = 0;
    for (size_t i = 0; i < spans->u.arr.n; i++) {
        const epp_json_value_t *s = spans->u.arr.items[i];
        CHECK(hex_len_ok(epp_json_get(s, "traceId"), 32));
        CHECK(hex_len_ok(epp_json_get(s, "spanId"), 16));
        CHECK(uint_string(epp_json_get(s, "startTimeUnixNano")));
        CHECK(uint_string(epp_json_get(s, "endTimeUnixNano")));
        const epp_json_value_t *kind = epp_json_get(s, "kind");
        CHECK(kind && kind->type == EPP_JSON_NUMBER);
        kinds |= 1 << strtol(kind->u.s.text, NULL, 10);
        const epp_json_value_t *links = epp_json_get(s, "links");
        if (links) {
            CHECK(links->u.arr.n == 1);
            CHECK(hex_len_ok(epp_json_get(links->u.arr.items[0], "spanId"), 16));
        }
    }
    CHECK_INT_EQ(kinds,
                 (1 << EPP_SPAN_SERVER) | (1 << EPP_SPAN_PRODUCER) | (1 << EPP_SPAN_CONSUMER));
    CHECK(strstr(body, "\"parentSpanId\"") != NULL);
    CHECK(strstr(body, "\"intValue\":\"202\"") != NULL);
    CHECK(strstr(body, long_value) != NULL);
    CHECK(strstr(body, "\"http.request.method\",\"value\":{\"stringValue\":\"POST\"}") != NULL);
    CHECK(strstr(body, "\"status\":{\"code\":2,\"message\":\"db \\\"down\\\"\"}") != NULL);
    epp_json_doc_destroy(doc);
    free(body);

    epp_buf_t out = {0};
    epp_metrics_render(m, &out);
    CHECK(strstr(out.data, "epp_otel_spans_exported_total 3") != NULL);
    epp_buf_free(&out);
    epp_metrics_destroy(m);
}

static void test_sampling(void)
{
    epp_tracer_opts_t o = {.endpoint = "http://127.0.0.1:1", .service = "s", .sample_ratio = 0.5};
    char err[128];
    epp_tracer_t *t = epp_tracer_create(&o, err, sizeof err);
    CHECK(t != NULL);
    int sampled = 0;
    for (int i = 0; i < 10000; i++) {
        epp_span_t *s = epp_span_start(t, "x", EPP_SPAN_INTERNAL, NULL, 0);
        sampled += epp_span_sampled(s);
        /* Children follow their parent's decision whatever the ratio. */
        epp_span_t *c = epp_span_start(t, "y", EPP_SPAN_INTERNAL, epp_span_ctx(s), 0);
        CHECK_INT_EQ(epp_span_sampled(c), epp_span_sampled(s));
        epp_span_end(c, 0);
        epp_span_end(s, 0);
    }
    CHECK(sampled > 4500 && sampled < 5500);
    epp_tracer_destroy(t);

    o.sample_ratio = 0;
    t = epp_tracer_create(&o, err, sizeof err);
    epp_span_t *s = epp_span_start(t, "x", EPP_SPAN_INTERNAL, NULL, 0);
    CHECK(s != NULL && !epp_span_sampled(s)); /* still has a context to propagate */
    epp_span_end(s, 0);
    epp_tracer_destroy(t);

    /* Tracing off: no tracer, and every span call accepts NULL. */
    o.endpoint = "";
    CHECK(epp_tracer_create(&o, err, sizeof err) == NULL);
    CHECK_STR_EQ(err, "");
    epp_span_t *none = epp_span_start(NULL, "x", EPP_SPAN_INTERNAL, NULL, 0);
    CHECK(none == NULL);
    epp_span_set_str(none, "a", "b");
    epp_span_end(none, 0);
}

static void test_collector_down(void)
{
    /* Port 1 on loopback: connection refused. Spans are dropped and counted. */
    epp_metrics_t *m = epp_metrics_create();
    epp_tracer_opts_t o = {.endpoint = "http://127.0.0.1:1",
                           .service = "s",
                           .sample_ratio = 1,
                           .interval_ms = 20,
                           .queue_size = 100,
                           .metrics = m};
    char err[128];
    epp_tracer_t *t = epp_tracer_create(&o, err, sizeof err);
    for (int i = 0; i < 300; i++)
        epp_span_end(epp_span_start(t, "x", EPP_SPAN_INTERNAL, NULL, 0), 0);
    epp_tracer_destroy(t);
    epp_buf_t out = {0};
    epp_metrics_render(m, &out);
    CHECK(strstr(out.data, "epp_otel_spans_dropped_total{reason=\"export_failed\"}") != NULL);
    epp_buf_free(&out);
    epp_metrics_destroy(m);
}

static receiver_t r2;

static uint64_t wait_for(uint64_t (*counter)(const epp_tracer_t *), const epp_tracer_t *t,
                         uint64_t at_least)
{
    for (int i = 0; i < 500 && counter(t) < at_least; i++)
        usleep(10000);
    return counter(t);
}

/* After a failed export, spans are not recorded (but still propagate a sampled context) until
 * the exporter's pause is over; then recording and export resume by themselves. */
static void test_shedding_after_failure(void)
{
    receiver_start(&r2, 503);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", r2.port);
    epp_metrics_t *m = epp_metrics_create();
    epp_tracer_opts_t o = {
        .endpoint = url, .service = "s", .sample_ratio = 1, .interval_ms = 20, .metrics = m};
    char err[128];
    epp_tracer_t *t = epp_tracer_create(&o, err, sizeof err);
    CHECK(t != NULL);

    epp_span_t *first = epp_span_start(t, "first", EPP_SPAN_INTERNAL, NULL, 0);
    CHECK(epp_span_recording(first));
    epp_span_end(first, 0);
    CHECK_INT_EQ(wait_for(epp_tracer_dropped, t, 1), 1); /* the 503 */

    epp_span_t *shed = epp_span_start(t, "shed", EPP_SPAN_SERVER, NULL, 0);
    CHECK(epp_span_sampled(shed));
    CHECK(!epp_span_recording(shed));
    epp_span_set_str(shed, "ignored", "value");
    epp_span_add_link(shed, epp_span_ctx(shed));
    epp_span_t *child = epp_span_start(t, "child", EPP_SPAN_CLIENT, epp_span_ctx(shed), 0);
    CHECK(epp_span_sampled(child) && !epp_span_recording(child));
    CHECK(memcmp(epp_span_ctx(child)->trace_id, epp_span_ctx(shed)->trace_id, 16) == 0);
    char tp[EPP_TRACEPARENT_LEN + 1];
    epp_traceparent_format(epp_span_ctx(child), tp);
    CHECK(tp[EPP_TRACEPARENT_LEN - 1] == '1'); /* propagated as sampled */
    epp_span_end(child, 0);
    epp_span_end(shed, 0);
    CHECK_INT_EQ(epp_tracer_dropped(t), 3);
    pthread_mutex_lock(&r2.lock);
    int requests = r2.requests;
    r2.status = 200; /* the collector recovers */
    pthread_mutex_unlock(&r2.lock);
    CHECK_INT_EQ(requests, 1); /* nothing was posted for the shed spans */

    /* The pause is about a second: recording resumes after it, and the span is exported. */
    int recorded = 0;
    for (int i = 0; i < 300 && !recorded; i++) {
        epp_span_t *s = epp_span_start(t, "later", EPP_SPAN_INTERNAL, NULL, 0);
        recorded = epp_span_recording(s);
        epp_span_end(s, 0);
        if (!recorded)
            usleep(10000);
    }
    CHECK(recorded);
    CHECK_INT_EQ(wait_for(epp_tracer_exported, t, 1), 1);
    epp_tracer_destroy(t);

    epp_buf_t out = {0};
    epp_metrics_render(m, &out);
    CHECK(strstr(out.data, "epp_otel_spans_exported_total 1") != NULL);
    CHECK(strstr(out.data, "epp_otel_spans_dropped_total{reason=\"export_failed\"}") != NULL);
    epp_buf_free(&out);
    epp_metrics_destroy(m);
}

/* A full queue: the next spans are not recorded, and are counted as queue_full drops. */
static void test_shedding_queue_full(void)
{
    epp_metrics_t *m = epp_metrics_create();
    epp_tracer_opts_t o = {.endpoint = "http://127.0.0.1:1",
                           .service = "s",
                           .sample_ratio = 1,
                           .queue_size = 4,
                           .interval_ms = 60000, /* the exporter waits: the queue stays full */
                           .metrics = m};
    char err[128];
    epp_tracer_t *t = epp_tracer_create(&o, err, sizeof err);
    CHECK(t != NULL);
    for (int i = 0; i < 5; i++) { /* four queued, the fifth finds the queue full */
        epp_span_t *s = epp_span_start(t, "x", EPP_SPAN_INTERNAL, NULL, 0);
        CHECK(epp_span_recording(s));
        epp_span_end(s, 0);
    }
    CHECK_INT_EQ(epp_tracer_dropped(t), 1);
    epp_span_t *s = epp_span_start(t, "y", EPP_SPAN_INTERNAL, NULL, 0);
    CHECK(epp_span_sampled(s) && !epp_span_recording(s));
    epp_span_end(s, 0);
    CHECK_INT_EQ(epp_tracer_dropped(t), 2);
    epp_tracer_destroy(t); /* one failed attempt, the rest dropped */
    epp_buf_t out = {0};
    epp_metrics_render(m, &out);
    CHECK(strstr(out.data, "epp_otel_spans_dropped_total{reason=\"queue_full\"} 2") != NULL);
    CHECK(strstr(out.data, "epp_otel_spans_dropped_total{reason=\"export_failed\"} 4") != NULL);
    epp_buf_free(&out);
    epp_metrics_destroy(m);
}

/* epp_traceparent_child: the trace context ingest writes into every Kafka message when it
 * records no span itself. */
static int well_formed(const char *tp)
{
    if (strlen(tp) != 55 || strncmp(tp, "00-", 3) != 0 || tp[35] != '-' || tp[52] != '-')
        return 0;
    for (int i = 3; i < 55; i++) {
        if (i == 35 || i == 52)
            continue;
        if (!((tp[i] >= '0' && tp[i] <= '9') || (tp[i] >= 'a' && tp[i] <= 'f')))
            return 0;
    }
    return strncmp(tp + 3, "00000000000000000000000000000000", 32) != 0 &&
           strncmp(tp + 36, "0000000000000000", 16) != 0;
}

static void test_child_propagates_valid(void)
{
    const char *in = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    char out[56];
    epp_traceparent_child(in, out);
    CHECK(well_formed(out));
    CHECK(memcmp(out, in, 35) == 0);           /* same version and trace id */
    CHECK(memcmp(out + 36, in + 36, 16) != 0); /* a new span id */
    CHECK_STR_EQ(out + 52, "-01");             /* flags kept */
    epp_traceparent_child("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", out);
    CHECK_STR_EQ(out + 52, "-00");
}

static void test_child_replaces_invalid(void)
{
    static const char *bad[] = {
        NULL,
        "",
        "garbage",
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  /* upper case */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  /* zero trace id */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  /* zero parent id */
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  /* forbidden version */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-", /* too long */
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[56];
        epp_traceparent_child(bad[i], out);
        CHECK(well_formed(out));
        CHECK_STR_EQ(out + 52, "-01");
        if (bad[i] && strlen(bad[i]) >= 35)
            CHECK(memcmp(out + 3, bad[i] + 3, 32) != 0);
    }
}

static void test_child_unique(void)
{
    char a[56], b[56];
    epp_traceparent_child(NULL, a);
    epp_traceparent_child(NULL, b);
    CHECK(strcmp(a, b) != 0);
    CHECK(memcmp(a + 3, b + 3, 32) != 0);
}

int main(void)
{
    EPP_RUN(test_child_propagates_valid);
    EPP_RUN(test_child_replaces_invalid);
    EPP_RUN(test_child_unique);
    EPP_RUN(test_traceparent);
    EPP_RUN(test_export);
    EPP_RUN(test_sampling);
    EPP_RUN(test_collector_down);
    EPP_RUN(test_shedding_after_failure);
    EPP_RUN(test_shedding_queue_full);
    return EPP_TEST_RESULT();
}
