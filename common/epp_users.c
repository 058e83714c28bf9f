#include "epp_users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_pgcopy.h"
#include "epp_time.h"

#define OID_TEXT_ARRAY 1009

static int fail(epp_pg_error_t *pe, int code, const char *message)
{
    snprintf(pe->message, sizeof pe->message, "%s", message);
    pe->sqlstate[0] = '\0';
    pe->context[0] = '\0';
    return pe->code = code;
}

/* Known users: (index into the array parameter, 1-based; uid, NULL when unknown). One index
 * probe per name, whatever the planner thinks of the table's size: as a join, a dictionary
 * that grew since it was last analyzed was read whole by a hash join on every batch. */
static const char select_sql[] =
    "SELECT u.i, (SELECT d.uid FROM public.epp_user_ids d WHERE d.user_id = u.name)"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(name, i)";

/* Missing users, inserted in byte order; a user another transaction inserted meanwhile is
 * skipped here (after waiting for that transaction) and read by the next select. */
static const char insert_sql[] =
    "WITH u AS (SELECT name, i FROM unnest($1::text[]) WITH ORDINALITY AS u(name, i)),"
    " ins AS (INSERT INTO public.epp_user_ids (user_id)"
    " SELECT name FROM u ORDER BY name COLLATE \"C\""
    " ON CONFLICT (user_id) DO NOTHING RETURNING user_id, uid)"
    " SELECT u.i, ins.uid FROM ins JOIN u ON u.name = ins.user_id";

/* Runs sql with the names of idx[0..m) as the text[] parameter and stores the uids it returns
 * through idx. */
static int run(PGconn *conn, const char *sql, const char *const *names, const uint32_t *lens,
               const size_t *idx, size_t m, int64_t *uids, epp_buf_t *arr, epp_pg_error_t *pe)
{
    epp_buf_reset(arr);
    int rc = epp_pgcopy_array_header(arr, EPP_PG_OID_TEXT, m);
    for (size_t k = 0; k < m && rc == 0; k++)
        rc = epp_pgcopy_array_elem(arr, names[idx[k]], lens[idx[k]]);
    if (rc != 0)
        return fail(pe, rc, "out of memory");
    static const Oid types[1] = {OID_TEXT_ARRAY};
    const char *values[1] = {arr->data};
    int lengths[1] = {(int)arr->len};
    static const int formats[1] = {1};
    PGresult *res = PQexecParams(conn, sql, 1, types, values, lengths, formats, 1);
    rc = epp_pg_result_error(conn, res, pe);
    for (int r = 0; rc == 0 && r < PQntuples(res); r++) {
        if (PQgetlength(res, r, 0) != 8 || PQgetlength(res, r, 1) != 8)
            continue;
        uint64_t i = epp_pgcopy_get_be64((const unsigned char *)PQgetvalue(res, r, 0));
        uint64_t uid = epp_pgcopy_get_be64((const unsigned char *)PQgetvalue(res, r, 1));
        if (i >= 1 && i <= m)
            uids[idx[i - 1]] = (int64_t)uid;
    }
    PQclear(res);
    return rc;
}

/* Keeps in idx[0..*m) the entries whose uid is still unknown. */
static void still_missing(const int64_t *uids, size_t *idx, size_t *m)
{
    size_t k = 0;
    for (size_t j = 0; j < *m; j++)
        if (uids[idx[j]] < 0)
            idx[k++] = idx[j];
    *m = k;
}

int epp_users_resolve(PGconn *conn, const char *const *names, const uint32_t *lens, size_t n,
                      int64_t *uids, epp_pg_error_t *pe)
{
    if (n == 0)
        return 0;
    size_t *idx = malloc(n * sizeof *idx);
    if (idx == NULL)
        return fail(pe, EPP_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        idx[i] = i;
        uids[i] = -1;
    }
    epp_buf_t arr = {0};
    size_t m = n;
    int rc = run(conn, select_sql, names, lens, idx, m, uids, &arr, pe);
    /* Each round inserts what is missing, then reads what a concurrent transaction inserted
     * first. A user is missing after a round only when that transaction rolled back after
     * ours had looked; the next round inserts it. */
    for (int round = 0; rc == 0 && round < 4; round++) {
        still_missing(uids, idx, &m);
        if (m == 0)
            break;
        rc = run(conn, insert_sql, names, lens, idx, m, uids, &arr, pe);
        if (rc == 0) {
            still_missing(uids, idx, &m);
            if (m > 0)
                rc = run(conn, select_sql, names, lens, idx, m, uids, &arr, pe);
        }
    }
    if (rc == 0) {
        still_missing(uids, idx, &m);
        if (m > 0)
            rc = fail(pe, EPP_EAGAIN, "user ids still unresolved after concurrent inserts");
    }
    epp_buf_free(&arr);
    free(idx);
    return rc;
}

/* ---- per-bucket user bitmaps ---------------------------------------------------------------- */

static const char *const bitmap_tables[EPP_USERS_LEVELS] = {
    "public.epp_user_bitmap_minute", "public.epp_user_bitmap_hour", "public.epp_user_bitmap_day"};
static const int64_t widths[EPP_USERS_LEVELS] = {60LL * 1000000, 3600LL * 1000000,
                                                 86400LL * 1000000};

int64_t epp_users_width(epp_users_level_t level)
{
    return widths[level];
}

int64_t epp_users_bucket(epp_users_level_t level, int64_t ts_us)
{
    return epp_time_floor(ts_us, widths[level]);
}

int epp_users_serialize(roaring_bitmap_t *r, epp_buf_t *out)
{
    epp_buf_reset(out);
    roaring_bitmap_remove_run_compression(r);
    size_t sz = roaring_bitmap_portable_size_in_bytes(r);
    if (epp_buf_reserve(out, sz) != 0)
        return EPP_ENOMEM;
    out->len = roaring_bitmap_portable_serialize(r, out->data);
    out->data[out->len] = '\0';
    return 0;
}

roaring_bitmap_t *epp_users_deserialize(const char *data, size_t len)
{
    /* The size check first: it walks the header within len, and only a buffer whose computed
     * size is exactly len is parsed. */
    if (data == NULL || len < 8 || roaring_bitmap_portable_deserialize_size(data, len) != len)
        return NULL;
    return roaring_bitmap_portable_deserialize_safe(data, len);
}

void epp_users_free(roaring_bitmap_t *r)
{
    if (r != NULL)
        roaring_bitmap_free(r);
}

void epp_users_scratch_free(epp_users_scratch_t *s)
{
    for (int i = 0; i < 3; i++)
        epp_buf_free(&s->arr[i]);
    epp_buf_free(&s->one);
    epp_buf_free(&s->packed);
}

static int put_ts(epp_buf_t *arr, int64_t us)
{
    unsigned char b[8];
    epp_pgcopy_put_be64(b, (uint64_t)(us - EPP_PGCOPY_PG_EPOCH_US));
    return epp_pgcopy_array_elem(arr, b, 8);
}

static int put_i64(epp_buf_t *arr, int64_t v)
{
    unsigned char b[8];
    epp_pgcopy_put_be64(b, (uint64_t)v);
    return epp_pgcopy_array_elem(arr, b, 8);
}

/* Runs sql with the nparams binary arrays of s->arr; *out (may be NULL) gets the binary
 * result. */
static int exec_arrays(PGconn *conn, const char *sql, int nparams, const Oid *types,
                       epp_users_scratch_t *s, PGresult **out, epp_pg_error_t *pe)
{
    const char *values[3];
    int lengths[3];
    static const int formats[3] = {1, 1, 1};
    for (int i = 0; i < nparams; i++) {
        values[i] = s->arr[i].data;
        lengths[i] = (int)s->arr[i].len;
    }
    PGresult *res = PQexecParams(conn, sql, nparams, types, values, lengths, formats, 1);
    int rc = epp_pg_result_error(conn, res, pe);
    if (rc == 0 && out != NULL)
        *out = res;
    else
        PQclear(res);
    return rc;
}

/* ---- the minute level's packed rows (sql/032) ---- */

static const char pack_magic[4] = {'E', 'P', 'M', '1'};

static void put_le32(unsigned char *b, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        b[k] = (unsigned char)(v >> (8 * k));
}

static uint64_t get_le(const char *data, int nbytes)
{
    uint64_t v = 0;
    for (int k = 0; k < nbytes; k++)
        v |= (uint64_t)(unsigned char)data[k] << (8 * k);
    return v;
}

int64_t epp_users_row_bucket(epp_users_level_t level, int64_t bucket)
{
    return level == EPP_USERS_MINUTE ? epp_time_floor(bucket, widths[EPP_USERS_HOUR]) : bucket;
}

/* Starts a packed row in out: the magic and the mask of the minutes it holds. */
static int pack_head(epp_buf_t *out, uint64_t mask)
{
    unsigned char head[12];
    memcpy(head, pack_magic, 4);
    put_le32(head + 4, (uint32_t)mask);
    put_le32(head + 8, (uint32_t)(mask >> 32));
    epp_buf_reset(out);
    return epp_buf_append(out, head, sizeof head);
}

int epp_users_pack_minutes(roaring_bitmap_t *const *minutes, epp_buf_t *out, epp_buf_t *one,
                           int64_t *pairs)
{
    *pairs = 0;
    uint64_t mask = 0;
    for (int k = 0; k < EPP_USERS_MINUTES; k++)
        if (minutes[k] != NULL && !roaring_bitmap_is_empty(minutes[k]))
            mask |= (uint64_t)1 << k;
    int rc = pack_head(out, mask);
    for (int k = 0; k < EPP_USERS_MINUTES && rc == 0; k++) {
        if (!(mask >> k & 1))
            continue;
        *pairs += (int64_t)roaring_bitmap_get_cardinality(minutes[k]);
        unsigned char len[4];
        rc = epp_users_serialize(minutes[k], one);
        if (rc == 0) {
            put_le32(len, (uint32_t)one->len);
            rc = epp_buf_append(out, len, 4);
        }
        if (rc == 0)
            rc = epp_buf_append(out, one->data, one->len);
    }
    return rc != 0 ? EPP_ENOMEM : 0;
}

/* Values an array container holds at most; a container with more is a bitset of 8 KiB. */
#define ARRAY_MAX 4096

/* The values v[from..) sharing v[from]'s 16-bit key: the index past them. */
static size_t container_end(const uint32_t *v, size_t n, size_t from)
{
    size_t j = from + 1;
    while (j < n && v[j] >> 16 == v[from] >> 16)
        j++;
    return j;
}

/* Appends to out the stored format of the distinct ascending uids v[0..n), n > 0 -- the bytes
 * epp_users_serialize writes for their bitmap, without building one. CRoaring's portable
 * format without run containers: the cookie 12346 and the container count; per container its
 * 16-bit key and cardinality - 1; per container its offset from the start; the containers, each
 * an array of its values' low 16 bits (up to 4,096) or a bitset of 8 KiB; all little-endian.
 * 0 or EPP_ENOMEM. */
static int serialize_sorted(const uint32_t *v, size_t n, epp_buf_t *out)
{
    size_t nc = 0, size = 8;
    for (size_t i = 0, j; i < n; i = j, nc++) {
        j = container_end(v, n, i);
        size += 8 + (j - i > ARRAY_MAX ? 8192 : 2 * (j - i));
    }
    if (epp_buf_reserve(out, size) != 0)
        return EPP_ENOMEM;
    unsigned char *p = (unsigned char *)out->data + out->len;
    memset(p, 0, size);
    put_le32(p, 12346);
    put_le32(p + 4, (uint32_t)nc);
    size_t off = 8 + 8 * nc;
    for (size_t i = 0, j, c = 0; i < n; i = j, c++) {
        j = container_end(v, n, i);
        put_le32(p + 8 + 4 * c, (v[i] >> 16) | (uint32_t)(j - i - 1) << 16);
        put_le32(p + 8 + 4 * nc + 4 * c, (uint32_t)off);
        for (size_t k = i; k < j; k++) {
            unsigned low = v[k] & 0xffff;
            if (j - i > ARRAY_MAX) {
                p[off + low / 8] |= (unsigned char)(1u << (low % 8));
            } else {
                p[off + 2 * (k - i)] = (unsigned char)low;
                p[off + 2 * (k - i) + 1] = (unsigned char)(low >> 8);
            }
        }
        off += j - i > ARRAY_MAX ? 8192 : 2 * (j - i);
    }
    out->len += size;
    out->data[out->len] = '\0';
    return 0;
}

static int cmp_pair(const void *a, const void *b)
{
    const epp_users_pair_t *x = a, *y = b;
    if (x->minute != y->minute)
        return (x->minute > y->minute) - (x->minute < y->minute);
    return (x->uid > y->uid) - (x->uid < y->uid);
}

void epp_users_sort_pairs(epp_users_pair_t *pairs, size_t n)
{
    qsort(pairs, n, sizeof *pairs, cmp_pair);
}

int epp_users_pack_pairs(const epp_users_pair_t *p, size_t n, epp_buf_t *out, epp_buf_t *one,
                         int64_t *distinct)
{
    int64_t hour = n > 0 ? epp_users_row_bucket(EPP_USERS_MINUTE, p[0].minute) : 0;
    uint64_t mask = 0;
    for (size_t i = 0; i < n; i++)
        mask |= (uint64_t)1 << ((p[i].minute - hour) / widths[EPP_USERS_MINUTE]);
    *distinct = 0;
    int rc = pack_head(out, mask);
    for (size_t i = 0, j; i < n && rc == 0; i = j) {
        /* The minute's distinct uids, ascending, in one (malloc'd: aligned for them). */
        epp_buf_reset(one);
        if (epp_buf_reserve(one, (n - i) * sizeof(uint32_t)) != 0)
            return EPP_ENOMEM;
        uint32_t *v = (uint32_t *)(void *)one->data;
        size_t m = 0;
        for (j = i; j < n && p[j].minute == p[i].minute; j++)
            if (m == 0 || v[m - 1] != p[j].uid)
                v[m++] = p[j].uid;
        *distinct += (int64_t)m;
        size_t at = out->len;
        rc = epp_buf_append(out, "\0\0\0\0", 4);
        if (rc == 0)
            rc = serialize_sorted(v, m, out);
        if (rc == 0)
            put_le32((unsigned char *)out->data + at, (uint32_t)(out->len - at - 4));
    }
    return rc != 0 ? EPP_ENOMEM : 0;
}

void epp_users_free_minutes(roaring_bitmap_t **minutes)
{
    for (int k = 0; k < EPP_USERS_MINUTES; k++) {
        epp_users_free(minutes[k]);
        minutes[k] = NULL;
    }
}

int epp_users_unpack_minutes(const char *data, size_t len, uint64_t want,
                             roaring_bitmap_t **minutes)
{
    memset(minutes, 0, EPP_USERS_MINUTES * sizeof(roaring_bitmap_t *));
    if (data == NULL || len < 12 || memcmp(data, pack_magic, 4) != 0)
        return EPP_EINVAL;
    uint64_t mask = get_le(data + 4, 8);
    if (mask == 0 || mask >> EPP_USERS_MINUTES != 0)
        return EPP_EINVAL;
    size_t off = 12;
    for (int k = 0; k < EPP_USERS_MINUTES; k++) {
        if (!(mask >> k & 1))
            continue;
        if (len - off < 4)
            goto bad;
        size_t l = (size_t)get_le(data + off, 4);
        off += 4;
        if (l > len - off)
            goto bad;
        if (want >> k & 1) {
            minutes[k] = epp_users_deserialize(data + off, l);
            if (minutes[k] == NULL || roaring_bitmap_is_empty(minutes[k]))
                goto bad;
        } else if (l < 8 || roaring_bitmap_portable_deserialize_size(data + off, l) != l) {
            goto bad;
        }
        off += l;
    }
    if (off == len)
        return 0;
bad:
    epp_users_free_minutes(minutes);
    return EPP_EINVAL;
}

/* ---- appending and merging rows ---- */

/* The rows of one INSERT, gathered in s->arr (the element counts are patched in at the end). */
typedef struct {
    epp_users_scratch_t *s;
    size_t m;
} rows_t;

static int rows_begin(rows_t *w, epp_users_scratch_t *s)
{
    w->s = s;
    w->m = 0;
    static const uint32_t oids[3] = {EPP_PG_OID_TIMESTAMPTZ, EPP_PG_OID_INT8, EPP_PG_OID_BYTEA};
    int rc = 0;
    for (int k = 0; k < 3 && rc == 0; k++) {
        epp_buf_reset(&s->arr[k]);
        rc = epp_pgcopy_array_header(&s->arr[k], oids[k], 0);
    }
    return rc;
}

static int rows_add(rows_t *w, int64_t bucket, int64_t n, const char *bits, size_t len)
{
    int rc = put_ts(&w->s->arr[0], bucket);
    if (rc == 0)
        rc = put_i64(&w->s->arr[1], n);
    if (rc == 0)
        rc = epp_pgcopy_array_elem(&w->s->arr[2], bits, len);
    w->m += rc == 0;
    return rc;
}

/* Adds one row of a level: bits (a bucket's bitmap, or an hour's minute bitmaps packed), when
 * not empty. */
static int rows_add_bitmap(rows_t *w, int64_t bucket, roaring_bitmap_t *bits)
{
    if (roaring_bitmap_is_empty(bits))
        return 0;
    int rc = epp_users_serialize(bits, &w->s->one);
    return rc == 0 ? rows_add(w, bucket, (int64_t)roaring_bitmap_get_cardinality(bits),
                              w->s->one.data, w->s->one.len)
                   : rc;
}

static int rows_add_minutes(rows_t *w, int64_t hour, roaring_bitmap_t *const *minutes)
{
    int64_t pairs;
    int rc = epp_users_pack_minutes(minutes, &w->s->packed, &w->s->one, &pairs);
    if (rc != 0 || pairs == 0)
        return rc;
    return rows_add(w, hour, pairs, w->s->packed.data, w->s->packed.len);
}

static int rows_insert(PGconn *conn, epp_users_level_t level, rows_t *w, epp_pg_error_t *pe)
{
    if (w->m == 0)
        return 0;
    for (int k = 0; k < 3; k++)
        epp_pgcopy_put_be32((unsigned char *)w->s->arr[k].data + 12, (uint32_t)w->m);
    char sql[192];
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (bucket, n, bits)"
             " SELECT * FROM unnest($1::timestamptz[], $2::int8[], $3::bytea[])",
             bitmap_tables[level]);
    static const Oid types[3] = {1185, 1016, 1001}; /* timestamptz[], int8[], bytea[] */
    return exec_arrays(conn, sql, 3, types, w->s, NULL, pe);
}

typedef struct {
    int64_t bucket;
    size_t i;
} bucket_ix_t;

static int cmp_bucket(const void *a, const void *b)
{
    const bucket_ix_t *x = a, *y = b;
    if (x->bucket != y->bucket)
        return (x->bucket > y->bucket) - (x->bucket < y->bucket);
    return (x->i > y->i) - (x->i < y->i);
}

/* buckets[0..n) with their indices, sorted by bucket (NULL when out of memory). */
static bucket_ix_t *sorted(const int64_t *buckets, size_t n)
{
    bucket_ix_t *order = malloc((n ? n : 1) * sizeof *order);
    if (order == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        order[i] = (bucket_ix_t){buckets[i], i};
    qsort(order, n, sizeof *order, cmp_bucket);
    return order;
}

/* Index (into the caller's arrays) of bucket in order[0..n), sorted by bucket; or -1. */
static long find_bucket(const bucket_ix_t *order, size_t n, int64_t bucket)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (order[mid].bucket < bucket)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && order[lo].bucket == bucket ? (long)order[lo].i : -1;
}

int epp_users_append(PGconn *conn, epp_users_level_t level, const int64_t *buckets,
                     roaring_bitmap_t *const *bits, size_t n, epp_users_scratch_t *s,
                     epp_pg_error_t *pe)
{
    if (level == EPP_USERS_MINUTE)
        return fail(pe, EPP_EINVAL, "the minute level is appended from pairs");
    rows_t w;
    int rc = rows_begin(&w, s);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = rows_add_bitmap(&w, buckets[i], bits[i]);
    if (rc != 0)
        return fail(pe, rc, "out of memory");
    return rows_insert(conn, level, &w, pe);
}

int epp_users_append_minutes(PGconn *conn, const epp_users_pair_t *pairs, size_t n,
                             epp_users_scratch_t *s, epp_pg_error_t *pe)
{
    rows_t w;
    int rc = rows_begin(&w, s);
    for (size_t i = 0, j; i < n && rc == 0; i = j) {
        int64_t hour = epp_users_row_bucket(EPP_USERS_MINUTE, pairs[i].minute), distinct;
        for (j = i; j < n && epp_users_row_bucket(EPP_USERS_MINUTE, pairs[j].minute) == hour;)
            j++;
        rc = epp_users_pack_pairs(pairs + i, j - i, &s->packed, &s->one, &distinct);
        if (rc == 0)
            rc = rows_add(&w, hour, distinct, s->packed.data, s->packed.len);
    }
    if (rc != 0)
        return fail(pe, rc, "out of memory");
    return rows_insert(conn, EPP_USERS_MINUTE, &w, pe);
}

/* Row buckets one merge statement reads at most. */
#define MERGE_ROWS ((size_t)16)

/* What a merge gathers from the rows it read. */
typedef struct {
    epp_users_level_t level;
    const bucket_ix_t *order; /* the caller's buckets, sorted */
    size_t n;
    const int64_t *keys; /* the row buckets read, sorted, distinct */
    size_t nkeys;
    roaring_bitmap_t **merged;
    roaring_bitmap_t **extra; /* minute level: [key * 60 + minute], minutes not asked for */
} gather_t;

/* One stored row (bucket b, its bits) OR-ed into what g gathers. */
static int gather_row(gather_t *g, int64_t b, const char *data, size_t len)
{
    if (g->level != EPP_USERS_MINUTE) {
        long i = find_bucket(g->order, g->n, b);
        roaring_bitmap_t *bits = epp_users_deserialize(data, len);
        if (i < 0 || bits == NULL) {
            epp_users_free(bits);
            return EPP_EINVAL;
        }
        roaring_bitmap_or_inplace(g->merged[i], bits);
        roaring_bitmap_free(bits);
        return 0;
    }
    size_t lo = 0, hi = g->nkeys;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->keys[mid] < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    roaring_bitmap_t *minutes[EPP_USERS_MINUTES];
    if (lo == g->nkeys || g->keys[lo] != b ||
        epp_users_unpack_minutes(data, len, ~(uint64_t)0, minutes) != 0)
        return EPP_EINVAL;
    int rc = 0;
    for (int m = 0; m < EPP_USERS_MINUTES && rc == 0; m++) {
        if (minutes[m] == NULL)
            continue;
        long i = find_bucket(g->order, g->n, b + m * widths[EPP_USERS_MINUTE]);
        roaring_bitmap_t **into = i >= 0 ? &g->merged[i] : &g->extra[lo * EPP_USERS_MINUTES + m];
        if (*into == NULL) {
            *into = minutes[m];
            minutes[m] = NULL;
        } else {
            roaring_bitmap_or_inplace(*into, minutes[m]);
        }
    }
    epp_users_free_minutes(minutes);
    return rc;
}

/* Reads the rows of g's keys FOR UPDATE (SKIP LOCKED), gathers them, and deletes them. */
static int take_rows(PGconn *conn, gather_t *g, int skip_locked, epp_users_scratch_t *s,
                     epp_pg_error_t *pe)
{
    epp_buf_reset(&s->arr[0]);
    int rc = epp_pgcopy_array_header(&s->arr[0], EPP_PG_OID_TIMESTAMPTZ, g->nkeys);
    for (size_t k = 0; k < g->nkeys && rc == 0; k++)
        rc = put_ts(&s->arr[0], g->keys[k]);
    if (rc != 0)
        return fail(pe, rc, "out of memory");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT bucket, id, bits FROM %s WHERE bucket = ANY($1::timestamptz[])"
             " ORDER BY bucket, id FOR UPDATE%s",
             bitmap_tables[g->level], skip_locked ? " SKIP LOCKED" : "");
    static const Oid sel_types[1] = {1185};
    PGresult *res = NULL;
    rc = exec_arrays(conn, sql, 1, sel_types, s, &res, pe);
    int rows = rc == 0 ? PQntuples(res) : 0;
    /* The rows read: gathered, then deleted by (bucket, id). */
    epp_buf_reset(&s->arr[0]);
    epp_buf_reset(&s->arr[1]);
    if (rc == 0)
        rc = epp_pgcopy_array_header(&s->arr[0], EPP_PG_OID_TIMESTAMPTZ, (size_t)rows);
    if (rc == 0)
        rc = epp_pgcopy_array_header(&s->arr[1], EPP_PG_OID_INT8, (size_t)rows);
    for (int r = 0; r < rows && rc == 0; r++) {
        if (PQgetlength(res, r, 0) != 8 || PQgetlength(res, r, 1) != 8) {
            rc = fail(pe, EPP_EINVAL, "unexpected bitmap row");
            break;
        }
        int64_t b = (int64_t)epp_pgcopy_get_be64((const unsigned char *)PQgetvalue(res, r, 0)) +
                    EPP_PGCOPY_PG_EPOCH_US;
        int64_t id = (int64_t)epp_pgcopy_get_be64((const unsigned char *)PQgetvalue(res, r, 1));
        rc = gather_row(g, b, PQgetvalue(res, r, 2), (size_t)PQgetlength(res, r, 2));
        if (rc != 0) {
            rc = fail(pe, rc,
                      rc == EPP_EINVAL ? "a stored user bitmap cannot be read" : "out of memory");
            break;
        }
        rc = put_ts(&s->arr[0], b);
        if (rc == 0)
            rc = put_i64(&s->arr[1], id);
        if (rc != 0)
            rc = fail(pe, rc, "out of memory");
    }
    PQclear(res);
    if (rc == 0 && rows > 0) {
        snprintf(sql, sizeof sql,
                 "DELETE FROM %s WHERE (bucket, id) IN"
                 " (SELECT * FROM unnest($1::timestamptz[], $2::int8[]))",
                 bitmap_tables[g->level]);
        static const Oid del_types[2] = {1185, 1016};
        rc = exec_arrays(conn, sql, 2, del_types, s, NULL, pe);
    }
    return rc;
}

/* Writes the merged rows: one per bucket, or for the minute level one per hour holding the
 * caller's minutes and the minutes gathered beside them. */
static int write_merged(PGconn *conn, gather_t *g, epp_users_scratch_t *s, epp_pg_error_t *pe)
{
    rows_t w;
    int rc = rows_begin(&w, s);
    size_t k = 0;
    if (g->level != EPP_USERS_MINUTE)
        for (; k < g->n && rc == 0; k++)
            rc = rows_add_bitmap(&w, g->order[k].bucket, g->merged[g->order[k].i]);
    for (size_t h = 0; g->level == EPP_USERS_MINUTE && h < g->nkeys && rc == 0; h++) {
        roaring_bitmap_t *slots[EPP_USERS_MINUTES];
        memcpy(slots, &g->extra[h * EPP_USERS_MINUTES], sizeof slots);
        for (; k < g->n && epp_users_row_bucket(g->level, g->order[k].bucket) == g->keys[h]; k++)
            slots[(g->order[k].bucket - g->keys[h]) / widths[EPP_USERS_MINUTE]] =
                g->merged[g->order[k].i];
        rc = rows_add_minutes(&w, g->keys[h], slots);
    }
    if (rc != 0)
        return fail(pe, rc, "out of memory");
    return rows_insert(conn, g->level, &w, pe);
}

int epp_users_merge(PGconn *conn, epp_users_level_t level, const int64_t *buckets,
                    roaring_bitmap_t **merged, roaring_bitmap_t *const *remove, size_t n,
                    int skip_locked, epp_users_scratch_t *s, epp_pg_error_t *pe)
{
    if (n == 0)
        return 0;
    bucket_ix_t *order = sorted(buckets, n);
    int64_t *keys = malloc(n * sizeof *keys);
    size_t nkeys = 0;
    int rc = order != NULL && keys != NULL ? 0 : EPP_ENOMEM;
    for (size_t k = 0; k < n && rc == 0; k++) {
        if (k > 0 && order[k].bucket == order[k - 1].bucket) {
            rc = EPP_EINVAL;
            break;
        }
        int64_t key = epp_users_row_bucket(level, order[k].bucket);
        if (nkeys == 0 || keys[nkeys - 1] != key)
            keys[nkeys++] = key;
    }
    roaring_bitmap_t **extra = NULL;
    if (rc == 0 && level == EPP_USERS_MINUTE &&
        (extra = calloc(MERGE_ROWS * EPP_USERS_MINUTES, sizeof(roaring_bitmap_t *))) == NULL)
        rc = EPP_ENOMEM;
    if (rc != 0)
        rc = fail(pe, rc, rc == EPP_EINVAL ? "a bucket given twice" : "out of memory");
    /* MERGE_ROWS row buckets at a time: what one statement reads, and the bitmaps gathered
     * from it, stay small however many buckets merge at once (a history import's batch can
     * bring all its ~700 hours of minutes to their merge together). */
    for (size_t h0 = 0, k0 = 0; h0 < nkeys && rc == 0;) {
        gather_t g = {.level = level,
                      .merged = merged,
                      .extra = extra,
                      .keys = keys + h0,
                      .nkeys = nkeys - h0 < MERGE_ROWS ? nkeys - h0 : MERGE_ROWS};
        size_t k1 = k0;
        while (k1 < n && epp_users_row_bucket(level, order[k1].bucket) <= g.keys[g.nkeys - 1])
            k1++;
        g.order = order + k0;
        g.n = k1 - k0;
        rc = take_rows(conn, &g, skip_locked, s, pe);
        for (size_t k = k0; k < k1 && rc == 0 && remove != NULL; k++)
            if (remove[order[k].i] != NULL)
                roaring_bitmap_andnot_inplace(merged[order[k].i], remove[order[k].i]);
        if (rc == 0)
            rc = write_merged(conn, &g, s, pe);
        for (size_t k = 0; extra != NULL && k < MERGE_ROWS * EPP_USERS_MINUTES; k++) {
            epp_users_free(extra[k]);
            extra[k] = NULL;
        }
        h0 += g.nkeys;
        k0 = k1;
    }
    free(extra);
    free(keys);
    free(order);
    return rc;
}
