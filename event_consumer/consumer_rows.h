/* The row statements of the write path (consumer_writer.h), each run inside the caller's
 * transaction on conn; none commits or rolls back:
 *  - consumer_rows_copy: COPY of the batch's encoded rows (b->copy, the rows in state OK) into a
 *    table -- public.events on the fast path, the temporary epp_stage on the slow one;
 *  - consumer_rows_insert_staged: the slow path, for a batch replaying stored rows: COPY into
 *    epp_stage, then INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING event_id, marking
 *    the rows returned as inserted;
 *  - consumer_rows_insert_each: the isolation path, for a batch holding a value Postgres
 *    rejects: one INSERT per row under a savepoint; a row rejected for its data becomes BAD
 *    (db_rejected, to be dead-lettered), the others are inserted.
 * Each returns 0 or an EPP_E* code with pe filled (SQLSTATE included when Postgres answered).
 *
 * Threads: the caller's (the writer's); conn is used by one thread at a time. */
#ifndef CONSUMER_ROWS_H
#define CONSUMER_ROWS_H

#include <libpq-fe.h>

#include "consumer_batch.h"
#include "epp_buf.h"
#include "epp_pg.h"

int consumer_rows_copy(PGconn *conn, const consumer_batch_t *b, const char *table,
                       epp_pg_error_t *pe);

int consumer_rows_insert_staged(PGconn *conn, consumer_batch_t *b, epp_pg_error_t *pe);

/* scratch: a buffer reused between calls (the jsonb parameter); owned by the caller. */
int consumer_rows_insert_each(PGconn *conn, consumer_batch_t *b, epp_buf_t *scratch,
                              epp_pg_error_t *pe);

#endif
