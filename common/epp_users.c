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

int epp_users_append(PGconn *conn, epp_users_level_t level, const int64_t *buckets,
                     roaring_bitmap_t *const *bits, size_t n, epp_users_scratch_t *s,
                     epp_pg_error_t *pe)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += !roaring_bitmap_is_empty(bits[i]);
    if (m == 0)
        return 0;
    for (int k = 0; k < 3; k++)
        epp_buf_reset(&s->arr[k]);
    int rc = epp_pgcopy_array_header(&s->arr[0], EPP_PG_OID_TIMESTAMPTZ, m);
    if (rc == 0)
        rc = epp_pgcopy_array_header(&s->arr[1], EPP_PG_OID_INT8, m);
    if (rc == 0)
        rc = epp_pgcopy_array_header(&s->arr[2], EPP_PG_OID_BYTEA, m);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (roaring_bitmap_is_empty(bits[i]))
            continue;
        rc = put_ts(&s->arr[0], buckets[i]);
        if (rc == 0)
            rc = put_i64(&s->arr[1], (int64_t)roaring_bitmap_get_cardinality(bits[i]));
        if (rc == 0)
            rc = epp_users_serialize(bits[i], &s->one);
        if (rc == 0)
            rc = epp_pgcopy_array_elem(&s->arr[2], s->one.data, s->one.len);
    }
    if (rc != 0)
        return fail(pe, rc, "out of memory");
    char sql[192];
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (bucket, n, bits)"
             " SELECT * FROM unnest($1::timestamptz[], $2::int8[], $3::bytea[])",
             bitmap_tables[level]);
    static const Oid types[3] = {1185, 1016, 1001}; /* timestamptz[], int8[], bytea[] */
    return exec_arrays(conn, sql, 3, types, s, NULL, pe);
}

typedef struct {
    int64_t bucket;
    size_t i;
} bucket_ix_t;

static int cmp_bucket(const void *a, const void *b)
{
    const bucket_ix_t *x = a, *y = b;
    return (x->bucket > y->bucket) - (x->bucket < y->bucket);
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

int epp_users_merge(PGconn *conn, epp_users_level_t level, const int64_t *buckets,
                    roaring_bitmap_t **merged, roaring_bitmap_t *const *remove, size_t n,
                    int skip_locked, epp_users_scratch_t *s, epp_pg_error_t *pe)
{
    if (n == 0)
        return 0;
    bucket_ix_t *order = malloc(n * sizeof *order);
    if (order == NULL)
        return fail(pe, EPP_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        order[i] = (bucket_ix_t){buckets[i], i};
    qsort(order, n, sizeof *order, cmp_bucket);
    for (int k = 0; k < 3; k++)
        epp_buf_reset(&s->arr[k]);
    int rc = epp_pgcopy_array_header(&s->arr[0], EPP_PG_OID_TIMESTAMPTZ, n);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = put_ts(&s->arr[0], order[i].bucket);
    if (rc != 0) {
        free(order);
        return fail(pe, rc, "out of memory");
    }
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT bucket, id, bits FROM %s WHERE bucket = ANY($1::timestamptz[])"
             " ORDER BY bucket, id FOR UPDATE%s",
             bitmap_tables[level], skip_locked ? " SKIP LOCKED" : "");
    static const Oid sel_types[1] = {1185};
    PGresult *res = NULL;
    rc = exec_arrays(conn, sql, 1, sel_types, s, &res, pe);
    int rows = rc == 0 ? PQntuples(res) : 0;
    /* The rows read: parsed into merged[], then deleted by (bucket, id). */
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
        long i = find_bucket(order, n, b);
        roaring_bitmap_t *bits =
            epp_users_deserialize(PQgetvalue(res, r, 2), (size_t)PQgetlength(res, r, 2));
        if (i < 0 || bits == NULL) {
            epp_users_free(bits);
            rc = fail(pe, EPP_EINVAL, "a stored user bitmap cannot be read");
            break;
        }
        roaring_bitmap_or_inplace(merged[i], bits);
        roaring_bitmap_free(bits);
        rc = put_ts(&s->arr[0], b);
        if (rc == 0)
            rc = put_i64(&s->arr[1], id);
        if (rc != 0)
            rc = fail(pe, rc, "out of memory");
    }
    PQclear(res);
    free(order);
    if (rc == 0 && rows > 0) {
        snprintf(sql, sizeof sql,
                 "DELETE FROM %s WHERE (bucket, id) IN"
                 " (SELECT * FROM unnest($1::timestamptz[], $2::int8[]))",
                 bitmap_tables[level]);
        static const Oid del_types[2] = {1185, 1016};
        rc = exec_arrays(conn, sql, 2, del_types, s, NULL, pe);
    }
    if (rc == 0 && remove != NULL)
        for (size_t i = 0; i < n; i++)
            if (remove[i] != NULL)
                roaring_bitmap_andnot_inplace(merged[i], remove[i]);
    if (rc == 0)
        rc = epp_users_append(conn, level, buckets, merged, n, s, pe);
    return rc;
}
