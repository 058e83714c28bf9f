/* Range decomposition; see analytics_plan.h for the contract. */
#include "analytics_plan.h"

#include "epp_time.h"

int64_t analytics_floor(int64_t t, int64_t width)
{
    return epp_time_floor(t, width);
}

int64_t analytics_ceil(int64_t t, int64_t width)
{
    int64_t f = analytics_floor(t, width);
    return f == t ? t : f + width;
}

static analytics_span_t span(int64_t lo, int64_t hi)
{
    analytics_span_t s = {lo, hi};
    return s;
}

static const int64_t widths[3] = {ANALYTICS_US_DAY, ANALYTICS_US_HOUR, ANALYTICS_US_MINUTE};

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* The pieces of plan p by level (0 day, 1 hour, 2 minute) and side (0 left, 1 right). The
 * day run has one slot; its "right" slot is never used. */
static analytics_span_t *piece(analytics_plan_t *p, int level, int side)
{
    if (level == 0)
        return &p->day;
    return level == 1 ? &p->hour[side] : &p->minute[side];
}

/* [lo, hi) where hi is a bucket start of every level >= level: whole buckets are taken from the
 * right end, coarsest first; what is left below one minute is the raw edge. */
static void left_side(analytics_plan_t *p, int64_t lo, int64_t hi, int level)
{
    for (int l = level; l < 3; l++) {
        int64_t c = min64(analytics_ceil(lo, widths[l]), hi);
        *piece(p, l, 0) = span(c, hi);
        hi = c;
    }
    p->raw[0] = span(lo, hi);
}

/* Mirror image of left_side: lo is a bucket start of every level >= level. */
static void right_side(analytics_plan_t *p, int64_t lo, int64_t hi, int level)
{
    for (int l = level; l < 3; l++) {
        int64_t f = max64(analytics_floor(hi, widths[l]), lo);
        *piece(p, l, 1) = span(lo, f);
        lo = f;
    }
    p->raw[1] = span(lo, hi);
}

static void normalise(analytics_span_t *s, int64_t from)
{
    if (s->lo >= s->hi)
        *s = span(from, from);
}

void analytics_plan_range(int64_t from, int64_t to, analytics_plan_t *p)
{
    p->day = span(from, from);
    for (int i = 0; i < 2; i++)
        p->hour[i] = p->minute[i] = p->raw[i] = span(from, from);
    p->raw[0] = span(from, to);
    /* The coarsest level with a whole bucket inside [from, to) holds the middle run; each side
     * of it is then cut by the finer levels only. */
    for (int l = 0; l < 3; l++) {
        int64_t c = analytics_ceil(from, widths[l]), f = analytics_floor(to, widths[l]);
        if (c < f) {
            *piece(p, l, 0) = span(c, f);
            if (l < 2) {
                left_side(p, from, c, l + 1);
                right_side(p, f, to, l + 1);
            } else {
                p->raw[0] = span(from, c);
                p->raw[1] = span(f, to);
            }
            break;
        }
    }
    if (p->raw[0].lo == from && p->raw[0].hi == to && to - from >= ANALYTICS_US_MINUTE) {
        /* No whole minute inside, yet longer than one: cut at the minute boundary between, so
         * that each raw edge stays under a minute. */
        int64_t c = analytics_ceil(from, ANALYTICS_US_MINUTE);
        p->raw[0] = span(from, c);
        p->raw[1] = span(c, to);
    }
    normalise(&p->day, from);
    for (int i = 0; i < 2; i++) {
        normalise(&p->hour[i], from);
        normalise(&p->minute[i], from);
        normalise(&p->raw[i], from);
    }
}

int64_t analytics_plan_series(int64_t from, int64_t to, int64_t w, analytics_span_t *inner,
                              analytics_edge_t edges[2], int *nedges)
{
    int64_t first = analytics_floor(from, w), last = analytics_floor(to - 1, w);
    int64_t c = analytics_ceil(from, w), f = analytics_floor(to, w);
    *nedges = 0;
    if (c > f) {
        /* from and to lie inside one bucket. */
        *inner = span(from, from);
        edges[0].bucket = first;
        edges[0].span = span(from, to);
        *nedges = 1;
    } else {
        *inner = c < f ? span(c, f) : span(from, from);
        if (from < c) {
            edges[*nedges].bucket = first;
            edges[*nedges].span = span(from, c);
            (*nedges)++;
        }
        if (f < to) {
            edges[*nedges].bucket = f;
            edges[*nedges].span = span(f, to);
            (*nedges)++;
        }
    }
    return (last - first) / w + 1;
}

/* Days since 1970-01-01 of the UTC day holding t. */
static int64_t day_of(int64_t t)
{
    return analytics_floor(t, ANALYTICS_US_DAY) / ANALYTICS_US_DAY;
}

/* 1970-01-01 was a Thursday: day d is a Monday when (d + 3) % 7 == 0 (floored). */
static int64_t week_start_day(int64_t d)
{
    int64_t r = (d + 3) % 7;
    if (r < 0)
        r += 7;
    return d - r;
}

static int64_t month_number(int64_t t)
{
    int64_t y;
    unsigned m, d;
    epp_time_civil_from_days(day_of(t), &y, &m, &d);
    return y * 12 + (int64_t)m - 1;
}

int64_t analytics_period_floor(analytics_period_t p, int64_t t)
{
    switch (p) {
    case ANALYTICS_PERIOD_WEEK:
        return week_start_day(day_of(t)) * ANALYTICS_US_DAY;
    case ANALYTICS_PERIOD_MONTH: {
        int64_t mn = month_number(t);
        int64_t y = mn >= 0 ? mn / 12 : -((-mn + 11) / 12);
        return epp_time_days_from_civil(y, (unsigned)(mn - y * 12) + 1, 1) * ANALYTICS_US_DAY;
    }
    case ANALYTICS_PERIOD_DAY:
    default:
        return day_of(t) * ANALYTICS_US_DAY;
    }
}

int64_t analytics_period_index(analytics_period_t p, int64_t first, int64_t t)
{
    switch (p) {
    case ANALYTICS_PERIOD_WEEK:
        return (week_start_day(day_of(t)) - week_start_day(day_of(first))) / 7;
    case ANALYTICS_PERIOD_MONTH:
        return month_number(t) - month_number(first);
    case ANALYTICS_PERIOD_DAY:
    default:
        return day_of(t) - day_of(first);
    }
}

int64_t analytics_period_start(analytics_period_t p, int64_t first, int64_t i)
{
    switch (p) {
    case ANALYTICS_PERIOD_WEEK:
        return (week_start_day(day_of(first)) + 7 * i) * ANALYTICS_US_DAY;
    case ANALYTICS_PERIOD_MONTH: {
        int64_t mn = month_number(first) + i;
        int64_t y = mn >= 0 ? mn / 12 : -((-mn + 11) / 12);
        return epp_time_days_from_civil(y, (unsigned)(mn - y * 12) + 1, 1) * ANALYTICS_US_DAY;
    }
    case ANALYTICS_PERIOD_DAY:
    default:
        return (day_of(first) + i) * ANALYTICS_US_DAY;
    }
}

int64_t analytics_period_count(analytics_period_t p, int64_t from, int64_t to)
{
    return analytics_period_index(p, from, to - 1) + 1;
}
