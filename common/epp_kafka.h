/* epp_kafka: the few librdkafka helpers every epp program repeats -- building a configuration
 * with errors reported as text, routing librdkafka's logs and errors into epp_log, checking that
 * the brokers answer (for /ready), and mapping librdkafka error codes onto EPP_E* codes.
 *
 * Threads: epp_kafka_conf_new/epp_kafka_conf_set/epp_kafka_conf_set_list touch only the conf
 * they are given (one thread at a time per conf). The callbacks installed by
 * epp_kafka_conf_new run on librdkafka's internal threads; they only call epp_log, which is
 * thread-safe. epp_kafka_ping may be called from any thread while rk is alive; it blocks for
 * at most timeout_ms. */
#ifndef EPP_KAFKA_H
#define EPP_KAFKA_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* Creates a configuration with bootstrap.servers set (when bootstrap is non-NULL), the epp
 * log and error callbacks installed (epp_kafka_log_cb, epp_kafka_error_cb), and then each
 * "key=value" string of overrides applied in order (overrides is NULL-terminated, or NULL).
 * Returns the conf -- caller owns it until it is handed to rd_kafka_new(), which takes it on
 * success -- or NULL with a message naming the bad key in err. */
rd_kafka_conf_t *epp_kafka_conf_new(const char *bootstrap, const char *const *overrides, char *err,
                                    size_t errsz);

/* Applies one "key=value" (the value may contain '='). 0, or EPP_EINVAL with a message. */
int epp_kafka_conf_set(rd_kafka_conf_t *conf, const char *kv, char *err, size_t errsz);

/* Applies a comma-separated list of "key=value" items ("linger.ms=5,acks=all"); blanks around
 * items are ignored, NULL or "" is a no-op. Values cannot contain commas (bootstrap.servers has
 * its own parameter above). 0, or EPP_EINVAL with a message naming the bad item. */
int epp_kafka_conf_set_list(rd_kafka_conf_t *conf, const char *list, char *err, size_t errsz);

/* The same, applying only the items whose key keep() accepts (keep NULL: every item). This is
 * how a second client takes some of another client's settings -- the consumer's dead-letter
 * producer takes the consumer's security settings. */
int epp_kafka_conf_set_list_keys(rd_kafka_conf_t *conf, const char *list,
                                 int (*keep)(const char *key), char *err, size_t errsz);

/* rd_kafka_conf_set_log_cb() callback: syslog levels 0-3 become error, 4 warn, 5-6 info and 7
 * debug, with fields "facility" and "client". Installed by epp_kafka_conf_new. */
void epp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* rd_kafka_conf_set_error_cb() callback: logs the error (error level when fatal or when all
 * brokers are down, warn otherwise). librdkafka retries these itself; the log is for people.
 * Installed by epp_kafka_conf_new. */
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
