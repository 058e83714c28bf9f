/* ingest_config: epp-ingest's configuration, declared as one table (docs/contract.md §11) that
 * drives environment variables, --flags, --help and the README's configuration table.
 *
 * Not thread-safe: parsed once by main() before any other thread starts, then read-only. */
#ifndef INGEST_CONFIG_H
#define INGEST_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "epp_config.h"

typedef struct {
    /* Kafka */
    char *bootstrap;
    char *topic;
    int64_t topic_partitions;
    int64_t delivery_timeout_ms;
    int64_t linger_ms;
    int64_t batch_num_messages;
    int64_t queue_max_messages;
    int64_t queue_max_kbytes;
    char *producer_config; /* "key=value,key=value" librdkafka overrides */
    /* HTTP */
    char *bind_address;
    int64_t http_port;
    int64_t http_threads;
    int64_t http_max_connections;
    int64_t http_max_per_ip;
    int64_t http_timeout_s;
    int64_t max_body_bytes;
    int64_t max_batch_events;
    int64_t shutdown_timeout_ms;
    /* Security */
    char *api_keys;
    char *cors_origins;
    double rate_limit_rps;
    double rate_limit_burst;
    /* Logs and telemetry */
    char *log_level;
    char *log_format;
    char *otel_endpoint;
    char *otel_service_name;
    double otel_sampler_arg;
    /* Test and docs helpers */
    bool test_faults;
    bool help_markdown;
} ingest_conf_t;

/* The option table (terminated by EPP_CONF_END). */
extern const epp_conf_opt_t ingest_conf_table[];

#define INGEST_PROG    "epp-ingest"
#define INGEST_SUMMARY "HTTP event ingestion: validates events and publishes them to Kafka"

#endif
