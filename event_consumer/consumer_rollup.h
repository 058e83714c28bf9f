/* Rollup deltas aggregated in C: a batch's rows become per-(minute|hour|day, event_name)
 * counts, so the database receives one upsert per bucket and key instead of one per row
 * (sql/002_rollups.sql). Buckets are UTC-aligned, half-open, floor-divided (so
 * instants before 1970 land in the right bucket).
 *
 * Keys are borrowed: the strings given to consumer_rollup_add must stay unchanged until
 * consumer_rollup_reset. One thread at a time. */
#ifndef CONSUMER_ROLLUP_H
#define CONSUMER_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#include "epp_buf.h"

typedef enum {
    CONSUMER_ROLLUP_MINUTE = 0,
    CONSUMER_ROLLUP_HOUR = 1,
    CONSUMER_ROLLUP_DAY = 2,
} consumer_rollup_kind_t;

typedef struct consumer_rollup consumer_rollup_t;

consumer_rollup_t *consumer_rollup_create(void);
void consumer_rollup_destroy(consumer_rollup_t *r);
/* Forgets every key; keeps the memory. */
void consumer_rollup_reset(consumer_rollup_t *r);

/* Counts one event. 0 or EPP_ENOMEM. */
int consumer_rollup_add(consumer_rollup_t *r, int64_t ts_us, const char *event_name,
                        size_t event_name_len);

/* Number of distinct (kind, bucket, key) entries. */
size_t consumer_rollup_size(const consumer_rollup_t *r);

/* Appends the entries of one kind as three Postgres binary array parameters -- timestamptz[],
 * text[] and int8[] (array_recv format), sorted by (bucket, key bytes) so that every writer
 * upserts rows in one order. *count receives the number of entries (0: the buffers are left
 * empty). 0 or EPP_ENOMEM. */
int consumer_rollup_arrays(const consumer_rollup_t *r, consumer_rollup_kind_t kind,
                           epp_buf_t *buckets, epp_buf_t *keys, epp_buf_t *counts, size_t *count);

/* For tests: the count of one entry (0 when absent). */
int64_t consumer_rollup_get(const consumer_rollup_t *r, consumer_rollup_kind_t kind,
                            int64_t bucket_us, const char *key, size_t key_len);

/* The bucket start of ts_us for a kind (UTC, floor). */
int64_t consumer_rollup_bucket(consumer_rollup_kind_t kind, int64_t ts_us);

#endif
