/* epp_migrate: applies the schema migrations (sql/NNN_name.sql) to a database.
 *
 * Each migration is applied once, in order of NNN, in its own transaction, and recorded in
 * public.epp_schema_migrations(version int primary key, name text, applied_at timestamptz).
 * The whole run holds a session-level Postgres advisory lock, so several processes starting
 * together (two consumers, a consumer and `epp-admin migrate`) apply each migration exactly once:
 * the second one waits, then finds everything applied.
 *
 * Where the SQL comes from:
 * - Embedded: the build turns the sql/NNN_*.sql files into a generated C file
 * (event_consumer/embed_sql.cmake), compiled into the static library target `epp_sql`, which
 * defines epp_sql_migrations[] below. Programs that apply migrations link `epp_sql` as well as
 * `epp` (a container then needs no sql/ directory next to the binary).
 * - A directory: epp_migrate_load_dir() reads NNN_*.sql files at run time (the EPP_SQL_DIR
 *   override, for trying out a migration without a rebuild).
 *
 * Threads: no global state; the connection belongs to the calling thread. */
#ifndef EPP_MIGRATE_H
#define EPP_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

typedef struct {
    int version;      /* NNN */
    const char *name; /* "001_events.sql" */
    const char *sql;  /* the whole file; may hold several statements, no BEGIN/COMMIT */
} epp_migration_t;

/* The migrations embedded at build time, sorted by version (defined in target epp_sql). */
extern const epp_migration_t epp_sql_migrations[];
extern const size_t epp_sql_migrations_count;

/* The advisory lock key every migrating process takes (pg_advisory_lock(key)). */
#define EPP_MIGRATE_LOCK_KEY 0x6570706d6967LL /* "eppmig" */

/* Applies, in order, every migration of list[0..n) whose version is not yet recorded.
 * list must be sorted by version with no duplicates (EPP_EINVAL otherwise). *applied (may be
 * NULL) receives how many were applied by this call. Returns 0 or a negative EPP_E* code with a
 * message in err: retriable codes when the database went away (the caller may retry the whole
 * call), EPP_EINVAL when a migration's SQL failed (its transaction was rolled back). */
int epp_migrate_apply(PGconn *conn, const epp_migration_t *list, size_t n, int *applied, char *err,
                      size_t errsz);

/* Reads dir/NNN_*.sql (NNN: digits, then '_') into a list sorted by version. On success *out
 * and *n receive the list (free with epp_migrate_list_free). EPP_ENOTFOUND when dir cannot be
 * read, EPP_EINVAL on two files with one version, EPP_ENOMEM. */
int epp_migrate_load_dir(const char *dir, epp_migration_t **out, size_t *n, char *err,
                         size_t errsz);

/* Frees a list from epp_migrate_load_dir. Accepts NULL. */
void epp_migrate_list_free(epp_migration_t *list, size_t n);

#endif
