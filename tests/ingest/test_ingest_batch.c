/* Unit tests of ingestion_service/ingest_batch.c: media types, request body decoding and the
 * three batch shapes with per-index results. */
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
    CHECK_INT_EQ(ingest_media_type("text/plain"), INGEST_MEDIA_OTHER);
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
    CHECK_STR_EQ(fail.code, "too_large");
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
    CHECK(gz.len < 64 * 1024);
    CHECK_INT_EQ(ingest_body_decode(gz.data, gz.len, "gzip", 1 << 20, &big, &out, &len, &fail),
                 EPP_ETOOBIG);
    CHECK_INT_EQ(fail.status, 413);
    epp_buf_free(&scratch);
    epp_buf_free(&gz);
    epp_buf_free(&big);
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
        ingest_batch_t b = {0};
        ingest_fail_t fail;
        int rc = ingest_batch_parse(bodies[k], strlen(bodies[k]),
                                    k == 2 ? INGEST_MEDIA_NDJSON : INGEST_MEDIA_JSON, 1000,
                                    epp_time_now_us(), &b, &fail);
        CHECK_INT_EQ(rc, 0);
        CHECK_INT_EQ(b.n, 3);
        CHECK_INT_EQ(b.n_valid, 2);
        CHECK_INT_EQ(b.items[0].rc, 0);
        CHECK_MEM_EQ(b.items[0].ev.event_name, b.items[0].ev.event_name_len, "a", 1);
        CHECK(b.items[1].rc < 0);
        CHECK_STR_EQ(b.items[1].err.code, "invalid_field");
        CHECK_STR_EQ(b.items[1].err.field, "user_id");
        CHECK_MEM_EQ(b.items[2].ev.metadata, b.items[2].ev.metadata_len, "{\"n\":1.50}", 10);
        ingest_batch_free(&b);
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
        {"[{},{},{}]", INGEST_MEDIA_JSON, 413, "too_large"},
        {"{}\n{}\n{}\n", INGEST_MEDIA_NDJSON, 413, "too_large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ingest_batch_t b = {0};
        ingest_fail_t fail = {0};
        int rc = ingest_batch_parse(cases[i].body, strlen(cases[i].body), cases[i].media, 2,
                                    epp_time_now_us(), &b, &fail);
        if (rc >= 0 || fail.status != cases[i].status || strcmp(fail.code, cases[i].code) != 0)
            fprintf(stderr, "case %zu: rc %d status %u code %s\n", i, rc, fail.status,
                    fail.code ? fail.code : "(null)");
        CHECK(rc < 0);
        CHECK_INT_EQ(fail.status, cases[i].status);
        CHECK_STR_EQ(fail.code, cases[i].code);
        ingest_batch_free(&b);
    }
    /* Invalid items are not failures of the batch: a non-object element is rejected by index. */
    ingest_batch_t b = {0};
    ingest_fail_t fail;
    CHECK_INT_EQ(ingest_batch_parse("[1,\"x\"]", 7, INGEST_MEDIA_JSON, 2, 0, &b, &fail), 0);
    CHECK_INT_EQ(b.n_valid, 0);
    CHECK_STR_EQ(b.items[0].err.code, "invalid_json");
    ingest_batch_free(&b);
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
