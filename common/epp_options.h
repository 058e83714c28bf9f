/* epp_options: the options several programs share, declared once as table fragments (one name,
 * one environment variable, one range, one help text each), so that --help, --help-markdown and
 * docs/configuration.md say the same thing for every program that takes them. A program's table
 * (see epp_config.h) includes the fragments it needs:
 *
 *     typedef struct { epp_opts_log_t log; epp_opts_http_t http; char *topic; } my_conf_t;
 *     static const epp_conf_opt_t my_opts[] = {
 *         EPP_OPTS_HTTP_LISTEN(my_conf_t, http, "8001"),
 *         EPP_OPT_KAFKA_TOPIC(my_conf_t, topic),
 *         EPP_OPTS_LOG(my_conf_t, log, "info"),
 *         EPP_CONF_END,
 *     };
 *
 * Groups whose options are used together (logging, tracing, the HTTP server) fill a struct of
 * their own, which epp_start (logging), epp_tracer_start (tracing) and epp_http_opts_set (the
 * HTTP server) read; the Kafka and Postgres options are single fragments that fill a field the
 * program names. A default is a fragment's parameter only where programs need different ones (a
 * service's port, its service name, its thread count, a tool's quieter log level); everything
 * else about an option is fixed here. tests/unit/test_options.py checks that every program's
 * --help describes each option it shares with another program in the same words. */
#ifndef EPP_OPTIONS_H
#define EPP_OPTIONS_H

#include <stdint.h>

#include "epp_config.h"

/* The fragments' `m.field` arguments are offsetof member designators, which cannot be put in
 * parentheses. */
/* NOLINTBEGIN(bugprone-macro-parentheses) */

/* ---- Logging (every program) ---- */

typedef struct {
    char *level;  /* LOG_LEVEL: debug, info, warn, error, off */
    char *format; /* LOG_FORMAT: json or text */
} epp_opts_log_t;

/* clang-format off */
#define EPP_OPTS_LOG(st, m, level_def)                                                             \
    EPP_CONF_STR("log-level", "LOG_LEVEL", level_def, st, m.level,                                 \
                 "debug, info, warn, error or off"),                                               \
    EPP_CONF_STR("log-format", "LOG_FORMAT", "json", st, m.format,                                 \
                 "json (one object per line on stderr) or text")
/* clang-format on */

/* How long a service may finish its work in hand after SIGTERM (ingest: the deliveries in flight,
 * answered 503 after it; the consumer: retries of the batch in hand). */
/* clang-format off */
#define EPP_OPT_SHUTDOWN_TIMEOUT(st, f, def)                                                       \
    EPP_CONF_INT("shutdown-timeout-ms", "SHUTDOWN_TIMEOUT_MS", def, 0, 3600000, st, f,             \
                 "On SIGTERM, the longest wait (ms) for the work in hand to finish before it is "  \
                 "given up")
/* clang-format on */

/* ---- Tracing (the services) ---- */

typedef struct {
    char *endpoint;      /* OTEL_EXPORTER_OTLP_ENDPOINT; NULL: tracing off */
    char *service;       /* OTEL_SERVICE_NAME */
    double sample_ratio; /* OTEL_TRACES_SAMPLER_ARG */
} epp_opts_trace_t;

/* clang-format off */
#define EPP_OPTS_TRACE(st, m, service_def)                                                         \
    EPP_CONF_STR("otel-exporter-otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", NULL, st,           \
                 m.endpoint,                                                                       \
                 "OTLP/HTTP collector base URL (spans are POSTed to URL/v1/traces); unset: "       \
                 "tracing off"),                                                                   \
    EPP_CONF_STR("otel-service-name", "OTEL_SERVICE_NAME", service_def, st, m.service,             \
                 "service.name of this program's spans"),                                          \
    EPP_CONF_DBL("otel-traces-sampler-arg", "OTEL_TRACES_SAMPLER_ARG", "1", 0, 1, st,              \
                 m.sample_ratio,                                                                   \
                 "Share of new traces sampled; a client's traceparent decides for its own trace")
/* clang-format on */

/* ---- The HTTP server (the services) ---- */

typedef struct {
    char *bind_address;
    int64_t port;
    int64_t threads;
    int64_t max_connections;
    int64_t max_per_ip;
    int64_t timeout_s;
    char *cors_origins;
    double rate_limit_rps;
    double rate_limit_burst;
    double auth_failure_rps;
    double auth_failure_burst;
    char *api_keys; /* declared by each service itself: each has its own variable */
} epp_opts_http_t;

/* Where the server listens: every service, the consumer included (/health, /ready, /metrics). */
/* clang-format off */
#define EPP_OPTS_HTTP_LISTEN(st, m, port_def)                                                      \
    EPP_CONF_STR("bind-address", "HTTP_BIND_ADDRESS", "0.0.0.0", st, m.bind_address,               \
                 "Address to listen on (127.0.0.1: loopback only)"),                               \
    EPP_CONF_INT("http-port", "HTTP_PORT", port_def, 0, 65535, st, m.port,                         \
                 "HTTP listen port (0: any free port)")

/* The public servers' limits, CORS and rate limits (ingest and analytics). */
#define EPP_OPTS_HTTP_SERVER(st, m, threads_def)                                                   \
    EPP_CONF_INT("http-threads", "HTTP_THREADS", threads_def, 1, 256, st, m.threads,               \
                 "HTTP worker threads (one epoll loop each)"),                                     \
    EPP_CONF_INT("http-max-connections", "HTTP_MAX_CONNECTIONS", "10000", 1, 1000000, st,          \
                 m.max_connections, "Open HTTP connections at most; more are refused at accept"),  \
    EPP_CONF_INT("http-max-per-ip", "HTTP_MAX_PER_IP", "0", 0, 1000000, st, m.max_per_ip,          \
                 "Open HTTP connections per client IP, IPv6 per /64 (0: no limit)"),               \
    EPP_CONF_INT("http-timeout-s", "HTTP_TIMEOUT_S", "30", 1, 3600, st, m.timeout_s,               \
                 "Idle or slow HTTP connections are closed after this many seconds"),              \
    EPP_CONF_STR("cors-origins", "CORS_ORIGINS", NULL, st, m.cors_origins,                         \
                 "Comma-separated CORS allow-list, * for any; unset: CORS off"),                   \
    EPP_CONF_DBL("rate-limit-rps", "RATE_LIMIT_RPS", "0", 0, 1e9, st, m.rate_limit_rps,            \
                 "Requests per second per API key (or per client IP without keys); 0: off"),       \
    EPP_CONF_DBL("rate-limit-burst", "RATE_LIMIT_BURST", "0", 0, 1e9, st, m.rate_limit_burst,      \
                 "Rate-limit bucket size; 0: same as RATE_LIMIT_RPS"),                             \
    EPP_CONF_DBL("auth-failure-rps", "AUTH_FAILURE_RPS", "1", 0, 1e9, st, m.auth_failure_rps,      \
                 "Failed authentications a client (IPv6: a /64) may make per second; beyond the "  \
                 "burst its requests get 429 before any key is compared; 0: off"),                 \
    EPP_CONF_DBL("auth-failure-burst", "AUTH_FAILURE_BURST", "20", 0, 1e9, st,                     \
                 m.auth_failure_burst,                                                             \
                 "Failed authentications allowed at once; 0: same as AUTH_FAILURE_RPS")
/* clang-format on */

/* ---- Kafka (ingest, consumer, epp-admin) ---- */

/* clang-format off */
#define EPP_OPT_KAFKA_BOOTSTRAP(st, f)                                                             \
    EPP_CONF_STR("kafka-bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", st, f,    \
                 "Kafka bootstrap servers (host:port,...)")
#define EPP_OPT_KAFKA_TOPIC(st, f)                                                                 \
    EPP_CONF_STR("kafka-topic", "KAFKA_TOPIC", "events", st, f, "Topic of the events")
#define EPP_OPT_KAFKA_TOPIC_PARTITIONS(st, f)                                                      \
    EPP_CONF_INT("kafka-topic-partitions", "KAFKA_TOPIC_PARTITIONS", "12", 1, 10000, st, f,        \
                 "Partitions of KAFKA_TOPIC when this program creates it at start-up (an "         \
                 "existing topic is kept as it is); replication factor min(3, brokers), "          \
                 "min.insync.replicas min(2, brokers)")
#define EPP_OPT_KAFKA_DLQ_TOPIC(st, f)                                                             \
    EPP_CONF_STR("kafka-dlq-topic", "KAFKA_DLQ_TOPIC", "events.dlq", st, f,                        \
                 "Dead-letter topic: the messages that can never be stored")
/* The consumer's pass-through settings; its connection items (security.protocol, sasl.*, ssl.*,
 * enable.ssl.*, enable.sasl.*) also serve the programs' other clients of the same cluster (the
 * dead-letter producer, epp-admin's dlq commands): see epp_kafka_is_connection_key. */
#define EPP_OPT_KAFKA_CONSUMER_CONFIG(st, f)                                                       \
    EPP_CONF_STR("kafka-consumer-config", "KAFKA_CONSUMER_CONFIG", NULL, st, f,                    \
                 "Extra librdkafka consumer properties: key=value,key=value (applied last); its "  \
                 "security.protocol, sasl.*, ssl.*, enable.ssl.* and enable.sasl.* items also "    \
                 "apply to the other Kafka clients (dead letters, epp-admin)")
/* clang-format on */

/* ---- Postgres (consumer, analytics, epp-admin) ---- */

/* clang-format off */
#define EPP_OPT_PG_URL(st, f)                                                                      \
    EPP_CONF_SECRET_STR("database-url", "DATABASE_URL",                                            \
                        "postgresql://postgres:postgres@localhost:5432/events_db", st, f,          \
                        "Postgres connection URL (libpq URI or key=value string)")
#define EPP_OPT_PG_CONNECT_TIMEOUT(st, f, def)                                                     \
    EPP_CONF_INT("pg-connect-timeout-s", "PG_CONNECT_TIMEOUT_S", def, 1, 600, st, f,               \
                 "Postgres connect timeout in seconds")
#define EPP_OPT_SQL_DIR(st, f)                                                                     \
    EPP_CONF_STR("sql-dir", "EPP_SQL_DIR", NULL, st, f,                                            \
                 "Read the migrations from this directory instead of those built in")
/* clang-format on */

/* NOLINTEND(bugprone-macro-parentheses) */

#endif
