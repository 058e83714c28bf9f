/* epp_hex: see epp_hex.h. */
#include "epp_hex.h"

#include "epp_error.h"

int epp_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int epp_hex_decode(const char *s, size_t n, uint8_t *out, int lower_only)
{
    for (size_t i = 0; i < 2 * n; i++) {
        int c = (unsigned char)s[i];
        int v = epp_hex_digit(c);
        if (v < 0 || (lower_only && c >= 'A' && c <= 'F'))
            return EPP_EINVAL;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return 0;
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
