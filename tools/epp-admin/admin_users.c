/* epp-admin's part of the per-bucket user bitmaps (sql/031): restore appends the uids of the
 * rows it inserted; delete-test removes the uids of users left without an event in a bucket.
 * The removal reads and rewrites the affected buckets through common/epp_users.c, the code the
 * consumer merges with; the appends of a bulk restore are built in SQL (epp_user_bitmap), next
 * to the rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <roaring/roaring.h>

#include "admin.h"
#include "epp_error.h"
#include "epp_pg.h"
#include "epp_pgcopy.h"
#include "epp_users.h"

static const char *const units[EPP_USERS_LEVELS] = {"minute", "hour", "day"};

static int report(const char *what, const epp_pg_error_t *pe)
{
    fprintf(stderr, "epp-admin: %s: %s%s%s%s\n", what, pe->message, pe->sqlstate[0] ? " (" : "",
            pe->sqlstate, pe->sqlstate[0] ? ")" : "");
    return pe->code ? pe->code : EPP_EINVAL;
}

int admin_users_add_restored(PGconn *conn)
{
    for (int level = 0; level < EPP_USERS_LEVELS; level++) {
        char sql[640];
        if (level == EPP_USERS_MINUTE) /* one row per hour, its minutes packed (sql/032) */
            snprintf(sql, sizeof sql,
                     "INSERT INTO public.epp_user_bitmap_minute (bucket, n, bits)"
                     " SELECT date_trunc('hour', m, 'UTC'), count(*),"
                     " public.epp_user_minute_bitmaps(array_agg(public.epp_minute_of_hour(m)),"
                     " array_agg(uid)) FROM"
                     " (SELECT DISTINCT date_trunc('minute', r.\"timestamp\", 'UTC') AS m, d.uid"
                     " FROM epp_restored r JOIN public.epp_user_ids d USING (user_id)) p"
                     " GROUP BY 1");
        else
            snprintf(sql, sizeof sql,
                     "INSERT INTO public.epp_user_bitmap_%s (bucket, n, bits)"
                     " SELECT bucket, count(*), public.epp_user_bitmap(array_agg(uid)) FROM"
                     " (SELECT DISTINCT date_trunc('%s', r.\"timestamp\", 'UTC') AS bucket,"
                     " d.uid FROM epp_restored r JOIN public.epp_user_ids d USING (user_id)) p"
                     " GROUP BY bucket",
                     units[level], units[level]);
        epp_pg_error_t pe;
        if (epp_pg_exec(conn, sql, &pe) != 0)
            return report("user bitmaps", &pe);
    }
    return 0;
}

/* One level: the (bucket, uid) pairs to remove, grouped by bucket, then one merge. */
static int remove_level(PGconn *conn, int level, epp_users_scratch_t *s)
{
    char sql[640];
    snprintf(sql, sizeof sql,
             "SELECT g.bucket, d.uid FROM"
             " (SELECT DISTINCT date_trunc('%s', \"timestamp\", 'UTC') AS bucket, user_id"
             " FROM epp_deleted) g JOIN public.epp_user_ids d USING (user_id)"
             " WHERE NOT EXISTS (SELECT 1 FROM public.events e WHERE e.user_id = g.user_id"
             " AND e.\"timestamp\" >= g.bucket AND e.\"timestamp\" < g.bucket + interval '1 %s')"
             " ORDER BY 1",
             units[level], units[level]);
    epp_pg_error_t pe;
    PGresult *res = NULL;
    if (epp_pg_exec_params(conn, sql, 0, NULL, 1, &res, &pe) != 0)
        return report("user bitmaps", &pe);
    int rows = PQntuples(res);
    int64_t *buckets = calloc((size_t)rows + 1, sizeof *buckets);
    roaring_bitmap_t **merged = calloc((size_t)rows + 1, sizeof(roaring_bitmap_t *));
    roaring_bitmap_t **remove = calloc((size_t)rows + 1, sizeof(roaring_bitmap_t *));
    size_t n = 0;
    int rc = buckets && merged && remove ? 0 : EPP_ENOMEM;
    for (int r = 0; r < rows && rc == 0; r++) {
        int64_t b = (int64_t)epp_pgcopy_get_be64((const unsigned char *)PQgetvalue(res, r, 0)) +
                    EPP_PGCOPY_PG_EPOCH_US;
        uint64_t uid = epp_pgcopy_get_be64((const unsigned char *)PQgetvalue(res, r, 1));
        if (n == 0 || buckets[n - 1] != b) {
            buckets[n] = b;
            merged[n] = roaring_bitmap_create();
            remove[n] = roaring_bitmap_create();
            n++;
            if (merged[n - 1] == NULL || remove[n - 1] == NULL)
                rc = EPP_ENOMEM;
        }
        if (rc == 0)
            roaring_bitmap_add(remove[n - 1], (uint32_t)uid);
    }
    PQclear(res);
    if (rc != 0)
        fprintf(stderr, "epp-admin: user bitmaps: out of memory\n");
    else if (n > 0 &&
             (rc = epp_users_merge(conn, level, buckets, merged, remove, n, 0, s, &pe)) != 0)
        report("user bitmaps", &pe);
    for (size_t i = 0; i < n; i++) {
        epp_users_free(merged[i]);
        epp_users_free(remove[i]);
    }
    free(buckets);
    free(merged);
    free(remove);
    return rc;
}

int admin_users_remove_deleted(PGconn *conn)
{
    epp_users_scratch_t s = {0};
    int rc = 0;
    for (int level = 0; level < EPP_USERS_LEVELS && rc == 0; level++)
        rc = remove_level(conn, level, &s);
    epp_users_scratch_free(&s);
    return rc;
}
