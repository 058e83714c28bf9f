#include "consumer_pipeline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "epp_error.h"
#include "epp_log.h"

struct consumer_pipeline {
    consumer_writer_t *w;
    rd_kafka_t *rk;
    const char *topic;
    int threaded;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    consumer_batch_t *inflight; /* being written (NULL: idle) */
    consumer_batch_t *spare;    /* written and reset, ready to be refilled */
    int quit;
    int last_rc;
    _Atomic int64_t committed[CONSUMER_MAX_TRACKED_PARTITIONS];
};

int64_t consumer_pipeline_committed_next(consumer_pipeline_t *p, int32_t partition)
{
    if (partition < 0 || partition >= CONSUMER_MAX_TRACKED_PARTITIONS)
        return -1;
    return atomic_load(&p->committed[partition]);
}

void consumer_pipeline_set_committed_next(consumer_pipeline_t *p, int32_t partition, int64_t next)
{
    if (partition >= 0 && partition < CONSUMER_MAX_TRACKED_PARTITIONS)
        atomic_store(&p->committed[partition], next);
}

/* Writes b, then tells Kafka (advisory) and the lag metric. Returns the write's code. b is
 * emptied by the polling thread, when it takes b back to refill it: its messages were allocated
 * there, and freed there they go back to that thread's cache instead of crossing malloc arenas
 * (which doubled both threads' CPU). */
static int write_batch(consumer_pipeline_t *p, consumer_batch_t *b)
{
    int rc = consumer_writer_write(p->w, b);
    if (rc == 0 && b->nparts > 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)b->nparts);
        for (size_t i = 0; i < b->nparts; i++) {
            rd_kafka_topic_partition_list_add(l, p->topic, b->parts[i].partition)->offset =
                b->parts[i].next;
            consumer_pipeline_set_committed_next(p, b->parts[i].partition, b->parts[i].next);
        }
        /* Asynchronous and advisory: on assignment the offsets come from Postgres. */
        rd_kafka_commit(p->rk, l, 1);
        rd_kafka_topic_partition_list_destroy(l);
    }
    return rc;
}

static void *writer_main(void *arg)
{
    consumer_pipeline_t *p = arg;
    /* Visible in top -H and /proc/PID/task/TID/comm (consumer.lanes counts them). */
    pthread_setname_np(pthread_self(), "epp-writer");
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->inflight == NULL && !p->quit)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->inflight == NULL && p->quit)
            break;
        consumer_batch_t *b = p->inflight;
        pthread_mutex_unlock(&p->mu);
        int rc = write_batch(p, b);
        pthread_mutex_lock(&p->mu);
        p->last_rc = rc;
        p->spare = b;
        p->inflight = NULL;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

consumer_pipeline_t *consumer_pipeline_create(consumer_writer_t *w, rd_kafka_t *rk,
                                              const char *topic, consumer_batch_t *spare,
                                              int threaded)
{
    consumer_pipeline_t *p = spare != NULL ? calloc(1, sizeof *p) : NULL;
    if (p == NULL) {
        consumer_batch_destroy(spare);
        return NULL;
    }
    p->w = w;
    p->rk = rk;
    p->topic = topic;
    p->threaded = threaded;
    p->spare = spare;
    for (int i = 0; i < CONSUMER_MAX_TRACKED_PARTITIONS; i++)
        atomic_init(&p->committed[i], -1);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (threaded) {
        if (pthread_create(&p->thread, NULL, writer_main, p) != 0) {
            consumer_pipeline_destroy(p);
            return NULL;
        }
        p->thread_started = 1;
    }
    return p;
}

int consumer_pipeline_busy(consumer_pipeline_t *p)
{
    if (!p->threaded)
        return 0;
    pthread_mutex_lock(&p->mu);
    int busy = p->inflight != NULL;
    pthread_mutex_unlock(&p->mu);
    return busy;
}

int consumer_pipeline_drain(consumer_pipeline_t *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->inflight != NULL)
        pthread_cond_wait(&p->cv, &p->mu);
    int rc = p->last_rc;
    p->last_rc = 0;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

consumer_batch_t *consumer_pipeline_submit(consumer_pipeline_t *p, consumer_batch_t *b)
{
    if (!p->threaded) {
        p->last_rc = write_batch(p, b);
        consumer_batch_reset(b);
        return b;
    }
    pthread_mutex_lock(&p->mu);
    while (p->inflight != NULL)
        pthread_cond_wait(&p->cv, &p->mu);
    consumer_batch_t *next = p->spare;
    p->spare = NULL;
    p->inflight = b;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    consumer_batch_reset(next);
    return next;
}

void consumer_pipeline_destroy(consumer_pipeline_t *p)
{
    if (p == NULL)
        return;
    if (p->thread_started) {
        consumer_pipeline_drain(p);
        pthread_mutex_lock(&p->mu);
        p->quit = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    consumer_batch_destroy(p->spare);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
