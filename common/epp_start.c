/* epp_start: see epp_start.h. */
#include "epp_start.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "epp_error.h"
#include "epp_log.h"

/* The flag EPP_START_FLAG_STOP sets; written once by epp_start before any handler can run. */
static volatile sig_atomic_t *stop_flag;

static void on_stop(int sig)
{
    (void)sig;
    *stop_flag = 1;
}

static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

static void setup_signals(const epp_start_t *s)
{
    if (s->flags & EPP_START_IGNORE_SIGPIPE)
        signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    stop_signals(&set);
    if (s->flags & EPP_START_BLOCK_STOP)
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    if ((s->flags & EPP_START_FLAG_STOP) && s->stop != NULL) {
        stop_flag = s->stop;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    }
}

int epp_start(const epp_start_t *s, int argc, char **argv)
{
    char err[512];
    int rc = epp_config_parse(s->table, s->cfg, argc, argv, s->prog, s->summary, s->rest_index, err,
                              sizeof err);
    epp_log_level_t level = EPP_LOG_INFO;
    int json = 1;
    if (rc == 0 && epp_log_level_parse(s->log->level, &level) < 0) {
        snprintf(err, sizeof err, "invalid value \"%s\" for --log-level (LOG_LEVEL): %s",
                 s->log->level, "must be debug, info, warn, error or off");
        rc = EPP_EINVAL;
    }
    if (rc == 0 && epp_log_format_parse(s->log->format, &json) < 0) {
        snprintf(err, sizeof err, "invalid value \"%s\" for --log-format (LOG_FORMAT): %s",
                 s->log->format, "must be json or text");
        rc = EPP_EINVAL;
    }
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "%s: %s\n", s->prog, err);
        epp_config_free(s->table, s->cfg);
        return rc < 0 ? EPP_EINVAL : 1;
    }
    epp_log_init(s->service != NULL ? s->service : s->prog, level, json);
    epp_config_log(s->table, s->cfg);
    setup_signals(s);
    return 0;
}

int epp_start_wait_stop(void)
{
    sigset_t set;
    stop_signals(&set);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}
