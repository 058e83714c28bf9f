/* Parameter validation of the analytics API (docs/contract.md §7): turns one request's raw query
 * and path parameters into a checked request, or into the 400 answer naming the bad field.
 *
 * Pure (no I/O, no allocation): the HTTP handlers (analytics_handlers.c) and the libFuzzer target
 * (tests/fuzz/fuzz_analytics_params.c) run exactly the same code. An accepted request
 * satisfies: MIN_TIME <= from < to <= MAX_TIME (so every bucket bound derived from it is a
 * timestamp that RFC 3339 and Postgres both express), text filters are what ingestion could
 * have stored, a timeseries has 1..max_points points, limits are in range.
 *
 * Thread-safe. */
#ifndef ANALYTICS_PARAMS_H
#define ANALYTICS_PARAMS_H

#include <stdint.h>

#include "epp_uuid.h"

typedef enum {
    ANALYTICS_ROUTE_COUNT,       /* /analytics/events/count */
    ANALYTICS_ROUTE_SERIES,      /* /analytics/events/timeseries */
    ANALYTICS_ROUTE_TOP,         /* /analytics/events/top */
    ANALYTICS_ROUTE_ACTIVE,      /* /analytics/users/active */
    ANALYTICS_ROUTE_USER_EVENTS, /* /analytics/users/{user_id}/events */
    ANALYTICS_ROUTE_EVENT,       /* /analytics/events/{event_id} */
} analytics_route_t;

#define ANALYTICS_MAX_TEXT_PARAM                                                                   \
    256 /* user_id and event_name: the ingestion limit (docs/contract.md §4) */

/* Looks a parameter up: its decoded value, or NULL when absent. For the routes with a path
 * parameter ({user_id}, {event_id}) the getter answers that name from the path. */
typedef const char *(*analytics_param_get_fn)(void *ud, const char *name);

typedef struct {
    int64_t from, to;       /* count, timeseries, top, active: [from, to) in epoch us */
    const char *event_name; /* count, timeseries; NULL: any; borrowed from the getter */
    const char *user_id;    /* count (NULL: any), user_events (never NULL); borrowed */
    const char *interval;   /* timeseries: "minute", "hour" or "day"; active: "day", "week",
                               "month" or NULL (no series); borrowed */
    int64_t width;          /* timeseries: bucket width in us */
    int period;             /* active with interval: an analytics_period_t */
    int64_t npoints;        /* timeseries, active with interval: points (1..max_points) */
    long limit;             /* top (1..100, default 10), user_events (1..1000, default 100) */
    int64_t before_us;      /* user_events: keyset position; INT64_MAX: from the newest */
    int have_before_id;     /* user_events: before_id holds the cursor's event_id */
    char before_id[EPP_UUID_STRLEN + 1];
    char event_id[EPP_UUID_STRLEN + 1]; /* event: canonical form */
} analytics_params_t;

typedef struct {
    const char *field; /* the parameter at fault (a static string) */
    char message[256];
} analytics_param_error_t;

/* Validates the parameters of route. max_points bounds a timeseries answer. Returns 0 with out
 * filled, or EPP_EINVAL with err filled (the caller answers 400 invalid_parameter). */
int analytics_params_parse(analytics_route_t route, analytics_param_get_fn get, void *ud,
                           int64_t max_points, analytics_params_t *out,
                           analytics_param_error_t *err);

/* The accepted time bounds (0001-01-01 and 9999-12-31, in epoch us). */
int64_t analytics_params_min_time(void);
int64_t analytics_params_max_time(void);

#endif
