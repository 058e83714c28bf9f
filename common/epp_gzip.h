/* gzip for request bodies and backups, over zlib. Thread-safe (no shared state). */
#ifndef EPP_GZIP_H
#define EPP_GZIP_H

#include <stddef.h>

#include "epp_buf.h"

/* Decompresses a gzip stream (one or more members) in[0..len) and appends it to out.
 * Stops with EPP_ETOOBIG as soon as the output would exceed max_out bytes (a "bomb" costs at
 * most max_out of memory), EPP_EINVAL for corrupt or truncated input, EPP_ENOMEM. */
int epp_gzip_inflate(const void *in, size_t len, size_t max_out, epp_buf_t *out);

/* Compresses in[0..len) as one gzip member appended to out. 0, EPP_ENOMEM or EPP_EIO. */
int epp_gzip_deflate(const void *in, size_t len, int level, epp_buf_t *out);

#endif
