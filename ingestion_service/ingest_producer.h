/* ingest_producer: the librdkafka producer behind POST /events, with the promise docs/contract.md
 * §4 makes -- a delivery callback reports success only for a message Kafka acknowledged (acks=all,
 * idempotent producer).
 *
 * Threads: one poll thread per producer instance serves delivery reports and errors (so they
 * never wait for an HTTP thread), and one supervisor thread refreshes readiness every ~2 s and
 * replaces the instance after a fatal error. Replacing swaps the handle under a write lock;
 * ingest_producer_send() holds the read lock while it enqueues, so a send never touches a handle
 * that is being destroyed. The messages still queued in the old instance are purged, which
 * reports them failed (their requests get 503) -- the service keeps serving on the new one. */
#ifndef INGEST_PRODUCER_H
#define INGEST_PRODUCER_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "epp_metrics.h"

typedef struct ingest_producer ingest_producer_t;

/* Called once per message that ingest_producer_send() accepted, on a poll thread. err is
 * RD_KAFKA_RESP_ERR_NO_ERROR only when Kafka acknowledged the message. msg_opaque is the value
 * given to ingest_producer_send(). Must be thread-safe and quick (it runs for every event). */
typedef void (*ingest_delivery_fn)(void *msg_opaque, rd_kafka_resp_err_t err, void *ud);

typedef struct {
    const char *bootstrap; /* borrowed; copied */
    const char *topic;     /* borrowed; copied */
    int topic_partitions;  /* > 0: create the topic when missing (epp_kafka_topic_ensure) */
    int delivery_timeout_ms;
    int linger_ms;
    int batch_num_messages;
    int queue_max_messages;
    int queue_max_kbytes;
    const char *overrides; /* "k=v,k=v" applied last; NULL for none */
    ingest_delivery_fn on_delivery;
    void *ud;
    epp_metrics_t *metrics; /* borrowed; NULL for none */
    /* Delivery reports are served by the caller's threads through ingest_producer_poll() (the
     * HTTP workers' loop hook), not by the poll thread, which then only sweeps every 10 ms as
     * a safety net (and serves retired instances). Saves a thread hand-off per report batch. */
    int external_poll;
} ingest_producer_opts_t;

/* Creates the producer and starts its threads. NULL with a message in err on failure (a bad
 * librdkafka property, typically). */
ingest_producer_t *ingest_producer_create(const ingest_producer_opts_t *opts, char *err,
                                          size_t errsz);

/* Enqueues one message: key (copied), value (ownership passes to the producer on success; on
 * failure the caller still owns it and frees it with free()), the traceparent header (copied).
 * Returns 0 -- on_delivery will be called exactly once for it -- or EPP_EAGAIN (queue full),
 * EPP_EUNAVAIL (fatal state, unknown topic, ...), EPP_ETOOBIG (message too large); on_delivery
 * is then never called. Any thread. */
int ingest_producer_send(ingest_producer_t *p, const char *key, size_t key_len, char *value,
                         size_t value_len, const char *traceparent, void *msg_opaque);

/* With external_poll: a descriptor that turns readable when reports are waiting (an eventfd
 * librdkafka writes to), and the non-blocking call that serves them (on_delivery runs in it).
 * fd_readable: the descriptor was seen readable (it is then drained). Any thread, concurrently. */
int ingest_producer_poll_fd(ingest_producer_t *p);
void ingest_producer_poll(ingest_producer_t *p, int fd_readable);

/* 1 when the last background metadata check reached Kafka (cached; refreshed every ~2 s). */
int ingest_producer_ready(ingest_producer_t *p);

/* Messages waiting for a delivery report (rd_kafka_outq_len). Any thread. */
size_t ingest_producer_outq(ingest_producer_t *p);

/* Test-only: raises a fatal error in the current instance (rd_kafka_test_fatal_error). The
 * supervisor then replaces the instance. 0 or EPP_EINVAL. */
int ingest_producer_inject_fatal(ingest_producer_t *p);

/* Number of instances created after the first one (fatal-error recoveries). */
unsigned ingest_producer_generation(ingest_producer_t *p);

/* Waits up to timeout_ms for every queued message's delivery report; then, if fail_rest, purges
 * what is left (its reports arrive as failures) and waits up to 2 s more for those reports.
 * Returns the number of messages still without a report. Used at shutdown. */
size_t ingest_producer_drain(ingest_producer_t *p, int timeout_ms, int fail_rest);

/* A short, low-cardinality reason for a failed delivery ("timed_out", "purged", "fatal",
 * "queue_full", "error"), for metrics and logs. Static string. */
const char *ingest_producer_reason(rd_kafka_resp_err_t err);

/* Stops the threads and destroys the producer. Messages still queued are dropped without a
 * report: call ingest_producer_drain() first. Accepts NULL. */
void ingest_producer_destroy(ingest_producer_t *p);

#endif
