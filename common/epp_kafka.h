/* epp_kafka: the few librdkafka helpers every epp program repeats -- building a configuration
 * with errors reported as text, routing librdkafka's logs and errors into epp_log, checking that
 * the brokers answer (for /ready), and mapping librdkafka error codes onto EPP_E* codes.
 *
 * Threads: epp_kafka_conf_create may be called from any thread. The callbacks it installs run
 * on librdkafka's internal threads; they only call epp_log, which is
 * thread-safe. epp_kafka_ping may be called from any thread while rk is alive; it blocks for
 * at most timeout_ms. */
#ifndef EPP_KAFKA_H
#define EPP_KAFKA_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* One librdkafka property of a program's fixed settings: a text value, or (value NULL) a number. */
typedef struct {
    const char *key;
    const char *value;
    long long num;
} epp_kafka_prop_t;

#define EPP_KAFKA_PROP(key, value)                                                                 \
    {                                                                                              \
        (key), (value), 0                                                                          \
    }
#define EPP_KAFKA_PROP_INT(key, num)                                                               \
    {                                                                                              \
        (key), NULL, (num)                                                                         \
    }

/* The settings a program passes through from its configuration unchecked (KAFKA_PRODUCER_CONFIG,
 * KAFKA_CONSUMER_CONFIG): a comma-separated list of "key=value" items (blanks around items
 * ignored; a value may contain '=' but not ','), of which only the items whose key keep()
 * accepts are applied (keep NULL: every item). name (e.g. "KAFKA_CONSUMER_CONFIG") starts the
 * message of a bad item. */
typedef struct {
    const char *list; /* NULL or "": nothing */
    const char *name;
    int (*keep)(const char *key);
} epp_kafka_passthrough_t;

/* The one way an epp program builds a librdkafka configuration: a new configuration with the epp
 * log and error callbacks installed (epp_kafka_log_cb, epp_kafka_error_cb), then props[0..nprops)
 * applied in order, then the pass-through items (pass may be NULL) -- last, so that an operator's
 * setting wins over a built-in one (deliberately: for experiments and security settings).
 * Returns the conf -- the caller owns it until rd_kafka_new() takes it on success -- or NULL
 * with a message naming the bad key in err. */
rd_kafka_conf_t *epp_kafka_conf_create(const epp_kafka_prop_t *props, size_t nprops,
                                       const epp_kafka_passthrough_t *pass, char *err,
                                       size_t errsz);

/* A keep() for epp_kafka_passthrough_t: 1 for the items that say how to reach and authenticate
 * to a cluster (security.protocol, sasl.*, ssl.*, enable.ssl.*, enable.sasl.*). This is how the
 * programs' other clients of the consumer's cluster (the dead-letter producer, epp-admin's dlq
 * commands) take KAFKA_CONSUMER_CONFIG's connection settings and nothing else. */
int epp_kafka_is_connection_key(const char *key);

/* rd_kafka_conf_set_log_cb() callback: syslog levels 0-3 become error, 4 warn, 5-6 info and 7
 * debug, with fields "facility" and "client". Installed by epp_kafka_conf_create. */
void epp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* rd_kafka_conf_set_error_cb() callback: logs the error (error level when fatal or when all
 * brokers are down, warn otherwise). librdkafka retries these itself; the log is for people.
 * Installed by epp_kafka_conf_create. */
void epp_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* Asks the cluster for metadata within timeout_ms: the broker-reachability check behind
 * /ready. With topic non-NULL, also checks that the topic exists and returns its partition
 * count (> 0); with topic NULL returns 0 when a broker answered. Failures: EPP_EUNAVAIL (no
 * broker answered in time), EPP_ENOTFOUND (topic unknown), with a reason in reason (may be
 * NULL). Blocks the calling thread up to timeout_ms. */
int epp_kafka_ping(rd_kafka_t *rk, const char *topic, int timeout_ms, char *reason,
                   size_t reason_size);

/* Creates topic with `partitions` partitions when the cluster does not have it yet: replication
 * factor min(3, brokers in the metadata) and min.insync.replicas min(2, brokers), so that
 * acks=all survives one broker down on a cluster of three and a single node works at all.
 * Brokers run with auto.create.topics.enable=false (scripts/kafka.sh), so the services create
 * `events` and `events.dlq` themselves at start-up. An existing topic is left as it is (its
 * partitions and replication are the operator's) and returns 0. A cluster that will not create
 * topics is not an error either, and returns 0 after logging why: the dev broker (librdkafka's
 * mock cluster has no CreateTopics; it creates topics on first use) or a principal without the
 * CREATE right (production clusters often manage topics themselves).
 * Errors: EPP_EUNAVAIL when no broker answered within timeout_ms (retry later), EPP_EINVAL when
 * the cluster refused the request itself (bad partition count, policy), with a message in err.
 * Blocks the calling thread up to about twice timeout_ms. Any thread while rk is alive. */
int epp_kafka_topic_ensure(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms,
                           char *err, size_t errsz);

/* Maps a librdkafka error onto an EPP_E* code, keeping the retriable/permanent split:
 * queue full -> EPP_EAGAIN; message timed out / request timed out -> EPP_ETIMEDOUT;
 * transport, all brokers down, leader/coordinator moves, not enough replicas -> EPP_EUNAVAIL;
 * message too large -> EPP_ETOOBIG; unknown topic/partition -> EPP_ENOTFOUND; invalid
 * arguments, corrupt or invalid messages, authorization failures -> EPP_EINVAL; NO_ERROR -> 0.
 * Any other error is EPP_EIO (retriable): losing an event to a wrong "permanent" is worse than
 * retrying a hopeless one a few more times. */
int epp_kafka_err_to_epp(rd_kafka_resp_err_t err);

#endif
