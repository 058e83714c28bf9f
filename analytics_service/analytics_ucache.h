/* The user bitmaps (sql/031) of epp-analytics, shared by its HTTP threads: a cache of stored
 * rows, never of answers. Hour and day rows are kept decoded; a minute row (an hour of minutes,
 * sql/032) is kept as stored, packed, because an answer needs only the minutes of its range's
 * edges, and decodes just those.
 *
 * Why it is exact: a bitmap row never changes after its INSERT. Writers append rows, merges
 * delete rows and insert their union under a new identity id, delete-test and retention delete;
 * nothing UPDATEs bits, and an identity id is not handed out twice by one incarnation of a
 * table. So within one generation -- the Postgres server's start time and the relfilenodes of
 * the three bitmap tables and the dictionary, which TRUNCATE, VACUUM FULL, CLUSTER and a
 * re-created table change -- a row
 * known by (level, id) holds what Postgres holds. Every answer still comes from one statement
 * and one snapshot: the statement returns every row of the range (which rows count is always
 * Postgres's), with bits left out only for the ids this request pinned here, and it returns the
 * generation, checked before any cached bitmap is used; a changed generation empties the cache
 * and the statement runs again without it. See analytics_queries.c, analytics_q_active.
 *
 * A request pins the entries of its range (they are not freed while it runs), reads, adds the
 * rows it had to decode, and releases: then entries of its range that its snapshot no longer
 * holds (merged or deleted rows, whose ids never come back) are dropped, and the least recently
 * used entries are evicted while the cache is over its budget.
 *
 * Threads: any; one mutex. A NULL cache (budget 0) is valid everywhere and caches nothing. */
#ifndef ANALYTICS_UCACHE_H
#define ANALYTICS_UCACHE_H

#include <stddef.h>
#include <stdint.h>

#include <roaring/roaring.h>

#include "epp_buf.h"
#include "epp_metrics.h"

typedef enum {
    ANALYTICS_UC_HOUR,
    ANALYTICS_UC_DAY,
    ANALYTICS_UC_MINUTE,
    ANALYTICS_UC_LEVELS
} analytics_uc_level_t;

typedef struct analytics_ucache analytics_ucache_t;
typedef struct analytics_uc_entry analytics_uc_entry_t;

/* One request's view: what it pinned and what it decoded. Zero-initialise; end with
 * analytics_ucache_release. */
typedef struct {
    analytics_uc_entry_t **pins; /* sorted by (level, id) */
    unsigned char *used;         /* per pin: the statement returned its row */
    size_t npins;
    analytics_uc_entry_t **fresh; /* decoded by this request, to insert on release */
    size_t nfresh, capfresh;
    uint64_t epoch; /* the cache's epoch when pinned: fresh entries of an older one are dropped */
    int started;
} analytics_uc_req_t;

/* A cache of at most max_bytes of bitmap rows; NULL when max_bytes is 0 or out of memory
 * (then nothing is cached). metrics may be NULL. */
analytics_ucache_t *analytics_ucache_create(size_t max_bytes, epp_metrics_t *metrics);
void analytics_ucache_destroy(analytics_ucache_t *c);

/* Pins the entries of level whose bucket lies in [lo, hi). 0 or EPP_ENOMEM. */
int analytics_ucache_pin(analytics_ucache_t *c, analytics_uc_req_t *r, analytics_uc_level_t level,
                         int64_t lo, int64_t hi);
/* Writes the ids r pinned at level as a Postgres array literal ("{1,2}") into out. */
int analytics_ucache_ids(const analytics_uc_req_t *r, analytics_uc_level_t level, epp_buf_t *out);
/* Checks the generation an answer reports. 1: the pinned entries are valid for it. 0: the
 * generation changed, or the cache was emptied since r pinned, and r had pinned entries: release
 * r (ok = 0) and run the statement again without them. */
int analytics_ucache_check(analytics_ucache_t *c, analytics_uc_req_t *r, const char *gen);
/* The pinned bitmap of row (level, id) of cardinality n, marked as used; NULL if r did not pin
 * it or its cardinality differs (then the caller must not trust the cache: see
 * analytics_ucache_reset). */
const roaring_bitmap_t *analytics_ucache_get(analytics_uc_req_t *r, analytics_uc_level_t level,
                                             int64_t id, int64_t n);
/* Hands a decoded row to the cache (inserted on release; freed there if not kept). bits is
 * owned by the cache from here on, also on failure. 0 or EPP_ENOMEM. */
int analytics_ucache_add(analytics_ucache_t *c, analytics_uc_req_t *r, analytics_uc_level_t level,
                         int64_t id, int64_t bucket, int64_t n, roaring_bitmap_t *bits);
/* The same for minute rows, kept packed: the pinned row id of cardinality n (its length in
 * *len), marked as used, or NULL as above; and a copy of a stored row handed to the cache. */
const unsigned char *analytics_ucache_get_packed(analytics_uc_req_t *r, int64_t id, int64_t n,
                                                 size_t *len);
int analytics_ucache_add_packed(analytics_ucache_t *c, analytics_uc_req_t *r, int64_t id,
                                int64_t bucket, int64_t n, const void *data, size_t len);
/* Ends a request: inserts what it decoded, drops the pinned entries it found gone, unpins,
 * evicts over budget. With ok = 0 (the statement failed) only unpins and frees. */
void analytics_ucache_release(analytics_ucache_t *c, analytics_uc_req_t *r, int ok);
/* Empties the cache (a stored row did not match its entry: cannot happen unless a table's
 * identity was restarted by hand). */
void analytics_ucache_reset(analytics_ucache_t *c);

/* The user dictionary (sql/030) as far as answers have needed it: its rows are only ever
 * inserted, never changed or deleted, so a user_id -> uid pair read once holds for the whole
 * generation. Bounded by a quarter of the budget (then emptied and refilled). */
typedef struct {
    const char *name; /* the user_id, not NUL-terminated */
    int len;
    int64_t uid; /* out: the uid, or -1 if not cached */
} analytics_uc_user_t;
/* Fills u[i].uid from the cache for the n users (-1 where unknown to it). 0, or EPP_EAGAIN if
 * the cache was emptied since r checked its generation (run the request again). */
int analytics_ucache_uids(analytics_ucache_t *c, const analytics_uc_req_t *r,
                          analytics_uc_user_t *u, size_t n);
/* Remembers the pairs of u[0..n) with uid >= 0, read by a request of r's epoch (dropped if the
 * cache was emptied since). */
void analytics_ucache_put_uids(analytics_ucache_t *c, const analytics_uc_req_t *r,
                               const analytics_uc_user_t *u, size_t n);

#endif
