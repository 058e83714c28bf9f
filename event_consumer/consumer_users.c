#include "consumer_users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <roaring/roaring.h>

#include "epp_error.h"
#include "epp_hash.h"
#include "epp_users.h"

/* Buckets remembered at most (their append counts, even without known uids): 64 bytes each,
 * twice over for the table's load factor. */
#define MAX_BUCKETS (128 * 1024)

typedef struct {
    int64_t bucket;
    uint8_t level;
    uint8_t live;            /* slot in use */
    uint32_t appends;        /* rows appended since the lane last merged the bucket */
    uint64_t touched;        /* write number of the last touch, for eviction */
    roaring_bitmap_t *known; /* committed uids (NULL: none known) */
    size_t known_bytes;
    /* The current write (freed by committed() or by the next write): */
    roaring_bitmap_t *delta;  /* uids of the batch not known */
    roaring_bitmap_t *merged; /* what a merge stored (NULL: appended, not merged) */
} entry_t;

struct consumer_users {
    entry_t *slots; /* open addressing, linear probing, load <= 1/2 */
    size_t cap, used;
    size_t memory, budget;
    int64_t gen;
    uint64_t writes;
    /* The current write's touched entries (indexes into slots). */
    size_t *pending;
    size_t npending, pending_cap;
    size_t sent, merged;
    /* Per-call scratch: buckets and bitmaps of one level's appends and merges. */
    int64_t *buckets;
    roaring_bitmap_t **bits;
    size_t scratch_cap;
    epp_users_scratch_t sql;
};

consumer_users_t *consumer_users_create(size_t memory_bytes)
{
    consumer_users_t *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    u->budget = memory_bytes;
    u->gen = -1;
    u->cap = 1024;
    u->slots = calloc(u->cap, sizeof *u->slots);
    if (u->slots == NULL) {
        free(u);
        return NULL;
    }
    return u;
}

static void entry_drop_pending(entry_t *e)
{
    epp_users_free(e->delta);
    epp_users_free(e->merged);
    e->delta = e->merged = NULL;
}

static void clear_all(consumer_users_t *u)
{
    for (size_t i = 0; i < u->cap; i++) {
        entry_t *e = &u->slots[i];
        if (!e->live)
            continue;
        entry_drop_pending(e);
        epp_users_free(e->known);
    }
    memset(u->slots, 0, u->cap * sizeof *u->slots);
    u->used = 0;
    u->memory = 0;
    u->npending = 0;
}

void consumer_users_destroy(consumer_users_t *u)
{
    if (u == NULL)
        return;
    clear_all(u);
    free(u->slots);
    free(u->pending);
    free(u->buckets);
    free(u->bits);
    epp_users_scratch_free(&u->sql);
    free(u);
}

void consumer_users_set_generation(consumer_users_t *u, int64_t gen)
{
    if (u->gen == gen)
        return;
    clear_all(u);
    u->gen = gen;
}

size_t consumer_users_sent(const consumer_users_t *u)
{
    return u->sent;
}

size_t consumer_users_merged(const consumer_users_t *u)
{
    return u->merged;
}

size_t consumer_users_memory(const consumer_users_t *u)
{
    return u->memory;
}

static size_t slot_of(const entry_t *slots, size_t cap, int level, int64_t bucket)
{
    size_t i = (size_t)epp_hash_bytes((uint64_t)level, &bucket, sizeof bucket) & (cap - 1);
    while (slots[i].live && (slots[i].level != level || slots[i].bucket != bucket))
        i = (i + 1) & (cap - 1);
    return i;
}

/* Rebuilds the table at capacity ncap with the live entries (all of them: nothing is pending
 * when this runs). */
static int rebuild(consumer_users_t *u, size_t ncap)
{
    entry_t *ns = calloc(ncap, sizeof *ns);
    if (ns == NULL)
        return EPP_ENOMEM;
    for (size_t i = 0; i < u->cap; i++)
        if (u->slots[i].live)
            ns[slot_of(ns, ncap, u->slots[i].level, u->slots[i].bucket)] = u->slots[i];
    free(u->slots);
    u->slots = ns;
    u->cap = ncap;
    return 0;
}

/* The entry of (level, bucket), created when absent; its slot index in *slot. */
static int get_entry(consumer_users_t *u, int level, int64_t bucket, size_t *slot)
{
    size_t i = slot_of(u->slots, u->cap, level, bucket);
    if (!u->slots[i].live) {
        if ((u->used + 1) * 2 > u->cap) {
            /* Pending indexes would move: only grow between writes. */
            return EPP_EAGAIN;
        }
        u->slots[i] = (entry_t){.bucket = bucket, .level = (uint8_t)level, .live = 1};
        u->used++;
    }
    *slot = i;
    return 0;
}

static int note_pending(consumer_users_t *u, size_t slot)
{
    if (u->npending == u->pending_cap) {
        size_t ncap = u->pending_cap ? u->pending_cap * 2 : 256;
        size_t *np = realloc(u->pending, ncap * sizeof *np);
        if (np == NULL)
            return EPP_ENOMEM;
        u->pending = np;
        u->pending_cap = ncap;
    }
    u->pending[u->npending++] = slot;
    return 0;
}

/* Forgets the least recently touched half of the buckets (nothing is pending). */
static void evict(consumer_users_t *u)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < u->cap; i++) {
        if (!u->slots[i].live)
            continue;
        lo = u->slots[i].touched < lo ? u->slots[i].touched : lo;
        hi = u->slots[i].touched > hi ? u->slots[i].touched : hi;
    }
    uint64_t cut = lo + (hi - lo) / 2;
    for (size_t i = 0; i < u->cap; i++) {
        entry_t *e = &u->slots[i];
        if (!e->live || e->touched > cut)
            continue;
        epp_users_free(e->known);
        u->memory -= e->known_bytes;
        e->live = 0;
        u->used--;
    }
    if (rebuild(u, u->cap) != 0)
        clear_all(u);
}

static int grow_scratch(consumer_users_t *u, size_t n)
{
    if (n <= u->scratch_cap)
        return 0;
    int64_t *nb = realloc(u->buckets, n * sizeof *nb);
    if (nb == NULL)
        return EPP_ENOMEM;
    u->buckets = nb;
    roaring_bitmap_t **nbits = realloc(u->bits, n * sizeof *nbits);
    if (nbits == NULL)
        return EPP_ENOMEM;
    u->bits = nbits;
    u->scratch_cap = n;
    return 0;
}

static int oom(epp_pg_error_t *pe)
{
    memset(pe, 0, sizeof *pe);
    snprintf(pe->message, sizeof pe->message, "out of memory");
    return pe->code = EPP_ENOMEM;
}

/* Collects the uids of the batch that are not known, per (level, bucket). */
static int collect(consumer_users_t *u, const consumer_batch_t *b)
{
    /* Room for every entry the batch could create, so that no pending index moves. */
    size_t worst = u->used + (size_t)EPP_USERS_LEVELS * b->n + 1;
    if (worst * 2 > u->cap) {
        size_t ncap = u->cap;
        while (worst * 2 > ncap)
            ncap *= 2;
        if (rebuild(u, ncap) != 0)
            return EPP_ENOMEM;
    }
    for (size_t i = 0; i < b->n; i++) {
        const consumer_row_t *r = &b->rows[i];
        if (r->state != CONSUMER_ROW_OK || !r->inserted)
            continue;
        int64_t uid = b->users[r->uix].uid;
        if (uid < 0 || uid > EPP_USERS_MAX_UID)
            return EPP_EINVAL;
        for (int level = 0; level < EPP_USERS_LEVELS; level++) {
            size_t slot;
            int rc = get_entry(u, level, epp_users_bucket(level, r->timestamp_us), &slot);
            if (rc != 0)
                return rc;
            entry_t *e = &u->slots[slot];
            if (e->touched != u->writes) {
                e->touched = u->writes;
                if ((rc = note_pending(u, slot)) != 0)
                    return rc;
            }
            if (e->known != NULL && roaring_bitmap_contains(e->known, (uint32_t)uid))
                continue;
            if (e->delta == NULL && (e->delta = roaring_bitmap_create()) == NULL)
                return EPP_ENOMEM;
            roaring_bitmap_add(e->delta, (uint32_t)uid);
        }
    }
    return 0;
}

void consumer_users_abandon(consumer_users_t *u)
{
    for (size_t k = 0; k < u->npending; k++)
        entry_drop_pending(&u->slots[u->pending[k]]);
    u->npending = 0;
}

int consumer_users_write(consumer_users_t *u, PGconn *conn, const consumer_batch_t *b,
                         epp_pg_error_t *pe)
{
    consumer_users_abandon(u);
    u->sent = u->merged = 0;
    u->writes++;
    int rc = collect(u, b);
    if (rc == EPP_EINVAL) {
        memset(pe, 0, sizeof *pe);
        snprintf(pe->message, sizeof pe->message, "a row's user has no valid uid");
        return pe->code = rc;
    }
    if (rc != 0)
        return oom(pe);
    if (grow_scratch(u, u->npending) != 0)
        return oom(pe);
    for (int level = 0; level < EPP_USERS_LEVELS && rc == 0; level++) {
        /* Appends first, then merges (a merge reads the bucket's rows, this batch's included
         * when it also appended -- it does not: a bucket is appended to or merged, not both). */
        for (int merge = 0; merge < 2 && rc == 0; merge++) {
            size_t m = 0;
            for (size_t k = 0; k < u->npending; k++) {
                entry_t *e = &u->slots[u->pending[k]];
                if (e->level != level || e->delta == NULL)
                    continue;
                if ((e->appends + 1 >= CONSUMER_USERS_MERGE_AFTER) != merge)
                    continue;
                u->sent += roaring_bitmap_get_cardinality(e->delta);
                u->buckets[m] = e->bucket;
                if (merge) {
                    if ((e->merged = roaring_bitmap_copy(e->delta)) == NULL)
                        return oom(pe);
                    u->bits[m++] = e->merged;
                } else {
                    u->bits[m++] = e->delta;
                }
            }
            if (m == 0)
                continue;
            if (merge) {
                u->merged += m;
                rc = epp_users_merge(conn, level, u->buckets, u->bits, NULL, m, 1, &u->sql, pe);
            } else {
                rc = epp_users_append(conn, level, u->buckets, u->bits, m, &u->sql, pe);
            }
        }
    }
    return rc;
}

void consumer_users_committed(consumer_users_t *u)
{
    for (size_t k = 0; k < u->npending; k++) {
        entry_t *e = &u->slots[u->pending[k]];
        roaring_bitmap_t *add = e->merged != NULL ? e->merged : e->delta;
        if (e->merged != NULL)
            e->appends = 0;
        else if (e->delta != NULL)
            e->appends++;
        if (add != NULL && u->budget > 0) {
            if (e->known == NULL) {
                e->known = add;
                if (add == e->merged)
                    e->merged = NULL;
                else
                    e->delta = NULL;
            } else {
                roaring_bitmap_or_inplace(e->known, add);
            }
            u->memory -= e->known_bytes;
            e->known_bytes = roaring_bitmap_portable_size_in_bytes(e->known);
            u->memory += e->known_bytes;
        }
        entry_drop_pending(e);
    }
    u->npending = 0;
    if (u->memory > u->budget || u->used > MAX_BUCKETS)
        evict(u);
}
