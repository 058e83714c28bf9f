#include "consumer_users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <roaring/roaring.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_hash.h"
#include "epp_users.h"

/* Buckets remembered at most (for their append counts, even without known uids). */
#define MAX_BUCKETS ((size_t)64 * 1024)

/* What a lane remembers of one row bucket between batches (40 bytes): for the minute level,
 * whose rows hold an hour of minutes each, of an hour (its append count only). */
typedef struct {
    int64_t bucket;
    uint32_t touched;        /* the write that last touched it, for eviction */
    uint32_t pending;        /* its index in pending[], valid when that record is its own */
    uint16_t appends;        /* rows appended since the lane last merged the bucket */
    uint8_t level;           /* epp_users_level_t */
    uint8_t live;            /* slot in use */
    uint32_t known_bytes;    /* memory charged for known */
    roaring_bitmap_t *known; /* committed uids (NULL: none known) */
} entry_t;

/* What the current write does to one row bucket (freed by committed() or by the next write). */
typedef struct {
    int64_t bucket;
    int level;
    int merge;                /* merged rather than appended to */
    roaring_bitmap_t *delta;  /* uids of the batch not known (NULL for the minute level) */
    roaring_bitmap_t *merged; /* what a merge stored (hour and day levels) */
} pending_t;

struct consumer_users {
    entry_t *slots; /* open addressing, linear probing, load <= 1/2 */
    size_t cap, used;
    size_t memory, budget;
    int64_t gen;
    uint32_t writes;
    pending_t *pending;
    size_t npending, pending_cap;
    /* The batch's (minute, uid) pairs, sorted; those of the hours appended to first. */
    epp_users_pair_t *pairs;
    size_t npairs, pairs_cap;
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
    free(u->pairs);
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

/* The pending record of e for the current write, created when e was not touched yet. */
static pending_t *get_pending(consumer_users_t *u, entry_t *e)
{
    if (e->pending < u->npending && u->pending[e->pending].level == e->level &&
        u->pending[e->pending].bucket == e->bucket)
        return &u->pending[e->pending];
    if (epp_grow(&u->pending, &u->pending_cap, u->npending, sizeof *u->pending, 256) != 0)
        return NULL;
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

/* A pair for the minute level, the array grown as needed. */
static int add_pair(consumer_users_t *u, int64_t minute, uint32_t uid)
{
    if (epp_grow(&u->pairs, &u->pairs_cap, u->npairs, sizeof *u->pairs, 4096) != 0)
        return EPP_ENOMEM;
    u->pairs[u->npairs++] = (epp_users_pair_t){.minute = minute, .uid = uid};
    return 0;
}

/* Collects the batch's uids: for the hour and day levels those not known, per bucket; for the
 * minute level every (minute, uid) pair (it keeps no known uids: a user rarely has two events
 * in one minute of two batches, so they would save little and cost the most memory). */
static int collect(consumer_users_t *u, const consumer_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const consumer_row_t *r = &b->rows[i];
        if (r->state != CONSUMER_ROW_OK || !r->inserted)
            continue;
        int64_t uid = b->users[r->uix].uid;
        if (uid < 0 || uid > EPP_USERS_MAX_UID)
            return EPP_EINVAL;
        if (add_pair(u, epp_users_bucket(EPP_USERS_MINUTE, r->timestamp_us), (uint32_t)uid) != 0)
            return EPP_ENOMEM;
        for (int level = EPP_USERS_HOUR; level < EPP_USERS_LEVELS; level++) {
            entry_t *e = get_entry(u, level, epp_users_bucket(level, r->timestamp_us));
            if (e == NULL)
                return EPP_ENOMEM;
            e->touched = u->writes;
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

/* The minute level: per hour of the pairs, one packed row appended (epp_users_append_minutes,
 * straight from the sorted pairs), or, once the lane appended merge_after rows to the hour, a
 * merge of its minutes. */
static int write_minutes(consumer_users_t *u, PGconn *conn, epp_pg_error_t *pe)
{
    epp_users_pair_t *pairs = u->pairs;
    epp_users_sort_pairs(pairs, u->npairs);
    size_t kept = 0, m = 0;
    int rc = 0;
    for (size_t i = 0, j; i < u->npairs && rc == 0; i = j) {
        int64_t hour = epp_users_row_bucket(EPP_USERS_MINUTE, pairs[i].minute);
        for (j = i;
             j < u->npairs && epp_users_row_bucket(EPP_USERS_MINUTE, pairs[j].minute) == hour;)
            j++;
        entry_t *e = get_entry(u, EPP_USERS_MINUTE, hour);
        pending_t *p = e != NULL ? get_pending(u, e) : NULL;
        if (p == NULL)
            return fail(pe, EPP_ENOMEM, "out of memory");
        e->touched = u->writes;
        p->merge = e->appends + 1 >= consumer_users_merge_after(EPP_USERS_MINUTE);
        u->sent += j - i;
        if (!p->merge) { /* the appended hours' pairs move to the front, in order */
            memmove(pairs + kept, pairs + i, (j - i) * sizeof *pairs);
            kept += j - i;
            continue;
        }
        u->merged++;
        for (size_t k = i, l; k < j && rc == 0; k = l) {
            if ((rc = grow_scratch(u, m + 1)) != 0)
                break;
            roaring_bitmap_t *bits = roaring_bitmap_create();
            if (bits == NULL) {
                rc = EPP_ENOMEM;
                break;
            }
            for (l = k; l < j && pairs[l].minute == pairs[k].minute; l++)
                roaring_bitmap_add(bits, pairs[l].uid);
            u->buckets[m] = pairs[k].minute;
            u->bits[m++] = bits;
        }
    }
    if (rc != 0)
        rc = fail(pe, EPP_ENOMEM, "out of memory");
    if (rc == 0)
        rc = epp_users_append_minutes(conn, pairs, kept, &u->sql, pe);
    if (rc == 0 && m > 0)
        rc = epp_users_merge(conn, EPP_USERS_MINUTE, u->buckets, u->bits, NULL, m, 1, &u->sql, pe);
    for (size_t k = 0; k < m; k++)
        epp_users_free(u->bits[k]);
    return rc;
}

int consumer_users_write(consumer_users_t *u, PGconn *conn, const consumer_batch_t *b,
                         epp_pg_error_t *pe)
{
    consumer_users_abandon(u);
    u->sent = u->merged = 0;
    u->npairs = 0;
    u->writes++;
    int rc = collect(u, b);
    if (rc == EPP_EINVAL)
        return fail(pe, rc, "a row's user has no valid uid");
    if (rc != 0 || grow_scratch(u, u->npending) != 0)
        return fail(pe, EPP_ENOMEM, "out of memory");
    rc = write_minutes(u, conn, pe);
    for (int level = EPP_USERS_HOUR; level < EPP_USERS_LEVELS && rc == 0; level++) {
        /* A bucket is appended to or merged, not both. */
        for (int merge = 0; merge < 2 && rc == 0; merge++) {
            size_t m = 0;
            for (size_t k = 0; k < u->npending; k++) {
                pending_t *p = &u->pending[k];
                if (p->level != level)
                    continue;
                const entry_t *e = &u->slots[slot_of(u->slots, u->cap, level, p->bucket)];
                if ((e->appends + 1 >= consumer_users_merge_after(level)) != merge)
                    continue;
                p->merge = merge;
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
        if (p->merge)
            e->appends = 0;
        else if (e->appends < UINT16_MAX)
            e->appends++;
        roaring_bitmap_t *add = p->merged != NULL ? p->merged : p->delta;
        if (add != NULL && u->budget > 0) {
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
