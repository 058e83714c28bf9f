/* The maintenance thread; see consumer_maintain.h. */
#include "consumer_maintain.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "epp_error.h"
#include "epp_log.h"
#include "epp_pg.h"
#include "epp_time.h"

struct consumer_maintain {
    const consumer_conf_t *conf;
    const epp_maintain_opts_t *opts;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    volatile sig_atomic_t stop; /* under mu (also read without it between steps) */
    PGcancel *cancel;           /* of the connection in use; under mu */
    epp_metric_t *steps;
    epp_series_t *failures, *last_success;
};

consumer_maintain_t *consumer_maintain_create(const consumer_conf_t *conf,
                                              const epp_maintain_opts_t *opts, epp_metrics_t *reg)
{
    consumer_maintain_t *cm = calloc(1, sizeof *cm);
    if (cm == NULL)
        return NULL;
    cm->conf = conf;
    cm->opts = opts;
    pthread_mutex_init(&cm->mu, NULL);
    pthread_cond_init(&cm->cv, NULL);
    cm->steps = epp_metrics_counter(reg, "epp_consumer_maintenance_steps_total",
                                    "Partition and retention maintenance steps done", "action");
    epp_metric_t *f = epp_metrics_counter(reg, "epp_consumer_maintenance_failures_total",
                                          "Maintenance steps or runs that failed (retried on the "
                                          "next run)",
                                          NULL);
    epp_metric_t *g =
        epp_metrics_gauge(reg, "epp_consumer_maintenance_last_success_timestamp_seconds",
                          "End of the last maintenance run without a failure", NULL);
    if (cm->steps == NULL || f == NULL || g == NULL ||
        (cm->failures = epp_metric_default(f)) == NULL ||
        (cm->last_success = epp_metric_default(g)) == NULL) {
        consumer_maintain_destroy(cm);
        return NULL;
    }
    return cm;
}

static void report(void *ud, const epp_maintain_step_t *s, int rc, int64_t rows,
                   const epp_pg_error_t *pe)
{
    consumer_maintain_t *cm = ud;
    char lo[EPP_TIME_BUFSZ], hi[EPP_TIME_BUFSZ], n[24];
    epp_time_format(s->lo_us, lo);
    epp_time_format(s->hi_us, hi);
    snprintf(n, sizeof n, "%" PRId64, rows);
    if (rc != 0) {
        epp_series_inc(cm->failures);
        EPP_LOGKV(EPP_LOG_WARN, "maintenance step failed; retried on the next run", "action",
                  s->action, "object", s->object, "error", pe->message, "sqlstate", pe->sqlstate);
        return;
    }
    epp_series_t *series = epp_metric_series(cm->steps, s->action);
    if (series != NULL)
        epp_series_inc(series);
    EPP_LOGKV(EPP_LOG_INFO, "maintenance step done", "action", s->action, "object", s->object,
              "from", lo, "to", hi, "rows", n);
}

/* One run on a fresh connection (a run is rare: one connection less to keep open). */
static void run_once(consumer_maintain_t *cm)
{
    PGconn *conn = NULL;
    epp_pg_error_t pe;
    memset(&pe, 0, sizeof pe);
    int rc = epp_pg_connect(cm->conf->database_url, (int)cm->conf->pg_connect_timeout_s,
                            "epp-consumer maintenance", &conn, &pe);
    if (rc == 0) {
        pthread_mutex_lock(&cm->mu);
        cm->cancel = PQgetCancel(conn);
        pthread_mutex_unlock(&cm->mu);
        size_t done = 0;
        rc = epp_maintain_run(conn, cm->opts, &cm->stop, report, cm, &done, &pe);
        pthread_mutex_lock(&cm->mu);
        PQfreeCancel(cm->cancel);
        cm->cancel = NULL;
        pthread_mutex_unlock(&cm->mu);
    }
    PQfinish(conn);
    if (rc == 0) {
        epp_series_set(cm->last_success, (double)epp_time_now_us() / 1e6);
    } else if (rc == EPP_EAGAIN && pe.sqlstate[0] == '\0') {
        EPP_DEBUG("maintenance: another run holds the lock; skipping this round");
    } else if (!cm->stop) {
        epp_series_inc(cm->failures);
        EPP_LOGKV(EPP_LOG_WARN, "maintenance run failed; retrying on the next run", "error",
                  pe.message, "sqlstate", pe.sqlstate);
    }
}

static void *thread_main(void *arg)
{
    consumer_maintain_t *cm = arg;
    int64_t interval_us = cm->conf->maintenance_interval_s * EPP_USEC_PER_SEC;
    for (;;) {
        run_once(cm);
        pthread_mutex_lock(&cm->mu);
        int64_t until = epp_time_mono_us() + interval_us;
        while (!cm->stop) {
            int64_t left = until - epp_time_mono_us();
            if (left <= 0)
                break;
            /* Slices of at most a second: a stop is also noticed without a signal. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t slice = left < EPP_USEC_PER_SEC ? left : EPP_USEC_PER_SEC;
            ts.tv_sec += (time_t)(slice / EPP_USEC_PER_SEC);
            ts.tv_nsec += (long)(slice % EPP_USEC_PER_SEC) * 1000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&cm->cv, &cm->mu, &ts);
        }
        int stop = cm->stop;
        pthread_mutex_unlock(&cm->mu);
        if (stop)
            break;
    }
    return NULL;
}

int consumer_maintain_start(consumer_maintain_t *cm)
{
    if (pthread_create(&cm->thread, NULL, thread_main, cm) != 0)
        return EPP_ENOMEM;
    cm->started = 1;
    return 0;
}

void consumer_maintain_destroy(consumer_maintain_t *cm)
{
    if (cm == NULL)
        return;
    pthread_mutex_lock(&cm->mu);
    cm->stop = 1;
    if (cm->cancel != NULL) {
        char buf[128];
        PQcancel(cm->cancel, buf, sizeof buf);
    }
    pthread_cond_broadcast(&cm->cv);
    pthread_mutex_unlock(&cm->mu);
    if (cm->started)
        pthread_join(cm->thread, NULL);
    pthread_mutex_destroy(&cm->mu);
    pthread_cond_destroy(&cm->cv);
    free(cm);
}
