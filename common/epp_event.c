/* epp_event: docs/contract.md §4's event rules over an epp_json tree, and the canonical form.
 *
 * Per event the work is one parse (epp_json), one pass over the top-level members, and copies
 * of the two strings and the re-serialised metadata into ev->storage, whose memory is kept
 * across parses when an epp_event_t is reused. */
#include "epp_event.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "epp_error.h"
#include "epp_time.h"

/* Epoch milliseconds for 9999-12-31T23:59:59.999Z: larger numbers are not timestamps. */
#define MAX_EPOCH_MS 253402300799999LL

static void set_err(epp_event_error_t *err, const char *code, const char *field, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

static void set_err(epp_event_error_t *err, const char *code, const char *field, const char *fmt,
                    ...)
{
    if (!err)
        return;
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* The length of at most max bytes of the UTF-8 string s that ends on a character boundary, so
 * that a truncated field name in an error message is still valid UTF-8. */
static size_t utf8_prefix(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

void epp_event_init(epp_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
}

void epp_event_clear(epp_event_t *ev)
{
    epp_buf_free(&ev->storage);
    epp_event_init(ev);
}

/* Resets everything but keeps the storage's memory for the next event. */
static void event_reset(epp_event_t *ev)
{
    epp_buf_t storage = ev->storage;
    epp_buf_reset(&storage);
    memset(ev, 0, sizeof *ev);
    ev->storage = storage;
}

/* 1 when s contains a C0 or C1 control character or DEL (s is valid UTF-8, so U+0080..U+009F
 * can only appear as 0xC2 0x80..0x9F). */
static int has_control(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7F)
            return 1;
        if (s[i] == 0xC2 && i + 1 < len && s[i + 1] <= 0x9F)
            return 1;
    }
    return 0;
}

static int check_name(const epp_json_value_t *v, const char *field, epp_event_error_t *err)
{
    if (!v) {
        set_err(err, "missing_field", field, "%s is required", field);
        return EPP_EINVAL;
    }
    if (v->type != EPP_JSON_STRING || v->u.s.len == 0 || v->u.s.len > EPP_EVENT_MAX_STRING) {
        set_err(err, "invalid_field", field, "%s must be a non-empty string of at most %d bytes",
                field, EPP_EVENT_MAX_STRING);
        return EPP_EINVAL;
    }
    if (has_control(v->u.s.text, v->u.s.len)) {
        set_err(err, "invalid_field", field, "%s must not contain control characters", field);
        return EPP_EINVAL;
    }
    return 0;
}

/* An RFC 3339 string, or (allow_ms) a JSON integer of epoch milliseconds. */
static int parse_instant(const epp_json_value_t *v, int allow_ms, int64_t *us)
{
    if (v->type == EPP_JSON_STRING)
        return epp_time_parse_rfc3339(v->u.s.text, v->u.s.len, us);
    if (v->type != EPP_JSON_NUMBER || !allow_ms)
        return EPP_EINVAL;
    /* JSON guarantees the syntax; we need digits only (no sign, fraction or exponent), and
     * at most 15 of them so the value cannot overflow before the range check. */
    const char *t = v->u.s.text;
    if (v->u.s.len > 15)
        return EPP_EINVAL;
    int64_t ms = 0;
    for (size_t i = 0; i < v->u.s.len; i++) {
        if (t[i] < '0' || t[i] > '9')
            return EPP_EINVAL;
        ms = ms * 10 + (t[i] - '0');
    }
    if (ms > MAX_EPOCH_MS)
        return EPP_EINVAL;
    *us = ms * 1000;
    return 0;
}

/* Depth of the deepest container under v, counting v as 1, capped at limit + 1. */
static unsigned max_depth(const epp_json_value_t *v, unsigned base, unsigned limit)
{
    unsigned rel = v->depth - base + 1;
    if (rel > limit)
        return rel;
    unsigned deepest = rel;
    if (v->type == EPP_JSON_OBJECT) {
        for (size_t i = 0; i < v->u.obj.n && deepest <= limit; i++) {
            const epp_json_value_t *c = v->u.obj.members[i].value;
            if (c->type == EPP_JSON_OBJECT || c->type == EPP_JSON_ARRAY) {
                unsigned d = max_depth(c, base, limit);
                if (d > deepest)
                    deepest = d;
            }
        }
    } else if (v->type == EPP_JSON_ARRAY) {
        for (size_t i = 0; i < v->u.arr.n && deepest <= limit; i++) {
            const epp_json_value_t *c = v->u.arr.items[i];
            if (c->type == EPP_JSON_OBJECT || c->type == EPP_JSON_ARRAY) {
                unsigned d = max_depth(c, base, limit);
                if (d > deepest)
                    deepest = d;
            }
        }
    }
    return deepest;
}

static int key_is(const epp_json_member_t *m, const char *name, size_t len)
{
    return m->key_len == len && memcmp(m->key, name, len) == 0;
}

#define KEY_IS(m, lit) key_is((m), (lit), sizeof(lit) - 1)

/* Appends the members as one compact JSON object. 0 or EPP_ENOMEM. */
static int write_members(epp_buf_t *out, const epp_json_member_t *m, size_t n)
{
    if (epp_buf_append_char(out, '{'))
        return EPP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((i && epp_buf_append_char(out, ',')) ||
            epp_json_write_string(out, m[i].key, m[i].key_len) || epp_buf_append_char(out, ':') ||
            epp_json_serialize(m[i].value, out))
            return EPP_ENOMEM;
    }
    return epp_buf_append_char(out, '}') ? EPP_ENOMEM : 0;
}

/* Copies everything the event points to into its own storage: user_id, event_name and the
 * metadata text (metadata, else the object of the n members, else {}), each NUL-terminated,
 * and applies the metadata size limit. Pointers are set once the buffer stops moving. The
 * other fields of ev are left for the caller. */
static int event_store(epp_event_t *ev, const epp_json_value_t *user_id,
                       const epp_json_value_t *event_name, const epp_json_value_t *metadata,
                       const epp_json_member_t *members, size_t n, epp_event_error_t *err)
{
    epp_buf_t *st = &ev->storage;
    size_t uid_len = user_id->u.s.len, name_len = event_name->u.s.len;
    if (epp_buf_reserve(st, uid_len + name_len + 3 + 64))
        goto nomem;
    size_t uid_off = st->len;
    epp_buf_append(st, user_id->u.s.text, uid_len + 1);
    size_t name_off = st->len;
    epp_buf_append(st, event_name->u.s.text, name_len + 1);
    size_t meta_off = st->len;
    if (metadata) {
        if (epp_json_serialize(metadata, st))
            goto nomem;
    } else if (members) {
        if (write_members(st, members, n))
            goto nomem;
    } else if (epp_buf_append(st, "{}", 2)) {
        goto nomem;
    }
    size_t meta_len = st->len - meta_off;
    if (meta_len > EPP_EVENT_MAX_METADATA) {
        set_err(err, "payload_too_large", "metadata",
                "metadata is %zu bytes of compact JSON, more than the limit of %zu", meta_len,
                EPP_EVENT_MAX_METADATA);
        epp_buf_reset(st);
        return EPP_ETOOBIG;
    }
    ev->user_id = st->data + uid_off;
    ev->user_id_len = uid_len;
    ev->event_name = st->data + name_off;
    ev->event_name_len = name_len;
    ev->metadata = st->data + meta_off;
    ev->metadata_len = meta_len;
    return 0;

nomem:
    set_err(err, "invalid_json", "", "out of memory");
    epp_buf_reset(st);
    return EPP_ENOMEM;
}

int epp_event_from_value(const epp_json_value_t *v, epp_event_mode_t mode, int64_t now_us,
                         epp_event_t *ev, epp_event_error_t *err)
{
    event_reset(ev);
    if (!v || v->type != EPP_JSON_OBJECT) {
        set_err(err, "invalid_json", "", "event must be a JSON object");
        return EPP_EINVAL;
    }
    const int kafka = mode == EPP_EVENT_FROM_KAFKA;
    const epp_json_value_t *event_id = NULL, *user_id = NULL, *event_name = NULL;
    const epp_json_value_t *metadata = NULL, *timestamp = NULL, *received_at = NULL;

    /* Duplicate members: the last one wins, as in jsonb and epp_json_get(). */
    for (size_t i = 0; i < v->u.obj.n; i++) {
        const epp_json_member_t *m = &v->u.obj.members[i];
        if (KEY_IS(m, "user_id"))
            user_id = m->value;
        else if (KEY_IS(m, "event_name"))
            event_name = m->value;
        else if (KEY_IS(m, "metadata"))
            metadata = m->value;
        else if (KEY_IS(m, "timestamp"))
            timestamp = m->value;
        else if (KEY_IS(m, "event_id"))
            event_id = m->value;
        else if (kafka && KEY_IS(m, "received_at"))
            received_at = m->value;
        else {
            size_t n = utf8_prefix(m->key, m->key_len, 60);
            set_err(err, "unknown_field", "", "unknown field \"%.*s\"%s (expected %s)", (int)n,
                    m->key, n < m->key_len ? "..." : "",
                    kafka ? "event_id, user_id, event_name, timestamp, received_at, metadata"
                          : "event_id, user_id, event_name, metadata, timestamp");
            if (err)
                snprintf(err->field, sizeof err->field, "%.*s", (int)utf8_prefix(m->key, n, 63),
                         m->key);
            return EPP_EINVAL;
        }
    }

    if (event_id) {
        if (event_id->type != EPP_JSON_STRING ||
            epp_uuid_parse(event_id->u.s.text, event_id->u.s.len, &ev->event_id)) {
            set_err(err, "invalid_field", "event_id",
                    "event_id must be a UUID string (8-4-4-4-12 hex digits)");
            return EPP_EINVAL;
        }
    } else if (kafka) {
        set_err(err, "missing_field", "event_id", "event_id is required");
        return EPP_EINVAL;
    }

    int rc = check_name(user_id, "user_id", err);
    if (!rc)
        rc = check_name(event_name, "event_name", err);
    if (rc)
        return rc;

    if (kafka) {
        if (!received_at) {
            set_err(err, "missing_field", "received_at", "received_at is required");
            return EPP_EINVAL;
        }
        if (parse_instant(received_at, 0, &ev->received_at_us)) {
            set_err(err, "invalid_field", "received_at",
                    "received_at must be an RFC 3339 date-time string");
            return EPP_EINVAL;
        }
    } else {
        ev->received_at_us = now_us;
    }

    if (timestamp) {
        if (parse_instant(timestamp, 1, &ev->timestamp_us)) {
            set_err(err, "invalid_field", "timestamp",
                    "timestamp must be an RFC 3339 date-time string or integer epoch "
                    "milliseconds between 1970 and 9999");
            return EPP_EINVAL;
        }
        if (ev->timestamp_us - ev->received_at_us > EPP_EVENT_MAX_FUTURE_US) {
            set_err(err, "invalid_field", "timestamp", "timestamp is more than 24 h %s",
                    kafka ? "after received_at" : "in the future");
            return EPP_EINVAL;
        }
    } else if (kafka) {
        set_err(err, "missing_field", "timestamp", "timestamp is required");
        return EPP_EINVAL;
    } else {
        ev->timestamp_us = now_us;
    }

    if (metadata) {
        if (metadata->type != EPP_JSON_OBJECT) {
            set_err(err, "invalid_field", "metadata", "metadata must be a JSON object");
            return EPP_EINVAL;
        }
        if (max_depth(metadata, metadata->depth, EPP_EVENT_MAX_DEPTH) > EPP_EVENT_MAX_DEPTH) {
            set_err(err, "invalid_field", "metadata", "metadata nesting exceeds %d levels",
                    EPP_EVENT_MAX_DEPTH);
            return EPP_EINVAL;
        }
    } else if (kafka) {
        set_err(err, "missing_field", "metadata", "metadata is required");
        return EPP_EINVAL;
    }

    rc = event_store(ev, user_id, event_name, metadata, NULL, 0, err);
    if (rc)
        return rc;
    if (!event_id) {
        epp_uuid_v7(&ev->event_id);
        ev->event_id_generated = 1;
    }
    return 0;
}

int epp_event_instant(const epp_json_value_t *v, int64_t *us)
{
    return parse_instant(v, 1, us);
}

int epp_event_from_parts(const epp_event_parts_t *p, int64_t now_us, epp_event_t *ev,
                         epp_event_error_t *err)
{
    event_reset(ev);
    int rc = check_name(p->user_id, p->user_id_field, err);
    if (!rc)
        rc = check_name(p->event_name, p->event_name_field, err);
    if (rc)
        return rc;
    if (p->timestamp_us < 0 || p->timestamp_us > MAX_EPOCH_MS * 1000) {
        set_err(err, "invalid_field", p->timestamp_field,
                "%s is outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z",
                p->timestamp_field);
        return EPP_EINVAL;
    }
    if (p->timestamp_us - now_us > EPP_EVENT_MAX_FUTURE_US) {
        set_err(err, "invalid_field", p->timestamp_field, "%s is more than 24 h in the future",
                p->timestamp_field);
        return EPP_EINVAL;
    }
    for (size_t i = 0; i < p->metadata_n; i++) {
        const epp_json_value_t *v = p->metadata[i].value;
        /* The metadata object is level 1, so its members' values are level 2. */
        if (max_depth(v, v->depth - 1, EPP_EVENT_MAX_DEPTH) > EPP_EVENT_MAX_DEPTH) {
            set_err(err, "invalid_field", p->metadata[i].key, "%s nesting exceeds %d levels",
                    p->metadata[i].key, EPP_EVENT_MAX_DEPTH - 1);
            return EPP_EINVAL;
        }
    }
    rc = event_store(ev, p->user_id, p->event_name, NULL, p->metadata, p->metadata_n, err);
    if (rc)
        return rc;
    ev->received_at_us = now_us;
    ev->timestamp_us = p->timestamp_us;
    if (p->event_id) {
        ev->event_id = *p->event_id;
    } else {
        epp_uuid_v7(&ev->event_id);
        ev->event_id_generated = 1;
    }
    return 0;
}

int epp_event_parse(const char *buf, size_t len, epp_event_mode_t mode, int64_t now_us,
                    epp_event_t *ev, epp_event_error_t *err)
{
    /* The document limit is the metadata limit plus the event object around it, so absurdly
     * deep input stops early instead of building a tree. */
    epp_json_limits_t limits = {.max_depth = EPP_EVENT_MAX_DEPTH + 1, .max_size = 0};
    epp_json_doc_t *doc = NULL;
    epp_json_error_t jerr;
    int rc = epp_json_parse(buf, len, &limits, &doc, &jerr);
    if (rc) {
        event_reset(ev);
        size_t i = 0;
        while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r'))
            i++;
        if (rc == EPP_EINVAL && strcmp(jerr.kind, "too_deep") == 0) {
            /* Nesting is only legal inside metadata, so that is where it went too deep
             * (unless the body is not even an object). */
            if (i < len && buf[i] == '{')
                set_err(err, "invalid_field", "metadata", "metadata nesting exceeds %d levels",
                        EPP_EVENT_MAX_DEPTH);
            else
                set_err(err, "invalid_json", "", "event must be a JSON object");
        } else {
            set_err(err, "invalid_json", "", "%s", jerr.message);
        }
        return rc == EPP_ENOMEM ? EPP_ENOMEM : EPP_EINVAL;
    }
    rc = epp_event_from_value(epp_json_root(doc), mode, now_us, ev, err);
    epp_json_doc_destroy(doc);
    return rc;
}

int epp_event_serialize(const epp_event_t *ev, epp_buf_t *out)
{
    char id[EPP_UUID_STRLEN + 1];
    char ts[EPP_TIME_BUFSZ], ra[EPP_TIME_BUFSZ];
    epp_uuid_format(&ev->event_id, id);
    size_t ts_len = epp_time_format(ev->timestamp_us, ts);
    size_t ra_len = epp_time_format(ev->received_at_us, ra);
    const char *meta = ev->metadata ? ev->metadata : "{}";
    size_t meta_len = ev->metadata ? ev->metadata_len : 2;
    if (epp_buf_reserve(out, 128 + ev->user_id_len + ev->event_name_len + meta_len))
        return EPP_ENOMEM;
    if (epp_buf_append(out, "{\"event_id\":\"", 13) || epp_buf_append(out, id, EPP_UUID_STRLEN) ||
        epp_buf_append(out, "\",\"user_id\":", 12) ||
        epp_json_write_string(out, ev->user_id, ev->user_id_len) ||
        epp_buf_append(out, ",\"event_name\":", 14) ||
        epp_json_write_string(out, ev->event_name, ev->event_name_len) ||
        epp_buf_append(out, ",\"timestamp\":\"", 14) || epp_buf_append(out, ts, ts_len) ||
        epp_buf_append(out, "\",\"received_at\":\"", 17) || epp_buf_append(out, ra, ra_len) ||
        epp_buf_append(out, "\",\"metadata\":", 13) || epp_buf_append(out, meta, meta_len) ||
        epp_buf_append_char(out, '}'))
        return EPP_ENOMEM;
    return 0;
}
