/* epp_uuid: parse, format, and UUIDv7 (RFC 9562 section 5.7, monotonic per "method 1").
 *
 * A v7 UUID here is: 48 bits of Unix milliseconds, version 7, then a 42-bit counter spread over
 * rand_a (12 bits) and the top 30 bits of rand_b, then 32 random bits. When the millisecond
 * changes the counter is reseeded randomly below 2^41, which leaves at least 2^41 increments of
 * headroom inside one millisecond; within a millisecond it increments by one. If the clock
 * steps back, or the counter would overflow, the last millisecond is kept (or advanced by one),
 * so values from one process are strictly increasing whatever the clock does.
 *
 * Threads: the (ms, counter) state is guarded by a mutex held for a few instructions. Random
 * bytes come from getrandom() through a small per-thread buffer, so a UUID costs no syscall
 * most of the time. */
#include "epp_uuid.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "epp_error.h"

#define COUNTER_BITS 42
#define COUNTER_MAX  ((UINT64_C(1) << COUNTER_BITS) - 1)
#define SEED_MASK    ((UINT64_C(1) << (COUNTER_BITS - 1)) - 1)

static pthread_mutex_t v7_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t v7_last_ms;
static uint64_t v7_counter;

static _Thread_local struct {
    uint8_t bytes[256];
    size_t pos;
} rnd = {.pos = 256};

/* Fills out with n (<= 256) random bytes. getrandom() on the urandom source only blocks before
 * the kernel's pool is initialised at boot; it can return short reads for large requests or
 * EINTR, hence the loop. */
static void random_bytes(void *out, size_t n)
{
    if (rnd.pos + n > sizeof rnd.bytes) {
        size_t got = 0;
        while (got < sizeof rnd.bytes) {
            ssize_t r = getrandom(rnd.bytes + got, sizeof rnd.bytes - got, 0);
            if (r > 0)
                got += (size_t)r;
        }
        rnd.pos = 0;
    }
    memcpy(out, rnd.bytes + rnd.pos, n);
    rnd.pos += n;
}

static uint64_t load_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

void epp_uuid_v7(epp_uuid_t *out)
{
    uint8_t r[12];
    random_bytes(r, sizeof r);
    uint64_t seed = load_u64(r) & SEED_MASK;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;

    pthread_mutex_lock(&v7_lock);
    uint64_t ms, counter;
    if (now_ms > v7_last_ms) {
        ms = now_ms;
        counter = seed;
    } else if (v7_counter < COUNTER_MAX) {
        ms = v7_last_ms;
        counter = v7_counter + 1;
    } else {
        ms = v7_last_ms + 1;
        counter = seed;
    }
    v7_last_ms = ms;
    v7_counter = counter;
    pthread_mutex_unlock(&v7_lock);

    uint8_t *b = out->b;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | ((counter >> 38) & 0x0F));
    b[7] = (uint8_t)(counter >> 30);
    b[8] = (uint8_t)(0x80 | ((counter >> 24) & 0x3F));
    b[9] = (uint8_t)(counter >> 16);
    b[10] = (uint8_t)(counter >> 8);
    b[11] = (uint8_t)counter;
    memcpy(b + 12, r + 8, 4);
}

int epp_uuid_version(const epp_uuid_t *u)
{
    return u->b[6] >> 4;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int epp_uuid_parse(const char *s, size_t len, epp_uuid_t *out)
{
    if (len != EPP_UUID_STRLEN)
        return EPP_EINVAL;
    epp_uuid_t u;
    size_t j = 0;
    for (size_t i = 0; i < EPP_UUID_STRLEN;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return EPP_EINVAL;
            i++;
            continue;
        }
        int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return EPP_EINVAL;
        u.b[j++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    *out = u;
    return 0;
}

void epp_uuid_format(const epp_uuid_t *u, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[u->b[i] >> 4];
        *p++ = hex[u->b[i] & 15];
    }
    *p = '\0';
}
