/* The Event Consumer's configuration: one table (consumer_conf_opts) drives environment
 * variables, --flags, --help and the table in event_consumer/README.md (docs/contract.md §11). */
#ifndef CONSUMER_CONFIG_H
#define CONSUMER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "epp_config.h"
#include "epp_options.h"

typedef struct {
    char *bootstrap;
    char *topic;
    int64_t topic_partitions;
    char *dlq_topic;
    char *group_id;
    char *database_url;   /* secret: holds the password */
    epp_opts_http_t http; /* /health, /ready, /metrics: only where it listens */
    epp_opts_log_t log;
    epp_opts_trace_t trace;
    int64_t batch_size;
    int64_t batch_bytes;
    int64_t merge_batches;
    int64_t batch_ms;
    int64_t session_timeout_ms;
    int64_t retry_max_backoff_ms;
    int64_t shutdown_timeout_ms;
    int64_t pg_connect_timeout_s;
    char *kafka_consumer_config;   /* "key=value,key=value" librdkafka overrides */
    char *copy_format;             /* "binary" or "text" */
    bool pipeline;                 /* decode the next batch while the database writes this one */
    int64_t writers;               /* parallel database writers; partition p goes to p % writers */
    int64_t user_bitmap_memory_mb; /* known user ids of the bitmaps, all writers; 0: none */
    int64_t user_cache;            /* user_id -> uid entries remembered, all writers; 0: off */
    char *sql_dir;                 /* NULL: the migrations embedded in the binary */
    char *events_retention;        /* EPP_MAINTAIN_CONF_OPTS (common/epp_maintain.h) */
    char *rollup_retention;
    int64_t partitions_ahead;
    int64_t maintenance_interval_s;
} consumer_conf_t;

extern const epp_conf_opt_t consumer_conf_opts[];

/* Test-only fault points: 1 when name is one of the comma-separated names in the environment
 * variable EPP_FAILPOINT (event_consumer/README.md lists them and what each does). Any thread. */
int consumer_failpoint(const char *name);

#endif
