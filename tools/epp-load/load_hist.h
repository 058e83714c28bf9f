/* hist: a high-dynamic-range latency histogram with log-linear buckets (the HdrHistogram idea,
 * our own small implementation).
 *
 * Values are microseconds from 1 to EPP_HIST_MAX_US (60 s); larger values are counted in the
 * top bucket (the exact maximum is kept separately). Values below 128 µs get a bucket each;
 * above, every power-of-two range [2^e, 2^(e+1)) is split into 64 equal buckets, so a bucket is
 * at most 1/64 of its lower bound wide: a reported percentile (the bucket's upper bound, as
 * HdrHistogram reports highest-equivalent values) is within 1.6% above the true value, and the
 * midpoint within 0.8%. 1,344 counters, 10.5 KiB.
 *
 * Not thread-safe: one recorder; merge with epp_hist_add. */
#ifndef EPP_HIST_H
#define EPP_HIST_H

#include <stdint.h>

#define EPP_HIST_MAX_US  60000000LL
#define EPP_HIST_LINEAR  128 /* values below this have exact buckets */
#define EPP_HIST_SUB     64  /* buckets per power of two above EPP_HIST_LINEAR */
#define EPP_HIST_BUCKETS (EPP_HIST_LINEAR + 19 * EPP_HIST_SUB) /* up to 2^26 µs > 60 s */

typedef struct {
    uint64_t counts[EPP_HIST_BUCKETS];
    uint64_t total;
    int64_t min, max; /* exact, in µs; valid when total > 0 */
    double sum;       /* for the mean */
} epp_hist_t;

/* Zeroes h. */
void epp_hist_init(epp_hist_t *h);

/* Records one value in µs; values below 1 count as 1, above the range in the top bucket. */
void epp_hist_record(epp_hist_t *h, int64_t us);

/* Adds every count of src into dst. */
void epp_hist_add(epp_hist_t *dst, const epp_hist_t *src);

/* The value at percentile p (0..100): the upper bound of the bucket holding the ceil(p% * total)
 * -th smallest value, capped by the exact maximum. 0 when the histogram is empty. */
int64_t epp_hist_percentile(const epp_hist_t *h, double p);

/* Bucket geometry, exposed for the tests: the index of value v, and the lowest and highest
 * values a bucket holds. */
int epp_hist_index(int64_t us);
int64_t epp_hist_bucket_low(int idx);
int64_t epp_hist_bucket_high(int idx);

#endif
