/* The latency histogram of epp-load: bucket geometry, precision bound, percentiles. */
#include <stdlib.h>

#include "epp_test.h"
#include "load_hist.h"

/* Every value maps to a bucket whose bounds contain it, and buckets are at most 1/64 of their
 * lower bound wide (the documented ~1% precision). */
static void test_geometry(void)
{
    int last = -1;
    for (int64_t v = 1; v <= EPP_HIST_MAX_US; v += 1 + v / 300) {
        int i = epp_hist_index(v);
        CHECK(i >= last);
        CHECK(i < EPP_HIST_BUCKETS);
        CHECK(epp_hist_bucket_low(i) <= v);
        CHECK(epp_hist_bucket_high(i) >= v);
        int64_t width = epp_hist_bucket_high(i) - epp_hist_bucket_low(i) + 1;
        CHECK(width == 1 || width * 64 <= epp_hist_bucket_low(i));
        last = i;
    }
    /* Adjacent buckets tile the range without gaps. */
    for (int i = 1; i < EPP_HIST_BUCKETS; i++)
        CHECK_INT_EQ(epp_hist_bucket_low(i), epp_hist_bucket_high(i - 1) + 1);
    CHECK_INT_EQ(epp_hist_index(0), 1);
    CHECK_INT_EQ(epp_hist_index(127), 127);
    CHECK_INT_EQ(epp_hist_index(128), 128);
    CHECK_INT_EQ(epp_hist_index(EPP_HIST_MAX_US * 10), EPP_HIST_BUCKETS - 1);
}

static void test_percentiles_uniform(void)
{
    epp_hist_t h;
    epp_hist_init(&h);
    /* 1..100000 µs, once each: the p-th percentile is p * 1000 µs. */
    for (int64_t v = 1; v <= 100000; v++)
        epp_hist_record(&h, v);
    CHECK_INT_EQ(h.total, 100000);
    double ps[] = {50, 90, 99, 99.9};
    for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
        double want = ps[k] * 1000;
        double got = (double)epp_hist_percentile(&h, ps[k]);
        CHECK(got >= want);
        CHECK(got <= want * 1.016 + 1);
    }
    CHECK_INT_EQ(epp_hist_percentile(&h, 100), 100000);
    CHECK_INT_EQ(h.min, 1);
    CHECK_INT_EQ(h.max, 100000);
}

static void test_small_and_merge(void)
{
    epp_hist_t a, b;
    epp_hist_init(&a);
    epp_hist_init(&b);
    CHECK_INT_EQ(epp_hist_percentile(&a, 99), 0);
    epp_hist_record(&a, 42);
    CHECK_INT_EQ(epp_hist_percentile(&a, 50), 42);
    CHECK_INT_EQ(epp_hist_percentile(&a, 99.9), 42);
    /* 99 fast values and one slow one: p99 is fast, p99.9 and max are the slow one. */
    for (int i = 0; i < 98; i++)
        epp_hist_record(&b, 100);
    epp_hist_record(&b, 5000000);
    epp_hist_add(&a, &b);
    CHECK_INT_EQ(a.total, 100);
    CHECK_INT_EQ(epp_hist_percentile(&a, 99), 100);
    CHECK(epp_hist_percentile(&a, 99.9) >= 5000000);
    CHECK_INT_EQ(epp_hist_percentile(&a, 99.9), 5000000); /* capped by the exact max */
    CHECK_INT_EQ(a.min, 42);
    CHECK_INT_EQ(a.max, 5000000);
    /* Beyond the range: counted, max exact. */
    epp_hist_record(&a, 3600LL * 1000000);
    CHECK_INT_EQ(a.max, 3600LL * 1000000);
    CHECK_INT_EQ(epp_hist_percentile(&a, 100), 3600LL * 1000000);
}

int main(void)
{
    EPP_RUN(test_geometry);
    EPP_RUN(test_percentiles_uniform);
    EPP_RUN(test_small_and_merge);
    return EPP_TEST_RESULT();
}
