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
    /* Positional arguments after the options (restore FILE). Borrowed from argv. */
    char **args;
    int n_args;
} admin_conf_t;

int admin_backup(const admin_conf_t *conf);
int admin_restore(const admin_conf_t *conf);
int admin_delete_test(const admin_conf_t *conf);
int admin_migrate(const admin_conf_t *conf);
int admin_dlq_list(const admin_conf_t *conf);
int admin_dlq_replay(const admin_conf_t *conf);

#endif
