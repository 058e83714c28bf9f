/* A tiny assertion header for epp's unit tests, run by CTest.
 *
 * Each test program defines test functions, lists them in main() with EPP_RUN(), and returns
 * EPP_TEST_RESULT(). A failed check prints file:line and the failing expression, marks the test
 * failed, and returns from the test function. */
#ifndef EPP_TEST_H
#define EPP_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int epp_test_failures;
static int epp_test_current_failed;

/* For clang's static analyzer (scripts/tidy.sh) a failed check ends the program: what a test
 * function leaves behind when it returns early after a failure (memory, descriptors) does not
 * matter, and the analyzer should judge the paths where the checks pass. */
#ifdef __clang_analyzer__
#include <stdlib.h>
#define EPP_TEST_END_ abort()
#else
#define EPP_TEST_END_ return
#endif

#define EPP_FAIL_(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        epp_test_current_failed = 1;                                                               \
        EPP_TEST_END_;                                                                             \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            EPP_FAIL_("check failed: %s", #cond);                                                  \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            EPP_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                                   \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            EPP_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",                    \
                      b_ ? b_ : "(null)");                                                         \
    } while (0)

#define CHECK_MEM_EQ(a, alen, b, blen)                                                             \
    do {                                                                                           \
        size_t al_ = (alen), bl_ = (blen);                                                         \
        if (al_ != bl_ || memcmp((a), (b), al_) != 0)                                              \
            EPP_FAIL_("%s == %s: \"%.*s\" != \"%.*s\"", #a, #b, (int)al_, (const char *)(a),       \
                      (int)bl_, (const char *)(b));                                                \
    } while (0)

#define EPP_RUN(fn)                                                                                \
    do {                                                                                           \
        epp_test_current_failed = 0;                                                               \
        fn();                                                                                      \
        fprintf(stderr, "%s %s\n", epp_test_current_failed ? "FAIL" : "ok  ", #fn);                \
        epp_test_failures += epp_test_current_failed;                                              \
    } while (0)

#define EPP_TEST_RESULT() (epp_test_failures ? 1 : 0)

#endif
