/* epp_hex: see epp_hex.h. */
#include "epp_hex.h"

#include <stdint.h>

#include "epp_error.h"

/* Digit values by character (0 for a non-digit: is_hex tells them apart). */
static const uint8_t hex_value[256] = {
    ['0'] = 0,  ['1'] = 1,  ['2'] = 2,  ['3'] = 3,  ['4'] = 4,  ['5'] = 5,  ['6'] = 6,  ['7'] = 7,
    ['8'] = 8,  ['9'] = 9,  ['a'] = 10, ['b'] = 11, ['c'] = 12, ['d'] = 13, ['e'] = 14, ['f'] = 15,
    ['A'] = 10, ['B'] = 11, ['C'] = 12, ['D'] = 13, ['E'] = 14, ['F'] = 15,
};
/* 1: a digit, 2: an upper-case one, 0: not a digit. */
static const uint8_t is_hex[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['A'] = 2, ['B'] = 2, ['C'] = 2, ['D'] = 2, ['E'] = 2, ['F'] = 2,
};

int epp_hex_digit(int c)
{
    return c >= 0 && c <= 255 && is_hex[c] ? hex_value[c] : -1;
}

int epp_hex_decode(const char *s, size_t n, uint8_t *out, int lower_only)
{
    /* Table-driven: the consumer decodes an event_id (16 bytes) per message. */
    const unsigned char *u = (const unsigned char *)s;
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = u[2 * i], lo = u[2 * i + 1];
        bad |= (is_hex[hi] == 0) | (is_hex[lo] == 0) |
               (lower_only != 0 && (is_hex[hi] == 2 || is_hex[lo] == 2));
        out[i] = (uint8_t)(hex_value[hi] << 4 | hex_value[lo]);
    }
    return bad ? EPP_EINVAL : 0;
}

void epp_hex_encode(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}
