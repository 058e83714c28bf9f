/* Read positions: for each partition assigned to this process, the offset from which the stream
 * of messages librdkafka has handed over is known complete.
 *
 * After an assignment a partition's position is the offset it was started at (the next offset
 * stored in Postgres, or -1: the log start, when the offsets table has no row). Each message
 * moves it past that message's offset. The offsets between a message and the position before it
 * were not handed over as messages by the broker (transaction markers, compacted records): they
 * are accounted for. Anything before the position of the first message a batch holds for a
 * partition is not: the writer refuses to move a stored offset across it (consumer_writer.h).
 *
 * A partition that is not assigned, or was assigned without a known start offset, has position
 * CONSUMER_POS_UNKNOWN: a message of it vouches for nothing before itself.
 *
 * Threads: the polling thread only (the rebalance callbacks run on it too). */
#ifndef CONSUMER_POSITIONS_H
#define CONSUMER_POSITIONS_H

#include <stdint.h>

#define CONSUMER_POS_UNKNOWN INT64_MIN

typedef struct consumer_positions consumer_positions_t;

/* NULL on allocation failure. */
consumer_positions_t *consumer_positions_create(void);
/* Accepts NULL. */
void consumer_positions_destroy(consumer_positions_t *ps);

/* Sets a partition's position: the offset it was started at (>= 0), -1 (the log start) or
 * CONSUMER_POS_UNKNOWN. 0, or EPP_ENOMEM (the position then stays unknown), EPP_EINVAL for a
 * negative partition. */
int consumer_positions_set(consumer_positions_t *ps, int32_t partition, int64_t pos);

/* The position of a partition (CONSUMER_POS_UNKNOWN when never set). */
int64_t consumer_positions_get(const consumer_positions_t *ps, int32_t partition);

/* For a message at offset of partition: returns the position before it -- or offset itself when
 * the position is unknown: nothing before the message is vouched for -- and moves the position
 * to offset + 1 (the stream is complete from the message on). */
int64_t consumer_positions_advance(consumer_positions_t *ps, int32_t partition, int64_t offset);

#endif
