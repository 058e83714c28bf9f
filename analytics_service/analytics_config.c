/* The option table of epp-analytics. Defaults follow docs/contract.md §7, 10 and 11. */
#include "analytics_config.h"

#include <stddef.h>

#define C analytics_conf_t
const epp_conf_opt_t analytics_conf_opts[] = {
    EPP_OPT_PG_URL(C, database_url),
    EPP_OPTS_HTTP_LISTEN(C, http, "8002"),
    EPP_OPTS_HTTP_SERVER(C, http, "4"),
    EPP_CONF_SECRET_STR("api-keys", "ANALYTICS_API_KEYS", NULL, C, http.api_keys,
                        "Comma-separated API keys (Bearer, X-API-Key or Basic); unset: auth off"),
    EPP_CONF_INT("db-pool-size", "DB_POOL_SIZE", "0", 0, 1024, C, db_pool_size,
                 "Postgres connections; 0: one per HTTP thread (each thread holds at most one)"),
    EPP_CONF_INT("query-timeout-ms", "QUERY_TIMEOUT_MS", "5000", 1, 3600000, C, query_timeout_ms,
                 "statement_timeout of every query; a query over it answers 503"),
    EPP_CONF_INT("pool-wait-ms", "DB_POOL_WAIT_MS", "2000", 1, 600000, C, pool_wait_ms,
                 "How long a request waits for a free connection before 503"),
    EPP_OPT_PG_CONNECT_TIMEOUT(C, connect_timeout_s, "3"),
    EPP_CONF_INT("max-points", "MAX_POINTS", "10000", 1, 1000000, C, max_points,
                 "Largest timeseries answer; more points is a 400"),
    EPP_CONF_INT("user-bitmap-cache-mb", "USER_BITMAP_CACHE_MB", "64", 0, 65536, C,
                 user_bitmap_cache_mb,
                 "Memory for the user bitmaps (hour and day decoded, edge minutes packed) shared "
                 "by the requests of /analytics/users/active; 0: none (every answer reads them)"),
    EPP_OPTS_LOG(C, log, "info"),
    EPP_OPTS_TRACE(C, trace, ANALYTICS_PROG),
    EPP_CONF_END,
};
#undef C
