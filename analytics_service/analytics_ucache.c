/* The shared cache of user bitmap rows; see analytics_ucache.h. */
#include "analytics_ucache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_log.h"
#include "epp_uidcache.h"

struct analytics_uc_entry {
    int level;
    int64_t id, bucket, n;
    roaring_bitmap_t *bits; /* hour and day rows */
    unsigned char *packed;  /* minute rows, as stored */
    size_t len;             /* of packed */
    size_t bytes;
    uint64_t tick; /* last pinned */
    int refs;      /* requests that pinned it */
    int gone;      /* no longer valid for new pins: leaves the index at the next compaction */
    int indexed;   /* in c->e; an entry is freed once it is neither indexed nor pinned */
};

/* Bytes per dictionary pair in epp_uidcache (a 24-byte slot at most half full, and the key). */
#define UID_PAIR_BYTES 64

struct analytics_ucache {
    pthread_mutex_t mu;
    epp_uidcache_t *uids;     /* the dictionary's pairs read so far */
    analytics_uc_entry_t **e; /* sorted by (level, id) */
    size_t n, cap;
    size_t bytes, max_bytes;
    uint64_t tick, epoch;
    char gen[256];
    epp_series_t *hits, *misses, *evicted, *resets, *bytes_gauge, *entries_gauge;
};

static int cmp_key(int la, int64_t ia, int lb, int64_t ib)
{
    if (la != lb)
        return la < lb ? -1 : 1;
    return ia < ib ? -1 : ia > ib;
}

static int cmp_entry(const void *pa, const void *pb)
{
    const analytics_uc_entry_t *a = *(analytics_uc_entry_t *const *)pa;
    const analytics_uc_entry_t *b = *(analytics_uc_entry_t *const *)pb;
    return cmp_key(a->level, a->id, b->level, b->id);
}

/* Index of the first entry >= (level, id) in e[0..n). */
static size_t lower(analytics_uc_entry_t *const *e, size_t n, int level, int64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_key(e[mid]->level, e[mid]->id, level, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void entry_free(analytics_uc_entry_t *x)
{
    if (x != NULL) {
        if (x->bits != NULL) /* Debian's CRoaring does not take NULL */
            roaring_bitmap_free(x->bits);
        free(x->packed);
        free(x);
    }
}

static void gauges(analytics_ucache_t *c)
{
    epp_series_set(c->bytes_gauge,
                   (double)(c->bytes + epp_uidcache_size(c->uids) * UID_PAIR_BYTES));
    epp_series_set(c->entries_gauge, (double)c->n);
}

analytics_ucache_t *analytics_ucache_create(size_t max_bytes, epp_metrics_t *metrics)
{
    if (max_bytes == 0)
        return NULL;
    analytics_ucache_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->max_bytes = max_bytes;
    if (metrics) {
        epp_metric_t *rows =
            epp_metrics_counter(metrics, "epp_analytics_user_bitmap_rows_total",
                                "User bitmap rows (day, hour, and minute rows of the edges) an "
                                "answer used, by where they came from",
                                "source");
        epp_metric_t *ev = epp_metrics_counter(
            metrics, "epp_analytics_user_bitmap_cache_evictions_total",
            "Cached user bitmaps evicted to stay within USER_BITMAP_CACHE_MB", NULL);
        epp_metric_t *rs = epp_metrics_counter(
            metrics, "epp_analytics_user_bitmap_cache_resets_total",
            "Times the user bitmap cache was emptied (the database's generation changed)", NULL);
        epp_metric_t *by = epp_metrics_gauge(
            metrics, "epp_analytics_user_bitmap_cache_bytes",
            "Bytes of user bitmap rows cached (decoded, or packed minute rows)", NULL);
        epp_metric_t *en = epp_metrics_gauge(metrics, "epp_analytics_user_bitmap_cache_entries",
                                             "User bitmaps cached", NULL);
        c->hits = rows ? epp_metric_series(rows, "cache") : NULL;
        c->misses = rows ? epp_metric_series(rows, "database") : NULL;
        c->evicted = ev ? epp_metric_default(ev) : NULL;
        c->resets = rs ? epp_metric_default(rs) : NULL;
        c->bytes_gauge = by ? epp_metric_default(by) : NULL;
        c->entries_gauge = en ? epp_metric_default(en) : NULL;
    }
    return c;
}

static void clear_locked(analytics_ucache_t *c)
{
    epp_uidcache_destroy(c->uids);
    c->uids = NULL;
    for (size_t i = 0; i < c->n; i++) {
        analytics_uc_entry_t *x = c->e[i];
        x->gone = 1;
        x->indexed = 0;
        if (x->refs == 0)
            entry_free(x);
    }
    c->n = 0;
    c->bytes = 0;
    c->epoch++;
}

void analytics_ucache_destroy(analytics_ucache_t *c)
{
    if (c == NULL)
        return;
    clear_locked(c);
    free(c->e);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void analytics_ucache_reset(analytics_ucache_t *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    clear_locked(c);
    c->gen[0] = '\0';
    epp_series_inc(c->resets);
    gauges(c);
    pthread_mutex_unlock(&c->mu);
}

int analytics_ucache_pin(analytics_ucache_t *c, analytics_uc_req_t *r, analytics_uc_level_t level,
                         int64_t lo, int64_t hi)
{
    if (c == NULL || lo >= hi)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (!r->started) {
        r->started = 1;
        r->epoch = c->epoch;
    }
    size_t first = lower(c->e, c->n, (int)level, INT64_MIN), want = 0;
    for (size_t i = first; i < c->n && c->e[i]->level == (int)level; i++)
        want += c->e[i]->bucket >= lo && c->e[i]->bucket < hi;
    if (want > 0) {
        analytics_uc_entry_t **p =
            realloc(r->pins, (r->npins + want) * sizeof(analytics_uc_entry_t *));
        unsigned char *u = p ? realloc(r->used, r->npins + want) : NULL;
        if (p)
            r->pins = p;
        if (u)
            r->used = u;
        if (p == NULL || u == NULL)
            rc = EPP_ENOMEM;
    }
    c->tick++;
    for (size_t i = first; rc == 0 && i < c->n && c->e[i]->level == (int)level; i++) {
        analytics_uc_entry_t *x = c->e[i];
        if (x->bucket >= lo && x->bucket < hi) {
            x->refs++;
            x->tick = c->tick;
            r->used[r->npins] = 0;
            r->pins[r->npins++] = x;
        }
    }
    pthread_mutex_unlock(&c->mu);
    /* Spans of one level are pinned in increasing order of bucket, not of id: keep the pins
     * sorted for analytics_ucache_get (used[] is still all 0 here). */
    if (rc == 0 && want > 0)
        qsort(r->pins, r->npins, sizeof(analytics_uc_entry_t *), cmp_entry);
    return rc;
}

int analytics_ucache_ids(const analytics_uc_req_t *r, analytics_uc_level_t level, epp_buf_t *out)
{
    epp_buf_reset(out);
    int rc = epp_buf_append_char(out, '{');
    int first = 1;
    for (size_t i = 0; i < r->npins && rc == 0; i++)
        if (r->pins[i]->level == (int)level) {
            rc = epp_buf_printf(out, "%s%lld", first ? "" : ",", (long long)r->pins[i]->id);
            first = 0;
        }
    if (rc == 0)
        rc = epp_buf_append_char(out, '}');
    return rc < 0 ? EPP_ENOMEM : 0;
}

int analytics_ucache_check(analytics_ucache_t *c, analytics_uc_req_t *r, const char *gen)
{
    if (c == NULL)
        return 1;
    int ok = 1;
    pthread_mutex_lock(&c->mu);
    if (strcmp(c->gen, gen) != 0) {
        if (c->gen[0] != '\0' || c->n > 0) {
            clear_locked(c);
            epp_series_inc(c->resets);
            gauges(c);
            EPP_LOGKV(EPP_LOG_INFO, "user bitmap cache emptied", "reason",
                      "the tables' generation changed (a restart, TRUNCATE or new tables)");
        }
        snprintf(c->gen, sizeof c->gen, "%s", gen);
        /* Entries decoded under the old generation must not be inserted under the new one. */
        c->epoch++;
    }
    if (r->epoch != c->epoch) {
        /* The cache was emptied since r pinned (here, or by another request that saw a new
         * generation first): r's pins may be of another incarnation of the tables. */
        ok = r->npins == 0;
        r->epoch = c->epoch;
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* r's pin of row (level, id) if its cardinality is n, marked as used; else NULL. */
static const analytics_uc_entry_t *pinned(analytics_uc_req_t *r, analytics_uc_level_t level,
                                          int64_t id, int64_t n)
{
    size_t i = lower(r->pins, r->npins, (int)level, id);
    if (i >= r->npins || r->pins[i]->level != (int)level || r->pins[i]->id != id ||
        r->pins[i]->n != n)
        return NULL;
    r->used[i] = 1;
    return r->pins[i];
}

const roaring_bitmap_t *analytics_ucache_get(analytics_uc_req_t *r, analytics_uc_level_t level,
                                             int64_t id, int64_t n)
{
    const analytics_uc_entry_t *x = pinned(r, level, id, n);
    return x != NULL ? x->bits : NULL;
}

const unsigned char *analytics_ucache_get_packed(analytics_uc_req_t *r, int64_t id, int64_t n,
                                                 size_t *len)
{
    const analytics_uc_entry_t *x = pinned(r, ANALYTICS_UC_MINUTE, id, n);
    *len = x != NULL ? x->len : 0;
    return x != NULL ? x->packed : NULL;
}

/* Appends x (whose payload the cache owns from here on) to r's fresh entries. */
static int add_fresh(analytics_uc_req_t *r, analytics_uc_entry_t *x)
{
    if (r->nfresh == r->capfresh) {
        size_t cap = r->capfresh ? 2 * r->capfresh : 32;
        analytics_uc_entry_t **f = realloc(r->fresh, cap * sizeof(analytics_uc_entry_t *));
        if (f == NULL) {
            entry_free(x);
            return EPP_ENOMEM;
        }
        r->fresh = f;
        r->capfresh = cap;
    }
    r->fresh[r->nfresh++] = x;
    return 0;
}

int analytics_ucache_add(analytics_ucache_t *c, analytics_uc_req_t *r, analytics_uc_level_t level,
                         int64_t id, int64_t bucket, int64_t n, roaring_bitmap_t *bits)
{
    analytics_uc_entry_t *x = c != NULL ? calloc(1, sizeof *x) : NULL;
    if (x == NULL) {
        roaring_bitmap_free(bits);
        return c == NULL ? 0 : EPP_ENOMEM;
    }
    /* Read-only from here on, by several threads at once: shrink it once, now. */
    roaring_bitmap_shrink_to_fit(bits);
    *x = (analytics_uc_entry_t){.level = (int)level,
                                .id = id,
                                .bucket = bucket,
                                .n = n,
                                .bits = bits,
                                .bytes = roaring_bitmap_size_in_bytes(bits) + 64};
    return add_fresh(r, x);
}

int analytics_ucache_add_packed(analytics_ucache_t *c, analytics_uc_req_t *r, int64_t id,
                                int64_t bucket, int64_t n, const void *data, size_t len)
{
    if (c == NULL)
        return 0;
    analytics_uc_entry_t *x = calloc(1, sizeof *x);
    unsigned char *copy = x != NULL ? malloc(len ? len : 1) : NULL;
    if (copy == NULL) {
        free(x);
        return EPP_ENOMEM;
    }
    memcpy(copy, data, len);
    *x = (analytics_uc_entry_t){.level = ANALYTICS_UC_MINUTE,
                                .id = id,
                                .bucket = bucket,
                                .n = n,
                                .packed = copy,
                                .len = len,
                                .bytes = len + 64};
    return add_fresh(r, x);
}

/* Inserts x in order unless (level, id) is already there. 1: inserted. */
static int insert_locked(analytics_ucache_t *c, analytics_uc_entry_t *x)
{
    size_t i = lower(c->e, c->n, x->level, x->id);
    if (i < c->n && c->e[i]->level == x->level && c->e[i]->id == x->id)
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        analytics_uc_entry_t **e = realloc(c->e, cap * sizeof(analytics_uc_entry_t *));
        if (e == NULL)
            return 0;
        c->e = e;
        c->cap = cap;
    }
    memmove(c->e + i + 1, c->e + i, (c->n - i) * sizeof(analytics_uc_entry_t *));
    c->e[i] = x;
    x->indexed = 1;
    c->n++;
    c->bytes += x->bytes;
    x->tick = c->tick;
    return 1;
}

static int cmp_tick(const void *pa, const void *pb)
{
    const analytics_uc_entry_t *a = *(analytics_uc_entry_t *const *)pa;
    const analytics_uc_entry_t *b = *(analytics_uc_entry_t *const *)pb;
    return a->tick < b->tick ? -1 : a->tick > b->tick;
}

/* Takes the entries marked gone out of the index (their bytes are already subtracted); frees
 * those no request holds. */
static void compact_locked(analytics_ucache_t *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        analytics_uc_entry_t *x = c->e[i];
        if (x->gone) {
            x->indexed = 0;
            if (x->refs == 0)
                entry_free(x);
        } else {
            c->e[k++] = x;
        }
    }
    c->n = k;
}

/* Evicts the least recently pinned unpinned entries until the cache is within 90% of its
 * budget (so that one insert over it does not evict at every request). */
static void evict_locked(analytics_ucache_t *c)
{
    if (c->bytes <= c->max_bytes)
        return;
    analytics_uc_entry_t **v = malloc((c->n ? c->n : 1) * sizeof(analytics_uc_entry_t *));
    if (v == NULL)
        return;
    size_t m = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i]->refs == 0)
            v[m++] = c->e[i];
    qsort(v, m, sizeof(analytics_uc_entry_t *), cmp_tick);
    size_t target = c->max_bytes / 10 * 9;
    for (size_t i = 0; i < m && c->bytes > target; i++) {
        c->bytes -= v[i]->bytes;
        v[i]->gone = 1;
        epp_series_inc(c->evicted);
    }
    free(v);
    compact_locked(c);
}

void analytics_ucache_release(analytics_ucache_t *c, analytics_uc_req_t *r, int ok)
{
    if (c != NULL) {
        pthread_mutex_lock(&c->mu);
        size_t used = 0, dead = 0;
        for (size_t i = 0; i < r->npins; i++) {
            analytics_uc_entry_t *x = r->pins[i];
            used += r->used[i];
            /* Pinned because its bucket lies in the range, yet the snapshot had no such row:
             * merged or deleted, and its id never comes back. (A row inserted after this
             * snapshot by a writer lands here too: dropping it early costs one decode.) */
            if (ok && !r->used[i] && !x->gone) {
                x->gone = 1;
                c->bytes -= x->bytes;
                dead++;
            }
            if (--x->refs == 0 && !x->indexed)
                entry_free(x); /* left the index while this request held it */
        }
        if (dead > 0)
            compact_locked(c);
        for (size_t i = 0; i < r->nfresh; i++) {
            analytics_uc_entry_t *x = r->fresh[i];
            if (!(ok && r->epoch == c->epoch && insert_locked(c, x)))
                entry_free(x);
        }
        epp_series_add(c->hits, (double)used);
        epp_series_add(c->misses, (double)r->nfresh);
        evict_locked(c);
        gauges(c);
        pthread_mutex_unlock(&c->mu);
    } else {
        for (size_t i = 0; i < r->nfresh; i++)
            entry_free(r->fresh[i]);
    }
    free(r->pins);
    free(r->used);
    free(r->fresh);
    memset(r, 0, sizeof *r);
}

int analytics_ucache_uids(analytics_ucache_t *c, const analytics_uc_req_t *r,
                          analytics_uc_user_t *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        u[i].uid = -1;
    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->mu);
    int rc = r->epoch == c->epoch ? 0 : EPP_EAGAIN;
    for (size_t i = 0; i < n && rc == 0 && c->uids != NULL; i++)
        u[i].uid = epp_uidcache_get(c->uids, u[i].name, (size_t)u[i].len);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void analytics_ucache_put_uids(analytics_ucache_t *c, const analytics_uc_req_t *r,
                               const analytics_uc_user_t *u, size_t n)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    /* A quarter of the budget for the dictionary (emptied when full: epp_uidcache). */
    size_t max = c->max_bytes / 4 / UID_PAIR_BYTES;
    if (r->epoch == c->epoch && c->uids == NULL)
        c->uids = epp_uidcache_create(max ? max : 1);
    for (size_t i = 0; i < n && r->epoch == c->epoch && c->uids != NULL; i++)
        if (u[i].uid >= 0 && u[i].uid <= UINT32_MAX &&
            epp_uidcache_put(c->uids, u[i].name, (size_t)u[i].len, u[i].uid) != 0)
            break;
    pthread_mutex_unlock(&c->mu);
}
