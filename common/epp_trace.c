#include "epp_trace.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_hex.h"
#include "epp_json.h"
#include "epp_log.h"
#include "epp_rand.h"
#include "epp_time.h"

#define MAX_ATTRS   24
#define MAX_LINKS   128
#define SPAN_TEXT   384  /* bytes for the name, keys and values kept inside the span */
#define SHED_MIN_MS 1000 /* first pause after a failed export */
#define SHED_MAX_MS 8000 /* longest pause between attempts while the collector is down */

typedef struct {
    char *key;
    char *str; /* NULL for an integer attribute */
    int64_t num;
} span_attr_t;

struct epp_span {
    epp_tracer_t *tracer;
    epp_trace_ctx_t ctx;
    uint8_t parent_span_id[8];
    bool has_parent;
    /* A span that is not recorded -- unsampled, or sampled while the exporter cannot take it
     * (queue full, or the collector failing) -- keeps its context, so propagation is unchanged,
     * but attributes and links are ignored and its end only counts the drop (when sampled): no
     * copy, no lock. Only the fields up to end_us are allocated for it (SPAN_HEAD_SIZE). */
    bool recording;
    epp_span_kind_t kind;
    epp_series_t *drop_reason; /* when sampled and not recording */
    int64_t start_us;
    /* ---- recorded spans only from here ---- */
    int64_t end_us;
    char *name;
    span_attr_t attrs[MAX_ATTRS];
    size_t nattrs;
    epp_trace_ctx_t *links;
    size_t nlinks;
    size_t links_dropped;
    epp_span_status_t status;
    char *status_msg;
    epp_span_t *next; /* export queue */
    size_t text_used;
    char text[SPAN_TEXT]; /* short strings live here: one allocation per span, not one per key */
};

struct epp_tracer {
    char *url;
    char *service;
    double ratio;
    size_t queue_size;
    size_t batch_size;
    unsigned timeout_ms;
    unsigned interval_ms;

    pthread_mutex_t lock; /* guards the queue and stopping */
    pthread_cond_t cond;
    epp_span_t *head, *tail;
    size_t queued;
    bool stopping;
    pthread_t thread;
    bool thread_started;

    /* Read by every span start without the lock: set when a span found the queue full (cleared
     * by the exporter once it has taken a batch), and the time before which the exporter, after
     * a failed export, will not try again. */
    atomic_bool full;
    _Atomic int64_t shed_until_us;

    atomic_uint_fast64_t exported;
    atomic_uint_fast64_t dropped;
    epp_series_t *m_exported;
    epp_series_t *m_dropped_full;
    epp_series_t *m_dropped_failed;
};

/* Ids come from a per-thread epp_rand generator seeded from the kernel: ids need to be unique,
 * not secret, and a syscall per span would cost more than the span. */
static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void)
{
    if (!rng_state) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, 0) != sizeof seed || !seed)
            seed = (uint64_t)epp_time_mono_us() * 0x9E3779B97F4A7C15ULL | 1;
        rng_state = seed;
    }
    return epp_rand_next(&rng_state);
}

static void random_bytes(uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rng_next();
            size_t k = n - i < 8 ? n - i : 8;
            memcpy(out + i, &r, k);
        }
    } while (n && !memcmp(out, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", n)); /* never all zero */
}

/* Decodes n bytes of lower-case hex (W3C trace context allows no other); all-zero ids are
 * invalid. */
static int parse_hex(const char *s, uint8_t *out, size_t n)
{
    if (epp_hex_decode(s, n, out, 1) != 0)
        return EPP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (out[i] != 0)
            return 0;
    return EPP_EINVAL;
}

int epp_traceparent_parse(const char *s, epp_trace_ctx_t *out)
{
    if (!s || strlen(s) != EPP_TRACEPARENT_LEN || s[0] != '0' || s[1] != '0' || s[2] != '-' ||
        s[35] != '-' || s[52] != '-')
        return EPP_EINVAL;
    epp_trace_ctx_t ctx;
    if (parse_hex(s + 3, ctx.trace_id, 16) || parse_hex(s + 36, ctx.span_id, 8) ||
        epp_hex_decode(s + 53, 1, &ctx.flags, 1))
        return EPP_EINVAL;
    *out = ctx;
    return 0;
}

void epp_traceparent_format(const epp_trace_ctx_t *ctx, char *out)
{
    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    epp_hex_encode(ctx->trace_id, 16, out + 3);
    out[35] = '-';
    epp_hex_encode(ctx->span_id, 8, out + 36);
    out[52] = '-';
    epp_hex_encode(&ctx->flags, 1, out + 53);
}

void epp_traceparent_child(const char *parent, char *out)
{
    epp_trace_ctx_t ctx;
    if (epp_traceparent_parse(parent, &ctx) != 0) {
        random_bytes(ctx.trace_id, 16);
        ctx.flags = 1;
    }
    random_bytes(ctx.span_id, 8);
    epp_traceparent_format(&ctx, out);
}

/* ---- spans ---- */

/* A copy of str inside the span when it fits, else on the heap (span_text_free tells which). */
static char *span_text(epp_span_t *s, const char *str)
{
    size_t n = strlen(str) + 1;
    if (n > sizeof s->text - s->text_used)
        return strdup(str);
    char *p = s->text + s->text_used;
    memcpy(p, str, n);
    s->text_used += n;
    return p;
}

static void span_text_free(epp_span_t *s, char *p)
{
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)s->text;
    if (a < lo || a >= lo + sizeof s->text)
        free(p);
}

#define SPAN_HEAD_SIZE offsetof(epp_span_t, end_us)

static void span_free(epp_span_t *s)
{
    if (!s)
        return;
    if (!s->recording) {
        free(s);
        return;
    }
    for (size_t i = 0; i < s->nattrs; i++) {
        span_text_free(s, s->attrs[i].key);
        span_text_free(s, s->attrs[i].str);
    }
    free(s->links);
    span_text_free(s, s->name);
    free(s->status_msg);
    free(s);
}

static bool sample_new_trace(const epp_tracer_t *t, const uint8_t trace_id[16])
{
    if (t->ratio >= 1.0)
        return true;
    if (t->ratio <= 0.0)
        return false;
    uint64_t v = 0;
    for (int i = 8; i < 16; i++)
        v = v << 8 | trace_id[i];
    return (double)v < t->ratio * 18446744073709551616.0;
}

epp_span_t *epp_span_start(epp_tracer_t *t, const char *name, epp_span_kind_t kind,
                           const epp_trace_ctx_t *parent, int64_t start_us)
{
    if (!t)
        return NULL;
    epp_trace_ctx_t ctx;
    if (parent) {
        memcpy(ctx.trace_id, parent->trace_id, 16);
        ctx.flags = parent->flags & 1;
    } else {
        random_bytes(ctx.trace_id, 16);
        ctx.flags = sample_new_trace(t, ctx.trace_id) ? 1 : 0;
    }
    random_bytes(ctx.span_id, 8);
    if (!start_us)
        start_us = epp_time_now_us();
    epp_series_t *drop_reason = NULL;
    if (ctx.flags & 1) {
        if (atomic_load_explicit(&t->full, memory_order_relaxed))
            drop_reason = t->m_dropped_full;
        else if (atomic_load_explicit(&t->shed_until_us, memory_order_relaxed) > start_us)
            drop_reason = t->m_dropped_failed;
    }
    bool recording = (ctx.flags & 1) && !drop_reason;
    /* Not calloc: the text area needs no zeroing, and this runs twice per ingest request. */
    size_t size = recording ? sizeof(epp_span_t) : SPAN_HEAD_SIZE;
    epp_span_t *s = malloc(size);
    if (!s)
        return NULL;
    memset(s, 0, recording ? offsetof(epp_span_t, text) : size);
    s->tracer = t;
    s->ctx = ctx;
    if (parent) {
        memcpy(s->parent_span_id, parent->span_id, 8);
        s->has_parent = true;
    }
    s->recording = recording;
    s->kind = kind;
    s->drop_reason = drop_reason;
    s->start_us = start_us;
    if (recording) {
        s->name = span_text(s, name ? name : "span");
        if (!s->name) {
            free(s);
            return NULL;
        }
    }
    return s;
}

epp_span_t *epp_span_start_linked(epp_tracer_t *t, const char *name, epp_span_kind_t kind,
                                  const epp_trace_ctx_t *links, size_t nlinks, int64_t start_us)
{
    /* The sampler sees the links: a span that links a sampled trace is recorded, so that the
     * linked trace can be followed into it. A sampled link is passed as the parent to take that
     * decision (and the shedding one), then the parent is removed: the span is a new root. */
    const epp_trace_ctx_t *sampled_link = NULL;
    for (size_t i = 0; i < nlinks && !sampled_link; i++)
        if (links[i].flags & 1)
            sampled_link = &links[i];
    epp_span_t *s = epp_span_start(t, name, kind, sampled_link, start_us);
    if (!s)
        return NULL;
    if (sampled_link) {
        random_bytes(s->ctx.trace_id, 16);
        memset(s->parent_span_id, 0, sizeof s->parent_span_id);
        s->has_parent = false;
    }
    for (size_t i = 0; i < nlinks; i++)
        epp_span_add_link(s, &links[i]);
    return s;
}

const epp_trace_ctx_t *epp_span_ctx(const epp_span_t *s)
{
    return s ? &s->ctx : NULL;
}

int epp_span_sampled(const epp_span_t *s)
{
    return s && (s->ctx.flags & 1);
}

int epp_span_recording(const epp_span_t *s)
{
    return s && s->recording;
}

static span_attr_t *attr_slot(epp_span_t *s, const char *key)
{
    if (!s || !s->recording || s->nattrs == MAX_ATTRS)
        return NULL;
    span_attr_t *a = &s->attrs[s->nattrs];
    a->key = span_text(s, key);
    if (!a->key)
        return NULL;
    a->str = NULL;
    s->nattrs++;
    return a;
}

void epp_span_set_str(epp_span_t *s, const char *key, const char *value)
{
    span_attr_t *a = attr_slot(s, key);
    if (a)
        a->str = span_text(s, value ? value : "");
}

void epp_span_set_int(epp_span_t *s, const char *key, int64_t value)
{
    span_attr_t *a = attr_slot(s, key);
    if (a)
        a->num = value;
}

void epp_span_add_link(epp_span_t *s, const epp_trace_ctx_t *ctx)
{
    if (!s || !ctx || !s->recording)
        return;
    if (s->nlinks == MAX_LINKS) {
        s->links_dropped++;
        return;
    }
    if (!s->links) {
        s->links = malloc(MAX_LINKS * sizeof *s->links);
        if (!s->links)
            return;
    }
    s->links[s->nlinks++] = *ctx;
}

void epp_span_set_status(epp_span_t *s, epp_span_status_t status, const char *message)
{
    if (!s || !s->recording)
        return;
    s->status = status;
    free(s->status_msg);
    s->status_msg = message ? strdup(message) : NULL;
}

static void count_dropped(epp_tracer_t *t, size_t n, epp_series_t *reason)
{
    atomic_fetch_add(&t->dropped, n);
    if (reason)
        epp_series_add(reason, (double)n);
}

void epp_span_end(epp_span_t *s, int64_t end_us)
{
    if (!s)
        return;
    epp_tracer_t *t = s->tracer;
    if (!s->recording) {
        if (s->ctx.flags & 1)
            count_dropped(t, 1, s->drop_reason);
        span_free(s);
        return;
    }
    s->end_us = end_us ? end_us : epp_time_now_us();
    if (s->links_dropped)
        epp_span_set_int(s, "epp.links.dropped", (int64_t)s->links_dropped);
    pthread_mutex_lock(&t->lock);
    if (t->queued >= t->queue_size || t->stopping) {
        if (!t->stopping)
            atomic_store_explicit(&t->full, true, memory_order_relaxed);
        pthread_mutex_unlock(&t->lock);
        count_dropped(t, 1, t->m_dropped_full);
        span_free(s);
        return;
    }
    s->next = NULL;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
    t->queued++;
    if (t->queued >= t->batch_size)
        pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

/* ---- OTLP JSON (the protobuf JSON mapping: ids as hex, 64-bit integers as strings) ---- */

static void render_id(epp_buf_t *b, const char *key, const uint8_t *id, size_t n)
{
    char hex[33];
    epp_hex_encode(id, n, hex);
    epp_buf_printf(b, "\"%s\":\"%s\"", key, hex);
}

static void render_span(epp_buf_t *b, const epp_span_t *s)
{
    epp_buf_append_char(b, '{');
    render_id(b, "traceId", s->ctx.trace_id, 16);
    epp_buf_append_char(b, ',');
    render_id(b, "spanId", s->ctx.span_id, 8);
    if (s->has_parent) {
        epp_buf_append_char(b, ',');
        render_id(b, "parentSpanId", s->parent_span_id, 8);
    }
    epp_buf_append_str(b, ",\"name\":");
    epp_json_write_string(b, s->name, strlen(s->name));
    epp_buf_printf(b,
                   ",\"kind\":%d,\"startTimeUnixNano\":\"%lld000\",\"endTimeUnixNano\":\"%lld000\"",
                   (int)s->kind, (long long)s->start_us, (long long)s->end_us);
    epp_buf_append_str(b, ",\"attributes\":[");
    for (size_t i = 0; i < s->nattrs; i++) {
        const span_attr_t *a = &s->attrs[i];
        if (i)
            epp_buf_append_char(b, ',');
        epp_buf_append_str(b, "{\"key\":");
        epp_json_write_string(b, a->key, strlen(a->key));
        if (a->str) {
            epp_buf_append_str(b, ",\"value\":{\"stringValue\":");
            epp_json_write_string(b, a->str, strlen(a->str));
            epp_buf_append_str(b, "}}");
        } else {
            epp_buf_printf(b, ",\"value\":{\"intValue\":\"%lld\"}}", (long long)a->num);
        }
    }
    epp_buf_append_char(b, ']');
    if (s->nlinks) {
        epp_buf_append_str(b, ",\"links\":[");
        for (size_t i = 0; i < s->nlinks; i++) {
            epp_buf_append_str(b, i ? ",{" : "{");
            render_id(b, "traceId", s->links[i].trace_id, 16);
            epp_buf_append_char(b, ',');
            render_id(b, "spanId", s->links[i].span_id, 8);
            epp_buf_append_char(b, '}');
        }
        epp_buf_append_char(b, ']');
    }
    epp_buf_printf(b, ",\"status\":{\"code\":%d", (int)s->status);
    if (s->status_msg) {
        epp_buf_append_str(b, ",\"message\":");
        epp_json_write_string(b, s->status_msg, strlen(s->status_msg));
    }
    epp_buf_append_str(b, "}}");
}

static void render_batch(epp_buf_t *b, const epp_tracer_t *t, epp_span_t *spans)
{
    epp_buf_append_str(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
                          "{\"key\":\"service.name\",\"value\":{\"stringValue\":");
    epp_json_write_string(b, t->service, strlen(t->service));
    epp_buf_append_str(
        b, "}},{\"key\":\"service.version\",\"value\":{\"stringValue\":\"" EPP_VERSION
           "\"}},{\"key\":\"telemetry.sdk.language\",\"value\":{\"stringValue\":"
           "\"c\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"epp\",\"version\":\"" EPP_VERSION
           "\"},\"spans\":[");
    for (epp_span_t *s = spans; s; s = s->next) {
        if (s != spans)
            epp_buf_append_char(b, ',');
        render_span(b, s);
    }
    epp_buf_append_str(b, "]}]}]}");
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* Waits on the tracer's condition for at most ms milliseconds (the lock held). */
static void wait_ms(epp_tracer_t *t, int64_t ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)(ms / 1000);
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&t->cond, &t->lock, &deadline);
}

/* Frees every queued span and counts them dropped (the lock held). */
static void drop_queue(epp_tracer_t *t, epp_series_t *reason)
{
    size_t n = t->queued;
    while (t->head) {
        epp_span_t *next = t->head->next;
        span_free(t->head);
        t->head = next;
    }
    t->tail = NULL;
    t->queued = 0;
    atomic_store_explicit(&t->full, false, memory_order_relaxed);
    if (n)
        count_dropped(t, n, reason);
}

static void *exporter_main(void *arg)
{
    epp_tracer_t *t = arg;
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    epp_buf_t body = {0};
    bool warned = false;
    int64_t pause_ms = 0; /* after a failed export: SHED_MIN_MS doubling up to SHED_MAX_MS */

    pthread_mutex_lock(&t->lock);
    for (;;) {
        /* After a failure, nothing is tried (and new spans are not recorded) until the pause
         * is over; a stop ends the pause. */
        int64_t rest_us;
        while (!t->stopping && (rest_us = atomic_load(&t->shed_until_us) - epp_time_now_us()) > 0)
            wait_ms(t, rest_us / 1000 + 1);
        if (!t->stopping && t->queued < t->batch_size)
            wait_ms(t, t->interval_ms);
        if (!t->head) {
            if (t->stopping)
                break;
            continue;
        }
        /* Take up to one batch off the queue, then export without holding the lock. */
        epp_span_t *batch = t->head, *last = t->head;
        size_t n = 1;
        while (n < t->batch_size && last->next) {
            last = last->next;
            n++;
        }
        t->head = last->next;
        if (!t->head)
            t->tail = NULL;
        last->next = NULL;
        t->queued -= n;
        atomic_store_explicit(&t->full, false, memory_order_relaxed);
        bool final = t->stopping;
        pthread_mutex_unlock(&t->lock);

        epp_buf_reset(&body);
        render_batch(&body, t, batch);
        CURLcode rc = CURLE_FAILED_INIT;
        long status = 0;
        if (curl) {
            curl_easy_setopt(curl, CURLOPT_URL, t->url);
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)body.len);
            curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
            curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)t->timeout_ms);
            curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
            rc = curl_easy_perform(curl);
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        }
        if (rc == CURLE_OK && status >= 200 && status < 300) {
            atomic_fetch_add(&t->exported, n);
            if (t->m_exported)
                epp_series_add(t->m_exported, (double)n);
            warned = false;
            pause_ms = 0;
        } else {
            /* Pause before the next attempt, and shed spans meanwhile: rendering and posting
             * batches to a collector that refuses them would cost the request path a core. */
            pause_ms = pause_ms ? pause_ms * 2 : SHED_MIN_MS;
            if (pause_ms > SHED_MAX_MS)
                pause_ms = SHED_MAX_MS;
            atomic_store(&t->shed_until_us, epp_time_now_us() + pause_ms * 1000);
            count_dropped(t, n, t->m_dropped_failed);
            if (!warned) /* once per outage, not once per batch */
                EPP_WARN(
                    "span export to %s failed (%s, HTTP %ld): dropping spans until it recovers",
                    t->url, rc == CURLE_OK ? "bad status" : curl_easy_strerror(rc), status);
            warned = true;
        }
        while (batch) {
            epp_span_t *next = batch->next;
            span_free(batch);
            batch = next;
        }
        pthread_mutex_lock(&t->lock);
        /* A failed export drops what is queued too: those spans would meet the same collector
         * (and on shutdown, one failed attempt is enough rather than a timeout per batch). */
        if (warned)
            drop_queue(t, t->m_dropped_failed);
        if (final && !t->head)
            break;
    }
    pthread_mutex_unlock(&t->lock);
    epp_buf_free(&body);
    curl_slist_free_all(headers);
    if (curl)
        curl_easy_cleanup(curl);
    return NULL;
}

epp_tracer_t *epp_tracer_create(const epp_tracer_opts_t *opts, char *err, size_t errsz)
{
    if (errsz)
        err[0] = '\0';
    if (!opts->endpoint || !opts->endpoint[0])
        return NULL;
    if (strncmp(opts->endpoint, "http://", 7) != 0 && strncmp(opts->endpoint, "https://", 8) != 0) {
        snprintf(err, errsz, "OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s):// URL, got \"%s\"",
                 opts->endpoint);
        return NULL;
    }
    epp_tracer_t *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    epp_buf_t url = {0};
    size_t len = strlen(opts->endpoint);
    while (len && opts->endpoint[len - 1] == '/')
        len--;
    epp_buf_append(&url, opts->endpoint, len);
    /* The endpoint is the collector's base URL, as the OTel SDKs define the variable. */
    epp_buf_append_str(&url, "/v1/traces");
    t->url = epp_buf_steal(&url);
    t->service = strdup(opts->service ? opts->service : "epp");
    t->ratio = opts->sample_ratio;
    t->queue_size = opts->queue_size ? opts->queue_size : 4096;
    t->batch_size = opts->batch_size ? opts->batch_size : 512;
    t->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 2000;
    t->interval_ms = opts->interval_ms ? opts->interval_ms : 1000;
    if (opts->metrics) {
        epp_metric_t *ex = epp_metrics_counter(opts->metrics, "epp_otel_spans_exported_total",
                                               "Spans sent to the OTLP endpoint", NULL);
        epp_metric_t *dr =
            epp_metrics_counter(opts->metrics, "epp_otel_spans_dropped_total",
                                "Spans dropped because the export queue was full or the export "
                                "failed",
                                "reason");
        t->m_exported = ex ? epp_metric_default(ex) : NULL;
        t->m_dropped_full = dr ? epp_metric_series(dr, "queue_full") : NULL;
        t->m_dropped_failed = dr ? epp_metric_series(dr, "export_failed") : NULL;
    }
    if (!t->url || !t->service) {
        snprintf(err, errsz, "out of memory");
        epp_tracer_destroy(t);
        return NULL;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (pthread_create(&t->thread, NULL, exporter_main, t)) {
        snprintf(err, errsz, "cannot start the span exporter thread");
        epp_tracer_destroy(t);
        return NULL;
    }
    t->thread_started = true;
    return t;
}

epp_tracer_t *epp_tracer_start(const epp_opts_trace_t *conf, const char *service,
                               epp_metrics_t *metrics, char *err, size_t errsz)
{
    epp_tracer_opts_t opts = {0};
    opts.endpoint = conf->endpoint;
    opts.service = conf->service != NULL && conf->service[0] != '\0' ? conf->service : service;
    opts.sample_ratio = conf->sample_ratio;
    opts.metrics = metrics;
    return epp_tracer_create(&opts, err, errsz);
}

void epp_tracer_destroy(epp_tracer_t *t)
{
    if (!t)
        return;
    if (t->thread_started) {
        pthread_mutex_lock(&t->lock);
        t->stopping = true;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->thread, NULL);
    }
    drop_queue(t, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    free(t->url);
    free(t->service);
    free(t);
}

uint64_t epp_tracer_exported(const epp_tracer_t *t)
{
    return t ? atomic_load(&((epp_tracer_t *)t)->exported) : 0;
}

uint64_t epp_tracer_dropped(const epp_tracer_t *t)
{
    return t ? atomic_load(&((epp_tracer_t *)t)->dropped) : 0;
}
