#include "epp_migrate.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_log.h"
#include "epp_pg.h"

static const char create_table_sql[] = "CREATE TABLE IF NOT EXISTS public.epp_schema_migrations ("
                                       " version integer PRIMARY KEY,"
                                       " name text NOT NULL,"
                                       " applied_at timestamptz NOT NULL DEFAULT now())";

static int fail(char *err, size_t errsz, int code, const char *what, const epp_pg_error_t *pe)
{
    if (err != NULL && errsz > 0) {
        if (pe != NULL)
            snprintf(err, errsz, "%s: %s%s%s", what, pe->message,
                     pe->sqlstate[0] ? " SQLSTATE " : "", pe->sqlstate);
        else
            snprintf(err, errsz, "%s", what);
    }
    return code;
}

/* Versions already recorded, as a sorted array. */
static int load_applied(PGconn *conn, int **versions, size_t *n, epp_pg_error_t *pe)
{
    PGresult *res = NULL;
    int rc = epp_pg_exec_params(conn, "SELECT version FROM public.epp_schema_migrations ORDER BY 1",
                                0, NULL, 0, &res, pe);
    if (rc != 0)
        return rc;
    size_t rows = (size_t)PQntuples(res);
    *versions = calloc(rows ? rows : 1, sizeof **versions);
    if (*versions == NULL) {
        PQclear(res);
        return EPP_ENOMEM;
    }
    for (size_t i = 0; i < rows; i++)
        (*versions)[i] = (int)strtol(PQgetvalue(res, (int)i, 0), NULL, 10); /* an int column */
    *n = rows;
    PQclear(res);
    return 0;
}

static int contains(const int *v, size_t n, int x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

static int apply_one(PGconn *conn, const epp_migration_t *m, char *err, size_t errsz)
{
    epp_pg_error_t pe;
    char what[160];
    int rc = epp_pg_exec(conn, "BEGIN", &pe);
    if (rc != 0)
        return fail(err, errsz, rc, "BEGIN", &pe);
    rc = epp_pg_exec(conn, m->sql, &pe);
    if (rc != 0) {
        epp_pg_rollback(conn);
        snprintf(what, sizeof what, "migration %s", m->name);
        return fail(err, errsz, rc, what, &pe);
    }
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[] = {version, m->name};
    rc = epp_pg_exec_params(conn,
                            "INSERT INTO public.epp_schema_migrations (version, name) "
                            "VALUES ($1::int, $2)",
                            2, params, 0, NULL, &pe);
    if (rc != 0) {
        epp_pg_rollback(conn);
        snprintf(what, sizeof what, "recording migration %s", m->name);
        return fail(err, errsz, rc, what, &pe);
    }
    rc = epp_pg_commit(conn, &pe);
    if (rc != 0) {
        snprintf(what, sizeof what, "committing migration %s", m->name);
        return fail(err, errsz, rc, what, &pe);
    }
    return 0;
}

int epp_migrate_apply(PGconn *conn, const epp_migration_t *list, size_t n, int *applied, char *err,
                      size_t errsz)
{
    if (applied != NULL)
        *applied = 0;
    for (size_t i = 1; i < n; i++)
        if (list[i].version <= list[i - 1].version)
            return fail(err, errsz, EPP_EINVAL, "migrations not sorted by version", NULL);

    epp_pg_error_t pe;
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)EPP_MIGRATE_LOCK_KEY);
    const char *params[] = {key};
    /* A session lock (not a transaction one) so that it spans the per-migration transactions.
     * It is released below, or by the server when the connection dies. */
    int rc =
        epp_pg_exec_params(conn, "SELECT pg_advisory_lock($1::bigint)", 1, params, 0, NULL, &pe);
    if (rc != 0)
        return fail(err, errsz, rc, "pg_advisory_lock", &pe);

    int *done = NULL;
    size_t ndone = 0;
    /* Quiet the NOTICE "relation already exists, skipping" of every start but the first. */
    epp_pg_exec(conn, "SET client_min_messages = warning", NULL);
    rc = epp_pg_exec(conn, create_table_sql, &pe);
    if (rc != 0) {
        rc = fail(err, errsz, rc, "creating epp_schema_migrations", &pe);
        goto out;
    }
    rc = load_applied(conn, &done, &ndone, &pe);
    if (rc != 0) {
        rc = fail(err, errsz, rc, "reading epp_schema_migrations", &pe);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (contains(done, ndone, list[i].version))
            continue;
        rc = apply_one(conn, &list[i], err, errsz);
        if (rc != 0)
            goto out;
        EPP_LOGKV(EPP_LOG_INFO, "migration applied", "name", list[i].name);
        if (applied != NULL)
            (*applied)++;
    }
out:
    free(done);
    epp_pg_exec_params(conn, "SELECT pg_advisory_unlock($1::bigint)", 1, params, 0, NULL, NULL);
    epp_pg_exec(conn, "RESET client_min_messages", NULL);
    return rc;
}

static int cmp_version(const void *a, const void *b)
{
    const epp_migration_t *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static int read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return EPP_ENOTFOUND;
    epp_buf_t b = {0};
    char chunk[8192];
    size_t got;
    int rc = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((rc = epp_buf_append(&b, chunk, got)) != 0)
            break;
    if (rc == 0 && ferror(f))
        rc = EPP_EIO;
    fclose(f);
    if (rc == 0) {
        *out = epp_buf_steal(&b);
        if (*out == NULL)
            rc = EPP_ENOMEM;
    }
    epp_buf_free(&b);
    return rc;
}

void epp_migrate_list_free(epp_migration_t *list, size_t n)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free((char *)list[i].name);
        free((char *)list[i].sql);
    }
    free(list);
}

int epp_migrate_load_dir(const char *dir, epp_migration_t **out, size_t *n, char *err, size_t errsz)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (err != NULL)
            snprintf(err, errsz, "cannot open migrations directory %s: %s", dir, strerror(errno));
        return EPP_ENOTFOUND;
    }
    epp_migration_t *list = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        size_t digits = 0;
        while (isdigit((unsigned char)nm[digits]))
            digits++;
        if (digits == 0 || nm[digits] != '_' || len < 5 || strcmp(nm + len - 4, ".sql") != 0)
            continue;
        if (epp_grow(&list, &cap, count, sizeof *list, 16) != 0) {
            rc = EPP_ENOMEM;
            break;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        char *sql = NULL;
        rc = read_file(path, &sql);
        if (rc != 0) {
            if (err != NULL)
                snprintf(err, errsz, "cannot read %s", path);
            break;
        }
        list[count].version = (int)strtol(nm, NULL, 10); /* the leading digits, checked above */
        list[count].name = strdup(nm);
        list[count].sql = sql;
        count++;
        if (list[count - 1].name == NULL) {
            rc = EPP_ENOMEM;
            break;
        }
    }
    closedir(d);
    if (rc == 0 && count > 0) {
        qsort(list, count, sizeof *list, cmp_version);
        for (size_t i = 1; i < count; i++)
            if (list[i].version == list[i - 1].version) {
                if (err != NULL)
                    snprintf(err, errsz, "two migrations with version %d: %s and %s",
                             list[i].version, list[i - 1].name, list[i].name);
                rc = EPP_EINVAL;
                break;
            }
    }
    if (rc != 0) {
        epp_migrate_list_free(list, count);
        return rc;
    }
    *out = list;
    *n = count;
    return 0;
}
