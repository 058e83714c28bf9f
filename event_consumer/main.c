/* epp-consumer: reads the events topic as a consumer group and stores each event exactly once
 * in Postgres (docs/contract.md §5). See event_consumer/README.md for the design. */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "consumer_batch.h"
#include "consumer_config.h"
#include "consumer_dlq.h"
#include "consumer_kafka.h"
#include "consumer_lag.h"
#include "consumer_maintain.h"
#include "consumer_merge.h"
#include "consumer_metrics.h"
#include "consumer_pipeline.h"
#include "consumer_positions.h"
#include "consumer_writer.h"
#include "epp_error.h"
#include "epp_http.h"
#include "epp_log.h"
#include "epp_metrics.h"
#include "epp_start.h"
#include "epp_time.h"
#include "epp_trace.h"

/* Set by SIGINT, SIGTERM or SIGHUP (epp_start). */
static volatile sig_atomic_t g_stop;

/* A lane: one database writer (its own connection and transactions), its writer thread, and the
 * batch being filled for it. Partition p always goes to lane p % nlanes, so each partition's
 * offsets move in one lane's transactions only, while the lanes' transactions run in parallel
 * on separate Postgres backends. */
typedef struct {
    consumer_dlq_t *dlq;
    consumer_writer_t *writer;
    consumer_pipeline_t *pipe;
    consumer_batch_t *batch; /* being filled by the polling thread */
    consumer_merge_t *pool;  /* messages on their way into batch (CONSUMER_MERGE_BATCHES) */
} lane_t;

#define MAX_LANES 16

typedef struct {
    consumer_conf_t conf;
    consumer_metrics_t m;
    epp_metrics_t *reg;
    epp_http_server_t *http;
    epp_tracer_t *tracer; /* NULL: tracing off */
    rd_kafka_t *rk;
    epp_maintain_opts_t maintain_opts;
    consumer_maintain_t *maintain; /* the partition and retention maintenance thread */
    lane_t lanes[MAX_LANES];
    size_t nlanes;
    consumer_positions_t *pos; /* read positions, for the writers' gap check */
    /* 1 while everything /ready reads exists: set once the lanes and the Kafka handle are up,
     * cleared when the poll loop ends. app_destroy stops the HTTP server before it frees
     * anything, so a probe that saw 1 finishes before what it reads goes. */
    atomic_int serving;
    int failpoint_assign_at_end;
    consumer_lag_t *lag;      /* the epp_consumer_lag thread */
    consumer_msgs_t *msgs;    /* the messages' copies (the poll thread's) */
    consumer_refill_t refill; /* when librdkafka's fetcher needs a wake-up (poll thread) */
} app_t;

static lane_t *lane_of(app_t *a, int32_t partition)
{
    size_t n = a->nlanes > 0 ? a->nlanes : 1; /* set before any partition can arrive */
    return &a->lanes[(size_t)(partition < 0 ? 0 : partition) % n];
}

static void flush_lane(lane_t *l)
{
    if (l->batch->n == 0)
        return;
    /* Rollups over every storable row, computed here so that the writer thread's fast path
     * finds them ready. */
    consumer_batch_aggregate(l->batch, 0);
    l->batch = consumer_pipeline_submit(l->pipe, l->batch);
}

/* 1 when the lane's pool holds n batches' worth of rows or bytes. */
static int pool_holds(const app_t *a, const lane_t *l, size_t n)
{
    return consumer_merge_count(l->pool) >= n * (size_t)a->conf.batch_size ||
           consumer_merge_bytes(l->pool) >= n * (size_t)a->conf.batch_bytes;
}

/* Moves the oldest pooled messages into the lane's empty batch. 0 or EPP_ENOMEM. */
static int take(const app_t *a, lane_t *l)
{
    return consumer_merge_take(l->pool, l->batch, (size_t)a->conf.batch_size,
                               (size_t)a->conf.batch_bytes);
}

/* When the lane's pooled messages make a batch, its writer being free (monotonic us): at once
 * when the pool holds a batch's worth, else when its oldest message has waited
 * CONSUMER_BATCH_MS. 0 when nothing is pooled. */
static int64_t lane_due_us(const app_t *a, const lane_t *l)
{
    int64_t oldest = consumer_merge_oldest_us(l->pool);
    if (oldest == 0 || pool_holds(a, l, 1))
        return oldest;
    return oldest + a->conf.batch_ms * 1000;
}

/* Moves the lane's work along without waiting unless it must: a batch goes to the writer as soon
 * as the writer is free; the poll thread waits for the writer only when the pool is full
 * (CONSUMER_MERGE_BATCHES), and meanwhile reads on for the other lanes. A batch is taken from
 * the pool when the pool is full (ready before the writer frees), or when the pool is due
 * (lane_due_us) and the writer free. 0 or EPP_ENOMEM. */
static int service_lane(const app_t *a, lane_t *l, int64_t now)
{
    const size_t full = (size_t)a->conf.merge_batches;
    for (;;) {
        int busy = consumer_pipeline_busy(l->pipe);
        if (l->batch->n > 0) {
            if (busy && !pool_holds(a, l, full))
                return 0;
            flush_lane(l); /* waits for the writer when it is busy */
            continue;
        }
        int64_t due = lane_due_us(a, l);
        if (due == 0)
            return 0;
        if (!pool_holds(a, l, full) && (busy || now < due))
            return 0;
        if (take(a, l) != 0)
            return EPP_ENOMEM;
    }
}

/* Submits every lane's pooled messages and batch and waits for all writes. Returns 0 or
 * EPP_ESTATE (also when a pool could not be emptied: out of memory). */
static int flush_all(app_t *a)
{
    int rc = 0;
    for (size_t i = 0; i < a->nlanes; i++) {
        lane_t *l = &a->lanes[i];
        flush_lane(l);
        while (consumer_merge_count(l->pool) > 0) {
            if (take(a, l) != 0) {
                EPP_ERROR("out of memory moving messages into a batch");
                rc = EPP_ESTATE;
                break;
            }
            flush_lane(l);
        }
    }
    for (size_t i = 0; i < a->nlanes; i++)
        if (consumer_pipeline_drain(a->lanes[i].pipe) != 0)
            rc = EPP_ESTATE;
    return rc;
}

/* Sets a partition's read position; without memory for it the writers' gap check cannot work,
 * so the process stops at once (like any allocation failure in a rebalance callback). */
static void set_position(app_t *a, int32_t partition, int64_t pos)
{
    if (consumer_positions_set(a->pos, partition, pos) == EPP_ENOMEM) {
        EPP_ERROR("out of memory recording a read position");
        abort();
    }
}

static int on_assign(void *ud, rd_kafka_topic_partition_list_t *parts)
{
    app_t *a = ud;
    /* Lane 0's writer is used from this thread now, so nothing may be in flight. */
    for (size_t i = 0; i < a->nlanes; i++)
        consumer_pipeline_drain(a->lanes[i].pipe);
    int32_t *ids = calloc((size_t)parts->cnt + 1, sizeof *ids);
    int64_t *next = calloc((size_t)parts->cnt + 1, sizeof *next);
    if (ids == NULL || next == NULL) {
        EPP_ERROR("out of memory loading offsets");
        abort();
    }
    for (int i = 0; i < parts->cnt; i++)
        ids[i] = parts->elems[i].partition;
    int rc = consumer_writer_load_offsets(a->lanes[0].writer, ids, (size_t)parts->cnt, next);
    if (rc == EPP_ENOMEM) {
        EPP_ERROR("out of memory loading offsets");
        abort();
    }
    if (rc != 0) {
        /* A stop came while Postgres could not be read: no start offset is known, and any
         * guess skips (the end) or re-reads everything (the beginning). The partitions are
         * assigned paused; their next owner starts them at the stored offsets. */
        EPP_LOGKV(EPP_LOG_ERROR, "stored offsets could not be read; reading nothing", "error",
                  epp_strerror(rc));
        for (int i = 0; i < parts->cnt; i++) {
            parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING; /* never fetched: paused */
            set_position(a, ids[i], CONSUMER_POS_UNKNOWN);
        }
        free(ids);
        free(next);
        return -1;
    }
    for (int i = 0; i < parts->cnt; i++) {
        parts->elems[i].offset = next[i] >= 0 ? next[i] : RD_KAFKA_OFFSET_BEGINNING;
        set_position(a, ids[i], next[i] >= 0 ? next[i] : -1);
        if (a->failpoint_assign_at_end) {
            /* Test-only: what this callback once did on a failed load -- start at the end,
             * telling no one -- so that a test can show the writers refuse the gap. */
            parts->elems[i].offset = RD_KAFKA_OFFSET_END;
            set_position(a, ids[i], CONSUMER_POS_UNKNOWN);
        }
        consumer_pipeline_set_committed_next(lane_of(a, ids[i])->pipe, ids[i], next[i]);
        char p[16], o[32];
        snprintf(p, sizeof p, "%" PRId32, ids[i]);
        snprintf(o, sizeof o, "%" PRId64, next[i]);
        EPP_LOGKV(EPP_LOG_INFO, "starting partition at the offset stored in Postgres", "partition",
                  p, "next_offset", next[i] >= 0 ? o : "beginning");
    }
    free(ids);
    free(next);
    return 0;
}

static void on_revoke(void *ud, const rd_kafka_topic_partition_list_t *parts)
{
    app_t *a = ud;
    flush_all(a);
    /* Whatever arrives for these partitions later vouches for nothing before itself. */
    for (int i = 0; i < parts->cnt; i++)
        set_position(a, parts->elems[i].partition, CONSUMER_POS_UNKNOWN);
}

/* 1 when a writer found that a batch does not continue the stored offsets: this process must
 * stop writing and leave the group, so that the partitions restart at the stored offsets. */
static int any_writer_broken(const app_t *a)
{
    for (size_t i = 0; i < a->nlanes; i++)
        if (consumer_writer_broken(a->lanes[i].writer))
            return 1;
    return 0;
}

static int ready(void *ud, char *reason, size_t reason_size)
{
    app_t *a = ud;
    if (g_stop || !atomic_load(&a->serving)) {
        snprintf(reason, reason_size, g_stop ? "stopping" : "starting");
        return 0;
    }
    /* A fresh connection attempt with a short timeout, so that a probe never hangs on a
     * black-holed database host. */
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {a->conf.database_url, "2", NULL};
    if (!consumer_writer_db_ok(a->lanes[0].writer) || PQpingParams(keys, vals, 1) != PQPING_OK) {
        snprintf(reason, reason_size, "database unreachable");
        return 0;
    }
    if (a->rk == NULL || !consumer_kafka_reachable(a->rk, 1000)) {
        snprintf(reason, reason_size, "kafka unreachable");
        return 0;
    }
    for (size_t i = 0; i < a->nlanes; i++) {
        if (consumer_writer_dlq_blocked(a->lanes[i].writer)) {
            snprintf(reason, reason_size,
                     "dead letters cannot be produced: partitions held (see the log)");
            return 0;
        }
    }
    return 1;
}

/* For the lag thread: the next offset stored for a partition (any thread). */
static int64_t committed_next(void *ud, int32_t partition)
{
    return consumer_pipeline_committed_next(lane_of(ud, partition)->pipe, partition);
}

static void handle_error_message(app_t *a, const rd_kafka_message_t *msg)
{
    char p[16], o[32];
    snprintf(p, sizeof p, "%" PRId32, msg->partition);
    snprintf(o, sizeof o, "%" PRId64, msg->offset);
    if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
        msg->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        /* The stored offset is outside the topic's retention: those messages expired before
         * they were stored. Never skipped silently: the partition stalls here until an
         * operator decides (see README, "Offset out of range"). */
        epp_series_inc(a->m.offset_resets);
        EPP_LOGKV(EPP_LOG_ERROR,
                  "OFFSET OUT OF RANGE: messages expired before they were stored; partition "
                  "stalled (auto.offset.reset=error)",
                  "partition", p, "offset", o, "error", rd_kafka_message_errstr(msg));
        return;
    }
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    EPP_LOGKV(EPP_LOG_WARN, "consumer error", "partition", p, "error",
              rd_kafka_message_errstr(msg));
}

static int run(app_t *a)
{
    while (!g_stop) {
        /* Until the next pool is due; 1 ms while a lane's work waits for its busy writer. */
        int timeout_ms = 100;
        int64_t now = epp_time_mono_us();
        for (size_t i = 0; i < a->nlanes; i++) {
            const lane_t *l = &a->lanes[i];
            int64_t due = lane_due_us(a, l);
            if (l->batch->n == 0 && due == 0)
                continue;
            int ms = 1;
            if (l->batch->n == 0 && !consumer_pipeline_busy(l->pipe)) {
                int64_t left = due - now;
                ms = left <= 0 ? 0 : (int)((left + 999) / 1000);
            }
            if (ms < timeout_ms)
                timeout_ms = ms;
        }
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(a->rk, timeout_ms);
        now = epp_time_mono_us();
        if (msg != NULL) {
            if (msg->err) {
                handle_error_message(a, msg);
                rd_kafka_message_destroy(msg);
            } else {
                epp_series_inc(a->m.consumed);
                consumer_refill_seen(&a->refill, msg->len);
                lane_t *l = lane_of(a, msg->partition);
                int64_t from = consumer_positions_advance(a->pos, msg->partition, msg->offset);
                /* Copied, so that librdkafka's fetch buffer goes as soon as it is read. */
                consumer_msg_t *copy = consumer_msg_copy(a->msgs, msg);
                rd_kafka_message_destroy(msg);
                /* The pool owns copy from here, also when adding fails. */
                if (copy == NULL || consumer_merge_push(l->pool, copy, from, now) != 0) {
                    EPP_ERROR("out of memory holding a message");
                    return 1;
                }
            }
        }
        if (consumer_refill_due(&a->refill, now)) {
            epp_series_inc(a->m.fetch_wakeups);
            consumer_lag_kick(a->lag);
        }
        for (size_t i = 0; i < a->nlanes; i++) {
            if (service_lane(a, &a->lanes[i], now) != 0) {
                EPP_ERROR("out of memory decoding a message");
                return 1;
            }
        }
        if (any_writer_broken(a)) {
            EPP_ERROR("leaving: a batch did not continue the stored offsets (see OFFSET GAP); "
                      "the partitions restart at the offsets stored in Postgres");
            flush_all(a);
            return 1;
        }
    }
    EPP_INFO("stopping: writing the batch in hand");
    return flush_all(a) == 0 ? 0 : 1;
}

static void app_destroy(app_t *a)
{
    /* First: the HTTP handlers read the lanes and the Kafka handle (/ready) and the metrics
     * (/metrics); destroying the server waits for the handlers running and serves no more. */
    atomic_store(&a->serving, 0);
    epp_http_destroy(a->http);
    a->http = NULL;
    /* The lag thread reads the Kafka handle and the pipelines. */
    consumer_lag_stop(a->lag);
    a->lag = NULL;
    consumer_maintain_destroy(a->maintain);
    for (size_t i = 0; i < MAX_LANES; i++) {
        lane_t *l = &a->lanes[i];
        consumer_pipeline_destroy(l->pipe);
        consumer_merge_destroy(l->pool);
        consumer_batch_destroy(l->batch);
    }
    consumer_msgs_destroy(a->msgs); /* after every message */
    consumer_refill_destroy(&a->refill);
    if (a->rk != NULL)
        rd_kafka_destroy(a->rk);
    for (size_t i = 0; i < MAX_LANES; i++) {
        consumer_writer_destroy(a->lanes[i].writer);
        consumer_dlq_destroy(a->lanes[i].dlq);
    }
    consumer_positions_destroy(a->pos);
    /* Last of what can end a span (the writer threads are gone): exports what is queued. */
    epp_tracer_destroy(a->tracer);
    epp_metrics_destroy(a->reg);
    epp_config_free(consumer_conf_opts, &a->conf);
}

int main(int argc, char **argv)
{
    static app_t app;
    app_t *a = &app;
    char err[512];
    epp_start_t start = {
        .prog = "epp-consumer",
        .summary = "Stores the events topic in Postgres, exactly once per event_id.",
        .table = consumer_conf_opts,
        .cfg = &a->conf,
        .log = &a->conf.log,
        .flags = EPP_START_IGNORE_SIGPIPE | EPP_START_FLAG_STOP,
        .stop = &g_stop,
    };
    int rc = epp_start(&start, argc, argv);
    if (rc != 0)
        return epp_start_exit_status(rc);
    epp_pgcopy_format_t fmt;
    if (strcmp(a->conf.copy_format, "binary") == 0) {
        fmt = EPP_PGCOPY_BINARY;
    } else if (strcmp(a->conf.copy_format, "text") == 0) {
        fmt = EPP_PGCOPY_TEXT;
    } else {
        fprintf(stderr, "epp-consumer: CONSUMER_COPY_FORMAT must be binary or text\n");
        epp_config_free(consumer_conf_opts, &a->conf);
        return 2;
    }
    if (epp_maintain_opts_init(&a->maintain_opts, a->conf.events_retention,
                               a->conf.rollup_retention, a->conf.partitions_ahead, err,
                               sizeof err) != 0) {
        fprintf(stderr, "epp-consumer: %s\n", err);
        epp_config_free(consumer_conf_opts, &a->conf);
        return 2;
    }

    int exit_code = 1;
    a->reg = epp_metrics_create();
    if (a->reg == NULL || consumer_metrics_init(&a->m, a->reg) != 0 ||
        epp_metrics_add_process(a->reg, "epp-consumer") != 0) {
        EPP_ERROR("cannot set up metrics");
        goto out;
    }
    /* NULL without an endpoint: then every span call is a no-op. */
    a->tracer = epp_tracer_start(&a->conf.trace, "epp-consumer", a->reg, err, sizeof err);
    if (a->tracer == NULL && err[0]) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot start tracing", "error", err);
        exit_code = 2;
        goto out;
    }
    epp_http_opts_t ho;
    epp_http_opts_default(&ho);
    ho.service = "epp-consumer";
    epp_http_opts_set(&ho, &a->conf.http);
    ho.threads = 1;
    ho.max_connections = 64;
    ho.metrics = a->reg;
    ho.ready = ready;
    ho.ready_ud = a;
    a->http = epp_http_create(&ho, err, sizeof err);
    if (a->http == NULL || epp_http_start(a->http, err, sizeof err) != 0) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot start the HTTP server", "error", err);
        goto out;
    }

    a->pos = consumer_positions_create();
    a->msgs = consumer_msgs_create();
    if (a->pos == NULL || a->msgs == NULL) {
        EPP_ERROR("out of memory");
        goto out;
    }
    if (consumer_failpoint("assign_at_end")) {
        a->failpoint_assign_at_end = 1;
        EPP_WARN("failpoint assign_at_end is armed: partitions start at their end");
    }
    a->nlanes = (size_t)a->conf.writers;
    for (size_t i = 0; i < a->nlanes; i++) {
        lane_t *l = &a->lanes[i];
        l->dlq = consumer_dlq_create(&a->conf, err, sizeof err);
        if (l->dlq == NULL) {
            EPP_LOGKV(EPP_LOG_ERROR, "cannot create the dead-letter producer", "error", err);
            goto out;
        }
        l->writer = consumer_writer_create(&a->conf, l->dlq, &a->m, &g_stop);
        l->batch = consumer_batch_create(fmt);
        l->pool = consumer_merge_create();
        if (l->writer == NULL || l->batch == NULL || l->pool == NULL) {
            EPP_ERROR("out of memory");
            goto out;
        }
        consumer_writer_set_tracer(l->writer, a->tracer);
        l->batch->trace = a->tracer != NULL;
    }
    /* Migrations before joining the group: no partition is taken before the schema is there.
     * The other lanes connect on their first batch. */
    rc = consumer_writer_start(a->lanes[0].writer);
    if (rc != 0) {
        exit_code = rc == EPP_ESTATE ? 0 : 1;
        if (rc == EPP_ESTATE)
            EPP_INFO("stopped while waiting for Postgres at start-up (nothing was in hand)");
        goto out;
    }
    a->maintain = consumer_maintain_create(&a->conf, &a->maintain_opts, a->reg);
    if (a->maintain == NULL || consumer_maintain_start(a->maintain) != 0) {
        EPP_ERROR("cannot start the maintenance thread");
        goto out;
    }
    consumer_kafka_hooks_t hooks = {on_assign, on_revoke, a};
    a->rk = consumer_kafka_create(&a->conf, &hooks, err, sizeof err);
    if (a->rk == NULL) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot create the Kafka consumer", "error", err);
        goto out;
    }
    if (consumer_failpoint("no_fetch_wakeups")) {
        /* Test-only: librdkafka's fetcher left to its own wake-ups, as before them. */
        EPP_WARN("failpoint no_fetch_wakeups is armed: the fetcher is not woken");
    } else if (consumer_refill_init(&a->refill, a->rk) != 0) {
        EPP_ERROR("cannot hold librdkafka's consumer queue");
        goto out;
    }
    for (size_t i = 0; i < a->nlanes; i++) {
        lane_t *l = &a->lanes[i];
        consumer_batch_t *spare = consumer_batch_create(fmt);
        if (spare != NULL)
            spare->trace = a->tracer != NULL;
        l->pipe =
            consumer_pipeline_create(l->writer, a->rk, a->conf.topic, spare, a->conf.pipeline);
        if (l->pipe == NULL) {
            EPP_ERROR("cannot start a writer thread");
            goto out;
        }
    }
    a->lag = consumer_lag_start(a->rk, a->conf.topic, a->m.lag, committed_next, a, 1000);
    if (a->lag == NULL) {
        EPP_ERROR("cannot start the lag thread");
        goto out;
    }
    EPP_LOGKV(EPP_LOG_INFO, "consuming", "topic", a->conf.topic, "group", a->conf.group_id);
    atomic_store(&a->serving, 1);
    exit_code = run(a);
    atomic_store(&a->serving, 0);
    consumer_lag_stop(a->lag);
    a->lag = NULL;
    consumer_refill_destroy(&a->refill); /* its hold on the queue, before the consumer closes */
    /* Leaves the group; the revoke callback runs with nothing left in hand. */
    rd_kafka_consumer_close(a->rk);
    EPP_INFO(exit_code == 0 ? "stopped" : "stopped with the batch in hand unwritten");
out:
    app_destroy(a);
    return exit_code;
}
