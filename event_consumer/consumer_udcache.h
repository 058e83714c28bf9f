/* The user-day cache: (day bucket, user_id) pairs a writer knows to be committed in
 * public.epp_user_day, so that a batch inserts only the pairs it has not seen yet (the table is
 * a set; most of a batch's pairs are already there).
 *
 * Contract with the deleters (sql/004_user_day_set.sql): a transaction that removes rows from
 * epp_user_day bumps public.epp_rollup_generation in the same transaction, after taking that
 * row's lock first; every writer transaction reads the generation FOR SHARE before anything
 * else and clears its cache when the generation changed. Pairs are added only after the COMMIT
 * that stored them (or found them stored) succeeded, never after a rollback or an unknown
 * outcome. Forgetting a pair is always safe (it is re-sent with ON CONFLICT DO NOTHING); the
 * cache is bounded and simply cleared when full.
 *
 * One thread at a time (each writer lane has its own cache). */
#ifndef CONSUMER_UDCACHE_H
#define CONSUMER_UDCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct consumer_udcache consumer_udcache_t;

/* max_entries: pairs kept before the cache is cleared (>= 1). NULL on allocation failure. */
consumer_udcache_t *consumer_udcache_create(size_t max_entries);
void consumer_udcache_destroy(consumer_udcache_t *c);

/* 1 when the pair is known committed. */
int consumer_udcache_has(const consumer_udcache_t *c, int64_t bucket_us, const char *user_id,
                         size_t len);
/* Remembers a committed pair (clearing everything first when full). 0 or EPP_ENOMEM (the
 * cache is then empty, which is safe). */
int consumer_udcache_add(consumer_udcache_t *c, int64_t bucket_us, const char *user_id, size_t len);
/* Forgets every pair. */
void consumer_udcache_clear(consumer_udcache_t *c);
size_t consumer_udcache_size(const consumer_udcache_t *c);

/* The generation (public.epp_rollup_generation) the cached pairs were read under; -1 before
 * the first. Clears the cache when gen differs. */
void consumer_udcache_set_generation(consumer_udcache_t *c, int64_t gen);
int64_t consumer_udcache_generation(const consumer_udcache_t *c);

#endif
