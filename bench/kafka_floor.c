/* bench_kafka_floor: librdkafka's own cost per message, measured alone -- the floor under
 * epp-ingest's CPU per event (issue 20: "where a target cannot be reached, show the measured
 * floor").
 *
 * Produces messages shaped like epp-ingest's (a ~240-byte canonical event, key user_id, headers
 * traceparent and content-type, a malloc'd value handed over with RD_KAFKA_MSG_F_FREE) with
 * epp-ingest's producer settings (idempotent, acks=all, linger.ms=1, murmur2_random), keeping at
 * most --inflight messages without a delivery report (256: like 256 closed-loop connections; 0:
 * no bound, like batches), serving reports from the producing thread as epp-ingest's HTTP
 * workers do. Prints one line: messages/s and this process's CPU time per message (all its
 * threads, getrusage).
 *
 * --linger-ms gives linger.ms (default 1, epp-ingest's default; fractions allowed), so that the
 * floor is measured with the setting the service runs with.
 *
 * Usage: bench_kafka_floor BOOTSTRAP TOPIC SECONDS [--inflight N] [--linger-ms MS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "epp_kafka.h"
#include "epp_log.h"
#include "bench_args.h"

static long delivered, failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (msg->err)
        failed++;
    else
        delivered++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_kafka_floor BOOTSTRAP TOPIC SECONDS [--inflight N] "
                        "[--linger-ms MS]\n");
        return 2;
    }
    long inflight = 256;
    const char *linger = "1";
    for (int i = 4; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--inflight") == 0)
            inflight = bench_arg_long("bench_kafka_floor", "--inflight", argv[++i], 0, 10000000);
        else if (strcmp(argv[i], "--linger-ms") == 0) {
            linger = argv[++i];
            (void)bench_arg_double("bench_kafka_floor", "--linger-ms", linger, 0, 1000);
        }
    }
    double seconds = bench_arg_double("bench_kafka_floor", "SECONDS", argv[3], 0.1, 86400);
    epp_log_init("bench_kafka_floor", EPP_LOG_WARN, 0);
    char err[512];
    const epp_kafka_prop_t props[] = {
        EPP_KAFKA_PROP("bootstrap.servers", argv[1]),
        EPP_KAFKA_PROP("enable.idempotence", "true"),
        EPP_KAFKA_PROP("acks", "all"),
        EPP_KAFKA_PROP("linger.ms", linger),
        EPP_KAFKA_PROP("batch.num.messages", "10000"),
        EPP_KAFKA_PROP("partitioner", "murmur2_random"),
        EPP_KAFKA_PROP("socket.nagle.disable", "true"),
    };
    rd_kafka_conf_t *conf =
        epp_kafka_conf_create(props, sizeof props / sizeof props[0], NULL, err, sizeof err);
    if (!conf) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[2], NULL);
    static const char value[] =
        "{\"event_id\":\"0190a5c2-7b1e-7000-8000-00000000002a\",\"user_id\":\"user-000042\","
        "\"event_name\":\"page_view\",\"timestamp\":\"2026-11-27T08:31:45.123Z\",\"received_at\":"
        "\"2026-11-27T08:31:45.200Z\",\"metadata\":{\"path\":\"/pricing\",\"ref\":\"newsletter\","
        "\"plan\":\"pro\",\"n\":12}}";
    static const char tp[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    /* Warm up: connection, metadata, producer id. */
    rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_VALUE((void *)"{}", 2), RD_KAFKA_V_END);
    rd_kafka_flush(rk, 10000);
    delivered = failed = 0;
    long produced = 0;
    double t0 = now_s(), c0 = cpu_s();
    while (now_s() - t0 < seconds) {
        /* At most 64 messages between two serves of the delivery reports. */
        for (int k = 0; k < 64 && (inflight == 0 || produced - delivered - failed < inflight);
             k++) {
            char key[32];
            int klen = snprintf(key, sizeof key, "user-%06ld", produced % 1000);
            rd_kafka_headers_t *h = rd_kafka_headers_new(2);
            rd_kafka_header_add(h, "traceparent", 11, tp, -1);
            rd_kafka_header_add(h, "content-type", 12, "application/json", 16);
            /* F_COPY: librdkafka allocates and copies the value: the same work as the malloc and
             * copy epp-ingest hands over with F_FREE. */
            rd_kafka_resp_err_t e =
                rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(key, (size_t)klen),
                                  RD_KAFKA_V_VALUE((void *)value, sizeof value - 1),
                                  RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
            if (e) {
                rd_kafka_headers_destroy(h);
                break;
            }
            produced++;
        }
        rd_kafka_poll(rk, inflight && produced - delivered - failed >= inflight ? 1 : 0);
    }
    rd_kafka_flush(rk, 30000);
    double el = now_s() - t0, cpu = cpu_s() - c0;
    printf("%.0f messages/s, %.2f us CPU per message (producer process), %ld delivered, %ld "
           "failed, inflight bound %ld\n",
           (double)delivered / el, cpu * 1e6 / (double)(delivered ? delivered : 1), delivered,
           failed, inflight);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return failed ? 1 : 0;
}
