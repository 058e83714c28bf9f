#include "consumer_dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_kafka.h"
#include "epp_log.h"

struct consumer_dlq {
    rd_kafka_t *rk;
    char *topic;
    int failed; /* deliveries that failed since the last flush */
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    consumer_dlq_t *d = opaque;
    if (m->err) {
        d->failed++;
        char bytes[32];
        snprintf(bytes, sizeof bytes, "%zu", m->len);
        EPP_LOGKV(EPP_LOG_ERROR, "dead-letter delivery failed", "error", rd_kafka_err2str(m->err),
                  "bytes", bytes);
    }
}

static int is_fetch_size_key(const char *key)
{
    return strcmp(key, "receive.message.max.bytes") == 0 || strcmp(key, "fetch.max.bytes") == 0;
}

static long long conf_int(rd_kafka_conf_t *conf, const char *key)
{
    char v[32];
    size_t n = sizeof v;
    if (rd_kafka_conf_get(conf, key, v, &n) != RD_KAFKA_CONF_OK)
        return 0;
    return strtoll(v, NULL, 10);
}

/* message.max.bytes for the producer: the largest fetch response the consumer accepts, plus
 * the headers' room; a bad size setting fails the consumer itself later, with its own error. */
static long long largest_copy(const char *consumer_config)
{
    const epp_kafka_passthrough_t sizes = {consumer_config, "KAFKA_CONSUMER_CONFIG",
                                           is_fetch_size_key};
    char ignored[256];
    rd_kafka_conf_t *probe = epp_kafka_conf_create(NULL, 0, &sizes, ignored, sizeof ignored);
    long long recv = probe != NULL ? conf_int(probe, "receive.message.max.bytes") : 0;
    long long fetch = probe != NULL ? conf_int(probe, "fetch.max.bytes") + 512 : 0;
    if (probe != NULL)
        rd_kafka_conf_destroy(probe);
    else
        recv = 100000000; /* librdkafka's default; the consumer reports the bad setting */
    long long most = (recv > fetch ? recv : fetch) + CONSUMER_DLQ_HEADER_ROOM;
    /* librdkafka's ceiling for message.max.bytes. */
    return most < 1000000000LL ? most : 1000000000LL;
}

rd_kafka_conf_t *consumer_dlq_conf(const consumer_conf_t *conf, char *err, size_t errsz)
{
    /* acks=all and idempotence: a dead letter is the only copy of a message we gave up on. It
     * connects like the consumer: KAFKA_CONSUMER_CONFIG's connection settings, nothing else. */
    const epp_kafka_prop_t props[] = {
        EPP_KAFKA_PROP("bootstrap.servers", conf->bootstrap),
        EPP_KAFKA_PROP("enable.idempotence", "true"),
        EPP_KAFKA_PROP("acks", "all"),
        EPP_KAFKA_PROP("linger.ms", "1"),
        EPP_KAFKA_PROP("message.timeout.ms", "30000"),
        EPP_KAFKA_PROP("client.id", "epp-consumer-dlq"),
        EPP_KAFKA_PROP_INT("message.max.bytes", largest_copy(conf->kafka_consumer_config)),
    };
    const epp_kafka_passthrough_t pass = {conf->kafka_consumer_config, "KAFKA_CONSUMER_CONFIG",
                                          epp_kafka_is_connection_key};
    return epp_kafka_conf_create(props, sizeof props / sizeof props[0], &pass, err, errsz);
}

consumer_dlq_t *consumer_dlq_create(const consumer_conf_t *conf, char *err, size_t errsz)
{
    consumer_dlq_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    d->topic = strdup(conf->dlq_topic);
    if (d->topic == NULL) {
        snprintf(err, errsz, "out of memory");
        consumer_dlq_destroy(d);
        return NULL;
    }
    rd_kafka_conf_t *kc = consumer_dlq_conf(conf, err, errsz);
    if (kc == NULL) {
        consumer_dlq_destroy(d);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_conf_set_opaque(kc, d);
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, errsz);
    if (d->rk == NULL) {
        rd_kafka_conf_destroy(kc);
        consumer_dlq_destroy(d);
        return NULL;
    }
    /* kc is now owned by d->rk. */
    return d;
}

void consumer_dlq_destroy(consumer_dlq_t *d)
{
    if (d == NULL)
        return;
    if (d->rk != NULL) {
        rd_kafka_flush(d->rk, 5000);
        rd_kafka_destroy(d->rk);
    }
    free(d->topic);
    free(d);
}

int consumer_dlq_send(consumer_dlq_t *d, const consumer_msg_t *msg, const char *source_topic,
                      const char *code, const char *message)
{
    /* The original headers, then ours. */
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(msg->nheaders + 5);
    for (size_t i = 0; i < msg->nheaders; i++) {
        const consumer_header_t *h = &msg->headers[i];
        rd_kafka_header_add(hdrs, h->name, (ssize_t)h->name_len, h->value, (ssize_t)h->value_len);
    }
    char part[16], off[32];
    snprintf(part, sizeof part, "%" PRId32, msg->partition);
    snprintf(off, sizeof off, "%" PRId64, msg->offset);
    rd_kafka_header_add(hdrs, "error.code", -1, code, -1);
    rd_kafka_header_add(hdrs, "error.message", -1, message, -1);
    rd_kafka_header_add(hdrs, "source.topic", -1, source_topic, -1);
    rd_kafka_header_add(hdrs, "source.partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "source.offset", -1, off, -1);
    rd_kafka_resp_err_t e;
    for (int attempt = 0;; attempt++) {
        e = rd_kafka_producev(
            d->rk, RD_KAFKA_V_TOPIC(d->topic), RD_KAFKA_V_VALUE((void *)msg->payload, msg->len),
            RD_KAFKA_V_KEY(msg->key, msg->key_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || attempt >= 50)
            break;
        rd_kafka_poll(d->rk, 100);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* On failure the headers still belong to us. */
        rd_kafka_headers_destroy(hdrs);
        EPP_LOGKV(EPP_LOG_ERROR, "dead-letter produce failed", "error", rd_kafka_err2str(e));
        return e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? EPP_EAGAIN : EPP_EUNAVAIL;
    }
    /* hdrs are now owned by the message. */
    return 0;
}

int consumer_dlq_flush(consumer_dlq_t *d, int timeout_ms)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(d->rk, timeout_ms);
    int failed = d->failed;
    d->failed = 0;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || failed > 0)
        return EPP_EUNAVAIL;
    return 0;
}
