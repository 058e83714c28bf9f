/* epp_json: a yajl callback parser building a read-only tree in one arena per document.
 *
 * Two passes over the input, both linear:
 *  1. A pre-scan that yajl cannot do for us: strict UTF-8 (yajl accepts overlong forms, encoded
 *     surrogates and code points above U+10FFFF), and the \u escapes that Postgres jsonb refuses
 *     (\u0000 and lone surrogates; yajl 2.1 silently turns a lone high surrogate into '?' and
 *     encodes a lone low one as an invalid 3-byte sequence). Backslashes only occur inside strings
 *     in valid JSON, and inside a string the first backslash after an escape starts the next
 *     escape, so hopping from backslash to backslash reads every escape exactly as yajl will.
 *     Input that is not valid JSON gets its error from yajl in pass 2 or from this scan.
 *  2. yajl with callbacks. Numbers arrive as their source text (yajl_number), strings decoded.
 *
 * Memory: every node, member array and string lives in the document's arena: one malloc for the
 * document and a first chunk sized from the input, more chunks only for unusually dense input.
 * Children of open containers collect on one shared pending stack and are copied into the arena
 * when their container closes, so no per-node malloc happens. */
#include "epp_json.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "epp_error.h"

/* Used when the caller sets no depth limit: it bounds the recursion of epp_json_serialize(). */
#define DEFAULT_MAX_DEPTH 128

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    alignas(max_align_t) char data[];
} arena_chunk_t;

struct epp_json_doc {
    epp_json_value_t *root;
    char *cur; /* bump pointer into the current chunk */
    char *end;
    arena_chunk_t *extra; /* chunks allocated after the first, newest first */
    size_t next_chunk;    /* size of the next extra chunk */
    alignas(max_align_t) char first[];
};

static void *arena_alloc(epp_json_doc_t *doc, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    if ((size_t)(doc->end - doc->cur) < size) {
        size_t csize = doc->next_chunk;
        if (csize < size)
            csize = size;
        arena_chunk_t *c = malloc(sizeof *c + csize);
        if (!c)
            return NULL;
        c->next = doc->extra;
        c->size = csize;
        doc->extra = c;
        doc->cur = c->data;
        doc->end = c->data + csize;
        doc->next_chunk = csize * 2;
    }
    void *p = doc->cur;
    doc->cur += size;
    return p;
}

static char *arena_strdup(epp_json_doc_t *doc, const unsigned char *s, size_t len)
{
    char *p = arena_alloc(doc, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void epp_json_doc_destroy(epp_json_doc_t *doc)
{
    if (!doc)
        return;
    arena_chunk_t *c = doc->extra;
    while (c) {
        arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    free(doc);
}

const epp_json_value_t *epp_json_root(const epp_json_doc_t *doc)
{
    return doc ? doc->root : NULL;
}

/* ---- errors ---- */

static void set_error(epp_json_error_t *err, int code, const char *kind, size_t offset,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_error(epp_json_error_t *err, int code, const char *kind, size_t offset,
                      const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    err->kind = kind;
    err->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* ---- UTF-8 and escape scanning ---- */

/* Length of the strictly valid UTF-8 sequence starting at s[0] (a byte >= 0x80), or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* U+D800..U+DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

size_t epp_json_utf8_seq(const char *s, size_t avail)
{
    const unsigned char *u = (const unsigned char *)s;
    if (avail == 0)
        return 0;
    return u[0] < 0x80 ? 1 : utf8_seq_len(u, avail);
}

int epp_json_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Pass 1 (see the top of the file). Returns 0 or EPP_EINVAL with err filled. */
static int prescan(const unsigned char *s, size_t len, epp_json_error_t *err)
{
    size_t i = 0;
    while (i < len) {
        /* Fast path: eight bytes at a time while they are ASCII without a backslash. */
        while (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            uint64_t bs = w ^ (ONES * '\\');
            if ((w & HIGHS) || ((bs - ONES) & ~bs & HIGHS))
                break;
            i += 8;
        }
        if (i >= len)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c != '\\') {
                i++;
                continue;
            }
            if (i + 1 >= len || s[i + 1] != 'u') {
                i += 2; /* a one-character escape; yajl checks which */
                continue;
            }
            unsigned cp;
            if (i + 6 > len || hex4(s + i + 2, &cp)) {
                i += 2; /* malformed: yajl reports it */
                continue;
            }
            if (cp == 0) {
                set_error(err, EPP_EINVAL, "invalid_json", i,
                          "\\u0000 is not allowed in strings (at byte %zu)", i);
                return EPP_EINVAL;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                set_error(err, EPP_EINVAL, "invalid_json", i,
                          "lone low surrogate \\u%04x in string at byte %zu", cp, i);
                return EPP_EINVAL;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (i + 12 > len || s[i + 6] != '\\' || s[i + 7] != 'u' || hex4(s + i + 8, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    set_error(err, EPP_EINVAL, "invalid_json", i,
                              "lone high surrogate \\u%04x in string at byte %zu", cp, i);
                    return EPP_EINVAL;
                }
                i += 12;
                continue;
            }
            i += 6;
            continue;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (!n) {
            set_error(err, EPP_EINVAL, "invalid_json", i, "invalid UTF-8 at byte %zu", i);
            return EPP_EINVAL;
        }
        i += n;
    }
    return 0;
}

/* ---- the tree builder (yajl callbacks) ---- */

typedef struct {
    epp_json_value_t *value;
    size_t start;  /* index of its first child on the pending stack */
    size_t offset; /* input offset of its opening bracket */
} frame_t;

#define INLINE_FRAMES  32
#define INLINE_PENDING 64

typedef struct {
    epp_json_doc_t *doc;
    yajl_handle yh;
    size_t max_depth;
    frame_t *frames;
    size_t nframes, frames_cap;
    epp_json_member_t *pending;
    size_t npending, pending_cap;
    const char *key; /* the key of the next member of the innermost object */
    size_t key_len;
    epp_json_error_t *err;
    int failed; /* a callback stopped the parse and filled err */
    frame_t frames_inline[INLINE_FRAMES];
    epp_json_member_t pending_inline[INLINE_PENDING];
    /* yajl's own allocations (handle, lexer, buffers: about five per parse) come from here
     * while it lasts; see the yalloc functions below. */
    size_t pool_used;
    alignas(max_align_t) char pool[2048];
} builder_t;

/* ---- yajl allocation from the builder's pool ----
 *
 * A parse is short-lived, so yajl's allocations are served by a bump allocator in the builder
 * (on the caller's stack) and released all at once; only what does not fit goes to malloc.
 * Each pool block is preceded by its size, for realloc. */

#define POOL_HDR sizeof(max_align_t)

static int in_pool(const builder_t *b, const void *ptr)
{
    uintptr_t p = (uintptr_t)ptr, start = (uintptr_t)b->pool;
    return p >= start && p < start + sizeof b->pool;
}

static void *yalloc(void *ctx, size_t size)
{
    builder_t *b = ctx;
    size_t need = POOL_HDR + ((size + POOL_HDR - 1) & ~(POOL_HDR - 1));
    if (size && need <= sizeof b->pool - b->pool_used) {
        char *p = b->pool + b->pool_used + POOL_HDR;
        memcpy(p - POOL_HDR, &size, sizeof size);
        b->pool_used += need;
        return p;
    }
    return malloc(size ? size : 1);
}

static void *yrealloc(void *ctx, void *ptr, size_t size)
{
    builder_t *b = ctx;
    if (!ptr)
        return yalloc(ctx, size);
    if (!in_pool(b, ptr))
        return realloc(ptr, size);
    char *p = ptr;
    size_t old;
    memcpy(&old, p - POOL_HDR, sizeof old);
    if (size <= old)
        return ptr;
    size_t old_rounded = (old + POOL_HDR - 1) & ~(POOL_HDR - 1);
    size_t new_rounded = (size + POOL_HDR - 1) & ~(POOL_HDR - 1);
    if (p + old_rounded == b->pool + b->pool_used &&
        new_rounded - old_rounded <= sizeof b->pool - b->pool_used) {
        /* The last block grows in place. */
        b->pool_used += new_rounded - old_rounded;
        memcpy(p - POOL_HDR, &size, sizeof size);
        return ptr;
    }
    void *np = yalloc(ctx, size);
    if (np)
        memcpy(np, ptr, old);
    return np;
}

static void yfree(void *ctx, void *ptr)
{
    if (ptr && !in_pool(ctx, ptr))
        free(ptr);
}

static int fail_nomem(builder_t *b)
{
    set_error(b->err, EPP_ENOMEM, "invalid_json", yajl_get_bytes_consumed(b->yh),
              "out of memory while parsing JSON");
    b->failed = EPP_ENOMEM;
    return 0;
}

/* Grows one of the two stacks: the inline array first, then the heap. */
static int grow(void **arr, size_t *cap, size_t elem, void *inline_arr)
{
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p;
    if (*arr == inline_arr) {
        p = malloc(ncap * elem);
        if (p)
            memcpy(p, *arr, *cap * elem);
    } else {
        p = realloc(*arr, ncap * elem);
    }
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static epp_json_value_t *new_value(builder_t *b, epp_json_type_t type)
{
    epp_json_value_t *v = arena_alloc(b->doc, sizeof *v);
    if (!v)
        return NULL;
    v->type = type;
    v->depth = (unsigned)b->nframes + 1;
    v->raw_len = 0;
    return v;
}

/* Attaches v to the innermost open container, or makes it the root. */
static int attach(builder_t *b, epp_json_value_t *v)
{
    if (!b->nframes) {
        b->doc->root = v;
        return 1;
    }
    if (b->npending == b->pending_cap &&
        grow((void **)&b->pending, &b->pending_cap, sizeof *b->pending, b->pending_inline))
        return fail_nomem(b);
    epp_json_member_t *m = &b->pending[b->npending++];
    m->key = b->key;
    m->key_len = b->key_len;
    m->value = v;
    return 1;
}

static int cb_scalar(builder_t *b, epp_json_type_t type)
{
    epp_json_value_t *v = new_value(b, type);
    if (!v)
        return fail_nomem(b);
    return attach(b, v);
}

static int cb_null(void *ctx)
{
    return cb_scalar(ctx, EPP_JSON_NULL);
}

static int cb_boolean(void *ctx, int val)
{
    return cb_scalar(ctx, val ? EPP_JSON_TRUE : EPP_JSON_FALSE);
}

static int cb_text(builder_t *b, epp_json_type_t type, const unsigned char *s, size_t len)
{
    epp_json_value_t *v = new_value(b, type);
    char *text = v ? arena_strdup(b->doc, s, len) : NULL;
    if (!text)
        return fail_nomem(b);
    v->u.s.text = text;
    v->u.s.len = len;
    return attach(b, v);
}

static int cb_number(void *ctx, const char *s, size_t len)
{
    return cb_text(ctx, EPP_JSON_NUMBER, (const unsigned char *)s, len);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    return cb_text(ctx, EPP_JSON_STRING, s, len);
}

static int cb_key(void *ctx, const unsigned char *s, size_t len)
{
    builder_t *b = ctx;
    char *key = arena_strdup(b->doc, s, len);
    if (!key)
        return fail_nomem(b);
    b->key = key;
    b->key_len = len;
    return 1;
}

static int cb_open(builder_t *b, epp_json_type_t type)
{
    if (b->nframes + 1 > b->max_depth) {
        size_t off = yajl_get_bytes_consumed(b->yh);
        set_error(b->err, EPP_EINVAL, "too_deep", off ? off - 1 : 0,
                  "JSON nested deeper than %zu levels at byte %zu", b->max_depth,
                  off ? off - 1 : 0);
        b->failed = EPP_EINVAL;
        return 0;
    }
    epp_json_value_t *v = new_value(b, type);
    if (!v)
        return fail_nomem(b);
    if (type == EPP_JSON_OBJECT) {
        v->u.obj.members = NULL;
        v->u.obj.n = 0;
    } else {
        v->u.arr.items = NULL;
        v->u.arr.n = 0;
    }
    if (!attach(b, v))
        return 0;
    if (b->nframes == b->frames_cap &&
        grow((void **)&b->frames, &b->frames_cap, sizeof *b->frames, b->frames_inline))
        return fail_nomem(b);
    b->frames[b->nframes].value = v;
    b->frames[b->nframes].start = b->npending;
    /* yajl calls back right after the bracket, so the bytes consumed end with it. */
    b->frames[b->nframes].offset = yajl_get_bytes_consumed(b->yh) - 1;
    b->nframes++;
    return 1;
}

static int cb_start_map(void *ctx)
{
    return cb_open(ctx, EPP_JSON_OBJECT);
}

static int cb_start_array(void *ctx)
{
    return cb_open(ctx, EPP_JSON_ARRAY);
}

static int cb_close(void *ctx)
{
    builder_t *b = ctx;
    frame_t *f = &b->frames[b->nframes - 1];
    epp_json_value_t *v = f->value;
    size_t n = b->npending - f->start;
    epp_json_member_t *src = b->pending + f->start;
    if (n) {
        if (v->type == EPP_JSON_OBJECT) {
            epp_json_member_t *m = arena_alloc(b->doc, n * sizeof *m);
            if (!m)
                return fail_nomem(b);
            memcpy(m, src, n * sizeof *m);
            v->u.obj.members = m;
            v->u.obj.n = n;
        } else {
            epp_json_value_t **items = arena_alloc(b->doc, n * sizeof(epp_json_value_t *));
            if (!items)
                return fail_nomem(b);
            for (size_t i = 0; i < n; i++)
                items[i] = src[i].value;
            v->u.arr.items = items;
            v->u.arr.n = n;
        }
    }
    v->raw_len = yajl_get_bytes_consumed(b->yh) - f->offset;
    b->npending = f->start;
    b->nframes--;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_key,
    .yajl_end_map = cb_close,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_close,
};

/* Copies yajl's error text ("parse error: ...\n" or "lexical error: ...\n") without the prefix
 * and the newline, and adds the offset. */
static void yajl_error_to(builder_t *b, const unsigned char *buf, size_t len, int at_end)
{
    /* yajl_complete_parse() parses an empty chunk, which resets the consumed count. */
    size_t off = at_end ? len : yajl_get_bytes_consumed(b->yh);
    if (off > len)
        off = len;
    unsigned char *text = yajl_get_error(b->yh, 0, buf, len);
    const char *msg = text ? (const char *)text : "syntax error";
    const char *colon = strstr(msg, "error: ");
    if (colon)
        msg = colon + 7;
    size_t mlen = strcspn(msg, "\n");
    while (mlen && (msg[mlen - 1] == '.' || msg[mlen - 1] == ' '))
        mlen--;
    set_error(b->err, EPP_EINVAL, "invalid_json", off, "invalid JSON: %.*s at byte %zu",
              (int)(mlen > 100 ? 100 : mlen), msg, off);
    if (text)
        yajl_free_error(b->yh, text);
}

int epp_json_parse(const char *buf, size_t len, const epp_json_limits_t *limits,
                   epp_json_doc_t **docp, epp_json_error_t *err)
{
    *docp = NULL;
    size_t max_depth = limits && limits->max_depth ? limits->max_depth : DEFAULT_MAX_DEPTH;
    if (limits && limits->max_size && len > limits->max_size) {
        set_error(err, EPP_ETOOBIG, "too_large", limits->max_size,
                  "JSON document of %zu bytes exceeds the limit of %zu bytes", len,
                  limits->max_size);
        return EPP_ETOOBIG;
    }
    const unsigned char *in = (const unsigned char *)buf;
    int rc = prescan(in, len, err);
    if (rc)
        return rc;

    /* Nodes, member arrays and string copies rarely need more than twice the input. */
    size_t first = 2 * len + 256;
    epp_json_doc_t *doc = malloc(sizeof *doc + first);
    if (!doc) {
        set_error(err, EPP_ENOMEM, "invalid_json", 0, "out of memory while parsing JSON");
        return EPP_ENOMEM;
    }
    doc->root = NULL;
    doc->cur = doc->first;
    doc->end = doc->first + first;
    doc->extra = NULL;
    doc->next_chunk = first < 4096 ? 4096 : first;

    builder_t b;
    b.doc = doc;
    b.max_depth = max_depth;
    b.frames = b.frames_inline;
    b.frames_cap = INLINE_FRAMES;
    b.nframes = 0;
    b.pending = b.pending_inline;
    b.pending_cap = INLINE_PENDING;
    b.npending = 0;
    b.key = NULL;
    b.key_len = 0;
    b.err = err;
    b.failed = 0;
    b.pool_used = 0;
    yajl_alloc_funcs afs = {yalloc, yrealloc, yfree, &b};
    b.yh = yajl_alloc(&callbacks, &afs, &b);
    if (!b.yh) {
        epp_json_doc_destroy(doc);
        set_error(err, EPP_ENOMEM, "invalid_json", 0, "out of memory while parsing JSON");
        return EPP_ENOMEM;
    }
    /* yajl's defaults are what we want: UTF-8 validated, no comments, exactly one value, no
     * trailing garbage, no partial values. */
    int at_end = 0;
    yajl_status st = yajl_parse(b.yh, in, len);
    if (st == yajl_status_ok) {
        at_end = 1;
        st = yajl_complete_parse(b.yh);
    }
    if (st != yajl_status_ok) {
        if (b.failed)
            rc = b.failed;
        else {
            yajl_error_to(&b, in, len, at_end);
            rc = EPP_EINVAL;
        }
    } else if (!doc->root) {
        set_error(err, EPP_EINVAL, "invalid_json", len, "invalid JSON: empty document");
        rc = EPP_EINVAL;
    }
    yajl_free(b.yh);
    if (b.frames != b.frames_inline)
        free(b.frames);
    if (b.pending != b.pending_inline)
        free(b.pending);
    if (rc) {
        epp_json_doc_destroy(doc);
        return rc;
    }
    *docp = doc;
    return 0;
}

const epp_json_value_t *epp_json_get(const epp_json_value_t *obj, const char *key)
{
    if (!obj || obj->type != EPP_JSON_OBJECT)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = obj->u.obj.n; i-- > 0;) {
        const epp_json_member_t *m = &obj->u.obj.members[i];
        if (m->key_len == klen && memcmp(m->key, key, klen) == 0)
            return m->value;
    }
    return NULL;
}

/* ---- output ---- */

/* 0: copy as is; otherwise the character after the backslash ('u' for \u00XX). */
static const char escape_char[256] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't', [0x00] = 'u',
    [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u',  [0x05] = 'u', [0x06] = 'u',
    [0x07] = 'u', [0x0B] = 'u', [0x0E] = 'u', [0x0F] = 'u',  [0x10] = 'u', [0x11] = 'u',
    [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u',  [0x16] = 'u', [0x17] = 'u',
    [0x18] = 'u', [0x19] = 'u', [0x1A] = 'u', [0x1B] = 'u',  [0x1C] = 'u', [0x1D] = 'u',
    [0x1E] = 'u', [0x1F] = 'u', ['"'] = '"',  ['\\'] = '\\',
};

/* The number of leading bytes of s[0..len) that need no escape (none below 0x20, no '"', no
 * '\\'), tested eight at a time: strings are mostly plain, and this is the serialisers' inner
 * loop. Each word test is exact: (x - 0x2020..) & ~x & 0x8080.. is non-zero exactly when some
 * byte of x is below 0x20 (the bound being at most 0x80), and the same test with 0x0101.. on
 * x ^ c exactly when some byte equals c. */
static size_t plain_prefix(const char *s, size_t len)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t x, q, b;
        memcpy(&x, s + i, 8);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        if (((x - ones * 0x20) & ~x & highs) | ((q - ones) & ~q & highs) |
            ((b - ones) & ~b & highs))
            break;
    }
    while (i < len && !escape_char[(unsigned char)s[i]])
        i++;
    return i;
}

size_t epp_json_escape_byte(unsigned char c, char esc[6])
{
    static const char hex[] = "0123456789abcdef";
    char e = escape_char[c];
    if (e == 0)
        return 0;
    esc[0] = '\\';
    esc[1] = e;
    if (e != 'u')
        return 2;
    esc[2] = '0';
    esc[3] = '0';
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 15];
    return 6;
}

int epp_json_write_string(epp_buf_t *out, const char *s, size_t len)
{
    /* Room for the quotes and every byte unescaped; each escape makes room for its extra. */
    if (epp_buf_reserve(out, len + 2))
        return EPP_ENOMEM;
    char *d = out->data + out->len;
    *d++ = '"';
    size_t i = 0;
    for (;;) {
        size_t n = plain_prefix(s + i, len - i);
        memcpy(d, s + i, n);
        d += n;
        i += n;
        if (i == len)
            break;
        out->len = (size_t)(d - out->data);
        if (epp_buf_reserve(out, 6 + (len - i) + 1))
            return EPP_ENOMEM;
        d = out->data + out->len;
        d += epp_json_escape_byte((unsigned char)s[i++], d);
    }
    *d++ = '"';
    *d = '\0';
    out->len = (size_t)(d - out->data);
    return 0;
}

size_t epp_json_compact_size(const epp_json_value_t *v)
{
    size_t n = 0;
    switch (v->type) {
    case EPP_JSON_NULL:
    case EPP_JSON_TRUE:
        return 4;
    case EPP_JSON_FALSE:
        return 5;
    case EPP_JSON_NUMBER:
        return v->u.s.len;
    case EPP_JSON_STRING:
        n = v->u.s.len + 2;
        for (size_t i = 0; i < v->u.s.len; i++) {
            char e = escape_char[(unsigned char)v->u.s.text[i]];
            n += e == 0 ? 0 : e == 'u' ? 5 : 1;
        }
        return n;
    case EPP_JSON_ARRAY:
        n = 2 + (v->u.arr.n ? v->u.arr.n - 1 : 0);
        for (size_t i = 0; i < v->u.arr.n; i++)
            n += epp_json_compact_size(v->u.arr.items[i]);
        return n;
    case EPP_JSON_OBJECT:
        n = 2 + (v->u.obj.n ? v->u.obj.n - 1 : 0);
        for (size_t i = 0; i < v->u.obj.n; i++) {
            const epp_json_member_t *m = &v->u.obj.members[i];
            epp_json_value_t key;
            key.type = EPP_JSON_STRING;
            key.u.s.text = m->key;
            key.u.s.len = m->key_len;
            n += epp_json_compact_size(&key) + 1 + epp_json_compact_size(m->value);
        }
        return n;
    }
    return 0;
}

int epp_json_serialize(const epp_json_value_t *v, epp_buf_t *out)
{
    switch (v->type) {
    case EPP_JSON_NULL:
        return epp_buf_append(out, "null", 4);
    case EPP_JSON_FALSE:
        return epp_buf_append(out, "false", 5);
    case EPP_JSON_TRUE:
        return epp_buf_append(out, "true", 4);
    case EPP_JSON_NUMBER:
        return epp_buf_append(out, v->u.s.text, v->u.s.len);
    case EPP_JSON_STRING:
        return epp_json_write_string(out, v->u.s.text, v->u.s.len);
    case EPP_JSON_ARRAY:
        if (epp_buf_append_char(out, '['))
            return EPP_ENOMEM;
        for (size_t i = 0; i < v->u.arr.n; i++) {
            if ((i && epp_buf_append_char(out, ',')) || epp_json_serialize(v->u.arr.items[i], out))
                return EPP_ENOMEM;
        }
        return epp_buf_append_char(out, ']');
    case EPP_JSON_OBJECT:
        if (epp_buf_append_char(out, '{'))
            return EPP_ENOMEM;
        for (size_t i = 0; i < v->u.obj.n; i++) {
            const epp_json_member_t *m = &v->u.obj.members[i];
            if ((i && epp_buf_append_char(out, ',')) ||
                epp_json_write_string(out, m->key, m->key_len) || epp_buf_append_char(out, ':') ||
                epp_json_serialize(m->value, out))
                return EPP_ENOMEM;
        }
        return epp_buf_append_char(out, '}');
    }
    return EPP_EINVAL;
}
