/* epp_pg: small libpq helpers shared by the consumer, the analytics service and epp-admin.
 *
 * - epp_pg_connect(): a connection with a connect timeout and application_name, in UTC.
 * - Error classification in one place: every failure becomes a negative EPP_E* code, retriable
 *   (EPP_EIO, EPP_EUNAVAIL, EPP_EAGAIN, EPP_ETIMEDOUT: connection lost, server shutting down or
 *   starting, serialization failure, deadlock, out of resources) or permanent (EPP_EINVAL: the
 *   data or the statement is wrong), plus the SQLSTATE and the server's message in an
 *   epp_pg_error_t, because callers need to tell a unique_violation (23505) from other errors.
 * - Exec helpers that always PQclear their result, so no PGresult leaks on any path.
 *
 * Threads: a PGconn belongs to one thread at a time; the functions here keep no global state. */
#ifndef EPP_PG_H
#define EPP_PG_H

#include <stddef.h>

#include <libpq-fe.h>

typedef struct {
    int code;          /* negative EPP_E* code (0 when there was no error) */
    char sqlstate[6];  /* "23505", or "" when the failure was not reported by the server */
    char message[256]; /* the server's primary message (or libpq's), one line */
    char context[128]; /* the server's CONTEXT, e.g. "COPY events, line 3", or "" */
} epp_pg_error_t;

/* Well-known SQLSTATEs the callers branch on. */
#define EPP_PG_UNIQUE_VIOLATION "23505"
#define EPP_PG_CHECK_VIOLATION  "23514"

/* Opens a connection to url (a libpq URI or key=value string) with connect_timeout
 * timeout_s seconds (0: libpq's default), application_name app (may be NULL) and TimeZone UTC.
 * On success *out receives the connection (caller PQfinish()es it) and 0 is returned; otherwise
 * *out is NULL and a retriable code (EPP_EUNAVAIL) or EPP_EINVAL (a malformed URL) is returned
 * with err filled. Passwords are never written to err. */
int epp_pg_connect(const char *url, int timeout_s, const char *app, PGconn **out,
                   epp_pg_error_t *err);

/* The EPP_E* code for a SQLSTATE: class 08 (connection), 57P01-57P03 (admin/crash shutdown,
 * cannot connect now) -> EPP_EIO / EPP_EUNAVAIL; 40001, 40P01, 55P03 -> EPP_EAGAIN; 53xxx
 * (insufficient resources), 58xxx (system error) -> EPP_EUNAVAIL; 57014 (statement timeout) ->
 * EPP_ETIMEDOUT; everything else (22xxx data exceptions, 23xxx integrity, 42xxx syntax and
 * schema, ...) -> EPP_EINVAL. NULL or "" -> EPP_EIO (no server answer: the connection failed). */
int epp_pg_classify_sqlstate(const char *sqlstate);

/* Classifies the outcome of a statement: res may be NULL (libpq could not send or receive).
 * When the connection is bad the result is EPP_EIO whatever the SQLSTATE says. A row that
 * failed its partition's constraint after routing (a concurrent ATTACH PARTITION narrowed the
 * default partition) is EPP_EAGAIN: routed again, it goes to the new partition. Fills err (may be
 * NULL) and returns the code; 0 for PGRES_COMMAND_OK, TUPLES_OK, COPY_IN/OUT. Does not clear
 * res. */
int epp_pg_result_error(PGconn *conn, const PGresult *res, epp_pg_error_t *err);

/* 1 when err is a per-row data problem that will fail the same way on every retry and
 * concerns one value: SQLSTATE class 22 (data exception), 23 (integrity constraint; the caller
 * handles 23505 itself) and 54000 (program limit exceeded, e.g. an index row too large), unless
 * epp_pg_result_error() found it retriable (a row routed under a partition set that changed
 * meanwhile). */
int epp_pg_is_data_error(const epp_pg_error_t *err);

/* Runs sql (no parameters; may hold several statements) and clears the result.
 * 0 or a negative code with err filled (err may be NULL). */
int epp_pg_exec(PGconn *conn, const char *sql, epp_pg_error_t *err);

/* Runs a parameterised statement with text parameters. When out is non-NULL and the statement
 * succeeds, *out receives the result (caller PQclear()s it); otherwise the result is cleared
 * here. result_format: 0 text, 1 binary. */
int epp_pg_exec_params(PGconn *conn, const char *sql, int nparams, const char *const *values,
                       int result_format, PGresult **out, epp_pg_error_t *err);

/* Runs "COMMIT" and checks that the transaction really committed: a COMMIT of a transaction
 * that had failed answers "ROLLBACK" with PGRES_COMMAND_OK, which is reported here as
 * EPP_EINVAL with message "transaction was rolled back". A lost connection (EPP_EIO) means the
 * outcome is unknown: the caller must find out from the data. */
int epp_pg_commit(PGconn *conn, epp_pg_error_t *err);

/* Sends "ROLLBACK" and ignores the outcome (used on error paths; a dead connection is fine). */
void epp_pg_rollback(PGconn *conn);

/* A one-line version of a libpq message: trailing newline removed, copied into dst. */
void epp_pg_copy_message(char *dst, size_t dstsz, const char *msg);

#endif
