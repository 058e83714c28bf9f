#include "consumer_lag.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consumer_pipeline.h"

/* How long one broker query may take; also the longest consumer_lag_stop() waits. */
#define QUERY_TIMEOUT_MS 1000

struct consumer_lag {
    rd_kafka_t *rk;
    char *topic;
    epp_metric_t *gauge;
    consumer_lag_next_fn next;
    void *ud;
    int interval_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop; /* under lock */
    int kick; /* under lock: run a round now */
    /* Lag thread only: */
    epp_series_t *series[CONSUMER_MAX_TRACKED_PARTITIONS];
    unsigned char reported[CONSUMER_MAX_TRACKED_PARTITIONS]; /* set since last assigned */
};

static int stopping(consumer_lag_t *l)
{
    pthread_mutex_lock(&l->lock);
    int stop = l->stop;
    pthread_mutex_unlock(&l->lock);
    return stop;
}

static void set_lag(consumer_lag_t *l, int32_t p, int64_t lag)
{
    if (l->series[p] == NULL) {
        char label[16];
        snprintf(label, sizeof label, "%" PRId32, p);
        l->series[p] = epp_metric_series(l->gauge, label);
    }
    if (l->series[p] != NULL)
        epp_series_set(l->series[p], (double)lag);
}

/* One round: the assignment, the high watermarks from the brokers, the stored offsets. */
static void update(consumer_lag_t *l)
{
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (rd_kafka_assignment(l->rk, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR || assigned == NULL)
        return;
    unsigned char is_assigned[CONSUMER_MAX_TRACKED_PARTITIONS] = {0};
    rd_kafka_topic_partition_list_t *ends = rd_kafka_topic_partition_list_new(assigned->cnt);
    for (int i = 0; ends != NULL && i < assigned->cnt; i++) {
        int32_t p = assigned->elems[i].partition;
        if (p < 0 || p >= CONSUMER_MAX_TRACKED_PARTITIONS ||
            strcmp(assigned->elems[i].topic, l->topic) != 0)
            continue;
        is_assigned[p] = 1;
        /* As a ListOffsets "timestamp", RD_KAFKA_OFFSET_END (-1) asks for the latest offset:
         * the high watermark. */
        rd_kafka_topic_partition_list_add(ends, l->topic, p)->offset = RD_KAFKA_OFFSET_END;
    }
    rd_kafka_topic_partition_list_destroy(assigned);
    if (ends != NULL && ends->cnt > 0 &&
        rd_kafka_offsets_for_times(l->rk, ends, QUERY_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < ends->cnt && !stopping(l); i++) {
            int32_t p = ends->elems[i].partition;
            int64_t hi = ends->elems[i].offset, lo = -1, unused;
            if (ends->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR || hi < 0)
                continue; /* unknown this round: the last value stays */
            int64_t next = l->next(l->ud, p);
            /* Nothing stored yet: everything still in the topic is waiting. */
            if (next < 0 && rd_kafka_query_watermark_offsets(l->rk, l->topic, p, &lo, &unused,
                                                             QUERY_TIMEOUT_MS) != 0)
                continue;
            if (next < 0)
                next = lo;
            set_lag(l, p, hi > next ? hi - next : 0);
            l->reported[p] = 1;
        }
    }
    if (ends != NULL)
        rd_kafka_topic_partition_list_destroy(ends);
    /* Revoked partitions: another consumer of the group reports them now. */
    for (int32_t p = 0; p < CONSUMER_MAX_TRACKED_PARTITIONS; p++) {
        if (l->reported[p] && !is_assigned[p]) {
            set_lag(l, p, 0);
            l->reported[p] = 0;
        }
    }
}

static void *lag_main(void *arg)
{
    consumer_lag_t *l = arg;
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        pthread_mutex_unlock(&l->lock);
        update(l);
        pthread_mutex_lock(&l->lock);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += l->interval_ms / 1000;
        deadline.tv_nsec += (long)(l->interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!l->stop && !l->kick)
            if (pthread_cond_timedwait(&l->cond, &l->lock, &deadline) == ETIMEDOUT)
                break;
        l->kick = 0;
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

consumer_lag_t *consumer_lag_start(rd_kafka_t *rk, const char *topic, epp_metric_t *gauge,
                                   consumer_lag_next_fn next, void *ud, int interval_ms)
{
    consumer_lag_t *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->topic = strdup(topic);
    if (l->topic == NULL) {
        free(l);
        return NULL;
    }
    l->rk = rk;
    l->gauge = gauge;
    l->next = next;
    l->ud = ud;
    l->interval_ms = interval_ms > 0 ? interval_ms : 1000;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    if (pthread_create(&l->thread, NULL, lag_main, l) != 0) {
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        free(l->topic);
        free(l);
        return NULL;
    }
    return l;
}

/* Sets *flag (a field of l, under its lock) and wakes the thread. */
static void wake(consumer_lag_t *l, int *flag)
{
    pthread_mutex_lock(&l->lock);
    *flag = 1;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

void consumer_lag_kick(consumer_lag_t *l)
{
    if (l != NULL)
        wake(l, &l->kick);
}

void consumer_lag_stop(consumer_lag_t *l)
{
    if (l == NULL)
        return;
    wake(l, &l->stop);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l->topic);
    free(l);
}
