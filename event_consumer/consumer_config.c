#include "consumer_config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "epp_maintain.h"

const epp_conf_opt_t consumer_conf_opts[] = {
    EPP_CONF_STR("kafka-bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092",
                 consumer_conf_t, bootstrap, "Kafka bootstrap servers (host:port,...)"),
    EPP_CONF_STR("kafka-topic", "KAFKA_TOPIC", "events", consumer_conf_t, topic,
                 "Topic the events are read from"),
    EPP_CONF_INT(
        "kafka-topic-partitions", "KAFKA_TOPIC_PARTITIONS", "12", 1, 10000, consumer_conf_t,
        topic_partitions,
        "Partitions of KAFKA_TOPIC when this service creates it at start-up (an existing topic is "
        "kept as it is); replication factor min(3, brokers), min.insync.replicas min(2, brokers)"),
    EPP_CONF_STR("kafka-dlq-topic", "KAFKA_DLQ_TOPIC", "events.dlq", consumer_conf_t, dlq_topic,
                 "Dead-letter topic for messages that can never be stored"),
    EPP_CONF_STR("kafka-group-id", "KAFKA_GROUP_ID", "event-consumer", consumer_conf_t, group_id,
                 "Consumer group; consumers of one group split the partitions"),
    EPP_CONF_SECRET_STR("database-url", "DATABASE_URL",
                        "postgresql://postgres:postgres@localhost:5432/events_db", consumer_conf_t,
                        database_url, "Postgres connection URL"),
    EPP_CONF_INT("http-port", "HTTP_PORT", "8003", 0, 65535, consumer_conf_t, http_port,
                 "Port of /health, /ready and /metrics (0: any free port)"),
    EPP_CONF_STR("log-level", "LOG_LEVEL", "info", consumer_conf_t, log_level,
                 "debug, info, warn, error"),
    EPP_CONF_STR("log-format", "LOG_FORMAT", "json", consumer_conf_t, log_format, "json or text"),
    EPP_CONF_STR("otel-exporter-otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", NULL,
                 consumer_conf_t, otel_endpoint,
                 "OTLP/HTTP endpoint for traces (unset: tracing off)"),
    EPP_CONF_STR("otel-service-name", "OTEL_SERVICE_NAME", "epp-consumer", consumer_conf_t,
                 otel_service_name, "Service name for telemetry"),
    EPP_CONF_DBL("otel-traces-sampler-arg", "OTEL_TRACES_SAMPLER_ARG", "1.0", 0, 1, consumer_conf_t,
                 otel_sampler_arg, "Trace sampling ratio"),
    EPP_CONF_INT("consumer-batch-size", "CONSUMER_BATCH_SIZE", "5000", 1, 100000, consumer_conf_t,
                 batch_size, "Most rows written in one transaction"),
    EPP_CONF_INT("consumer-batch-ms", "CONSUMER_BATCH_MS", "100", 1, 60000, consumer_conf_t,
                 batch_ms, "Longest wait (ms) for a batch to fill before it is written"),
    EPP_CONF_INT("kafka-session-timeout-ms", "KAFKA_SESSION_TIMEOUT_MS", "10000", 1000, 3600000,
                 consumer_conf_t, session_timeout_ms,
                 "Consumer group session timeout (ms): a silent consumer loses its partitions"),
    EPP_CONF_INT("retry-max-backoff-ms", "RETRY_MAX_BACKOFF_MS", "5000", 10, 600000,
                 consumer_conf_t, retry_max_backoff_ms,
                 "Cap of the exponential backoff (full jitter) between database retries"),
    EPP_CONF_INT("shutdown-timeout-ms", "SHUTDOWN_TIMEOUT_MS", "30000", 0, 3600000, consumer_conf_t,
                 shutdown_timeout_ms,
                 "On SIGTERM, how long to keep retrying the batch in hand before giving up"),
    EPP_CONF_INT("pg-connect-timeout-s", "PG_CONNECT_TIMEOUT_S", "5", 1, 600, consumer_conf_t,
                 pg_connect_timeout_s, "Postgres connect timeout (s)"),
    EPP_CONF_STR("kafka-consumer-config", "KAFKA_CONSUMER_CONFIG", NULL, consumer_conf_t,
                 kafka_consumer_config,
                 "Extra librdkafka consumer properties: key=value,key=value (applied last); its "
                 "security.protocol, sasl.*, ssl.*, enable.ssl.* and enable.sasl.* items apply "
                 "to the dead-letter producer too"),
    EPP_CONF_STR("consumer-copy-format", "CONSUMER_COPY_FORMAT", "binary", consumer_conf_t,
                 copy_format, "COPY format of the write path: binary or text"),
    EPP_CONF_BOOL("consumer-pipeline", "CONSUMER_PIPELINE", "true", consumer_conf_t, pipeline,
                  "Decode the next batch while the database writes this one (a writer thread)"),
    EPP_CONF_INT("consumer-writers", "CONSUMER_WRITERS", "2", 1, 16, consumer_conf_t, writers,
                 "Database connections writing in parallel, each its own transactions; "
                 "partition p is always written by writer p % CONSUMER_WRITERS"),
    EPP_CONF_INT("consumer-user-bitmap-memory-mb", "CONSUMER_USER_BITMAP_MEMORY_MB", "16", 0, 4096,
                 consumer_conf_t, user_bitmap_memory_mb,
                 "Memory (MiB, split between the writers) for the user ids known stored in the "
                 "per-bucket user bitmaps, so that a batch sends only new ones (0: every user id "
                 "of a batch is sent)"),
    EPP_CONF_INT("consumer-user-cache", "CONSUMER_USER_CACHE", "500000", 0, 100000000,
                 consumer_conf_t, user_cache,
                 "user_id -> uid entries of the user dictionary remembered, so that only new "
                 "users are looked up (split between the writers; 0: off, every user is looked "
                 "up)"),
    EPP_CONF_STR("sql-dir", "EPP_SQL_DIR", NULL, consumer_conf_t, sql_dir,
                 "Read migrations from this directory instead of those built in"),
    EPP_MAINTAIN_CONF_OPTS(consumer_conf_t),
    EPP_CONF_INT("maintenance-interval-s", "MAINTENANCE_INTERVAL_S", "3600", 1, 86400,
                 consumer_conf_t, maintenance_interval_s,
                 "Seconds between runs of the partition and retention maintenance (the first "
                 "run is at start-up; one consumer of several runs it at a time)"),
    EPP_CONF_END,
};

int consumer_failpoint(const char *name)
{
    const char *list = getenv("EPP_FAILPOINT");
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p = end != NULL ? end + 1 : NULL;
    }
    return 0;
}
