/* The consumer's copies of Kafka messages, and the store they are allocated from.
 *
 * A held rd_kafka_message_t keeps its whole fetch response -- megabytes, of messages long
 * written -- alive, and the merge pool and the batches hold messages of many responses; so each
 * message is copied as it is read (payload, key, headers, in one block) and librdkafka's is
 * destroyed at once.
 *
 * The blocks come from a store of chunks, one chunk being filled per partition: a partition's
 * messages are taken into batches in offset order and freed batch by batch, so a chunk empties
 * soon after its last message was read, and goes back to the store's free list. With a malloc
 * per copy, the frees of a written batch (thousands of blocks at once) went to glibc's bins
 * instead of its thread cache, and allocating, freeing and coalescing took 27% of the consumer's
 * CPU on bench_consumer's live workload (perf, 2026-12-03). A block larger than a quarter of a
 * chunk gets a malloc of its own.
 *
 * Threads: one. The store, every copy and every consumer_msg_destroy on the thread that polls
 * (copies are only read elsewhere: the writers read them, and the dead-letter producer copies
 * what it sends). Destroy every message before the store. */
#ifndef CONSUMER_MSG_H
#define CONSUMER_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

typedef struct {
    const char *name;
    size_t name_len;
    const char *value; /* NULL: a header without a value */
    size_t value_len;
} consumer_header_t;

typedef struct consumer_msg_chunk consumer_msg_chunk_t;

typedef struct {
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* the Kafka timestamp, -1 when none */
    const char *payload;  /* NULL when none */
    size_t len;
    const char *key; /* NULL when none */
    size_t key_len;
    const consumer_header_t *headers; /* in the message's order */
    size_t nheaders;
    consumer_msg_chunk_t *chunk; /* where the block lives; NULL: a malloc of its own */
} consumer_msg_t;

typedef struct consumer_msgs consumer_msgs_t;

consumer_msgs_t *consumer_msgs_create(void);
/* Accepts NULL. Every message copied from s must have been destroyed. */
void consumer_msgs_destroy(consumer_msgs_t *s);
/* Chunks held (filling, in use or free): for tests. */
size_t consumer_msgs_chunks(const consumer_msgs_t *s);

/* A copy of m (payload, key, headers), or NULL (out of memory). m stays the caller's. */
consumer_msg_t *consumer_msg_copy(consumer_msgs_t *s, const rd_kafka_message_t *m);
/* A copy of the message f describes (its partition, offset, timestamp, payload and key; its
 * header fields are ignored) with hdrs' headers (NULL: none), or NULL (out of memory). */
consumer_msg_t *consumer_msg_new(consumer_msgs_t *s, const consumer_msg_t *f,
                                 const rd_kafka_headers_t *hdrs);
/* Accepts NULL. */
void consumer_msg_destroy(consumer_msg_t *m);

/* The value of m's last header called name, or NULL (none, or one without a value). */
const char *consumer_msg_header(const consumer_msg_t *m, const char *name, size_t *len);

#endif
