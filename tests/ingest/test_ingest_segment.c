/* Unit tests of ingest_segment.c: Segment Tracking API bodies into events -- the row mapping of
 * docs/segment.md (event_id, user_id, event_name, metadata layout, timestamp correction), the
 * refusals and their fields, the per-message and per-request limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_test.h"
#include "epp_time.h"
#include "ingest_segment.h"

#define NOW_US   (1795768305LL * EPP_USEC_PER_SEC) /* 2026-11-27T08:31:45Z */
#define MAX_SEEN 8

/* What the visitor saw, per message: its canonical Kafka form, or its refusal. */
typedef struct {
    size_t n;
    char write_key[64];
    int have_key;
    size_t seen;
    int rc[MAX_SEEN];
    char canon[MAX_SEEN][2048];
    char code[MAX_SEEN][32];
    char field[MAX_SEEN][64];
    char mid[MAX_SEEN][64];
    int broken; /* a callback saw something wrong (they cannot use CHECK: they return int) */
} seen_t;

static int on_begin(size_t n, const char *key, size_t key_len, void *ud)
{
    seen_t *s = ud;
    s->n = n;
    s->have_key = key != NULL;
    if (key)
        snprintf(s->write_key, sizeof s->write_key, "%.*s", (int)key_len, key);
    return 0;
}

static int on_message(size_t index, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                      const char *mid, size_t mid_len, void *ud)
{
    seen_t *s = ud;
    if (index != s->seen || index >= MAX_SEEN) {
        s->broken = 1;
        return 0;
    }
    s->seen++;
    s->rc[index] = rc;
    if (mid)
        snprintf(s->mid[index], sizeof s->mid[index], "%.*s", (int)mid_len, mid);
    if (rc == 0) {
        epp_buf_t out = {0};
        s->broken |= epp_event_serialize(ev, &out) != 0;
        snprintf(s->canon[index], sizeof s->canon[index], "%.*s", (int)out.len, out.data);
        epp_buf_free(&out);
    } else {
        snprintf(s->code[index], sizeof s->code[index], "%s", err->code);
        snprintf(s->field[index], sizeof s->field[index], "%s", err->field);
    }
    return 0;
}

static int parse(const char *body, ingest_segment_kind_t kind, seen_t *s, ingest_fail_t *fail)
{
    memset(s, 0, sizeof *s);
    memset(fail, 0, sizeof *fail);
    ingest_segment_visitor_t vis = {on_begin, on_message, s};
    int rc = ingest_segment_parse(body, strlen(body), kind, 6, NOW_US, &vis, fail);
    return s->broken ? -1000 : rc;
}

/* The canonical form of a valid message, with received_at fixed by NOW_US. */
static void check_one(const char *body, ingest_segment_kind_t kind, const char *want)
{
    seen_t s;
    ingest_fail_t fail;
    CHECK_INT_EQ(parse(body, kind, &s, &fail), 0);
    CHECK_INT_EQ((int)s.seen, 1);
    CHECK_INT_EQ(s.rc[0], 0);
    CHECK_STR_EQ(s.canon[0], want);
}

static void check_refused(const char *body, ingest_segment_kind_t kind, const char *code,
                          const char *field)
{
    seen_t s;
    ingest_fail_t fail;
    CHECK_INT_EQ(parse(body, kind, &s, &fail), 0);
    CHECK_INT_EQ((int)s.seen, 1);
    CHECK(s.rc[0] < 0);
    CHECK_STR_EQ(s.code[0], code);
    CHECK_STR_EQ(s.field[0], field);
}

static void test_types(void)
{
    /* A UUID messageId is the event_id (lower-cased); numbers keep their text. */
    check_one("{\"userId\":\"u1\",\"event\":\"Signed Up\",\"messageId\":"
              "\"0192F0A1-7B3C-7D4E-8F00-0123456789AB\",\"properties\":{\"big\":"
              "12345678901234567890,\"x\":0.1},\"context\":{\"ip\":\"1.2.3.4\"},"
              "\"integrations\":{\"All\":false},\"_metadata\":{\"bundled\":[]}}",
              INGEST_SEGMENT_TRACK,
              "{\"event_id\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ab\",\"user_id\":\"u1\","
              "\"event_name\":\"Signed Up\",\"timestamp\":\"2026-11-27T08:31:45.000Z\","
              "\"received_at\":\"2026-11-27T08:31:45.000Z\",\"metadata\":{\"type\":\"track\","
              "\"messageId\":\"0192F0A1-7B3C-7D4E-8F00-0123456789AB\",\"properties\":{\"big\":"
              "12345678901234567890,\"x\":0.1},\"context\":{\"ip\":\"1.2.3.4\"}}}");
    /* identify: anonymousId alone is the user_id; traits {} by default. A messageId that is
     * not a UUID gives a UUIDv5 in the epp namespace (python3: uuid.uuid5(uuid.UUID(
     * INGEST_SEGMENT_NAMESPACE), "node-next-1796157595693-27e2d822-ae4b-467f-be5d-e875dadb526d")).
     */
    check_one("{\"anonymousId\":\"anon-7\",\"messageId\":\"node-next-1796157595693-27e2d822-ae4b-"
              "467f-be5d-e875dadb526d\"}",
              INGEST_SEGMENT_IDENTIFY,
              "{\"event_id\":\"a116db72-20ea-5931-95fa-735efdcb21b7\",\"user_id\":\"anon-7\","
              "\"event_name\":\"identify\",\"timestamp\":\"2026-11-27T08:31:45.000Z\","
              "\"received_at\":\"2026-11-27T08:31:45.000Z\",\"metadata\":{\"type\":"
              "\"identify\",\"messageId\":\"node-next-1796157595693-27e2d822-ae4b-467f-be5d-"
              "e875dadb526d\",\"anonymousId\":\"anon-7\",\"traits\":{}}}");
    /* page: userId wins over anonymousId, name and category kept, properties {} by default, a
     * numeric userId is its text. The type of the route wins over the body's. */
    check_one("{\"type\":\"track\",\"userId\":42,\"anonymousId\":\"a\",\"name\":\"Home\","
              "\"category\":\"Docs\",\"messageId\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ac\"}",
              INGEST_SEGMENT_PAGE,
              "{\"event_id\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ac\",\"user_id\":\"42\","
              "\"event_name\":\"page\",\"timestamp\":\"2026-11-27T08:31:45.000Z\","
              "\"received_at\":\"2026-11-27T08:31:45.000Z\",\"metadata\":{\"type\":\"page\","
              "\"messageId\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ac\",\"anonymousId\":\"a\","
              "\"name\":\"Home\",\"category\":\"Docs\",\"properties\":{}}}");
    check_one("{\"userId\":\"u\",\"name\":\"S\",\"properties\":{\"k\":[1,2]},\"messageId\":"
              "\"0192f0a1-7b3c-7d4e-8f00-0123456789ad\"}",
              INGEST_SEGMENT_SCREEN,
              "{\"event_id\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ad\",\"user_id\":\"u\","
              "\"event_name\":\"screen\",\"timestamp\":\"2026-11-27T08:31:45.000Z\","
              "\"received_at\":\"2026-11-27T08:31:45.000Z\",\"metadata\":{\"type\":"
              "\"screen\",\"messageId\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ad\",\"name\":\"S\","
              "\"properties\":{\"k\":[1,2]}}}");
    check_one("{\"userId\":\"u\",\"groupId\":\"g1\",\"traits\":{\"plan\":\"pro\"},\"messageId\":"
              "\"0192f0a1-7b3c-7d4e-8f00-0123456789ae\"}",
              INGEST_SEGMENT_GROUP,
              "{\"event_id\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ae\",\"user_id\":\"u\","
              "\"event_name\":\"group\",\"timestamp\":\"2026-11-27T08:31:45.000Z\","
              "\"received_at\":\"2026-11-27T08:31:45.000Z\",\"metadata\":{\"type\":\"group\","
              "\"messageId\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ae\",\"groupId\":\"g1\","
              "\"traits\":{\"plan\":\"pro\"}}}");
    check_one("{\"userId\":\"new\",\"previousId\":\"old\",\"messageId\":"
              "\"0192f0a1-7b3c-7d4e-8f00-0123456789af\"}",
              INGEST_SEGMENT_ALIAS,
              "{\"event_id\":\"0192f0a1-7b3c-7d4e-8f00-0123456789af\",\"user_id\":\"new\","
              "\"event_name\":\"alias\",\"timestamp\":\"2026-11-27T08:31:45.000Z\","
              "\"received_at\":\"2026-11-27T08:31:45.000Z\",\"metadata\":{\"type\":\"alias\","
              "\"messageId\":\"0192f0a1-7b3c-7d4e-8f00-0123456789af\",\"previousId\":\"old\"}}");
}

static void test_namespace(void)
{
    /* INGEST_SEGMENT_NAMESPACE is what its comment says it is. */
    epp_uuid_t url, ns;
    char out[EPP_UUID_STRLEN + 1];
    CHECK_INT_EQ(epp_uuid_parse("6ba7b811-9dad-11d1-80b4-00c04fd430c8", 36, &url), 0);
    epp_uuid_v5(&url, "urn:epp:segment:messageId", 25, &ns);
    epp_uuid_format(&ns, out);
    CHECK_STR_EQ(out, INGEST_SEGMENT_NAMESPACE);
}

static void test_time(void)
{
    /* A client clock ten minutes ahead: sentAt and timestamp both read 10 min late; the stored
     * time is the client's timestamp moved back by the offset. */
    check_one("{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"0192f0a1-7b3c-7d4e-8f00-"
              "0123456789ab\",\"timestamp\":\"2026-11-27T08:41:40Z\",\"sentAt\":"
              "\"2026-11-27T08:41:45Z\"}",
              INGEST_SEGMENT_TRACK,
              "{\"event_id\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ab\",\"user_id\":\"u\","
              "\"event_name\":\"e\",\"timestamp\":\"2026-11-27T08:31:40.000Z\",\"received_at\":"
              "\"2026-11-27T08:31:45.000Z\",\"metadata\":{\"type\":\"track\",\"messageId\":"
              "\"0192f0a1-7b3c-7d4e-8f00-0123456789ab\",\"properties\":{},\"originalTimestamp\":"
              "\"2026-11-27T08:41:40Z\",\"sentAt\":\"2026-11-27T08:41:45Z\"}}");
    /* originalTimestamp wins over timestamp; without sentAt the client time is taken as is;
     * the batch's sentAt applies to messages without their own. */
    seen_t s;
    ingest_fail_t fail;
    CHECK_INT_EQ(parse("{\"sentAt\":\"2026-11-27T09:31:45Z\",\"writeKey\":\"wk\",\"batch\":["
                       "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\",\"timestamp\":"
                       "\"2026-11-27T09:00:00Z\"},"
                       "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"b\",\"originalTimestamp\":"
                       "\"2020-01-01T00:00:00Z\",\"timestamp\":\"2026-11-27T09:00:00Z\",\"sentAt\":"
                       "\"2020-01-01T00:00:10Z\"},"
                       "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"c\",\"timestamp\":1000}]}",
                       INGEST_SEGMENT_BATCH, &s, &fail),
                 0);
    CHECK_INT_EQ((int)s.n, 3);
    CHECK(s.have_key);
    CHECK_STR_EQ(s.write_key, "wk");
    CHECK(strstr(s.canon[0], "\"timestamp\":\"2026-11-27T08:00:00.000Z\"") != NULL);
    CHECK(strstr(s.canon[0], "\"sentAt\":\"2026-11-27T09:31:45Z\"") != NULL);
    CHECK(strstr(s.canon[1], "\"timestamp\":\"2026-11-27T08:31:35.000Z\"") != NULL);
    CHECK(strstr(s.canon[1], "\"originalTimestamp\":\"2020-01-01T00:00:00Z\"") != NULL);
    /* Epoch milliseconds, corrected by the batch's sentAt: 1 s after 1970, minus an hour. */
    CHECK_INT_EQ(s.rc[2], EPP_EINVAL);
    CHECK_STR_EQ(s.field[2], "timestamp");
    /* Without sentAt the client's time is stored as is, and no client times are kept. */
    check_one("{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"0192f0a1-7b3c-7d4e-8f00-"
              "0123456789ab\",\"timestamp\":\"2026-11-27T08:00:00Z\"}",
              INGEST_SEGMENT_TRACK,
              "{\"event_id\":\"0192f0a1-7b3c-7d4e-8f00-0123456789ab\",\"user_id\":\"u\","
              "\"event_name\":\"e\",\"timestamp\":\"2026-11-27T08:00:00.000Z\",\"received_at\":"
              "\"2026-11-27T08:31:45.000Z\",\"metadata\":{\"type\":\"track\",\"messageId\":"
              "\"0192f0a1-7b3c-7d4e-8f00-0123456789ab\",\"properties\":{}}}");
    /* Corrected time more than 24 h ahead; a malformed sentAt. */
    check_refused("{\"userId\":\"u\",\"event\":\"e\",\"timestamp\":\"2026-11-29T08:31:45Z\"}",
                  INGEST_SEGMENT_TRACK, "invalid_field", "timestamp");
    check_refused("{\"userId\":\"u\",\"event\":\"e\",\"timestamp\":\"2026-11-29T08:31:45Z\","
                  "\"sentAt\":\"yesterday\"}",
                  INGEST_SEGMENT_TRACK, "invalid_field", "sentAt");
}

static void test_refusals(void)
{
    check_refused("{\"event\":\"e\"}", INGEST_SEGMENT_TRACK, "missing_field", "userId");
    check_refused("{\"userId\":\"\",\"anonymousId\":null,\"event\":\"e\"}", INGEST_SEGMENT_TRACK,
                  "missing_field", "userId");
    check_refused("{\"userId\":true,\"event\":\"e\"}", INGEST_SEGMENT_TRACK, "invalid_field",
                  "userId");
    check_refused("{\"userId\":\"u\"}", INGEST_SEGMENT_TRACK, "missing_field", "event");
    check_refused("{\"userId\":\"u\",\"event\":\"\"}", INGEST_SEGMENT_TRACK, "invalid_field",
                  "event");
    check_refused("{\"userId\":\"u\\u0007\",\"event\":\"e\"}", INGEST_SEGMENT_TRACK,
                  "invalid_field", "userId");
    check_refused("{\"userId\":\"u\",\"event\":\"e\",\"messageId\":7}", INGEST_SEGMENT_TRACK,
                  "invalid_field", "messageId");
    check_refused("{\"userId\":\"u\",\"event\":\"e\",\"properties\":[1]}", INGEST_SEGMENT_TRACK,
                  "invalid_field", "properties");
    check_refused("{\"userId\":\"u\"}", INGEST_SEGMENT_GROUP, "missing_field", "groupId");
    check_refused("{\"userId\":\"u\"}", INGEST_SEGMENT_ALIAS, "missing_field", "previousId");
    /* Properties 32 levels deep: the metadata would be 33. */
    char deep[400];
    size_t o =
        (size_t)snprintf(deep, sizeof deep, "{\"userId\":\"u\",\"event\":\"e\",\"properties\":");
    for (int i = 0; i < 32; i++)
        deep[o++] = '[';
    for (int i = 0; i < 32; i++)
        deep[o++] = ']';
    snprintf(deep + o, sizeof deep - o, "}");
    check_refused(deep, INGEST_SEGMENT_TRACK, "invalid_field", "properties");
}

static void test_batch(void)
{
    seen_t s;
    ingest_fail_t fail;
    /* Invalid messages are refused one by one, named by messageId; the batch's context fills
     * in for messages without one. */
    CHECK_INT_EQ(parse("{\"context\":{\"app\":\"x\"},\"batch\":["
                       "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\"},"
                       "{\"type\":\"nope\",\"userId\":\"u\",\"messageId\":\"m-2\"},"
                       "{\"userId\":\"u\"},"
                       "5,"
                       "{\"type\":\"page\",\"userId\":\"u\",\"context\":{\"own\":1}}]}",
                       INGEST_SEGMENT_BATCH, &s, &fail),
                 0);
    CHECK_INT_EQ((int)s.seen, 5);
    CHECK(!s.have_key);
    CHECK_INT_EQ(s.rc[0], 0);
    CHECK(strstr(s.canon[0], "\"context\":{\"app\":\"x\"}") != NULL);
    CHECK_STR_EQ(s.code[1], "invalid_field");
    CHECK_STR_EQ(s.field[1], "type");
    CHECK_STR_EQ(s.mid[1], "m-2");
    CHECK_STR_EQ(s.code[2], "missing_field");
    CHECK_STR_EQ(s.code[3], "invalid_json");
    CHECK(strstr(s.canon[4], "\"context\":{\"own\":1}") != NULL);

    /* Bodies that are no batch at all. */
    CHECK_INT_EQ(parse("{\"batch\":[1,2,3,4,5,6,7]}", INGEST_SEGMENT_BATCH, &s, &fail),
                 EPP_ETOOBIG);
    CHECK_INT_EQ((int)fail.status, 400);
    CHECK_STR_EQ(fail.code, "payload_too_large");
    CHECK_INT_EQ((int)s.seen, 0);
    CHECK_INT_EQ(parse("{\"batch\":[]}", INGEST_SEGMENT_BATCH, &s, &fail), EPP_EINVAL);
    CHECK_INT_EQ((int)fail.status, 400);
    CHECK_STR_EQ(fail.field, "batch");
    CHECK_INT_EQ(parse("{\"events\":[]}", INGEST_SEGMENT_BATCH, &s, &fail), EPP_EINVAL);
    CHECK_STR_EQ(fail.code, "missing_field");
    CHECK_INT_EQ(parse("{\"batch\":{}}", INGEST_SEGMENT_BATCH, &s, &fail), EPP_EINVAL);
    CHECK_STR_EQ(fail.code, "invalid_field");
    CHECK_INT_EQ(parse("nope", INGEST_SEGMENT_TRACK, &s, &fail), EPP_EINVAL);
    CHECK_STR_EQ(fail.code, "invalid_json");
    CHECK_INT_EQ(parse("[]", INGEST_SEGMENT_TRACK, &s, &fail), EPP_EINVAL);
    CHECK_INT_EQ((int)s.seen, 0);
}

static void test_sizes(void)
{
    /* Messages of just under and just over 32 KiB (compact JSON) in one batch. */
    size_t cap = 3 * INGEST_SEGMENT_MAX_MESSAGE;
    char *body = malloc(cap);
    CHECK(body != NULL);
    const char *head =
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\",\"properties\":{\"p\":\"";
    size_t fixed = strlen(head) + strlen("\"}}");
    size_t o = (size_t)snprintf(body, cap, "{\"batch\":[");
    for (int k = 0; k < 2; k++) {
        size_t pad = INGEST_SEGMENT_MAX_MESSAGE - fixed + (size_t)k; /* exactly the limit, +1 */
        o += (size_t)snprintf(body + o, cap - o, "%s%s", k ? "," : "", head);
        memset(body + o, 'x', pad);
        o += pad;
        o += (size_t)snprintf(body + o, cap - o, "\"}}");
    }
    snprintf(body + o, cap - o, "]}");
    seen_t s;
    ingest_fail_t fail;
    memset(&s, 0, sizeof s);
    ingest_segment_visitor_t vis = {on_begin, on_message, &s};
    CHECK_INT_EQ(
        ingest_segment_parse(body, strlen(body), INGEST_SEGMENT_BATCH, 4, NOW_US, &vis, &fail), 0);
    CHECK_INT_EQ((int)s.seen, 2);
    /* The first fits as a message but its metadata ({"type":"track","properties":...}) is a
     * little larger than the message minus userId and event: still within 32 KiB. */
    CHECK_INT_EQ(s.rc[0], 0);
    CHECK_INT_EQ(s.rc[1], EPP_ETOOBIG);
    CHECK_STR_EQ(s.code[1], "payload_too_large");
    free(body);
}

int main(void)
{
    EPP_RUN(test_types);
    EPP_RUN(test_namespace);
    EPP_RUN(test_time);
    EPP_RUN(test_refusals);
    EPP_RUN(test_batch);
    EPP_RUN(test_sizes);
    return EPP_TEST_RESULT();
}
