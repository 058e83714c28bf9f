/* epp_gzip: bounded gzip inflate and one-shot deflate over zlib.
 *
 * Inflate never lets the output buffer grow beyond what it held before plus max_out (+1 for the
 * NUL epp_buf keeps): the buffer is grown by hand in bounded steps instead of through
 * epp_buf_reserve()'s doubling, so a 10 MB -> 10 GB bomb costs max_out bytes, not more. */
#include "epp_gzip.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "epp_error.h"

/* windowBits for zlib: 15 (32 KiB window) + 16 selects the gzip wrapper. */
#define GZIP_WBITS (15 + 16)

/* Grows out so that it can take at least one more byte, without its capacity exceeding limit
 * (the largest cap needed: prior contents + max_out + NUL). */
static int grow_bounded(epp_buf_t *out, size_t limit)
{
    size_t cap = out->cap ? out->cap * 2 : 4096;
    if (cap < out->len + 4096)
        cap = out->len + 4096;
    if (cap > limit)
        cap = limit;
    if (cap <= out->cap)
        return 0;
    char *p = realloc(out->data, cap);
    if (!p)
        return EPP_ENOMEM;
    out->data = p;
    out->cap = cap;
    return 0;
}

int epp_gzip_inflate(const void *in, size_t len, size_t max_out, epp_buf_t *out)
{
    if (len == 0)
        return EPP_EINVAL;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, GZIP_WBITS) != Z_OK)
        return EPP_ENOMEM;

    const size_t start = out->len;
    /* Everything the caller may receive, plus epp_buf's terminating NUL. */
    const size_t limit = max_out < SIZE_MAX - start - 1 ? start + max_out + 1 : SIZE_MAX;
    zs.next_in = (Bytef *)in;
    /* Even an empty result leaves a NUL-terminated buffer behind. */
    int rc = out->data ? 0 : grow_bounded(out, limit);
    while (!rc) {
        /* Feed zlib in uInt-sized slices (avail_in is 32 bits). */
        if (zs.avail_in == 0) {
            size_t used = (size_t)(zs.next_in - (const Bytef *)in);
            size_t left = len - used;
            zs.avail_in = left > 0x40000000u ? 0x40000000u : (uInt)left;
        }
        size_t produced = out->len - start;
        if (out->cap <= out->len + 1 && produced < max_out) {
            if ((rc = grow_bounded(out, limit)))
                break;
        }
        size_t room = out->cap - out->len - 1; /* keep a byte for the NUL */
        if (room > max_out - produced)
            room = max_out - produced;
        unsigned char probe;
        int probing = room == 0;
        if (probing) {
            /* The output is at max_out: one more byte of output would exceed it. */
            zs.next_out = &probe;
            zs.avail_out = 1;
        } else {
            zs.next_out = (Bytef *)out->data + out->len;
            zs.avail_out = room > 0x40000000u ? 0x40000000u : (uInt)room;
        }
        uInt avail_before = zs.avail_out;
        const Bytef *in_before = zs.next_in;
        int zrc = inflate(&zs, Z_NO_FLUSH);
        size_t got = avail_before - zs.avail_out;
        if (probing && got) {
            rc = EPP_ETOOBIG;
            break;
        }
        if (!probing)
            out->len += got;
        if (zrc == Z_STREAM_END) {
            /* Another member may follow (gzip files may be concatenated). */
            size_t used = (size_t)(zs.next_in - (const Bytef *)in);
            if (used == len && zs.avail_in == 0)
                break;
            if (inflateReset(&zs) != Z_OK) {
                rc = EPP_EINVAL;
                break;
            }
            continue;
        }
        if (zrc == Z_MEM_ERROR) {
            rc = EPP_ENOMEM;
            break;
        }
        if (zrc == Z_DATA_ERROR || zrc == Z_NEED_DICT || zrc == Z_STREAM_ERROR) {
            rc = EPP_EINVAL;
            break;
        }
        if (got == 0 && zs.next_in == in_before) {
            /* No progress with output space available: all input is used up mid-stream
             * (truncated), or zlib is stuck on it. */
            rc = EPP_EINVAL;
            break;
        }
    }
    inflateEnd(&zs);
    if (rc)
        out->len = start;
    if (out->data)
        out->data[out->len] = '\0';
    return rc;
}

int epp_gzip_deflate(const void *in, size_t len, int level, epp_buf_t *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    int zrc = deflateInit2(&zs, level, Z_DEFLATED, GZIP_WBITS, 8, Z_DEFAULT_STRATEGY);
    if (zrc == Z_MEM_ERROR)
        return EPP_ENOMEM;
    if (zrc != Z_OK)
        return zrc == Z_STREAM_ERROR ? EPP_EINVAL : EPP_EIO;

    const size_t start = out->len;
    int rc = 0;
    zs.next_in = (Bytef *)in;
    size_t left = len;
    for (;;) {
        if (zs.avail_in == 0 && left) {
            zs.avail_in = left > 0x40000000u ? 0x40000000u : (uInt)left;
            left -= zs.avail_in;
        }
        /* deflateBound covers the rest in one go for input up to 1 GiB slices. */
        size_t want = deflateBound(&zs, zs.avail_in) + 64;
        if (epp_buf_reserve(out, want)) {
            rc = EPP_ENOMEM;
            break;
        }
        size_t room = out->cap - out->len - 1;
        zs.next_out = (Bytef *)out->data + out->len;
        zs.avail_out = room > 0x40000000u ? 0x40000000u : (uInt)room;
        uInt avail_before = zs.avail_out;
        zrc = deflate(&zs, left ? Z_NO_FLUSH : Z_FINISH);
        out->len += avail_before - zs.avail_out;
        if (zrc == Z_STREAM_END)
            break;
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            rc = EPP_EIO;
            break;
        }
    }
    deflateEnd(&zs);
    if (rc)
        out->len = start;
    if (out->data)
        out->data[out->len] = '\0';
    return rc;
}
