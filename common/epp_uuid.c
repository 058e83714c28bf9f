/* epp_uuid: parse, format, UUIDv7 (RFC 9562 section 5.7, monotonic per "method 1") and UUIDv5
 * (section 5.5: SHA-1 of namespace and name).
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
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "epp_error.h"
#include "epp_hex.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#endif

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

/* --- UUIDv5 ---
 *
 * SHA-1 as FIPS 180-4 section 6.1 defines it, written out here because libepp links no crypto
 * library and UUIDv5 is its only use. SHA-1 is broken for collision resistance; a UUIDv5 needs
 * none (RFC 9562 section 6.9: names are not secrets and ids are not signatures). */

typedef struct {
    uint32_t h[5];
    uint64_t total; /* bytes hashed so far */
    uint8_t block[64];
    size_t used; /* bytes in block */
} sha1_t;

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

/* The rounds, fully unrolled (constant schedule indices) with the five working variables renamed
 * from round to round instead of moved (round t+1 is round t with (a, b, c, d, e) read as (e, a, b,
 * c, d)), so that a round is a handful of instructions. W0 reads the block; W extends the 16-word
 * schedule in place. */
#define SHA1_W0(t) w[t]
#define SHA1_W(t)                                                                                  \
    (w[(t)&15] = rol32(w[((t) + 13) & 15] ^ w[((t) + 8) & 15] ^ w[((t) + 2) & 15] ^ w[(t)&15], 1))
#define SHA1_F1(b, c, d) ((((c) ^ (d)) & (b)) ^ (d))
#define SHA1_F2(b, c, d) ((b) ^ (c) ^ (d))
#define SHA1_F3(b, c, d) (((b) & (c)) | (((b) | (c)) & (d)))
#define SHA1_R(f, k, wt, a, b, c, d, e)                                                            \
    do {                                                                                           \
        (e) += rol32((a), 5) + f((b), (c), (d)) + (k) + (wt);                                      \
        (b) = rol32((b), 30);                                                                      \
    } while (0)
/* Five rounds, after which the variables are back in their places. */
#define SHA1_R5(f, k, W, t)                                                                        \
    do {                                                                                           \
        SHA1_R(f, k, W(t), a, b, c, d, e);                                                         \
        SHA1_R(f, k, W((t) + 1), e, a, b, c, d);                                                   \
        SHA1_R(f, k, W((t) + 2), d, e, a, b, c);                                                   \
        SHA1_R(f, k, W((t) + 3), c, d, e, a, b);                                                   \
        SHA1_R(f, k, W((t) + 4), b, c, d, e, a);                                                   \
    } while (0)

static void sha1_block(sha1_t *ctx, const uint8_t *p)
{
    uint32_t w[16];
    for (size_t t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    uint32_t a = ctx->h[0], b = ctx->h[1], c = ctx->h[2], d = ctx->h[3], e = ctx->h[4];
    /* The round functions and constants of FIPS 180-4 sections 4.1.1 and 4.2.1. */
    SHA1_R5(SHA1_F1, 0x5A827999u, SHA1_W0, 0);
    SHA1_R5(SHA1_F1, 0x5A827999u, SHA1_W0, 5);
    SHA1_R5(SHA1_F1, 0x5A827999u, SHA1_W0, 10);
    SHA1_R(SHA1_F1, 0x5A827999u, SHA1_W0(15), a, b, c, d, e);
    SHA1_R(SHA1_F1, 0x5A827999u, SHA1_W(16), e, a, b, c, d);
    SHA1_R(SHA1_F1, 0x5A827999u, SHA1_W(17), d, e, a, b, c);
    SHA1_R(SHA1_F1, 0x5A827999u, SHA1_W(18), c, d, e, a, b);
    SHA1_R(SHA1_F1, 0x5A827999u, SHA1_W(19), b, c, d, e, a);
    SHA1_R5(SHA1_F2, 0x6ED9EBA1u, SHA1_W, 20);
    SHA1_R5(SHA1_F2, 0x6ED9EBA1u, SHA1_W, 25);
    SHA1_R5(SHA1_F2, 0x6ED9EBA1u, SHA1_W, 30);
    SHA1_R5(SHA1_F2, 0x6ED9EBA1u, SHA1_W, 35);
    SHA1_R5(SHA1_F3, 0x8F1BBCDCu, SHA1_W, 40);
    SHA1_R5(SHA1_F3, 0x8F1BBCDCu, SHA1_W, 45);
    SHA1_R5(SHA1_F3, 0x8F1BBCDCu, SHA1_W, 50);
    SHA1_R5(SHA1_F3, 0x8F1BBCDCu, SHA1_W, 55);
    SHA1_R5(SHA1_F2, 0xCA62C1D6u, SHA1_W, 60);
    SHA1_R5(SHA1_F2, 0xCA62C1D6u, SHA1_W, 65);
    SHA1_R5(SHA1_F2, 0xCA62C1D6u, SHA1_W, 70);
    SHA1_R5(SHA1_F2, 0xCA62C1D6u, SHA1_W, 75);
    ctx->h[0] += a;
    ctx->h[1] += b;
    ctx->h[2] += c;
    ctx->h[3] += d;
    ctx->h[4] += e;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The same block function on the x86 SHA extensions (four rounds per instruction), used when
 * the CPU has them: a messageId's UUIDv5 is two blocks, on every Segment message. The schedule
 * follows the instructions' definitions in Intel's SDM (SHA1RNDS4, SHA1NEXTE, SHA1MSG1,
 * SHA1MSG2): each group of four rounds takes the next schedule words and prepares later ones. */
#define SHA1_NI_GROUP(ex, ey, wcur, wnext, wplus2, wplus3, f)                                      \
    do {                                                                                           \
        (ex) = _mm_sha1nexte_epu32(ex, wcur);                                                      \
        (ey) = abcd;                                                                               \
        (wnext) = _mm_sha1msg2_epu32(wnext, wcur);                                                 \
        abcd = _mm_sha1rnds4_epu32(abcd, ex, f);                                                   \
        (wplus3) = _mm_sha1msg1_epu32(wplus3, wcur);                                               \
        (wplus2) = _mm_xor_si128(wplus2, wcur);                                                    \
    } while (0)

__attribute__((target("sha,sse4.1"))) static void sha1_block_ni(sha1_t *ctx, const uint8_t *p)
{
    /* Big-endian words, and a, b, c, d in lanes 3..0 as the instructions want them. */
    const __m128i swap = _mm_set_epi64x(0x0001020304050607ll, 0x08090a0b0c0d0e0fll);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)ctx->h), 0x1B);
    __m128i e0 = _mm_set_epi32((int)ctx->h[4], 0, 0, 0), e1;
    const __m128i abcd_in = abcd, e_in = e0;
    __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), swap);
    __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), swap);
    __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), swap);
    __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), swap);
    /* Rounds 0-11: the schedule is the block itself. */
    e0 = _mm_add_epi32(e0, m0);
    e1 = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
    e1 = _mm_sha1nexte_epu32(e1, m1);
    e0 = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e1, 0);
    m0 = _mm_sha1msg1_epu32(m0, m1);
    e0 = _mm_sha1nexte_epu32(e0, m2);
    e1 = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
    m1 = _mm_sha1msg1_epu32(m1, m2);
    m0 = _mm_xor_si128(m0, m2);
    /* Rounds 12-79, four at a time; the round function changes every 20 rounds. */
    SHA1_NI_GROUP(e1, e0, m3, m0, m1, m2, 0);
    SHA1_NI_GROUP(e0, e1, m0, m1, m2, m3, 0);
    SHA1_NI_GROUP(e1, e0, m1, m2, m3, m0, 1);
    SHA1_NI_GROUP(e0, e1, m2, m3, m0, m1, 1);
    SHA1_NI_GROUP(e1, e0, m3, m0, m1, m2, 1);
    SHA1_NI_GROUP(e0, e1, m0, m1, m2, m3, 1);
    SHA1_NI_GROUP(e1, e0, m1, m2, m3, m0, 1);
    SHA1_NI_GROUP(e0, e1, m2, m3, m0, m1, 2);
    SHA1_NI_GROUP(e1, e0, m3, m0, m1, m2, 2);
    SHA1_NI_GROUP(e0, e1, m0, m1, m2, m3, 2);
    SHA1_NI_GROUP(e1, e0, m1, m2, m3, m0, 2);
    SHA1_NI_GROUP(e0, e1, m2, m3, m0, m1, 2);
    SHA1_NI_GROUP(e1, e0, m3, m0, m1, m2, 3);
    SHA1_NI_GROUP(e0, e1, m0, m1, m2, m3, 3);
    SHA1_NI_GROUP(e1, e0, m1, m2, m3, m0, 3);
    SHA1_NI_GROUP(e0, e1, m2, m3, m0, m1, 3);
    SHA1_NI_GROUP(e1, e0, m3, m0, m1, m2, 3);
    e0 = _mm_sha1nexte_epu32(e0, e_in);
    abcd = _mm_add_epi32(abcd, abcd_in);
    _mm_storeu_si128((__m128i *)ctx->h, _mm_shuffle_epi32(abcd, 0x1B));
    ctx->h[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}

/* 1 when the CPU has the SHA extensions (CPUID leaf 7, EBX bit 29), and SSE4.1 and SSSE3. */
static int cpu_has_sha(void)
{
    static _Atomic int known = -1;
    int v = atomic_load_explicit(&known, memory_order_relaxed);
    if (v < 0) {
        unsigned a, b, c, d;
        v = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) &&
            __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 19)) && (c & (1u << 9));
        atomic_store_explicit(&known, v, memory_order_relaxed);
    }
    return v;
}
#define SHA1_BLOCK(ctx, p) (cpu_has_sha() ? sha1_block_ni((ctx), (p)) : sha1_block((ctx), (p)))
#else
#define SHA1_BLOCK(ctx, p) sha1_block((ctx), (p))
#endif

static void sha1_init(sha1_t *c)
{
    static const uint32_t h0[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    memcpy(c->h, h0, sizeof h0);
    c->total = 0;
    c->used = 0;
}

static void sha1_update(sha1_t *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    c->total += len;
    while (len > 0) {
        size_t n = sizeof c->block - c->used;
        if (n > len)
            n = len;
        memcpy(c->block + c->used, p, n);
        c->used += n;
        p += n;
        len -= n;
        if (c->used == sizeof c->block) {
            SHA1_BLOCK(c, c->block);
            c->used = 0;
        }
    }
}

static void sha1_final(sha1_t *c, uint8_t out[20])
{
    uint64_t bits = c->total * 8;
    /* 0x80, zeros up to 56 bytes into a block, then the length in bits, big-endian. */
    uint8_t pad[72] = {0x80};
    size_t n = c->used < 56 ? 56 - c->used : 120 - c->used;
    for (int i = 0; i < 8; i++)
        pad[n + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(c, pad, n + 8);
    for (size_t i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void epp_uuid_v5(const epp_uuid_t *ns, const void *name, size_t len, epp_uuid_t *out)
{
    sha1_t c;
    uint8_t digest[20];
    sha1_init(&c);
    sha1_update(&c, ns->b, sizeof ns->b);
    sha1_update(&c, name, len);
    sha1_final(&c, digest);
    memcpy(out->b, digest, 16);
    out->b[6] = (uint8_t)(0x50 | (out->b[6] & 0x0F));
    out->b[8] = (uint8_t)(0x80 | (out->b[8] & 0x3F));
}

int epp_uuid_version(const epp_uuid_t *u)
{
    return u->b[6] >> 4;
}

int epp_uuid_parse(const char *s, size_t len, epp_uuid_t *out)
{
    if (len != EPP_UUID_STRLEN)
        return EPP_EINVAL;
    if (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
        return EPP_EINVAL;
    epp_uuid_t u;
    /* The five groups: 8-4-4-4-12 digits. */
    if (epp_hex_decode(s, 4, u.b, 0) != 0 || epp_hex_decode(s + 9, 2, u.b + 4, 0) != 0 ||
        epp_hex_decode(s + 14, 2, u.b + 6, 0) != 0 || epp_hex_decode(s + 19, 2, u.b + 8, 0) != 0 ||
        epp_hex_decode(s + 24, 6, u.b + 10, 0) != 0)
        return EPP_EINVAL;
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
