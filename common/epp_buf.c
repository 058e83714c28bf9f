#include "epp_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"

int epp_buf_reserve(epp_buf_t *buf, size_t extra)
{
    size_t need = buf->len + extra + 1;
    if (need <= buf->cap)
        return 0;
    size_t cap = buf->cap ? buf->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(buf->data, cap);
    if (!p)
        return EPP_ENOMEM;
    buf->data = p;
    buf->cap = cap;
    return 0;
}

int epp_buf_append(epp_buf_t *buf, const void *data, size_t len)
{
    if (epp_buf_reserve(buf, len))
        return EPP_ENOMEM;
    if (len)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
    return 0;
}

int epp_buf_append_str(epp_buf_t *buf, const char *s)
{
    return epp_buf_append(buf, s, strlen(s));
}

int epp_buf_vprintf(epp_buf_t *buf, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return EPP_EINVAL;
    if ((size_t)n < sizeof small)
        return epp_buf_append(buf, small, (size_t)n);
    if (epp_buf_reserve(buf, (size_t)n))
        return EPP_ENOMEM;
    vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
    buf->len += (size_t)n;
    return 0;
}

int epp_buf_printf(epp_buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = epp_buf_vprintf(buf, fmt, ap);
    va_end(ap);
    return rc;
}

void epp_buf_reset(epp_buf_t *buf)
{
    buf->len = 0;
    if (buf->data)
        buf->data[0] = '\0';
}

void epp_buf_free(epp_buf_t *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

char *epp_buf_steal(epp_buf_t *buf)
{
    char *p = buf->data;
    if (!p)
        p = calloc(1, 1);
    buf->data = NULL;
    buf->len = buf->cap = 0;
    return p;
}

int epp_grow(void *items, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : first;
    void *old, *p;
    memcpy(&old, items, sizeof old);
    if ((p = realloc(old, ncap * size)) == NULL)
        return EPP_ENOMEM;
    memcpy(items, &p, sizeof p);
    *cap = ncap;
    return 0;
}
