/* A growable byte buffer, always NUL-terminated after data[len] once anything was appended.
 *
 * Not thread-safe: one owner at a time. A zero-initialised epp_buf_t is a valid empty buffer. */
#ifndef EPP_BUF_H
#define EPP_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} epp_buf_t;

/* Makes room for at least extra more bytes (plus the terminating NUL). 0 or EPP_ENOMEM. */
int epp_buf_reserve(epp_buf_t *buf, size_t extra);
int epp_buf_append(epp_buf_t *buf, const void *data, size_t len);
int epp_buf_append_str(epp_buf_t *buf, const char *s);
/* Inline: the serialisers (epp_json, epp_event) call it for every bracket, comma and colon. */
static inline int epp_buf_append_char(epp_buf_t *buf, char c)
{
    if (buf->len + 2 > buf->cap && epp_buf_reserve(buf, 1))
        return -2; /* EPP_ENOMEM (epp_error.h) */
    buf->data[buf->len++] = c;
    buf->data[buf->len] = '\0';
    return 0;
}
int epp_buf_printf(epp_buf_t *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int epp_buf_vprintf(epp_buf_t *buf, const char *fmt, va_list ap);
/* Empties the buffer and keeps its memory. */
void epp_buf_reset(epp_buf_t *buf);
/* Frees the memory; the buffer is empty and reusable afterwards. */
void epp_buf_free(epp_buf_t *buf);
/* Hands the memory to the caller (caller frees with free()); the buffer is empty afterwards.
 * Returns an empty string rather than NULL for an empty buffer, or NULL on allocation failure. */
char *epp_buf_steal(epp_buf_t *buf);

/* Room for one more item in a growing array: when n items fill *cap, the array *items points to
 * (items is the address of the caller's T * variable, items of size bytes) doubles, or gets
 * first items when it has none. 0, or EPP_ENOMEM with the array and *cap as they were. */
int epp_grow(void *items, size_t *cap, size_t n, size_t size, size_t first);

#endif
