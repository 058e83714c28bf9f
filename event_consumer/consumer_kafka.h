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

#endif
