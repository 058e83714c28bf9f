/* libFuzzer target: the batch splitter and body decoding of epp-ingest
 * (ingestion_service/ingest_batch.c) -- the code between an untrusted POST /events/batch body and
 * the event validator.
 *
 * Input layout: byte 0 chooses the mode (bit 0: NDJSON instead of JSON; bit 1: the rest is a
 * gzip body to decode first, as with Content-Encoding: gzip); the rest is the body. The body's
 * first line also goes through ingest_media_type() as a Content-Type value.
 *
 * Properties beyond "no crash, no sanitizer report":
 *  - a failed batch has a status in {400, 413, 415, 503}, a code and a UTF-8 message;
 *  - a failure comes before the visitor's begin; a parsed batch reports 1..MAX_EVENTS events,
 *    each exactly once and in order; each rejected event has a code and a UTF-8 message (they
 *    go into the JSON reply); each valid event's canonical form is read back in Kafka mode.
 * A violated property aborts, which libFuzzer reports as a crash.
 *
 * The target links epp_ingest_core, the library the service and its tests link
 * (tests/fuzz/CMakeLists.txt); the splitter itself depends on nothing beyond libepp. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_batch.h"
#include "epp_error.h"
#include "epp_event.h"
#include "epp_json.h"
#include "epp_time.h"
#include "fuzz_check.h"

#define NOW_US     (1795768305LL * EPP_USEC_PER_SEC)
#define MAX_EVENTS 50
#define MAX_BYTES  (1 << 20)

static void check_fail(const ingest_fail_t *fail)
{
    REQUIRE(fail->status == 400 || fail->status == 413 || fail->status == 415 ||
            fail->status == 503);
    REQUIRE(fail->code && fail->code[0]);
    REQUIRE(fail->message[0] && epp_json_utf8_valid(fail->message, strlen(fail->message)));
    REQUIRE(epp_json_utf8_valid(fail->field, strlen(fail->field)));
}

static void check_content_type(const char *data, size_t size)
{
    char ct[128];
    size_t n = 0;
    while (n < size && n < sizeof ct - 1 && data[n] != '\n')
        n++;
    memcpy(ct, data, n);
    ct[n] = '\0';
    ingest_media_t m = ingest_media_type(ct);
    REQUIRE(m == INGEST_MEDIA_OTHER || m == INGEST_MEDIA_JSON || m == INGEST_MEDIA_NDJSON ||
            m == INGEST_MEDIA_TEXT);
}

/* What the visitor saw: every event reported once, in order, after begin. */
typedef struct {
    size_t begun;
    size_t seen;
} check_t;

static int check_begin(size_t n, void *ud)
{
    check_t *chk = ud;
    REQUIRE(chk->begun == 0 && n >= 1 && n <= MAX_EVENTS);
    chk->begun = n;
    return 0;
}

static int check_event(size_t index, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                       void *ud)
{
    check_t *chk = ud;
    REQUIRE(index == chk->seen && index < chk->begun);
    chk->seen++;
    if (rc < 0) {
        REQUIRE(err->code && err->code[0]);
        REQUIRE(epp_json_utf8_valid(err->message, strlen(err->message)));
        unsigned st = ingest_event_error_status(rc);
        REQUIRE(st == 400 || st == 413 || st == 503);
        return 0;
    }
    fuzz_check_canonical(ev, NOW_US);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    check_content_type(in, len);

    epp_buf_t scratch = {0};
    ingest_fail_t fail;
    memset(&fail, 0, sizeof fail);
    const char *body = in;
    size_t body_len = len;
    if (mode & 2) {
        if (ingest_body_decode(in, len, "gzip", MAX_BYTES, &scratch, &body, &body_len, &fail) < 0) {
            check_fail(&fail);
            epp_buf_free(&scratch);
            return 0;
        }
        REQUIRE(body_len <= MAX_BYTES);
    }

    check_t chk;
    memset(&chk, 0, sizeof chk);
    ingest_batch_visitor_t vis = {check_begin, check_event, &chk};
    int rc =
        ingest_batch_parse(body, body_len, (mode & 1) ? INGEST_MEDIA_NDJSON : INGEST_MEDIA_JSON,
                           MAX_EVENTS, NOW_US, &vis, &fail);
    if (rc < 0) {
        check_fail(&fail);
        REQUIRE(chk.begun == 0);
    } else {
        REQUIRE(chk.begun >= 1 && chk.begun <= MAX_EVENTS);
        REQUIRE(chk.seen == chk.begun);
    }
    epp_buf_free(&scratch);
    return 0;
}
