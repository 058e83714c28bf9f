/* Unit tests for epp_gzip: round trips, multi-member input, bombs, corrupt and truncated input. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "epp_error.h"
#include "epp_gzip.h"
#include "epp_test.h"

static void fill_text(epp_buf_t *b, size_t n)
{
    for (size_t i = 0; b->len < n; i++)
        epp_buf_printf(b, "{\"user_id\":\"u%zu\",\"event_name\":\"e\"}\n", i * 7919 % 1000);
    b->len = n;
    b->data[n] = '\0';
}

static void test_roundtrip(void)
{
    static const size_t sizes[] = {0, 1, 100, 65536, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        epp_buf_t plain = {0}, gz = {0}, back = {0};
        epp_buf_append(&plain, "", 0);
        fill_text(&plain, sizes[i]);
        CHECK_INT_EQ(epp_gzip_deflate(plain.data, plain.len, 6, &gz), 0);
        CHECK(gz.len >= 18);
        CHECK_INT_EQ((unsigned char)gz.data[0], 0x1f); /* gzip magic */
        CHECK_INT_EQ((unsigned char)gz.data[1], 0x8b);
        CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, sizes[i], &back), 0);
        CHECK_MEM_EQ(back.data, back.len, plain.data, plain.len);
        CHECK_INT_EQ(back.data[back.len], '\0');
        epp_buf_free(&plain);
        epp_buf_free(&gz);
        epp_buf_free(&back);
    }
    /* Levels: default, none, best; appends after existing contents. */
    epp_buf_t gz = {0}, back = {0};
    epp_buf_append_str(&back, "prefix:");
    for (int level = -1; level <= 9; level += 5) {
        epp_buf_reset(&gz);
        CHECK_INT_EQ(epp_gzip_deflate("hello hello hello", 17, level, &gz), 0);
        CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, 100, &back), 0);
    }
    CHECK_STR_EQ(back.data, "prefix:hello hello hellohello hello hellohello hello hello");
    CHECK_INT_EQ(epp_gzip_deflate("x", 1, 42, &gz), EPP_EINVAL);
    epp_buf_free(&gz);
    epp_buf_free(&back);
}

static void test_interop_with_zlib(void)
{
    /* Output of our deflate is a standard gzip member: zlib's uncompress-with-gzip reads it. */
    epp_buf_t gz = {0};
    const char *msg = "interoperable gzip";
    CHECK_INT_EQ(epp_gzip_deflate(msg, strlen(msg), 9, &gz), 0);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    CHECK_INT_EQ(inflateInit2(&zs, 15 + 32), Z_OK);
    char out[64];
    zs.next_in = (Bytef *)gz.data;
    zs.avail_in = (uInt)gz.len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = sizeof out;
    int zrc = inflate(&zs, Z_FINISH);
    size_t n = sizeof out - zs.avail_out;
    inflateEnd(&zs);
    CHECK_INT_EQ(zrc, Z_STREAM_END);
    CHECK_MEM_EQ(out, n, msg, strlen(msg));
    epp_buf_free(&gz);
}

static void test_multi_member(void)
{
    epp_buf_t gz = {0}, back = {0};
    CHECK_INT_EQ(epp_gzip_deflate("first,", 6, 6, &gz), 0);
    CHECK_INT_EQ(epp_gzip_deflate("second,", 7, 1, &gz), 0);
    CHECK_INT_EQ(epp_gzip_deflate("", 0, 6, &gz), 0);
    CHECK_INT_EQ(epp_gzip_deflate("third", 5, 9, &gz), 0);
    CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, 1000, &back), 0);
    CHECK_STR_EQ(back.data, "first,second,third");
    /* The limit applies to the total. */
    epp_buf_reset(&back);
    CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, 17, &back), EPP_ETOOBIG);
    epp_buf_reset(&back);
    CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, 18, &back), 0);
    epp_buf_free(&gz);
    epp_buf_free(&back);
}

static void test_bomb(void)
{
    /* 64 MiB of zeros compress to ~64 KiB; with a 1 MiB limit inflate stops early and the
     * buffer never grows past the limit. */
    size_t big = 64u << 20;
    char *zeros = calloc(1, big);
    CHECK(zeros);
    epp_buf_t gz = {0}, back = {0};
    CHECK_INT_EQ(epp_gzip_deflate(zeros, big, 9, &gz), 0);
    free(zeros);
    CHECK(gz.len < 200000);
    size_t limit = 1u << 20;
    CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, limit, &back), EPP_ETOOBIG);
    CHECK(back.cap <= limit + 1);
    CHECK_INT_EQ(back.len, 0);

    /* Exactly at the limit is fine; one byte over is not. */
    epp_buf_t small = {0};
    char data[1000];
    memset(data, 'a', sizeof data);
    epp_buf_reset(&gz);
    CHECK_INT_EQ(epp_gzip_deflate(data, sizeof data, 6, &gz), 0);
    CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, 1000, &small), 0);
    CHECK_INT_EQ(small.len, 1000);
    epp_buf_reset(&small);
    CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, 999, &small), EPP_ETOOBIG);
    CHECK_INT_EQ(small.len, 0);
    CHECK_INT_EQ(epp_gzip_inflate(gz.data, gz.len, 0, &small), EPP_ETOOBIG);
    epp_buf_free(&small);
    epp_buf_free(&gz);
    epp_buf_free(&back);
}

static void test_garbage(void)
{
    epp_buf_t back = {0};
    epp_buf_append_str(&back, "keep");
    CHECK_INT_EQ(epp_gzip_inflate("", 0, 100, &back), EPP_EINVAL);
    CHECK_INT_EQ(epp_gzip_inflate("not gzip at all", 15, 100, &back), EPP_EINVAL);
    CHECK_INT_EQ(epp_gzip_inflate("\x1f\x8b", 2, 100, &back), EPP_EINVAL);
    CHECK_STR_EQ(back.data, "keep"); /* failures leave the buffer's contents as they were */

    epp_buf_t gz = {0};
    const char *msg = "some text that compresses into a few bytes of deflate";
    CHECK_INT_EQ(epp_gzip_deflate(msg, strlen(msg), 6, &gz), 0);
    /* Every truncation fails. */
    for (size_t n = 1; n < gz.len; n++) {
        epp_buf_reset(&back);
        if (epp_gzip_inflate(gz.data, n, 1000, &back) != EPP_EINVAL)
            EPP_FAIL_("truncated to %zu of %zu bytes: accepted", n, gz.len);
    }
    /* A flipped bit in the data or the CRC fails. */
    for (size_t i = 10; i < gz.len; i++) {
        epp_buf_t bad = {0};
        epp_buf_append(&bad, gz.data, gz.len);
        bad.data[i] ^= 0x01;
        epp_buf_reset(&back);
        int rc = epp_gzip_inflate(bad.data, bad.len, 1000, &back);
        epp_buf_free(&bad);
        if (rc != EPP_EINVAL && rc != EPP_ETOOBIG)
            EPP_FAIL_("bit flip at %zu: rc %d", i, rc);
    }
    /* Trailing garbage after a valid member fails; a zlib (not gzip) stream fails. */
    epp_buf_t tail = {0};
    epp_buf_append(&tail, gz.data, gz.len);
    epp_buf_append(&tail, "junk", 4);
    epp_buf_reset(&back);
    CHECK_INT_EQ(epp_gzip_inflate(tail.data, tail.len, 1000, &back), EPP_EINVAL);
    unsigned char zbuf[128];
    uLongf zlen = sizeof zbuf;
    CHECK_INT_EQ(compress(zbuf, &zlen, (const Bytef *)msg, strlen(msg)), Z_OK);
    CHECK_INT_EQ(epp_gzip_inflate(zbuf, zlen, 1000, &back), EPP_EINVAL);
    epp_buf_free(&tail);
    epp_buf_free(&gz);
    epp_buf_free(&back);
}

int main(void)
{
    EPP_RUN(test_roundtrip);
    EPP_RUN(test_interop_with_zlib);
    EPP_RUN(test_multi_member);
    EPP_RUN(test_bomb);
    EPP_RUN(test_garbage);
    return EPP_TEST_RESULT();
}
