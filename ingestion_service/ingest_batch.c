/* Request bodies into validated events. See ingest_batch.h for the contract. */
#include "ingest_batch.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "epp_error.h"
#include "epp_gzip.h"
#include "epp_json.h"

void ingest_fail_set(ingest_fail_t *fail, unsigned status, const char *code, const char *field,
                     const char *fmt, ...)
{
    va_list ap;
    fail->status = status;
    fail->code = code;
    snprintf(fail->field, sizeof fail->field, "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(fail->message, sizeof fail->message, fmt, ap);
    va_end(ap);
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Matches token (case-insensitive) at p and returns the position after it, or NULL. */
static const char *match_token(const char *p, const char *end, const char *token)
{
    size_t n = strlen(token);
    if ((size_t)(end - p) < n || strncasecmp(p, token, n) != 0)
        return NULL;
    return p + n;
}

ingest_media_t ingest_media_type(const char *content_type)
{
    if (!content_type)
        return INGEST_MEDIA_OTHER;
    const char *p = content_type, *end = content_type + strlen(content_type), *q;
    ingest_media_t media;
    p = skip_ws(p, end);
    if ((q = match_token(p, end, "application/json")) != NULL)
        media = INGEST_MEDIA_JSON;
    else if ((q = match_token(p, end, "application/x-ndjson")) != NULL ||
             (q = match_token(p, end, "application/ndjson")) != NULL)
        media = INGEST_MEDIA_NDJSON;
    else if ((q = match_token(p, end, "text/plain")) != NULL)
        media = INGEST_MEDIA_TEXT;
    else
        return INGEST_MEDIA_OTHER;
    p = skip_ws(q, end);
    if (p == end)
        return media;
    /* One optional parameter, and it must say UTF-8: JSON text is UTF-8 (RFC 8259). */
    if (*p != ';')
        return INGEST_MEDIA_OTHER;
    p = skip_ws(p + 1, end);
    if ((q = match_token(p, end, "charset=")) == NULL)
        return INGEST_MEDIA_OTHER;
    p = q;
    int quoted = p < end && *p == '"';
    p += quoted;
    if ((q = match_token(p, end, "utf-8")) == NULL && (q = match_token(p, end, "utf8")) == NULL)
        return INGEST_MEDIA_OTHER;
    p = q;
    if (quoted) {
        if (p == end || *p != '"')
            return INGEST_MEDIA_OTHER;
        p++;
    }
    p = skip_ws(p, end);
    if (p < end && *p == ';') /* a trailing empty parameter list is harmless */
        p = skip_ws(p + 1, end);
    return p == end ? media : INGEST_MEDIA_OTHER;
}

int ingest_body_decode(const char *body, size_t len, const char *content_encoding, size_t max_bytes,
                       epp_buf_t *scratch, const char **out, size_t *out_len, ingest_fail_t *fail)
{
    const char *enc = content_encoding;
    if (enc) {
        const char *end = enc + strlen(enc);
        enc = skip_ws(enc, end);
        while (end > enc && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == enc || ((size_t)(end - enc) == 8 && strncasecmp(enc, "identity", 8) == 0)) {
            enc = NULL;
        } else if (!(((size_t)(end - enc) == 4 && strncasecmp(enc, "gzip", 4) == 0) ||
                     ((size_t)(end - enc) == 6 && strncasecmp(enc, "x-gzip", 6) == 0))) {
            ingest_fail_set(fail, 415, "unsupported_media_type", NULL,
                            "Content-Encoding must be gzip or identity");
            return EPP_EUNSUPP;
        }
    }
    if (!enc) {
        if (len > max_bytes) {
            ingest_fail_set(fail, 413, "payload_too_large", NULL, "request body exceeds %zu bytes",
                            max_bytes);
            return EPP_ETOOBIG;
        }
        *out = body;
        *out_len = len;
        return 0;
    }
    epp_buf_reset(scratch);
    int rc = epp_gzip_inflate(body, len, max_bytes, scratch);
    if (rc == EPP_ETOOBIG) {
        ingest_fail_set(fail, 413, "payload_too_large", NULL,
                        "decompressed request body exceeds %zu bytes", max_bytes);
        return rc;
    }
    if (rc < 0) {
        ingest_fail_set(fail, 400, "invalid_encoding", NULL, "request body is not valid gzip");
        return rc;
    }
    *out = scratch->data ? scratch->data : "";
    *out_len = scratch->len;
    return 0;
}

unsigned ingest_event_error_status(int rc)
{
    return rc == EPP_ETOOBIG ? 413 : rc == EPP_ENOMEM ? 503 : 400;
}

/* A blank NDJSON line holds only whitespace (a trailing \r included). */
static int line_blank(const char *p, const char *end)
{
    for (; p < end; p++)
        if (!isspace((unsigned char)*p))
            return 0;
    return 1;
}

static int parse_ndjson(const char *body, size_t len, size_t max_events, int64_t now_us,
                        const ingest_batch_visitor_t *vis, ingest_fail_t *fail)
{
    const char *end = body + len;
    size_t n = 0;
    for (const char *p = body; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (!line_blank(p, le) && ++n > max_events) {
            ingest_fail_set(fail, 413, "payload_too_large", NULL,
                            "a batch holds at most %zu events", max_events);
            return EPP_ETOOBIG;
        }
        p = nl ? nl + 1 : end;
    }
    if (n == 0) {
        ingest_fail_set(fail, 400, "invalid_field", NULL, "the batch holds no events");
        return EPP_EINVAL;
    }
    int rc = vis->begin(n, vis->ud);
    if (rc < 0)
        return rc;
    epp_event_t ev;
    epp_event_error_t err;
    epp_event_init(&ev);
    size_t i = 0;
    for (const char *p = body; p < end && i < n && rc == 0;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (!line_blank(p, le)) {
            int erc =
                epp_event_parse(p, (size_t)(le - p), EPP_EVENT_FROM_CLIENT, now_us, &ev, &err);
            rc = vis->event(i++, erc, &ev, &err, vis->ud);
        }
        p = nl ? nl + 1 : end;
    }
    epp_event_clear(&ev);
    return rc;
}

int ingest_body_json(const char *body, size_t len, epp_json_doc_t **doc, ingest_fail_t *fail)
{
    /* No depth limit beyond the parser's own: an event whose metadata is too deep is then
     * rejected on its own instead of failing its whole batch. */
    epp_json_limits_t limits = {.max_depth = 0, .max_size = 0};
    epp_json_error_t jerr = {0};
    int rc = epp_json_parse(body, len, &limits, doc, &jerr);
    if (rc == EPP_ENOMEM)
        ingest_fail_set(fail, 503, "out_of_memory", NULL, "out of memory");
    else if (rc < 0)
        ingest_fail_set(fail, 400, "invalid_json", NULL, "%s", jerr.message);
    return rc;
}

static int parse_json(const char *body, size_t len, size_t max_events, int64_t now_us,
                      const ingest_batch_visitor_t *vis, ingest_fail_t *fail)
{
    epp_json_doc_t *doc = NULL;
    int rc = ingest_body_json(body, len, &doc, fail);
    if (rc < 0)
        return rc;
    const epp_json_value_t *root = epp_json_root(doc), *arr = root;
    if (root->type == EPP_JSON_OBJECT) {
        arr = epp_json_get(root, "events");
        if (!arr || root->u.obj.n != 1) {
            ingest_fail_set(fail, 400, arr ? "unknown_field" : "missing_field", "events",
                            "a batch object must have exactly one member, \"events\"");
            epp_json_doc_destroy(doc);
            return EPP_EINVAL;
        }
    }
    if (arr->type != EPP_JSON_ARRAY) {
        ingest_fail_set(fail, 400, "invalid_json", arr == root ? NULL : "events",
                        "a batch is a JSON array of events, {\"events\": [...]}, or NDJSON");
        epp_json_doc_destroy(doc);
        return EPP_EINVAL;
    }
    size_t n = arr->u.arr.n;
    if (n > max_events) {
        ingest_fail_set(fail, 413, "payload_too_large", NULL, "a batch holds at most %zu events",
                        max_events);
        epp_json_doc_destroy(doc);
        return EPP_ETOOBIG;
    }
    if (n == 0) {
        ingest_fail_set(fail, 400, "invalid_field", NULL, "the batch holds no events");
        epp_json_doc_destroy(doc);
        return EPP_EINVAL;
    }
    rc = vis->begin(n, vis->ud);
    epp_event_t ev;
    epp_event_error_t err;
    epp_event_init(&ev);
    for (size_t i = 0; i < n && rc == 0; i++) {
        int erc =
            epp_event_from_value(arr->u.arr.items[i], EPP_EVENT_FROM_CLIENT, now_us, &ev, &err);
        rc = vis->event(i, erc, &ev, &err, vis->ud);
    }
    epp_event_clear(&ev);
    epp_json_doc_destroy(doc);
    return rc;
}

int ingest_batch_parse(const char *body, size_t len, ingest_media_t media, size_t max_events,
                       int64_t now_us, const ingest_batch_visitor_t *visitor, ingest_fail_t *fail)
{
    if (media == INGEST_MEDIA_NDJSON)
        return parse_ndjson(body, len, max_events, now_us, visitor, fail);
    return parse_json(body, len, max_events, now_us, visitor, fail);
}
