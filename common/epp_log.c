/* Levelled, structured logging (see epp_log.h).
 *
 * Each line is assembled in a stack buffer and handed to the kernel with one write(2) on fd 2, so
 * lines from different threads never interleave (writes to a pipe or file up to PIPE_BUF are
 * atomic, and O_APPEND files and terminals keep whole writes together in practice). Lines longer
 * than the stack buffer move to the heap. Nothing here takes a lock. */
#include "epp_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_json.h"

volatile int epp_log_threshold = EPP_LOG_INFO;

/* Set once by epp_log_init() before other threads start; read-only afterwards. */
static const char *log_service = "epp";
static int log_json = 1;

void epp_log_init(const char *service, epp_log_level_t level, int json)
{
    log_service = service ? service : "epp";
    log_json = json ? 1 : 0;
    epp_log_threshold = (int)level;
}

int epp_log_level_parse(const char *s, epp_log_level_t *out)
{
    static const struct {
        const char *name;
        epp_log_level_t level;
    } names[] = {
        {"debug", EPP_LOG_DEBUG},  {"info", EPP_LOG_INFO},   {"warn", EPP_LOG_WARN},
        {"warning", EPP_LOG_WARN}, {"error", EPP_LOG_ERROR}, {"off", EPP_LOG_OFF},
    };
    if (!s)
        return EPP_EINVAL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return EPP_EINVAL;
}

int epp_log_format_parse(const char *s, int *json)
{
    if (s && strcasecmp(s, "json") == 0) {
        *json = 1;
        return 0;
    }
    if (s && strcasecmp(s, "text") == 0) {
        *json = 0;
        return 0;
    }
    return EPP_EINVAL;
}

/* ---- the line being built ---------------------------------------------------------------- */

enum { LINE_STACK = 2048, LINE_TAIL = 4 /* room kept for the closing "}\n */ };

typedef struct {
    char *p;
    size_t len, cap; /* cap excludes the LINE_TAIL reserve */
    int heap;        /* p is malloc'd */
    int oom;         /* growing failed: everything after that point is dropped */
    int in_string;   /* inside a JSON string, so a truncated line needs a closing quote */
} line_t;

static int line_grow(line_t *l, size_t n)
{
    size_t cap = l->cap * 2;
    while (cap < l->len + n)
        cap *= 2;
    char *p;
    if (l->heap) {
        p = realloc(l->p, cap + LINE_TAIL);
    } else {
        p = malloc(cap + LINE_TAIL);
        if (p)
            memcpy(p, l->p, l->len);
    }
    if (!p)
        return -1;
    l->p = p;
    l->cap = cap;
    l->heap = 1;
    return 0;
}

static void line_put(line_t *l, const char *s, size_t n)
{
    if (l->oom)
        return;
    if (l->len + n > l->cap && line_grow(l, n) != 0) {
        l->oom = 1;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void line_puts(line_t *l, const char *s)
{
    line_put(l, s, strlen(s));
}

static void line_putc(line_t *l, char c)
{
    line_put(l, &c, 1);
}

/* Appends s as a quoted JSON string: quotes, backslashes and control characters escaped, and
 * bytes that are not valid UTF-8 replaced by U+FFFD so the line is always valid JSON. */
static void line_json_str(line_t *l, const char *s)
{
    line_putc(l, '"');
    l->in_string = 1;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x7f && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            line_put(l, (const char *)p + i, run - i);
            i = run;
            continue;
        }
        char esc[6];
        size_t elen = epp_json_escape_byte(p[i], esc);
        if (elen > 0) {
            line_put(l, esc, elen);
            i++;
        } else if (p[i] == 0x7f) {
            line_put(l, "\\u007f", 6); /* JSON allows DEL as is; a terminal does not */
            i++;
        } else {
            size_t len = epp_json_utf8_seq((const char *)p + i, n - i);
            if (len == 0) {
                line_put(l, "\\ufffd", 6);
                len = 1;
            } else {
                line_put(l, (const char *)p + i, len);
            }
            i += len;
        }
    }
    if (!l->oom) {
        line_putc(l, '"');
        l->in_string = 0;
    }
}

/* Appends s for the text format: control characters escaped so a record stays on one line; when
 * quote is set (values), the value is quoted if it is empty or holds a space, '"' or '='. */
static void line_text_str(line_t *l, const char *s, int quote)
{
    static const char hex[] = "0123456789abcdef";
    int q = quote && (*s == '\0' || strpbrk(s, " \"=") != NULL);
    if (q)
        line_putc(l, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') {
            line_put(l, "\\n", 2);
        } else if (*p == '\r') {
            line_put(l, "\\r", 2);
        } else if (*p == '\t') {
            line_put(l, "\\t", 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            char esc[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
            line_put(l, esc, 4);
        } else if (q && (*p == '"' || *p == '\\')) {
            char esc[2] = {'\\', (char)*p};
            line_put(l, esc, 2);
        } else {
            line_putc(l, (char)*p);
        }
    }
    if (q)
        line_putc(l, '"');
}

/* Writes "2026-11-27T08:31:45.123Z" (24 bytes, no NUL) to out. */
static void format_ts(char *out)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    unsigned year = (unsigned)(tm.tm_year + 1900) % 10000;
    unsigned ms = (unsigned)(now.tv_nsec / 1000000);
    const unsigned fields[] = {(unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday, (unsigned)tm.tm_hour,
                               (unsigned)tm.tm_min, (unsigned)tm.tm_sec};
    static const char seps[] = "--T::";
    out[0] = (char)('0' + year / 1000);
    out[1] = (char)('0' + year / 100 % 10);
    out[2] = (char)('0' + year / 10 % 10);
    out[3] = (char)('0' + year % 10);
    char *p = out + 4;
    for (int i = 0; i < 5; i++) {
        *p++ = seps[i];
        *p++ = (char)('0' + fields[i] / 10);
        *p++ = (char)('0' + fields[i] % 10);
    }
    *p++ = '.';
    *p++ = (char)('0' + ms / 100);
    *p++ = (char)('0' + ms / 10 % 10);
    *p++ = (char)('0' + ms % 10);
    *p = 'Z';
}

static const char *level_name(epp_log_level_t level, int json)
{
    static const char *const json_names[] = {"debug", "info", "warn", "error"};
    static const char *const text_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    unsigned i = (unsigned)level;
    if (i > 3)
        i = 3;
    return json ? json_names[i] : text_names[i];
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing stderr */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Builds and writes one record. The extra fields come from ap when it is non-NULL (a NULL key
 * ends the list), otherwise from the npairs pairs in kv. */
static void emit(epp_log_level_t level, const char *msg, const char *const *kv, size_t npairs,
                 va_list *ap)
{
    int saved_errno = errno; /* callers often log and then look at errno */
    char stack[LINE_STACK + LINE_TAIL];
    line_t l = {stack, 0, LINE_STACK, 0, 0, 0};
    char ts[24];
    format_ts(ts);
    int json = log_json;

    if (json) {
        line_puts(&l, "{\"ts\":\"");
        line_put(&l, ts, sizeof ts);
        line_puts(&l, "\",\"level\":\"");
        line_puts(&l, level_name(level, 1));
        line_puts(&l, "\",\"service\":");
        line_json_str(&l, log_service);
        line_puts(&l, ",\"msg\":");
        line_json_str(&l, msg);
    } else {
        line_put(&l, ts, sizeof ts);
        line_putc(&l, ' ');
        line_puts(&l, level_name(level, 0));
        line_putc(&l, ' ');
        line_text_str(&l, log_service, 0);
        line_puts(&l, ": ");
        line_text_str(&l, msg, 0);
    }
    for (size_t i = 0;; i++) {
        const char *key, *value;
        if (ap) {
            key = va_arg(*ap, const char *);
            if (!key)
                break;
            value = va_arg(*ap, const char *);
        } else {
            if (i >= npairs)
                break;
            key = kv[2 * i];
            value = kv[2 * i + 1];
        }
        if (!key)
            continue;
        if (json) {
            line_putc(&l, ',');
            line_json_str(&l, key);
            line_putc(&l, ':');
            if (value)
                line_json_str(&l, value);
            else
                line_puts(&l, "null");
        } else {
            line_putc(&l, ' ');
            line_text_str(&l, key, 0);
            line_putc(&l, '=');
            if (value)
                line_text_str(&l, value, 1);
            else
                line_puts(&l, "null");
        }
    }
    /* The tail reserve guarantees room to close a truncated line. */
    if (l.oom && json && l.in_string)
        l.p[l.len++] = '"';
    if (json)
        l.p[l.len++] = '}';
    l.p[l.len++] = '\n';
    write_all(l.p, l.len);
    if (l.heap)
        free(l.p);
    errno = saved_errno;
}

void epp_log_write(epp_log_level_t level, const char *fmt, ...)
{
    if (!EPP_LOG_ON(level))
        return;
    char small[512];
    char *msg = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        msg = (char *)fmt; /* an encoding error: log the format rather than nothing */
    } else if ((size_t)n >= sizeof small) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            va_start(ap, fmt);
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            msg = big;
        } /* else: log the truncated message */
    }
    emit(level, msg, NULL, 0, NULL);
    if (msg != small && msg != fmt)
        free(msg);
}

void epp_log_kv(epp_log_level_t level, const char *msg, ...)
{
    if (!EPP_LOG_ON(level))
        return;
    va_list ap;
    va_start(ap, msg);
    emit(level, msg ? msg : "", NULL, 0, &ap);
    va_end(ap);
}

void epp_log_kv_array(epp_log_level_t level, const char *msg, const char *const *kv, size_t npairs)
{
    if (!EPP_LOG_ON(level))
        return;
    emit(level, msg ? msg : "", kv, kv ? npairs : 0, NULL);
}
