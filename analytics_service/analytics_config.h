/* The configuration of epp-analytics: one table (docs/contract.md §11) drives environment
 * variables, --flags, --help and the table in README.md (`epp-analytics --help-markdown`). */
#ifndef ANALYTICS_CONFIG_H
#define ANALYTICS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "epp_config.h"
#include "epp_options.h"

typedef struct {
    char *database_url;
    epp_opts_http_t http; /* api_keys: ANALYTICS_API_KEYS */
    int64_t db_pool_size; /* 0: same as http.threads */
    int64_t query_timeout_ms;
    int64_t pool_wait_ms;
    int64_t connect_timeout_s;
    int64_t max_points;
    int64_t user_bitmap_cache_mb;
    epp_opts_log_t log;
    epp_opts_trace_t trace;
} analytics_conf_t;

#define ANALYTICS_PROG    "epp-analytics"
#define ANALYTICS_SUMMARY "Analytics API and live dashboard over the epp event store"

/* The option table (terminated by EPP_CONF_END). */
extern const epp_conf_opt_t analytics_conf_opts[];

#endif
