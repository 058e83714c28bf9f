/* See consumer_rows.h. */
#include "consumer_rows.h"

#include <stdio.h>
#include <string.h>

#include "epp_error.h"
#include "epp_log.h"
#include "epp_pgcopy.h"

static const char events_columns[] = "(event_id, user_id, event_name, metadata, \"timestamp\")";

/* Uniqueness of event_id across the day partitions of public.events (sql/041). The primary key
 * of a partitioned table must contain the partition key, so it is (event_id, "timestamp");
 * event_id alone is unique through public.epp_event_ids, which a trigger keeps in the same
 * statement. The fast path needs nothing here: a COPY of an event_id already stored fails with
 * unique_violation from that trigger, as it did from the old primary key. The paths that skip
 * stored rows check epp_event_ids first (a resend with another timestamp is no conflict of the
 * partitioned key) and keep ON CONFLICT DO NOTHING for the same row being written by another
 * writer right now. */
static const char insert_new_from_stage_sql[] =
    "INSERT INTO public.events (event_id, user_id, event_name, metadata, \"timestamp\")"
    " SELECT s.event_id, s.user_id, s.event_name, s.metadata, s.\"timestamp\" FROM epp_stage s"
    " WHERE NOT EXISTS (SELECT 1 FROM public.epp_event_ids i WHERE i.event_id = s.event_id)"
    " ON CONFLICT DO NOTHING RETURNING event_id";

static const char insert_new_row_sql[] =
    "INSERT INTO public.events (event_id, user_id, event_name, metadata, \"timestamp\")"
    " SELECT $1::uuid, $2::text, $3::text, $4::jsonb, $5::timestamptz"
    " WHERE NOT EXISTS (SELECT 1 FROM public.epp_event_ids WHERE event_id = $1::uuid)"
    " ON CONFLICT DO NOTHING RETURNING event_id";

/* A row-by-row insert failed with unique_violation: another writer stored the same event_id
 * with another timestamp and committed while this statement waited for it (had it rolled back,
 * the insert would have gone through). The event is stored: the row is a duplicate, not a
 * value Postgres rejects. */
static int stored_by_another_writer(const epp_pg_error_t *pe)
{
    return strcmp(pe->sqlstate, EPP_PG_UNIQUE_VIOLATION) == 0;
}

/* COPY sql FROM STDIN with data then tail. */
static int copy_in(PGconn *conn, const char *sql, const char *data, size_t len, const char *tail,
                   size_t tail_len, epp_pg_error_t *pe)
{
    PGresult *res = PQexec(conn, sql);
    int rc = epp_pg_result_error(conn, res, pe);
    int copying = res != NULL && PQresultStatus(res) == PGRES_COPY_IN;
    PQclear(res);
    if (rc != 0 || !copying)
        return rc != 0 ? rc : EPP_EIO;
    /* Sent in slices: libpq copies each into its output buffer, so one huge call would double
     * the memory of a large batch. */
    const size_t slice = (size_t)256 * 1024;
    int ok = 1;
    for (size_t off = 0; off < len && ok; off += slice)
        ok = PQputCopyData(conn, data + off, (int)(len - off < slice ? len - off : slice)) == 1;
    if (ok && tail_len > 0)
        ok = PQputCopyData(conn, tail, (int)tail_len) == 1;
    ok = PQputCopyEnd(conn, ok ? NULL : "client error") == 1 && ok;
    rc = 0;
    while ((res = PQgetResult(conn)) != NULL) {
        int r2 = epp_pg_result_error(conn, res, pe);
        if (rc == 0)
            rc = r2;
        PQclear(res);
    }
    if (rc == 0 && !ok) {
        epp_pg_copy_message(pe->message, sizeof pe->message, PQerrorMessage(conn));
        pe->code = rc = EPP_EIO;
    }
    return rc;
}

int consumer_rows_copy(PGconn *conn, const consumer_batch_t *b, const char *table,
                       epp_pg_error_t *pe)
{
    char sql[160];
    snprintf(sql, sizeof sql, "COPY %s %s FROM STDIN %s", table, events_columns,
             epp_pgcopy_options(b->fmt));
    epp_buf_t tail = {0};
    epp_pgcopy_end(&tail, b->fmt);
    int rc = copy_in(conn, sql, b->copy.data, b->copy.len, tail.data, tail.len, pe);
    epp_buf_free(&tail);
    return rc;
}

int consumer_rows_insert_staged(PGconn *conn, consumer_batch_t *b, epp_pg_error_t *pe)
{
    int rc = consumer_rows_copy(conn, b, "epp_stage", pe);
    if (rc != 0)
        return rc;
    PGresult *res = NULL;
    rc = epp_pg_exec_params(conn, insert_new_from_stage_sql, 0, NULL, 1, &res, pe);
    if (rc != 0)
        return rc;
    for (int r = 0; r < PQntuples(res); r++) {
        if (PQgetlength(res, r, 0) != 16)
            continue;
        epp_uuid_t id;
        memcpy(id.b, PQgetvalue(res, r, 0), 16);
        size_t i = consumer_batch_find(b, &id);
        if (i != (size_t)-1)
            b->rows[i].inserted = 1;
    }
    PQclear(res);
    return 0;
}

int consumer_rows_insert_each(PGconn *conn, consumer_batch_t *b, epp_buf_t *scratch,
                              epp_pg_error_t *pe)
{
    for (size_t i = 0; i < b->n; i++) {
        consumer_row_t *row = &b->rows[i];
        if (row->state != CONSUMER_ROW_OK)
            continue;
        int rc = epp_pg_exec(conn, "SAVEPOINT epp_row", pe);
        if (rc != 0)
            return rc;
        epp_pgcopy_row_t r;
        consumer_batch_row(b, i, &r);
        unsigned char ts[8];
        epp_pgcopy_put_be64(ts, (uint64_t)(r.timestamp_us - EPP_PGCOPY_PG_EPOCH_US));
        epp_buf_reset(scratch);
        epp_buf_append_char(scratch, 1); /* jsonb binary version */
        epp_buf_append(scratch, r.metadata, r.metadata_len);
        const char *values[5] = {(const char *)r.event_id.b, r.user_id, r.event_name, scratch->data,
                                 (const char *)ts};
        int lengths[5] = {16, (int)r.user_id_len, (int)r.event_name_len, (int)scratch->len, 8};
        int formats[5] = {1, 1, 1, 1, 1};
        PGresult *res =
            PQexecParams(conn, insert_new_row_sql, 5, NULL, values, lengths, formats, 1);
        rc = epp_pg_result_error(conn, res, pe);
        if (rc == 0 && PQntuples(res) == 1)
            row->inserted = 1;
        PQclear(res);
        if (rc != 0 && stored_by_another_writer(pe)) {
            rc = epp_pg_exec(conn, "ROLLBACK TO SAVEPOINT epp_row", pe);
            if (rc != 0)
                return rc;
            continue;
        }
        if (rc != 0) {
            if (!epp_pg_is_data_error(pe) || PQstatus(conn) != CONNECTION_OK)
                return rc;
            char text[320];
            snprintf(text, sizeof text, "%s (SQLSTATE %s)", pe->message, pe->sqlstate);
            EPP_LOGKV(EPP_LOG_WARN, "row rejected by Postgres; dead-lettering", "error", text);
            if (consumer_batch_mark_bad(b, i, "db_rejected", text) != 0)
                return EPP_ENOMEM;
            rc = epp_pg_exec(conn, "ROLLBACK TO SAVEPOINT epp_row", pe);
        } else {
            rc = epp_pg_exec(conn, "RELEASE SAVEPOINT epp_row", pe);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}
