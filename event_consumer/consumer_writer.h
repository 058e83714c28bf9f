/* The write path: one transaction per batch, exactly-once rows, rollups and offsets.
 *
 * In one transaction:
 *  1. lock this group's offsets rows of the batch's partitions (creating them), read
 *     next_offset, and skip every message below it -- another consumer (or an earlier life of
 *     this one whose COMMIT outcome was unknown) already stored it. When next_offset lies
 *     before the offset from which the batch's messages of a partition are known complete
 *     (consumer_part_t.from), storing the batch would pass over messages never read: the
 *     transaction rolls back, nothing is stored, and the writer is broken (below);
 *  2. fast path: COPY the rows straight into public.events. A unique_violation (the batch
 *     replays rows already stored) rolls back and retries on the slow path: COPY into a
 *     temporary staging table, INSERT of the rows whose event_id is not stored (consumer_rows.h).
 *     A data error (a value Postgres rejects) retries row by row under savepoints, so that the
 *     offending rows alone are dead-lettered;
 *  3. over the rows actually inserted, aggregated in C: their users' uids from the user
 *     dictionary (new users get one), the uids appended to the per-bucket user bitmaps
 *     (consumer_users.h), and the rollup deltas upserted into epp_rollup_minute/hour/day from
 *     binary array parameters;
 *  4. the offsets rows move forward (never backwards) to the end of the batch;
 *  5. dead letters of the batch are produced and acknowledged (when they cannot be, the
 *     transaction rolls back and the batch is retried, its partitions held: see
 *     consumer_writer_dlq_blocked);
 *  6. COMMIT, checked with PQcmdStatus. A connection lost during COMMIT leaves the outcome
 *     unknown: after reconnecting, the offsets table says whether it committed.
 * Transient failures reconnect and retry with capped exponential backoff and full jitter,
 * forever: nothing is skipped and offsets never move early. Only a shutdown deadline stops the
 * retries (the batch is then left unwritten, and will be read again), or an offset gap (step 1;
 * not retried: the same batch would find the same gap).
 *
 * Threads: one writer is used by one thread at a time (the pipeline's writer thread, or the
 * polling thread when the pipeline is off); consumer_writer_db_ok() may be called from any
 * thread. */
#ifndef CONSUMER_WRITER_H
#define CONSUMER_WRITER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "consumer_batch.h"
#include "consumer_config.h"
#include "consumer_dlq.h"
#include "consumer_metrics.h"

typedef struct consumer_writer consumer_writer_t;

/* conf, dlq, metrics and stop are borrowed and must outlive the writer. *stop becomes non-zero
 * when the process is asked to stop: from then on a batch write retries for at most
 * conf->shutdown_timeout_ms more, and start-up and offset loading (no batch in hand) stop
 * retrying at once. NULL on allocation failure. */
consumer_writer_t *consumer_writer_create(const consumer_conf_t *conf, consumer_dlq_t *dlq,
                                          consumer_metrics_t *metrics, volatile sig_atomic_t *stop);
void consumer_writer_destroy(consumer_writer_t *w);

/* Traces every batch write from now on: a CONSUMER span "<topic> process" per batch, a new root
 * linked to the producer spans of its messages (b->links), and a CLIENT child span per
 * transaction attempt. tracer is borrowed (NULL: off) and must outlive the writer. Call before
 * the writer is used. */
void consumer_writer_set_tracer(consumer_writer_t *w, epp_tracer_t *tracer);

/* Connects and applies the migrations, retrying transient failures. 0, EPP_ESTATE when stopped
 * before it could, or EPP_EINVAL when a migration is broken. */
int consumer_writer_start(consumer_writer_t *w);

/* Reads next_offset of (group, topic, partition) for each of parts[0..n) into next[] (-1 when
 * there is no row), retrying transient failures. 0, EPP_ESTATE (stopped; or the test-only
 * failpoint offsets_load_fails) or EPP_ENOMEM; next[] is untouched on failure. */
int consumer_writer_load_offsets(consumer_writer_t *w, const int32_t *parts, size_t n,
                                 int64_t *next);

/* Writes the batch as described above. On 0 the transaction committed and b->parts[i].next is
 * what the offsets table now says (or more). EPP_ESTATE: stopped before it could, or the batch
 * does not continue the stored offsets (consumer_writer_broken() then returns 1); nothing of the
 * batch was stored either way. */
int consumer_writer_write(consumer_writer_t *w, consumer_batch_t *b);

/* 1 when the last database interaction succeeded (for /ready). Any thread. */
int consumer_writer_db_ok(const consumer_writer_t *w);

/* 1 while the batch in hand waits for dead letters that the producer or the broker refused or
 * did not acknowledge (logged at error level once per batch; counted in
 * epp_consumer_dead_letter_failures_total and epp_consumer_dead_letter_blocked). Never skipped:
 * the batch is retried until the dead-letter topic takes them. Any thread. */
int consumer_writer_dlq_blocked(const consumer_writer_t *w);

/* 1 once a batch did not continue the stored offsets: this process's stream of some partition
 * has a hole, so it must stop writing and leave the group -- the next owner starts the partition
 * at the stored offset and reads the hole. Any thread. */
int consumer_writer_broken(const consumer_writer_t *w);

#endif
