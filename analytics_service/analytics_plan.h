/* Range planning: how a half-open range [from, to) of microseconds is answered from the
 * rollups (sql/002_rollups.sql) so that a query costs O(buckets), not O(events).
 *
 * The range is cut into the coarsest whole UTC-aligned buckets that fit: one run of whole days
 * in the middle, at most one run of whole hours on each side of it, at most one run of whole
 * minutes outside those, and finally at most two sub-minute edges that only public.events can
 * answer. The pieces are disjoint and their union is exactly [from, to), so summing the rollup
 * counts of the pieces and counting raw rows in the edges gives the exact answer.
 *
 * Distinct users (the per-bucket user bitmaps of sql/031) use the same pieces: the bitmaps of
 * the whole days, hours and minutes, and the users of the raw edges.
 *
 * Pure functions; thread-safe. */
#ifndef ANALYTICS_QUERY_PLAN_H
#define ANALYTICS_QUERY_PLAN_H

#include <stdint.h>

#define ANALYTICS_US_MINUTE (60LL * 1000000LL)
#define ANALYTICS_US_HOUR   (3600LL * 1000000LL)
#define ANALYTICS_US_DAY    (86400LL * 1000000LL)

/* A half-open span [lo, hi); empty when lo >= hi (then lo == hi). */
typedef struct {
    int64_t lo, hi;
} analytics_span_t;

typedef struct {
    analytics_span_t day;       /* whole days: epp_rollup_day */
    analytics_span_t hour[2];   /* whole hours left and right of the days: epp_rollup_hour */
    analytics_span_t minute[2]; /* whole minutes outside the hours: epp_rollup_minute */
    analytics_span_t raw[2];    /* sub-minute edges: public.events */
} analytics_plan_t;

/* Floor and ceiling of t to a multiple of width (width > 0), correct for negative t. */
int64_t analytics_floor(int64_t t, int64_t width);
int64_t analytics_ceil(int64_t t, int64_t width);

/* Decomposes [from, to) (from < to) into p. Empty pieces are set to [from, from). */
void analytics_plan_range(int64_t from, int64_t to, analytics_plan_t *p);

/* One point of a timeseries: the bucket start it is reported at, and the part of [from, to)
 * that falls into that bucket. */
typedef struct {
    int64_t bucket;
    analytics_span_t span;
} analytics_edge_t;

/* Timeseries planning for buckets of width w: whole buckets inner = [ceil(from), floor(to)),
 * read from the rollup of that width, and at most two partial buckets (first and last) whose
 * counts come from analytics_plan_range() over their spans. *nedges is 0, 1 or 2. Points are
 * reported at floor(from, w), floor(from, w) + w, ..., the last bucket that starts before to;
 * their number is returned (at least 1). */
int64_t analytics_plan_series(int64_t from, int64_t to, int64_t w, analytics_span_t *inner,
                              analytics_edge_t edges[2], int *nedges);

/* The periods of a unique-users series (/analytics/users/active?interval=): UTC days, ISO weeks
 * (Monday to Sunday) and calendar months. Every period starts at a UTC day start, so a day
 * (whole, or the partial first and last day of a range) lies in exactly one period. */
typedef enum {
    ANALYTICS_PERIOD_DAY,
    ANALYTICS_PERIOD_WEEK,
    ANALYTICS_PERIOD_MONTH,
} analytics_period_t;

/* The start of the period holding t. */
int64_t analytics_period_floor(analytics_period_t p, int64_t t);
/* Index of the period holding t, counted from the one holding first (t >= first). */
int64_t analytics_period_index(analytics_period_t p, int64_t first, int64_t t);
/* The start of the period i periods after the one holding first. */
int64_t analytics_period_start(analytics_period_t p, int64_t first, int64_t i);
/* Points of a series over [from, to) (from < to): the periods from the one holding from to the
 * one holding to - 1 (at least 1). */
int64_t analytics_period_count(analytics_period_t p, int64_t from, int64_t to);

#endif
