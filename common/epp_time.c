/* epp_time: RFC 3339 and epoch parsing, RFC 3339 formatting, clocks.
 *
 * The calendar arithmetic is the days-from-civil / civil-from-days algorithm on 400-year eras
 * of the proleptic Gregorian calendar (146,097 days each), so it needs no tables and no libc
 * time-zone state (timegm/gmtime_r would touch TZ handling and locks on some libcs). */
#include "epp_time.h"

#include <stdio.h>
#include <time.h>

#include "epp_error.h"

/* Largest instant we accept or print with a 4-digit year: 9999-12-31T23:59:59.999999Z. */
#define MAX_EPOCH_SEC 253402300799LL

int64_t epp_time_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                   /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

void epp_time_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;                                   /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Reads exactly n decimal digits at s; -1 when any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* An optional fraction of a second at s[*i]: '.' and at least one digit, digits past the
 * microsecond ignored (truncated). Advances *i past it. 0, or EPP_EINVAL for a '.' alone. */
static int parse_fraction(const char *s, size_t len, size_t *i, int64_t *frac_us)
{
    *frac_us = 0;
    if (*i >= len || s[*i] != '.')
        return 0;
    size_t start = ++*i;
    int64_t scale = 100000;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        *frac_us += (s[*i] - '0') * scale;
        scale /= 10;
        ++*i;
    }
    return *i == start ? EPP_EINVAL : 0;
}

int epp_time_parse_rfc3339(const char *s, size_t len, int64_t *us)
{
    /* The shortest form is "YYYY-MM-DDTHH:MM:SSZ" (20 bytes). */
    if (len < 20 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':')
        return EPP_EINVAL;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        return EPP_EINVAL;
    int year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), min = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (year < 1 || mon < 1 || mon > 12 || day < 1 || hour < 0 || hour > 23 || min < 0 ||
        min > 59 || sec < 0 || sec > 59)
        return EPP_EINVAL;
    if ((unsigned)day > days_in_month(year, (unsigned)mon))
        return EPP_EINVAL;

    size_t i = 19;
    int64_t frac_us = 0;
    if (parse_fraction(s, len, &i, &frac_us) < 0)
        return EPP_EINVAL;
    if (i >= len)
        return EPP_EINVAL;
    int64_t offset_sec = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        if (len - i < 6 || s[i + 3] != ':')
            return EPP_EINVAL;
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return EPP_EINVAL;
        offset_sec = (int64_t)oh * 3600 + (int64_t)om * 60;
        if (s[i] == '-')
            offset_sec = -offset_sec;
        i += 6;
    } else {
        return EPP_EINVAL;
    }
    if (i != len)
        return EPP_EINVAL;

    int64_t days = epp_time_days_from_civil(year, (unsigned)mon, (unsigned)day);
    int64_t secs = days * 86400 + (int64_t)hour * 3600 + (int64_t)min * 60 + sec - offset_sec;
    *us = secs * EPP_USEC_PER_SEC + frac_us;
    return 0;
}

int epp_time_parse_param(const char *s, int64_t *us)
{
    size_t len = 0;
    while (s[len])
        len++;
    if (len >= 20 && s[4] == '-')
        return epp_time_parse_rfc3339(s, len, us);

    /* Epoch seconds: digits, optionally '.' and more digits. No sign: negative instants are
     * not meaningful query bounds for event data. */
    size_t i = 0;
    int64_t sec = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        sec = sec * 10 + (s[i] - '0');
        if (sec > MAX_EPOCH_SEC)
            return EPP_EINVAL;
        i++;
    }
    if (i == 0)
        return EPP_EINVAL;
    int64_t frac_us = 0;
    if (parse_fraction(s, len, &i, &frac_us) < 0)
        return EPP_EINVAL;
    if (i != len)
        return EPP_EINVAL;
    *us = sec * EPP_USEC_PER_SEC + frac_us;
    return 0;
}

/* Writes v (< 10^n) as exactly n digits. */
static char *put_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

/* By hand rather than snprintf: it runs twice per event on the ingestion hot path. */
size_t epp_time_format(int64_t us, char *buf)
{
    int64_t secs = us / EPP_USEC_PER_SEC;
    int64_t frac = us % EPP_USEC_PER_SEC;
    if (frac < 0) {
        frac += EPP_USEC_PER_SEC;
        secs--;
    }
    int64_t days = secs / 86400;
    int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    epp_time_civil_from_days(days, &y, &m, &d);
    char *p = buf;
    if (y >= 0 && y <= 9999) {
        p = put_digits(p, (unsigned)y, 4);
    } else {
        int n = snprintf(buf, EPP_TIME_BUFSZ, "%04lld", (long long)y);
        p = buf + (n > 0 ? n : 0);
    }
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, (unsigned)(sod / 3600), 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)(sod / 60 % 60), 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)(sod % 60), 2);
    *p++ = '.';
    if (frac % 1000 == 0)
        p = put_digits(p, (unsigned)(frac / 1000), 3);
    else
        p = put_digits(p, (unsigned)frac, 6);
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - buf);
}

int64_t epp_time_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * EPP_USEC_PER_SEC + ts.tv_nsec / 1000;
}

int64_t epp_time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * EPP_USEC_PER_SEC + ts.tv_nsec / 1000;
}

int64_t epp_time_floor(int64_t us, int64_t width)
{
    int64_t q = us / width;
    if (us % width != 0 && us < 0)
        q--;
    return q * width;
}
