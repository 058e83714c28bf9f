/* libFuzzer target: the Segment Tracking API parser of epp-ingest
 * (ingestion_service/ingest_segment.c) -- the code between an untrusted /v1 body and the event
 * validator -- with the body decoding in front of it.
 *
 * Input layout: byte 0 chooses the route (bits 0-2: 1..6 one message of that type, track to
 * alias; 0 or 7 a batch) and bit 3 makes the rest a gzip body to decode first, as with
 * Content-Encoding: gzip; the rest is the body.
 *
 * Properties beyond "no crash, no sanitizer report":
 *  - a failed body has status 400 or 503, a code and a UTF-8 message, and comes before begin;
 *  - a parsed body calls begin once (n >= 1; one for a single message) and then reports each
 *    message exactly once, in order; a refused message has a code and UTF-8 message and field
 *    (they go into the JSON reply);
 *  - a valid message's canonical form reads back in Kafka mode with the same event_id, its
 *    event_name is the type's for every type but track, its metadata is an object whose "type"
 *    member comes first, and its timestamp is at most 24 h ahead of the time of receipt.
 * A violated property aborts, which libFuzzer reports as a crash.
 *
 * The target links epp_ingest_core, the library the service and its tests link
 * (tests/fuzz/CMakeLists.txt). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_batch.h"
#include "ingest_segment.h"
#include "epp_error.h"
#include "epp_event.h"
#include "epp_json.h"
#include "epp_time.h"
#include "fuzz_check.h"

#define NOW_US       (1795768305LL * EPP_USEC_PER_SEC)
#define MAX_MESSAGES 50

typedef struct {
    ingest_segment_kind_t kind;
    size_t begun;
    size_t seen;
} check_t;

static int check_begin(size_t n, const char *key, size_t key_len, void *ud)
{
    check_t *chk = ud;
    REQUIRE(chk->begun == 0 && n >= 1 && n <= MAX_MESSAGES);
    REQUIRE(chk->kind == INGEST_SEGMENT_BATCH || n == 1);
    REQUIRE(!key || epp_json_utf8_valid(key, key_len) || key_len == 0);
    chk->begun = n;
    return 0;
}

static int check_message(size_t index, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                         const char *mid, size_t mid_len, void *ud)
{
    check_t *chk = ud;
    REQUIRE(index == chk->seen && index < chk->begun);
    chk->seen++;
    REQUIRE(!mid || mid_len == 0 || epp_json_utf8_valid(mid, mid_len));
    if (rc < 0) {
        REQUIRE(rc == EPP_EINVAL || rc == EPP_ETOOBIG || rc == EPP_ENOMEM);
        REQUIRE(err->code && err->code[0]);
        REQUIRE(err->message[0] && epp_json_utf8_valid(err->message, strlen(err->message)));
        REQUIRE(epp_json_utf8_valid(err->field, strlen(err->field)));
        return 0;
    }
    REQUIRE(ev->timestamp_us - NOW_US <= EPP_EVENT_MAX_FUTURE_US);
    REQUIRE(ev->metadata_len <= EPP_EVENT_MAX_METADATA);
    REQUIRE(ev->metadata_len > 9 && memcmp(ev->metadata, "{\"type\":\"", 9) == 0);
    if (chk->kind != INGEST_SEGMENT_BATCH && chk->kind != INGEST_SEGMENT_TRACK) {
        const char *name = ingest_segment_kind_name(chk->kind);
        REQUIRE(ev->event_name_len == strlen(name) &&
                memcmp(ev->event_name, name, ev->event_name_len) == 0);
    }
    fuzz_check_canonical(ev, NOW_US);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    unsigned k = mode & 7;
    check_t chk = {.kind = k >= 1 && k <= 6 ? (ingest_segment_kind_t)k : INGEST_SEGMENT_BATCH};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    epp_buf_t scratch = {0};
    ingest_fail_t fail;
    memset(&fail, 0, sizeof fail);
    if (mode & 8) {
        if (ingest_body_decode(body, len, "gzip", INGEST_SEGMENT_MAX_BODY, &scratch, &body, &len,
                               &fail) < 0) {
            REQUIRE(fail.status == 400 || fail.status == 413);
            epp_buf_free(&scratch);
            return 0;
        }
    }
    ingest_segment_visitor_t vis = {check_begin, check_message, &chk};
    int rc = ingest_segment_parse(body, len, chk.kind, MAX_MESSAGES, NOW_US, &vis, &fail);
    if (rc < 0) {
        REQUIRE(chk.begun == 0);
        REQUIRE(fail.status == 400 || fail.status == 503);
        REQUIRE(fail.code && fail.code[0]);
        REQUIRE(fail.message[0] && epp_json_utf8_valid(fail.message, strlen(fail.message)));
    } else {
        REQUIRE(chk.begun >= 1 && chk.seen == chk.begun);
    }
    epp_buf_free(&scratch);
    return 0;
}
