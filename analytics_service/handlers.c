/* The /analytics routes. Every handler checks its parameters first (400 with field named),
 * then holds one pool connection for the duration of its single statement. Database failures
 * become 503 with Retry-After (the service recovers by itself); nothing here aborts. */
#include "handlers.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_json.h"
#include "epp_log.h"
#include "epp_time.h"
#include "epp_uuid.h"
#include "queries.h"
#include "query_plan.h"

#define MAX_TEXT_PARAM 256 /* user_id and event_name: the ingestion limit (SPEC section 4) */

/* Time parameters outside [0001-01-01, 9999-12-31) are refused: every bucket bound derived
 * from an accepted range is then a timestamp that RFC 3339 and Postgres can both express. */
static int64_t min_time_us(void)
{
    return epp_time_days_from_civil(1, 1, 1) * ANALYTICS_US_DAY;
}

static int64_t max_time_us(void)
{
    return epp_time_days_from_civil(9999, 12, 31) * ANALYTICS_US_DAY;
}

static void bad_param(epp_http_req_t *req, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad_param(epp_http_req_t *req, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    epp_http_reply_error(req, 400, "invalid_parameter", msg, field, 0);
}

/* Reads a required time parameter. 0, or -1 after replying 400. */
static int param_time(epp_http_req_t *req, const char *name, int64_t *us)
{
    const char *v = epp_http_query(req, name);
    if (!v || !*v) {
        bad_param(req, name, "%s is required (RFC 3339 or epoch seconds)", name);
        return -1;
    }
    if (epp_time_parse_param(v, us) < 0) {
        bad_param(req, name, "%s must be an RFC 3339 date-time or epoch seconds", name);
        return -1;
    }
    if (*us < min_time_us() || *us > max_time_us()) {
        bad_param(req, name, "%s must lie between 0001-01-01 and 9999-12-31", name);
        return -1;
    }
    return 0;
}

/* Reads from_ts and to_ts and checks from_ts < to_ts. 0, or -1 after replying 400. */
static int param_range(epp_http_req_t *req, int64_t *from, int64_t *to)
{
    if (param_time(req, "from_ts", from) < 0 || param_time(req, "to_ts", to) < 0)
        return -1;
    if (*from >= *to) {
        bad_param(req, "to_ts", "to_ts must be later than from_ts (the range is [from_ts, to_ts))");
        return -1;
    }
    return 0;
}

/* 1 when s is something ingestion could have stored as a user_id or event_name: 1..256 bytes
 * of valid UTF-8 without control characters. Anything else cannot match a row. */
static int valid_text(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > MAX_TEXT_PARAM || !epp_json_utf8_valid(s, len))
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* An optional text parameter: *out NULL when absent. 0, or -1 after replying 400. */
static int param_text(epp_http_req_t *req, const char *name, const char **out)
{
    *out = epp_http_query(req, name);
    if (*out && !valid_text(*out)) {
        bad_param(req, name, "%s must be 1-%d bytes of UTF-8 without control characters", name,
                  MAX_TEXT_PARAM);
        return -1;
    }
    return 0;
}

/* An optional integer in [lo, hi], def when absent. 0, or -1 after replying 400. */
static int param_int(epp_http_req_t *req, const char *name, long def, long lo, long hi, long *out)
{
    const char *v = epp_http_query(req, name);
    *out = def;
    if (!v)
        return 0;
    int ok = *v != '\0' && strlen(v) <= 9;
    for (const char *p = v; ok && *p; p++)
        ok = isdigit((unsigned char)*p);
    if (ok)
        *out = strtol(v, NULL, 10);
    if (!ok || *out < lo || *out > hi) {
        bad_param(req, name, "%s must be an integer from %ld to %ld", name, lo, hi);
        return -1;
    }
    return 0;
}

static void reply_db_error(epp_http_req_t *req, int rc, const epp_pg_error_t *err)
{
    switch (rc) {
    case EPP_EAGAIN:
        epp_http_reply_error(req, 503, "database_unavailable",
                             "every database connection is busy; retry later", NULL, 1);
        break;
    case EPP_ETIMEDOUT:
        epp_http_reply_error(req, 503, "query_timeout",
                             "the query took longer than QUERY_TIMEOUT_MS; retry later or ask "
                             "for a shorter range",
                             NULL, 1);
        break;
    case EPP_EIO:
    case EPP_EUNAVAIL:
        epp_http_reply_error(req, 503, "database_unavailable",
                             "the database is unavailable; retry later", NULL, 1);
        break;
    default:
        EPP_LOGKV(EPP_LOG_ERROR, "unexpected database error", "route", epp_http_route_pattern(req),
                  "sqlstate", err->sqlstate, "error", err->message);
        epp_http_reply_error(req, 500, "internal_error", "unexpected database error", NULL, 0);
        break;
    }
}

/* Acquires a connection for this request. 0, or -1 after replying 503. */
static int acquire(analytics_ctx_t *ctx, epp_http_req_t *req, analytics_conn_t **conn)
{
    epp_pg_error_t err = {0};
    int rc = analytics_pool_acquire(ctx->pool, ctx->pool_wait_ms, conn, &err);
    if (rc < 0) {
        reply_db_error(req, rc == EPP_EINVAL ? EPP_EUNAVAIL : rc, &err);
        return -1;
    }
    return 0;
}

static void json_ts(epp_buf_t *b, const char *key, int64_t us)
{
    char ts[EPP_TIME_BUFSZ];
    epp_time_format(us, ts);
    epp_buf_printf(b, "\"%s\":\"%s\"", key, ts);
}

static void json_str(epp_buf_t *b, const char *key, const char *s)
{
    epp_buf_printf(b, "\"%s\":", key);
    if (s)
        epp_json_write_string(b, s, strlen(s));
    else
        epp_buf_append_str(b, "null");
}

static void reply_buf(epp_http_req_t *req, epp_buf_t *b)
{
    if (!b->data) {
        epp_http_reply_error(req, 500, "internal_error", "out of memory", NULL, 0);
        return;
    }
    epp_http_reply_json(req, 200, b->data, b->len);
    epp_buf_free(b);
}

static void h_count(epp_http_req_t *req, void *ud)
{
    analytics_ctx_t *ctx = ud;
    int64_t from, to, n = 0;
    const char *event_name, *user_id;
    if (param_range(req, &from, &to) < 0 || param_text(req, "event_name", &event_name) < 0 ||
        param_text(req, "user_id", &user_id) < 0)
        return;
    analytics_conn_t *conn;
    if (acquire(ctx, req, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    int rc = analytics_q_count(conn, from, to, event_name, user_id, &n, &err);
    analytics_pool_release(ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(req, rc, &err);
        return;
    }
    epp_buf_t b = {0};
    epp_buf_printf(&b, "{\"count\":%" PRId64 ",", n);
    json_ts(&b, "from_ts", from);
    epp_buf_append_char(&b, ',');
    json_ts(&b, "to_ts", to);
    if (event_name) {
        epp_buf_append_char(&b, ',');
        json_str(&b, "event_name", event_name);
    }
    if (user_id) {
        epp_buf_append_char(&b, ',');
        json_str(&b, "user_id", user_id);
    }
    epp_buf_append_char(&b, '}');
    reply_buf(req, &b);
}

static void h_timeseries(epp_http_req_t *req, void *ud)
{
    analytics_ctx_t *ctx = ud;
    int64_t from, to, width;
    const char *event_name;
    if (param_range(req, &from, &to) < 0)
        return;
    const char *interval = epp_http_query(req, "interval");
    if (!interval || !*interval) {
        bad_param(req, "interval", "interval is required: minute, hour or day");
        return;
    }
    if (strcmp(interval, "minute") == 0)
        width = ANALYTICS_US_MINUTE;
    else if (strcmp(interval, "hour") == 0)
        width = ANALYTICS_US_HOUR;
    else if (strcmp(interval, "day") == 0)
        width = ANALYTICS_US_DAY;
    else {
        bad_param(req, "interval", "interval must be minute, hour or day");
        return;
    }
    if (param_text(req, "event_name", &event_name) < 0)
        return;
    analytics_span_t inner;
    analytics_edge_t edges[2];
    int nedges;
    int64_t npoints = analytics_plan_series(from, to, width, &inner, edges, &nedges);
    if (npoints > ctx->max_points) {
        bad_param(req, "interval",
                  "the range holds %" PRId64 " %s buckets; at most %" PRId64
                  " points (use a coarser interval or a shorter range)",
                  npoints, interval, ctx->max_points);
        return;
    }
    int64_t *counts = calloc((size_t)npoints, sizeof(*counts));
    if (!counts) {
        epp_http_reply_error(req, 500, "internal_error", "out of memory", NULL, 0);
        return;
    }
    analytics_conn_t *conn;
    if (acquire(ctx, req, &conn) < 0) {
        free(counts);
        return;
    }
    epp_pg_error_t err = {0};
    int rc = analytics_q_series(conn, from, to, width, event_name, counts, npoints, &err);
    analytics_pool_release(ctx->pool, conn);
    if (rc < 0) {
        free(counts);
        reply_db_error(req, rc, &err);
        return;
    }
    epp_buf_t b = {0};
    epp_buf_reserve(&b, 64 + (size_t)npoints * 48);
    epp_buf_printf(&b, "{\"interval\":\"%s\",", interval);
    json_ts(&b, "from_ts", from);
    epp_buf_append_char(&b, ',');
    json_ts(&b, "to_ts", to);
    if (event_name) {
        epp_buf_append_char(&b, ',');
        json_str(&b, "event_name", event_name);
    }
    epp_buf_append_str(&b, ",\"points\":[");
    int64_t first = analytics_floor(from, width);
    for (int64_t i = 0; i < npoints; i++) {
        char ts[EPP_TIME_BUFSZ];
        epp_time_format(first + i * width, ts);
        epp_buf_printf(&b, "%s{\"ts\":\"%s\",\"count\":%" PRId64 "}", i ? "," : "", ts, counts[i]);
    }
    epp_buf_append_str(&b, "]}");
    free(counts);
    reply_buf(req, &b);
}

static void h_top(epp_http_req_t *req, void *ud)
{
    analytics_ctx_t *ctx = ud;
    int64_t from, to;
    long limit;
    if (param_range(req, &from, &to) < 0 || param_int(req, "limit", 10, 1, 100, &limit) < 0)
        return;
    analytics_conn_t *conn;
    if (acquire(ctx, req, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    PGresult *res = NULL;
    int rc = analytics_q_top(conn, from, to, (int)limit, &res, &err);
    analytics_pool_release(ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(req, rc, &err);
        return;
    }
    epp_buf_t b = {0};
    epp_buf_append_str(&b, "{\"items\":[");
    for (int r = 0; r < PQntuples(res); r++) {
        epp_buf_append_str(&b, r ? ",{" : "{");
        json_str(&b, "event_name", PQgetvalue(res, r, 0));
        epp_buf_printf(&b, ",\"count\":%s}", PQgetvalue(res, r, 1));
    }
    PQclear(res);
    epp_buf_append_str(&b, "],");
    json_ts(&b, "from_ts", from);
    epp_buf_append_char(&b, ',');
    json_ts(&b, "to_ts", to);
    epp_buf_printf(&b, ",\"limit\":%ld}", limit);
    reply_buf(req, &b);
}

static void h_active(epp_http_req_t *req, void *ud)
{
    analytics_ctx_t *ctx = ud;
    int64_t from, to, n = 0;
    if (param_range(req, &from, &to) < 0)
        return;
    analytics_conn_t *conn;
    if (acquire(ctx, req, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    int rc = analytics_q_active(conn, from, to, &n, &err);
    analytics_pool_release(ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(req, rc, &err);
        return;
    }
    epp_buf_t b = {0};
    epp_buf_printf(&b, "{\"unique_users\":%" PRId64 ",", n);
    json_ts(&b, "from_ts", from);
    epp_buf_append_char(&b, ',');
    json_ts(&b, "to_ts", to);
    epp_buf_append_char(&b, '}');
    reply_buf(req, &b);
}

/* One stored row as a JSON object (columns of queries.h). metadata is jsonb's text: valid
 * JSON, embedded as is. */
static void json_row(epp_buf_t *b, const PGresult *res, int r)
{
    epp_buf_append_char(b, '{');
    json_str(b, "event_id", PQgetvalue(res, r, ANALYTICS_COL_EVENT_ID));
    epp_buf_append_char(b, ',');
    json_str(b, "user_id", PQgetvalue(res, r, ANALYTICS_COL_USER_ID));
    epp_buf_append_char(b, ',');
    json_str(b, "event_name", PQgetvalue(res, r, ANALYTICS_COL_EVENT_NAME));
    epp_buf_printf(b, ",\"metadata\":%s,", PQgetvalue(res, r, ANALYTICS_COL_METADATA));
    json_ts(b, "timestamp", strtoll(PQgetvalue(res, r, ANALYTICS_COL_TS_US), NULL, 10));
    epp_buf_append_char(b, ',');
    json_ts(b, "processed_at", strtoll(PQgetvalue(res, r, ANALYTICS_COL_PROCESSED_US), NULL, 10));
    epp_buf_append_char(b, '}');
}

/* The keyset cursor: "<timestamp in epoch microseconds>_<event_id>". Clients treat it as
 * opaque. Returns 0 and fills the position, or EPP_EINVAL. */
static int parse_cursor(const char *s, int64_t *us, char id[EPP_UUID_STRLEN + 1])
{
    const char *sep = strchr(s, '_');
    if (!sep || sep == s || sep - s > 20)
        return EPP_EINVAL;
    for (const char *p = s; p < sep; p++)
        if (!isdigit((unsigned char)*p) && !(p == s && *p == '-' && sep - s > 1))
            return EPP_EINVAL;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno != 0 || v < min_time_us() || v > max_time_us())
        return EPP_EINVAL;
    epp_uuid_t u;
    if (epp_uuid_parse(sep + 1, strlen(sep + 1), &u) < 0)
        return EPP_EINVAL;
    epp_uuid_format(&u, id);
    *us = v;
    return 0;
}

static void h_user_events(epp_http_req_t *req, void *ud)
{
    analytics_ctx_t *ctx = ud;
    const char *user_id = epp_http_path_param(req, "user_id");
    long limit;
    if (!user_id || !valid_text(user_id)) {
        bad_param(req, "user_id", "user_id must be 1-%d bytes of UTF-8 without control characters",
                  MAX_TEXT_PARAM);
        return;
    }
    if (param_int(req, "limit", 100, 1, 1000, &limit) < 0)
        return;
    int64_t before_us = INT64_MAX;
    char before_id[EPP_UUID_STRLEN + 1];
    int have_id = 0;
    const char *before = epp_http_query(req, "before");
    if (before) {
        if (parse_cursor(before, &before_us, before_id) == 0)
            have_id = 1;
        else if (epp_time_parse_param(before, &before_us) < 0 || before_us < min_time_us() ||
                 before_us > max_time_us()) {
            bad_param(req, "before",
                      "before must be a next_cursor from a previous page, an RFC 3339 "
                      "date-time or epoch seconds");
            return;
        }
    }
    analytics_conn_t *conn;
    if (acquire(ctx, req, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    PGresult *res = NULL;
    /* One row more than asked tells whether another page exists. */
    int rc = analytics_q_user_events(conn, user_id, before_us, have_id ? before_id : NULL,
                                     (int)limit + 1, &res, &err);
    analytics_pool_release(ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(req, rc, &err);
        return;
    }
    int rows = PQntuples(res);
    int shown = rows > limit ? (int)limit : rows;
    epp_buf_t b = {0};
    epp_buf_append_char(&b, '{');
    json_str(&b, "user_id", user_id);
    epp_buf_append_str(&b, ",\"events\":[");
    for (int r = 0; r < shown; r++) {
        if (r)
            epp_buf_append_char(&b, ',');
        json_row(&b, res, r);
    }
    epp_buf_append_str(&b, "],\"next_cursor\":");
    if (rows > limit) {
        epp_buf_printf(&b, "\"%s_%s\"", PQgetvalue(res, shown - 1, ANALYTICS_COL_TS_US),
                       PQgetvalue(res, shown - 1, ANALYTICS_COL_EVENT_ID));
    } else {
        epp_buf_append_str(&b, "null");
    }
    epp_buf_printf(&b, ",\"limit\":%ld}", limit);
    PQclear(res);
    reply_buf(req, &b);
}

static void h_event(epp_http_req_t *req, void *ud)
{
    analytics_ctx_t *ctx = ud;
    const char *id = epp_http_path_param(req, "event_id");
    epp_uuid_t u;
    char canon[EPP_UUID_STRLEN + 1];
    if (!id || epp_uuid_parse(id, strlen(id), &u) < 0) {
        bad_param(req, "event_id", "event_id must be a UUID (8-4-4-4-12 hex digits)");
        return;
    }
    epp_uuid_format(&u, canon);
    analytics_conn_t *conn;
    if (acquire(ctx, req, &conn) < 0)
        return;
    epp_pg_error_t err = {0};
    PGresult *res = NULL;
    int rc = analytics_q_event(conn, canon, &res, &err);
    analytics_pool_release(ctx->pool, conn);
    if (rc < 0) {
        reply_db_error(req, rc, &err);
        return;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        epp_http_reply_error(req, 404, "not_found", "no event with this event_id", "event_id", 0);
        return;
    }
    epp_buf_t b = {0};
    json_row(&b, res, 0);
    PQclear(res);
    reply_buf(req, &b);
}

int analytics_handlers_register(epp_http_server_t *srv, analytics_ctx_t *ctx)
{
    /* The fixed paths first, so that /analytics/events/count is never taken for an event_id. */
    static const struct {
        const char *pattern;
        epp_http_handler_t fn;
    } routes[] = {
        {"/analytics/events/count", h_count},
        {"/analytics/events/timeseries", h_timeseries},
        {"/analytics/events/top", h_top},
        {"/analytics/users/active", h_active},
        {"/analytics/users/{user_id}/events", h_user_events},
        {"/analytics/events/{event_id}", h_event},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc = epp_http_route(srv, "GET", routes[i].pattern, routes[i].fn, ctx,
                                EPP_HTTP_ROUTE_NO_BODY);
        if (rc < 0)
            return rc;
    }
    return 0;
}
