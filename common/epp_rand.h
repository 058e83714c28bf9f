/* epp_rand: the one pseudo-random generator, for what needs speed or a repeatable sequence and
 * not secrecy (trace and span ids, generated test and bench data): xorshift64* -- Marsaglia's
 * xorshift over 64 bits, its output multiplied by an odd constant for better low bits.
 *
 * The caller owns the state: seed it with any non-zero value (0 stays 0 forever); the same seed
 * gives the same sequence. Pure; a state is used by one thread at a time. */
#ifndef EPP_RAND_H
#define EPP_RAND_H

#include <stdint.h>

static inline uint64_t epp_rand_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif
