/* A lane's merge pool: messages wait here, up to a bound, before they enter a batch, so that a
 * batch takes the oldest events of all the lane's partitions rather than whole fetch chunks of a
 * few partitions, each at its own point in time (event_consumer/README.md, "Batches in event
 * time order").
 *
 * Each partition's messages leave in offset order, always: a batch holds a gapless run of each
 * partition (the writer moves the stored offset to its end). Among partitions the oldest
 * message timestamp goes first.
 *
 * Ownership: the pool owns the messages pushed into it until they move into a batch.
 * Threads: the polling thread only. */
#ifndef CONSUMER_MERGE_H
#define CONSUMER_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "consumer_batch.h"

typedef struct consumer_merge consumer_merge_t;

/* NULL on allocation failure. */
consumer_merge_t *consumer_merge_create(void);
/* Destroys the messages still held. Accepts NULL. */
void consumer_merge_destroy(consumer_merge_t *m);

/* Adds a message (the pool owns it, also on failure) with its partition's read position before
 * it (consumer_positions_advance). now_us: monotonic time. 0 or EPP_ENOMEM. */
int consumer_merge_push(consumer_merge_t *m, consumer_msg_t *msg, int64_t from, int64_t now_us);

/* Messages held, and their payload bytes. */
size_t consumer_merge_count(const consumer_merge_t *m);
size_t consumer_merge_bytes(const consumer_merge_t *m);
/* Monotonic time the oldest held message was pushed (0 when empty). */
int64_t consumer_merge_oldest_us(const consumer_merge_t *m);

/* Moves messages into b -- the oldest timestamp among the partitions' next messages first --
 * until b holds max_rows rows or max_bytes of payload, or the pool is empty. 0, or EPP_ENOMEM
 * (a message that could not be added is destroyed, as consumer_batch_add does). */
int consumer_merge_take(consumer_merge_t *m, consumer_batch_t *b, size_t max_rows,
                        size_t max_bytes);

#endif
