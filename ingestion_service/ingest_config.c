/* The epp-ingest option table. Every knob of the service is here and nowhere else: --help,
 * --help-markdown (the README table) and the parser all read this one array. */
#include "ingest_config.h"

#include <stddef.h>

#define T ingest_conf_t

const epp_conf_opt_t ingest_conf_table[] = {
    EPP_OPT_KAFKA_BOOTSTRAP(T, bootstrap),
    EPP_OPT_KAFKA_TOPIC(T, topic),
    EPP_OPT_KAFKA_TOPIC_PARTITIONS(T, topic_partitions),
    EPP_CONF_INT(
        "kafka-delivery-timeout-ms", "KAFKA_DELIVERY_TIMEOUT_MS", "5000", 100, 300000, T,
        delivery_timeout_ms,
        "Longest wait for a Kafka acknowledgement before answering 503 (message.timeout.ms)"),
    EPP_CONF_INT("kafka-linger-ms", "KAFKA_LINGER_MS", "1", 0, 1000, T, linger_ms,
                 "Producer linger.ms: how long messages wait to be batched"),
    EPP_CONF_INT("kafka-batch-num-messages", "KAFKA_BATCH_NUM_MESSAGES", "10000", 1, 1000000, T,
                 batch_num_messages, "Producer batch.num.messages"),
    EPP_CONF_INT("kafka-queue-max-messages", "KAFKA_QUEUE_MAX_MESSAGES", "100000", 1, 10000000, T,
                 queue_max_messages,
                 "Producer queue.buffering.max.messages; beyond it requests get 503 queue_full"),
    EPP_CONF_INT("kafka-queue-max-kbytes", "KAFKA_QUEUE_MAX_KBYTES", "32768", 1, 2097151, T,
                 queue_max_kbytes, "Producer queue.buffering.max.kbytes (bounds memory)"),
    EPP_CONF_STR("kafka-producer-config", "KAFKA_PRODUCER_CONFIG", NULL, T, producer_config,
                 "Extra librdkafka producer properties, key=value,key=value (applied last)"),
    EPP_OPTS_HTTP_LISTEN(T, http, "8001"),
    EPP_OPTS_HTTP_SERVER(T, http, "2"),
    EPP_CONF_INT("max-body-bytes", "MAX_BODY_BYTES", "5242880", 1024, 1073741824, T, max_body_bytes,
                 "Largest request body, before and after gzip decompression (413 beyond)"),
    EPP_CONF_INT("http-max-body-inflight", "HTTP_MAX_BODY_INFLIGHT", "67108864", 0, 1LL << 40, T,
                 max_body_inflight,
                 "Bytes of request bodies over 16 KiB held at once, server-wide; a request that "
                 "would exceed it gets 503 + Retry-After before its body is read (0: no budget)"),
    EPP_CONF_INT("http-max-body-inflight-per-ip", "HTTP_MAX_BODY_INFLIGHT_PER_IP", "16777216", 0,
                 1LL << 40, T, max_body_inflight_per_ip,
                 "The same budget per client address (IPv6: per /64); 0: no own share"),
    EPP_CONF_INT("max-batch-events", "MAX_BATCH_EVENTS", "1000", 1, 100000, T, max_batch_events,
                 "Most events in one POST /events/batch (413 beyond)"),
    EPP_OPT_SHUTDOWN_TIMEOUT(T, shutdown_timeout_ms, "10000"),
    EPP_CONF_SECRET_STR("api-keys", "INGEST_API_KEYS", NULL, T, http.api_keys,
                        "Comma-separated API keys (Bearer, X-API-Key, HTTP Basic user name, or /v1 "
                        "writeKey); unset: auth off"),
    EPP_OPTS_LOG(T, log, "info"),
    EPP_OPTS_TRACE(T, trace, INGEST_PROG),
    EPP_CONF_BOOL("test-faults", "EPP_TEST_FAULTS", "false", T, test_faults,
                  "Test only: enables POST /debug/fatal (injects a fatal producer error)"),
    EPP_CONF_END,
};
