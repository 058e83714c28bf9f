/* epp-admin's database sub-commands: backup, restore, delete-test, migrate.
 *
 * SQL is parameterised throughout: the WHERE clauses are assembled from fixed fragments, and
 * every user-supplied value (time bounds, marker, user prefix) travels as a $N parameter of
 * PQsendQueryParams. That is why backups stream rows with single-row mode instead of COPY TO
 * STDOUT: COPY cannot take parameters, and single-row mode streams a parameterised query just as
 * well (memory stays at one row), at a cost (~1 µs per row) that is small next to gzip.
 *
 * Rollup maintenance mirrors the consumer (sql/002_rollups.sql; the user dictionary and
 * bitmaps of sql/030 and sql/031, in admin_users.c; removing user ids from the bitmaps bumps
 * epp_rollup_generation): buckets are date_trunc(unit, ts, 'UTC'), and only rows actually
 * inserted or deleted are counted, read from INSERT ... RETURNING / DELETE ... RETURNING in the
 * same transaction. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <libpq-fe.h>

#include "admin.h"
#include "admin_backup_file.h"
#include "epp_buf.h"
#include "epp_error.h"
#include "epp_json.h"
#include "epp_log.h"
#include "epp_migrate.h"
#include "epp_pg.h"
#include "epp_time.h"
#include "epp_uuid.h"

#define MAX_PARAMS 8
#define ATTEMPTS   3 /* for deadlocks and serialization failures against a live consumer */

/* A WHERE clause over public.events and its parameter values. */
typedef struct {
    epp_buf_t sql;
    const char *values[MAX_PARAMS];
    int n;
    char from_s[EPP_TIME_BUFSZ], to_s[EPP_TIME_BUFSZ];
    epp_buf_t like;
} selection_t;

static void selection_free(selection_t *s)
{
    epp_buf_free(&s->sql);
    epp_buf_free(&s->like);
}

static int sel_add(selection_t *s, const char *fragment, const char *value)
{
    /* fragment holds one "%d" for the parameter number when value is non-NULL. */
    int rc = epp_buf_append_str(&s->sql, s->sql.len ? " AND " : " WHERE ");
    if (rc == 0 && value) {
        s->values[s->n++] = value;
        rc = epp_buf_printf(&s->sql, fragment, s->n);
    } else if (rc == 0) {
        rc = epp_buf_append_str(&s->sql, fragment);
    }
    return rc;
}

/* Escapes LIKE's wildcards in prefix and appends the trailing %. */
static int like_prefix(epp_buf_t *out, const char *prefix)
{
    int rc = 0;
    for (const char *p = prefix; rc == 0 && *p; p++) {
        if (*p == '%' || *p == '_' || *p == '\\')
            rc = epp_buf_append_char(out, '\\');
        if (rc == 0)
            rc = epp_buf_append_char(out, *p);
    }
    return rc == 0 ? epp_buf_append_char(out, '%') : rc;
}

/* The test-data selection: the marker (any value, or the one given), or the user prefix, or
 * both together. */
static int sel_test_data(selection_t *s, const admin_conf_t *c, bool marker_default)
{
    int rc = 0;
    if (c->test_marker && *c->test_marker)
        rc = sel_add(s, "metadata->>'epp_test' = $%d", c->test_marker);
    else if (marker_default)
        rc = sel_add(s, "metadata ? 'epp_test'", NULL);
    if (rc == 0 && c->user_prefix && *c->user_prefix) {
        rc = like_prefix(&s->like, c->user_prefix);
        if (rc == 0)
            rc = sel_add(s, "user_id LIKE $%d", s->like.data);
    }
    return rc;
}

static int sel_time(selection_t *s, const admin_conf_t *c)
{
    int64_t us;
    int rc = 0;
    if (c->from && *c->from) {
        if (epp_time_parse_param(c->from, &us) != 0) {
            fprintf(stderr, "epp-admin: --from: not an RFC 3339 time or epoch seconds: %s\n",
                    c->from);
            return EPP_EINVAL;
        }
        /* Formatted by us from a parsed instant: the text is always a well-formed timestamp. */
        epp_time_format(us, s->from_s);
        rc = sel_add(s, "\"timestamp\" >= $%d::timestamptz", s->from_s);
    }
    if (rc == 0 && c->to && *c->to) {
        if (epp_time_parse_param(c->to, &us) != 0) {
            fprintf(stderr, "epp-admin: --to: not an RFC 3339 time or epoch seconds: %s\n", c->to);
            return EPP_EINVAL;
        }
        epp_time_format(us, s->to_s);
        rc = sel_add(s, "\"timestamp\" < $%d::timestamptz", s->to_s);
    }
    return rc;
}

static PGconn *connect_db(const admin_conf_t *c)
{
    PGconn *conn = NULL;
    epp_pg_error_t pe;
    if (!c->database_url || !*c->database_url) {
        fprintf(stderr, "epp-admin: DATABASE_URL (--database-url) is not set\n");
        return NULL;
    }
    if (epp_pg_connect(c->database_url, 10, "epp-admin", &conn, &pe) != 0) {
        fprintf(stderr, "epp-admin: cannot connect to the database: %s\n", pe.message);
        return NULL;
    }
    return conn;
}

static void report_pg(const char *what, const epp_pg_error_t *pe)
{
    fprintf(stderr, "epp-admin: %s: %s%s%s%s\n", what, pe->message, pe->sqlstate[0] ? " (" : "",
            pe->sqlstate, pe->sqlstate[0] ? ")" : "");
}

static int exec_simple(PGconn *conn, const char *sql, const char *what)
{
    epp_pg_error_t pe;
    int rc = epp_pg_exec(conn, sql, &pe);
    if (rc != 0)
        report_pg(what, &pe);
    return rc;
}

#define ROW_COLUMNS                                                                                \
    "event_id::text, user_id, event_name, metadata::text, "                                        \
    "(extract(epoch FROM \"timestamp\") * 1000000)::int8, "                                        \
    "(extract(epoch FROM processed_at) * 1000000)::int8"

/* Streams the rows of a query (columns ROW_COLUMNS) into w, one row in memory at a time. */
static int stream_rows(PGconn *conn, const char *sql, int n, const char *const *values,
                       backup_writer_t *w)
{
    epp_pg_error_t pe;
    if (!PQsendQueryParams(conn, sql, n, NULL, values, NULL, NULL, 0) ||
        !PQsetSingleRowMode(conn)) {
        fprintf(stderr, "epp-admin: query failed: %s", PQerrorMessage(conn));
        return EPP_EIO;
    }
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE && rc == 0) {
            backup_row_t row = {
                .event_id = PQgetvalue(res, 0, 0),
                .user_id = PQgetvalue(res, 0, 1),
                .event_name = PQgetvalue(res, 0, 2),
                .metadata = PQgetvalue(res, 0, 3),
                .timestamp_us = strtoll(PQgetvalue(res, 0, 4), NULL, 10),
                .processed_at_us = strtoll(PQgetvalue(res, 0, 5), NULL, 10),
            };
            rc = backup_writer_row(w, &row);
            if (rc != 0)
                fprintf(stderr, "epp-admin: writing the backup failed: %s\n", epp_strerror(rc));
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && rc == 0) {
            rc = epp_pg_result_error(conn, res, &pe);
            if (rc == 0)
                rc = EPP_EIO;
            report_pg("reading rows", &pe);
        }
        /* Every result is read to the end, so the connection stays usable. */
        PQclear(res);
    }
    return rc;
}

static char *default_backup_name(const char *what, backup_format_t f)
{
    char ts[EPP_TIME_BUFSZ], compact[32];
    epp_time_format(epp_time_now_us(), ts);
    /* 2026-11-27T08:31:45.123Z -> 20261127T083145Z */
    size_t j = 0;
    for (size_t i = 0; ts[i] && ts[i] != '.' && j + 2 < sizeof(compact); i++)
        if (ts[i] != '-' && ts[i] != ':' && ts[i] != 'Z')
            compact[j++] = ts[i];
    compact[j++] = 'Z';
    compact[j] = '\0';
    epp_buf_t b = {0};
    epp_buf_printf(&b, "epp-%s-%s.%s.gz", what, compact, f == BACKUP_CSV ? "csv" : "ndjson");
    return epp_buf_steal(&b);
}

static int finish_backup(backup_writer_t *w, const char *path)
{
    uint64_t rows = 0, bytes = 0;
    uint32_t crc = 0;
    char err[512];
    if (backup_writer_finish(w, &rows, &bytes, &crc, err, sizeof(err)) != 0) {
        fprintf(stderr, "epp-admin: %s\n", err);
        return EPP_EIO;
    }
    printf("backup: file=%s rows=%" PRIu64 " bytes=%" PRIu64 " crc32=%08" PRIx32 "\n", path, rows,
           bytes, crc);
    fflush(stdout);
    return 0;
}

int admin_backup(const admin_conf_t *c)
{
    backup_format_t fmt;
    if (backup_format_parse(c->format, &fmt) != 0) {
        fprintf(stderr, "epp-admin: --format must be ndjson or csv\n");
        return 2;
    }
    selection_t s = {0};
    if (sel_time(&s, c) != 0) {
        selection_free(&s);
        return 2;
    }
    if ((c->where_test || (c->test_marker && *c->test_marker) ||
         (c->user_prefix && *c->user_prefix)) &&
        sel_test_data(&s, c, c->where_test) != 0) {
        selection_free(&s);
        return 1;
    }
    char *path = c->out && *c->out ? strdup(c->out) : default_backup_name("backup", fmt);
    PGconn *conn = connect_db(c);
    int status = 1;
    backup_writer_t *w = NULL;
    epp_buf_t sql = {0};
    char err[512];
    if (!conn || !path)
        goto out;
    w = backup_writer_create(path, fmt, err, sizeof(err));
    if (!w) {
        fprintf(stderr, "epp-admin: %s\n", err);
        goto out;
    }
    epp_buf_printf(&sql,
                   "SELECT " ROW_COLUMNS " FROM public.events%s ORDER BY \"timestamp\", event_id",
                   s.sql.data ? s.sql.data : "");
    EPP_LOGKV(EPP_LOG_DEBUG, "backup query", "sql", sql.data);
    if (stream_rows(conn, sql.data, s.n, s.values, w) != 0 || finish_backup(w, path) != 0)
        goto out;
    status = 0;
out:
    backup_writer_destroy(w);
    epp_buf_free(&sql);
    selection_free(&s);
    free(path);
    PQfinish(conn);
    return status;
}

/* ---- delete-test -------------------------------------------------------------------------- */

/* Subtracts the deleted rows' counts from one rollup table and removes rows that reach zero.
 * Counted from epp_deleted (the rows DELETE ... RETURNING gave back), so the correction is exact
 * whatever the consumer does meanwhile: in READ COMMITTED, "n = n - c" applies to the newest
 * row version, composing with concurrent increments. */
static int fix_rollup(PGconn *conn, const char *table, const char *unit, const char *key)
{
    /* Two statements: a row updated by one sub-statement of a WITH cannot be deleted by another
     * sub-statement of the same command. */
    epp_buf_t sql = {0};
    epp_buf_printf(&sql,
                   "UPDATE public.%s r SET n = r.n - g.c "
                   "FROM (SELECT date_trunc('%s', \"timestamp\", 'UTC') AS bucket, %s AS k, "
                   "count(*) AS c FROM epp_deleted GROUP BY 1, 2 ORDER BY 1, 2) g "
                   "WHERE r.bucket = g.bucket AND r.%s = g.k",
                   table, unit, key, key);
    int rc = exec_simple(conn, sql.data, table);
    epp_buf_reset(&sql);
    epp_buf_printf(&sql,
                   "DELETE FROM public.%s r "
                   "USING (SELECT DISTINCT date_trunc('%s', \"timestamp\", 'UTC') AS bucket, "
                   "%s AS k FROM epp_deleted) g "
                   "WHERE r.bucket = g.bucket AND r.%s = g.k AND r.n <= 0",
                   table, unit, key, key);
    if (rc == 0)
        rc = exec_simple(conn, sql.data, table);
    epp_buf_free(&sql);
    return rc;
}

/* First statement of the transaction: consumers remember the user ids they know stored in the
 * bitmaps and read this generation FOR SHARE at the start of each transaction
 * (event_consumer/consumer_users.h). Taking the row's lock before anything else makes every
 * consumer transaction that still trusts what it remembers commit before this one looks for
 * remaining events, and every later one wait for this COMMIT and then forget. */
static const char BUMP_GENERATION_SQL[] =
    "UPDATE public.epp_rollup_generation SET generation = generation + 1";

static int delete_attempt(PGconn *conn, const selection_t *s, const char *path, backup_format_t fmt,
                          int64_t *deleted)
{
    epp_pg_error_t pe;
    epp_buf_t sql = {0};
    backup_writer_t *w = NULL;
    char err[512];
    int rc = exec_simple(conn, "BEGIN", "BEGIN");
    if (rc == 0)
        rc = exec_simple(conn, BUMP_GENERATION_SQL, "epp_rollup_generation");
    if (rc == 0)
        rc = exec_simple(conn, "CREATE TEMP TABLE epp_deleted (LIKE public.events) ON COMMIT DROP",
                         "create epp_deleted");
    if (rc == 0) {
        PGresult *res = NULL;
        epp_buf_printf(&sql,
                       "WITH d AS (DELETE FROM public.events%s RETURNING *) "
                       "INSERT INTO epp_deleted SELECT * FROM d",
                       s->sql.data);
        rc = epp_pg_exec_params(conn, sql.data, s->n, s->values, 0, &res, &pe);
        if (rc == 0) {
            *deleted = strtoll(PQcmdTuples(res), NULL, 10);
            PQclear(res);
        } else {
            report_pg("delete", &pe);
        }
    }
    if (rc == 0)
        rc = fix_rollup(conn, "epp_rollup_minute", "minute", "event_name");
    if (rc == 0)
        rc = fix_rollup(conn, "epp_rollup_hour", "hour", "event_name");
    if (rc == 0)
        rc = fix_rollup(conn, "epp_rollup_day", "day", "event_name");
    if (rc == 0)
        rc = admin_users_remove_deleted(conn);
    /* The backup is the deleted rows themselves, written and fsynced before COMMIT: it holds
     * exactly what this transaction removes, even while new test rows keep arriving. */
    if (rc == 0) {
        w = backup_writer_create(path, fmt, err, sizeof(err));
        if (!w) {
            fprintf(stderr, "epp-admin: %s\n", err);
            rc = EPP_EIO;
        }
    }
    if (rc == 0)
        rc = stream_rows(conn,
                         "SELECT " ROW_COLUMNS " FROM epp_deleted ORDER BY \"timestamp\", event_id",
                         0, NULL, w);
    if (rc == 0)
        rc = finish_backup(w, path);
    if (rc == 0) {
        rc = epp_pg_commit(conn, &pe);
        if (rc != 0)
            report_pg("COMMIT", &pe);
    } else {
        epp_pg_rollback(conn);
    }
    backup_writer_destroy(w);
    epp_buf_free(&sql);
    return rc;
}

int admin_delete_test(const admin_conf_t *c)
{
    backup_format_t fmt;
    if (backup_format_parse(c->format, &fmt) != 0) {
        fprintf(stderr, "epp-admin: --format must be ndjson or csv\n");
        return 2;
    }
    selection_t s = {0};
    if (sel_test_data(&s, c, !(c->user_prefix && *c->user_prefix)) != 0) {
        selection_free(&s);
        return 1;
    }
    PGconn *conn = connect_db(c);
    int status = 1;
    char *path = NULL;
    epp_buf_t sql = {0};
    if (!conn)
        goto out;
    if (c->dry_run) {
        PGresult *res = NULL;
        epp_pg_error_t pe;
        epp_buf_printf(&sql,
                       "SELECT count(*), count(DISTINCT user_id), min(\"timestamp\")::text, "
                       "max(\"timestamp\")::text FROM public.events%s",
                       s.sql.data);
        if (epp_pg_exec_params(conn, sql.data, s.n, s.values, 0, &res, &pe) != 0) {
            report_pg("count", &pe);
            goto out;
        }
        printf("delete-test: dry run: would delete rows=%s users=%s from=%s to=%s\n",
               PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
               PQgetisnull(res, 0, 2) ? "-" : PQgetvalue(res, 0, 2),
               PQgetisnull(res, 0, 3) ? "-" : PQgetvalue(res, 0, 3));
        PQclear(res);
        status = 0;
        goto out;
    }
    path = c->backup_out && *c->backup_out ? strdup(c->backup_out)
                                           : default_backup_name("delete-test", fmt);
    if (!path)
        goto out;
    int64_t deleted = 0;
    int rc = EPP_EAGAIN;
    for (int attempt = 1; attempt <= ATTEMPTS && rc == EPP_EAGAIN; attempt++) {
        rc = delete_attempt(conn, &s, path, fmt, &deleted);
        if (rc == EPP_EAGAIN)
            fprintf(stderr, "epp-admin: conflict with concurrent writers, retrying (%d/%d)\n",
                    attempt, ATTEMPTS);
    }
    if (rc != 0)
        goto out;
    printf("delete-test: deleted rows=%lld backup=%s\n", (long long)deleted, path);
    status = 0;
out:
    epp_buf_free(&sql);
    selection_free(&s);
    free(path);
    PQfinish(conn);
    return status;
}

/* ---- restore ------------------------------------------------------------------------------ */

/* Appends s as a COPY text-format field. */
static int copy_text(epp_buf_t *b, const char *s, size_t len)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        char ch = s[i];
        switch (ch) {
        case '\\':
            rc = epp_buf_append_str(b, "\\\\");
            break;
        case '\n':
            rc = epp_buf_append_str(b, "\\n");
            break;
        case '\r':
            rc = epp_buf_append_str(b, "\\r");
            break;
        case '\t':
            rc = epp_buf_append_str(b, "\\t");
            break;
        default:
            rc = epp_buf_append_char(b, ch);
        }
    }
    return rc;
}

static const epp_json_value_t *member_string(const epp_json_value_t *obj, const char *key)
{
    const epp_json_value_t *v = epp_json_get(obj, key);
    return v && v->type == EPP_JSON_STRING ? v : NULL;
}

/* One NDJSON backup line -> one COPY text line (event_id, user_id, event_name, metadata,
 * timestamp, processed_at). Everything is checked here, so a corrupt line is reported with its
 * number instead of failing the COPY somewhere in the middle. */
static int ndjson_to_copy(const char *line, size_t len, epp_buf_t *out, epp_buf_t *scratch,
                          char *err, size_t errsz)
{
    epp_json_doc_t *doc = NULL;
    epp_json_error_t je;
    if (epp_json_parse(line, len, NULL, &doc, &je) != 0) {
        snprintf(err, errsz, "%s", je.message);
        return EPP_EINVAL;
    }
    const epp_json_value_t *root = epp_json_root(doc);
    const epp_json_value_t *id = NULL, *user = NULL, *name = NULL, *ts = NULL, *pa = NULL;
    const epp_json_value_t *meta = NULL;
    int rc = EPP_EINVAL;
    epp_uuid_t uuid;
    int64_t ts_us, pa_us = 0;
    if (root->type != EPP_JSON_OBJECT) {
        snprintf(err, errsz, "not a JSON object");
        goto out;
    }
    id = member_string(root, "event_id");
    user = member_string(root, "user_id");
    name = member_string(root, "event_name");
    ts = member_string(root, "timestamp");
    pa = member_string(root, "processed_at");
    meta = epp_json_get(root, "metadata");
    if (!id || epp_uuid_parse(id->u.s.text, id->u.s.len, &uuid) != 0 || !user || !name || !ts ||
        epp_time_parse_rfc3339(ts->u.s.text, ts->u.s.len, &ts_us) != 0 ||
        (pa && epp_time_parse_rfc3339(pa->u.s.text, pa->u.s.len, &pa_us) != 0) ||
        (meta && meta->type != EPP_JSON_OBJECT)) {
        snprintf(err, errsz,
                 "missing or malformed event_id, user_id, event_name, timestamp, "
                 "processed_at or metadata");
        goto out;
    }
    epp_buf_reset(scratch);
    if (meta)
        rc = epp_json_serialize(meta, scratch);
    else
        rc = epp_buf_append_str(scratch, "{}");
    char ids[EPP_UUID_STRLEN + 1], t1[EPP_TIME_BUFSZ], t2[EPP_TIME_BUFSZ];
    epp_uuid_format(&uuid, ids);
    epp_time_format(ts_us, t1);
    if (pa)
        epp_time_format(pa_us, t2);
    if (rc == 0)
        rc = epp_buf_printf(out, "%s\t", ids);
    if (rc == 0)
        rc = copy_text(out, user->u.s.text, user->u.s.len);
    if (rc == 0)
        rc = epp_buf_append_char(out, '\t');
    if (rc == 0)
        rc = copy_text(out, name->u.s.text, name->u.s.len);
    if (rc == 0)
        rc = epp_buf_append_char(out, '\t');
    if (rc == 0)
        rc = copy_text(out, scratch->data, scratch->len);
    if (rc == 0)
        rc = epp_buf_printf(out, "\t%s\t%s\n", t1, pa ? t2 : "\\N");
out:
    epp_json_doc_destroy(doc);
    return rc;
}

static int put_copy(PGconn *conn, epp_buf_t *b, bool force)
{
    if (b->len == 0 || (!force && b->len < (1u << 20)))
        return 0;
    if (PQputCopyData(conn, b->data, (int)b->len) != 1) {
        fprintf(stderr, "epp-admin: COPY failed: %s", PQerrorMessage(conn));
        return EPP_EIO;
    }
    epp_buf_reset(b);
    return 0;
}

/* Streams the backup file into the staging table epp_restore with COPY. */
static int load_staging(PGconn *conn, const char *path, backup_format_t fmt, int64_t *lines)
{
    const char *copy_sql =
        fmt == BACKUP_CSV
            ? "COPY epp_restore (event_id, user_id, event_name, \"timestamp\", processed_at, "
              "metadata) FROM STDIN WITH (FORMAT csv, HEADER true)"
            : "COPY epp_restore (event_id, user_id, event_name, metadata, \"timestamp\", "
              "processed_at) FROM STDIN";
    PGresult *res = PQexec(conn, copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        epp_pg_error_t pe;
        epp_pg_result_error(conn, res, &pe);
        report_pg("COPY", &pe);
        PQclear(res);
        return EPP_EIO;
    }
    PQclear(res);
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        fprintf(stderr, "epp-admin: cannot read %s: %s\n", path, strerror(errno));
        PQputCopyEnd(conn, "cannot read the backup file");
        while ((res = PQgetResult(conn)) != NULL)
            PQclear(res);
        return EPP_EIO;
    }
    gzbuffer(gz, 256 * 1024);
    epp_buf_t out = {0}, line = {0}, scratch = {0};
    char chunk[65536];
    int rc = 0, n;
    int64_t lineno = 0;
    char err[256];
    while (rc == 0 && (n = gzread(gz, chunk, sizeof(chunk))) > 0) {
        if (fmt == BACKUP_CSV) {
            rc = epp_buf_append(&out, chunk, (size_t)n);
            if (rc == 0)
                rc = put_copy(conn, &out, false);
            continue;
        }
        /* NDJSON: split into lines; a line may span chunks. */
        size_t start = 0;
        for (size_t i = 0; rc == 0 && i < (size_t)n; i++) {
            if (chunk[i] != '\n')
                continue;
            rc = epp_buf_append(&line, chunk + start, i - start);
            start = i + 1;
            lineno++;
            if (rc == 0 && line.len > 0) {
                rc = ndjson_to_copy(line.data, line.len, &out, &scratch, err, sizeof(err));
                if (rc != 0)
                    fprintf(stderr, "epp-admin: %s line %lld: %s\n", path, (long long)lineno, err);
            }
            epp_buf_reset(&line);
            if (rc == 0)
                rc = put_copy(conn, &out, false);
        }
        if (rc == 0)
            rc = epp_buf_append(&line, chunk + start, (size_t)n - start);
    }
    if (rc == 0 && n < 0) {
        int zerr;
        fprintf(stderr, "epp-admin: reading %s failed: %s\n", path, gzerror(gz, &zerr));
        rc = EPP_EIO;
    }
    if (rc == 0 && fmt == BACKUP_NDJSON && line.len > 0) {
        lineno++;
        rc = ndjson_to_copy(line.data, line.len, &out, &scratch, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "epp-admin: %s line %lld: %s\n", path, (long long)lineno, err);
    }
    if (rc == 0)
        rc = put_copy(conn, &out, true);
    gzclose(gz);
    epp_buf_free(&out);
    epp_buf_free(&line);
    epp_buf_free(&scratch);
    PQputCopyEnd(conn, rc == 0 ? NULL : "restore aborted");
    epp_pg_error_t pe;
    while ((res = PQgetResult(conn)) != NULL) {
        int r = epp_pg_result_error(conn, res, &pe);
        if (r != 0 && rc == 0) {
            report_pg("COPY", &pe);
            if (pe.context[0])
                fprintf(stderr, "epp-admin:   %s\n", pe.context);
            rc = r;
        }
        PQclear(res);
    }
    *lines = lineno;
    return rc;
}

/* Inserts the staged rows that are not stored yet and counts exactly those into the rollups,
 * in one statement (data-modifying CTEs all see the INSERT's RETURNING). "Stored" is by
 * event_id alone, whatever the timestamp: public.epp_event_ids (sql/041) holds every stored id,
 * since the partitioned table's own key is (event_id, "timestamp"). */
static const char RESTORE_SQL[] =
    "WITH ins AS ("
    "  INSERT INTO public.events (event_id, user_id, event_name, metadata, \"timestamp\", "
    "processed_at)"
    "  SELECT DISTINCT ON (event_id) event_id, user_id, event_name, coalesce(metadata, '{}'), "
    "\"timestamp\", coalesce(processed_at, now()) FROM epp_restore r"
    "  WHERE NOT EXISTS (SELECT 1 FROM public.epp_event_ids i WHERE i.event_id = r.event_id)"
    "  ORDER BY event_id, \"timestamp\""
    "  ON CONFLICT DO NOTHING"
    "  RETURNING \"timestamp\" AS ts, event_name, user_id),"
    " m AS (INSERT INTO public.epp_rollup_minute AS r (bucket, event_name, n)"
    "  SELECT date_trunc('minute', ts, 'UTC'), event_name, count(*) FROM ins GROUP BY 1, 2 "
    "ORDER BY 1, 2"
    "  ON CONFLICT (bucket, event_name) DO UPDATE SET n = r.n + EXCLUDED.n RETURNING 1),"
    " h AS (INSERT INTO public.epp_rollup_hour AS r (bucket, event_name, n)"
    "  SELECT date_trunc('hour', ts, 'UTC'), event_name, count(*) FROM ins GROUP BY 1, 2 "
    "ORDER BY 1, 2"
    "  ON CONFLICT (bucket, event_name) DO UPDATE SET n = r.n + EXCLUDED.n RETURNING 1),"
    " d AS (INSERT INTO public.epp_rollup_day AS r (bucket, event_name, n)"
    "  SELECT date_trunc('day', ts, 'UTC'), event_name, count(*) FROM ins GROUP BY 1, 2 "
    "ORDER BY 1, 2"
    "  ON CONFLICT (bucket, event_name) DO UPDATE SET n = r.n + EXCLUDED.n RETURNING 1),"
    /* The inserted rows, for their user bitmaps (admin_users_add_restored: a later statement,
     * which sees the dictionary rows below and those concurrent writers committed). */
    " r AS (INSERT INTO epp_restored (\"timestamp\", user_id) SELECT ts, user_id FROM ins"
    "  RETURNING 1),"
    /* The user dictionary (sql/030), as common/epp_users.c fills it: only users without an id
     * draw one, in byte order; one a concurrent writer inserts first is skipped here. */
    " ids AS (INSERT INTO public.epp_user_ids (user_id)"
    "  SELECT user_id FROM (SELECT DISTINCT user_id FROM ins WHERE NOT EXISTS"
    "  (SELECT 1 FROM public.epp_user_ids k WHERE k.user_id = ins.user_id)) n"
    "  ORDER BY user_id COLLATE \"C\" ON CONFLICT (user_id) DO NOTHING RETURNING 1)"
    " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM epp_restore),"
    " (SELECT count(*) FROM m) + (SELECT count(*) FROM h) + (SELECT count(*) FROM d)"
    " + (SELECT count(*) FROM r) + (SELECT count(*) FROM ids)";

static int restore_attempt(PGconn *conn, const char *path, backup_format_t fmt)
{
    epp_pg_error_t pe;
    int64_t lines = 0;
    int rc = exec_simple(conn, "BEGIN", "BEGIN");
    if (rc == 0)
        rc = exec_simple(conn,
                         "CREATE TEMP TABLE epp_restore (event_id uuid, user_id text, "
                         "event_name text, metadata jsonb, \"timestamp\" timestamptz, "
                         "processed_at timestamptz) ON COMMIT DROP;"
                         "CREATE TEMP TABLE epp_restored (\"timestamp\" timestamptz, "
                         "user_id text) ON COMMIT DROP",
                         "create epp_restore");
    if (rc == 0)
        rc = load_staging(conn, path, fmt, &lines);
    PGresult *res = NULL;
    if (rc == 0) {
        rc = epp_pg_exec_params(conn, RESTORE_SQL, 0, NULL, 0, &res, &pe);
        if (rc != 0)
            report_pg("restore", &pe);
    }
    if (rc == 0)
        rc = admin_users_add_restored(conn);
    if (rc == 0) {
        rc = epp_pg_commit(conn, &pe);
        if (rc != 0)
            report_pg("COMMIT", &pe);
    } else {
        epp_pg_rollback(conn);
    }
    if (rc == 0) {
        long long ins = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        long long all = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        printf("restore: file=%s rows=%lld inserted=%lld already_present=%lld\n", path, all, ins,
               all - ins);
    }
    PQclear(res);
    return rc;
}

int admin_restore(const admin_conf_t *c)
{
    if (c->n_args != 1) {
        fprintf(stderr, "epp-admin: usage: epp-admin restore [OPTIONS] FILE\n");
        return 2;
    }
    const char *path = c->args[0];
    backup_format_t fmt;
    if (c->format && *c->format) {
        if (backup_format_parse(c->format, &fmt) != 0) {
            fprintf(stderr, "epp-admin: --format must be ndjson or csv\n");
            return 2;
        }
    } else if (backup_file_detect(path, &fmt) != 0) {
        fprintf(stderr, "epp-admin: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    PGconn *conn = connect_db(c);
    if (!conn)
        return 1;
    int rc = EPP_EAGAIN;
    for (int attempt = 1; attempt <= ATTEMPTS && rc == EPP_EAGAIN; attempt++) {
        rc = restore_attempt(conn, path, fmt);
        if (rc == EPP_EAGAIN)
            fprintf(stderr, "epp-admin: conflict with concurrent writers, retrying (%d/%d)\n",
                    attempt, ATTEMPTS);
    }
    PQfinish(conn);
    return rc == 0 ? 0 : 1;
}

/* ---- migrate ------------------------------------------------------------------------------ */

int admin_migrate(const admin_conf_t *c)
{
    const epp_migration_t *list = NULL;
    epp_migration_t *loaded = NULL;
    size_t n = 0;
    char err[512];
    if (c->sql_dir && *c->sql_dir) {
        if (epp_migrate_load_dir(c->sql_dir, &loaded, &n, err, sizeof(err)) != 0) {
            fprintf(stderr, "epp-admin: %s\n", err);
            return 1;
        }
        list = loaded;
    } else {
#ifdef EPP_ADMIN_EMBEDDED_SQL
        list = epp_sql_migrations;
        n = epp_sql_migrations_count;
#else
        fprintf(stderr, "epp-admin: built without embedded migrations: give --sql-dir\n");
        return 2;
#endif
    }
    PGconn *conn = connect_db(c);
    int status = 1;
    if (conn) {
        int applied = 0;
        if (epp_migrate_apply(conn, list, n, &applied, err, sizeof(err)) != 0) {
            fprintf(stderr, "epp-admin: migrate: %s\n", err);
        } else {
            printf("migrate: applied=%d known=%zu\n", applied, n);
            status = 0;
        }
    }
    PQfinish(conn);
    epp_migrate_list_free(loaded, n);
    return status;
}
