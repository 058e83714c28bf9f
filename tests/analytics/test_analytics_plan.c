/* The range planner (analytics_service/analytics_plan.c): for many random ranges, the pieces are
 * whole aligned buckets of their level, pairwise disjoint, and cover [from, to) exactly; the
 * raw edges are shorter than a minute; series planning agrees with brute force; the periods of
 * unique-users series (days, ISO weeks, months) agree with the calendar. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "epp_rand.h"
#include "epp_test.h"
#include "epp_time.h"
#include "analytics_plan.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    return epp_rand_next(&rng_state);
}

/* A random instant: often exactly on, or one microsecond off, a bucket boundary. */
static int64_t rnd_time(int64_t base)
{
    static const int64_t widths[] = {ANALYTICS_US_MINUTE, ANALYTICS_US_HOUR, ANALYTICS_US_DAY};
    int64_t t = base + (int64_t)(rnd() % (40 * ANALYTICS_US_DAY)) - 20 * ANALYTICS_US_DAY;
    switch (rnd() % 5) {
    case 0:
        return analytics_floor(t, widths[rnd() % 3]);
    case 1:
        return analytics_floor(t, widths[rnd() % 3]) + ((rnd() & 1) ? 1 : -1);
    case 2:
        return base + (int64_t)(rnd() % (3 * ANALYTICS_US_HOUR));
    default:
        return t;
    }
}

typedef struct {
    analytics_span_t s;
    int64_t width; /* 0: raw */
} piece_t;

static int cmp_piece(const void *a, const void *b)
{
    const piece_t *x = a, *y = b;
    return x->s.lo < y->s.lo ? -1 : x->s.lo > y->s.lo;
}

static void check_range(int64_t from, int64_t to)
{
    analytics_plan_t p;
    analytics_plan_range(from, to, &p);
    piece_t pieces[7] = {
        {p.day, ANALYTICS_US_DAY},
        {p.hour[0], ANALYTICS_US_HOUR},
        {p.hour[1], ANALYTICS_US_HOUR},
        {p.minute[0], ANALYTICS_US_MINUTE},
        {p.minute[1], ANALYTICS_US_MINUTE},
        {p.raw[0], 0},
        {p.raw[1], 0},
    };
    piece_t used[7];
    int n = 0;
    for (int i = 0; i < 7; i++) {
        CHECK(pieces[i].s.lo <= pieces[i].s.hi);
        if (pieces[i].s.lo == pieces[i].s.hi)
            continue;
        if (pieces[i].width) {
            CHECK(analytics_floor(pieces[i].s.lo, pieces[i].width) == pieces[i].s.lo);
            CHECK(analytics_floor(pieces[i].s.hi, pieces[i].width) == pieces[i].s.hi);
        } else {
            CHECK(pieces[i].s.hi - pieces[i].s.lo < ANALYTICS_US_MINUTE);
        }
        used[n++] = pieces[i];
    }
    qsort(used, (size_t)n, sizeof(used[0]), cmp_piece);
    int64_t at = from;
    for (int i = 0; i < n; i++) {
        if (used[i].s.lo != at)
            fprintf(stderr, "gap/overlap at %" PRId64 " for [%" PRId64 ", %" PRId64 ")\n", at, from,
                    to);
        CHECK(used[i].s.lo == at);
        at = used[i].s.hi;
    }
    CHECK(at == to);
}

static void check_series(int64_t from, int64_t to, int64_t w)
{
    analytics_span_t inner;
    analytics_edge_t edges[2];
    int nedges;
    int64_t n = analytics_plan_series(from, to, w, &inner, edges, &nedges);
    int64_t first = analytics_floor(from, w);
    CHECK(n >= 1);
    CHECK(first + (n - 1) * w < to);
    CHECK(first + n * w >= to);
    /* inner + edges cover [from, to) exactly, each edge inside its bucket. */
    int64_t covered = inner.hi - inner.lo;
    for (int e = 0; e < nedges; e++) {
        CHECK(edges[e].bucket == analytics_floor(edges[e].span.lo, w));
        CHECK(edges[e].span.hi <= edges[e].bucket + w);
        CHECK(edges[e].span.lo < edges[e].span.hi);
        covered += edges[e].span.hi - edges[e].span.lo;
    }
    CHECK(covered == to - from);
    if (inner.lo < inner.hi) {
        CHECK(analytics_floor(inner.lo, w) == inner.lo);
        CHECK(analytics_floor(inner.hi, w) == inner.hi);
    }
}

static void test_fixed(void)
{
    CHECK(analytics_floor(-1, 10) == -10);
    CHECK(analytics_ceil(-1, 10) == 0);
    CHECK(analytics_ceil(10, 10) == 10);
    CHECK(analytics_floor(10, 10) == 10);
    /* 2026-03-29T00:00:30Z .. 2026-03-31T05:07:01.5Z: days, hours, minutes and both edges. */
    int64_t d = 20541 * ANALYTICS_US_DAY;
    analytics_plan_t p;
    analytics_plan_range(
        d + 30 * 1000000LL,
        d + 2 * ANALYTICS_US_DAY + 5 * ANALYTICS_US_HOUR + 7 * ANALYTICS_US_MINUTE + 1500000LL, &p);
    CHECK(p.day.lo == d + ANALYTICS_US_DAY && p.day.hi == d + 2 * ANALYTICS_US_DAY);
    CHECK(p.hour[0].lo == d + ANALYTICS_US_HOUR && p.hour[0].hi == d + ANALYTICS_US_DAY);
    CHECK(p.minute[0].lo == d + ANALYTICS_US_MINUTE && p.minute[0].hi == d + ANALYTICS_US_HOUR);
    CHECK(p.raw[0].lo == d + 30 * 1000000LL && p.raw[0].hi == d + ANALYTICS_US_MINUTE);
    CHECK(p.hour[1].hi == d + 2 * ANALYTICS_US_DAY + 5 * ANALYTICS_US_HOUR);
    CHECK(p.raw[1].hi - p.raw[1].lo == 1500000LL);
}

static void test_random(void)
{
    static const int64_t widths[] = {ANALYTICS_US_MINUTE, ANALYTICS_US_HOUR, ANALYTICS_US_DAY};
    int64_t bases[] = {1774742400000000LL, 0, -86400000000LL * 400};
    for (int i = 0; i < 200000; i++) {
        int64_t base = bases[i % 3];
        int64_t a = rnd_time(base), b = rnd_time(base);
        if (a == b)
            continue;
        int64_t from = a < b ? a : b, to = a < b ? b : a;
        check_range(from, to);
        check_series(from, to, widths[i % 3]);
    }
}

static int64_t at(int64_t y, unsigned m, unsigned d, int64_t us_in_day)
{
    return epp_time_days_from_civil(y, m, d) * ANALYTICS_US_DAY + us_in_day;
}

static void test_periods(void)
{
    /* 2026-03-01 is a Sunday: its ISO week began on Monday 2026-02-23. */
    int64_t t = at(2026, 3, 1, 5 * ANALYTICS_US_HOUR);
    CHECK_INT_EQ(analytics_period_floor(ANALYTICS_PERIOD_DAY, t), at(2026, 3, 1, 0));
    CHECK_INT_EQ(analytics_period_floor(ANALYTICS_PERIOD_WEEK, t), at(2026, 2, 23, 0));
    CHECK_INT_EQ(analytics_period_floor(ANALYTICS_PERIOD_WEEK, at(2026, 2, 23, 0)),
                 at(2026, 2, 23, 0));
    CHECK_INT_EQ(analytics_period_floor(ANALYTICS_PERIOD_WEEK, at(2026, 2, 23, 0) - 1),
                 at(2026, 2, 16, 0));
    CHECK_INT_EQ(analytics_period_floor(ANALYTICS_PERIOD_MONTH, t), at(2026, 3, 1, 0));
    CHECK_INT_EQ(analytics_period_floor(ANALYTICS_PERIOD_MONTH, at(2026, 3, 1, 0) - 1),
                 at(2026, 2, 1, 0));
    /* 1970-01-01 was a Thursday; the week before the epoch. */
    CHECK_INT_EQ(analytics_period_floor(ANALYTICS_PERIOD_WEEK, 0), at(1969, 12, 29, 0));
    /* Indexes, starts and counts. */
    int64_t from = at(2025, 12, 31, 23 * ANALYTICS_US_HOUR);
    CHECK_INT_EQ(analytics_period_index(ANALYTICS_PERIOD_MONTH, from, t), 3);
    CHECK_INT_EQ(analytics_period_start(ANALYTICS_PERIOD_MONTH, from, 2), at(2026, 2, 1, 0));
    CHECK_INT_EQ(analytics_period_start(ANALYTICS_PERIOD_MONTH, from, 13), at(2027, 1, 1, 0));
    CHECK_INT_EQ(analytics_period_count(ANALYTICS_PERIOD_MONTH, from, at(2026, 3, 1, 0)), 3);
    CHECK_INT_EQ(analytics_period_count(ANALYTICS_PERIOD_MONTH, from, at(2026, 3, 1, 0) + 1), 4);
    CHECK_INT_EQ(analytics_period_count(ANALYTICS_PERIOD_DAY, from, from + 1), 1);
    CHECK_INT_EQ(analytics_period_count(ANALYTICS_PERIOD_WEEK, at(2026, 3, 1, 0), t + 1), 1);
    CHECK_INT_EQ(
        analytics_period_count(ANALYTICS_PERIOD_WEEK, at(2026, 3, 1, 0), at(2026, 3, 2, 0) + 1), 2);
    /* Brute force: walking day by day over 30 years, a day's period index moves by one exactly
     * on Mondays (weeks) and on the 1st (months), and every period start is a day start. */
    int64_t base = at(2010, 1, 1, 0), wk = 0, mo = 0, dy = 0;
    for (int64_t d = 1; d < (int64_t)30 * 366; d++) {
        int64_t day = base + d * ANALYTICS_US_DAY;
        int64_t y;
        unsigned m, dd;
        epp_time_civil_from_days(day / ANALYTICS_US_DAY, &y, &m, &dd);
        int monday = (d - 3) % 7 == 0; /* 2010-01-04 was a Monday */
        wk += monday;
        mo += dd == 1;
        dy++;
        CHECK_INT_EQ(
            analytics_period_index(ANALYTICS_PERIOD_WEEK, base, day + rnd() % ANALYTICS_US_DAY),
            wk);
        CHECK_INT_EQ(analytics_period_index(ANALYTICS_PERIOD_MONTH, base, day), mo);
        CHECK_INT_EQ(analytics_period_index(ANALYTICS_PERIOD_DAY, base, day), dy);
        CHECK_INT_EQ(analytics_period_start(ANALYTICS_PERIOD_WEEK, base, wk),
                     analytics_period_floor(ANALYTICS_PERIOD_WEEK, day));
        CHECK_INT_EQ(analytics_period_start(ANALYTICS_PERIOD_MONTH, base, mo),
                     analytics_period_floor(ANALYTICS_PERIOD_MONTH, day));
    }
}

int main(void)
{
    EPP_RUN(test_fixed);
    EPP_RUN(test_random);
    EPP_RUN(test_periods);
    return EPP_TEST_RESULT();
}
