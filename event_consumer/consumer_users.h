/* The per-bucket user bitmaps as one writer lane maintains them (sql/031; design in
 * event_consumer/README.md, "Design: the user dictionary and the user bitmaps").
 *
 * For every (level, bucket) it touched recently, a lane keeps the uids it knows committed there
 * ("known": its own appends after their COMMIT, and what its merges stored; none for minutes)
 * and how many rows it appended since it last merged the bucket -- for the minute level, whose
 * rows hold an hour of minutes each (sql/032), per hour. A batch appends, per bucket, one row with
 * the uids of its counted rows that are not known (common/epp_users.c: epp_users_append; for
 * the minute level one row per hour packed straight from the batch's sorted (minute, uid)
 * pairs, epp_users_append_minutes, no bitmap or table entry per minute), and merges a bucket
 * instead once the lane appended consumer_users_merge_after(level) rows to it (epp_users_merge,
 * skipping rows another lane is merging).
 *
 * "known" is only ever a subset of what is stored, until uids are removed -- which only
 * epp-admin delete-test does, after bumping public.epp_rollup_generation: the writer reads the
 * generation FOR SHARE first in every transaction and passes it to set_generation, which
 * forgets everything when it moved. What a write appended becomes known only through
 * consumer_users_committed(), called after its COMMIT succeeded; a write that did not commit is
 * simply forgotten by the next write. Memory is bounded by memory_bytes (the least recently
 * touched buckets are forgotten first; forgetting is always safe: uids are sent again).
 *
 * One thread at a time (each writer lane has its own). */
#ifndef CONSUMER_USERS_H
#define CONSUMER_USERS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "consumer_batch.h"
#include "epp_pg.h"

/* Rows a lane appends to one row bucket of a level before it merges it: 8 for days and hours;
 * 32 for the minute level, whose rows hold an hour each (sql/032) and whose merges (a merge
 * reads, locks and deletes every row of the hour, and rewrites all its minutes) would cost a
 * history import, which touches most hours in every batch, nearly as much as its events' COPY
 * (event_consumer/README.md, "Performance"). A reader meets at most 2 x 32 rows in an hour of
 * minutes a history import wrote, one row in a merged one. */
int consumer_users_merge_after(int level);

typedef struct consumer_users consumer_users_t;

/* memory_bytes: bound of the known uids kept (0: none kept, every uid of a batch is sent).
 * NULL on allocation failure. */
consumer_users_t *consumer_users_create(size_t memory_bytes);
void consumer_users_destroy(consumer_users_t *u);

/* The rollup generation read at the start of the transaction; forgets everything when it
 * differs from the previous one (-1 before the first). */
void consumer_users_set_generation(consumer_users_t *u, int64_t gen);

/* In conn's open transaction: stores the (bucket, uid) pairs of b's inserted rows (state OK and
 * inserted, b->users[r->uix].uid resolved) for every level, as described above. 0 or a negative
 * EPP_E* code with pe filled (the caller rolls back). */
int consumer_users_write(consumer_users_t *u, PGconn *conn, const consumer_batch_t *b,
                         epp_pg_error_t *pe);

/* The last write's transaction committed: what it stored is now known. */
void consumer_users_committed(consumer_users_t *u);
/* The last write's transaction did not commit (or is not known to have): forgets what it
 * wrote, so that a later committed() does not count it. */
void consumer_users_abandon(consumer_users_t *u);

/* For the debug log: uids the last write sent, buckets it merged, and the known uids' bytes. */
size_t consumer_users_sent(const consumer_users_t *u);
size_t consumer_users_merged(const consumer_users_t *u);
size_t consumer_users_memory(const consumer_users_t *u);

#endif
