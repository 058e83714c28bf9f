/* Unit tests for epp_uuid: parse/format, v7 layout, strict ordering across threads, and v5
 * against RFC 9562's example and Python's uuid.uuid5 (names across SHA-1 block boundaries). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_test.h"
#include "epp_time.h"
#include "epp_uuid.h"

static int parse(const char *s, epp_uuid_t *u)
{
    return epp_uuid_parse(s, strlen(s), u);
}

static void test_parse_format(void)
{
    epp_uuid_t u;
    char out[EPP_UUID_STRLEN + 1];
    CHECK_INT_EQ(parse("0192f0a1-7b3c-7d4e-8f00-0123456789ab", &u), 0);
    CHECK_INT_EQ(u.b[0], 0x01);
    CHECK_INT_EQ(u.b[15], 0xab);
    CHECK_INT_EQ(epp_uuid_version(&u), 7);
    epp_uuid_format(&u, out);
    CHECK_STR_EQ(out, "0192f0a1-7b3c-7d4e-8f00-0123456789ab");

    /* Upper case is accepted and formatted lower-case. */
    CHECK_INT_EQ(parse("550E8400-E29B-41D4-A716-446655440000", &u), 0);
    CHECK_INT_EQ(epp_uuid_version(&u), 4);
    epp_uuid_format(&u, out);
    CHECK_STR_EQ(out, "550e8400-e29b-41d4-a716-446655440000");

    CHECK_INT_EQ(parse("00000000-0000-0000-0000-000000000000", &u), 0);
    CHECK_INT_EQ(parse("ffffffff-ffff-ffff-ffff-ffffffffffff", &u), 0);
}

static void test_parse_errors(void)
{
    static const char *bad[] = {
        "",
        "550e8400-e29b-41d4-a716-44665544000",   /* too short */
        "550e8400-e29b-41d4-a716-4466554400000", /* too long */
        "550e8400e29b41d4a716446655440000",      /* no dashes */
        "550e8400-e29b-41d4-a716-44665544000g",  /* bad hex */
        "550e8400-e29b-41d4-a716-4466554400 0",
        "550e840-0e29b-41d4-a716-446655440000", /* misplaced dash */
        "550e8400-e29b41-d4-a716-446655440000",
        "550e8400-e29b-41d4-a716-44665544-000",
        "550e8400+e29b-41d4-a716-446655440000",
        "{50e8400-e29b-41d4-a716-44665544000}",
        "urn:uuid:550e8400-e29b-41d4-a716-4466",
        "550e8400-e29b-41d4-a716--46655440000",
        "-50e8400-e29b-41d4-a716-446655440000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        epp_uuid_t u;
        memset(&u, 0x5a, sizeof u);
        if (parse(bad[i], &u) != EPP_EINVAL)
            EPP_FAIL_("case %zu (%s) accepted", i, bad[i]);
    }
    /* The length is what the caller says, not strlen. */
    epp_uuid_t u;
    CHECK_INT_EQ(epp_uuid_parse("550e8400-e29b-41d4-a716-446655440000", 35, &u), EPP_EINVAL);
    CHECK_INT_EQ(epp_uuid_parse("550e8400-e29b-41d4-a716-446655440000xyz", 36, &u), 0);
}

static void test_v7_layout(void)
{
    int64_t before = epp_time_now_us() / 1000;
    epp_uuid_t u;
    epp_uuid_v7(&u);
    int64_t after = epp_time_now_us() / 1000;
    CHECK_INT_EQ(epp_uuid_version(&u), 7);
    CHECK_INT_EQ(u.b[8] & 0xC0, 0x80); /* RFC 9562 variant */
    int64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | u.b[i];
    CHECK(ms >= before && ms <= after + 1);

    char s[EPP_UUID_STRLEN + 1];
    epp_uuid_format(&u, s);
    CHECK_INT_EQ(strlen(s), EPP_UUID_STRLEN);
    CHECK_INT_EQ(s[14], '7');
    epp_uuid_t back;
    CHECK_INT_EQ(parse(s, &back), 0);
    CHECK(memcmp(&back, &u, sizeof u) == 0);
}

#define PER_THREAD 100000

typedef struct {
    epp_uuid_t *out;
} gen_arg_t;

static void *gen_thread(void *p)
{
    gen_arg_t *a = p;
    for (int i = 0; i < PER_THREAD; i++)
        epp_uuid_v7(&a->out[i]);
    return NULL;
}

static int cmp_uuid(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(epp_uuid_t));
}

/* Each thread's sequence is strictly increasing, and all 200k values are distinct, so the
 * generator gives one process-wide strict order. */
static void test_v7_monotonic_threads(void)
{
    epp_uuid_t *all = malloc((size_t)2 * PER_THREAD * sizeof *all);
    CHECK(all);
    gen_arg_t args[2] = {{all}, {all + PER_THREAD}};
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        CHECK_INT_EQ(pthread_create(&th[t], NULL, gen_thread, &args[t]), 0);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < 2; t++) {
        for (int i = 1; i < PER_THREAD; i++) {
            if (memcmp(&args[t].out[i - 1], &args[t].out[i], sizeof(epp_uuid_t)) >= 0) {
                free(all);
                EPP_FAIL_("thread %d: value %d not greater than its predecessor", t, i);
            }
        }
        for (int i = 0; i < PER_THREAD; i++) {
            if (epp_uuid_version(&args[t].out[i]) != 7 || (args[t].out[i].b[8] & 0xC0) != 0x80) {
                free(all);
                EPP_FAIL_("thread %d: value %d has wrong version/variant", t, i);
            }
        }
    }
    qsort(all, (size_t)2 * PER_THREAD, sizeof *all, cmp_uuid);
    for (int i = 1; i < 2 * PER_THREAD; i++) {
        if (memcmp(&all[i - 1], &all[i], sizeof *all) == 0) {
            free(all);
            EPP_FAIL_("duplicate UUID");
        }
    }
    free(all);

    /* Interleaved calls from one thread after the threads finished still increase. */
    epp_uuid_t a, b;
    epp_uuid_v7(&a);
    for (int i = 0; i < 1000; i++) {
        epp_uuid_v7(&b);
        CHECK(memcmp(&a, &b, sizeof a) < 0);
        a = b;
    }
}

static void check_v5(const char *ns_text, const char *name, size_t len, const char *want)
{
    epp_uuid_t ns, u;
    char out[EPP_UUID_STRLEN + 1];
    CHECK_INT_EQ(parse(ns_text, &ns), 0);
    epp_uuid_v5(&ns, name, len, &u);
    epp_uuid_format(&u, out);
    CHECK_STR_EQ(out, want);
    CHECK_INT_EQ(epp_uuid_version(&u), 5);
}

/* Both SHA-1 block functions meet these vectors: natively on a CPU with the SHA extensions the
 * run checks sha1_block_ni, and under valgrind (scripts/valgrind-unit.sh in CI), whose CPUID hides
 * them, the portable sha1_block. */
static void test_v5(void)
{
    /* RFC 9562 appendix A.4. */
    check_v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com", 15,
             "2ed6657d-e927-568b-95e1-2665a8aea6a2");
    /* python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "a" * n))': the padding
     * of SHA-1 changes shape at 55/56 and 63/64/65 bytes of message (16 of them are the
     * namespace). */
    static const struct {
        size_t n;
        const char *want;
    } v[] = {
        {0, "1b4db7eb-4057-5ddf-91e0-36dec72071f5"},
        {55, "216292ab-33d5-55d9-9441-e27c6d581a9d"},
        {56, "699537c5-641d-5db1-8010-0f64002fd7ee"},
        {63, "2c0858d2-4c70-5de3-bc6d-ee6b4efb4073"},
        {64, "37a282a8-9bf9-58e8-af1a-344d9b593c37"},
        {65, "37ff416f-8245-50ba-81c1-5f8e9c471442"},
        {119, "75bd0bb9-6bed-5fd6-b9b0-e6ea3b9ddbf6"},
        {1000, "7f46a8f9-f8ba-5a67-983a-ffc2101475df"},
    };
    char *a = malloc(1000);
    CHECK(a != NULL);
    memset(a, 'a', 1000);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        check_v5("6ba7b811-9dad-11d1-80b4-00c04fd430c8", a, v[i].n, v[i].want);
    free(a);
}

int main(void)
{
    EPP_RUN(test_parse_format);
    EPP_RUN(test_parse_errors);
    EPP_RUN(test_v7_layout);
    EPP_RUN(test_v7_monotonic_threads);
    EPP_RUN(test_v5);
    return EPP_TEST_RESULT();
}
