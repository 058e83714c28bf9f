/* libFuzzer target: epp_event_parse() in client mode, the ingestion hot path for untrusted input.
 *
 * Beyond "no crash, no sanitizer report" it checks the properties the services rely on:
 *  - an accepted event has fields within docs/contract.md §4's bounds, and its canonical form is
 * read back by the Kafka mode into the same event, which serialises to the same bytes;
 *  - every error has a code and a message that are valid UTF-8 (they go into JSON replies);
 *  - any document epp_json accepts re-serialises to JSON that parses to the same serialisation.
 * A violated property aborts, which libFuzzer reports as a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_event.h"
#include "epp_json.h"
#include "epp_time.h"

/* 2026-11-27T08:31:45Z: a fixed "now" keeps runs reproducible. */
#define NOW_US (1795768305LL * EPP_USEC_PER_SEC)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_json_roundtrip(const char *data, size_t size)
{
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    if (epp_json_parse(data, size, NULL, &doc, &err)) {
        REQUIRE(doc == NULL);
        REQUIRE(err.kind && err.message[0]);
        REQUIRE(epp_json_utf8_valid(err.message, strlen(err.message)));
        return;
    }
    epp_buf_t a = {0}, b = {0};
    REQUIRE(epp_json_serialize(epp_json_root(doc), &a) == 0);
    epp_json_doc_destroy(doc);
    doc = NULL;
    REQUIRE(epp_json_parse(a.data, a.len, NULL, &doc, &err) == 0);
    REQUIRE(epp_json_serialize(epp_json_root(doc), &b) == 0);
    REQUIRE(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    epp_json_doc_destroy(doc);
    epp_buf_free(&a);
    epp_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    epp_event_t ev, back;
    epp_event_init(&ev);
    epp_event_init(&back);
    epp_event_error_t err;
    memset(&err, 0, sizeof err);

    int rc = epp_event_parse(in, size, EPP_EVENT_FROM_CLIENT, NOW_US, &ev, &err);
    if (rc) {
        REQUIRE(err.code != NULL);
        REQUIRE(err.message[0] != '\0');
        REQUIRE(epp_json_utf8_valid(err.message, strlen(err.message)));
        REQUIRE(epp_json_utf8_valid(err.field, strlen(err.field)));
    } else {
        REQUIRE(ev.user_id_len >= 1 && ev.user_id_len <= EPP_EVENT_MAX_STRING);
        REQUIRE(ev.event_name_len >= 1 && ev.event_name_len <= EPP_EVENT_MAX_STRING);
        REQUIRE(strlen(ev.user_id) == ev.user_id_len);
        REQUIRE(epp_json_utf8_valid(ev.user_id, ev.user_id_len));
        REQUIRE(epp_json_utf8_valid(ev.event_name, ev.event_name_len));
        REQUIRE(ev.metadata_len <= EPP_EVENT_MAX_METADATA);
        REQUIRE(ev.metadata[0] == '{');
        REQUIRE(ev.timestamp_us - ev.received_at_us <= EPP_EVENT_MAX_FUTURE_US);

        epp_buf_t a = {0}, b = {0};
        REQUIRE(epp_event_serialize(&ev, &a) == 0);
        rc = epp_event_parse(a.data, a.len, EPP_EVENT_FROM_KAFKA, 0, &back, &err);
        if (rc)
            fprintf(stderr, "canonical form rejected: %s: %s\n%s\n", err.code, err.message, a.data);
        REQUIRE(rc == 0);
        REQUIRE(memcmp(&back.event_id, &ev.event_id, sizeof ev.event_id) == 0);
        REQUIRE(back.timestamp_us == ev.timestamp_us);
        REQUIRE(back.received_at_us == ev.received_at_us);
        REQUIRE(back.metadata_len == ev.metadata_len);
        REQUIRE(memcmp(back.metadata, ev.metadata, ev.metadata_len) == 0);
        REQUIRE(epp_event_serialize(&back, &b) == 0);
        REQUIRE(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
        epp_buf_free(&a);
        epp_buf_free(&b);
    }
    epp_event_clear(&ev);
    epp_event_clear(&back);

    check_json_roundtrip(in, size);
    return 0;
}
