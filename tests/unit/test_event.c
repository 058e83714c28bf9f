/* Unit tests for epp_event: every docs/contract.md §4 rule (table-driven), the canonical form, and
 * the client -> Kafka round trip that ingestion and the consumer rely on. */
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_event.h"
#include "epp_test.h"
#include "epp_time.h"

/* 2026-11-27T08:31:45Z */
#define NOW_US (1795768305LL * EPP_USEC_PER_SEC)

#define UID "0192f0a1-7b3c-7d4e-8f00-0123456789ab"

typedef struct {
    const char *name;
    epp_event_mode_t mode;
    const char *json;
    int rc;
    const char *code;  /* NULL when rc == 0 */
    const char *field; /* expected err.field */
    const char *msg;   /* a substring of err.message, or NULL */
} event_case_t;

#define C     EPP_EVENT_FROM_CLIENT
#define K     EPP_EVENT_FROM_KAFKA
#define KBASE "\"event_id\":\"" UID "\",\"user_id\":\"u\",\"event_name\":\"e\""
#define KFULL                                                                                      \
    KBASE ",\"timestamp\":\"2026-11-27T08:00:00Z\",\"received_at\":\"2026-11-27T08:31:45Z\","      \
          "\"metadata\":{}"

static const event_case_t cases[] = {
    /* accepted */
    {"minimal", C, "{\"user_id\":\"u1\",\"event_name\":\"click\"}", 0, NULL, NULL, NULL},
    {"all fields", C,
     "{\"event_id\":\"" UID "\",\"user_id\":\"u1\",\"event_name\":\"click\",\"metadata\":{\"a\":1},"
     "\"timestamp\":\"2026-11-27T08:00:00+05:30\"}",
     0, NULL, NULL, NULL},
    {"epoch ms timestamp", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":1764232305123}", 0, NULL, NULL, NULL},
    {"epoch ms zero", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":0}", 0, NULL, NULL,
     NULL},
    {"256-byte user_id", C,
     "{\"user_id\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
     "\"event_name\":\"e\"}",
     0, NULL, NULL, NULL},
    {"unicode names", C, "{\"user_id\":\"\xc3\xa9\\ud83d\\ude00\",\"event_name\":\"\xe2\x82\xac\"}",
     0, NULL, NULL, NULL},
    {"24h ahead exactly", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":\"2026-11-28T08:31:45Z\"}", 0, NULL,
     NULL, NULL},
    {"old timestamp", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":\"1999-01-01T00:00:00Z\"}", 0, NULL,
     NULL, NULL},
    {"uppercase event_id", C,
     "{\"event_id\":\"0192F0A1-7B3C-7D4E-8F00-0123456789AB\",\"user_id\":\"u\",\"event_name\":"
     "\"e\"}",
     0, NULL, NULL, NULL},
    {"kafka canonical", K, "{" KFULL "}", 0, NULL, NULL, NULL},

    /* not JSON / not an object */
    {"not json", C, "user_id=u", EPP_EINVAL, "invalid_json", "", "invalid JSON"},
    {"truncated", C, "{\"user_id\":\"u\"", EPP_EINVAL, "invalid_json", "", NULL},
    {"empty body", C, "", EPP_EINVAL, "invalid_json", "", NULL},
    {"array", C, "[{\"user_id\":\"u\",\"event_name\":\"e\"}]", EPP_EINVAL, "invalid_json", "",
     "event must be a JSON object"},
    {"string", C, "\"event\"", EPP_EINVAL, "invalid_json", "", "event must be a JSON object"},
    {"null", C, "null", EPP_EINVAL, "invalid_json", "", "event must be a JSON object"},
    {"two objects", C, "{\"user_id\":\"u\",\"event_name\":\"e\"}{}", EPP_EINVAL, "invalid_json", "",
     NULL},
    {"\\u0000", C, "{\"user_id\":\"u\\u0000\",\"event_name\":\"e\"}", EPP_EINVAL, "invalid_json",
     "", "\\u0000"},
    {"\\u0000 in metadata", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"metadata\":{\"k\":\"\\u0000\"}}", EPP_EINVAL,
     "invalid_json", "", "\\u0000"},
    {"invalid utf-8", C, "{\"user_id\":\"u\xff\",\"event_name\":\"e\"}", EPP_EINVAL, "invalid_json",
     "", "UTF-8"},
    {"overlong utf-8 in metadata key", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"metadata\":{\"\xc0\xaf\":1}}", EPP_EINVAL,
     "invalid_json", "", "UTF-8"},
    {"lone surrogate", C, "{\"user_id\":\"u\",\"event_name\":\"\\ud800\"}", EPP_EINVAL,
     "invalid_json", "", "surrogate"},
    {"deep array body", C,
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", EPP_EINVAL,
     "invalid_json", "", "event must be a JSON object"},

    /* unknown fields */
    {"typo event", C, "{\"user_id\":\"u\",\"event\":\"e\"}", EPP_EINVAL, "unknown_field", "event",
     "unknown field \"event\" (expected event_id, user_id, event_name, metadata, timestamp)"},
    {"received_at from client", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"received_at\":\"2026-11-27T08:00:00Z\"}",
     EPP_EINVAL, "unknown_field", "received_at", "received_at"},
    {"unknown in kafka", K, "{" KFULL ",\"extra\":1}", EPP_EINVAL, "unknown_field", "extra",
     "unknown field \"extra\""},
    {"case matters", C, "{\"User_id\":\"u\",\"event_name\":\"e\"}", EPP_EINVAL, "unknown_field",
     "User_id", NULL},

    /* user_id / event_name */
    {"missing user_id", C, "{\"event_name\":\"e\"}", EPP_EINVAL, "missing_field", "user_id",
     "user_id is required"},
    {"missing event_name", C, "{\"user_id\":\"u\"}", EPP_EINVAL, "missing_field", "event_name",
     "event_name is required"},
    {"empty object", C, "{}", EPP_EINVAL, "missing_field", "user_id", NULL},
    {"empty user_id", C, "{\"user_id\":\"\",\"event_name\":\"e\"}", EPP_EINVAL, "invalid_field",
     "user_id", "non-empty string"},
    {"empty event_name", C, "{\"user_id\":\"u\",\"event_name\":\"\"}", EPP_EINVAL, "invalid_field",
     "event_name", NULL},
    {"257-byte user_id", C,
     "{\"user_id\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
     "\"event_name\":\"e\"}",
     EPP_EINVAL, "invalid_field", "user_id", "at most 256 bytes"},
    {"numeric user_id", C, "{\"user_id\":42,\"event_name\":\"e\"}", EPP_EINVAL, "invalid_field",
     "user_id", NULL},
    {"null user_id", C, "{\"user_id\":null,\"event_name\":\"e\"}", EPP_EINVAL, "invalid_field",
     "user_id", NULL},
    {"object event_name", C, "{\"user_id\":\"u\",\"event_name\":{}}", EPP_EINVAL, "invalid_field",
     "event_name", NULL},
    {"newline in user_id", C, "{\"user_id\":\"a\\nb\",\"event_name\":\"e\"}", EPP_EINVAL,
     "invalid_field", "user_id", "control characters"},
    {"DEL in event_name", C, "{\"user_id\":\"u\",\"event_name\":\"a\x7f\"}", EPP_EINVAL,
     "invalid_field", "event_name", "control characters"},
    {"C1 control in event_name", C, "{\"user_id\":\"u\",\"event_name\":\"a\\u0085\"}", EPP_EINVAL,
     "invalid_field", "event_name", "control characters"},
    {"U+009F raw", C, "{\"user_id\":\"\xc2\x9f\",\"event_name\":\"e\"}", EPP_EINVAL,
     "invalid_field", "user_id", "control characters"},

    /* metadata */
    {"metadata array", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"metadata\":[1]}", EPP_EINVAL,
     "invalid_field", "metadata", "metadata must be a JSON object"},
    {"metadata string", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"metadata\":\"{}\"}",
     EPP_EINVAL, "invalid_field", "metadata", NULL},
    {"metadata null", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"metadata\":null}", EPP_EINVAL,
     "invalid_field", "metadata", NULL},

    /* timestamp */
    {"garbage timestamp", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":\"yesterday\"}",
     EPP_EINVAL, "invalid_field", "timestamp", "RFC 3339"},
    {"bad date", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":\"2023-02-29T00:00:00Z\"}", EPP_EINVAL,
     "invalid_field", "timestamp", NULL},
    {"far future", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":\"2026-11-28T08:31:45.000001Z\"}",
     EPP_EINVAL, "invalid_field", "timestamp", "24 h"},
    {"far future ms", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":1895768305000}",
     EPP_EINVAL, "invalid_field", "timestamp", "24 h"},
    {"negative ms", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":-1}", EPP_EINVAL,
     "invalid_field", "timestamp", NULL},
    {"fractional ms", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":1764232305123.5}",
     EPP_EINVAL, "invalid_field", "timestamp", NULL},
    {"exponent ms", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":1.7e12}", EPP_EINVAL,
     "invalid_field", "timestamp", NULL},
    {"absurd year ms", C,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":99999999999999999999}", EPP_EINVAL,
     "invalid_field", "timestamp", NULL},
    {"year 10000 ms", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":253402300800000}",
     EPP_EINVAL, "invalid_field", "timestamp", NULL},
    {"bool timestamp", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":true}", EPP_EINVAL,
     "invalid_field", "timestamp", NULL},
    {"null timestamp", C, "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":null}", EPP_EINVAL,
     "invalid_field", "timestamp", NULL},

    /* event_id */
    {"bad event_id", C, "{\"event_id\":\"not-a-uuid\",\"user_id\":\"u\",\"event_name\":\"e\"}",
     EPP_EINVAL, "invalid_field", "event_id", "UUID"},
    {"braced event_id", C, "{\"event_id\":\"{" UID "}\",\"user_id\":\"u\",\"event_name\":\"e\"}",
     EPP_EINVAL, "invalid_field", "event_id", NULL},
    {"numeric event_id", C, "{\"event_id\":1,\"user_id\":\"u\",\"event_name\":\"e\"}", EPP_EINVAL,
     "invalid_field", "event_id", NULL},

    /* Kafka mode: everything required */
    {"kafka no event_id", K,
     "{\"user_id\":\"u\",\"event_name\":\"e\",\"timestamp\":\"2026-11-27T08:00:00Z\","
     "\"received_at\":\"2026-11-27T08:31:45Z\",\"metadata\":{}}",
     EPP_EINVAL, "missing_field", "event_id", NULL},
    {"kafka no received_at", K,
     "{" KBASE ",\"timestamp\":\"2026-11-27T08:00:00Z\",\"metadata\":{}}", EPP_EINVAL,
     "missing_field", "received_at", NULL},
    {"kafka no timestamp", K,
     "{" KBASE ",\"received_at\":\"2026-11-27T08:31:45Z\",\"metadata\":{}}", EPP_EINVAL,
     "missing_field", "timestamp", NULL},
    {"kafka no metadata", K,
     "{" KBASE ",\"timestamp\":\"2026-11-27T08:00:00Z\",\"received_at\":\"2026-11-27T08:31:45Z\"}",
     EPP_EINVAL, "missing_field", "metadata", NULL},
    {"kafka received_at number", K,
     "{" KBASE ",\"timestamp\":\"2026-11-27T08:00:00Z\",\"received_at\":1,\"metadata\":{}}",
     EPP_EINVAL, "invalid_field", "received_at", NULL},
    {"kafka future vs received_at", K,
     "{" KBASE ",\"timestamp\":\"2026-11-29T00:00:00Z\",\"received_at\":\"2026-11-27T08:31:45Z\","
     "\"metadata\":{}}",
     EPP_EINVAL, "invalid_field", "timestamp", "after received_at"},
};

static void test_table(void)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const event_case_t *c = &cases[i];
        epp_event_t ev;
        epp_event_init(&ev);
        epp_event_error_t err;
        memset(&err, 0, sizeof err);
        int rc = epp_event_parse(c->json, strlen(c->json), c->mode, NOW_US, &ev, &err);
        if (rc != c->rc) {
            fprintf(stderr, "case \"%s\": rc %d, expected %d (%s: %s)\n", c->name, rc, c->rc,
                    err.code ? err.code : "-", err.message);
            failed = 1;
        } else if (c->code && (!err.code || strcmp(err.code, c->code) != 0)) {
            fprintf(stderr, "case \"%s\": code %s, expected %s (%s)\n", c->name,
                    err.code ? err.code : "(null)", c->code, err.message);
            failed = 1;
        } else if (c->code && strcmp(err.field, c->field) != 0) {
            fprintf(stderr, "case \"%s\": field \"%s\", expected \"%s\"\n", c->name, err.field,
                    c->field);
            failed = 1;
        } else if (c->msg && !strstr(err.message, c->msg)) {
            fprintf(stderr, "case \"%s\": message \"%s\" lacks \"%s\"\n", c->name, err.message,
                    c->msg);
            failed = 1;
        } else if (!rc && (!ev.user_id || !ev.event_name || !ev.metadata)) {
            fprintf(stderr, "case \"%s\": accepted without fields\n", c->name);
            failed = 1;
        }
        epp_event_clear(&ev);
    }
    CHECK(!failed);
}

/* {"user_id":"u","event_name":"e","metadata":{"a":{"a":...{}}}} with metadata depth n. */
static char *deep_metadata(int n)
{
    epp_buf_t b = {0};
    epp_buf_append_str(&b, "{\"user_id\":\"u\",\"event_name\":\"e\",\"metadata\":");
    for (int i = 0; i < n; i++)
        epp_buf_append_str(&b, i + 1 < n ? "{\"a\":" : "{\"x\":[1]");
    for (int i = 0; i < n; i++)
        epp_buf_append_char(&b, '}');
    epp_buf_append_char(&b, '}');
    return epp_buf_steal(&b);
}

static void test_metadata_depth(void)
{
    epp_event_t ev;
    epp_event_init(&ev);
    epp_event_error_t err;
    /* Depth 31 objects plus the innermost array: 32 levels, the limit. */
    char *ok = deep_metadata(31);
    CHECK_INT_EQ(epp_event_parse(ok, strlen(ok), C, NOW_US, &ev, &err), 0);
    free(ok);
    /* 32 objects plus the array: 33 levels. */
    char *deep = deep_metadata(32);
    CHECK_INT_EQ(epp_event_parse(deep, strlen(deep), C, NOW_US, &ev, &err), EPP_EINVAL);
    CHECK_STR_EQ(err.code, "invalid_field");
    CHECK_STR_EQ(err.field, "metadata");
    free(deep);
    /* Much deeper input stops in the parser and reports the same. */
    char *deeper = deep_metadata(500);
    CHECK_INT_EQ(epp_event_parse(deeper, strlen(deeper), C, NOW_US, &ev, &err), EPP_EINVAL);
    CHECK_STR_EQ(err.code, "invalid_field");
    CHECK_STR_EQ(err.field, "metadata");
    CHECK(strstr(err.message, "32") != NULL);
    free(deeper);

    /* epp_event_from_value measures depth relative to the metadata object, wherever the event
     * sits in its document (a batch array adds a level). */
    epp_buf_t b = {0};
    char *ok2 = deep_metadata(31);
    epp_buf_printf(&b, "[%s]", ok2);
    free(ok2);
    epp_json_doc_t *doc = NULL;
    epp_json_error_t jerr;
    CHECK_INT_EQ(epp_json_parse(b.data, b.len, NULL, &doc, &jerr), 0);
    CHECK_INT_EQ(epp_event_from_value(epp_json_root(doc)->u.arr.items[0], C, NOW_US, &ev, &err), 0);
    epp_json_doc_destroy(doc);
    epp_buf_reset(&b);
    char *deep2 = deep_metadata(32);
    epp_buf_printf(&b, "[%s]", deep2);
    free(deep2);
    CHECK_INT_EQ(epp_json_parse(b.data, b.len, NULL, &doc, &jerr), 0);
    CHECK_INT_EQ(epp_event_from_value(epp_json_root(doc)->u.arr.items[0], C, NOW_US, &ev, &err),
                 EPP_EINVAL);
    CHECK_STR_EQ(err.field, "metadata");
    epp_json_doc_destroy(doc);
    epp_buf_free(&b);
    epp_event_clear(&ev);
}

/* Metadata whose compact form is exactly n bytes: {"k":"xxx..."} (8 bytes of framing). */
static char *sized_event(size_t n, int spaces)
{
    epp_buf_t b = {0};
    epp_buf_append_str(&b, "{\"user_id\":\"u\",\"event_name\":\"e\",\"metadata\":{");
    if (spaces)
        epp_buf_append_str(&b, "   \"k\"  :   \"");
    else
        epp_buf_append_str(&b, "\"k\":\"");
    for (size_t i = 0; i < n - 8; i++)
        epp_buf_append_char(&b, 'x');
    epp_buf_append_str(&b, "\"}}");
    return epp_buf_steal(&b);
}

static void test_metadata_size(void)
{
    epp_event_t ev;
    epp_event_init(&ev);
    epp_event_error_t err;
    char *ok = sized_event(EPP_EVENT_MAX_METADATA, 1); /* whitespace does not count */
    CHECK_INT_EQ(epp_event_parse(ok, strlen(ok), C, NOW_US, &ev, &err), 0);
    CHECK_INT_EQ(ev.metadata_len, EPP_EVENT_MAX_METADATA);
    free(ok);
    char *big = sized_event(EPP_EVENT_MAX_METADATA + 1, 0);
    CHECK_INT_EQ(epp_event_parse(big, strlen(big), C, NOW_US, &ev, &err), EPP_ETOOBIG);
    CHECK_STR_EQ(err.code, "payload_too_large");
    CHECK_STR_EQ(err.field, "metadata");
    free(big);
    epp_event_clear(&ev);
}

static void test_fields_and_defaults(void)
{
    epp_event_t ev;
    epp_event_init(&ev);
    epp_event_error_t err;
    const char *in = "{\"user_id\":\"u1\",\"event_name\":\"click\"}";
    CHECK_INT_EQ(epp_event_parse(in, strlen(in), C, NOW_US, &ev, &err), 0);
    CHECK_STR_EQ(ev.user_id, "u1");
    CHECK_INT_EQ(ev.user_id_len, 2);
    CHECK_STR_EQ(ev.event_name, "click");
    CHECK_STR_EQ(ev.metadata, "{}");
    CHECK_INT_EQ(ev.metadata_len, 2);
    CHECK_INT_EQ(ev.timestamp_us, NOW_US);
    CHECK_INT_EQ(ev.received_at_us, NOW_US);
    CHECK_INT_EQ(ev.event_id_generated, 1);
    CHECK_INT_EQ(epp_uuid_version(&ev.event_id), 7);

    /* Client values are kept; epoch milliseconds become microseconds. */
    in = "{\"timestamp\":1764232305123,\"event_id\":\"" UID "\",\"event_name\":\"e\","
         "\"user_id\":\"u\"}";
    CHECK_INT_EQ(epp_event_parse(in, strlen(in), C, NOW_US, &ev, &err), 0);
    CHECK_INT_EQ(ev.timestamp_us, 1764232305123000LL);
    CHECK_INT_EQ(ev.event_id_generated, 0);
    char id[EPP_UUID_STRLEN + 1];
    epp_uuid_format(&ev.event_id, id);
    CHECK_STR_EQ(id, UID);

    /* The last duplicate wins, as in jsonb. */
    in = "{\"user_id\":\"first\",\"event_name\":\"e\",\"user_id\":\"second\"}";
    CHECK_INT_EQ(epp_event_parse(in, strlen(in), C, NOW_US, &ev, &err), 0);
    CHECK_STR_EQ(ev.user_id, "second");

    /* The event owns its strings: the input can go away. */
    char *copy = strdup("{\"user_id\":\"owned\",\"event_name\":\"e\",\"metadata\":{\"k\":[1]}}");
    CHECK_INT_EQ(epp_event_parse(copy, strlen(copy), C, NOW_US, &ev, &err), 0);
    memset(copy, 'X', strlen(copy));
    free(copy);
    CHECK_STR_EQ(ev.user_id, "owned");
    CHECK_STR_EQ(ev.metadata, "{\"k\":[1]}");

    /* A failed parse leaves nothing behind that looks valid. */
    in = "{\"user_id\":\"\"}";
    CHECK_INT_EQ(epp_event_parse(in, strlen(in), C, NOW_US, &ev, &err), EPP_EINVAL);
    CHECK(ev.user_id == NULL);
    epp_event_clear(&ev);
    epp_event_clear(&ev); /* clear twice is fine */
}

static void test_metadata_exact(void)
{
    epp_event_t ev;
    epp_event_init(&ev);
    epp_event_error_t err;
    const char *in = "{ \"user_id\" : \"u\", \"event_name\": \"e\", \"metadata\": {\"big\": "
                     "12345678901234567890, \"x\": 0.1, \"s\": \"\xc3\xa9\\ud83d\\ude00\", "
                     "\"neg\": -0, \"huge\": 1e400, \"esc\": \"a\\\"b\\\\c\\n\\u0001\\/\"} }";
    CHECK_INT_EQ(epp_event_parse(in, strlen(in), C, NOW_US, &ev, &err), 0);
    CHECK_STR_EQ(ev.metadata,
                 "{\"big\":12345678901234567890,\"x\":0.1,\"s\":\"\xc3\xa9\xf0\x9f\x98"
                 "\x80\",\"neg\":-0,\"huge\":1e400,\"esc\":\"a\\\"b\\\\c\\n\\u0001/\"}");
    epp_event_clear(&ev);
}

static void test_serialize_and_kafka_roundtrip(void)
{
    epp_event_t ev, back;
    epp_event_init(&ev);
    epp_event_init(&back);
    epp_event_error_t err;
    const char *in = "{\"event_id\":\"" UID "\",\"user_id\":\"u\\\"1\",\"event_name\":\"click\","
                     "\"timestamp\":\"2026-11-27T14:00:00.123456789+05:30\","
                     "\"metadata\":{\"big\":12345678901234567890,\"x\":0.1}}";
    CHECK_INT_EQ(epp_event_parse(in, strlen(in), C, NOW_US + 5000, &ev, &err), 0);
    epp_buf_t out = {0};
    CHECK_INT_EQ(epp_event_serialize(&ev, &out), 0);
    CHECK_STR_EQ(out.data, "{\"event_id\":\"" UID "\",\"user_id\":\"u\\\"1\",\"event_name\":"
                           "\"click\",\"timestamp\":\"2026-11-27T08:30:00.123456Z\","
                           "\"received_at\":\"2026-11-27T08:31:45.005Z\",\"metadata\":"
                           "{\"big\":12345678901234567890,\"x\":0.1}}");

    /* The consumer reads the canonical form back into the same event. */
    CHECK_INT_EQ(epp_event_parse(out.data, out.len, K, 0, &back, &err), 0);
    CHECK(memcmp(&back.event_id, &ev.event_id, sizeof ev.event_id) == 0);
    CHECK_STR_EQ(back.user_id, ev.user_id);
    CHECK_STR_EQ(back.event_name, ev.event_name);
    CHECK_STR_EQ(back.metadata, ev.metadata);
    CHECK_INT_EQ(back.timestamp_us, ev.timestamp_us);
    CHECK_INT_EQ(back.received_at_us, ev.received_at_us);
    CHECK_INT_EQ(back.event_id_generated, 0);
    epp_buf_t again = {0};
    CHECK_INT_EQ(epp_event_serialize(&back, &again), 0);
    CHECK_STR_EQ(again.data, out.data);
    epp_buf_free(&again);
    epp_buf_free(&out);
    epp_event_clear(&ev);
    epp_event_clear(&back);
}

static void test_reuse_many(void)
{
    /* Reusing one epp_event_t over many parses keeps working (and, under ASan, leaks nothing). */
    epp_event_t ev;
    epp_event_init(&ev);
    epp_event_error_t err;
    epp_buf_t out = {0};
    for (int i = 0; i < 2000; i++) {
        char in[160];
        int n = snprintf(in, sizeof in,
                         "{\"user_id\":\"user-%d\",\"event_name\":\"e%d\",\"metadata\":{\"i\":%d}}",
                         i, i % 7, i);
        CHECK_INT_EQ(epp_event_parse(in, (size_t)n, C, NOW_US, &ev, &err), 0);
        epp_buf_reset(&out);
        CHECK_INT_EQ(epp_event_serialize(&ev, &out), 0);
        char want[32];
        snprintf(want, sizeof want, "\"metadata\":{\"i\":%d}}", i);
        CHECK(strstr(out.data, want) != NULL);
    }
    epp_buf_free(&out);
    epp_event_clear(&ev);
}

int main(void)
{
    EPP_RUN(test_table);
    EPP_RUN(test_metadata_depth);
    EPP_RUN(test_metadata_size);
    EPP_RUN(test_fields_and_defaults);
    EPP_RUN(test_metadata_exact);
    EPP_RUN(test_serialize_and_kafka_roundtrip);
    EPP_RUN(test_reuse_many);
    return EPP_TEST_RESULT();
}
