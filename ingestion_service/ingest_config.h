/* ingest_config: epp-ingest's configuration, declared as one table (docs/contract.md §11) that
 * drives environment variables, --flags, --help and the README's configuration table.
 *
 * Not thread-safe: parsed once by main() before any other thread starts, then read-only. */
#ifndef INGEST_CONFIG_H
#define INGEST_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "epp_config.h"
#include "epp_options.h"

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
    /* HTTP (the shared server options; api_keys is INGEST_API_KEYS) */
    epp_opts_http_t http;
    int64_t max_body_bytes;
    int64_t max_body_inflight;        /* bytes of large bodies in flight, server-wide */
    int64_t max_body_inflight_per_ip; /* the same per client */
    int64_t max_batch_events;
    int64_t shutdown_timeout_ms;
    /* Logs and telemetry */
    epp_opts_log_t log;
    epp_opts_trace_t trace;
    /* Test only */
    bool test_faults;
} ingest_conf_t;

/* The option table (terminated by EPP_CONF_END). */
extern const epp_conf_opt_t ingest_conf_table[];

#define INGEST_PROG    "epp-ingest"
#define INGEST_SUMMARY "HTTP event ingestion: validates events and publishes them to Kafka"

#endif
