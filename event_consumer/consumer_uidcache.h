/* The uid cache: user_id -> uid entries of the user dictionary (sql/030) a writer lane knows
 * committed, so that a batch asks the database only about users it has not seen.
 *
 * A dictionary entry never changes once committed (common/epp_users.h), so an entry here is
 * never stale; it is added only after the COMMIT of the transaction that read or created it
 * (never after a rollback, whose new ids do not exist). Bounded: cleared when full.
 *
 * One thread at a time (each writer lane has its own). */
#ifndef CONSUMER_UIDCACHE_H
#define CONSUMER_UIDCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct consumer_uidcache consumer_uidcache_t;

/* max_entries: entries kept before the cache is cleared (>= 1). NULL on allocation failure. */
consumer_uidcache_t *consumer_uidcache_create(size_t max_entries);
void consumer_uidcache_destroy(consumer_uidcache_t *c);

/* The uid of user_id, or -1 when not cached. c may be NULL (a cache that is off). */
int64_t consumer_uidcache_get(const consumer_uidcache_t *c, const char *user_id, size_t len);
/* Remembers a committed entry (clearing everything first when full). 0 or EPP_ENOMEM (the cache
 * is then empty, which is safe). */
int consumer_uidcache_put(consumer_uidcache_t *c, const char *user_id, size_t len, int64_t uid);
size_t consumer_uidcache_size(const consumer_uidcache_t *c);

#endif
