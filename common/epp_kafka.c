/* epp_kafka: see epp_kafka.h. */
#include "epp_kafka.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_log.h"

static void set_err(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (err == NULL || errsz == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

static int set_prop(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                    size_t errsz)
{
    char rkerr[256];
    if (rd_kafka_conf_set(conf, key, value, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK) {
        set_err(err, errsz, "kafka setting %s: %s", key, rkerr);
        return EPP_EINVAL;
    }
    return 0;
}

/* Applies one pass-through item "key=value" (its blanks already trimmed) when keep accepts it. */
static int set_item(rd_kafka_conf_t *conf, const char *item, const epp_kafka_passthrough_t *pass,
                    char *err, size_t errsz)
{
    const char *eq = strchr(item, '=');
    char key[256];
    size_t klen = eq != NULL ? (size_t)(eq - item) : 0;
    if (eq == NULL || klen == 0 || klen >= sizeof(key)) {
        set_err(err, errsz, "%s: \"%s\" is not key=value", pass->name, item);
        return EPP_EINVAL;
    }
    memcpy(key, item, klen);
    key[klen] = '\0';
    if (pass->keep != NULL && !pass->keep(key))
        return 0;
    char detail[384];
    if (set_prop(conf, key, eq + 1, detail, sizeof(detail)) != 0) {
        set_err(err, errsz, "%s: %s", pass->name, detail);
        return EPP_EINVAL;
    }
    return 0;
}

static int set_passthrough(rd_kafka_conf_t *conf, const epp_kafka_passthrough_t *pass, char *err,
                           size_t errsz)
{
    if (pass == NULL || pass->list == NULL || pass->list[0] == '\0')
        return 0;
    char *copy = strdup(pass->list);
    if (copy == NULL) {
        set_err(err, errsz, "out of memory");
        return EPP_ENOMEM;
    }
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL && rc == 0;
         item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        size_t n = strlen(item);
        while (n > 0 && (item[n - 1] == ' ' || item[n - 1] == '\t'))
            item[--n] = '\0';
        if (n > 0)
            rc = set_item(conf, item, pass, err, errsz);
    }
    free(copy);
    return rc;
}

rd_kafka_conf_t *epp_kafka_conf_create(const epp_kafka_prop_t *props, size_t nprops,
                                       const epp_kafka_passthrough_t *pass, char *err, size_t errsz)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, epp_kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, epp_kafka_error_cb);
    int rc = 0;
    for (size_t i = 0; i < nprops && rc == 0; i++) {
        char num[32];
        const char *value = props[i].value;
        if (value == NULL) {
            snprintf(num, sizeof(num), "%lld", props[i].num);
            value = num;
        }
        rc = set_prop(conf, props[i].key, value, err, errsz);
    }
    if (rc == 0)
        rc = set_passthrough(conf, pass, err, errsz);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int epp_kafka_is_connection_key(const char *key)
{
    return strcmp(key, "security.protocol") == 0 || strncmp(key, "sasl.", 5) == 0 ||
           strncmp(key, "ssl.", 4) == 0 || strncmp(key, "enable.ssl.", 11) == 0 ||
           strncmp(key, "enable.sasl.", 12) == 0;
}

void epp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    epp_log_level_t lvl = level <= 3   ? EPP_LOG_ERROR
                          : level == 4 ? EPP_LOG_WARN
                          : level <= 6 ? EPP_LOG_INFO
                                       : EPP_LOG_DEBUG;
    EPP_LOGKV(lvl, buf, "facility", fac, "client", rk != NULL ? rd_kafka_name(rk) : NULL);
}

void epp_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)err;
    epp_log_level_t lvl =
        (e == RD_KAFKA_RESP_ERR__FATAL || e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) ? EPP_LOG_ERROR
                                                                                    : EPP_LOG_WARN;
    EPP_LOGKV(lvl, "kafka error", "error", rd_kafka_err2name(e), "reason", reason, "client",
              rk != NULL ? rd_kafka_name(rk) : NULL);
}

int epp_kafka_ping(rd_kafka_t *rk, const char *topic, int timeout_ms, char *reason,
                   size_t reason_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    if (topic != NULL) {
        /* A topic handle limits the request to that topic. With auto-creation on in the
         * broker, asking may create it; this is the same request a producer would make. */
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (rkt == NULL) {
            set_err(reason, reason_size, "kafka: bad topic %s", topic);
            return EPP_EINVAL;
        }
    }
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    int rc = 0;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(reason, reason_size, "kafka unreachable: %s", rd_kafka_err2str(e));
        rc = EPP_EUNAVAIL;
    } else if (md->broker_cnt <= 0) {
        set_err(reason, reason_size, "kafka unreachable: no brokers in metadata");
        rc = EPP_EUNAVAIL;
    } else if (topic != NULL) {
        rc = EPP_ENOTFOUND;
        set_err(reason, reason_size, "kafka topic %s not found", topic);
        for (int i = 0; i < md->topic_cnt; i++) {
            const struct rd_kafka_metadata_topic *t = &md->topics[i];
            if (strcmp(t->topic, topic) != 0)
                continue;
            if (t->err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt > 0) {
                rc = t->partition_cnt;
            } else if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
                       t->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                set_err(reason, reason_size, "kafka topic %s: %s", topic, rd_kafka_err2str(t->err));
                rc = EPP_EUNAVAIL;
            }
            break;
        }
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    return rc;
}

/* The outcome of one CreateTopics request, as epp_kafka_topic_ensure reports it. */
static int create_result(rd_kafka_event_t *ev, const char *topic, int partitions, int rf, char *err,
                         size_t errsz)
{
    if (ev == NULL) {
        set_err(err, errsz, "create topic %s: no answer in time", topic);
        return EPP_EUNAVAIL;
    }
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    const char *msg = rd_kafka_event_error_string(ev);
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && res != NULL) {
        size_t n = 0;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
        if (n > 0) {
            e = rd_kafka_topic_result_error(tr[0]);
            msg = rd_kafka_topic_result_error_string(tr[0]);
        }
    }
    if (msg == NULL || *msg == '\0')
        msg = rd_kafka_err2str(e);
    char np[16], nrf[16];
    snprintf(np, sizeof np, "%d", partitions);
    snprintf(nrf, sizeof nrf, "%d", rf);
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        EPP_LOGKV(EPP_LOG_INFO, "kafka topic created", "topic", topic, "partitions", np,
                  "replication_factor", nrf);
        return 0;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        return 0; /* another service or replica created it meanwhile */
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
        EPP_LOGKV(EPP_LOG_INFO, "kafka cannot create topics; it creates them on first use", "topic",
                  topic, "reason", msg);
        return 0;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        EPP_LOGKV(EPP_LOG_WARN, "not allowed to create the kafka topic; create it yourself",
                  "topic", topic, "partitions", np, "reason", msg);
        return 0;
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        set_err(err, errsz, "create topic %s: %s", topic, msg);
        return EPP_EINVAL;
    default:
        set_err(err, errsz, "create topic %s: %s", topic, msg);
        return EPP_EUNAVAIL;
    }
}

int epp_kafka_topic_ensure(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms,
                           char *err, size_t errsz)
{
    if (partitions < 1) {
        set_err(err, errsz, "create topic %s: partitions must be >= 1", topic);
        return EPP_EINVAL;
    }
    /* All-topics metadata: it counts the brokers and tells whether the topic exists without
     * asking for the topic by name (which auto-creating brokers would take as a creation). */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md == NULL || md->broker_cnt <= 0) {
        set_err(err, errsz, "create topic %s: kafka unreachable: %s", topic,
                e != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(e) : "no brokers in metadata");
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        return EPP_EUNAVAIL;
    }
    int brokers = md->broker_cnt, exists = 0;
    for (int i = 0; i < md->topic_cnt && !exists; i++)
        exists = strcmp(md->topics[i].topic, topic) == 0 &&
                 md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_metadata_destroy(md);
    if (exists)
        return 0;

    int rf = brokers < 3 ? brokers : 3;
    char isr[12], rderr[256]; /* room for any int: -Wformat-truncation in Debug builds */
    snprintf(isr, sizeof isr, "%d", brokers < 2 ? brokers : 2);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, rf, rderr, sizeof rderr);
    if (nt == NULL) {
        set_err(err, errsz, "create topic %s: %s", topic, rderr);
        return EPP_EINVAL;
    }
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    int rc = EPP_ENOMEM;
    if (rd_kafka_NewTopic_set_config(nt, "min.insync.replicas", isr) != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto out;
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    q = rd_kafka_queue_new(rk);
    if (opts == NULL || q == NULL)
        goto out;
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, NULL, 0);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, NULL, 0);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 2 * timeout_ms + 1000);
    rc = create_result(ev, topic, partitions, rf, err, errsz);
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
out:
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int epp_kafka_err_to_epp(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return EPP_EAGAIN;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return EPP_ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
        return EPP_EUNAVAIL;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
        return EPP_ETOOBIG;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return EPP_ENOTFOUND;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        return EPP_EINVAL;
    default:
        return EPP_EIO;
    }
}
