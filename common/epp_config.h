/* Declarative configuration: one table per program drives the parsing of environment variables
 * and --flags, the bounds checks, --help, and the configuration tables in the docs.
 *
 * Precedence: defaults < environment variables < --flags. Flags are --name=value or
 * --name value; booleans also accept a bare --name. Unknown flags, unparsable values and values
 * out of bounds are rejected with a message that names the flag (and env var).
 *
 * A program declares a struct and a table of epp_conf_opt_t whose offsets point into it:
 *
 *     typedef struct { char *bootstrap; int64_t http_port; bool quiet; } ingest_conf_t;
 *     static const epp_conf_opt_t ingest_opts[] = {
 *         EPP_CONF_STR("kafka-bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092",
 *                      ingest_conf_t, bootstrap, "Kafka bootstrap servers"),
 *         EPP_CONF_INT("http-port", "HTTP_PORT", "8001", 1, 65535, ingest_conf_t, http_port,
 *                      "HTTP listen port"),
 *         EPP_CONF_END,
 *     };
 *
 * Field types: EPP_CONF_STRING -> char * (malloc'd, freed by epp_config_free; NULL when the
 * default is NULL and nothing was given), EPP_CONF_INT -> int64_t, EPP_CONF_BOOL -> bool,
 * EPP_CONF_DOUBLE -> double. Not thread-safe; called from main() at start-up. */
#ifndef EPP_CONFIG_H
#define EPP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    EPP_CONF_STRING,
    EPP_CONF_INT,
    EPP_CONF_BOOL,
    EPP_CONF_DOUBLE,
} epp_conf_type_t;

enum {
    EPP_CONF_SECRET = 1 << 0, /* never printed or logged: shown as "(set)" / "(unset)" */
};

typedef struct {
    const char *flag; /* "http-port": used as --http-port; NULL ends the table */
    const char *env;  /* "HTTP_PORT", or NULL for flag-only options */
    epp_conf_type_t type;
    const char *def;  /* default, as text (NULL: no default, string stays NULL) */
    double min, max;  /* bounds for INT and DOUBLE (inclusive); ignored when min > max */
    size_t offset;    /* offsetof(struct, field) */
    const char *help; /* one line */
    unsigned flags;   /* EPP_CONF_SECRET */
} epp_conf_opt_t;

/* One initialiser per line reads better than clang-format's layout of these macros. */
/* clang-format off */
#define EPP_CONF_STR(flag, env, def, st, field, help)                                              \
    { flag, env, EPP_CONF_STRING, def, 1, 0, offsetof(st, field), help, 0 }
#define EPP_CONF_SECRET_STR(flag, env, def, st, field, help)                                       \
    { flag, env, EPP_CONF_STRING, def, 1, 0, offsetof(st, field), help, EPP_CONF_SECRET }
#define EPP_CONF_INT(flag, env, def, lo, hi, st, field, help)                                      \
    { flag, env, EPP_CONF_INT, def, lo, hi, offsetof(st, field), help, 0 }
#define EPP_CONF_DBL(flag, env, def, lo, hi, st, field, help)                                      \
    { flag, env, EPP_CONF_DOUBLE, def, lo, hi, offsetof(st, field), help, 0 }
#define EPP_CONF_BOOL(flag, env, def, st, field, help)                                             \
    { flag, env, EPP_CONF_BOOL, def, 1, 0, offsetof(st, field), help, 0 }
#define EPP_CONF_END { 0 }
/* clang-format on */

/* Fills cfg from defaults, the environment, then argv (argv[0] is skipped).
 * Returns 0 on success; 1 when --help, --help-markdown (the Markdown table) or --version was given
 * and printed to stdout (the caller exits 0); EPP_EINVAL with a message in err when an option is
 * unknown or a value is bad (the caller prints it and exits 2). Positional arguments are rejected
 * unless rest is non-NULL, in which case *rest_index receives the index of the first non-option
 * argument ("--" ends options). prog and summary are used by --help. Details: every field in the
 * table is first reset (strings to NULL, without freeing: call epp_config_free before parsing into
 * the same struct again), so epp_config_free is safe after any return. --help/-h/--version win over
 * bad values elsewhere. With rest_index, option parsing stops at the first positional argument
 * (options after it are the caller's). A malformed environment variable is an error even when a
 * flag overrides it. */
int epp_config_parse(const epp_conf_opt_t *table, void *cfg, int argc, char **argv,
                     const char *prog, const char *summary, int *rest_index, char *err,
                     size_t errsz);

/* Prints usage: every option with its flag, env var, default and help. */
void epp_config_print_help(FILE *out, const char *prog, const char *summary,
                           const epp_conf_opt_t *table);

/* Prints a Markdown table (| flag | env | default | description |) for the docs. */
void epp_config_print_markdown(FILE *out, const epp_conf_opt_t *table);

/* Logs the effective configuration at info level, secrets redacted: options flagged
 * EPP_CONF_SECRET show "(set)" or "(unset)"; in every other string, the value of each
 * comma-separated key=value item whose key looks secret -- contains "password" or "secret", or
 * starts with "sasl." or "ssl.key", in any case -- shows "(set)" (the librdkafka override lists
 * KAFKA_PRODUCER_CONFIG and KAFKA_CONSUMER_CONFIG carry sasl.password and ssl.key.password). */
void epp_config_log(const epp_conf_opt_t *table, const void *cfg);

/* Frees the strings epp_config_parse allocated. Accepts a zeroed or partly filled cfg. */
void epp_config_free(const epp_conf_opt_t *table, void *cfg);

#endif
