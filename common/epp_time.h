/* Time: instants are int64_t microseconds since the Unix epoch, UTC (Postgres timestamptz has
 * microsecond precision, so nothing is lost on the way to the database). Thread-safe. */
#ifndef EPP_TIME_H
#define EPP_TIME_H

#include <stddef.h>
#include <stdint.h>

#define EPP_USEC_PER_SEC 1000000LL

/* Parses an RFC 3339 date-time: "2026-11-27T08:31:45Z", "...45.123456789+05:30", lower-case
 * 't'/'z' and a space separator accepted; fractions beyond microseconds are truncated;
 * year 0001-9999; leap second 60 rejected. len is the string length (no NUL needed).
 * Returns 0 or EPP_EINVAL. */
int epp_time_parse_rfc3339(const char *s, size_t len, int64_t *us);

/* Parses what the analytics API takes as a time parameter: RFC 3339, or epoch seconds as an
 * integer or decimal ("1764232305", "1764232305.5"). Returns 0 or EPP_EINVAL. */
int epp_time_parse_param(const char *s, int64_t *us);

/* Formats as RFC 3339 UTC with millisecond precision when the microseconds are a whole number
 * of milliseconds, else microsecond precision: "2026-11-27T08:31:45.123Z".
 * buf must hold EPP_TIME_BUFSZ bytes. Returns the length written. */
#define EPP_TIME_BUFSZ 40
size_t epp_time_format(int64_t us, char *buf);

/* Wall-clock now, and a monotonic clock for durations (both microseconds). */
int64_t epp_time_now_us(void);
int64_t epp_time_mono_us(void);

/* The start of the width-long bucket (width > 0) holding us: floor, also before 1970. */
int64_t epp_time_floor(int64_t us, int64_t width);

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar, and back. */
int64_t epp_time_days_from_civil(int64_t y, unsigned m, unsigned d);
void epp_time_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

#endif
