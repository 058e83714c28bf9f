/* Partition and retention maintenance runs; see epp_maintain.h for the contract and sql/040 for
 * what each step does. */
#include "epp_maintain.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_time.h"

int epp_maintain_parse_duration(const char *s, int64_t *us)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return EPP_EINVAL;
    errno = 0;
    char *end = NULL;
    long long n = strtoll(s, &end, 10);
    if (errno != 0 || n <= 0 || end == NULL || end[0] == '\0' || end[1] != '\0')
        return EPP_EINVAL;
    int64_t unit;
    switch (end[0]) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'w':
        unit = (int64_t)7 * 86400;
        break;
    default:
        return EPP_EINVAL;
    }
    /* Bounded well below overflow: 10,000 years. */
    if (n > 10000LL * 366 * 86400 / unit)
        return EPP_EINVAL;
    *us = (int64_t)n * unit * EPP_USEC_PER_SEC;
    return 0;
}

int epp_maintain_opts_init(epp_maintain_opts_t *o, const char *events, const char *rollups,
                           int64_t ahead_days, char *err, size_t errsz)
{
    memset(o, 0, sizeof *o);
    o->ahead_days = ahead_days;
    const char *names[2] = {"EVENTS_RETENTION", "ROLLUP_RETENTION"};
    const char *vals[2] = {events, rollups};
    int64_t *outs[2] = {&o->events_keep_us, &o->rollups_keep_us};
    for (int i = 0; i < 2; i++) {
        if (vals[i] == NULL || vals[i][0] == '\0')
            continue;
        if (epp_maintain_parse_duration(vals[i], outs[i]) != 0) {
            snprintf(err, errsz,
                     "%s: \"%s\" is not a duration (a positive integer and a unit: s, m, h, d or "
                     "w, e.g. 90d)",
                     names[i], vals[i]);
            return EPP_EINVAL;
        }
    }
    return 0;
}

/* The keep interval as a statement parameter: microseconds, or NULL (keep forever). */
static const char *keep_param(int64_t us, char *buf, size_t size)
{
    if (us <= 0)
        return NULL;
    snprintf(buf, size, "%lld", (long long)us);
    return buf;
}

static const char plan_sql[] =
    "SELECT action, object, (extract(epoch FROM lo) * 1000000)::int8,"
    " (extract(epoch FROM hi) * 1000000)::int8, coalesce(est_rows, -1)"
    " FROM public.epp_maintenance_plan($1::int, $2::int8 * interval '1 microsecond',"
    " $3::int8 * interval '1 microsecond')";

int epp_maintain_plan(PGconn *conn, const epp_maintain_opts_t *o, epp_maintain_step_t **steps,
                      size_t *n, epp_pg_error_t *pe)
{
    char ahead[24], ek[24], rk[24];
    snprintf(ahead, sizeof ahead, "%lld", (long long)o->ahead_days);
    const char *values[3] = {ahead, keep_param(o->events_keep_us, ek, sizeof ek),
                             keep_param(o->rollups_keep_us, rk, sizeof rk)};
    PGresult *res = NULL;
    *steps = NULL;
    *n = 0;
    int rc = epp_pg_exec_params(conn, plan_sql, 3, values, 0, &res, pe);
    if (rc != 0)
        return rc;
    size_t rows = (size_t)PQntuples(res);
    epp_maintain_step_t *out = calloc(rows ? rows : 1, sizeof *out);
    if (out == NULL) {
        PQclear(res);
        return EPP_ENOMEM;
    }
    for (size_t i = 0; i < rows; i++) {
        epp_maintain_step_t *s = &out[i];
        snprintf(s->action, sizeof s->action, "%s", PQgetvalue(res, (int)i, 0));
        snprintf(s->object, sizeof s->object, "%s", PQgetvalue(res, (int)i, 1));
        s->lo_us = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
        s->hi_us = strtoll(PQgetvalue(res, (int)i, 3), NULL, 10);
        s->est_rows = strtoll(PQgetvalue(res, (int)i, 4), NULL, 10);
    }
    PQclear(res);
    *steps = out;
    *n = rows;
    return 0;
}

static int apply_step(PGconn *conn, const epp_maintain_step_t *s, int64_t *rows, epp_pg_error_t *pe)
{
    char lo[EPP_TIME_BUFSZ], hi[EPP_TIME_BUFSZ];
    epp_time_format(s->lo_us, lo);
    epp_time_format(s->hi_us, hi);
    const char *values[4] = {s->action, s->object, lo, hi};
    PGresult *res = NULL;
    int rc = epp_pg_exec_params(conn,
                                "SELECT public.epp_maintenance_apply($1, $2, $3::timestamptz,"
                                " $4::timestamptz)",
                                4, values, 0, &res, pe);
    if (rc != 0)
        return rc;
    *rows = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
    PQclear(res);
    return 0;
}

/* Runs a one-parameter statement with the run's advisory lock key; *got (may be NULL) receives
 * whether its boolean result was true. */
static int lock_key_exec(PGconn *conn, const char *sql, int *got, epp_pg_error_t *pe)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)EPP_MAINTAIN_LOCK_KEY);
    const char *values[1] = {key};
    PGresult *res = NULL;
    int rc = epp_pg_exec_params(conn, sql, 1, values, 0, &res, pe);
    if (rc != 0)
        return rc;
    if (got != NULL)
        *got = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

int epp_maintain_run(PGconn *conn, const epp_maintain_opts_t *o, const volatile sig_atomic_t *stop,
                     epp_maintain_report_fn report, void *ud, size_t *done, epp_pg_error_t *pe)
{
    if (done != NULL)
        *done = 0;
    int got = 0;
    int rc = lock_key_exec(conn, "SELECT pg_try_advisory_lock($1::bigint)", &got, pe);
    if (rc != 0)
        return rc;
    if (!got) {
        snprintf(pe->message, sizeof pe->message,
                 "another maintenance run holds the lock (epp-consumer or epp-admin)");
        pe->sqlstate[0] = '\0';
        return pe->code = EPP_EAGAIN;
    }
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%dms", EPP_MAINTAIN_LOCK_TIMEOUT_MS);
    const char *values[1] = {timeout};
    epp_maintain_step_t *steps = NULL;
    size_t n = 0;
    rc = epp_pg_exec_params(conn, "SELECT set_config('lock_timeout', $1, false)", 1, values, 0,
                            NULL, pe);
    if (rc == 0)
        rc = epp_maintain_plan(conn, o, &steps, &n, pe);
    int first_err = rc;
    for (size_t i = 0; rc == 0 && i < n && !(stop != NULL && *stop); i++) {
        int64_t rows = -1;
        epp_pg_error_t se;
        memset(&se, 0, sizeof se);
        int src = EPP_EAGAIN;
        /* 55P03 (lock_not_available) maps to EPP_EAGAIN: readers or writers held public.events
         * for longer than lock_timeout; give them a moment and ask again. */
        for (int attempt = 0; attempt < 3 && src == EPP_EAGAIN; attempt++) {
            if (attempt > 0)
                usleep(500000);
            src = apply_step(conn, &steps[i], &rows, &se);
        }
        if (report != NULL)
            report(ud, &steps[i], src, rows, &se);
        if (src == 0 && done != NULL)
            (*done)++;
        if (src != 0 && first_err == 0) {
            first_err = src;
            *pe = se;
        }
        if (src != 0 && PQstatus(conn) != CONNECTION_OK)
            break;
    }
    free(steps);
    if (PQstatus(conn) == CONNECTION_OK) {
        epp_pg_exec(conn, "RESET lock_timeout", NULL);
        lock_key_exec(conn, "SELECT pg_advisory_unlock($1::bigint)", NULL, NULL);
    }
    return first_err;
}
