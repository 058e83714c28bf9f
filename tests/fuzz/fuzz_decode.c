/* libFuzzer target: the Event Consumer's message decoder -- epp_event_parse() in Kafka mode on an
 * arbitrary message value -- and the COPY encoding of what it accepts (common/epp_pgcopy.h).
 *
 * Properties checked beyond "no crash, no sanitizer report":
 *  - a rejected message has an error code and a message (they become dead-letter headers);
 *  - an accepted event is within docs/contract.md §4's bounds, has valid UTF-8 strings without NUL
 *    (what Postgres text and jsonb accept), and its canonical form parses back to the same event;
 *  - its binary COPY tuple has exactly the length the format defines (5 fields), and its text
 *    COPY line has exactly 4 field separators and one line end -- no tab, newline or carriage
 *    return leaks unescaped out of a field. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_event.h"
#include "epp_json.h"
#include "epp_pgcopy.h"
#include "epp_time.h"

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_copy(const epp_event_t *ev)
{
    epp_pgcopy_row_t row = {
        .event_id = ev->event_id,
        .user_id = ev->user_id,
        .user_id_len = ev->user_id_len,
        .event_name = ev->event_name,
        .event_name_len = ev->event_name_len,
        .metadata = ev->metadata,
        .metadata_len = ev->metadata_len,
        .timestamp_us = ev->timestamp_us,
    };
    epp_buf_t bin = {0}, txt = {0};
    REQUIRE(epp_pgcopy_row(&bin, EPP_PGCOPY_BINARY, &row) == 0);
    REQUIRE(bin.len == 2 + (4 + 16) + (4 + ev->user_id_len) + (4 + ev->event_name_len) +
                           (4 + 1 + ev->metadata_len) + (4 + 8));
    REQUIRE(epp_pgcopy_row(&txt, EPP_PGCOPY_TEXT, &row) == 0);
    size_t tabs = 0, newlines = 0;
    for (size_t i = 0; i < txt.len; i++) {
        tabs += txt.data[i] == '\t';
        newlines += txt.data[i] == '\n';
        REQUIRE(txt.data[i] != '\r' && txt.data[i] != '\0');
    }
    REQUIRE(tabs == 4 && newlines == 1 && txt.data[txt.len - 1] == '\n');
    epp_buf_free(&bin);
    epp_buf_free(&txt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    epp_event_t ev, again;
    epp_event_error_t err;
    epp_event_init(&ev);
    epp_event_init(&again);
    int rc = epp_event_parse((const char *)data, size, EPP_EVENT_FROM_KAFKA, 0, &ev, &err);
    if (rc != 0) {
        REQUIRE(err.code != NULL && err.code[0] != '\0');
        REQUIRE(err.message[0] != '\0');
        epp_event_clear(&ev);
        return 0;
    }
    REQUIRE(ev.user_id_len > 0 && ev.user_id_len <= EPP_EVENT_MAX_STRING);
    REQUIRE(ev.event_name_len > 0 && ev.event_name_len <= EPP_EVENT_MAX_STRING);
    REQUIRE(ev.metadata_len >= 2 && ev.metadata_len <= EPP_EVENT_MAX_METADATA);
    REQUIRE(ev.metadata[0] == '{' && ev.metadata[ev.metadata_len - 1] == '}');
    REQUIRE(epp_json_utf8_valid(ev.user_id, ev.user_id_len));
    REQUIRE(epp_json_utf8_valid(ev.event_name, ev.event_name_len));
    REQUIRE(epp_json_utf8_valid(ev.metadata, ev.metadata_len));
    REQUIRE(ev.timestamp_us - ev.received_at_us <= EPP_EVENT_MAX_FUTURE_US);
    check_copy(&ev);

    /* The canonical form reads back to the same event. */
    epp_buf_t canon = {0};
    REQUIRE(epp_event_serialize(&ev, &canon) == 0);
    REQUIRE(epp_event_parse(canon.data, canon.len, EPP_EVENT_FROM_KAFKA, 0, &again, &err) == 0);
    REQUIRE(memcmp(ev.event_id.b, again.event_id.b, 16) == 0);
    REQUIRE(ev.timestamp_us == again.timestamp_us && ev.received_at_us == again.received_at_us);
    REQUIRE(ev.user_id_len == again.user_id_len &&
            memcmp(ev.user_id, again.user_id, ev.user_id_len) == 0);
    REQUIRE(ev.event_name_len == again.event_name_len &&
            memcmp(ev.event_name, again.event_name, ev.event_name_len) == 0);
    REQUIRE(ev.metadata_len == again.metadata_len &&
            memcmp(ev.metadata, again.metadata, ev.metadata_len) == 0);
    epp_buf_free(&canon);
    epp_event_clear(&ev);
    epp_event_clear(&again);
    return 0;
}
