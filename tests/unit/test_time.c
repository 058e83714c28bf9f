/* Unit tests for epp_time: RFC 3339 parsing (offsets, fractions, leap years, garbage), epoch
 * parameters, formatting and the calendar conversions. */
#include <string.h>

#include "epp_error.h"
#include "epp_test.h"
#include "epp_time.h"

#define SEC(x) ((int64_t)(x)*EPP_USEC_PER_SEC)

/* 2026-11-27T08:31:45Z */
#define T0 1795768305LL

static int parse(const char *s, int64_t *us)
{
    return epp_time_parse_rfc3339(s, strlen(s), us);
}

static void test_rfc3339_valid(void)
{
    static const struct {
        const char *in;
        int64_t us;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2026-11-27T08:31:45Z", SEC(T0)},
        {"2026-11-27t08:31:45z", SEC(T0)},
        {"2026-11-27 08:31:45Z", SEC(T0)},
        {"2026-11-27T14:01:45+05:30", SEC(T0)},
        {"2026-11-27T00:31:45-08:00", SEC(T0)},
        {"2026-11-27T08:31:45+00:00", SEC(T0)},
        {"2026-11-27T08:31:45-00:00", SEC(T0)},
        {"2026-11-27T08:31:45.1Z", SEC(T0) + 100000},
        {"2026-11-27T08:31:45.123Z", SEC(T0) + 123000},
        {"2026-11-27T08:31:45.123456Z", SEC(T0) + 123456},
        {"2026-11-27T08:31:45.123456789Z", SEC(T0) + 123456}, /* truncated, not rounded */
        {"2026-11-27T08:31:45.999999999Z", SEC(T0) + 999999},
        {"2026-11-27T08:31:45.000000000000000001Z", SEC(T0)},
        {"2026-11-27T14:01:45.5+05:30", SEC(T0) + 500000},
        {"2024-02-29T00:00:00Z", SEC(1709164800)},
        {"2000-02-29T12:00:00Z", SEC(951825600)},
        {"1969-12-31T23:59:59.5Z", -500000},
        {"0001-01-01T00:00:00Z", SEC(-62135596800LL)},
        {"9999-12-31T23:59:59.999999Z", SEC(253402300799LL) + 999999},
        {"2026-12-31T23:59:59+23:59", SEC(1798761599LL - 23LL * 3600 - 59LL * 60)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t us = -1;
        int rc = parse(cases[i].in, &us);
        if (rc != 0)
            EPP_FAIL_("case %zu (%s) rejected", i, cases[i].in);
        if (us != cases[i].us)
            EPP_FAIL_("case %zu (%s): %lld != %lld", i, cases[i].in, (long long)us,
                      (long long)cases[i].us);
    }
}

static void test_rfc3339_invalid(void)
{
    static const char *bad[] = {
        "",
        "garbage",
        "2026-11-27",
        "2026-11-27T08:31Z",
        "2026-11-27T08:31:45",      /* no offset */
        "2026-11-27T08:31:45+0530", /* offset without colon */
        "2026-11-27T08:31:45+05",
        "2026-11-27T08:31:45+24:00",
        "2026-11-27T08:31:45+05:60",
        "2026-11-27T08:31:45.Z", /* empty fraction */
        "2026-11-27T08:31:45,5Z",
        "2026-11-27T08:31:45ZZ",
        "2026-11-27T08:31:45Z ",
        " 2026-11-27T08:31:45Z",
        "2026-11-27X08:31:45Z",
        "2026/11/27T08:31:45Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-31T00:00:00Z", /* November has 30 days */
        "2026-04-31T00:00:00Z",
        "2023-02-29T00:00:00Z", /* not a leap year */
        "1900-02-29T00:00:00Z", /* divisible by 100, not by 400 */
        "2024-02-30T00:00:00Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T23:60:00Z",
        "2026-11-27T23:59:60Z", /* leap second */
        "0000-01-01T00:00:00Z",
        "20261-11-27T08:31:45Z",
        "+2026-11-27T08:31:45Z",
        "2026-1-27T08:31:45Z",
        "2026-11-27T8:31:45Z",
        "2O26-11-27T08:31:45Z",
        "2026-11-27T08:31:45+05:3O",
        "2026-11-27T08:31:45.12a3Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t us = 0;
        if (parse(bad[i], &us) != EPP_EINVAL)
            EPP_FAIL_("case %zu (%s) accepted", i, bad[i]);
    }
    /* len is respected: no NUL needed, and a longer buffer is not read. */
    int64_t us;
    CHECK_INT_EQ(epp_time_parse_rfc3339("2026-11-27T08:31:45Zjunk", 20, &us), 0);
    CHECK_INT_EQ(us, SEC(T0));
    CHECK_INT_EQ(epp_time_parse_rfc3339("2026-11-27T08:31:45Z", 19, &us), EPP_EINVAL);
}

static void test_param(void)
{
    int64_t us = 0;
    CHECK_INT_EQ(epp_time_parse_param("1795768305", &us), 0);
    CHECK_INT_EQ(us, SEC(T0));
    CHECK_INT_EQ(epp_time_parse_param("1795768305.5", &us), 0);
    CHECK_INT_EQ(us, SEC(T0) + 500000);
    CHECK_INT_EQ(epp_time_parse_param("1795768305.1234567", &us), 0);
    CHECK_INT_EQ(us, SEC(T0) + 123456);
    CHECK_INT_EQ(epp_time_parse_param("0", &us), 0);
    CHECK_INT_EQ(us, 0);
    CHECK_INT_EQ(epp_time_parse_param("2026-11-27T14:01:45+05:30", &us), 0);
    CHECK_INT_EQ(us, SEC(T0));
    static const char *bad[] = {"",
                                "-1",
                                "+1",
                                "1.",
                                ".5",
                                "1e9",
                                "12a",
                                " 1",
                                "1 ",
                                "abc",
                                "1.5.5",
                                "0x10",
                                "99999999999999999999",
                                "253402300800",
                                "2026-02-30T00:00:00Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (epp_time_parse_param(bad[i], &us) != EPP_EINVAL)
            EPP_FAIL_("case %zu (%s) accepted", i, bad[i]);
}

static void test_format(void)
{
    char buf[EPP_TIME_BUFSZ];
    CHECK_INT_EQ(epp_time_format(SEC(T0) + 123000, buf), 24);
    CHECK_STR_EQ(buf, "2026-11-27T08:31:45.123Z");
    epp_time_format(SEC(T0), buf);
    CHECK_STR_EQ(buf, "2026-11-27T08:31:45.000Z");
    epp_time_format(SEC(T0) + 123456, buf);
    CHECK_STR_EQ(buf, "2026-11-27T08:31:45.123456Z");
    epp_time_format(SEC(T0) + 1, buf);
    CHECK_STR_EQ(buf, "2026-11-27T08:31:45.000001Z");
    epp_time_format(0, buf);
    CHECK_STR_EQ(buf, "1970-01-01T00:00:00.000Z");
    epp_time_format(-1, buf);
    CHECK_STR_EQ(buf, "1969-12-31T23:59:59.999999Z");
    epp_time_format(SEC(1709164800), buf);
    CHECK_STR_EQ(buf, "2024-02-29T00:00:00.000Z");
    epp_time_format(SEC(-62135596800LL), buf);
    CHECK_STR_EQ(buf, "0001-01-01T00:00:00.000Z");
    epp_time_format(INT64_MAX, buf);
    CHECK(strlen(buf) < EPP_TIME_BUFSZ);
    epp_time_format(INT64_MIN, buf);
    CHECK(strlen(buf) < EPP_TIME_BUFSZ);

    /* format then parse is the identity at microsecond precision. */
    for (int64_t us = SEC(-62135596800LL); us < SEC(253402300799LL); us += 987654321012345LL) {
        int64_t back = 0;
        size_t n = epp_time_format(us, buf);
        CHECK_INT_EQ(epp_time_parse_rfc3339(buf, n, &back), 0);
        CHECK_INT_EQ(back, us);
    }
}

static void test_civil(void)
{
    CHECK_INT_EQ(epp_time_days_from_civil(1970, 1, 1), 0);
    CHECK_INT_EQ(epp_time_days_from_civil(2000, 3, 1), 11017);
    CHECK_INT_EQ(epp_time_days_from_civil(1969, 12, 31), -1);
    /* Round trip over a wide range, including the days around 29 February. */
    for (int64_t days = -800000; days < 3000000; days += 37) {
        int64_t y;
        unsigned m, d;
        epp_time_civil_from_days(days, &y, &m, &d);
        CHECK(m >= 1 && m <= 12 && d >= 1 && d <= 31);
        CHECK_INT_EQ(epp_time_days_from_civil(y, m, d), days);
    }
}

static void test_clocks(void)
{
    int64_t now = epp_time_now_us();
    CHECK(now > SEC(T0) - SEC(86400 * 365));
    int64_t a = epp_time_mono_us(), b = epp_time_mono_us();
    CHECK(b >= a);
}

int main(void)
{
    EPP_RUN(test_rfc3339_valid);
    EPP_RUN(test_rfc3339_invalid);
    EPP_RUN(test_param);
    EPP_RUN(test_format);
    EPP_RUN(test_civil);
    EPP_RUN(test_clocks);
    return EPP_TEST_RESULT();
}
