#include "consumer_users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <roaring/roaring.h>

#include "epp_error.h"
#include "epp_hash.h"
#include "epp_users.h"

/* Buckets remembered at most (for their append counts, even without known uids). */
#define MAX_BUCKETS ((size_t)64 * 1024)

/* The entries of the minute level's rows, one per hour (sql/032): their append counts. The
 * minute level's own entries, one per minute, only find a minute's pending record. */
#define MINUTE_ROWS EPP_USERS_LEVELS

/* What a lane remembers of one bucket between batches (40 bytes). */
typedef struct {
    int64_t bucket;
    uint32_t touched;        /* the write that last touched it, for eviction */
    uint32_t pending;        /* its index in pending[], valid when that record is its own */
    uint16_t appends;        /* rows appended since the lane last merged the bucket */
    uint8_t level;           /* epp_users_level_t, or MINUTE_ROWS */
    uint8_t live;            /* slot in use */
    uint32_t counted;        /* the write whose appends were last counted (MINUTE_ROWS) */
    uint32_t known_bytes;    /* memory charged for known */
    roaring_bitmap_t *known; /* committed uids (NULL: none known) */
} entry_t;

/* What the current write does to one bucket (freed by committed() or by the next write). */
typedef struct {
    int64_t bucket;
    int level;
    roaring_bitmap_t *delta;  /* uids of the batch not known */
    roaring_bitmap_t *merged; /* what a merge stored (NULL: appended, not merged) */
} pending_t;

struct consumer_users {
    entry_t *slots; /* open addressing, linear probing, load <= 1/2 */
    size_t cap, used;
    size_t memory, budget;
    int64_t gen;
    uint32_t writes;
    pending_t *pending;
    size_t npending, pending_cap;
    size_t sent, merged;
    /* Per-call scratch: buckets and bitmaps of one level's appends and merges. */
    int64_t *buckets;
    roaring_bitmap_t **bits;
    size_t scratch_cap;
    epp_users_scratch_t sql;
};

int consumer_users_merge_after(int level)
{
    return level == EPP_USERS_MINUTE ? 32 : 8;
}

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

void consumer_users_abandon(consumer_users_t *u)
{
    for (size_t k = 0; k < u->npending; k++) {
        epp_users_free(u->pending[k].delta);
        epp_users_free(u->pending[k].merged);
    }
    u->npending = 0;
}

static void clear_all(consumer_users_t *u)
{
    consumer_users_abandon(u);
    for (size_t i = 0; i < u->cap; i++)
        if (u->slots[i].live)
            epp_users_free(u->slots[i].known);
    memset(u->slots, 0, u->cap * sizeof *u->slots);
    u->used = 0;
    u->memory = 0;
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

/* Rebuilds the table at capacity ncap with the live entries. ncap is never 0: the table starts
 * at 1024 slots and only doubles (clang's analyzer cannot see that from evict()). */
static int rebuild(consumer_users_t *u, size_t ncap)
{
    /* NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI) */
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

/* The entry of (level, bucket), created when absent. */
static entry_t *get_entry(consumer_users_t *u, int level, int64_t bucket)
{
    size_t i = slot_of(u->slots, u->cap, level, bucket);
    if (u->slots[i].live)
        return &u->slots[i];
    if ((u->used + 1) * 2 > u->cap) {
        if (rebuild(u, u->cap * 2) != 0)
            return NULL;
        i = slot_of(u->slots, u->cap, level, bucket);
    }
    u->slots[i] =
        (entry_t){.bucket = bucket, .level = (uint8_t)level, .live = 1, .pending = UINT32_MAX};
    u->used++;
    return &u->slots[i];
}

/* The entry that counts the rows appended for (level, bucket): the bucket's own, or for a
 * minute its hour's (both exist from collect() until the write's end). */
static entry_t *counts_of(consumer_users_t *u, int level, int64_t bucket)
{
    if (level == EPP_USERS_MINUTE) {
        level = MINUTE_ROWS;
        bucket = epp_users_row_bucket(EPP_USERS_MINUTE, bucket);
    }
    return &u->slots[slot_of(u->slots, u->cap, level, bucket)];
}

/* The pending record of e for the current write, created when e was not touched yet. */
static pending_t *get_pending(consumer_users_t *u, entry_t *e)
{
    if (e->pending < u->npending && u->pending[e->pending].level == e->level &&
        u->pending[e->pending].bucket == e->bucket)
        return &u->pending[e->pending];
    if (u->npending == u->pending_cap) {
        size_t ncap = u->pending_cap ? u->pending_cap * 2 : 256;
        pending_t *np = realloc(u->pending, ncap * sizeof *np);
        if (np == NULL)
            return NULL;
        u->pending = np;
        u->pending_cap = ncap;
    }
    e->pending = (uint32_t)u->npending;
    u->pending[u->npending] = (pending_t){.bucket = e->bucket, .level = e->level};
    return &u->pending[u->npending++];
}

/* Memory a known bitmap is charged: its payload (the portable size) twice over, for allocation
 * slack and the container structures, plus the fixed cost of a small bitmap. */
static uint32_t charge(const roaring_bitmap_t *r)
{
    return (uint32_t)(2 * roaring_bitmap_portable_size_in_bytes(r) + 160);
}

/* Forgets the least recently touched half of the buckets (nothing is pending). */
static void evict(consumer_users_t *u)
{
    /* Touch numbers are write numbers: the buckets older than half the oldest's age go. */
    uint32_t span = 0;
    for (size_t i = 0; i < u->cap; i++) {
        uint32_t age = u->writes - u->slots[i].touched;
        if (u->slots[i].live && age > span)
            span = age;
    }
    for (size_t i = 0; i < u->cap; i++) {
        entry_t *e = &u->slots[i];
        if (!e->live || u->writes - e->touched < span / 2)
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
    roaring_bitmap_t **nbits = realloc(u->bits, n * sizeof(roaring_bitmap_t *));
    if (nbits == NULL)
        return EPP_ENOMEM;
    u->bits = nbits;
    u->scratch_cap = n;
    return 0;
}

static int fail(epp_pg_error_t *pe, int code, const char *message)
{
    memset(pe, 0, sizeof *pe);
    snprintf(pe->message, sizeof pe->message, "%s", message);
    return pe->code = code;
}

/* Collects the uids of the batch that are not known, per (level, bucket). */
static int collect(consumer_users_t *u, const consumer_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const consumer_row_t *r = &b->rows[i];
        if (r->state != CONSUMER_ROW_OK || !r->inserted)
            continue;
        int64_t uid = b->users[r->uix].uid;
        if (uid < 0 || uid > EPP_USERS_MAX_UID)
            return EPP_EINVAL;
        for (int level = 0; level < EPP_USERS_LEVELS; level++) {
            int64_t bucket = epp_users_bucket(level, r->timestamp_us);
            entry_t *e = get_entry(u, level, bucket);
            if (e == NULL)
                return EPP_ENOMEM;
            e->touched = u->writes;
            if (level == EPP_USERS_MINUTE) {
                entry_t *row = get_entry(u, MINUTE_ROWS, epp_users_row_bucket(level, bucket));
                if (row == NULL)
                    return EPP_ENOMEM;
                row->touched = u->writes;
                e = &u->slots[slot_of(u->slots, u->cap, level, bucket)]; /* the table may grow */
            }
            if (e->known != NULL && roaring_bitmap_contains(e->known, (uint32_t)uid))
                continue;
            pending_t *p = get_pending(u, e);
            if (p == NULL)
                return EPP_ENOMEM;
            if (p->delta == NULL && (p->delta = roaring_bitmap_create()) == NULL)
                return EPP_ENOMEM;
            roaring_bitmap_add(p->delta, (uint32_t)uid);
        }
    }
    return 0;
}

int consumer_users_write(consumer_users_t *u, PGconn *conn, const consumer_batch_t *b,
                         epp_pg_error_t *pe)
{
    consumer_users_abandon(u);
    u->sent = u->merged = 0;
    u->writes++;
    int rc = collect(u, b);
    if (rc == EPP_EINVAL)
        return fail(pe, rc, "a row's user has no valid uid");
    if (rc != 0 || grow_scratch(u, u->npending) != 0)
        return fail(pe, EPP_ENOMEM, "out of memory");
    for (int level = 0; level < EPP_USERS_LEVELS && rc == 0; level++) {
        /* A bucket is appended to or merged, not both. */
        for (int merge = 0; merge < 2 && rc == 0; merge++) {
            size_t m = 0;
            for (size_t k = 0; k < u->npending; k++) {
                pending_t *p = &u->pending[k];
                if (p->level != level || p->delta == NULL)
                    continue;
                const entry_t *c = counts_of(u, p->level, p->bucket);
                if ((c->appends + 1 >= consumer_users_merge_after(level)) != merge)
                    continue;
                u->sent += roaring_bitmap_get_cardinality(p->delta);
                u->buckets[m] = p->bucket;
                if (merge) {
                    if ((p->merged = roaring_bitmap_copy(p->delta)) == NULL)
                        return fail(pe, EPP_ENOMEM, "out of memory");
                    u->bits[m++] = p->merged;
                } else {
                    u->bits[m++] = p->delta;
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
        pending_t *p = &u->pending[k];
        entry_t *e = &u->slots[slot_of(u->slots, u->cap, p->level, p->bucket)];
        /* Counted once per write: a minute's row is its hour's, shared by its minutes. */
        entry_t *c = counts_of(u, p->level, p->bucket);
        if (c->counted != u->writes) {
            if (p->merged != NULL)
                c->appends = 0;
            else if (p->delta != NULL && c->appends < UINT16_MAX)
                c->appends++;
            c->counted = u->writes;
        }
        roaring_bitmap_t *add = p->merged != NULL ? p->merged : p->delta;
        /* The minute level keeps no known uids: a user rarely has two events in one minute of
         * two batches, so they would save little and cost the most memory. */
        if (add != NULL && u->budget > 0 && p->level != EPP_USERS_MINUTE) {
            if (e->known == NULL) {
                e->known = add;
                if (add == p->merged)
                    p->merged = NULL;
                else
                    p->delta = NULL;
            } else {
                roaring_bitmap_or_inplace(e->known, add);
            }
            u->memory -= e->known_bytes;
            e->known_bytes = charge(e->known);
            u->memory += e->known_bytes;
        }
        epp_users_free(p->delta);
        epp_users_free(p->merged);
    }
    u->npending = 0;
    if (u->memory > u->budget || u->used > MAX_BUCKETS)
        evict(u);
}
