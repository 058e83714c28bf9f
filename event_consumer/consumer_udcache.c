#include "consumer_udcache.h"

#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"

/* Open addressing, linear probing, load at most 1/2. Keys live in an arena (offsets, so that
 * the arena may move when it grows). */
typedef struct {
    uint64_t hash; /* 0: empty slot */
    int64_t bucket;
    uint32_t off, len;
} slot_t;

struct consumer_udcache {
    slot_t *slots;
    size_t cap; /* power of two */
    size_t used;
    size_t max;
    epp_buf_t keys;
    int64_t gen;
};

static uint64_t hash_pair(int64_t bucket, const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ ((uint64_t)bucket * 0x9e3779b97f4a7c15ULL);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return h ? h : 1;
}

consumer_udcache_t *consumer_udcache_create(size_t max_entries)
{
    consumer_udcache_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->max = max_entries ? max_entries : 1;
    c->cap = 1024;
    c->gen = -1;
    c->slots = calloc(c->cap, sizeof *c->slots);
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void consumer_udcache_destroy(consumer_udcache_t *c)
{
    if (c == NULL)
        return;
    free(c->slots);
    epp_buf_free(&c->keys);
    free(c);
}

void consumer_udcache_clear(consumer_udcache_t *c)
{
    memset(c->slots, 0, c->cap * sizeof *c->slots);
    c->used = 0;
    epp_buf_reset(&c->keys);
}

size_t consumer_udcache_size(const consumer_udcache_t *c)
{
    return c ? c->used : 0;
}

static slot_t *find(const consumer_udcache_t *c, slot_t *slots, size_t cap, uint64_t h,
                    int64_t bucket, const char *key, size_t len)
{
    size_t i = (size_t)h & (cap - 1);
    for (;;) {
        slot_t *s = &slots[i];
        if (s->hash == 0)
            return s;
        if (s->hash == h && s->bucket == bucket && s->len == len &&
            memcmp(c->keys.data + s->off, key, len) == 0)
            return s;
        i = (i + 1) & (cap - 1);
    }
}

int consumer_udcache_has(const consumer_udcache_t *c, int64_t bucket_us, const char *user_id,
                         size_t len)
{
    if (c == NULL || c->used == 0)
        return 0;
    uint64_t h = hash_pair(bucket_us, user_id, len);
    return find(c, c->slots, c->cap, h, bucket_us, user_id, len)->hash != 0;
}

static int grow(consumer_udcache_t *c)
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

int consumer_udcache_add(consumer_udcache_t *c, int64_t bucket_us, const char *user_id, size_t len)
{
    if (c == NULL)
        return 0;
    uint64_t h = hash_pair(bucket_us, user_id, len);
    slot_t *s = find(c, c->slots, c->cap, h, bucket_us, user_id, len);
    if (s->hash != 0)
        return 0;
    if (c->used >= c->max || c->keys.len + len > UINT32_MAX) {
        consumer_udcache_clear(c); /* full: start over (cheaper than tracking recency) */
        s = find(c, c->slots, c->cap, h, bucket_us, user_id, len);
    } else if ((c->used + 1) * 2 > c->cap) {
        if (grow(c) != 0) {
            consumer_udcache_clear(c);
            return EPP_ENOMEM;
        }
        s = find(c, c->slots, c->cap, h, bucket_us, user_id, len);
    }
    size_t off = c->keys.len;
    if (epp_buf_append(&c->keys, user_id, len) != 0) {
        consumer_udcache_clear(c);
        return EPP_ENOMEM;
    }
    s->hash = h;
    s->bucket = bucket_us;
    s->off = (uint32_t)off;
    s->len = (uint32_t)len;
    c->used++;
    return 0;
}

void consumer_udcache_set_generation(consumer_udcache_t *c, int64_t gen)
{
    if (c == NULL || c->gen == gen)
        return;
    consumer_udcache_clear(c);
    c->gen = gen;
}

int64_t consumer_udcache_generation(const consumer_udcache_t *c)
{
    return c ? c->gen : -1;
}
