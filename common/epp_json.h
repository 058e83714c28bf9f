/* epp_json: JSON over yajl, with the limits docs/contract.md §4 sets, behind one module.
 *
 * Parsing builds a small read-only tree in an arena owned by an epp_json_doc_t. Numbers keep
 * their source text exactly (12345678901234567890 and 0.1 never pass through a double).
 * Strings are decoded (escapes resolved) and are guaranteed to be something Postgres jsonb can
 * hold: valid UTF-8, no U+0000, no lone surrogate escapes -- otherwise the parse fails, so such
 * strings are refused at the edge instead of being discovered later by the consumer.
 *
 * Thread-safety: a doc is used by one thread at a time; distinct docs are independent. */
#ifndef EPP_JSON_H
#define EPP_JSON_H

#include <stddef.h>

#include "epp_buf.h"

typedef enum {
    EPP_JSON_NULL,
    EPP_JSON_FALSE,
    EPP_JSON_TRUE,
    EPP_JSON_NUMBER,
    EPP_JSON_STRING,
    EPP_JSON_ARRAY,
    EPP_JSON_OBJECT,
} epp_json_type_t;

typedef struct epp_json_value epp_json_value_t;

typedef struct {
    const char *key; /* decoded, NUL-terminated (no embedded NULs by construction) */
    size_t key_len;
    epp_json_value_t *value;
} epp_json_member_t;

struct epp_json_value {
    epp_json_type_t type;
    /* Nesting depth: the root is 1, its children 2, ... */
    unsigned depth;
    /* ARRAY, OBJECT: bytes of input from the opening bracket to the closing one, which bounds
     * epp_json_compact_size() from above without walking the value (0: not known, e.g. for a
     * value not made by epp_json_parse). */
    size_t raw_len;
    union {
        struct {
            const char *text; /* NUMBER: source text; STRING: decoded UTF-8; NUL-terminated */
            size_t len;
        } s;
        struct {
            epp_json_value_t **items;
            size_t n;
        } arr;
        struct {
            epp_json_member_t *members; /* in source order; duplicates kept */
            size_t n;
        } obj;
    } u;
};

typedef struct {
    size_t max_depth; /* 0: no limit beyond the parser's own (yajl's is 128) */
    size_t max_size;  /* bytes of input; 0: no limit */
} epp_json_limits_t;

typedef struct {
    /* EPP_EINVAL (syntax, encoding, depth) or EPP_ETOOBIG (size). */
    int code;
    /* "invalid_json": syntax or encoding; "too_deep": depth limit; "too_large": size limit. */
    const char *kind;
    char message[160]; /* human-readable, e.g. "invalid UTF-8 in string at byte 17" */
    size_t offset;     /* byte offset in the input, where known */
} epp_json_error_t;

typedef struct epp_json_doc epp_json_doc_t;

/* Parses buf[0..len) as exactly one JSON value (whitespace around it allowed).
 * On success *doc receives a new document (caller destroys). On failure returns a negative
 * code, fills err (may be NULL) and leaves *doc NULL. */
int epp_json_parse(const char *buf, size_t len, const epp_json_limits_t *limits,
                   epp_json_doc_t **doc, epp_json_error_t *err);

/* The root value; borrowed until epp_json_doc_destroy(). */
const epp_json_value_t *epp_json_root(const epp_json_doc_t *doc);

void epp_json_doc_destroy(epp_json_doc_t *doc);

/* The last member named key (JSON objects keep the last duplicate, as jsonb does), or NULL. */
const epp_json_value_t *epp_json_get(const epp_json_value_t *obj, const char *key);

/* Appends v as compact JSON: no whitespace, members in source order, numbers in their source
 * text, strings re-escaped by epp_json_write_string(). 0 or EPP_ENOMEM. */
int epp_json_serialize(const epp_json_value_t *v, epp_buf_t *out);

/* The number of bytes epp_json_serialize() would append for v, without writing them. */
size_t epp_json_compact_size(const epp_json_value_t *v);

/* Appends s (UTF-8, len bytes) as a quoted JSON string: escapes '"', '\\', and control
 * characters (\n, \t, ..., \u00XX); everything else is copied as UTF-8. 0 or EPP_ENOMEM. The
 * JSON string writer of every epp program (HTTP error bodies, events, spans, tools). */
int epp_json_write_string(epp_buf_t *out, const char *s, size_t len);

/* The escape epp_json_write_string writes for byte c: into esc (at most 6 bytes, no NUL), and its
 * length returned; 0 when c stands for itself. For writers with their own buffer (the logger). */
size_t epp_json_escape_byte(unsigned char c, char esc[6]);

/* Length of the well-formed UTF-8 sequence at s (at most avail bytes): 1 for an ASCII byte
 * (NUL included), 2-4 for a valid multi-byte sequence, 0 when the bytes are not one (truncated,
 * overlong, a surrogate, or beyond U+10FFFF). The one UTF-8 decoder of libepp. */
size_t epp_json_utf8_seq(const char *s, size_t avail);

/* 1 when s[0..len) is valid UTF-8 with no NUL and no surrogate code points; else 0. */
int epp_json_utf8_valid(const char *s, size_t len);

#endif
