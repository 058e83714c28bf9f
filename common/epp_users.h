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
#include <roaring/roaring.h>

#include "epp_buf.h"
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

/* ---- per-bucket user bitmaps (sql/031) ---- */

typedef enum {
    EPP_USERS_MINUTE = 0,
    EPP_USERS_HOUR = 1,
    EPP_USERS_DAY = 2,
} epp_users_level_t;
#define EPP_USERS_LEVELS 3

/* Bucket width of a level in microseconds. */
int64_t epp_users_width(epp_users_level_t level);
/* The bucket start of ts_us (UTC, floor, right before 1970 too). */
int64_t epp_users_bucket(epp_users_level_t level, int64_t ts_us);

/* Writes r in the stored format (CRoaring's portable format without run containers: sql/031
 * reads nothing else) into out, which is reset first. r may be changed (run containers turned
 * back into arrays or bitsets). 0 or EPP_ENOMEM. */
int epp_users_serialize(roaring_bitmap_t *r, epp_buf_t *out);
/* A bitmap read from the store, or NULL when data is not a valid one (never reads past len). */
roaring_bitmap_t *epp_users_deserialize(const char *data, size_t len);
/* roaring_bitmap_free that accepts NULL (CRoaring 0.2.66's crashes on it). */
void epp_users_free(roaring_bitmap_t *r);

/* The minute level stores one row per UTC hour (sql/032): the bitmaps of the hour's minutes,
 * packed. Its buckets are still minutes everywhere in this API; the functions below group them
 * by hour. */
#define EPP_USERS_MINUTES 60

/* The bucket of the row that holds bucket: its hour for the minute level, itself otherwise. */
int64_t epp_users_row_bucket(epp_users_level_t level, int64_t bucket);

/* Packs minutes[0..60) (NULL or empty: no users in that minute; each may be changed as by
 * epp_users_serialize) into out in sql/032's format, using one as scratch; *pairs receives the
 * number of (minute, uid) pairs (0: nothing to store). 0 or EPP_ENOMEM. */
int epp_users_pack_minutes(roaring_bitmap_t *const *minutes, epp_buf_t *out, epp_buf_t *one,
                           int64_t *pairs);
/* Unpacks a packed row into minutes[0..60): the bitmaps of the minutes whose bit is set in
 * want (the others stay NULL, though their lengths and headers are checked). 0, or EPP_EINVAL
 * when data is not a valid packed row (never reads past len; minutes[] all NULL then). */
int epp_users_unpack_minutes(const char *data, size_t len, uint64_t want,
                             roaring_bitmap_t **minutes);
/* Frees minutes[0..60) and sets them to NULL. */
void epp_users_free_minutes(roaring_bitmap_t **minutes);

/* Scratch memory of the functions below; reuse one per connection. Zero-initialise. */
typedef struct {
    epp_buf_t arr[3];
    epp_buf_t one;
    epp_buf_t packed;
} epp_users_scratch_t;
void epp_users_scratch_free(epp_users_scratch_t *s);

/* Appends one row per entry to the hour or day level's table: the uids of bits[i] in bucket
 * buckets[i] (bucket starts in microseconds). Empty bitmaps are skipped. 0 or a negative EPP_E*
 * code with pe filled (EPP_EINVAL for the minute level: see epp_users_append_minutes). */
int epp_users_append(PGconn *conn, epp_users_level_t level, const int64_t *buckets,
                     roaring_bitmap_t *const *bits, size_t n, epp_users_scratch_t *s,
                     epp_pg_error_t *pe);

/* A user seen in a minute: what a writer appends to the minute level. */
typedef struct {
    int64_t minute; /* the minute's bucket start, microseconds */
    uint32_t uid;
} epp_users_pair_t;

/* Sorts pairs by minute, then uid: the order epp_users_append_minutes takes. */
void epp_users_sort_pairs(epp_users_pair_t *pairs, size_t n);

/* Packs pairs[0..n) (sorted by epp_users_sort_pairs, all in one hour, n > 0) into out as
 * epp_users_pack_minutes packs their minutes' bitmaps, byte for byte, without building them;
 * one is scratch; *distinct receives the number of distinct pairs. 0 or EPP_ENOMEM. */
int epp_users_pack_pairs(const epp_users_pair_t *pairs, size_t n, epp_buf_t *out, epp_buf_t *one,
                         int64_t *distinct);

/* Appends to the minute level one row per hour of pairs[0..n) (sorted by epp_users_sort_pairs;
 * a pair given twice is stored once): the uids of each of its minutes, packed, written straight
 * from the sorted uids (no bitmap is built). 0 or a negative EPP_E* code with pe filled. */
int epp_users_append_minutes(PGconn *conn, const epp_users_pair_t *pairs, size_t n,
                             epp_users_scratch_t *s, epp_pg_error_t *pe);

/* Merges each bucket buckets[i] (distinct) into one row -- for the minute level, each hour of
 * the buckets given into one row, keeping the minutes not given as they were: its rows are read
 * FOR UPDATE (skip_locked: rows
 * another transaction has locked -- is merging -- are skipped, never waited for), OR-ed into
 * merged[i] (the caller's bitmap: e.g. new uids to store, or empty), the rows read are deleted,
 * and merged[i] is inserted unless empty. With remove non-NULL, the uids of remove[i] are taken
 * out of merged[i] before it is inserted (what epp-admin delete-test does). On 0, merged[i]
 * holds what this transaction stored for the bucket. A row that cannot be parsed fails the call
 * (EPP_EINVAL, nothing is deleted). */
int epp_users_merge(PGconn *conn, epp_users_level_t level, const int64_t *buckets,
                    roaring_bitmap_t **merged, roaring_bitmap_t *const *remove, size_t n,
                    int skip_locked, epp_users_scratch_t *s, epp_pg_error_t *pe);

#endif
