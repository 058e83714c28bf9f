#include "epp_uidcache.h"

#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_hash.h"

/* Open addressing, linear probing, load at most 1/2. Keys live in an arena (offsets, so that
 * the arena may move when it grows). */
typedef struct {
    uint64_t hash; /* 0: empty slot */
    int64_t uid;
    uint32_t off, len;
} slot_t;

struct epp_uidcache {
    slot_t *slots;
    size_t cap; /* power of two */
    size_t used;
    size_t max;
    epp_buf_t keys;
};

static uint64_t hash_key(const char *key, size_t len)
{
    return epp_hash_bytes(0, key, len);
}

epp_uidcache_t *epp_uidcache_create(size_t max_entries)
{
    epp_uidcache_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->max = max_entries ? max_entries : 1;
    c->cap = 1024;
    c->slots = calloc(c->cap, sizeof *c->slots);
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void epp_uidcache_destroy(epp_uidcache_t *c)
{
    if (c == NULL)
        return;
    free(c->slots);
    epp_buf_free(&c->keys);
    free(c);
}

static void clear(epp_uidcache_t *c)
{
    memset(c->slots, 0, c->cap * sizeof *c->slots);
    c->used = 0;
    epp_buf_reset(&c->keys);
}

size_t epp_uidcache_size(const epp_uidcache_t *c)
{
    return c ? c->used : 0;
}

static slot_t *find(const epp_uidcache_t *c, uint64_t h, const char *key, size_t len)
{
    size_t i = (size_t)h & (c->cap - 1);
    for (;;) {
        slot_t *s = &c->slots[i];
        if (s->hash == 0)
            return s;
        if (s->hash == h && s->len == len && memcmp(c->keys.data + s->off, key, len) == 0)
            return s;
        i = (i + 1) & (c->cap - 1);
    }
}

int64_t epp_uidcache_get(const epp_uidcache_t *c, const char *user_id, size_t len)
{
    if (c == NULL || c->used == 0)
        return -1;
    const slot_t *s = find(c, hash_key(user_id, len), user_id, len);
    return s->hash != 0 ? s->uid : -1;
}

static int grow(epp_uidcache_t *c)
{
    size_t ncap = c->cap * 2;
    slot_t *ns = calloc(ncap, sizeof *ns);
    if (ns == NULL)
        return EPP_ENOMEM;
    for (size_t i = 0; i < c->cap; i++) {
        const slot_t *s = &c->slots[i];
        if (s->hash == 0)
            continue;
        size_t j = (size_t)s->hash & (ncap - 1);
        while (ns[j].hash != 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(c->slots);
    c->slots = ns;
    c->cap = ncap;
    return 0;
}

int epp_uidcache_put(epp_uidcache_t *c, const char *user_id, size_t len, int64_t uid)
{
    if (c == NULL)
        return 0;
    uint64_t h = hash_key(user_id, len);
    slot_t *s = find(c, h, user_id, len);
    if (s->hash != 0)
        return 0;
    if (c->used >= c->max || c->keys.len + len > UINT32_MAX) {
        clear(c); /* full: start over (cheaper than tracking recency) */
        s = find(c, h, user_id, len);
    } else if ((c->used + 1) * 2 > c->cap) {
        if (grow(c) != 0) {
            clear(c);
            return EPP_ENOMEM;
        }
        s = find(c, h, user_id, len);
    }
    size_t off = c->keys.len;
    if (epp_buf_append(&c->keys, user_id, len) != 0) {
        clear(c);
        return EPP_ENOMEM;
    }
    s->hash = h;
    s->uid = uid;
    s->off = (uint32_t)off;
    s->len = (uint32_t)len;
    c->used++;
    return 0;
}
