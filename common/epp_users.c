#include "epp_users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_pgcopy.h"

#define OID_TEXT_ARRAY 1009

static int fail(epp_pg_error_t *pe, int code, const char *message)
{
    snprintf(pe->message, sizeof pe->message, "%s", message);
    pe->sqlstate[0] = '\0';
    pe->context[0] = '\0';
    return pe->code = code;
}

/* Known users: (index into the array parameter, 1-based; uid). */
static const char select_sql[] =
    "SELECT u.i, d.uid FROM unnest($1::text[]) WITH ORDINALITY AS u(name, i)"
    " JOIN public.epp_user_ids d ON d.user_id = u.name";

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
