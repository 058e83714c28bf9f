#include "consumer_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_kafka.h"
#include "epp_log.h"

typedef struct {
    consumer_kafka_hooks_t hooks;
} kafka_state_t;

/* One static instance: a process has one consumer, and librdkafka needs the pointer to stay
 * valid for the life of the handle. */
static kafka_state_t state;

static void log_parts(epp_log_level_t level, const char *what,
                      const rd_kafka_topic_partition_list_t *parts)
{
    char buf[512];
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < parts->cnt && off < sizeof buf - 32; i++)
        off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%d", i ? "," : "",
                                (int)parts->elems[i].partition);
    EPP_LOGKV(level, what, "partitions", buf);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        int unknown = state.hooks.on_assign(state.hooks.ud, parts) != 0;
        if (unknown)
            log_parts(EPP_LOG_ERROR, "partitions assigned paused: their start offsets are unknown",
                      parts);
        else
            log_parts(EPP_LOG_INFO, "partitions assigned", parts);
        rd_kafka_error_t *e = NULL;
        rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (cooperative)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            re = rd_kafka_assign(rk, parts);
        if (e != NULL) {
            EPP_LOGKV(EPP_LOG_ERROR, "assign failed", "error", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        } else if (re) {
            EPP_LOGKV(EPP_LOG_ERROR, "assign failed", "error", rd_kafka_err2str(re));
        }
        /* The group gave these partitions to us, so they are assigned (anything else leaves
         * the group's state undefined); paused, they are never fetched. A pause racing a fetch
         * drops what that fetch returns (librdkafka versions its fetch queue), and the writer
         * refuses anything that does not continue the stored offsets anyway. */
        if (unknown) {
            re = rd_kafka_pause_partitions(rk, parts);
            if (re)
                EPP_LOGKV(EPP_LOG_ERROR, "pause failed", "error", rd_kafka_err2str(re));
        }
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Finish the batch in hand while the partitions are still ours; a lost assignment
         * (session timeout) is finished too: the offsets check keeps a late write harmless. */
        state.hooks.on_revoke(state.hooks.ud, parts);
        log_parts(EPP_LOG_INFO,
                  rd_kafka_assignment_lost(rk) ? "partitions lost" : "partitions revoked", parts);
    } else {
        EPP_LOGKV(EPP_LOG_ERROR, "rebalance error", "error", rd_kafka_err2str(err));
    }
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e != NULL)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* Creates the topic and the dead-letter topic when the cluster lacks them (auto-creation is off
 * on our brokers). Kafka being down is no reason to refuse to start -- the consumer waits for it
 * like for Postgres -- so a failure is logged and the subscription goes ahead: epp-ingest
 * creates the topic too as soon as the brokers answer, and the consumer's metadata refresh then
 * finds it. The dead-letter topic gets one partition: it is small, and read in order. */
static void ensure_topics(rd_kafka_t *rk, const consumer_conf_t *conf)
{
    const struct {
        const char *topic;
        int partitions;
    } want[] = {{conf->topic, (int)conf->topic_partitions}, {conf->dlq_topic, 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char err[256] = "";
        int rc =
            epp_kafka_topic_ensure(rk, want[i].topic, want[i].partitions, 5000, err, sizeof err);
        if (rc < 0)
            EPP_LOGKV(EPP_LOG_WARN, "cannot create the kafka topic", "error", err);
        if (rc == EPP_EUNAVAIL)
            break; /* no broker answered: the next topic would wait just as long */
    }
}

rd_kafka_t *consumer_kafka_create(const consumer_conf_t *conf, const consumer_kafka_hooks_t *hooks,
                                  char *err, size_t errsz)
{
    state.hooks = *hooks;
    long long hb = conf->session_timeout_ms / 3;
    const epp_kafka_prop_t props[] = {
        EPP_KAFKA_PROP("bootstrap.servers", conf->bootstrap),
        EPP_KAFKA_PROP("group.id", conf->group_id),
        EPP_KAFKA_PROP("client.id", "epp-consumer"),
        EPP_KAFKA_PROP("enable.auto.commit", "false"),
        EPP_KAFKA_PROP("enable.auto.offset.store", "false"),
        EPP_KAFKA_PROP("auto.offset.reset", "error"),
        EPP_KAFKA_PROP_INT("session.timeout.ms", conf->session_timeout_ms),
        EPP_KAFKA_PROP_INT("heartbeat.interval.ms", hb < 3000 ? hb : 3000),
        EPP_KAFKA_PROP("enable.partition.eof", "false"),
        /* A broker answers a fetch as soon as fetch.min.bytes (1) are there, or after this
         * wait; the dev broker (librdkafka's mock cluster) always waits it out. 20 ms keeps the
         * end-to-end latency low there and costs an idle consumer 50 small requests/s. */
        EPP_KAFKA_PROP("fetch.wait.max.ms", "20"),
        /* Catching up on a backlog (event_consumer/README.md, "Performance"): librdkafka fetches
         * up to 1 MB per partition and queues up to 64 MB, so a batch held a few partitions'
         * long runs of events -- hours of event time each, i.e. thousands of minute buckets per
         * batch, each a rollup row and a user bitmap row -- and the consumer's peak RSS passed
         * 145 MB. 64 KB per partition (grown by librdkafka for a larger message) interleaves many
         * partitions' recent events in a batch.
         * librdkafka 2.0 (Debian 12) stops fetching while it holds queued.max.messages.kbytes
         * or queued.min.messages and looks again only at its broker thread's next wake-up, up to
         * 1 s later (librdkafka issue #2879; later releases added fetch.queue.backoff.ms). Before
         * the consumer woke it (consumer_refill_due), the queue had to hold a second of what the
         * writers store: at 8 MB, ~6,000 events of ~1 KB, fat events were stored at
         * 13,000-16,500 rows/s, at 32 MB at 29,000; for small events the count bounds it first,
         * and 50,000 stored live as fast as 130,000 (32 MB of 250-byte events) at 85 MB of peak
         * RSS, not 121. With the wake-ups, fat at 24 MB: 0.97x of \copy at 110 MB of peak RSS,
         * at 32 MB 1.05x but up to 130 MB (over the 128 MB bound), at 16 MB 0.82-0.90x
         * (event_consumer/README.md, "The fetcher's one-second sleep"). For small events the
         * count bounds it, 25,000: half of what it had to be without the wake-ups, which pays
         * for batches of 10,000 (live 0.95x of \copy at 111 MB). CONSUMER_BATCH_BYTES keeps the
         * batches of large events small. */
        EPP_KAFKA_PROP("max.partition.fetch.bytes", "65536"),
        EPP_KAFKA_PROP("queued.max.messages.kbytes", "24576"),
        EPP_KAFKA_PROP("queued.min.messages", "25000"),
        EPP_KAFKA_PROP("fetch.max.bytes", "8388608"),
    };
    const epp_kafka_passthrough_t pass = {conf->kafka_consumer_config, "KAFKA_CONSUMER_CONFIG",
                                          NULL};
    rd_kafka_conf_t *kc =
        epp_kafka_conf_create(props, sizeof props / sizeof props[0], &pass, err, errsz);
    if (kc == NULL)
        return NULL;
    rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, errsz);
    if (rk == NULL) {
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    /* kc is now owned by rk. Route everything to the consumer queue served by
     * rd_kafka_consumer_poll(), so that callbacks run on the polling thread. */
    rd_kafka_poll_set_consumer(rk);
    ensure_topics(rk, conf);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, conf->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errsz, "subscribe to %s: %s", conf->topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

int consumer_kafka_reachable(rd_kafka_t *rk, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* The value of a numeric configuration property of rk, or fallback. */
static size_t conf_size(rd_kafka_t *rk, const char *name, size_t fallback)
{
    char buf[32];
    size_t n = sizeof buf;
    if (rd_kafka_conf_get(rd_kafka_conf(rk), name, buf, &n) != RD_KAFKA_CONF_OK)
        return fallback;
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, 10);
    return end != buf && *end == '\0' ? (size_t)v : fallback;
}

int consumer_refill_init(consumer_refill_t *r, rd_kafka_t *rk)
{
    memset(r, 0, sizeof *r);
    r->queue = rd_kafka_queue_get_consumer(rk);
    if (r->queue == NULL)
        return EPP_ESTATE;
    r->min_msgs = conf_size(rk, "queued.min.messages", 100000);
    r->max_bytes = conf_size(rk, "queued.max.messages.kbytes", 65536) * 1024;
    return 0;
}

void consumer_refill_destroy(consumer_refill_t *r)
{
    if (r->queue != NULL)
        rd_kafka_queue_destroy(r->queue);
    r->queue = NULL;
}

void consumer_refill_seen(consumer_refill_t *r, size_t len)
{
    r->msgs++;
    r->bytes += len;
}

/* Wake-ups at most this often: each is a ListOffsets round trip per broker. */
#define REFILL_INTERVAL_US 50000

int consumer_refill_due(consumer_refill_t *r, int64_t now_us)
{
    if (r->queue == NULL || now_us - r->checked_us < 1000)
        return 0;
    r->checked_us = now_us;
    size_t half = r->min_msgs / 2;
    uint64_t mean = r->msgs > 0 ? r->bytes / r->msgs : 0;
    if (mean > 0 && r->max_bytes / 2 / mean < half)
        half = (size_t)(r->max_bytes / 2 / mean);
    if (rd_kafka_queue_length(r->queue) >= half) {
        r->armed = 1;
        return 0;
    }
    if (!r->armed || now_us - r->woken_us < REFILL_INTERVAL_US)
        return 0;
    r->armed = 0;
    r->woken_us = now_us;
    return 1;
}
