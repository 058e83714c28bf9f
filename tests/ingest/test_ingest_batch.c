/* Unit tests of ingestion_service/ingest_batch.c: media types, request body decoding and the
 * three batch shapes with per-index results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_gzip.h"
#include "epp_test.h"
#include "epp_time.h"
#include "ingest_batch.h"

static void test_media_type(void)
{
    CHECK_INT_EQ(ingest_media_type("application/json"), INGEST_MEDIA_JSON);
    CHECK_INT_EQ(ingest_media_type("Application/JSON"), INGEST_MEDIA_JSON);
    CHECK_INT_EQ(ingest_media_type("application/json; charset=utf-8"), INGEST_MEDIA_JSON);
    CHECK_INT_EQ(ingest_media_type("application/json;charset=\"UTF-8\""), INGEST_MEDIA_JSON);
    CHECK_INT_EQ(ingest_media_type("application/x-ndjson"), INGEST_MEDIA_NDJSON);
    CHECK_INT_EQ(ingest_media_type("application/ndjson; charset=utf-8"), INGEST_MEDIA_NDJSON);
    CHECK_INT_EQ(ingest_media_type(NULL), INGEST_MEDIA_OTHER);
    CHECK_INT_EQ(ingest_media_type(""), INGEST_MEDIA_OTHER);
    CHECK_INT_EQ(ingest_media_type("text/plain"), INGEST_MEDIA_TEXT);
    CHECK_INT_EQ(ingest_media_type("text/plain;charset=UTF-8"), INGEST_MEDIA_TEXT);
    CHECK_INT_EQ(ingest_media_type("text/plainx"), INGEST_MEDIA_OTHER);
    CHECK_INT_EQ(ingest_media_type("text/html"), INGEST_MEDIA_OTHER);
    CHECK_INT_EQ(ingest_media_type("application/jsonx"), INGEST_MEDIA_OTHER);
    CHECK_INT_EQ(ingest_media_type("application/json; charset=latin1"), INGEST_MEDIA_OTHER);
    CHECK_INT_EQ(ingest_media_type("application/json; boundary=x"), INGEST_MEDIA_OTHER);
}

static void test_body_decode(void)
{
    const char *out;
    size_t len;
    epp_buf_t scratch = {0}, gz = {0}, big = {0};
    ingest_fail_t fail;
    CHECK_INT_EQ(ingest_body_decode("{}", 2, NULL, 100, &scratch, &out, &len, &fail), 0);
    CHECK_MEM_EQ(out, len, "{}", 2);
    CHECK_INT_EQ(ingest_body_decode("{}", 2, " identity ", 100, &scratch, &out, &len, &fail), 0);
    CHECK_INT_EQ(ingest_body_decode("{}", 2, NULL, 1, &scratch, &out, &len, &fail), EPP_ETOOBIG);
    CHECK_INT_EQ(fail.status, 413);
    CHECK_STR_EQ(fail.code, "payload_too_large");
    CHECK_INT_EQ(ingest_body_decode("{}", 2, "br", 100, &scratch, &out, &len, &fail), EPP_EUNSUPP);
    CHECK_INT_EQ(fail.status, 415);

    CHECK_INT_EQ(epp_gzip_deflate("{\"a\":1}", 7, 6, &gz), 0);
    CHECK_INT_EQ(ingest_body_decode(gz.data, gz.len, "GZIP", 100, &scratch, &out, &len, &fail), 0);
    CHECK_MEM_EQ(out, len, "{\"a\":1}", 7);
    CHECK_INT_EQ(
        ingest_body_decode("\x1f\x8b\x08junk", 7, "gzip", 100, &scratch, &out, &len, &fail),
        EPP_EINVAL);
    CHECK_INT_EQ(fail.status, 400);
    CHECK_STR_EQ(fail.code, "invalid_encoding");

    /* A bomb: 8 MiB of zeros stops at the limit with 413. */
    char *zeros = calloc(1, 8 << 20);
    CHECK(zeros != NULL);
    epp_buf_reset(&gz);
    CHECK_INT_EQ(epp_gzip_deflate(zeros, 8 << 20, 9, &gz), 0);
    free(zeros);
    CHECK(gz.len < (size_t)64 * 1024);
    CHECK_INT_EQ(ingest_body_decode(gz.data, gz.len, "gzip", 1 << 20, &big, &out, &len, &fail),
                 EPP_ETOOBIG);
    CHECK_INT_EQ(fail.status, 413);
    epp_buf_free(&scratch);
    epp_buf_free(&gz);
    epp_buf_free(&big);
}

/* Collects what the visitor reports, for the checks below. */
typedef struct {
    size_t begun;
    size_t n;
    size_t n_valid;
    int rc[8];
    char name[8][16];
    char meta[8][64];
    char code[8][64];
    char field[8][64];
} collect_t;

static int collect_begin(size_t n, void *ud)
{
    collect_t *c = ud;
    c->begun = n;
    return 0;
}

static int collect_event(size_t i, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                         void *ud)
{
    collect_t *c = ud;
    if (i != c->n || i >= 8)
        return EPP_EINVAL; /* out of order or too many */
    c->n++;
    c->rc[i] = rc;
    if (rc == 0) {
        c->n_valid++;
        snprintf(c->name[i], sizeof c->name[i], "%.*s", (int)ev->event_name_len, ev->event_name);
        snprintf(c->meta[i], sizeof c->meta[i], "%.*s", (int)ev->metadata_len, ev->metadata);
    } else {
        snprintf(c->code[i], sizeof c->code[i], "%s", err->code ? err->code : "");
        snprintf(c->field[i], sizeof c->field[i], "%s", err->field);
    }
    return 0;
}

static int parse(const char *body, ingest_media_t media, size_t max, collect_t *c,
                 ingest_fail_t *fail)
{
    memset(c, 0, sizeof *c);
    ingest_batch_visitor_t vis = {collect_begin, collect_event, c};
    return ingest_batch_parse(body, strlen(body), media, max, epp_time_now_us(), &vis, fail);
}

static void test_batch_shapes(void)
{
    static const char *bodies[] = {
        "[{\"user_id\":\"u\",\"event_name\":\"a\"},{\"user_id\":\"\",\"event_name\":\"b\"},"
        "{\"user_id\":\"u\",\"event_name\":\"c\",\"metadata\":{\"n\":1.50}}]",
        "{\"events\":[{\"user_id\":\"u\",\"event_name\":\"a\"},{\"user_id\":\"\",\"event_name\":"
        "\"b\"},{\"user_id\":\"u\",\"event_name\":\"c\",\"metadata\":{\"n\":1.50}}]}",
        "{\"user_id\":\"u\",\"event_name\":\"a\"}\n\n{\"user_id\":\"\",\"event_name\":\"b\"}\r\n"
        "  \n{\"user_id\":\"u\",\"event_name\":\"c\",\"metadata\":{\"n\":1.50}}",
    };
    for (int k = 0; k < 3; k++) {
        collect_t c;
        ingest_fail_t fail;
        int rc =
            parse(bodies[k], k == 2 ? INGEST_MEDIA_NDJSON : INGEST_MEDIA_JSON, 1000, &c, &fail);
        CHECK_INT_EQ(rc, 0);
        CHECK_INT_EQ(c.begun, 3);
        CHECK_INT_EQ(c.n, 3);
        CHECK_INT_EQ(c.n_valid, 2);
        CHECK_INT_EQ(c.rc[0], 0);
        CHECK_STR_EQ(c.name[0], "a");
        CHECK(c.rc[1] < 0);
        CHECK_STR_EQ(c.code[1], "invalid_field");
        CHECK_STR_EQ(c.field[1], "user_id");
        CHECK_STR_EQ(c.name[2], "c");
        CHECK_STR_EQ(c.meta[2], "{\"n\":1.50}");
    }
}

static void test_batch_failures(void)
{
    struct {
        const char *body;
        ingest_media_t media;
        unsigned status;
        const char *code;
    } cases[] = {
        {"[", INGEST_MEDIA_JSON, 400, "invalid_json"},
        {"5", INGEST_MEDIA_JSON, 400, "invalid_json"},
        {"[]", INGEST_MEDIA_JSON, 400, "invalid_field"},
        {"\n \n", INGEST_MEDIA_NDJSON, 400, "invalid_field"},
        {"{\"events\":{}}", INGEST_MEDIA_JSON, 400, "invalid_json"},
        {"{\"evts\":[]}", INGEST_MEDIA_JSON, 400, "missing_field"},
        {"{\"events\":[],\"x\":1}", INGEST_MEDIA_JSON, 400, "unknown_field"},
        {"[{},{},{}]", INGEST_MEDIA_JSON, 413, "payload_too_large"},
        {"{}\n{}\n{}\n", INGEST_MEDIA_NDJSON, 413, "payload_too_large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        collect_t c;
        ingest_fail_t fail = {0};
        int rc = parse(cases[i].body, cases[i].media, 2, &c, &fail);
        if (rc >= 0 || fail.status != cases[i].status || strcmp(fail.code, cases[i].code) != 0)
            fprintf(stderr, "case %zu: rc %d status %u code %s\n", i, rc, fail.status,
                    fail.code ? fail.code : "(null)");
        CHECK(rc < 0);
        CHECK_INT_EQ(fail.status, cases[i].status);
        CHECK_STR_EQ(fail.code, cases[i].code);
        CHECK_INT_EQ(c.begun, 0); /* a request-level failure comes before begin */
    }
    /* Invalid items are not failures of the batch: a non-object element is rejected by index. */
    collect_t c;
    ingest_fail_t fail;
    CHECK_INT_EQ(parse("[1,\"x\"]", INGEST_MEDIA_JSON, 2, &c, &fail), 0);
    CHECK_INT_EQ(c.n, 2);
    CHECK_INT_EQ(c.n_valid, 0);
    CHECK_STR_EQ(c.code[0], "invalid_json");
    /* A callback's error stops the parse and is returned. */
    CHECK_INT_EQ(parse("[{},{},{},{},{},{},{},{},{}]", INGEST_MEDIA_JSON, 100, &c, &fail),
                 EPP_EINVAL);
    CHECK_INT_EQ(c.n, 8);
    CHECK_INT_EQ(ingest_event_error_status(EPP_ETOOBIG), 413);
    CHECK_INT_EQ(ingest_event_error_status(EPP_EINVAL), 400);
}

int main(void)
{
    EPP_RUN(test_media_type);
    EPP_RUN(test_body_decode);
    EPP_RUN(test_batch_shapes);
    EPP_RUN(test_batch_failures);
    return EPP_TEST_RESULT();
}
