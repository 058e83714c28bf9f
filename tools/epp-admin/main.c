/* epp-admin: entry point. Picks the sub-command, then parses that sub-command's option table
 * (environment variables and flags, as every epp program does) and runs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "epp_config.h"
#include "epp_log.h"
#include "epp_maintain.h"
#include "epp_options.h"
#include "epp_start.h"

/* The options every epp program shares come from epp_options.h; these are epp-admin's own,
 * shared by several of its commands. */
#define OPT_DB           EPP_OPT_PG_URL(admin_conf_t, database_url)
#define OPT_BOOTSTRAP    EPP_OPT_KAFKA_BOOTSTRAP(admin_conf_t, bootstrap)
#define OPT_KAFKA_CONFIG EPP_OPT_KAFKA_CONSUMER_CONFIG(admin_conf_t, kafka_consumer_config)
#define OPT_TOPIC        EPP_OPT_KAFKA_TOPIC(admin_conf_t, topic)
#define OPT_DLQ          EPP_OPT_KAFKA_DLQ_TOPIC(admin_conf_t, dlq_topic)
#define OPT_LOG          EPP_OPTS_LOG(admin_conf_t, log, "warn")
#define OPT_DRY_RUN                                                                                \
    EPP_CONF_BOOL("dry-run", NULL, "false", admin_conf_t, dry_run,                                 \
                  "Change nothing: only show what would be done")
#define OPT_TIMEOUT                                                                                \
    EPP_CONF_DBL("timeout", NULL, "10", 0.1, 3600, admin_conf_t, timeout_s,                        \
                 "Seconds to wait for Kafka (metadata, watermarks, acknowledgements)")
#define OPT_FILTER                                                                                 \
    EPP_CONF_STR("filter", NULL, NULL, admin_conf_t, filter,                                       \
                 "Only messages whose value, key or a header contains this text")
#define OPT_PREVIEW                                                                                \
    EPP_CONF_INT("preview", NULL, "200", 0, 1048576, admin_conf_t, preview,                        \
                 "Bytes of each payload to show")
#define OPT_FORMAT(def)                                                                            \
    EPP_CONF_STR("format", NULL, def, admin_conf_t, format, "Backup format: ndjson or csv")
#define OPT_MARKER                                                                                 \
    EPP_CONF_STR("test-marker", NULL, NULL, admin_conf_t, test_marker,                             \
                 "Only test rows with this marker value (metadata->>'epp_test' = MARKER)")
#define OPT_PREFIX                                                                                 \
    EPP_CONF_STR("user-prefix", NULL, NULL, admin_conf_t, user_prefix,                             \
                 "Only rows whose user_id starts with this prefix (taken literally)")

static const epp_conf_opt_t backup_opts[] = {
    OPT_DB,
    EPP_CONF_STR("from", NULL, NULL, admin_conf_t, from,
                 "First instant included (RFC 3339 or epoch seconds); default: no bound"),
    EPP_CONF_STR("to", NULL, NULL, admin_conf_t, to,
                 "First instant excluded (RFC 3339 or epoch seconds); default: no bound"),
    EPP_CONF_BOOL("where-test", NULL, "false", admin_conf_t, where_test,
                  "Only rows marked as test data (metadata ? 'epp_test')"),
    OPT_MARKER,
    OPT_PREFIX,
    OPT_FORMAT("ndjson"),
    EPP_CONF_STR("out", NULL, NULL, admin_conf_t, out,
                 "Output file, gzip'd when it ends in .gz; default "
                 "epp-backup-UTCTIME.FORMAT.gz"),
    OPT_LOG,
    EPP_CONF_END,
};

static const epp_conf_opt_t restore_opts[] = {
    OPT_DB,
    OPT_FORMAT(NULL),
    OPT_LOG,
    EPP_CONF_END,
};

static const epp_conf_opt_t delete_opts[] = {
    OPT_DB,
    OPT_MARKER,
    OPT_PREFIX,
    OPT_DRY_RUN,
    EPP_CONF_STR("backup-out", NULL, NULL, admin_conf_t, backup_out,
                 "Backup of the deleted rows; default epp-delete-test-UTCTIME.FORMAT.gz"),
    OPT_FORMAT("ndjson"),
    OPT_LOG,
    EPP_CONF_END,
};

static const epp_conf_opt_t migrate_opts[] = {
    OPT_DB,
    EPP_OPT_SQL_DIR(admin_conf_t, sql_dir),
    OPT_LOG,
    EPP_CONF_END,
};

static const epp_conf_opt_t retention_opts[] = {
    OPT_DB, EPP_MAINTAIN_CONF_OPTS(admin_conf_t), OPT_DRY_RUN, OPT_LOG, EPP_CONF_END,
};

static const epp_conf_opt_t dlq_list_opts[] = {
    OPT_BOOTSTRAP,
    OPT_KAFKA_CONFIG,
    OPT_DLQ,
    OPT_FILTER,
    EPP_CONF_INT("limit", NULL, "100", 0, 100000000, admin_conf_t, limit,
                 "Show at most this many messages (0: all)"),
    OPT_PREVIEW,
    OPT_TIMEOUT,
    OPT_LOG,
    EPP_CONF_END,
};

static const epp_conf_opt_t dlq_replay_opts[] = {
    OPT_BOOTSTRAP,
    OPT_KAFKA_CONFIG,
    OPT_TOPIC,
    OPT_DLQ,
    OPT_FILTER,
    EPP_CONF_STR("offsets", NULL, NULL, admin_conf_t, offsets,
                 "Comma list of PARTITION:OFFSET (or OFFSET: that offset in every partition)"),
    EPP_CONF_BOOL("all", NULL, "false", admin_conf_t, all,
                  "Replay every dead letter (when neither --offsets nor --filter is given)"),
    OPT_DRY_RUN,
    OPT_PREVIEW,
    OPT_TIMEOUT,
    OPT_LOG,
    EPP_CONF_END,
};

typedef struct {
    const char *name; /* "backup", "dlq list" */
    const epp_conf_opt_t *opts;
    int (*run)(const admin_conf_t *);
    const char *summary;
    bool positional;
} command_t;

static const command_t commands[] = {
    {"backup", backup_opts, admin_backup,
     "Write events (a time range, optionally only test data) to a NDJSON or CSV file.", false},
    {"restore", restore_opts, admin_restore,
     "Put the rows of a backup FILE back, idempotently, with their rollups.", true},
    {"delete-test", delete_opts, admin_delete_test,
     "Delete the rows marked as test data, after backing them up, keeping rollups exact.", false},
    {"migrate", migrate_opts, admin_migrate, "Apply the schema migrations to DATABASE_URL.", false},
    {"retention", retention_opts, admin_retention,
     "Run (or --dry-run: show) the partition and retention maintenance once.", false},
    {"dlq list", dlq_list_opts, admin_dlq_list,
     "Show the dead letters in the DLQ topic with the reasons they were dead-lettered.", false},
    {"dlq replay", dlq_replay_opts, admin_dlq_replay,
     "Re-publish chosen dead letters to the main topic (acks=all, idempotent producer).", false},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: epp-admin COMMAND [OPTIONS]\n\nOperations on an epp installation.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`epp-admin COMMAND --help` lists the options of a command.\n"
               "`epp-admin --markdown` prints every command's options as Markdown tables.\n");
}

static const epp_conf_opt_t *find_opt(const epp_conf_opt_t *t, const char *arg)
{
    const char *name = arg + 2;
    size_t len = strcspn(name, "=");
    for (; t->flag; t++)
        if (strlen(t->flag) == len && strncmp(t->flag, name, len) == 0)
            return t;
    return NULL;
}

/* epp_config_parse stops at the first positional argument; sub-commands that take one
 * (restore FILE) accept it anywhere, so options are moved in front of "--" and positionals
 * after it. Unknown options are left for the parser to reject. */
static char **reorder(const epp_conf_opt_t *t, int argc, char **argv)
{
    char **out = calloc((size_t)argc + 2, sizeof(*out));
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    if (!out || !pos) {
        free(out);
        free(pos);
        return NULL;
    }
    int n = 0, np = 0;
    out[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (++i < argc)
                pos[np++] = argv[i];
            break;
        }
        if (strncmp(argv[i], "--", 2) == 0) {
            out[n++] = argv[i];
            const epp_conf_opt_t *o = find_opt(t, argv[i]);
            if (o && o->type != EPP_CONF_BOOL && !strchr(argv[i], '=') && i + 1 < argc)
                out[n++] = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            out[n++] = argv[i];
        } else {
            pos[np++] = argv[i];
        }
    }
    out[n++] = "--";
    for (int k = 0; k < np; k++)
        out[n++] = pos[k];
    out[n] = NULL;
    free(pos);
    return out;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--markdown") == 0) {
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
            printf("\n`epp-admin %s`\n\n", commands[i].name);
            epp_config_print_markdown(stdout, commands[i].opts);
        }
        return 0;
    }
    const command_t *cmd = NULL;
    int skip = 1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const char *name = commands[i].name;
        const char *sp = strchr(name, ' ');
        if (!sp && strcmp(argv[1], name) == 0) {
            cmd = &commands[i];
        } else if (sp && argc > 2 && strncmp(argv[1], name, (size_t)(sp - name)) == 0 &&
                   argv[1][sp - name] == '\0' && strcmp(argv[2], sp + 1) == 0) {
            cmd = &commands[i];
            skip = 2;
        }
    }
    if (!cmd) {
        fprintf(stderr, "epp-admin: unknown command '%s%s%s'\n\n", argv[1],
                argc > 2 && strcmp(argv[1], "dlq") == 0 ? " " : "",
                argc > 2 && strcmp(argv[1], "dlq") == 0 ? argv[2] : "");
        usage(stderr);
        return 2;
    }
    /* argv + skip: the sub-command's own argv; its [0] (the command word) is skipped by the
     * parser. */
    int sub_argc = argc - skip;
    char **sub_argv = reorder(cmd->opts, sub_argc, argv + skip);
    if (!sub_argv) {
        fprintf(stderr, "epp-admin: out of memory\n");
        return 1;
    }
    int n_sub = 0;
    while (sub_argv[n_sub])
        n_sub++;
    char prog[64];
    snprintf(prog, sizeof(prog), "epp-admin %s", cmd->name);
    admin_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    int rest = 0;
    epp_start_t start = {
        .prog = prog,
        .service = "epp-admin",
        .summary = cmd->summary,
        .table = cmd->opts,
        .cfg = &conf,
        .log = &conf.log,
        .rest_index = &rest,
    };
    int rc = epp_start(&start, n_sub, sub_argv);
    if (rc != 0) {
        free(sub_argv);
        return epp_start_exit_status(rc);
    }
    int status;
    if (!cmd->positional && rest < n_sub) {
        fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", prog, sub_argv[rest]);
        status = 2;
    } else {
        conf.args = sub_argv + rest;
        conf.n_args = n_sub - rest;
        status = cmd->run(&conf);
    }
    epp_config_free(cmd->opts, &conf);
    free(sub_argv);
    return status;
}
