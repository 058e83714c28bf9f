/* The dead-letter producer: a message that can never be stored is copied to KAFKA_DLQ_TOPIC
 * with its key, value and headers, plus the headers error.code, error.message, source.topic,
 * source.partition and source.offset.
 *
 * The consumer moves its offsets past a dead-lettered message only after the DLQ copy was
 * acknowledged (consumer_dlq_flush), so a crash in between re-sends it: dead-lettering is
 * at-least-once (a replayed batch can dead-letter the same message twice).
 *
 * It reaches the cluster the way the consumer does: the bootstrap servers, and the connection
 * security settings of KAFKA_CONSUMER_CONFIG (security.protocol and every sasl.*, ssl.*,
 * enable.ssl.* and enable.sasl.* key; nothing else of that list). And it accepts any message the
 * consumer can fetch: its message.max.bytes is the largest fetch response the consumer accepts
 * (receive.message.max.bytes, at least fetch.max.bytes + 512 as librdkafka raises it, both as
 * KAFKA_CONSUMER_CONFIG sets them) plus CONSUMER_DLQ_HEADER_ROOM for the headers added. A broker
 * may still refuse a copy (the DLQ topic's own size limit, ACLs): the writer then retries, holds
 * the partition and says so (consumer_writer.h).
 *
 * Threads: send and flush are called by one thread (the writer); the delivery callback runs
 * inside flush on that thread. */
#ifndef CONSUMER_DLQ_H
#define CONSUMER_DLQ_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "consumer_batch.h"
#include "consumer_config.h"

/* Room for the headers a dead letter adds to the original message (error.message is at most a
 * few hundred bytes, a topic name 249). */
#define CONSUMER_DLQ_HEADER_ROOM (64LL * 1024)

typedef struct consumer_dlq consumer_dlq_t;

/* The producer's configuration as described above (caller owns it; rd_kafka_new takes it). NULL
 * with a message in err when a setting is refused. */
rd_kafka_conf_t *consumer_dlq_conf(const consumer_conf_t *conf, char *err, size_t errsz);

/* Creates the producer for conf->dlq_topic (conf is read here only). NULL on failure with a
 * message in err. */
consumer_dlq_t *consumer_dlq_create(const consumer_conf_t *conf, char *err, size_t errsz);
/* Flushes briefly, then frees. Accepts NULL. */
void consumer_dlq_destroy(consumer_dlq_t *d);

/* Queues a copy of msg (borrowed) with the error headers. 0, or EPP_EAGAIN / EPP_EUNAVAIL. */
int consumer_dlq_send(consumer_dlq_t *d, const consumer_msg_t *msg, const char *source_topic,
                      const char *code, const char *message);

/* Waits up to timeout_ms for every queued message to be acknowledged. 0 when all were
 * delivered since the last flush; EPP_EUNAVAIL when any failed or the wait timed out (the caller
 * must not move its offsets, and re-sends later). */
int consumer_dlq_flush(consumer_dlq_t *d, int timeout_ms);

#endif
