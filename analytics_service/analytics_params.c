/* Parameter validation of the analytics API; see analytics_params.h. */
#include "analytics_params.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_json.h"
#include "epp_time.h"
#include "analytics_plan.h"

int64_t analytics_params_min_time(void)
{
    return epp_time_days_from_civil(1, 1, 1) * ANALYTICS_US_DAY;
}

int64_t analytics_params_max_time(void)
{
    return epp_time_days_from_civil(9999, 12, 31) * ANALYTICS_US_DAY;
}

static int fail(analytics_param_error_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(analytics_param_error_t *err, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    err->field = field;
    return EPP_EINVAL;
}

/* A required time parameter. */
static int param_time(analytics_param_get_fn get, void *ud, const char *name, int64_t *us,
                      analytics_param_error_t *err)
{
    const char *v = get(ud, name);
    if (!v || !*v)
        return fail(err, name, "%s is required (RFC 3339 or epoch seconds)", name);
    if (epp_time_parse_param(v, us) < 0)
        return fail(err, name, "%s must be an RFC 3339 date-time or epoch seconds", name);
    if (*us < analytics_params_min_time() || *us > analytics_params_max_time())
        return fail(err, name, "%s must lie between 0001-01-01 and 9999-12-31", name);
    return 0;
}

/* from_ts and to_ts with from_ts < to_ts. */
static int param_range(analytics_param_get_fn get, void *ud, analytics_params_t *p,
                       analytics_param_error_t *err)
{
    if (param_time(get, ud, "from_ts", &p->from, err) < 0 ||
        param_time(get, ud, "to_ts", &p->to, err) < 0)
        return EPP_EINVAL;
    if (p->from >= p->to)
        return fail(err, "to_ts",
                    "to_ts must be later than from_ts (the range is [from_ts, to_ts))");
    return 0;
}

/* 1 when s is something ingestion could have stored as a user_id or event_name: 1..256 bytes
 * of valid UTF-8 without control characters. Anything else cannot match a row. */
static int valid_text(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > ANALYTICS_MAX_TEXT_PARAM || !epp_json_utf8_valid(s, len))
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* An optional text parameter (*out NULL when absent); required ones check for NULL after. */
static int param_text(analytics_param_get_fn get, void *ud, const char *name, const char **out,
                      analytics_param_error_t *err)
{
    *out = get(ud, name);
    if (*out && !valid_text(*out))
        return fail(err, name, "%s must be 1-%d bytes of UTF-8 without control characters", name,
                    ANALYTICS_MAX_TEXT_PARAM);
    return 0;
}

/* An optional integer in [lo, hi], def when absent: decimal digits only (no sign, no
 * spaces), at most 9 of them so that strtol cannot overflow. */
static int param_int(analytics_param_get_fn get, void *ud, const char *name, long def, long lo,
                     long hi, long *out, analytics_param_error_t *err)
{
    const char *v = get(ud, name);
    *out = def;
    if (!v)
        return 0;
    int ok = *v != '\0' && strlen(v) <= 9;
    for (const char *p = v; ok && *p; p++)
        ok = isdigit((unsigned char)*p);
    if (ok)
        *out = strtol(v, NULL, 10);
    if (!ok || *out < lo || *out > hi)
        return fail(err, name, "%s must be an integer from %ld to %ld", name, lo, hi);
    return 0;
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
    if (errno != 0 || v < analytics_params_min_time() || v > analytics_params_max_time())
        return EPP_EINVAL;
    epp_uuid_t u;
    if (epp_uuid_parse(sep + 1, strlen(sep + 1), &u) < 0)
        return EPP_EINVAL;
    epp_uuid_format(&u, id);
    *us = v;
    return 0;
}

static int parse_series(analytics_param_get_fn get, void *ud, int64_t max_points,
                        analytics_params_t *p, analytics_param_error_t *err)
{
    if (param_range(get, ud, p, err) < 0)
        return EPP_EINVAL;
    p->interval = get(ud, "interval");
    if (!p->interval || !*p->interval)
        return fail(err, "interval", "interval is required: minute, hour or day");
    if (strcmp(p->interval, "minute") == 0)
        p->width = ANALYTICS_US_MINUTE;
    else if (strcmp(p->interval, "hour") == 0)
        p->width = ANALYTICS_US_HOUR;
    else if (strcmp(p->interval, "day") == 0)
        p->width = ANALYTICS_US_DAY;
    else
        return fail(err, "interval", "interval must be minute, hour or day");
    if (param_text(get, ud, "event_name", &p->event_name, err) < 0)
        return EPP_EINVAL;
    analytics_span_t inner;
    analytics_edge_t edges[2];
    int nedges;
    p->npoints = analytics_plan_series(p->from, p->to, p->width, &inner, edges, &nedges);
    if (p->npoints > max_points)
        return fail(err, "interval",
                    "the range holds %" PRId64 " %s buckets; at most %" PRId64
                    " points (use a coarser interval or a shorter range)",
                    p->npoints, p->interval, max_points);
    return 0;
}

/* /analytics/users/active: the range, and an optional series of days, weeks or months. */
static int parse_active(analytics_param_get_fn get, void *ud, int64_t max_points,
                        analytics_params_t *p, analytics_param_error_t *err)
{
    if (param_range(get, ud, p, err) < 0)
        return EPP_EINVAL;
    p->interval = get(ud, "interval");
    if (!p->interval)
        return 0;
    if (strcmp(p->interval, "day") == 0)
        p->period = ANALYTICS_PERIOD_DAY;
    else if (strcmp(p->interval, "week") == 0)
        p->period = ANALYTICS_PERIOD_WEEK;
    else if (strcmp(p->interval, "month") == 0)
        p->period = ANALYTICS_PERIOD_MONTH;
    else
        return fail(err, "interval", "interval must be day, week or month (or absent)");
    p->npoints = analytics_period_count(p->period, p->from, p->to);
    if (p->npoints > max_points)
        return fail(err, "interval",
                    "the range holds %" PRId64 " %ss; at most %" PRId64
                    " points (use a coarser interval or a shorter range)",
                    p->npoints, p->interval, max_points);
    return 0;
}

static int parse_user_events(analytics_param_get_fn get, void *ud, analytics_params_t *p,
                             analytics_param_error_t *err)
{
    p->user_id = get(ud, "user_id");
    if (!p->user_id || !valid_text(p->user_id))
        return fail(err, "user_id",
                    "user_id must be 1-%d bytes of UTF-8 without control characters",
                    ANALYTICS_MAX_TEXT_PARAM);
    if (param_int(get, ud, "limit", 100, 1, 1000, &p->limit, err) < 0)
        return EPP_EINVAL;
    p->before_us = INT64_MAX;
    const char *before = get(ud, "before");
    if (!before)
        return 0;
    if (parse_cursor(before, &p->before_us, p->before_id) == 0) {
        p->have_before_id = 1;
        return 0;
    }
    if (epp_time_parse_param(before, &p->before_us) < 0 ||
        p->before_us < analytics_params_min_time() || p->before_us > analytics_params_max_time())
        return fail(err, "before",
                    "before must be a next_cursor from a previous page, an RFC 3339 date-time or "
                    "epoch seconds");
    return 0;
}

int analytics_params_parse(analytics_route_t route, analytics_param_get_fn get, void *ud,
                           int64_t max_points, analytics_params_t *out,
                           analytics_param_error_t *err)
{
    memset(out, 0, sizeof(*out));
    err->field = NULL;
    err->message[0] = '\0';
    switch (route) {
    case ANALYTICS_ROUTE_COUNT:
        if (param_range(get, ud, out, err) < 0 ||
            param_text(get, ud, "event_name", &out->event_name, err) < 0 ||
            param_text(get, ud, "user_id", &out->user_id, err) < 0)
            return EPP_EINVAL;
        return 0;
    case ANALYTICS_ROUTE_SERIES:
        return parse_series(get, ud, max_points, out, err);
    case ANALYTICS_ROUTE_TOP:
        if (param_range(get, ud, out, err) < 0 ||
            param_int(get, ud, "limit", 10, 1, 100, &out->limit, err) < 0)
            return EPP_EINVAL;
        return 0;
    case ANALYTICS_ROUTE_ACTIVE:
        return parse_active(get, ud, max_points, out, err);
    case ANALYTICS_ROUTE_USER_EVENTS:
        return parse_user_events(get, ud, out, err);
    case ANALYTICS_ROUTE_EVENT: {
        const char *id = get(ud, "event_id");
        epp_uuid_t u;
        if (!id || epp_uuid_parse(id, strlen(id), &u) < 0)
            return fail(err, "event_id", "event_id must be a UUID (8-4-4-4-12 hex digits)");
        epp_uuid_format(&u, out->event_id);
        return 0;
    }
    }
    return fail(err, "route", "unknown route");
}
