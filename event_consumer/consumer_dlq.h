/* The dead-letter producer: a message that can never be stored is copied to KAFKA_DLQ_TOPIC
 * with its key, value and headers, plus the headers error.code, error.message, source.topic,
 * source.partition and source.offset.
 *
 * The consumer moves its offsets past a dead-lettered message only after the DLQ copy was
 * acknowledged (consumer_dlq_flush), so a crash in between re-sends it: dead-lettering is
 * at-least-once (a replayed batch can dead-letter the same message twice).
 *
 * Threads: send and flush are called by one thread (the writer); the delivery callback runs
 * inside flush on that thread. */
#ifndef CONSUMER_DLQ_H
#define CONSUMER_DLQ_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

typedef struct consumer_dlq consumer_dlq_t;

/* bootstrap and topic are copied; extra is the "k=v,k=v" override list (may be NULL). NULL on
 * failure with a message in err. */
consumer_dlq_t *consumer_dlq_create(const char *bootstrap, const char *topic, char *err,
                                    size_t errsz);
/* Flushes briefly, then frees. Accepts NULL. */
void consumer_dlq_destroy(consumer_dlq_t *d);

/* Queues a copy of msg (borrowed) with the error headers. 0, or EPP_EAGAIN / EPP_EUNAVAIL. */
int consumer_dlq_send(consumer_dlq_t *d, const rd_kafka_message_t *msg, const char *source_topic,
                      const char *code, const char *message);

/* Waits up to timeout_ms for every queued message to be acknowledged. 0 when all were
 * delivered since the last flush; EPP_EUNAVAIL when any failed or the wait timed out (the caller
 * must not move its offsets, and re-sends later). */
int consumer_dlq_flush(consumer_dlq_t *d, int timeout_ms);

#endif
