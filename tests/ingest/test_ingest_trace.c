/* Unit tests of ingest_traceparent(): the W3C trace context written into every Kafka message. */
#include <string.h>

#include "epp_test.h"
#include "ingest_http.h"

static int well_formed(const char *tp)
{
    if (strlen(tp) != 55 || strncmp(tp, "00-", 3) != 0 || tp[35] != '-' || tp[52] != '-')
        return 0;
    for (int i = 3; i < 55; i++) {
        if (i == 35 || i == 52)
            continue;
        if (!((tp[i] >= '0' && tp[i] <= '9') || (tp[i] >= 'a' && tp[i] <= 'f')))
            return 0;
    }
    return strncmp(tp + 3, "00000000000000000000000000000000", 32) != 0 &&
           strncmp(tp + 36, "0000000000000000", 16) != 0;
}

static void test_propagates_valid(void)
{
    const char *in = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    char out[56];
    ingest_traceparent(in, out);
    CHECK(well_formed(out));
    CHECK(memcmp(out, in, 35) == 0);           /* same version and trace id */
    CHECK(memcmp(out + 36, in + 36, 16) != 0); /* a new span id */
    CHECK_STR_EQ(out + 52, "-01");             /* flags kept */
    ingest_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", out);
    CHECK_STR_EQ(out + 52, "-00");
}

static void test_replaces_invalid(void)
{
    static const char *bad[] = {
        NULL,
        "",
        "garbage",
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  /* upper case */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  /* zero trace id */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  /* zero parent id */
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  /* forbidden version */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-", /* too long */
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[56];
        ingest_traceparent(bad[i], out);
        CHECK(well_formed(out));
        CHECK_STR_EQ(out + 52, "-01");
        if (bad[i] && strlen(bad[i]) >= 35)
            CHECK(memcmp(out + 3, bad[i] + 3, 32) != 0);
    }
}

static void test_unique(void)
{
    char a[56], b[56];
    ingest_traceparent(NULL, a);
    ingest_traceparent(NULL, b);
    CHECK(strcmp(a, b) != 0);
    CHECK(memcmp(a + 3, b + 3, 32) != 0);
}

int main(void)
{
    EPP_RUN(test_propagates_valid);
    EPP_RUN(test_replaces_invalid);
    EPP_RUN(test_unique);
    return EPP_TEST_RESULT();
}
