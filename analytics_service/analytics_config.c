/* The option table of epp-analytics. Defaults follow SPEC sections 7, 10 and 11. */
#include "analytics_config.h"

#include <stddef.h>

#define C analytics_conf_t
const epp_conf_opt_t analytics_conf_opts[] = {
    EPP_CONF_SECRET_STR("database-url", "DATABASE_URL",
                        "postgresql://postgres:postgres@localhost:5432/events_db", C, database_url,
                        "Postgres connection URL (libpq URI or key=value string)"),
    EPP_CONF_STR("bind-address", "HTTP_BIND_ADDRESS", "0.0.0.0", C, bind_address,
                 "Address to listen on (127.0.0.1 for loopback only)"),
    EPP_CONF_INT("http-port", "HTTP_PORT", "8002", 0, 65535, C, http_port,
                 "HTTP listen port (0 picks a free port)"),
    EPP_CONF_STR("log-level", "LOG_LEVEL", "info", C, log_level, "debug, info, warn, error or off"),
    EPP_CONF_STR("log-format", "LOG_FORMAT", "json", C, log_format,
                 "json (one object per line on stderr) or text"),
    EPP_CONF_STR("otel-exporter-otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", NULL, C,
                 otel_endpoint, "OTLP/HTTP endpoint (accepted; analytics exports no spans yet)"),
    EPP_CONF_STR("otel-service-name", "OTEL_SERVICE_NAME", "epp-analytics", C, otel_service_name,
                 "Service name for traces"),
    EPP_CONF_DBL("otel-traces-sampler-arg", "OTEL_TRACES_SAMPLER_ARG", "1", 0, 1, C,
                 otel_sampler_arg, "Trace sampling ratio"),
    EPP_CONF_SECRET_STR("api-keys", "ANALYTICS_API_KEYS", NULL, C, api_keys,
                        "Comma-separated API keys (Bearer or X-API-Key); unset: auth off"),
    EPP_CONF_DBL("rate-limit-rps", "RATE_LIMIT_RPS", "0", 0, 1e9, C, rate_limit_rps,
                 "Requests per second per API key (or per client IP); 0: off"),
    EPP_CONF_STR("cors-origins", "CORS_ORIGINS", NULL, C, cors_origins,
                 "Comma-separated CORS allow-list, * for any; unset: CORS off"),
    EPP_CONF_INT("http-threads", "HTTP_THREADS", "4", 1, 256, C, http_threads,
                 "HTTP worker threads (each holds at most one database connection)"),
    EPP_CONF_INT("db-pool-size", "DB_POOL_SIZE", "0", 0, 1024, C, db_pool_size,
                 "Postgres connections; 0: one per HTTP thread"),
    EPP_CONF_INT("query-timeout-ms", "QUERY_TIMEOUT_MS", "5000", 1, 3600000, C, query_timeout_ms,
                 "statement_timeout of every query; a query over it answers 503"),
    EPP_CONF_INT("pool-wait-ms", "DB_POOL_WAIT_MS", "2000", 1, 600000, C, pool_wait_ms,
                 "How long a request waits for a free connection before 503"),
    EPP_CONF_INT("max-points", "MAX_POINTS", "10000", 1, 1000000, C, max_points,
                 "Largest timeseries answer; more points is a 400"),
    EPP_CONF_INT("max-connections", "HTTP_MAX_CONNECTIONS", "10000", 1, 1000000, C, max_connections,
                 "Open HTTP connections at most"),
    EPP_CONF_INT("db-connect-timeout-s", "DB_CONNECT_TIMEOUT_S", "3", 1, 600, C, connect_timeout_s,
                 "Postgres connect timeout"),
    EPP_CONF_END,
};
#undef C
