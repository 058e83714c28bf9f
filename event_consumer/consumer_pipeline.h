/* The pipeline: while the writer thread stores one batch, the polling thread decodes the next.
 *
 * At most one batch is in flight. consumer_pipeline_submit() hands a filled batch to the writer
 * thread and returns an empty one to fill (blocking while the previous batch is still being
 * written); after each successful write the writer thread commits the batch's offsets to Kafka
 * (asynchronously: advisory, the offsets table is the truth) and records them for the lag
 * metric. With threaded = 0 the same calls write synchronously on the caller's thread.
 *
 * Threads: submit, drain and destroy are called by the polling thread only; committed_next may
 * be called from any thread. */
#ifndef CONSUMER_PIPELINE_H
#define CONSUMER_PIPELINE_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "consumer_batch.h"
#include "consumer_writer.h"

#define CONSUMER_MAX_TRACKED_PARTITIONS 1024

typedef struct consumer_pipeline consumer_pipeline_t;

/* w and rk are borrowed. spare is an empty batch the pipeline owns from now on (it is the second
 * of the two batches that alternate). NULL on failure (spare is then destroyed). */
consumer_pipeline_t *consumer_pipeline_create(consumer_writer_t *w, rd_kafka_t *rk,
                                              const char *topic, consumer_batch_t *spare,
                                              int threaded);
/* Drains, stops the writer thread and destroys the batches the pipeline holds. Accepts NULL. */
void consumer_pipeline_destroy(consumer_pipeline_t *p);

/* Hands b over (the pipeline owns it until it comes back from a later submit) and returns an
 * empty batch. */
consumer_batch_t *consumer_pipeline_submit(consumer_pipeline_t *p, consumer_batch_t *b);

/* 1 while a batch is being written (submit would wait), else 0. */
int consumer_pipeline_busy(consumer_pipeline_t *p);

/* Waits until no batch is in flight. Returns 0, or EPP_ESTATE when a write gave up (stop). */
int consumer_pipeline_drain(consumer_pipeline_t *p);

/* The next offset known stored for a partition (-1 when unknown). Any thread. */
int64_t consumer_pipeline_committed_next(consumer_pipeline_t *p, int32_t partition);
/* Records a stored next offset (after loading it on assignment). Any thread. */
void consumer_pipeline_set_committed_next(consumer_pipeline_t *p, int32_t partition, int64_t next);

#endif
