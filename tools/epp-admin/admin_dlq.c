/* epp-admin dlq list | replay: reads the dead-letter topic from its low to its high watermark
 * (a snapshot: messages dead-lettered while we read are left for the next run), shows why each
 * message was dead-lettered (the consumer's error.* and source.* headers), and re-publishes
 * chosen ones to the main topic.
 *
 * Replay produces with acks=all and the idempotent producer, keeping the message key (the
 * user_id, so per-user order holds) and the non-error headers (traceparent, content-type), plus
 * epp.replayed_from naming the dead letter. A replayed event that is stored already is harmless:
 * the consumer's insert is idempotent on event_id. The DLQ is not modified (Kafka has no delete);
 * replaying the same message twice stores it once. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "admin.h"
#include "epp_buf.h"
#include "epp_error.h"
#include "epp_kafka.h"
#include "epp_time.h"

typedef struct {
    char *name;
    void *value;
    size_t size;
} header_t;

/* A copy of one dead letter. Copies, not the rd_kafka_message_t: librdkafka's destroy waits
 * for every message object of its handle to be freed first. */
typedef struct {
    int32_t partition;
    int64_t offset;
    void *key, *payload; /* owned; NULL when absent */
    size_t key_len, len;
    header_t *headers; /* owned */
    size_t n_headers;
} dead_t;

typedef struct {
    dead_t *items;
    size_t n, cap;
} dead_list_t;

static void dead_free(dead_t *d)
{
    free(d->key);
    free(d->payload);
    for (size_t h = 0; h < d->n_headers; h++) {
        free(d->headers[h].name);
        free(d->headers[h].value);
    }
    free(d->headers);
}

static void dead_list_free(dead_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        dead_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static void *dup_bytes(const void *p, size_t n)
{
    if (!p)
        return NULL;
    void *c = malloc(n ? n : 1);
    if (c)
        memcpy(c, p, n);
    return c;
}

/* Copies m into d. 0 or EPP_ENOMEM (d is then freed). */
static int dead_copy(dead_t *d, const rd_kafka_message_t *m)
{
    memset(d, 0, sizeof(*d));
    d->partition = m->partition;
    d->offset = m->offset;
    d->key_len = m->key_len;
    d->len = m->len;
    d->key = dup_bytes(m->key, m->key_len);
    d->payload = dup_bytes(m->payload, m->len);
    int rc = (m->key && !d->key) || (m->payload && !d->payload) ? EPP_ENOMEM : 0;
    rd_kafka_headers_t *hdrs = NULL;
    if (rc == 0 && rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t cnt = rd_kafka_header_cnt(hdrs);
        d->headers = calloc(cnt ? cnt : 1, sizeof(*d->headers));
        if (!d->headers)
            rc = EPP_ENOMEM;
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0;
             rc == 0 && i < cnt &&
             rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++) {
            header_t *h = &d->headers[d->n_headers++];
            h->name = strdup(name);
            h->value = val ? dup_bytes(val, size) : NULL;
            h->size = size;
            if (!h->name || (val && !h->value))
                rc = EPP_ENOMEM;
        }
    }
    if (rc != 0)
        dead_free(d);
    return rc;
}

static bool contains(const void *hay, size_t len, const char *needle)
{
    return hay && len >= strlen(needle) && memmem(hay, len, needle, strlen(needle)) != NULL;
}

/* Does the message mention filter in its value, key or any header value? */
static bool matches(const dead_t *d, const char *filter)
{
    if (!filter || !*filter)
        return true;
    if (contains(d->payload, d->len, filter) || contains(d->key, d->key_len, filter))
        return true;
    for (size_t i = 0; i < d->n_headers; i++)
        if (contains(d->headers[i].value, d->headers[i].size, filter))
            return true;
    return false;
}

/* epp-admin reaches the cluster the way the consumer does: KAFKA_CONSUMER_CONFIG's connection
 * settings (security.protocol, sasl.*, ssl.*), nothing else of it. */
static epp_kafka_passthrough_t connection_settings(const admin_conf_t *c)
{
    epp_kafka_passthrough_t pass = {c->kafka_consumer_config, "KAFKA_CONSUMER_CONFIG",
                                    epp_kafka_is_connection_key};
    return pass;
}

/* Reads every message of topic between the watermarks at the time of the call. */
static int read_topic(const admin_conf_t *c, const char *topic, dead_list_t *out)
{
    const epp_kafka_prop_t props[] = {
        EPP_KAFKA_PROP("bootstrap.servers", c->bootstrap),
        EPP_KAFKA_PROP("group.id", "epp-admin-dlq-reader"),
        EPP_KAFKA_PROP("enable.auto.commit", "false"),
        EPP_KAFKA_PROP("enable.partition.eof", "true"),
        EPP_KAFKA_PROP("auto.offset.reset", "earliest"),
        EPP_KAFKA_PROP("log_level", "3"),
    };
    const epp_kafka_passthrough_t pass = connection_settings(c);
    char err[512];
    rd_kafka_conf_t *kconf =
        epp_kafka_conf_create(props, sizeof(props) / sizeof(props[0]), &pass, err, sizeof(err));
    if (!kconf) {
        fprintf(stderr, "epp-admin: %s\n", err);
        return EPP_EINVAL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(kconf);
        fprintf(stderr, "epp-admin: %s\n", err);
        return EPP_EINVAL;
    }
    kconf = NULL; /* owned by rk */
    int timeout_ms = (int)(c->timeout_s * 1000);
    int nparts = epp_kafka_ping(rk, topic, timeout_ms, err, sizeof(err));
    int rc = 0;
    rd_kafka_topic_partition_list_t *assign = NULL;
    int64_t *high = NULL;
    if (nparts <= 0) {
        fprintf(stderr, "epp-admin: topic %s: %s\n", topic, err);
        rc = nparts < 0 ? nparts : EPP_ENOTFOUND;
        goto out;
    }
    high = calloc((size_t)nparts, sizeof(*high));
    assign = rd_kafka_topic_partition_list_new(nparts);
    int remaining = 0;
    for (int p = 0; p < nparts; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, timeout_ms);
        if (e) {
            fprintf(stderr, "epp-admin: watermarks of %s/%d: %s\n", topic, p, rd_kafka_err2str(e));
            rc = epp_kafka_err_to_epp(e);
            goto out;
        }
        high[p] = hi;
        if (hi > lo) {
            rd_kafka_topic_partition_list_add(assign, topic, p)->offset = lo;
            remaining++;
        }
    }
    if (remaining > 0 && rd_kafka_assign(rk, assign) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "epp-admin: cannot assign %s\n", topic);
        rc = EPP_EIO;
        goto out;
    }
    int64_t deadline = epp_time_mono_us() + (int64_t)(c->timeout_s * 1e6) * 3;
    while (remaining > 0) {
        if (epp_time_mono_us() > deadline) {
            fprintf(stderr, "epp-admin: timed out reading %s (%d partitions unfinished)\n", topic,
                    remaining);
            rc = EPP_ETIMEDOUT;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < nparts && high[m->partition] >= 0) {
                high[m->partition] = -1;
                remaining--;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            fprintf(stderr, "epp-admin: reading %s: %s\n", topic, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int32_t p = m->partition;
        bool done_here = p >= 0 && p < nparts && high[p] >= 0 && m->offset >= high[p] - 1;
        if (p >= 0 && p < nparts && high[p] >= 0 && m->offset < high[p]) {
            if (epp_grow(&out->items, &out->cap, out->n, sizeof *out->items, 64) != 0) {
                rd_kafka_message_destroy(m);
                rc = EPP_ENOMEM;
                break;
            }
            if (dead_copy(&out->items[out->n], m) != 0) {
                rd_kafka_message_destroy(m);
                rc = EPP_ENOMEM;
                break;
            }
            out->n++;
        }
        rd_kafka_message_destroy(m);
        if (done_here) {
            high[p] = -1;
            remaining--;
        }
    }
out:
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    free(high);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

/* Appends at most max bytes of data, printable ASCII as is and the rest as \xNN. */
static void preview(epp_buf_t *b, const void *data, size_t len, size_t max)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len && i < max; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f)
            epp_buf_append_char(b, (char)p[i]);
        else
            epp_buf_printf(b, "\\x%02x", p[i]);
    }
    if (len > max)
        epp_buf_printf(b, "... (%zu bytes)", len);
}

static void print_dead(const dead_t *d, size_t max_preview)
{
    epp_buf_t b = {0};
    epp_buf_printf(&b, "%d:%lld", d->partition, (long long)d->offset);
    if (d->key) {
        epp_buf_append_str(&b, " key=");
        preview(&b, d->key, d->key_len, 64);
    }
    for (size_t i = 0; i < d->n_headers; i++) {
        const header_t *h = &d->headers[i];
        if (strncmp(h->name, "error.", 6) != 0 && strncmp(h->name, "source.", 7) != 0)
            continue;
        epp_buf_printf(&b, " %s=", h->name);
        preview(&b, h->value, h->size, 200);
    }
    epp_buf_append_str(&b, "\n    ");
    preview(&b, d->payload, d->len, max_preview);
    printf("%s\n", b.data);
    epp_buf_free(&b);
}

int admin_dlq_list(const admin_conf_t *c)
{
    dead_list_t l = {0};
    int rc = read_topic(c, c->dlq_topic, &l);
    size_t shown = 0, matched = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (!matches(&l.items[i], c->filter))
            continue;
        matched++;
        if (c->limit <= 0 || (int64_t)shown < c->limit) {
            print_dead(&l.items[i], (size_t)c->preview);
            shown++;
        }
    }
    printf("dlq: topic=%s messages=%zu matched=%zu shown=%zu\n", c->dlq_topic, l.n, matched, shown);
    dead_list_free(&l);
    return rc == 0 ? 0 : 1;
}

/* --offsets: "P:O" picks one message; a bare "O" picks offset O of every partition. */
typedef struct {
    int32_t partition; /* -1: any */
    int64_t offset;
    bool found;
} pick_t;

static int parse_offsets(const char *s, pick_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!s || !*s)
        return 0;
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    pick_t *picks = calloc(cap, sizeof(*picks));
    if (!picks)
        return EPP_ENOMEM;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long a = strtoll(p, &end, 10);
        if (end == p || errno || a < 0)
            goto bad;
        picks[*n].partition = -1;
        picks[*n].offset = a;
        if (*end == ':') {
            const char *q = end + 1;
            long long o = strtoll(q, &end, 10);
            if (end == q || o < 0 || a > INT32_MAX)
                goto bad;
            picks[*n].partition = (int32_t)a;
            picks[*n].offset = o;
        }
        (*n)++;
        if (*end == ',')
            end++;
        else if (*end != '\0')
            goto bad;
        p = end;
    }
    *out = picks;
    return 0;
bad:
    free(picks);
    *n = 0;
    return EPP_EINVAL;
}

typedef struct {
    int delivered, failed;
} replay_result_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    replay_result_t *r = opaque;
    if (m->err) {
        r->failed++;
        fprintf(stderr, "epp-admin: replay of a message failed: %s\n", rd_kafka_err2str(m->err));
    } else {
        r->delivered++;
    }
}

int admin_dlq_replay(const admin_conf_t *c)
{
    pick_t *picks = NULL;
    size_t npicks = 0;
    if (parse_offsets(c->offsets, &picks, &npicks) != 0) {
        fprintf(stderr,
                "epp-admin: --offsets: expected a comma list of OFFSET or "
                "PARTITION:OFFSET: %s\n",
                c->offsets);
        return 2;
    }
    if (npicks == 0 && (!c->filter || !*c->filter) && !c->all) {
        /* Replaying everything is allowed, but only when asked for explicitly. */
        fprintf(stderr, "epp-admin: dlq replay: choose messages with --offsets and/or --filter, "
                        "or replay every dead letter with --all\n");
        free(picks);
        return 2;
    }
    dead_list_t l = {0};
    int status = 1;
    rd_kafka_t *rk = NULL;
    replay_result_t res = {0, 0};
    if (read_topic(c, c->dlq_topic, &l) != 0)
        goto out;
    const epp_kafka_prop_t props[] = {
        EPP_KAFKA_PROP("bootstrap.servers", c->bootstrap),
        EPP_KAFKA_PROP("acks", "all"),
        EPP_KAFKA_PROP("enable.idempotence", "true"),
        EPP_KAFKA_PROP("linger.ms", "5"),
    };
    const epp_kafka_passthrough_t pass = connection_settings(c);
    char err[512];
    rd_kafka_conf_t *kconf = NULL;
    if (!c->dry_run) {
        kconf =
            epp_kafka_conf_create(props, sizeof(props) / sizeof(props[0]), &pass, err, sizeof(err));
        if (!kconf) {
            fprintf(stderr, "epp-admin: %s\n", err);
            goto out;
        }
        rd_kafka_conf_set_dr_msg_cb(kconf, on_delivery);
        rd_kafka_conf_set_opaque(kconf, &res);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, err, sizeof(err));
        if (!rk) {
            rd_kafka_conf_destroy(kconf);
            fprintf(stderr, "epp-admin: %s\n", err);
            goto out;
        }
        kconf = NULL; /* owned by rk */
    }
    int chosen = 0, queued = 0;
    for (size_t i = 0; i < l.n; i++) {
        const dead_t *d = &l.items[i];
        if (!matches(d, c->filter))
            continue;
        bool picked = npicks == 0;
        for (size_t k = 0; k < npicks; k++) {
            if (picks[k].offset == d->offset &&
                (picks[k].partition < 0 || picks[k].partition == d->partition)) {
                picks[k].found = true;
                picked = true;
            }
        }
        if (!picked)
            continue;
        chosen++;
        if (c->dry_run) {
            print_dead(d, (size_t)c->preview);
            continue;
        }
        /* The original headers minus our error bookkeeping, plus where this came from. */
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(d->n_headers + 1);
        for (size_t h = 0; h < d->n_headers; h++) {
            const header_t *hd = &d->headers[h];
            if (strncmp(hd->name, "error.", 6) != 0 && strncmp(hd->name, "source.", 7) != 0)
                rd_kafka_header_add(hdrs, hd->name, -1, hd->value, (ssize_t)hd->size);
        }
        char from[256];
        snprintf(from, sizeof(from), "%s/%d/%lld", c->dlq_topic, d->partition,
                 (long long)d->offset);
        rd_kafka_header_add(hdrs, "epp.replayed_from", -1, from, -1);
        rd_kafka_resp_err_t e;
        for (;;) {
            e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_KEY(d->key, d->key_len),
                RD_KAFKA_V_VALUE(d->payload, d->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 100);
        }
        if (e) {
            rd_kafka_headers_destroy(hdrs); /* not taken on failure */
            fprintf(stderr, "epp-admin: cannot produce to %s: %s\n", c->topic, rd_kafka_err2str(e));
            res.failed++;
        } else {
            queued++;
        }
        rd_kafka_poll(rk, 0);
    }
    if (rk) {
        rd_kafka_flush(rk, (int)(c->timeout_s * 1000));
        if (rd_kafka_outq_len(rk) > 0) {
            fprintf(stderr, "epp-admin: %d messages not acknowledged in time\n",
                    rd_kafka_outq_len(rk));
            res.failed += rd_kafka_outq_len(rk);
        }
    }
    int missing = 0;
    for (size_t k = 0; k < npicks; k++) {
        if (!picks[k].found) {
            missing++;
            if (picks[k].partition >= 0)
                fprintf(stderr, "epp-admin: no dead letter %d:%lld matches\n", picks[k].partition,
                        (long long)picks[k].offset);
            else
                fprintf(stderr, "epp-admin: no dead letter at offset %lld matches\n",
                        (long long)picks[k].offset);
        }
    }
    printf("dlq replay: from=%s to=%s chosen=%d replayed=%d failed=%d missing=%d%s\n", c->dlq_topic,
           c->topic, chosen, res.delivered, res.failed, missing, c->dry_run ? " (dry run)" : "");
    (void)queued;
    status = (res.failed == 0 && missing == 0) ? 0 : 1;
out:
    if (rk)
        rd_kafka_destroy(rk);
    dead_list_free(&l);
    free(picks);
    return status;
}
