/* epp_hex: hexadecimal digits -- the one decoder (and encoder) of libepp: W3C trace ids, UUIDs,
 * HTTP's %XX escapes and chunk sizes. Pure functions; any thread. */
#ifndef EPP_HEX_H
#define EPP_HEX_H

#include <stddef.h>
#include <stdint.h>

/* The value of hex digit c (0-9, a-f, A-F), or -1 when c is not one. */
int epp_hex_digit(int c);

/* Decodes the 2 * n hex digits at s into n bytes at out; with lower_only, upper-case digits are
 * refused (W3C trace context). 0, or EPP_EINVAL when a character is not a digit (out is then
 * partly written). */
int epp_hex_decode(const char *s, size_t n, uint8_t *out, int lower_only);

/* Writes the n bytes as 2 * n lower-case hex digits and a NUL into out (2 * n + 1 bytes). */
void epp_hex_encode(const uint8_t *bytes, size_t n, char *out);

#endif
