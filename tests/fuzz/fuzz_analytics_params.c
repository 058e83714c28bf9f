/* libFuzzer target: the analytics API's parameter checks (analytics_params_parse) and the range
 * planner they feed (analytics_plan.c) -- everything between an untrusted query string and the SQL
 * parameters of epp-analytics.
 *
 * Input: the first byte picks the route (and a small or the default max_points; 0xff: the raw
 * planner mode of fuzz_raw()); the rest is a
 * query string "name=value&..." decoded by epp_http's decoder (%XX and '+'). For the routes
 * with a path parameter, "user_id" / "event_id" in the query string stand for the path segment.
 *
 * Beyond "no crash, no sanitizer report" it checks what the SQL layer relies on:
 *  - a refusal names a known field and has a message (it goes into a JSON 400 reply);
 *  - an accepted range satisfies from < to within [0001-01-01, 9999-12-31], and every bound the
 *    planner derives from it survives the text round trip of the SQL parameters
 *    (epp_time_format, then epp_time_parse_param gives the same microsecond);
 *  - the plan's pieces are aligned to their rollup's bucket width, disjoint, inside [from, to)
 *    and together exactly [from, to) -- the exactness of every answer rests on this;
 *  - a timeseries has 1..max_points points, and its inner run and edges tile [from, to);
 *  - limits, text filters and ids are within their documented bounds.
 * A violated property aborts, which libFuzzer reports as a crash.
 *
 * The target links epp_analytics_plan, the library the service and its tests link
 * (tests/fuzz/CMakeLists.txt). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analytics_params.h"
#include "analytics_plan.h"
#include "epp_error.h"
#include "epp_http_internal.h"
#include "epp_json.h"
#include "epp_time.h"
#include "fuzz_check.h"

#define MAX_ARGS 32

typedef struct {
    char *names[MAX_ARGS];
    char *values[MAX_ARGS];
    int n;
} args_t;

/* In-place URL decoding of a NUL-terminated string, by the HTTP layer's own decoder (%XX and
 * '+'). 0, or -1 for a %00, which epp_http refuses with 400 before any handler runs. */
static int url_decode(char *s)
{
    return epp_http__url_decode(s, s, strlen(s), 1) < 0 ? -1 : 0;
}

/* Splits buf (modified) into decoded arguments; the first occurrence of a name wins. -1 when
 * an argument does not decode (epp_http answers such a request 400 itself). */
static int split_query(char *buf, args_t *a)
{
    a->n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "&", &save); tok && a->n < MAX_ARGS;
         tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        char *value = tok + strlen(tok); /* "name" alone: an empty value (writable) */
        if (eq) {
            *eq = '\0';
            value = eq + 1;
        }
        if (url_decode(tok) < 0 || url_decode(value) < 0)
            return -1;
        a->names[a->n] = tok;
        a->values[a->n] = value;
        a->n++;
    }
    return 0;
}

static const char *get(void *ud, const char *name)
{
    const args_t *a = ud;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->names[i], name) == 0)
            return a->values[i];
    return NULL;
}

static void check_time_text(int64_t us)
{
    char text[EPP_TIME_BUFSZ];
    int64_t back = 0;
    epp_time_format(us, text);
    REQUIRE(epp_time_parse_param(text, &back) == 0);
    REQUIRE(back == us);
}

static int64_t span_len(const analytics_span_t *s)
{
    REQUIRE(s->lo <= s->hi);
    return s->hi - s->lo;
}

/* A non-empty piece lies in [from, to), is aligned to width and its bounds are valid SQL
 * parameters. Returns its length. */
static int64_t check_piece(const analytics_span_t *s, int64_t from, int64_t to, int64_t width)
{
    int64_t len = span_len(s);
    if (len == 0)
        return 0;
    REQUIRE(s->lo >= from && s->hi <= to);
    if (width) {
        REQUIRE(s->lo % width == 0 && s->hi % width == 0);
    }
    check_time_text(s->lo);
    check_time_text(s->hi);
    return len;
}

static int overlap(const analytics_span_t *a, const analytics_span_t *b)
{
    return a->lo < a->hi && b->lo < b->hi && a->lo < b->hi && b->lo < a->hi;
}

static void check_plan(int64_t from, int64_t to)
{
    analytics_plan_t p;
    analytics_plan_range(from, to, &p);
    const analytics_span_t *pieces[7] = {&p.day,       &p.hour[0], &p.hour[1], &p.minute[0],
                                         &p.minute[1], &p.raw[0],  &p.raw[1]};
    const int64_t piece_width[7] = {ANALYTICS_US_DAY,
                                    ANALYTICS_US_HOUR,
                                    ANALYTICS_US_HOUR,
                                    ANALYTICS_US_MINUTE,
                                    ANALYTICS_US_MINUTE,
                                    0,
                                    0};
    int64_t total = 0;
    for (int i = 0; i < 7; i++) {
        total += check_piece(pieces[i], from, to, piece_width[i]);
        for (int j = 0; j < i; j++)
            REQUIRE(!overlap(pieces[i], pieces[j]));
    }
    REQUIRE(total == to - from);
}

/* A unique-users series: npoints periods from the one holding from, each starting at a UTC day
 * start, strictly increasing, the last one holding to - 1; every instant of the range (here:
 * both ends and each piece's ends) falls into the point whose period holds it. */
static void check_periods(const analytics_params_t *p, int64_t max_points)
{
    REQUIRE(p->period >= ANALYTICS_PERIOD_DAY && p->period <= ANALYTICS_PERIOD_MONTH);
    REQUIRE(p->npoints >= 1 && p->npoints <= max_points);
    REQUIRE(p->npoints == analytics_period_count(p->period, p->from, p->to));
    int64_t first = analytics_period_floor(p->period, p->from);
    REQUIRE(first <= p->from && first % ANALYTICS_US_DAY == 0);
    REQUIRE(analytics_period_start(p->period, p->from, 0) == first);
    int64_t last = analytics_period_start(p->period, p->from, p->npoints - 1);
    REQUIRE(last <= p->to - 1 && analytics_period_floor(p->period, p->to - 1) == last);
    REQUIRE(analytics_period_start(p->period, p->from, p->npoints) > p->to - 1);
    check_time_text(first);
    check_time_text(last);
    for (int64_t i = 1; i < p->npoints && i < 64; i++) {
        int64_t s = analytics_period_start(p->period, p->from, i);
        REQUIRE(s > analytics_period_start(p->period, p->from, i - 1));
        REQUIRE(s % ANALYTICS_US_DAY == 0 && analytics_period_floor(p->period, s) == s);
        REQUIRE(analytics_period_index(p->period, p->from, s) == i);
        REQUIRE(analytics_period_index(p->period, p->from, s - 1) == i - 1);
    }
    REQUIRE(analytics_period_index(p->period, p->from, p->from) == 0);
    REQUIRE(analytics_period_index(p->period, p->from, p->to - 1) == p->npoints - 1);
}

static void check_series(const analytics_params_t *p, int64_t max_points)
{
    REQUIRE(p->interval && (p->width == ANALYTICS_US_MINUTE || p->width == ANALYTICS_US_HOUR ||
                            p->width == ANALYTICS_US_DAY));
    REQUIRE(p->npoints >= 1 && p->npoints <= max_points);
    analytics_span_t inner;
    analytics_edge_t edges[2];
    int nedges = -1;
    int64_t n = analytics_plan_series(p->from, p->to, p->width, &inner, edges, &nedges);
    REQUIRE(n == p->npoints);
    REQUIRE(nedges >= 0 && nedges <= 2);
    int64_t first = analytics_floor(p->from, p->width);
    REQUIRE(n == (analytics_floor(p->to - 1, p->width) - first) / p->width + 1);
    check_time_text(first);
    check_time_text(first + (n - 1) * p->width);
    int64_t total = check_piece(&inner, p->from, p->to, p->width);
    for (int e = 0; e < nedges; e++) {
        const analytics_edge_t *ed = &edges[e];
        REQUIRE(span_len(&ed->span) > 0);
        total += check_piece(&ed->span, p->from, p->to, 0);
        /* The edge is the part of [from, to) inside its bucket, reported at the bucket start. */
        REQUIRE(ed->bucket % p->width == 0 && ed->bucket >= first);
        REQUIRE(ed->span.lo >= ed->bucket && ed->span.hi <= ed->bucket + p->width);
        REQUIRE(!overlap(&ed->span, &inner));
        check_plan(ed->span.lo, ed->span.hi);
    }
    if (nedges == 2)
        REQUIRE(!overlap(&edges[0].span, &edges[1].span));
    REQUIRE(total == p->to - p->from);
}

static void check_text(const char *s)
{
    if (!s)
        return;
    size_t len = strlen(s);
    REQUIRE(len >= 1 && len <= ANALYTICS_MAX_TEXT_PARAM);
    REQUIRE(epp_json_utf8_valid(s, len));
}

static int canonical_uuid(const char *s)
{
    if (strlen(s) != EPP_UUID_STRLEN)
        return 0;
    for (int i = 0; i < EPP_UUID_STRLEN; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

/* Raw mode (first byte 0xff): two 64-bit bounds and a width taken straight from the input and
 * folded into the accepted range, so the planner also meets instants no query string reaches
 * quickly (the year 1, negative epoch values, the last microsecond of 9999-12-30). */
static void fuzz_raw(const uint8_t *data, size_t size)
{
    uint64_t a = 0, b = 0;
    memcpy(&a, data + 1, 8);
    memcpy(&b, data + 9, 8);
    int64_t lo = analytics_params_min_time(), hi = analytics_params_max_time();
    uint64_t span = (uint64_t)(hi - lo) + 1;
    int64_t from = lo + (int64_t)(a % span), to = lo + (int64_t)(b % span);
    if (from == to)
        return;
    if (from > to) {
        int64_t tmp = from;
        from = to;
        to = tmp;
    }
    check_plan(from, to);
    static const int64_t w[3] = {ANALYTICS_US_MINUTE, ANALYTICS_US_HOUR, ANALYTICS_US_DAY};
    analytics_params_t p = {.from = from, .to = to, .interval = "raw"};
    p.width = w[size > 17 ? data[17] % 3 : 0];
    analytics_span_t inner;
    analytics_edge_t edges[2];
    int nedges;
    p.npoints = analytics_plan_series(from, to, p.width, &inner, edges, &nedges);
    if (p.npoints <= 1000000)
        check_series(&p, 1000000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384)
        return 0;
    if (data[0] == 0xff) {
        if (size >= 17)
            fuzz_raw(data, size);
        return 0;
    }
    analytics_route_t route = (analytics_route_t)(data[0] % 6);
    /* A small limit sometimes, so that the "too many points" path is reached with short ranges. */
    int64_t max_points = (data[0] & 0x80) ? 1 + (data[0] >> 3 & 0x7) : 10000;
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    args_t args;
    if (split_query(buf, &args) != 0) {
        free(buf);
        return 0;
    }

    analytics_params_t p;
    analytics_param_error_t err;
    int rc = analytics_params_parse(route, get, &args, max_points, &p, &err);
    if (rc != 0) {
        static const char *const fields[] = {"from_ts",  "to_ts", "event_name", "user_id",
                                             "interval", "limit", "before",     "event_id"};
        REQUIRE(rc == EPP_EINVAL);
        REQUIRE(err.field && err.message[0]);
        REQUIRE(epp_json_utf8_valid(err.message, strlen(err.message)));
        int known = 0;
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
            known |= strcmp(err.field, fields[i]) == 0;
        REQUIRE(known);
        free(buf);
        return 0;
    }
    switch (route) {
    case ANALYTICS_ROUTE_COUNT:
    case ANALYTICS_ROUTE_SERIES:
    case ANALYTICS_ROUTE_TOP:
    case ANALYTICS_ROUTE_ACTIVE:
        REQUIRE(p.from < p.to);
        REQUIRE(p.from >= analytics_params_min_time() && p.to <= analytics_params_max_time());
        check_time_text(p.from);
        check_time_text(p.to);
        check_text(p.event_name);
        check_text(p.user_id);
        if (route == ANALYTICS_ROUTE_SERIES)
            check_series(&p, max_points);
        else
            check_plan(p.from, p.to);
        if (route == ANALYTICS_ROUTE_ACTIVE && p.interval)
            check_periods(&p, max_points);
        if (route == ANALYTICS_ROUTE_TOP)
            REQUIRE(p.limit >= 1 && p.limit <= 100);
        break;
    case ANALYTICS_ROUTE_USER_EVENTS:
        REQUIRE(p.user_id);
        check_text(p.user_id);
        REQUIRE(p.limit >= 1 && p.limit <= 1000);
        if (p.before_us != INT64_MAX) {
            REQUIRE(p.before_us >= analytics_params_min_time() &&
                    p.before_us <= analytics_params_max_time());
            check_time_text(p.before_us);
        }
        if (p.have_before_id)
            REQUIRE(canonical_uuid(p.before_id));
        break;
    case ANALYTICS_ROUTE_EVENT:
        REQUIRE(canonical_uuid(p.event_id));
        break;
    }
    free(buf);
    return 0;
}
