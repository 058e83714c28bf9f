/* epp_users: the user dictionary (sql/030) and the per-bucket user bitmaps (sql/031), written
 * the same way by every writer of events (epp-consumer, epp-admin restore and delete-test).
 * Design: event_consumer/README.md, "Design: the user dictionary and the user bitmaps".
 *
 * Every function runs its statements in the caller's open transaction on conn: what it writes
 * commits or rolls back with the caller's rows. Statements take binary array parameters; all SQL
 * is fixed text.
 *
 * Threads: no global state; a connection belongs to one thread at a time. */
#ifndef EPP_USERS_H
#define EPP_USERS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "epp_pg.h"

/* The largest uid (a 32-bit Roaring bitmap holds 0 .. 2^32 - 1). */
#define EPP_USERS_MAX_UID 4294967295LL

/* Resolves the distinct user_ids names[0..n) (lens[i] bytes each) to their uids, inserting the
 * missing ones into public.epp_user_ids; uids[i] receives names[i]'s uid. Known users are read
 * first, so that an id is drawn from the sequence only for a user who has none; the missing
 * ones are inserted in one order (byte order) by every writer, so two transactions inserting the
 * same new users never wait for each other in a cycle, and one that finds a user inserted by a
 * concurrent transaction reads its uid once that transaction committed. 0, or a negative EPP_E*
 * code with pe filled (EPP_EAGAIN when a user could not be resolved after a few rounds of
 * concurrent inserts: the caller retries its transaction). */
int epp_users_resolve(PGconn *conn, const char *const *names, const uint32_t *lens, size_t n,
                      int64_t *uids, epp_pg_error_t *pe);

#endif
