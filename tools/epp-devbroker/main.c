/* epp-devbroker: a Kafka-compatible development broker for `make run` and the tests.
 *
 * It runs librdkafka's built-in mock cluster (rdkafka_mock.h) on loopback, creates the topics
 * the platform uses, prints the bootstrap address, and takes fault commands over a small HTTP
 * control API on loopback so that tests can take brokers down, slow them down, move partition
 * leaders and inject request errors from another process. It is in-memory and keeps only the
 * newest ~5 MiB per partition: for development and tests only; production uses Apache Kafka.
 *
 * Threads: main() sets up, then waits in sigwait() for SIGINT/SIGTERM. The control API runs on
 * libmicrohttpd's single internal thread, so control handlers never run concurrently and the
 * bookkeeping in devbroker_t (broker state, topic list) needs no lock. The mock cluster runs on
 * its own librdkafka thread; the rd_kafka_mock_* calls used here hand it commands and are
 * safe from the control thread. */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <microhttpd.h>

#include "epp_buf.h"
#include "epp_config.h"
#include "epp_error.h"
#include "epp_json.h"
#include "epp_kafka.h"
#include "epp_log.h"
#include "epp_start.h"

#define DEVBROKER_MAX_BROKERS 16
#define DEVBROKER_MAX_TOPICS  1024
#define DEVBROKER_MAX_ERRORS  1000

typedef struct {
    int64_t brokers;
    int64_t partitions;
    char *topics; /* extra topics: "name[:partitions],..." (repeated --topic flags are joined) */
    char *addr_file;
    char *control_file;
    int64_t control_port;
    epp_opts_log_t log;
} devbroker_conf_t;

static const epp_conf_opt_t devbroker_opts[] = {
    EPP_CONF_INT("brokers", "DEVBROKER_BROKERS", "1", 1, DEVBROKER_MAX_BROKERS, devbroker_conf_t,
                 brokers, "Number of mock brokers (ids 1..N)"),
    EPP_CONF_INT("partitions", "DEVBROKER_PARTITIONS", "6", 1, 1000, devbroker_conf_t, partitions,
                 "Partitions of the topic `events` (`events.dlq` gets the same)"),
    EPP_CONF_STR("topic", "DEVBROKER_TOPICS", NULL, devbroker_conf_t, topics,
                 "Extra topic to create, name[:partitions] (default 4 partitions); repeatable, or "
                 "comma-separated"),
    EPP_CONF_STR("addr-file", "DEVBROKER_ADDR_FILE", NULL, devbroker_conf_t, addr_file,
                 "Write the bootstrap address (one line) into this file once ready"),
    EPP_CONF_STR("control-file", "DEVBROKER_CONTROL_FILE", NULL, devbroker_conf_t, control_file,
                 "Write the control API URL (one line) into this file once ready"),
    EPP_CONF_INT("control-port", "DEVBROKER_CONTROL_PORT", "0", 0, 65535, devbroker_conf_t,
                 control_port, "Control API port on 127.0.0.1 (0: a free port)"),
    EPP_OPTS_LOG(devbroker_conf_t, log, "info"),
    EPP_CONF_END,
};

static const char devbroker_summary[] =
    "Runs librdkafka's in-memory mock Kafka cluster on 127.0.0.1 for development and tests.\n"
    "It keeps only the newest ~5 MiB per partition and loses everything on exit: production\n"
    "uses Apache Kafka. Creates `events` and `events.dlq`, prints the bootstrap address as the\n"
    "first stdout line and the control API URL as the second, and exits on SIGINT/SIGTERM.\n"
    "\n"
    "Control API (HTTP on 127.0.0.1; replies are JSON; bad requests get 400):\n"
    "  GET  /health                                  {\"status\":\"ok\"}\n"
    "  GET  /info                                    bootstrap, brokers, topics\n"
    "  POST /brokers/down | /brokers/up              every broker\n"
    "  POST /brokers/{id}/down | /brokers/{id}/up\n"
    "  POST /brokers/{id}/rtt?ms=N                   added round-trip delay\n"
    "  POST /brokers/{id}/error_rtts?api=Produce&errors=REQUEST_TIMED_OUT:5000,NO_ERROR:0\n"
    "  POST /topics?name=T&partitions=N[&replication=R]\n"
    "  POST /topics/{topic}/partitions/{p}/leader?broker=N   (-1: no leader)\n"
    "  POST /topics/{topic}/error?code=CODE          Metadata error for the topic (NO_ERROR "
    "clears)\n"
    "  POST /errors?api=Produce&codes=CODE,...[&count=N]  next N requests fail (codes cycle)\n"
    "  POST /errors/clear?api=Produce\n"
    "API names: Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch,\n"
    "FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup, ApiVersions, InitProducerId,\n"
    "... or the ApiKey number. Codes: librdkafka error names without RD_KAFKA_RESP_ERR_\n"
    "(NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, _TRANSPORT, ...) or numbers.";

typedef struct {
    char *name;
    int partitions;
    int replication;
} devbroker_topic_t;

typedef struct {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mcluster;
    const char *bootstrap; /* owned by mcluster */
    int brokers;
    int broker_up[DEVBROKER_MAX_BROKERS + 1]; /* by broker id */
    int broker_rtt[DEVBROKER_MAX_BROKERS + 1];
    devbroker_topic_t topics[DEVBROKER_MAX_TOPICS];
    int topic_cnt;
    struct MHD_Daemon *mhd;
    int control_port;
    char control_url[64];
} devbroker_t;

/* ------------------------------------------------------------------------------------------ */
/* Name tables                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* Kafka protocol ApiKeys (the numbers are part of the public protocol). */
static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"SaslHandshake", 17},
    {"ApiVersions", 18},
    {"CreateTopics", 19},
    {"DeleteTopics", 20},
    {"DeleteRecords", 21},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
    {"DescribeConfigs", 32},
    {"AlterConfigs", 33},
    {"SaslAuthenticate", 36},
    {"CreatePartitions", 37},
    {"DeleteGroups", 42},
    {"OffsetDelete", 47},
};

/* Parses a whole decimal integer in [lo, hi]. 0 or EPP_EINVAL. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    if (s == NULL || *s == '\0')
        return EPP_EINVAL;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return EPP_EINVAL;
    *out = v;
    return 0;
}

static int parse_api(const char *s, int16_t *out)
{
    if (s == NULL)
        return EPP_EINVAL;
    for (size_t i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++) {
        if (strcasecmp(s, api_keys[i].name) == 0) {
            *out = api_keys[i].key;
            return 0;
        }
    }
    long v;
    if (parse_long(s, 0, 100, &v) != 0)
        return EPP_EINVAL;
    *out = (int16_t)v;
    return 0;
}

/* Error name (as in rd_kafka_get_err_descs, with or without the RD_KAFKA_RESP_ERR_ prefix,
 * any case) or number. */
static int parse_err(const char *s, size_t len, rd_kafka_resp_err_t *out)
{
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    char name[128];
    if (len >= sizeof(name) || len == 0)
        return EPP_EINVAL;
    memcpy(name, s, len);
    name[len] = '\0';
    const char *n = name;
    if (strncasecmp(n, prefix, sizeof(prefix) - 1) == 0)
        n += sizeof(prefix) - 1;
    const struct rd_kafka_err_desc *descs;
    size_t cnt;
    rd_kafka_get_err_descs(&descs, &cnt);
    for (size_t i = 0; i < cnt; i++) {
        if (descs[i].name != NULL && strcasecmp(descs[i].name, n) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    long v;
    if (parse_long(n, -200, 1000, &v) != 0)
        return EPP_EINVAL;
    *out = (rd_kafka_resp_err_t)v;
    return 0;
}

/* Kafka's legal topic names: 1-249 of [a-zA-Z0-9._-]. */
static int valid_topic(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 249)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Mock cluster operations                                                                     */
/* ------------------------------------------------------------------------------------------ */

static devbroker_topic_t *topic_find(devbroker_t *db, const char *name)
{
    for (int i = 0; i < db->topic_cnt; i++)
        if (strcmp(db->topics[i].name, name) == 0)
            return &db->topics[i];
    return NULL;
}

/* Creates a topic (or keeps an existing one). Returns 1 when created, 0 when it existed, or a
 * negative EPP_E* code with a message in err. */
static int topic_create(devbroker_t *db, const char *name, int partitions, int replication,
                        char *err, size_t errsz)
{
    if (!valid_topic(name)) {
        snprintf(err, errsz, "bad topic name \"%s\": 1-249 of [a-zA-Z0-9._-]", name);
        return EPP_EINVAL;
    }
    if (replication <= 0)
        replication = db->brokers < 3 ? db->brokers : 3;
    if (replication > db->brokers) {
        snprintf(err, errsz, "replication %d exceeds the %d brokers", replication, db->brokers);
        return EPP_EINVAL;
    }
    if (topic_find(db, name) != NULL)
        return 0;
    if (db->topic_cnt == DEVBROKER_MAX_TOPICS) {
        snprintf(err, errsz, "too many topics");
        return EPP_EAGAIN;
    }
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(db->mcluster, name, partitions, replication);
    if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        e = RD_KAFKA_RESP_ERR_NO_ERROR; /* auto-created by a client before we were asked */
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errsz, "create topic %s: %s", name, rd_kafka_err2str(e));
        return EPP_EIO;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return EPP_ENOMEM;
    db->topics[db->topic_cnt++] = (devbroker_topic_t){copy, partitions, replication};
    EPP_LOGKV(EPP_LOG_INFO, "topic created", "topic", name);
    return 1;
}

/* Parses "name[:partitions],..." and creates each topic. 0 or an EPP_E* code. */
static int topics_create_list(devbroker_t *db, const char *list, char *err, size_t errsz)
{
    char *copy = strdup(list);
    if (copy == NULL)
        return EPP_ENOMEM;
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL && rc >= 0;
         item = strtok_r(NULL, ",", &save)) {
        long parts = 4;
        char *colon = strchr(item, ':');
        if (colon != NULL) {
            *colon = '\0';
            if (parse_long(colon + 1, 1, 1000, &parts) != 0) {
                snprintf(err, errsz, "--topic %s: partitions must be 1..1000", item);
                rc = EPP_EINVAL;
                break;
            }
        }
        rc = topic_create(db, item, (int)parts, 0, err, errsz);
    }
    free(copy);
    return rc < 0 ? rc : 0;
}

static rd_kafka_resp_err_t broker_set(devbroker_t *db, int id, int up)
{
    rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(db->mcluster, id)
                               : rd_kafka_mock_broker_set_down(db->mcluster, id);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        db->broker_up[id] = up;
    return e;
}

/* ------------------------------------------------------------------------------------------ */
/* Control API                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int status;
    epp_buf_t body;
} reply_t;

static void reply_error(reply_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(reply_t *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->status = status;
    epp_buf_reset(&r->body);
    const char *code = status == 404   ? "not_found"
                       : status == 405 ? "method_not_allowed"
                       : status == 400 ? "bad_request"
                                       : "internal";
    epp_buf_printf(&r->body, "{\"error\":{\"code\":\"%s\",\"message\":", code);
    epp_json_write_string(&r->body, msg, strlen(msg));
    epp_buf_append_str(&r->body, "}}");
}

static void reply_ok(reply_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply_ok(reply_t *r, const char *fmt, ...)
{
    r->status = 200;
    epp_buf_reset(&r->body);
    va_list ap;
    va_start(ap, fmt);
    epp_buf_vprintf(&r->body, fmt, ap);
    va_end(ap);
}

static void render_info(devbroker_t *db, reply_t *r)
{
    r->status = 200;
    epp_buf_t *b = &r->body;
    epp_buf_reset(b);
    epp_buf_printf(b, "{\"bootstrap\":\"%s\",\"control\":\"%s\",\"brokers\":[", db->bootstrap,
                   db->control_url);
    for (int id = 1; id <= db->brokers; id++)
        epp_buf_printf(b, "%s{\"id\":%d,\"up\":%s,\"rtt_ms\":%d}", id > 1 ? "," : "", id,
                       db->broker_up[id] ? "true" : "false", db->broker_rtt[id]);
    epp_buf_append_str(b, "],\"topics\":[");
    /* Topic names were validated ([a-zA-Z0-9._-]): no escaping needed. */
    for (int i = 0; i < db->topic_cnt; i++)
        epp_buf_printf(b, "%s{\"name\":\"%s\",\"partitions\":%d,\"replication\":%d}",
                       i > 0 ? "," : "", db->topics[i].name, db->topics[i].partitions,
                       db->topics[i].replication);
    epp_buf_append_str(b, "]}");
}

static const char *arg(struct MHD_Connection *conn, const char *key)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}

/* Splits path into at most max segments (modifies path). Returns the count, or -1 if more. */
static int split_path(char *path, char **seg, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *s = strtok_r(path, "/", &save); s != NULL; s = strtok_r(NULL, "/", &save)) {
        if (n == max)
            return -1;
        seg[n++] = s;
    }
    return n;
}

static int broker_id_arg(devbroker_t *db, const char *s, reply_t *r, long *id)
{
    if (parse_long(s, 1, db->brokers, id) != 0) {
        reply_error(r, 400, "no broker \"%s\": ids are 1..%d", s, db->brokers);
        return -1;
    }
    return 0;
}

static void handle_errors(devbroker_t *db, struct MHD_Connection *conn, reply_t *r)
{
    int16_t api;
    if (parse_api(arg(conn, "api"), &api) != 0) {
        reply_error(r, 400, "api must be a Kafka API name (Produce, Fetch, ...) or number");
        return;
    }
    const char *codes = arg(conn, "codes");
    if (codes == NULL || *codes == '\0') {
        reply_error(r, 400, "codes is required: comma-separated error names or numbers");
        return;
    }
    rd_kafka_resp_err_t parsed[DEVBROKER_MAX_ERRORS];
    size_t ncodes = 0;
    for (const char *p = codes; *p;) {
        size_t len = strcspn(p, ",");
        if (ncodes == DEVBROKER_MAX_ERRORS || parse_err(p, len, &parsed[ncodes]) != 0) {
            reply_error(r, 400, "bad error code in \"%s\"", codes);
            return;
        }
        ncodes++;
        p += len;
        if (*p == ',')
            p++;
    }
    long count = (long)ncodes;
    const char *cnt = arg(conn, "count");
    if (cnt != NULL && parse_long(cnt, 1, DEVBROKER_MAX_ERRORS, &count) != 0) {
        reply_error(r, 400, "count must be 1..%d", DEVBROKER_MAX_ERRORS);
        return;
    }
    rd_kafka_resp_err_t errs[DEVBROKER_MAX_ERRORS];
    for (long i = 0; i < count; i++)
        errs[i] = parsed[(size_t)i % ncodes];
    rd_kafka_mock_push_request_errors_array(db->mcluster, api, (size_t)count, errs);
    EPP_LOGKV(EPP_LOG_INFO, "request errors pushed", "api", arg(conn, "api"), "codes", codes);
    reply_ok(r, "{\"api\":%d,\"count\":%ld}", api, count);
}

static void handle_error_rtts(devbroker_t *db, long id, struct MHD_Connection *conn, reply_t *r)
{
    int16_t api;
    if (parse_api(arg(conn, "api"), &api) != 0) {
        reply_error(r, 400, "api must be a Kafka API name (Produce, Fetch, ...) or number");
        return;
    }
    const char *list = arg(conn, "errors");
    if (list == NULL || *list == '\0') {
        reply_error(r, 400, "errors is required: CODE:RTT_MS,...");
        return;
    }
    rd_kafka_resp_err_t errs[DEVBROKER_MAX_ERRORS];
    int rtts[DEVBROKER_MAX_ERRORS];
    size_t n = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        const char *colon = memchr(p, ':', len);
        char ms[16];
        size_t mslen = colon != NULL ? len - (size_t)(colon + 1 - p) : 0;
        long rtt = 0;
        if (n == DEVBROKER_MAX_ERRORS || colon == NULL || mslen == 0 || mslen >= sizeof(ms) ||
            parse_err(p, (size_t)(colon - p), &errs[n]) != 0) {
            reply_error(r, 400, "bad item in errors=\"%s\": want CODE:RTT_MS,...", list);
            return;
        }
        memcpy(ms, colon + 1, mslen);
        ms[mslen] = '\0';
        if (parse_long(ms, 0, 600000, &rtt) != 0) {
            reply_error(r, 400, "bad rtt in errors=\"%s\": 0..600000 ms", list);
            return;
        }
        rtts[n++] = (int)rtt;
        p += len;
        if (*p == ',')
            p++;
    }
    /* The mock API takes (err, rtt) pairs as varargs; pushing them one at a time appends to
     * the broker's error stack in the same order. */
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_broker_push_request_error_rtts(
            db->mcluster, (int32_t)id, api, 1, errs[i], rtts[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            reply_error(r, 500, "push error rtts: %s", rd_kafka_err2str(e));
            return;
        }
    }
    EPP_LOGKV(EPP_LOG_INFO, "broker error rtts pushed", "api", arg(conn, "api"), "errors", list);
    reply_ok(r, "{\"broker\":%ld,\"api\":%d,\"count\":%zu}", id, api, n);
}

/* One control request, split into path segments. */
typedef struct {
    devbroker_t *db;
    struct MHD_Connection *conn;
    const char *url;
    char *seg[8];
    int n;
    reply_t *r;
} ctl_req_t;

static void not_found(ctl_req_t *q)
{
    reply_error(q->r, 404, "no such path: %s", q->url);
}

/* POST /brokers/{down,up} and /brokers/{id}/{down,up,rtt,error_rtts}. */
static void route_brokers(ctl_req_t *q)
{
    devbroker_t *db = q->db;
    reply_t *r = q->r;
    if (q->n == 2 && (strcmp(q->seg[1], "down") == 0 || strcmp(q->seg[1], "up") == 0)) {
        int up = q->seg[1][0] == 'u';
        for (int id = 1; id <= db->brokers; id++) {
            rd_kafka_resp_err_t e = broker_set(db, id, up);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                reply_error(r, 500, "broker %d: %s", id, rd_kafka_err2str(e));
                return;
            }
        }
        EPP_LOGKV(EPP_LOG_INFO, up ? "all brokers up" : "all brokers down", NULL);
        reply_ok(r, "{\"brokers\":%d,\"up\":%s}", db->brokers, up ? "true" : "false");
        return;
    }
    if (q->n != 3) {
        not_found(q);
        return;
    }
    const char *op = q->seg[2];
    if (strcmp(op, "down") != 0 && strcmp(op, "up") != 0 && strcmp(op, "rtt") != 0 &&
        strcmp(op, "error_rtts") != 0) {
        not_found(q);
        return;
    }
    long id;
    if (broker_id_arg(db, q->seg[1], r, &id) != 0)
        return;
    if (strcmp(op, "error_rtts") == 0) {
        handle_error_rtts(db, id, q->conn, r);
    } else if (strcmp(op, "rtt") == 0) {
        long ms;
        if (parse_long(arg(q->conn, "ms"), 0, 600000, &ms) != 0) {
            reply_error(r, 400, "ms must be 0..600000");
            return;
        }
        rd_kafka_resp_err_t e = rd_kafka_mock_broker_set_rtt(db->mcluster, (int)id, (int)ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            reply_error(r, 500, "broker %ld: %s", id, rd_kafka_err2str(e));
            return;
        }
        db->broker_rtt[id] = (int)ms;
        EPP_LOGKV(EPP_LOG_INFO, "broker rtt set", "broker", q->seg[1], "ms", arg(q->conn, "ms"));
        reply_ok(r, "{\"broker\":%ld,\"rtt_ms\":%ld}", id, ms);
    } else {
        int up = op[0] == 'u';
        rd_kafka_resp_err_t e = broker_set(db, (int)id, up);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            reply_error(r, 500, "broker %ld: %s", id, rd_kafka_err2str(e));
            return;
        }
        EPP_LOGKV(EPP_LOG_INFO, up ? "broker up" : "broker down", "broker", q->seg[1]);
        reply_ok(r, "{\"broker\":%ld,\"up\":%s}", id, up ? "true" : "false");
    }
}

/* POST /errors and /errors/clear. */
static void route_errors(ctl_req_t *q)
{
    if (q->n == 1) {
        handle_errors(q->db, q->conn, q->r);
    } else if (q->n == 2 && strcmp(q->seg[1], "clear") == 0) {
        int16_t api;
        if (parse_api(arg(q->conn, "api"), &api) != 0) {
            reply_error(q->r, 400, "api must be a Kafka API name (Produce, Fetch, ...) or number");
            return;
        }
        rd_kafka_mock_clear_request_errors(q->db->mcluster, api);
        reply_ok(q->r, "{\"api\":%d,\"cleared\":true}", api);
    } else {
        not_found(q);
    }
}

/* POST /topics?name=T&partitions=N[&replication=R] */
static void topic_post(ctl_req_t *q)
{
    devbroker_t *db = q->db;
    reply_t *r = q->r;
    const char *name = arg(q->conn, "name");
    const char *parts_arg = arg(q->conn, "partitions");
    const char *repl_arg = arg(q->conn, "replication");
    long parts = 4, repl = 0;
    char err[256];
    if (name == NULL || !valid_topic(name)) {
        reply_error(r, 400, "name must be a topic name: 1-249 of [a-zA-Z0-9._-]");
        return;
    }
    if (parts_arg != NULL && parse_long(parts_arg, 1, 1000, &parts) != 0) {
        reply_error(r, 400, "partitions must be 1..1000");
        return;
    }
    if (repl_arg != NULL && parse_long(repl_arg, 1, db->brokers, &repl) != 0) {
        reply_error(r, 400, "replication must be 1..%d", db->brokers);
        return;
    }
    int rc = topic_create(db, name, (int)parts, (int)repl, err, sizeof(err));
    if (rc < 0) {
        reply_error(r, rc == EPP_EINVAL ? 400 : 500, "%s", err);
        return;
    }
    const devbroker_topic_t *t = topic_find(db, name);
    reply_ok(r, "{\"name\":\"%s\",\"partitions\":%d,\"created\":%s}", name, t->partitions,
             rc == 1 ? "true" : "false");
}

/* POST /topics/{topic}/partitions/{p}/leader?broker=N */
static void topic_leader(ctl_req_t *q)
{
    devbroker_t *db = q->db;
    reply_t *r = q->r;
    const char *topic = q->seg[1];
    long p, broker;
    if (!valid_topic(topic)) {
        reply_error(r, 400, "bad topic name");
        return;
    }
    if (parse_long(q->seg[3], 0, 999, &p) != 0) {
        reply_error(r, 400, "bad partition \"%s\"", q->seg[3]);
        return;
    }
    if (parse_long(arg(q->conn, "broker"), -1, db->brokers, &broker) != 0 || broker == 0) {
        reply_error(r, 400, "broker must be 1..%d, or -1 for no leader", db->brokers);
        return;
    }
    const devbroker_topic_t *t = topic_find(db, topic);
    if (t != NULL && p >= t->partitions) {
        reply_error(r, 400, "topic %s has %d partitions", topic, t->partitions);
        return;
    }
    rd_kafka_resp_err_t e =
        rd_kafka_mock_partition_set_leader(db->mcluster, topic, (int32_t)p, (int32_t)broker);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        reply_error(r, 400, "set leader: %s", rd_kafka_err2str(e));
        return;
    }
    EPP_LOGKV(EPP_LOG_INFO, "partition leader set", "topic", topic, "partition", q->seg[3],
              "broker", arg(q->conn, "broker"));
    reply_ok(r, "{\"topic\":\"%s\",\"partition\":%ld,\"leader\":%ld}", topic, p, broker);
}

/* POST /topics, /topics/{topic}/error, /topics/{topic}/partitions/{p}/leader. */
static void route_topics(ctl_req_t *q)
{
    if (q->n == 1) {
        topic_post(q);
    } else if (q->n == 3 && strcmp(q->seg[2], "error") == 0) {
        rd_kafka_resp_err_t code;
        const char *c = arg(q->conn, "code");
        if (!valid_topic(q->seg[1]) || c == NULL || parse_err(c, strlen(c), &code) != 0) {
            reply_error(q->r, 400, "want /topics/{topic}/error?code=CODE");
            return;
        }
        rd_kafka_mock_topic_set_error(q->db->mcluster, q->seg[1], code);
        reply_ok(q->r, "{\"topic\":\"%s\",\"error\":\"%s\"}", q->seg[1], rd_kafka_err2name(code));
    } else if (q->n == 5 && strcmp(q->seg[2], "partitions") == 0 &&
               strcmp(q->seg[4], "leader") == 0) {
        topic_leader(q);
    } else {
        not_found(q);
    }
}

static void route(devbroker_t *db, struct MHD_Connection *conn, const char *method, const char *url,
                  reply_t *r)
{
    char path[512];
    ctl_req_t q = {.db = db, .conn = conn, .url = url, .r = r};
    if (strlen(url) >= sizeof(path)) {
        reply_error(r, 404, "no such path");
        return;
    }
    memcpy(path, url, strlen(url) + 1);
    q.n = split_path(path, q.seg, 8);
    if (q.n < 1) {
        not_found(&q);
        return;
    }
    int is_get = strcmp(method, "GET") == 0;
    int is_post = strcmp(method, "POST") == 0;

    if (q.n == 1 && (strcmp(q.seg[0], "health") == 0 || strcmp(q.seg[0], "info") == 0)) {
        if (!is_get)
            reply_error(r, 405, "use GET");
        else if (q.seg[0][0] == 'h')
            reply_ok(r, "{\"status\":\"ok\"}");
        else
            render_info(db, r);
        return;
    }
    void (*handler)(ctl_req_t *) = strcmp(q.seg[0], "brokers") == 0  ? route_brokers
                                   : strcmp(q.seg[0], "errors") == 0 ? route_errors
                                   : strcmp(q.seg[0], "topics") == 0 ? route_topics
                                                                     : NULL;
    if (handler == NULL)
        not_found(&q);
    else if (!is_post)
        reply_error(r, 405, "use POST");
    else
        handler(&q);
}

static int request_marker;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    (void)version;
    (void)upload_data;
    devbroker_t *db = cls;
    if (*req_cls == NULL) {
        *req_cls = &request_marker; /* first call: headers only */
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* request bodies carry nothing here: discard */
        return MHD_YES;
    }
    reply_t r = {0};
    route(db, conn, method, url, &r);
    if (r.body.len == 0 && r.body.data == NULL)
        reply_error(&r, 500, "out of memory");
    epp_buf_append_char(&r.body, '\n');
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r.body.len, r.body.data, MHD_RESPMEM_MUST_COPY);
    epp_buf_free(&r.body);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (r.status == 405)
        MHD_add_response_header(resp, "Allow",
                                strcmp(url, "/health") == 0 || strcmp(url, "/info") == 0 ? "GET"
                                                                                         : "POST");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    if (r.status >= 400)
        EPP_LOGKV(EPP_LOG_INFO, "control request refused", "method", method, "url", url);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Start-up and shutdown                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Writes one line atomically (temp file + rename), so a reader never sees half an address. */
static int write_file_line(const char *path, const char *line)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
        return EPP_EINVAL;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return EPP_EIO;
    int ok = fprintf(f, "%s\n", line) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return EPP_EIO;
    }
    return 0;
}

static void devbroker_destroy(devbroker_t *db)
{
    if (db == NULL)
        return;
    if (db->mhd != NULL)
        MHD_stop_daemon(db->mhd);
    if (db->mcluster != NULL)
        rd_kafka_mock_cluster_destroy(db->mcluster);
    if (db->rk != NULL)
        rd_kafka_destroy(db->rk);
    for (int i = 0; i < db->topic_cnt; i++)
        free(db->topics[i].name);
    free(db);
}

static devbroker_t *devbroker_create(const devbroker_conf_t *conf, char *err, size_t errsz)
{
    devbroker_t *db = calloc(1, sizeof(*db));
    if (db == NULL) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    db->brokers = (int)conf->brokers;

    /* The mock cluster needs a client handle for its bookkeeping; this producer never
     * produces. Its own bootstrap list stays empty: it talks to nobody. */
    static const epp_kafka_prop_t props[] = {EPP_KAFKA_PROP("client.id", "epp-devbroker")};
    rd_kafka_conf_t *kconf = epp_kafka_conf_create(props, 1, NULL, err, errsz);
    if (kconf == NULL)
        goto fail;
    char rkerr[256];
    db->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, rkerr, sizeof(rkerr));
    if (db->rk == NULL) {
        rd_kafka_conf_destroy(kconf);
        snprintf(err, errsz, "rd_kafka_new: %s", rkerr);
        goto fail;
    }
    kconf = NULL; /* now owned by rk */

    db->mcluster = rd_kafka_mock_cluster_new(db->rk, db->brokers);
    if (db->mcluster == NULL) {
        snprintf(err, errsz, "rd_kafka_mock_cluster_new failed (see the log above)");
        goto fail;
    }
    db->bootstrap = rd_kafka_mock_cluster_bootstraps(db->mcluster);
    for (int id = 1; id <= db->brokers; id++)
        db->broker_up[id] = 1;

    if (topic_create(db, "events", (int)conf->partitions, 0, err, errsz) < 0 ||
        topic_create(db, "events.dlq", (int)conf->partitions, 0, err, errsz) < 0)
        goto fail;
    if (conf->topics != NULL && topics_create_list(db, conf->topics, err, errsz) != 0)
        goto fail;

    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)conf->control_port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* One internal thread: control requests are rare and must not run concurrently. */
    db->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL,
                               (uint16_t)conf->control_port, NULL, NULL, on_request, db,
                               MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
                               MHD_OPTION_CONNECTION_TIMEOUT, 30U, MHD_OPTION_END);
    if (db->mhd == NULL) {
        snprintf(err, errsz, "control API: cannot listen on 127.0.0.1:%d", (int)conf->control_port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(db->mhd, MHD_DAEMON_INFO_BIND_PORT);
    db->control_port = info != NULL ? info->port : (int)conf->control_port;
    snprintf(db->control_url, sizeof(db->control_url), "http://127.0.0.1:%d", db->control_port);
    return db;

fail:
    devbroker_destroy(db);
    return NULL;
}

/* Joins every --topic occurrence into one --topic=a,b flag, because the config table holds
 * one value per option. Returns a new argv (caller frees it and *joined) or NULL. */
static char **join_topic_flags(int argc, char **argv, int *argc_out, char **joined)
{
    char **out = calloc((size_t)argc + 2, sizeof(char *));
    epp_buf_t topics = {0};
    if (out == NULL)
        return NULL;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (i > 0 && strcmp(a, "--") == 0) {
            while (i < argc)
                out[n++] = argv[i++];
            break;
        }
        if (i > 0 && strncmp(a, "--topic=", 8) == 0)
            val = a + 8;
        else if (i > 0 && strcmp(a, "--topic") == 0 && i + 1 < argc)
            val = argv[++i];
        if (val == NULL) {
            out[n++] = argv[i];
            continue;
        }
        if (topics.len > 0)
            epp_buf_append_char(&topics, ',');
        epp_buf_append_str(&topics, val);
    }
    *joined = NULL;
    if (topics.len > 0) {
        epp_buf_t flag = {0};
        epp_buf_printf(&flag, "--topic=%s", topics.data);
        *joined = epp_buf_steal(&flag);
        if (*joined == NULL) {
            epp_buf_free(&topics);
            free(out);
            return NULL;
        }
        /* After a "--" the flag would be positional: put it before. */
        int pos = n;
        for (int i = 1; i < n; i++)
            if (out[i] != NULL && strcmp(out[i], "--") == 0) {
                pos = i;
                break;
            }
        memmove(&out[pos + 1], &out[pos], (size_t)(n - pos) * sizeof(char *));
        out[pos] = *joined;
        n++;
    }
    epp_buf_free(&topics);
    out[n] = NULL;
    *argc_out = n;
    return out;
}

int main(int argc, char **argv)
{
    devbroker_conf_t conf = {0};
    char err[512];
    int nargc = 0;
    char *joined = NULL;
    char **nargv = join_topic_flags(argc, argv, &nargc, &joined);
    if (nargv == NULL) {
        fprintf(stderr, "epp-devbroker: out of memory\n");
        return 1;
    }
    epp_start_t start = {
        .prog = "epp-devbroker",
        .summary = devbroker_summary,
        .table = devbroker_opts,
        .cfg = &conf,
        .log = &conf.log,
        .flags = EPP_START_IGNORE_SIGPIPE | EPP_START_BLOCK_STOP,
    };
    int rc = epp_start(&start, nargc, nargv);
    free(nargv);
    free(joined);
    if (rc != 0)
        return epp_start_exit_status(rc);

    devbroker_t *db = devbroker_create(&conf, err, sizeof(err));
    if (db == NULL) {
        EPP_LOGKV(EPP_LOG_ERROR, "start-up failed", "error", err);
        epp_config_free(devbroker_opts, &conf);
        return 1;
    }
    if ((conf.addr_file != NULL && write_file_line(conf.addr_file, db->bootstrap) != 0) ||
        (conf.control_file != NULL && write_file_line(conf.control_file, db->control_url) != 0)) {
        EPP_LOGKV(EPP_LOG_ERROR, "cannot write the address files", "addr_file", conf.addr_file,
                  "control_file", conf.control_file);
        devbroker_destroy(db);
        epp_config_free(devbroker_opts, &conf);
        return 1;
    }
    printf("%s\n%s\n", db->bootstrap, db->control_url);
    fflush(stdout);
    char brokers[16];
    snprintf(brokers, sizeof(brokers), "%d", db->brokers);
    EPP_LOGKV(EPP_LOG_INFO, "ready", "bootstrap", db->bootstrap, "control", db->control_url,
              "brokers", brokers);

    int sig = epp_start_wait_stop();
    EPP_LOGKV(EPP_LOG_INFO, "stopping", "signal", strsignal(sig));
    if (conf.addr_file != NULL)
        unlink(conf.addr_file);
    if (conf.control_file != NULL)
        unlink(conf.control_file);
    devbroker_destroy(db);
    epp_config_free(devbroker_opts, &conf);
    EPP_INFO("stopped");
    return 0;
}
