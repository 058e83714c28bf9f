/* epp-send: sends a modest number of realistic events to the Ingestion Service and says what
 * happened to them. The quick way to see the pipeline work (docs/contract.md §8).
 *
 * Requests run in parallel over libcurl's multi interface (--concurrency transfers at a time,
 * reusing keep-alive connections). Every event carries a client-made UUIDv7 event_id, so a
 * retried request (transport error, 429, 5xx) can never store an event twice: docs/contract.md §4
 * makes a repeated event_id idempotent.
 *
 * Exit status: 0 when every event was accepted, 1 when any was rejected or failed, 2 on bad
 * usage. */
#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epp_buf.h"
#include "epp_config.h"
#include "epp_error.h"
#include "epp_json.h"
#include "epp_log.h"
#include "epp_start.h"
#include "epp_time.h"
#include "epp_uuid.h"
#include "send_evgen.h"

typedef struct {
    char *url;
    int64_t count;
    int64_t users;
    int64_t batch;
    int64_t concurrency;
    int64_t retries;
    double timeout_s;
    char *api_key;
    char *event_names;
    char *test_marker;
    char *user_prefix;
    int64_t seed;
    epp_opts_log_t log;
} send_conf_t;

static const epp_conf_opt_t send_opts[] = {
    EPP_EVGEN_OPTS(send_conf_t, "30", "user-"),
    EPP_CONF_INT("count", NULL, "300", 1, 100000000, send_conf_t, count, "Events to send"),
    EPP_CONF_INT("concurrency", NULL, "8", 1, 1024, send_conf_t, concurrency,
                 "Requests in flight at once"),
    EPP_CONF_INT("retries", NULL, "3", 0, 100, send_conf_t, retries,
                 "Retries of a request after a transport error, 429 or 5xx (safe: events "
                 "carry event_ids)"),
    EPP_CONF_INT("seed", NULL, "0", 0, 9.2e18, send_conf_t, seed,
                 "Random seed for event contents (0: from the clock)"),
    EPP_OPTS_LOG(send_conf_t, log, "warn"),
    EPP_CONF_END,
};

/* One request: a body of n events (starting at event number first), sent until it gets a final
 * answer or runs out of retries. */
typedef struct {
    CURL *easy;
    epp_buf_t body;
    epp_buf_t resp;
    int64_t n;
    int attempts;
    int64_t not_before_us; /* retry backoff: not sent again before this monotonic time */
} xfer_t;

typedef struct {
    char key[48];
    int64_t n;
} errcount_t;

typedef struct {
    const send_conf_t *conf;
    char *url;
    struct curl_slist *headers;
    CURLM *multi;
    epp_evgen_t gen;
    int64_t next_event; /* events rendered into requests so far */
    int64_t sent, accepted, rejected, failed;
    errcount_t errors[32];
    size_t n_errors;
    bool progress;
    int64_t start_us, last_draw_us;
} sender_t;

static void count_error(sender_t *s, const char *key, int64_t n)
{
    for (size_t i = 0; i < s->n_errors; i++) {
        if (strcmp(s->errors[i].key, key) == 0) {
            s->errors[i].n += n;
            return;
        }
    }
    if (s->n_errors < sizeof(s->errors) / sizeof(s->errors[0])) {
        snprintf(s->errors[s->n_errors].key, sizeof(s->errors[0].key), "%s", key);
        s->errors[s->n_errors++].n = n;
    }
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    xfer_t *x = ud;
    size_t len = size * nmemb;
    /* Replies are small; a runaway body is cut off rather than buffered without bound. */
    if (x->resp.len + len > (1u << 20))
        return 0;
    return epp_buf_append(&x->resp, ptr, len) == 0 ? len : 0;
}

/* Renders the next request's body: one event, or a JSON array of up to --batch events. */
static int render_next(sender_t *s, xfer_t *x)
{
    int64_t per = s->conf->batch > 0 ? s->conf->batch : 1;
    int64_t n = s->conf->count - s->next_event;
    if (n > per)
        n = per;
    epp_buf_reset(&x->body);
    epp_buf_reset(&x->resp);
    x->n = n;
    x->attempts = 0;
    x->not_before_us = 0;
    int rc = 0;
    if (s->conf->batch > 0)
        rc = epp_buf_append_char(&x->body, '[');
    int64_t now = epp_time_now_us();
    for (int64_t k = 0; k < n && rc == 0; k++) {
        epp_uuid_t id;
        char ids[EPP_UUID_STRLEN + 1];
        epp_uuid_v7(&id);
        epp_uuid_format(&id, ids);
        if (k > 0)
            rc = epp_buf_append_char(&x->body, ',');
        if (rc == 0)
            rc = epp_evgen_event(&s->gen, (uint64_t)(s->next_event + k), ids, now, &x->body);
    }
    if (rc == 0 && s->conf->batch > 0)
        rc = epp_buf_append_char(&x->body, ']');
    s->next_event += n;
    return rc;
}

static int start_xfer(sender_t *s, xfer_t *x)
{
    epp_buf_reset(&x->resp);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body.data);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body.len);
    x->attempts++;
    if (x->attempts == 1)
        s->sent += x->n;
    return curl_multi_add_handle(s->multi, x->easy) == CURLM_OK ? 0 : EPP_EIO;
}

/* Reads {"accepted": n, "rejected": m} from a batch reply. Returns 0 when both were found. */
static int parse_batch_reply(const epp_buf_t *resp, int64_t *acc, int64_t *rej)
{
    epp_json_doc_t *doc = NULL;
    if (resp->len == 0 || epp_json_parse(resp->data, resp->len, NULL, &doc, NULL) != 0)
        return EPP_EINVAL;
    const epp_json_value_t *root = epp_json_root(doc);
    const epp_json_value_t *a = epp_json_get(root, "accepted");
    const epp_json_value_t *r = epp_json_get(root, "rejected");
    int rc = EPP_EINVAL;
    if (a && r && a->type == EPP_JSON_NUMBER && r->type == EPP_JSON_NUMBER) {
        *acc = strtoll(a->u.s.text, NULL, 10);
        *rej = strtoll(r->u.s.text, NULL, 10);
        rc = 0;
    }
    epp_json_doc_destroy(doc);
    return rc;
}

/* Seconds to wait before retrying, from Retry-After when the server sent one (capped), else a
 * capped exponential backoff. */
static int64_t backoff_us(xfer_t *x)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(x->easy, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h) {
        long secs = strtol(h->value, NULL, 10);
        if (secs > 0)
            return (secs > 5 ? 5 : secs) * EPP_USEC_PER_SEC;
    }
    int64_t us = 50000LL << (x->attempts < 6 ? x->attempts : 6);
    return us > 2 * EPP_USEC_PER_SEC ? 2 * EPP_USEC_PER_SEC : us;
}

/* Decides what a finished transfer means. Returns 1 when it should be retried. */
static int finish_xfer(sender_t *s, xfer_t *x, CURLcode cc)
{
    long status = 0;
    char key[48];
    if (cc != CURLE_OK) {
        snprintf(key, sizeof(key), "%s",
                 cc == CURLE_OPERATION_TIMEDOUT     ? "timeout"
                 : cc == CURLE_COULDNT_CONNECT      ? "connect"
                 : cc == CURLE_COULDNT_RESOLVE_HOST ? "resolve"
                                                    : "transport");
        EPP_LOGKV(EPP_LOG_DEBUG, "request failed", "error", curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        snprintf(key, sizeof(key), "%ld", status);
    }
    if (cc == CURLE_OK && status >= 200 && status < 300) {
        if (s->conf->batch > 0) {
            int64_t acc = 0, rej = 0;
            if (parse_batch_reply(&x->resp, &acc, &rej) == 0 && acc + rej == x->n) {
                s->accepted += acc;
                s->rejected += rej;
                if (rej > 0)
                    count_error(s, "rejected_in_batch", rej);
            } else {
                /* A 2xx we cannot read: do not claim the events were stored. */
                s->failed += x->n;
                count_error(s, "unreadable_reply", 1);
            }
        } else {
            s->accepted += x->n;
        }
        return 0;
    }
    bool retriable = cc != CURLE_OK || status == 429 || status >= 500;
    if (retriable && x->attempts <= s->conf->retries) {
        x->not_before_us = epp_time_mono_us() + backoff_us(x);
        return 1;
    }
    if (cc == CURLE_OK && !retriable && status != 0) {
        s->rejected += x->n;
        if (x->resp.len)
            EPP_LOGKV(EPP_LOG_INFO, "request rejected", "status", key, "body", x->resp.data);
    } else {
        s->failed += x->n;
    }
    count_error(s, key, 1);
    return 0;
}

static void format_errors(const sender_t *s, epp_buf_t *out)
{
    epp_buf_append_char(out, '{');
    for (size_t i = 0; i < s->n_errors; i++)
        epp_buf_printf(out, "%s\"%s\":%lld", i ? "," : "", s->errors[i].key,
                       (long long)s->errors[i].n);
    epp_buf_append_char(out, '}');
}

static void draw_progress(sender_t *s, bool final)
{
    int64_t now = epp_time_mono_us();
    if (!final && now - s->last_draw_us < 100000)
        return;
    s->last_draw_us = now;
    int64_t done = s->accepted + s->rejected + s->failed;
    int64_t total = s->conf->count;
    int width = 30, filled = (int)(total ? done * width / total : width);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    double el = (double)(now - s->start_us) / 1e6;
    fprintf(stderr, "\r[%s] %lld/%lld events  %.0f/s  rejected=%lld failed=%lld%s", bar,
            (long long)done, (long long)total, el > 0 ? (double)done / el : 0.0,
            (long long)s->rejected, (long long)s->failed, final ? "\n" : "");
    fflush(stderr);
}

static int run(sender_t *s)
{
    size_t nx = (size_t)s->conf->concurrency;
    xfer_t *xs = calloc(nx, sizeof(*xs));
    xfer_t **idle = calloc(nx, sizeof(xfer_t *));
    xfer_t **waiting = calloc(nx, sizeof(xfer_t *)); /* in backoff before a retry */
    size_t n_idle = 0, n_waiting = 0;
    int rc = 0;
    if (!xs || !idle || !waiting) {
        rc = EPP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nx; i++) {
        xs[i].easy = curl_easy_init();
        if (!xs[i].easy) {
            rc = EPP_ENOMEM;
            goto out;
        }
        curl_easy_setopt(xs[i].easy, CURLOPT_URL, s->url);
        curl_easy_setopt(xs[i].easy, CURLOPT_HTTPHEADER, s->headers);
        curl_easy_setopt(xs[i].easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(xs[i].easy, CURLOPT_WRITEDATA, &xs[i]);
        curl_easy_setopt(xs[i].easy, CURLOPT_PRIVATE, &xs[i]);
        curl_easy_setopt(xs[i].easy, CURLOPT_TIMEOUT_MS, (long)(s->conf->timeout_s * 1000));
        curl_easy_setopt(xs[i].easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(xs[i].easy, CURLOPT_TCP_NODELAY, 1L);
        idle[n_idle++] = &xs[i];
    }
    s->start_us = s->last_draw_us = epp_time_mono_us();
    int running = 0;
    for (;;) {
        int64_t now = epp_time_mono_us();
        /* Retries whose backoff is over go first, then new requests. */
        for (size_t i = 0; i < n_waiting;) {
            if (waiting[i]->not_before_us <= now) {
                xfer_t *x = waiting[i];
                waiting[i] = waiting[--n_waiting];
                if ((rc = start_xfer(s, x)) != 0)
                    goto out;
            } else {
                i++;
            }
        }
        while (n_idle > 0 && s->next_event < s->conf->count) {
            xfer_t *x = idle[--n_idle];
            if ((rc = render_next(s, x)) != 0 || (rc = start_xfer(s, x)) != 0)
                goto out;
        }
        curl_multi_perform(s->multi, &running);
        CURLMsg *msg;
        int left, finished = 0;
        while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            xfer_t *x = NULL;
            CURLcode cc = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            curl_multi_remove_handle(s->multi, x->easy);
            finished++;
            if (finish_xfer(s, x, cc))
                waiting[n_waiting++] = x;
            else
                idle[n_idle++] = x;
        }
        if (s->progress)
            draw_progress(s, false);
        if (running == 0 && n_waiting == 0 && s->next_event >= s->conf->count)
            break;
        if (finished > 0)
            continue; /* start the next requests before waiting */
        int wait_ms = n_waiting > 0 ? 10 : 100;
        curl_multi_poll(s->multi, NULL, 0, wait_ms, NULL);
    }
out:
    for (size_t i = 0; xs && i < nx; i++) {
        if (xs[i].easy)
            curl_easy_cleanup(xs[i].easy);
        epp_buf_free(&xs[i].body);
        epp_buf_free(&xs[i].resp);
    }
    free(xs);
    free(idle);
    free(waiting);
    return rc;
}

int main(int argc, char **argv)
{
    send_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    char err[256];
    epp_start_t start = {
        .prog = "epp-send",
        .summary = "Send realistic test events to the Ingestion Service.",
        .table = send_opts,
        .cfg = &conf,
        .log = &conf.log,
    };
    int rc = epp_start(&start, argc, argv);
    if (rc != 0)
        return epp_start_exit_status(rc);

    sender_t s;
    memset(&s, 0, sizeof(s));
    s.conf = &conf;
    s.progress = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
    int exit_code = 1;
    if (epp_evgen_init(&s.gen, conf.event_names, conf.user_prefix, conf.users, conf.test_marker,
                       (uint64_t)conf.seed, err, sizeof(err)) != 0) {
        fprintf(stderr, "epp-send: %s\n", err);
        exit_code = 2;
        goto done;
    }
    s.url = epp_evgen_resolve_url(conf.url, conf.batch > 0);
    if (!s.url || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "epp-send: initialisation failed\n");
        goto done;
    }
    s.multi = curl_multi_init();
    s.headers = curl_slist_append(NULL, "Content-Type: application/json");
    s.headers = curl_slist_append(s.headers, "Expect:");
    if (conf.api_key && *conf.api_key) {
        epp_buf_t auth = {0};
        epp_buf_printf(&auth, "Authorization: Bearer %s", conf.api_key);
        s.headers = curl_slist_append(s.headers, auth.data);
        epp_buf_free(&auth);
    }
    if (!s.multi || !s.headers) {
        fprintf(stderr, "epp-send: initialisation failed\n");
        goto done;
    }
    curl_multi_setopt(s.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conf.concurrency);
    if (run(&s) != 0) {
        fprintf(stderr, "epp-send: out of memory\n");
        goto done;
    }
    if (s.progress)
        draw_progress(&s, true);
    double el = (double)(epp_time_mono_us() - s.start_us) / 1e6;
    epp_buf_t errs = {0};
    format_errors(&s, &errs);
    printf("sent=%lld accepted=%lld rejected=%lld failed=%lld rate=%.1f/s errors=%s\n",
           (long long)s.sent, (long long)s.accepted, (long long)s.rejected, (long long)s.failed,
           el > 0 ? (double)(s.accepted + s.rejected + s.failed) / el : 0.0,
           errs.data ? errs.data : "{}");
    epp_buf_free(&errs);
    exit_code = (s.rejected == 0 && s.failed == 0 && s.accepted == conf.count) ? 0 : 1;
done:
    if (s.multi)
        curl_multi_cleanup(s.multi);
    curl_slist_free_all(s.headers);
    free(s.url);
    epp_evgen_free(&s.gen);
    curl_global_cleanup();
    epp_config_free(send_opts, &conf);
    return exit_code;
}
