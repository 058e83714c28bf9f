/* Segment Tracking API bodies into events. See ingest_segment.h for the contract and
 * docs/segment.md for the mapping. */
#include "ingest_segment.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "epp_error.h"
#include "epp_json.h"
#include "epp_uuid.h"

/* The members a metadata object can have (ingest_segment.h lists them). */
#define MAX_META 12

static const char *const kind_names[] = {
    "batch", "track", "identify", "page", "screen", "group", "alias",
};

const char *ingest_segment_kind_name(ingest_segment_kind_t kind)
{
    return kind_names[kind];
}

/* The type of a batch message, from its "type" string; BATCH when it names none of them. */
static ingest_segment_kind_t kind_of(const epp_json_value_t *v)
{
    if (!v || v->type != EPP_JSON_STRING)
        return INGEST_SEGMENT_BATCH;
    for (int k = INGEST_SEGMENT_TRACK; k <= INGEST_SEGMENT_ALIAS; k++)
        if (strcmp(v->u.s.text, kind_names[k]) == 0) /* text is NUL-terminated, NUL-free */
            return (ingest_segment_kind_t)k;
    return INGEST_SEGMENT_BATCH;
}

/* A JSON string value holding text (borrowed), for the values this file makes up. */
static epp_json_value_t string_value(const char *text, size_t len)
{
    epp_json_value_t v;
    memset(&v, 0, sizeof v);
    v.type = EPP_JSON_STRING;
    v.depth = 1;
    v.u.s.text = text;
    v.u.s.len = len;
    return v;
}

/* INGEST_SEGMENT_NAMESPACE in bytes (the UUIDv5 ids test_ingest_segment expects check it). */
static const epp_uuid_t segment_namespace = {{0xc3, 0xc9, 0x57, 0x4d, 0x16, 0x2e, 0x54, 0x3f, 0xbb,
                                              0x73, 0x40, 0x0f, 0x86, 0xb3, 0x51, 0xf4}};

/* What the whole request shares. */
typedef struct {
    const epp_json_value_t *sent_at; /* the batch's sentAt (NULL: none) */
    int64_t sent_at_us;              /* its time, parsed once for the whole batch */
    int sent_at_bad;                 /* it is no time: the messages that use it are refused */
    const epp_json_value_t *context; /* the batch's context object (NULL: none) */
    epp_uuid_t ns;
    int measure; /* the body is larger than one message may be: measure each */
    int64_t now_us;
} seg_ctx_t;

/* One message's members (the last duplicate wins, as in jsonb). */
typedef struct {
    const epp_json_value_t *type, *event, *user_id, *anonymous_id, *message_id, *timestamp,
        *original_timestamp, *sent_at, *properties, *traits, *context, *name, *category, *group_id,
        *previous_id;
} seg_msg_t;

/* A JSON null counts as absent everywhere. */
static const epp_json_value_t *present(const epp_json_value_t *v)
{
    return v && v->type != EPP_JSON_NULL ? v : NULL;
}

static void scan(const epp_json_value_t *obj, seg_msg_t *m)
{
#define FIELD(name, member)                                                                        \
    {                                                                                              \
        (name), sizeof(name) - 1, offsetof(seg_msg_t, member)                                      \
    }
    static const struct {
        const char *name;
        size_t len;
        size_t off;
    } fields[] = {
        FIELD("type", type),
        FIELD("event", event),
        FIELD("userId", user_id),
        FIELD("anonymousId", anonymous_id),
        FIELD("messageId", message_id),
        FIELD("timestamp", timestamp),
        FIELD("originalTimestamp", original_timestamp),
        FIELD("sentAt", sent_at),
        FIELD("properties", properties),
        FIELD("traits", traits),
        FIELD("context", context),
        FIELD("name", name),
        FIELD("category", category),
        FIELD("groupId", group_id),
        FIELD("previousId", previous_id),
    };
#undef FIELD
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < obj->u.obj.n; i++) {
        const epp_json_member_t *mem = &obj->u.obj.members[i];
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
            if (mem->key_len == fields[f].len &&
                memcmp(mem->key, fields[f].name, fields[f].len) == 0) {
                *(const epp_json_value_t **)((char *)m + fields[f].off) = present(mem->value);
                break;
            }
        }
    }
}

static int refuse(epp_event_error_t *err, const char *code, const char *field, const char *msg)
{
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field);
    snprintf(err->message, sizeof err->message, "%s", msg);
    return EPP_EINVAL;
}

/* An id (userId, anonymousId): a non-empty string as is, a number as its text (some SDKs send
 * numeric ids); NULL when absent or "". *bad is set for any other type. */
static const epp_json_value_t *id_of(const epp_json_value_t *v, epp_json_value_t *tmp, int *bad)
{
    if (!v)
        return NULL;
    if (v->type == EPP_JSON_STRING)
        return v->u.s.len ? v : NULL;
    if (v->type == EPP_JSON_NUMBER) {
        *tmp = string_value(v->u.s.text, v->u.s.len);
        return tmp;
    }
    *bad = 1;
    return NULL;
}

/* The time a message happened: the client's time corrected by the client's clock offset
 * (receivedAt - sentAt), as Segment does. */
static int message_time(const seg_ctx_t *c, const seg_msg_t *m, int64_t *ts, epp_event_error_t *err,
                        const epp_json_value_t **client, const epp_json_value_t **sent)
{
    *client = m->original_timestamp ? m->original_timestamp : m->timestamp;
    *sent = m->sent_at ? m->sent_at : c->sent_at;
    int64_t client_us = 0, sent_us = c->sent_at_us;
    if (*client && epp_event_instant(*client, &client_us) < 0)
        return refuse(err, "invalid_field",
                      m->original_timestamp ? "originalTimestamp" : "timestamp",
                      "timestamps must be RFC 3339 date-time strings or integer epoch "
                      "milliseconds between 1970 and 9999");
    if (m->sent_at ? epp_event_instant(m->sent_at, &sent_us) < 0 : *sent && c->sent_at_bad)
        return refuse(err, "invalid_field", "sentAt",
                      "sentAt must be an RFC 3339 date-time string or integer epoch milliseconds "
                      "between 1970 and 9999");
    if (!*client)
        *ts = c->now_us;
    else if (!*sent)
        *ts = client_us;
    else
        *ts = client_us + (c->now_us - sent_us);
    return 0;
}

static void meta_add(epp_json_member_t *meta, size_t *n, const char *key,
                     const epp_json_value_t *value)
{
    if (!value)
        return;
    meta[*n].key = key;
    meta[*n].key_len = strlen(key);
    meta[*n].value = (epp_json_value_t *)value;
    (*n)++;
}

/* One message into ev. *mid receives its string messageId (for the reply) before anything can
 * refuse it. */
static int message_event(seg_ctx_t *c, const epp_json_value_t *v, ingest_segment_kind_t kind,
                         epp_event_t *ev, epp_event_error_t *err, const char **mid, size_t *mid_len)
{
    static const epp_json_value_t empty_object = {.type = EPP_JSON_OBJECT, .depth = 1};
    *mid = NULL;
    *mid_len = 0;
    if (v->type != EPP_JSON_OBJECT)
        return refuse(err, "invalid_json", "", "a message must be a JSON object");
    seg_msg_t m;
    scan(v, &m);
    if (m.message_id && m.message_id->type == EPP_JSON_STRING) {
        *mid = m.message_id->u.s.text;
        *mid_len = m.message_id->u.s.len;
    }
    if (kind == INGEST_SEGMENT_BATCH) {
        kind = kind_of(m.type);
        if (kind == INGEST_SEGMENT_BATCH)
            return refuse(err, m.type ? "invalid_field" : "missing_field", "type",
                          "type must be one of track, identify, page, screen, group, alias");
    }
    /* The source text bounds the compact form from above: only a message whose text is over the
     * limit needs measuring (a body within the limit holds none). */
    size_t size;
    if (c->measure && v->raw_len > INGEST_SEGMENT_MAX_MESSAGE &&
        (size = epp_json_compact_size(v)) > INGEST_SEGMENT_MAX_MESSAGE) {
        snprintf(err->message, sizeof err->message,
                 "the message is %zu bytes of compact JSON, more than the limit of %zu", size,
                 INGEST_SEGMENT_MAX_MESSAGE);
        err->code = "payload_too_large";
        err->field[0] = '\0';
        return EPP_ETOOBIG;
    }

    epp_json_value_t uid_tmp, anon_tmp;
    int bad_uid = 0, bad_anon = 0;
    const epp_json_value_t *uid = id_of(m.user_id, &uid_tmp, &bad_uid);
    const epp_json_value_t *anon = id_of(m.anonymous_id, &anon_tmp, &bad_anon);
    if (bad_uid || bad_anon)
        return refuse(err, "invalid_field", bad_uid ? "userId" : "anonymousId",
                      bad_uid ? "userId must be a string" : "anonymousId must be a string");
    if (!uid && !anon)
        return refuse(err, "missing_field", "userId", "userId or anonymousId is required");

    epp_uuid_t id;
    const epp_uuid_t *event_id = NULL;
    if (m.message_id) {
        if (m.message_id->type != EPP_JSON_STRING || m.message_id->u.s.len == 0 ||
            m.message_id->u.s.len > EPP_EVENT_MAX_STRING)
            return refuse(err, "invalid_field", "messageId",
                          "messageId must be a non-empty string of at most 256 bytes");
        if (epp_uuid_parse(m.message_id->u.s.text, m.message_id->u.s.len, &id) < 0)
            epp_uuid_v5(&c->ns, m.message_id->u.s.text, m.message_id->u.s.len, &id);
        event_id = &id;
    }

    if (kind == INGEST_SEGMENT_GROUP && !m.group_id)
        return refuse(err, "missing_field", "groupId", "groupId is required in a group message");
    if (kind == INGEST_SEGMENT_ALIAS && !m.previous_id)
        return refuse(err, "missing_field", "previousId",
                      "previousId is required in an alias message");
    const char *objs[] = {"properties", "traits", "context"};
    const epp_json_value_t *objv[] = {m.properties, m.traits, m.context};
    for (int i = 0; i < 3; i++) {
        if (objv[i] && objv[i]->type != EPP_JSON_OBJECT) {
            snprintf(err->message, sizeof err->message, "%s must be a JSON object", objs[i]);
            err->code = "invalid_field";
            snprintf(err->field, sizeof err->field, "%s", objs[i]);
            return EPP_EINVAL;
        }
    }

    int64_t ts;
    const epp_json_value_t *client, *sent;
    int rc = message_time(c, &m, &ts, err, &client, &sent);
    if (rc < 0)
        return rc;

    const char *type = kind_names[kind];
    epp_json_value_t type_v = string_value(type, strlen(type));
    const epp_json_value_t *props = m.properties, *traits = m.traits;
    if (!props && (kind == INGEST_SEGMENT_TRACK || kind == INGEST_SEGMENT_PAGE ||
                   kind == INGEST_SEGMENT_SCREEN))
        props = &empty_object;
    if (!traits && (kind == INGEST_SEGMENT_IDENTIFY || kind == INGEST_SEGMENT_GROUP))
        traits = &empty_object;
    epp_json_member_t meta[MAX_META];
    size_t n = 0;
    meta_add(meta, &n, "type", &type_v);
    meta_add(meta, &n, "messageId", m.message_id);
    meta_add(meta, &n, "anonymousId", m.anonymous_id);
    meta_add(meta, &n, "name", m.name);
    meta_add(meta, &n, "category", m.category);
    meta_add(meta, &n, "groupId", m.group_id);
    meta_add(meta, &n, "previousId", m.previous_id);
    meta_add(meta, &n, "properties", props);
    meta_add(meta, &n, "traits", traits);
    meta_add(meta, &n, "context", m.context ? m.context : c->context);
    /* The client's times are kept when they corrected the stored one, for auditing it; without a
     * correction the stored timestamp is the client's own (or the time of receipt). */
    if (client && sent) {
        meta_add(meta, &n, "originalTimestamp", client);
        meta_add(meta, &n, "sentAt", sent);
    }

    epp_event_parts_t parts = {
        .user_id = uid ? uid : anon,
        .user_id_field = uid ? "userId" : "anonymousId",
        .event_name = kind == INGEST_SEGMENT_TRACK ? m.event : &type_v,
        .event_name_field = "event",
        .metadata = meta,
        .metadata_n = n,
        .event_id = event_id,
        .timestamp_us = ts,
        .timestamp_field = "timestamp",
    };
    return epp_event_from_parts(&parts, c->now_us, ev, err);
}

int ingest_segment_parse(const char *body, size_t len, ingest_segment_kind_t kind,
                         size_t max_messages, int64_t now_us, const ingest_segment_visitor_t *vis,
                         ingest_fail_t *fail)
{
    epp_json_doc_t *doc = NULL;
    int rc = ingest_body_json(body, len, &doc, fail);
    if (rc < 0)
        return rc;
    const epp_json_value_t *root = epp_json_root(doc), *batch = root;
    if (root->type != EPP_JSON_OBJECT) {
        ingest_fail_set(fail, 400, "invalid_json", NULL, "the body must be a JSON object");
        epp_json_doc_destroy(doc);
        return EPP_EINVAL;
    }
    seg_ctx_t c;
    memset(&c, 0, sizeof c);
    c.now_us = now_us;
    c.measure = len > INGEST_SEGMENT_MAX_MESSAGE;
    c.ns = segment_namespace;
    size_t n = 1;
    if (kind == INGEST_SEGMENT_BATCH) {
        batch = epp_json_get(root, "batch");
        if (!batch || batch->type != EPP_JSON_ARRAY) {
            ingest_fail_set(fail, 400, batch ? "invalid_field" : "missing_field", "batch",
                            "a batch is {\"batch\": [message, ...]}");
            epp_json_doc_destroy(doc);
            return EPP_EINVAL;
        }
        n = batch->u.arr.n;
        if (n == 0 || n > max_messages) {
            if (n == 0)
                ingest_fail_set(fail, 400, "invalid_field", "batch", "the batch holds no messages");
            else
                ingest_fail_set(fail, 400, "payload_too_large", "batch",
                                "a batch holds at most %zu messages", max_messages);
            epp_json_doc_destroy(doc);
            return n == 0 ? EPP_EINVAL : EPP_ETOOBIG;
        }
        c.sent_at = present(epp_json_get(root, "sentAt"));
        c.sent_at_bad = c.sent_at && epp_event_instant(c.sent_at, &c.sent_at_us) < 0;
        const epp_json_value_t *ctx = epp_json_get(root, "context");
        c.context = ctx && ctx->type == EPP_JSON_OBJECT ? ctx : NULL;
    }
    const epp_json_value_t *wk = epp_json_get(root, "writeKey");
    int wk_ok = wk && wk->type == EPP_JSON_STRING;
    rc = vis->begin(n, wk_ok ? wk->u.s.text : NULL, wk_ok ? wk->u.s.len : 0, vis->ud);
    epp_event_t ev;
    epp_event_init(&ev);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const epp_json_value_t *msg = kind == INGEST_SEGMENT_BATCH ? batch->u.arr.items[i] : root;
        epp_event_error_t err;
        memset(&err, 0, sizeof err);
        const char *mid;
        size_t mid_len;
        int mrc = message_event(&c, msg, kind, &ev, &err, &mid, &mid_len);
        rc = vis->message(i, mrc, &ev, &err, mid, mid_len, vis->ud);
    }
    epp_event_clear(&ev);
    epp_json_doc_destroy(doc);
    return rc;
}
