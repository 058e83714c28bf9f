/* epp_start: the start-up every epp program makes, written once. In order:
 *   1. the configuration (epp_config_parse: defaults < environment < flags), which answers
 *      --help, --help-markdown and --version itself;
 *   2. LOG_LEVEL and LOG_FORMAT checked (a bad value is refused like any bad option) and the
 *      logger started with them;
 *   3. the effective configuration logged (info level, secrets redacted);
 *   4. the signals set up, before any thread starts so that every thread inherits the mask.
 *
 * Called once from main() before any other thread exists. Not thread-safe. */
#ifndef EPP_START_H
#define EPP_START_H

#include <signal.h>

#include "epp_config.h"
#include "epp_options.h"

enum {
    /* SIGPIPE ignored: a peer that goes away mid-write is an error return, not a dead process. */
    EPP_START_IGNORE_SIGPIPE = 1 << 0,
    /* SIGINT, SIGTERM and SIGHUP blocked in every thread; the main thread takes them with
     * epp_start_wait_stop(). For programs whose main thread has nothing else to do. */
    EPP_START_BLOCK_STOP = 1 << 1,
    /* SIGINT, SIGTERM and SIGHUP set *stop to 1 (a handler; no SA_RESTART, so a blocking call
     * in the main thread returns EINTR). For programs whose main thread runs a loop. */
    EPP_START_FLAG_STOP = 1 << 2,
};

typedef struct {
    const char *prog;            /* "epp-ingest": --help, error messages */
    const char *service;         /* the log's "service" field; NULL: prog. Borrowed for the
                                    life of the process (a literal) */
    const char *summary;         /* --help's description */
    const epp_conf_opt_t *table; /* the program's option table */
    void *cfg;                   /* the struct the table fills */
    const epp_opts_log_t *log;   /* the log options inside cfg (EPP_OPTS_LOG) */
    int *rest_index;             /* NULL: positional arguments refused; else as in
                                    epp_config_parse */
    unsigned flags;              /* EPP_START_* */
    volatile sig_atomic_t *stop; /* with EPP_START_FLAG_STOP */
} epp_start_t;

/* Runs steps 1-4. Returns 0 when the program should go on (cfg filled: the caller frees it with
 * epp_config_free); otherwise cfg is already freed and the program exits at once: 1 after --help,
 * --help-markdown or --version (exit status 0), EPP_EINVAL after a bad option or log setting,
 * which is printed to stderr as "prog: message" (exit status 2). */
int epp_start(const epp_start_t *s, int argc, char **argv);

/* The exit status for a non-zero epp_start() result: 0 after --help, 2 after a bad option. */
static inline int epp_start_exit_status(int rc)
{
    return rc > 0 ? 0 : 2;
}

/* With EPP_START_BLOCK_STOP: waits for SIGINT, SIGTERM or SIGHUP and returns its number. */
int epp_start_wait_stop(void);

#endif
