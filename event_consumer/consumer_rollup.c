#include "consumer_rollup.h"

#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_hash.h"
#include "epp_pgcopy.h"
#include "epp_time.h"

typedef struct {
    uint64_t hash; /* 0: empty slot */
    int64_t bucket;
    const char *key;
    uint32_t key_len;
    uint8_t kind;
    int64_t n;
} entry_t;

struct consumer_rollup {
    entry_t *slots;
    size_t cap; /* power of two */
    size_t used;
};

static const int64_t widths[] = {60LL * 1000000, 3600LL * 1000000, 86400LL * 1000000};

int64_t consumer_rollup_bucket(consumer_rollup_kind_t kind, int64_t ts_us)
{
    return epp_time_floor(ts_us, widths[kind]);
}

consumer_rollup_t *consumer_rollup_create(void)
{
    consumer_rollup_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->cap = 1024;
    r->slots = calloc(r->cap, sizeof *r->slots);
    if (r->slots == NULL) {
        consumer_rollup_destroy(r);
        return NULL;
    }
    return r;
}

void consumer_rollup_destroy(consumer_rollup_t *r)
{
    if (r == NULL)
        return;
    free(r->slots);
    free(r);
}

void consumer_rollup_reset(consumer_rollup_t *r)
{
    memset(r->slots, 0, r->cap * sizeof *r->slots);
    r->used = 0;
}

size_t consumer_rollup_size(const consumer_rollup_t *r)
{
    return r->used;
}

static uint64_t hash_key(uint8_t kind, int64_t bucket, const char *key, size_t len)
{
    /* Never 0 (0 marks an empty slot). */
    return epp_hash_bytes(((uint64_t)bucket << 2) ^ kind, key, len);
}

static entry_t *find_slot(entry_t *slots, size_t cap, uint64_t h, uint8_t kind, int64_t bucket,
                          const char *key, size_t len)
{
    size_t i = (size_t)h & (cap - 1);
    for (;;) {
        entry_t *e = &slots[i];
        if (e->hash == 0)
            return e;
        if (e->hash == h && e->kind == kind && e->bucket == bucket && e->key_len == len &&
            memcmp(e->key, key, len) == 0)
            return e;
        i = (i + 1) & (cap - 1);
    }
}

static int grow(consumer_rollup_t *r)
{
    size_t ncap = r->cap * 2;
    entry_t *ns = calloc(ncap, sizeof *ns);
    if (ns == NULL)
        return EPP_ENOMEM;
    for (size_t i = 0; i < r->cap; i++) {
        entry_t *e = &r->slots[i];
        if (e->hash == 0)
            continue;
        *find_slot(ns, ncap, e->hash, e->kind, e->bucket, e->key, e->key_len) = *e;
    }
    free(r->slots);
    r->slots = ns;
    r->cap = ncap;
    return 0;
}

static int add_one(consumer_rollup_t *r, uint8_t kind, int64_t bucket, const char *key, size_t len)
{
    if ((r->used + 1) * 2 > r->cap) {
        int rc = grow(r);
        if (rc != 0)
            return rc;
    }
    uint64_t h = hash_key(kind, bucket, key, len);
    entry_t *e = find_slot(r->slots, r->cap, h, kind, bucket, key, len);
    if (e->hash == 0) {
        e->hash = h;
        e->kind = kind;
        e->bucket = bucket;
        e->key = key;
        e->key_len = (uint32_t)len;
        e->n = 0;
        r->used++;
    }
    e->n++;
    return 0;
}

int consumer_rollup_add(consumer_rollup_t *r, int64_t ts_us, const char *event_name,
                        size_t event_name_len)
{
    int rc = 0;
    for (int k = CONSUMER_ROLLUP_MINUTE; k <= CONSUMER_ROLLUP_DAY && rc == 0; k++)
        rc = add_one(r, (uint8_t)k, consumer_rollup_bucket(k, ts_us), event_name, event_name_len);
    return rc;
}

int64_t consumer_rollup_get(const consumer_rollup_t *r, consumer_rollup_kind_t kind,
                            int64_t bucket_us, const char *key, size_t key_len)
{
    uint64_t h = hash_key((uint8_t)kind, bucket_us, key, key_len);
    const entry_t *e = find_slot(r->slots, r->cap, h, (uint8_t)kind, bucket_us, key, key_len);
    return e->hash ? e->n : 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry_t *x = *(const entry_t *const *)a, *y = *(const entry_t *const *)b;
    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

int consumer_rollup_arrays(const consumer_rollup_t *r, consumer_rollup_kind_t kind,
                           epp_buf_t *buckets, epp_buf_t *keys, epp_buf_t *counts, size_t *count)
{
    epp_buf_reset(buckets);
    epp_buf_reset(keys);
    epp_buf_reset(counts);
    *count = 0;
    size_t n = 0;
    for (size_t i = 0; i < r->cap; i++)
        n += r->slots[i].hash != 0 && r->slots[i].kind == kind;
    if (n == 0)
        return 0;
    const entry_t **v = malloc(n * sizeof(const entry_t *));
    if (v == NULL)
        return EPP_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < r->cap; i++) {
        const entry_t *e = &r->slots[i];
        if (e->hash != 0 && e->kind == kind)
            v[k++] = e;
    }
    n = k;
    if (n == 0) {
        free(v);
        return 0;
    }
    qsort(v, n, sizeof(const entry_t *), cmp_entry);
    int rc = epp_pgcopy_array_header(buckets, EPP_PG_OID_TIMESTAMPTZ, n);
    if (rc == 0)
        rc = epp_pgcopy_array_header(keys, EPP_PG_OID_TEXT, n);
    if (rc == 0)
        rc = epp_pgcopy_array_header(counts, EPP_PG_OID_INT8, n);
    if (rc == 0)
        rc = epp_buf_reserve(buckets, n * 12);
    if (rc == 0)
        rc = epp_buf_reserve(counts, n * 12);
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char b[12];
        epp_pgcopy_put_be32(b, 8);
        epp_pgcopy_put_be64(b + 4, (uint64_t)(v[i]->bucket - EPP_PGCOPY_PG_EPOCH_US));
        rc = epp_buf_append(buckets, b, 12);
        epp_pgcopy_put_be64(b + 4, (uint64_t)v[i]->n);
        if (rc == 0)
            rc = epp_buf_append(counts, b, 12);
        if (rc == 0)
            rc = epp_pgcopy_array_elem(keys, v[i]->key, v[i]->key_len);
    }
    free(v);
    if (rc == 0)
        *count = n;
    return rc;
}
