/* epp-admin: operations on a running platform (docs/contract.md §8). One configuration struct for
 * every sub-command; each sub-command has its own option table (main.c), so --help lists
 * exactly the options that sub-command reads.
 *
 * Every sub-command returns a process exit status: 0 success, 1 failure (reported on stderr),
 * 2 bad usage. Single-threaded. */
#ifndef EPP_ADMIN_H
#define EPP_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "epp_options.h"

typedef struct {
    char *database_url;
    char *bootstrap;
    char *topic;
    char *dlq_topic;
    char *from, *to;
    bool where_test;
    char *test_marker;
    char *user_prefix;
    char *format;
    char *out;
    bool dry_run;
    bool all;
    char *backup_out;
    char *filter;
    int64_t limit;
    char *offsets;
    int64_t preview;
    double timeout_s;
    char *sql_dir;
    char *kafka_consumer_config; /* its connection items only (dlq commands) */
    epp_opts_log_t log;
    char *events_retention; /* EPP_MAINTAIN_CONF_OPTS (common/epp_maintain.h) */
    char *rollup_retention;
    int64_t partitions_ahead;
    /* Positional arguments after the options (restore FILE). Borrowed from argv. */
    char **args;
    int n_args;
} admin_conf_t;

int admin_backup(const admin_conf_t *conf);
int admin_restore(const admin_conf_t *conf);
int admin_delete_test(const admin_conf_t *conf);
int admin_migrate(const admin_conf_t *conf);
int admin_retention(const admin_conf_t *conf);
int admin_dlq_list(const admin_conf_t *conf);
int admin_dlq_replay(const admin_conf_t *conf);

/* The per-bucket user bitmaps (sql/031) kept exact by restore and delete-test (admin_users.c),
 * in the caller's transaction; 0 or a negative EPP_E* code after reporting on stderr. */
struct pg_conn;
/* Appends the uids of the rows in the temporary table epp_restored ("timestamp", user_id: the
 * rows restore inserted) to the bitmaps of their minute, hour and day. */
int admin_users_add_restored(struct pg_conn *conn);
/* Removes, from every bucket the rows of the temporary table epp_deleted fell in, the uids of
 * their users who have no event left in it. Run after the events' DELETE and the generation
 * bump, in their transaction. */
int admin_users_remove_deleted(struct pg_conn *conn);

#endif
