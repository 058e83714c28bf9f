/* Levelled, structured logging: one JSON object per line on stderr, or a human-readable line
 * with LOG_FORMAT=text.
 *
 * JSON line shape: {"ts":"2026-11-27T08:31:45.123Z","level":"info","service":"epp-ingest",
 * "msg":"listening","port":"8001"} -- the message is printf-formatted, and extra fields are
 * string key/value pairs. Formatting is skipped entirely when the level is below the threshold
 * (the EPP_LOG_* macros test the level before evaluating their arguments).
 *
 * Thread-safe: any thread may log; each line is written with one write(2) so lines never
 * interleave. epp_log_init() is called once by main() before other threads start.
 * Secrets are never passed to the logger (config values flagged secret are redacted). */
#ifndef EPP_LOG_H
#define EPP_LOG_H

#include <stddef.h>

typedef enum {
    EPP_LOG_DEBUG = 0,
    EPP_LOG_INFO = 1,
    EPP_LOG_WARN = 2,
    EPP_LOG_ERROR = 3,
    EPP_LOG_OFF = 4,
} epp_log_level_t;

/* The current threshold; read without a lock on the hot path. */
extern volatile int epp_log_threshold;

/* service: the "service" field of every line (borrowed; must outlive logging, e.g. a literal).
 * json: 1 for JSON lines, 0 for text. */
void epp_log_init(const char *service, epp_log_level_t level, int json);

/* Parses "debug", "info", "warn"/"warning", "error", "off" (case-insensitive). 0 or EPP_EINVAL. */
int epp_log_level_parse(const char *s, epp_log_level_t *out);
/* Parses "json" or "text". Sets *json to 1 or 0. 0 or EPP_EINVAL. */
int epp_log_format_parse(const char *s, int *json);

/* Writes one line: msg is a printf format. Prefer the macros below, which skip all work when
 * the level is off. */
void epp_log_write(epp_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes one line with extra string fields: kv is a NULL-terminated list of key, value pairs
 * (values may be NULL, written as null). msg is not a format. Values are JSON-escaped. */
void epp_log_kv(epp_log_level_t level, const char *msg, ...);

/* Same as epp_log_kv with the pairs in an array: kv[0], kv[1] are the first key and value, and
 * so on for npairs pairs (values may be NULL). For callers that build the field list at run time
 * (epp_config_log). */
void epp_log_kv_array(epp_log_level_t level, const char *msg, const char *const *kv, size_t npairs);

#define EPP_LOG_ON(level) ((int)(level) >= epp_log_threshold)
#define EPP_LOG(level, ...)                                                                        \
    do {                                                                                           \
        if (EPP_LOG_ON(level))                                                                     \
            epp_log_write((level), __VA_ARGS__);                                                   \
    } while (0)
#define EPP_DEBUG(...) EPP_LOG(EPP_LOG_DEBUG, __VA_ARGS__)
#define EPP_INFO(...)  EPP_LOG(EPP_LOG_INFO, __VA_ARGS__)
#define EPP_WARN(...)  EPP_LOG(EPP_LOG_WARN, __VA_ARGS__)
#define EPP_ERROR(...) EPP_LOG(EPP_LOG_ERROR, __VA_ARGS__)
#define EPP_LOGKV(level, ...)                                                                      \
    do {                                                                                           \
        if (EPP_LOG_ON(level))                                                                     \
            epp_log_kv((level), __VA_ARGS__, (const char *)0);                                     \
    } while (0)

#endif
