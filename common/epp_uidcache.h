/* The uid cache: user_id -> uid entries of the user dictionary (sql/030) a program knows
 * committed, so that it asks the database only about users it has not seen: the consumer's
 * writer lanes (one each) before they store a batch, epp-analytics (analytics_ucache.c, under
 * its lock) for the users of a range's sub-minute edges.
 *
 * A dictionary entry never changes once committed (common/epp_users.h), so an entry here is
 * never stale; it is added only after the COMMIT of the transaction that read or created it
 * (never after a rollback, whose new ids do not exist). Bounded: cleared when full.
 *
 * One thread at a time. */
#ifndef EPP_UIDCACHE_H
#define EPP_UIDCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct epp_uidcache epp_uidcache_t;

/* max_entries: entries kept before the cache is cleared (>= 1). NULL on allocation failure. */
epp_uidcache_t *epp_uidcache_create(size_t max_entries);
void epp_uidcache_destroy(epp_uidcache_t *c);

/* The uid of user_id, or -1 when not cached. c may be NULL (a cache that is off). */
int64_t epp_uidcache_get(const epp_uidcache_t *c, const char *user_id, size_t len);
/* Remembers a committed entry (clearing everything first when full). 0 or EPP_ENOMEM (the cache
 * is then empty, which is safe). */
int epp_uidcache_put(epp_uidcache_t *c, const char *user_id, size_t len, int64_t uid);
size_t epp_uidcache_size(const epp_uidcache_t *c);

#endif
