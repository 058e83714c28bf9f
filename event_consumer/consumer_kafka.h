/* The Kafka side of the consumer: a consumer-group member with manual offsets.
 *
 * enable.auto.commit=false and enable.auto.offset.store=false: offsets live in Postgres.
 * auto.offset.reset=error: a stored offset that fell out of the topic's retention produces an
 * error event (reported loudly by the caller) instead of silently skipping data.
 * On assignment the rebalance callback asks the caller for each partition's start offset (the
 * offsets table; RD_KAFKA_OFFSET_BEGINNING when the table has no row); when the caller cannot
 * tell, the partitions are assigned paused, so that nothing is read from a guessed offset. On
 * revocation it lets the caller finish and commit the batch in hand before the partitions go.
 * Both the eager and the cooperative assignment protocols are handled.
 *
 * Threads: the callbacks run inside rd_kafka_consumer_poll(), on the polling thread. */
#ifndef CONSUMER_KAFKA_H
#define CONSUMER_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "consumer_config.h"

typedef struct {
    /* Fill parts->elems[i].offset for every partition and return 0; or return non-zero when
     * the start offsets are unknown: the partitions are then assigned paused (never resumed:
     * they are read by their next owner). */
    int (*on_assign)(void *ud, rd_kafka_topic_partition_list_t *parts);
    /* Finish the batch in hand; the partitions are unassigned after the call returns. */
    void (*on_revoke)(void *ud, const rd_kafka_topic_partition_list_t *parts);
    void *ud;
} consumer_kafka_hooks_t;

/* Creates the consumer and subscribes to conf->topic. hooks is copied. NULL on failure with a
 * message in err. */
rd_kafka_t *consumer_kafka_create(const consumer_conf_t *conf, const consumer_kafka_hooks_t *hooks,
                                  char *err, size_t errsz);

/* 1 when a broker answered a metadata request within timeout_ms. Any thread. */
int consumer_kafka_reachable(rd_kafka_t *rk, int timeout_ms);

/* When librdkafka's fetcher needs a wake-up (event_consumer/README.md, "The fetcher's
 * one-second sleep"). librdkafka 2.0 (Debian 12's) stops fetching a partition while the
 * consumer queue holds queued.min.messages or queued.max.messages.kbytes, and decides again
 * only when its broker thread wakes: for a reply, for a request to send, or after a second.
 * Catching up on a backlog, the queue fills, the broker threads fall asleep, and the consumer
 * empties the queue and its pools before the second is up: the writers then wait for data that
 * is in the topic. consumer_refill_due() says when the queue has fallen from above half its
 * bound to below it; the caller then sends any request to the brokers (consumer_lag_kick), which
 * wakes them to fetch again while half the queue is still there. Polling thread only. */
typedef struct {
    rd_kafka_queue_t *queue; /* the consumer queue, for its length */
    size_t min_msgs;         /* queued.min.messages */
    size_t max_bytes;        /* queued.max.messages.kbytes, in bytes */
    uint64_t msgs, bytes;    /* read so far, for their mean size */
    int armed;               /* the queue was at or above half its bound since the last wake-up */
    int64_t checked_us, woken_us;
} consumer_refill_t;

/* Reads the two bounds from rk's configuration and holds its consumer queue. 0, or EPP_ESTATE
 * when rk has no consumer queue (not subscribed). */
int consumer_refill_init(consumer_refill_t *r, rd_kafka_t *rk);
void consumer_refill_destroy(consumer_refill_t *r);

/* Counts a message read (its payload length). */
void consumer_refill_seen(consumer_refill_t *r, size_t len);

/* 1 when the brokers should be woken now: the queue fell below half its bound (in messages, or
 * in bytes at the mean message size) after being above it, and the last wake-up is 50 ms ago.
 * Reads the queue's length at most once a millisecond. */
int consumer_refill_due(consumer_refill_t *r, int64_t now_us);

#endif
