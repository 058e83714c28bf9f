/* The configuration of epp-analytics: one table (docs/contract.md §11) drives environment
 * variables,
 * --flags, --help and the table in README.md (`epp-analytics --help-markdown`). */
#ifndef ANALYTICS_CONFIG_H
#define ANALYTICS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "epp_config.h"

typedef struct {
    char *database_url;
    char *bind_address;
    int64_t http_port;
    char *log_level;
    char *log_format;
    char *otel_endpoint;
    char *otel_service_name;
    double otel_sampler_arg;
    char *api_keys;
    double rate_limit_rps;
    double rate_limit_burst;
    char *cors_origins;
    int64_t http_threads;
    int64_t db_pool_size; /* 0: same as http_threads */
    int64_t query_timeout_ms;
    int64_t pool_wait_ms;
    int64_t max_points;
    int64_t max_connections;
    int64_t connect_timeout_s;
    int64_t http_timeout_s;
    int64_t max_per_ip;
    bool help_markdown;
} analytics_conf_t;

/* The option table (terminated by EPP_CONF_END). */
extern const epp_conf_opt_t analytics_conf_opts[];

#endif
