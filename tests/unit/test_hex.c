/* Unit tests for epp_hex: the one hex decoder of libepp. */
#include <string.h>

#include "epp_error.h"
#include "epp_hex.h"
#include "epp_test.h"

static void test_digit(void)
{
    CHECK_INT_EQ(epp_hex_digit('0'), 0);
    CHECK_INT_EQ(epp_hex_digit('9'), 9);
    CHECK_INT_EQ(epp_hex_digit('a'), 10);
    CHECK_INT_EQ(epp_hex_digit('F'), 15);
    CHECK_INT_EQ(epp_hex_digit('g'), -1);
    CHECK_INT_EQ(epp_hex_digit('/'), -1);
    CHECK_INT_EQ(epp_hex_digit(':'), -1);
    CHECK_INT_EQ(epp_hex_digit('@'), -1);
    CHECK_INT_EQ(epp_hex_digit('G'), -1);
    CHECK_INT_EQ(epp_hex_digit(0), -1);
    CHECK_INT_EQ(epp_hex_digit(0xff), -1);
}

static void test_round_trip(void)
{
    const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char text[2 * sizeof bytes + 1];
    epp_hex_encode(bytes, sizeof bytes, text);
    CHECK_STR_EQ(text, "00017f80abff");
    uint8_t back[sizeof bytes];
    CHECK_INT_EQ(epp_hex_decode(text, sizeof bytes, back, 1), 0);
    CHECK(memcmp(back, bytes, sizeof bytes) == 0);
    CHECK_INT_EQ(epp_hex_decode("ABff", 2, back, 0), 0);
    CHECK(back[0] == 0xab && back[1] == 0xff);
}

static void test_refusals(void)
{
    uint8_t out[4];
    CHECK_INT_EQ(epp_hex_decode("ABff", 2, out, 1), EPP_EINVAL); /* lower case only */
    CHECK_INT_EQ(epp_hex_decode("0g", 1, out, 0), EPP_EINVAL);
    CHECK_INT_EQ(epp_hex_decode("0 ", 1, out, 0), EPP_EINVAL);
    CHECK_INT_EQ(epp_hex_decode("-1", 1, out, 0), EPP_EINVAL);
    CHECK_INT_EQ(epp_hex_decode("", 0, out, 0), 0);
}

int main(void)
{
    EPP_RUN(test_digit);
    EPP_RUN(test_round_trip);
    EPP_RUN(test_refusals);
    return EPP_TEST_RESULT();
}
