/* The librdkafka producer, its poll thread, and fatal-error recovery. See ingest_producer.h. */
#include "ingest_producer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_kafka.h"
#include "epp_log.h"
#include "epp_time.h"

#define READY_INTERVAL_MS   2000
#define METADATA_TIMEOUT_MS 1500
#define RETIRE_TIMEOUT_US   (10 * EPP_USEC_PER_SEC)

/* One librdkafka handle and the thread that polls it. Replaced as a whole after a fatal error. */
typedef struct inst {
    ingest_producer_t *owner;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    pthread_t poller;
    bool poller_started;
    atomic_bool stop;
    unsigned gen;
} inst_t;

struct ingest_producer {
    ingest_producer_opts_t opts; /* strings below are our copies */
    char *bootstrap;
    char *topic;
    char *overrides;
    int poll_fd; /* external_poll: eventfd written by librdkafka when its main queue fills */

    pthread_rwlock_t lock; /* guards cur: read to use it, write to swap it */
    inst_t *cur;
    atomic_uint generation; /* cur->gen; written by the supervisor only */

    pthread_t supervisor;
    bool supervisor_started;
    pthread_mutex_t mu; /* with cv: wakes the supervisor early (fatal error, stop) */
    pthread_cond_t cv;
    bool stopping;
    atomic_bool fatal_pending;
    atomic_int ready;

    epp_series_t *recreated;
    epp_series_t *fail_reason[5];
};

static const char *const reasons[5] = {"timed_out", "purged", "fatal", "queue_full", "error"};

const char *ingest_producer_reason(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return reasons[0];
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return reasons[1];
    case RD_KAFKA_RESP_ERR__FATAL:
        return reasons[2];
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return reasons[3];
    default:
        return reasons[4];
    }
}

static void count_failure(ingest_producer_t *p, rd_kafka_resp_err_t err)
{
    const char *r = ingest_producer_reason(err);
    for (size_t i = 0; i < 5; i++)
        if (r == reasons[i] && p->fail_reason[i])
            epp_series_inc(p->fail_reason[i]);
}

/* --- librdkafka callbacks (poll thread, or librdkafka's own threads for logs) --- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    inst_t *in = opaque;
    ingest_producer_t *p = in->owner;
    if (m->err)
        count_failure(p, m->err);
    p->opts.on_delivery(m->_private, m->err, p->opts.ud);
}

static void wake_supervisor(ingest_producer_t *p)
{
    pthread_mutex_lock(&p->mu);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    inst_t *in = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        if (in->gen != atomic_load(&in->owner->generation)) {
            /* A retired instance (being purged after its own fatal error): nothing to do. */
            EPP_LOGKV(EPP_LOG_DEBUG, "fatal error on a retired kafka producer", "reason", reason);
            return;
        }
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        EPP_LOGKV(EPP_LOG_ERROR, "kafka producer fatal error; recreating the producer", "error",
                  rd_kafka_err2name(orig), "reason", buf);
        atomic_store(&in->owner->fatal_pending, true);
        wake_supervisor(in->owner);
        return;
    }
    epp_kafka_error_cb(rk, err, reason, opaque);
}

static void *poll_main(void *arg)
{
    inst_t *in = arg;
    pthread_setname_np(pthread_self(), "ingest-dr"); /* visible in top -H and perf */
    if (in->owner->opts.external_poll) {
        /* The HTTP workers serve the reports of the current instance; this sweep only covers
         * gaps (no worker running yet or any more) and a retired instance after a fatal
         * error. Blocking in rd_kafka_poll here would take every report batch away from the
         * workers and cost a wake-up each. */
        while (!atomic_load(&in->stop)) {
            struct timespec ts = {0, 10L * 1000 * 1000};
            nanosleep(&ts, NULL);
            rd_kafka_poll(in->rk, 0);
        }
    }
    while (!atomic_load(&in->stop))
        rd_kafka_poll(in->rk, 100);
    /* Serve what is left so no report is lost between the last poll and destroy. */
    rd_kafka_poll(in->rk, 0);
    return NULL;
}

/* --- instances --- */

static void inst_destroy(inst_t *in)
{
    if (!in)
        return;
    if (in->poller_started) {
        atomic_store(&in->stop, true);
        pthread_join(in->poller, NULL);
    }
    if (in->rkt)
        rd_kafka_topic_destroy(in->rkt);
    if (in->rk)
        rd_kafka_destroy(in->rk);
    free(in);
}

static inst_t *inst_create(ingest_producer_t *p, char *err, size_t errsz)
{
    inst_t *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    in->owner = p;
    in->gen = atomic_load(&p->generation);
    const ingest_producer_opts_t *o = &p->opts;
    /* acks=all and idempotence are what make a 202 a promise; they come before the operator's
     * KAFKA_PRODUCER_CONFIG only so that a deliberate override is possible for experiments. The
     * request timeout follows the delivery timeout so that a hung broker cannot hold a message
     * (and its HTTP request) past KAFKA_DELIVERY_TIMEOUT_MS. Keys are partitioned with murmur2,
     * as the Java client does, so other producers of the same user_id agree on the partition. */
    int delivery = o->delivery_timeout_ms;
    /* librdkafka scans for timed-out messages about once a second, so a message may fail up
     * to ~1 s after message.timeout.ms: keep that margin inside KAFKA_DELIVERY_TIMEOUT_MS so
     * the 503 arrives within it. */
    int msg_timeout = delivery - (delivery / 4 < 1000 ? delivery / 4 : 1000);
    const epp_kafka_prop_t props[] = {
        EPP_KAFKA_PROP("bootstrap.servers", p->bootstrap),
        EPP_KAFKA_PROP("client.id", "epp-ingest"),
        EPP_KAFKA_PROP("enable.idempotence", "true"),
        EPP_KAFKA_PROP("acks", "all"),
        EPP_KAFKA_PROP_INT("message.timeout.ms", msg_timeout),
        EPP_KAFKA_PROP_INT("request.timeout.ms", msg_timeout < 30000 ? msg_timeout : 30000),
        EPP_KAFKA_PROP_INT("linger.ms", o->linger_ms),
        EPP_KAFKA_PROP_INT("batch.num.messages", o->batch_num_messages),
        EPP_KAFKA_PROP_INT("queue.buffering.max.messages", o->queue_max_messages),
        EPP_KAFKA_PROP_INT("queue.buffering.max.kbytes", o->queue_max_kbytes),
        EPP_KAFKA_PROP("partitioner", "murmur2_random"),
        EPP_KAFKA_PROP("socket.nagle.disable", "true"),
        EPP_KAFKA_PROP("log.connection.close", "false"),
        /* Reconnect quickly when a broker comes back: the default backoff grows to 10 s, and
         * every second of it is a second of 503s after the outage is over. */
        EPP_KAFKA_PROP("reconnect.backoff.ms", "50"),
        EPP_KAFKA_PROP("reconnect.backoff.max.ms", "1000"),
    };
    const epp_kafka_passthrough_t pass = {p->overrides, "KAFKA_PRODUCER_CONFIG", NULL};
    rd_kafka_conf_t *conf =
        epp_kafka_conf_create(props, sizeof props / sizeof props[0], &pass, err, errsz);
    if (!conf) {
        free(in);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, in);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb); /* replaces epp_kafka_error_cb, which it calls */

    char rderr[512];
    in->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof rderr);
    if (!in->rk) {
        snprintf(err, errsz, "rd_kafka_new: %s", rderr);
        rd_kafka_conf_destroy(conf);
        free(in);
        return NULL;
    }
    conf = NULL; /* now owned by rk */
    if (p->poll_fd >= 0) {
        /* librdkafka writes this 8-byte counter increment when a report (or any event) lands
         * in the main queue after it was last served: once per batch, not per message. */
        static const uint64_t one = 1;
        rd_kafka_queue_t *mq = rd_kafka_queue_get_main(in->rk);
        rd_kafka_queue_io_event_enable(mq, p->poll_fd, &one, sizeof one);
        rd_kafka_queue_destroy(mq);
    }
    in->rkt = rd_kafka_topic_new(in->rk, p->topic, NULL);
    if (!in->rkt) {
        snprintf(err, errsz, "rd_kafka_topic_new(%s): %s", p->topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        inst_destroy(in);
        return NULL;
    }
    if (pthread_create(&in->poller, NULL, poll_main, in) != 0) {
        snprintf(err, errsz, "pthread_create failed");
        inst_destroy(in);
        return NULL;
    }
    in->poller_started = true;
    return in;
}

/* Waits (polling thread still running) until every report of in is served, or the deadline. */
static size_t wait_outq(inst_t *in, int64_t timeout_us)
{
    int64_t deadline = epp_time_mono_us() + timeout_us;
    int n;
    while ((n = rd_kafka_outq_len(in->rk)) > 0 && epp_time_mono_us() < deadline) {
        struct timespec ts = {0, 5L * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return n > 0 ? (size_t)n : 0;
}

/* After a fatal error: a new instance takes the traffic, the old one's queue is purged (each
 * purged message's request gets 503), and the old handle is destroyed once its reports are
 * served. Supervisor thread only. */
static void recover(ingest_producer_t *p)
{
    char err[512];
    /* Cleared first, so that a fatal error of the new instance is never lost. */
    atomic_store(&p->fatal_pending, false);
    atomic_fetch_add(&p->generation, 1);
    inst_t *fresh = inst_create(p, err, sizeof err);
    if (!fresh) {
        atomic_fetch_sub(&p->generation, 1);
        atomic_store(&p->fatal_pending, true);
        EPP_LOGKV(EPP_LOG_ERROR, "could not recreate the kafka producer; retrying", "error", err);
        return; /* fatal_pending stays set: the next tick retries */
    }
    pthread_rwlock_wrlock(&p->lock);
    inst_t *old = p->cur;
    p->cur = fresh;
    pthread_rwlock_unlock(&p->lock);
    if (p->recreated)
        epp_series_inc(p->recreated);

    rd_kafka_purge(old->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    size_t left = wait_outq(old, RETIRE_TIMEOUT_US);
    char gen[16], nleft[24];
    snprintf(nleft, sizeof nleft, "%zu", left);
    if (left)
        EPP_LOGKV(EPP_LOG_ERROR, "old kafka producer still has unreported messages", "count",
                  nleft);
    snprintf(gen, sizeof gen, "%u", atomic_load(&p->generation));
    EPP_LOGKV(EPP_LOG_WARN, "kafka producer recreated", "generation", gen);
    inst_destroy(old);
}

static void check_ready(ingest_producer_t *p)
{
    char reason[256] = "";
    /* The supervisor is the only thread that swaps cur, so reading it here needs no lock. */
    int rc = epp_kafka_ping(p->cur->rk, p->topic, METADATA_TIMEOUT_MS, reason, sizeof reason);
    /* The brokers answer but the topic is missing (a new cluster; auto-creation is off): create
     * it here, on the supervisor, so that start-up never waits for Kafka and a cluster that comes
     * up later still gets its topic. */
    if (rc == EPP_ENOTFOUND && p->opts.topic_partitions > 0) {
        char err[256] = "";
        int c = epp_kafka_topic_ensure(p->cur->rk, p->topic, p->opts.topic_partitions,
                                       METADATA_TIMEOUT_MS, err, sizeof err);
        if (c < 0)
            EPP_LOGKV(EPP_LOG_WARN, "cannot create the kafka topic", "error", err);
        else
            rc = epp_kafka_ping(p->cur->rk, p->topic, METADATA_TIMEOUT_MS, reason, sizeof reason);
    }
    int ok = rc >= 0;
    int was = atomic_exchange(&p->ready, ok);
    if (was != ok)
        EPP_LOGKV(ok ? EPP_LOG_INFO : EPP_LOG_WARN, ok ? "kafka reachable" : "kafka unreachable",
                  "reason", ok ? NULL : reason);
}

static void *supervisor_main(void *arg)
{
    ingest_producer_t *p = arg;
    pthread_setname_np(pthread_self(), "ingest-super");
    for (;;) {
        if (atomic_load(&p->fatal_pending))
            recover(p);
        check_ready(p);
        pthread_mutex_lock(&p->mu);
        if (!p->stopping && !atomic_load(&p->fatal_pending)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += READY_INTERVAL_MS / 1000;
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
        bool stop = p->stopping;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            return NULL;
    }
}

static double outq_gauge(void *arg)
{
    return (double)ingest_producer_outq(arg);
}

/* --- public --- */

ingest_producer_t *ingest_producer_create(const ingest_producer_opts_t *opts, char *err,
                                          size_t errsz)
{
    ingest_producer_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    p->opts = *opts;
    p->bootstrap = strdup(opts->bootstrap);
    p->topic = strdup(opts->topic);
    p->overrides = opts->overrides ? strdup(opts->overrides) : NULL;
    p->poll_fd = -1;
    if (opts->external_poll) {
        p->poll_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (p->poll_fd < 0)
            p->opts.external_poll = 0; /* the poll thread serves the reports then */
    }
    pthread_rwlock_init(&p->lock, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!p->bootstrap || !p->topic || (opts->overrides && !p->overrides)) {
        snprintf(err, errsz, "out of memory");
        ingest_producer_destroy(p);
        return NULL;
    }
    if (opts->metrics) {
        epp_metric_t *fam = epp_metrics_counter(
            opts->metrics, "epp_ingest_delivery_failures_total",
            "Messages Kafka did not acknowledge (their events were answered 503)", "reason");
        for (size_t i = 0; fam && i < 5; i++)
            p->fail_reason[i] = epp_metric_series(fam, reasons[i]);
        epp_metric_t *rec =
            epp_metrics_counter(opts->metrics, "epp_ingest_producer_recreated_total",
                                "Kafka producers recreated after a fatal error", NULL);
        p->recreated = rec ? epp_metric_default(rec) : NULL;
        epp_metrics_gauge_fn(opts->metrics, "epp_ingest_producer_queue_messages",
                             "Messages in the producer queue awaiting a delivery report",
                             outq_gauge, p);
    }
    p->cur = inst_create(p, err, errsz);
    if (!p->cur) {
        ingest_producer_destroy(p);
        return NULL;
    }
    if (pthread_create(&p->supervisor, NULL, supervisor_main, p) != 0) {
        snprintf(err, errsz, "pthread_create failed");
        ingest_producer_destroy(p);
        return NULL;
    }
    p->supervisor_started = true;
    return p;
}

int ingest_producer_send(ingest_producer_t *p, const char *key, size_t key_len, char *value,
                         size_t value_len, const char *traceparent, void *msg_opaque)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    rd_kafka_header_add(hdrs, "traceparent", 11, traceparent, -1);
    rd_kafka_header_add(hdrs, "content-type", 12, "application/json", 16);

    pthread_rwlock_rdlock(&p->lock);
    unsigned gen = p->cur->gen;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->cur->rk, RD_KAFKA_V_RKT(p->cur->rkt), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(msg_opaque),
        RD_KAFKA_V_END);
    pthread_rwlock_unlock(&p->lock);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0; /* value and hdrs now owned by librdkafka */
    rd_kafka_headers_destroy(hdrs);
    count_failure(p, err);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return EPP_EAGAIN;
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        return EPP_ETOOBIG;
    if (err == RD_KAFKA_RESP_ERR__FATAL && gen == atomic_load(&p->generation)) {
        atomic_store(&p->fatal_pending, true);
        wake_supervisor(p);
    }
    return EPP_EUNAVAIL;
}

int ingest_producer_poll_fd(ingest_producer_t *p)
{
    return p->poll_fd;
}

void ingest_producer_poll(ingest_producer_t *p, int fd_readable)
{
    if (fd_readable && p->poll_fd >= 0) {
        /* Drained before serving: a report queued after the serve below writes again. */
        uint64_t v;
        ssize_t r = read(p->poll_fd, &v, sizeof v);
        (void)r;
    }
    pthread_rwlock_rdlock(&p->lock);
    if (p->cur)
        rd_kafka_poll(p->cur->rk, 0);
    pthread_rwlock_unlock(&p->lock);
}

int ingest_producer_ready(ingest_producer_t *p)
{
    return atomic_load(&p->ready) && !atomic_load(&p->fatal_pending);
}

size_t ingest_producer_outq(ingest_producer_t *p)
{
    pthread_rwlock_rdlock(&p->lock);
    int n = p->cur ? rd_kafka_outq_len(p->cur->rk) : 0;
    pthread_rwlock_unlock(&p->lock);
    return n > 0 ? (size_t)n : 0;
}

int ingest_producer_inject_fatal(ingest_producer_t *p)
{
    pthread_rwlock_rdlock(&p->lock);
    rd_kafka_resp_err_t err = rd_kafka_test_fatal_error(
        p->cur->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "injected by a test");
    pthread_rwlock_unlock(&p->lock);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : EPP_EINVAL;
}

unsigned ingest_producer_generation(ingest_producer_t *p)
{
    pthread_rwlock_rdlock(&p->lock);
    unsigned g = p->cur ? p->cur->gen : 0;
    pthread_rwlock_unlock(&p->lock);
    return g;
}

size_t ingest_producer_drain(ingest_producer_t *p, int timeout_ms, int fail_rest)
{
    pthread_rwlock_rdlock(&p->lock);
    inst_t *in = p->cur;
    size_t left = wait_outq(in, (int64_t)timeout_ms * 1000);
    if (left && fail_rest) {
        rd_kafka_purge(in->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        left = wait_outq(in, 2 * EPP_USEC_PER_SEC);
    }
    pthread_rwlock_unlock(&p->lock);
    return left;
}

void ingest_producer_destroy(ingest_producer_t *p)
{
    if (!p)
        return;
    if (p->supervisor_started) {
        pthread_mutex_lock(&p->mu);
        p->stopping = true;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->supervisor, NULL);
    }
    inst_destroy(p->cur);
    pthread_rwlock_destroy(&p->lock);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->bootstrap);
    free(p->topic);
    free(p->overrides);
    if (p->poll_fd >= 0)
        close(p->poll_fd);
    free(p);
}
