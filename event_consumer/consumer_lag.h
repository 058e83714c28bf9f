/* The lag metric (epp_consumer_lag{partition}), kept by a thread of its own.
 *
 * Every interval it asks the brokers for the high watermark of each partition this consumer is
 * assigned (one ListOffsets round trip per leader, rd_kafka_offsets_for_times) and subtracts the
 * next offset stored in Postgres. Partitions no longer assigned are set to 0, so that the sum
 * over a group's consumers stays right after a rebalance.
 *
 * Why not the watermark cached from fetch responses (rd_kafka_get_watermark_offsets) on the
 * polling thread: that value stops moving when the consumer's prefetch queue is full -- exactly
 * when the consumer falls behind -- and the polling thread itself stops while a writer waits for
 * Postgres. In both cases the backlog grows while such a gauge stands still or falls, and the
 * EppConsumerLagGrowing alert (docs/operations.md) could never fire.
 *
 * Threads: start and stop from the main thread; the lag thread reads the assignment
 * (rd_kafka_assignment) and calls next() from its own thread, so next() must be safe there. */
#ifndef CONSUMER_LAG_H
#define CONSUMER_LAG_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "epp_metrics.h"

typedef struct consumer_lag consumer_lag_t;

/* The next offset known stored in Postgres for a partition, or -1 when none is. */
typedef int64_t (*consumer_lag_next_fn)(void *ud, int32_t partition);

/* Starts the thread. rk (the consumer), topic, gauge (a family with the label `partition`) and
 * ud are borrowed and must outlive consumer_lag_stop(). NULL when the thread cannot start. */
consumer_lag_t *consumer_lag_start(rd_kafka_t *rk, const char *topic, epp_metric_t *gauge,
                                   consumer_lag_next_fn next, void *ud, int interval_ms);

/* Runs a round now rather than at the end of the interval (any thread; returns at once).
 * Its ListOffsets requests also wake librdkafka's broker threads (consumer_refill_due). */
void consumer_lag_kick(consumer_lag_t *l);

/* Stops the thread (within one broker timeout, at most a second) and frees l. Accepts NULL. */
void consumer_lag_stop(consumer_lag_t *l);

#endif
