#include "load_hist.h"

#include <string.h>

void epp_hist_init(epp_hist_t *h)
{
    memset(h, 0, sizeof(*h));
}

static int floor_log2(uint64_t v)
{
    return 63 - __builtin_clzll(v);
}

int epp_hist_index(int64_t us)
{
    if (us < 1)
        us = 1;
    if (us < EPP_HIST_LINEAR)
        return (int)us;
    int e = floor_log2((uint64_t)us); /* >= 7 */
    int shift = e - 6;                /* 2^e >> shift == 64 */
    int sub = (int)((uint64_t)us >> shift) - EPP_HIST_SUB;
    int idx = EPP_HIST_LINEAR + (e - 7) * EPP_HIST_SUB + sub;
    return idx < EPP_HIST_BUCKETS ? idx : EPP_HIST_BUCKETS - 1;
}

int64_t epp_hist_bucket_low(int idx)
{
    if (idx < EPP_HIST_LINEAR)
        return idx;
    int e = 7 + (idx - EPP_HIST_LINEAR) / EPP_HIST_SUB;
    int sub = (idx - EPP_HIST_LINEAR) % EPP_HIST_SUB + EPP_HIST_SUB;
    return (int64_t)sub << (e - 6);
}

int64_t epp_hist_bucket_high(int idx)
{
    if (idx < EPP_HIST_LINEAR)
        return idx;
    int e = 7 + (idx - EPP_HIST_LINEAR) / EPP_HIST_SUB;
    return epp_hist_bucket_low(idx) + ((int64_t)1 << (e - 6)) - 1;
}

void epp_hist_record(epp_hist_t *h, int64_t us)
{
    if (us < 1)
        us = 1;
    h->counts[epp_hist_index(us)]++;
    if (h->total == 0 || us < h->min)
        h->min = us;
    if (h->total == 0 || us > h->max)
        h->max = us;
    h->total++;
    h->sum += (double)us;
}

void epp_hist_add(epp_hist_t *dst, const epp_hist_t *src)
{
    if (src->total == 0)
        return;
    for (int i = 0; i < EPP_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    if (dst->total == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->total == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->total += src->total;
    dst->sum += src->sum;
}

int64_t epp_hist_percentile(const epp_hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p < 0)
        p = 0;
    if (p > 100)
        p = 100;
    /* The rank of the wanted value, 1-based: at least 1, at most total. */
    uint64_t rank = (uint64_t)((p / 100.0) * (double)h->total + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (int i = 0; i < EPP_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            /* The top bucket also holds everything beyond the range: the max is the answer. */
            if (i == EPP_HIST_BUCKETS - 1)
                return h->max;
            int64_t v = epp_hist_bucket_high(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}
