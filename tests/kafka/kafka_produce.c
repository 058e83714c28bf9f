/* kafka_produce: produces COUNT messages through librdkafka (idempotent producer) and waits for
 * every delivery report. Used by tests/kafka to put messages into the dev broker from one process
 * while another process consumes them.
 *
 *   kafka_produce BOOTSTRAP TOPIC COUNT [KEYS]
 *
 * Message i has key "user-<i % KEYS>" and value {"key":"user-<k>","seq":<i / KEYS>,"i":<i>}, so
 * that a consumer can check per-key (hence per-partition) order: seq counts up by one for each
 * key. Prints one JSON line {"produced":N,"delivered":D,"failed":F,"first_error":...} and exits
 * 0 when every message was delivered, 1 otherwise, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "epp_kafka.h"
#include "epp_log.h"

typedef struct {
    long delivered;
    long failed;
    rd_kafka_resp_err_t first_error;
} tally_t;

/* Runs on the thread that calls rd_kafka_poll/flush: main(), here. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    tally_t *t = opaque;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        t->delivered++;
    } else {
        if (t->failed++ == 0)
            t->first_error = msg->err;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: kafka_produce BOOTSTRAP TOPIC COUNT [KEYS]\n");
        return 2;
    }
    const char *topic = argv[2];
    long count = strtol(argv[3], NULL, 10);
    long keys = argc == 5 ? strtol(argv[4], NULL, 10) : 100;
    if (count <= 0 || keys <= 0) {
        fprintf(stderr, "kafka_produce: COUNT and KEYS must be positive\n");
        return 2;
    }
    epp_log_init("kafka_produce", EPP_LOG_WARN, 1);

    tally_t tally = {0};
    char err[512];
    const epp_kafka_prop_t props[] = {
        EPP_KAFKA_PROP("bootstrap.servers", argv[1]),
        EPP_KAFKA_PROP("enable.idempotence", "true"),
        EPP_KAFKA_PROP("linger.ms", "5"),
        EPP_KAFKA_PROP("message.timeout.ms", "30000"),
    };
    rd_kafka_conf_t *conf =
        epp_kafka_conf_create(props, sizeof(props) / sizeof(props[0]), NULL, err, sizeof(err));
    if (conf == NULL) {
        fprintf(stderr, "kafka_produce: %s\n", err);
        return 2;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &tally);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "kafka_produce: %s\n", err);
        return 2;
    }
    conf = NULL; /* now owned by rk */

    long produced = 0;
    for (long i = 0; i < count; i++) {
        char key[32], value[128];
        int klen = snprintf(key, sizeof(key), "user-%ld", i % keys);
        int vlen = snprintf(value, sizeof(value), "{\"key\":\"%s\",\"seq\":%ld,\"i\":%ld}", key,
                            i / keys, i);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)klen),
                    RD_KAFKA_V_VALUE(value, (size_t)vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 100);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kafka_produce: produce: %s\n", rd_kafka_err2str(e));
            break;
        }
        produced++;
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 60000);
    int left = rd_kafka_outq_len(rk);
    printf(
        "{\"produced\":%ld,\"delivered\":%ld,\"failed\":%ld,\"queued\":%d,\"first_error\":\"%s\"}"
        "\n",
        produced, tally.delivered, tally.failed, left, rd_kafka_err2name(tally.first_error));
    rd_kafka_destroy(rk);
    return tally.delivered == count ? 0 : 1;
}
