#include "epp_pg.h"

#include <stdio.h>
#include <string.h>

#include "epp_error.h"

void epp_pg_copy_message(char *dst, size_t dstsz, const char *msg)
{
    if (dstsz == 0)
        return;
    if (msg == NULL)
        msg = "";
    size_t n = strlen(msg);
    /* libpq messages end in "\n" and may hold several lines (DETAIL, HINT): keep the first. */
    const char *nl = memchr(msg, '\n', n);
    if (nl != NULL)
        n = (size_t)(nl - msg);
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, msg, n);
    dst[n] = '\0';
}

static void error_set(epp_pg_error_t *err, int code, const char *sqlstate, const char *msg,
                      const char *context)
{
    if (err == NULL)
        return;
    err->code = code;
    snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate ? sqlstate : "");
    epp_pg_copy_message(err->message, sizeof err->message, msg);
    epp_pg_copy_message(err->context, sizeof err->context, context);
}

int epp_pg_connect(const char *url, int timeout_s, const char *app, PGconn **out,
                   epp_pg_error_t *err)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", timeout_s > 0 ? timeout_s : 0);
    /* expand_dbname=1: "dbname" may be a whole URI; later keywords override what it says.
     * connect_timeout "0" is libpq's own default (wait as long as the OS does). */
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "options", NULL};
    const char *vals[] = {url, timeout, app ? app : "epp", "-c TimeZone=UTC", NULL};
    *out = NULL;
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        error_set(err, EPP_ENOMEM, NULL, "out of memory", NULL);
        return EPP_ENOMEM;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        /* libpq's message names host and port, never the password. A URL libpq cannot parse
         * ("invalid URI", "invalid connection option") is a configuration error. */
        const char *msg = PQerrorMessage(conn);
        int code = EPP_EUNAVAIL;
        if (strstr(msg, "invalid") != NULL &&
            (strstr(msg, "URI") != NULL || strstr(msg, "connection option") != NULL))
            code = EPP_EINVAL;
        error_set(err, code, NULL, msg, NULL);
        PQfinish(conn);
        return code;
    }
    *out = conn;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    return 0;
}

int epp_pg_classify_sqlstate(const char *s)
{
    if (s == NULL || strlen(s) != 5)
        return EPP_EIO;
    if (strncmp(s, "08", 2) == 0)
        return EPP_EIO;
    if (strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0)
        return EPP_EUNAVAIL;
    if (strcmp(s, "57014") == 0)
        return EPP_ETIMEDOUT;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0)
        return EPP_EAGAIN;
    if (strncmp(s, "53", 2) == 0 || strncmp(s, "58", 2) == 0)
        return EPP_EUNAVAIL;
    return EPP_EINVAL;
}

int epp_pg_is_data_error(const epp_pg_error_t *err)
{
    if (err == NULL || err->code != EPP_EINVAL)
        return 0;
    const char *s = err->sqlstate;
    return strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0 || strcmp(s, "54000") == 0;
}

int epp_pg_result_error(PGconn *conn, const PGresult *res, epp_pg_error_t *err)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    switch (st) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_EMPTY_QUERY:
        if (err != NULL)
            memset(err, 0, sizeof *err);
        return 0;
    default:
        break;
    }
    const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *ctx = res ? PQresultErrorField(res, PG_DIAG_CONTEXT) : NULL;
    if (msg == NULL)
        msg = PQerrorMessage(conn);
    int code = epp_pg_classify_sqlstate(sqlstate);
    /* A row that failed the partition constraint of the partition its own INSERT or COPY routed
     * it to: the partition set changed under the statement (ATTACH PARTITION runs beside writers
     * and narrows the default partition's range; the row went there by the set the statement
     * began with). The same row routes anew on a retry. Told apart from a CHECK constraint
     * (which names its constraint) and from "no partition found" (ExecFindPartition) by the
     * reporting function, which unlike the message is never translated. */
    const char *fn = res ? PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION) : NULL;
    if (sqlstate != NULL && strcmp(sqlstate, EPP_PG_CHECK_VIOLATION) == 0 && fn != NULL &&
        strcmp(fn, "ExecPartitionCheckEmitError") == 0)
        code = EPP_EAGAIN;
    /* A dead connection trumps whatever the last result said: the next statement cannot run. */
    if (PQstatus(conn) != CONNECTION_OK)
        code = EPP_EIO;
    error_set(err, code, sqlstate, msg, ctx);
    return code;
}

int epp_pg_exec(PGconn *conn, const char *sql, epp_pg_error_t *err)
{
    PGresult *res = PQexec(conn, sql);
    int rc = epp_pg_result_error(conn, res, err);
    PQclear(res);
    return rc;
}

int epp_pg_exec_params(PGconn *conn, const char *sql, int nparams, const char *const *values,
                       int result_format, PGresult **out, epp_pg_error_t *err)
{
    if (out != NULL)
        *out = NULL;
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, result_format);
    int rc = epp_pg_result_error(conn, res, err);
    if (rc == 0 && out != NULL)
        *out = res;
    else
        PQclear(res);
    return rc;
}

int epp_pg_commit(PGconn *conn, epp_pg_error_t *err)
{
    PGresult *res = PQexec(conn, "COMMIT");
    int rc = epp_pg_result_error(conn, res, err);
    if (rc == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        /* The transaction had failed earlier: the server rolled it back. */
        error_set(err, EPP_EINVAL, NULL, "transaction was rolled back", NULL);
        rc = EPP_EINVAL;
    }
    PQclear(res);
    return rc;
}

void epp_pg_rollback(PGconn *conn)
{
    if (conn != NULL && PQstatus(conn) == CONNECTION_OK)
        PQclear(PQexec(conn, "ROLLBACK"));
}
