/* The event: docs/contract.md §4's validation rules and the canonical Kafka message form, in one
 * place, so that the Ingestion Service (client input) and the Event Consumer (Kafka input)
 * agree exactly on what a storable event is.
 *
 * Canonical JSON (the Kafka message value), members in this order:
 *   {"event_id":"<uuid>","user_id":"...","event_name":"...","timestamp":"<RFC 3339 UTC>",
 *    "received_at":"<RFC 3339 UTC>","metadata":{...}}
 * metadata is the client's object re-serialised compactly with number text unchanged.
 *
 * Thread-safety: none needed; an epp_event_t is owned by one thread at a time. */
#ifndef EPP_EVENT_H
#define EPP_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "epp_buf.h"
#include "epp_json.h"
#include "epp_uuid.h"

#define EPP_EVENT_MAX_STRING    256                 /* bytes, user_id and event_name */
#define EPP_EVENT_MAX_METADATA  ((size_t)32 * 1024) /* bytes of compact metadata JSON */
#define EPP_EVENT_MAX_DEPTH     32                  /* metadata nesting; the metadata object is 1 */
#define EPP_EVENT_MAX_FUTURE_US (24LL * 3600 * 1000000) /* timestamp - received_at */

typedef enum {
    /* Client input: event_id and timestamp optional (UUIDv7 / the time of receipt are filled
     * in), metadata optional (default {}), received_at is set to now_us and is not accepted
     * from the client (an unknown field). */
    EPP_EVENT_FROM_CLIENT,
    /* A canonical Kafka message: every member required, received_at taken from the message,
     * and the future-timestamp rule applied against received_at. */
    EPP_EVENT_FROM_KAFKA,
} epp_event_mode_t;

typedef struct {
    epp_uuid_t event_id;
    const char *user_id; /* NUL-terminated; point into storage below */
    size_t user_id_len;
    const char *event_name;
    size_t event_name_len;
    const char *metadata; /* compact JSON object text, "{}" by default */
    size_t metadata_len;
    int64_t timestamp_us;
    int64_t received_at_us;
    int event_id_generated; /* 1 when the server made the event_id */
    epp_buf_t storage;      /* owns the strings above */
} epp_event_t;

typedef struct {
    /* Machine-readable code for the API's error JSON: "invalid_json", "invalid_field",
     * "missing_field", "unknown_field", "payload_too_large". */
    const char *code;
    char message[192]; /* e.g. "user_id must be a non-empty string of at most 256 bytes" */
    char field[64];    /* the offending top-level field, or "" */
} epp_event_error_t;

/* Zeroes ev; call before the first parse. */
void epp_event_init(epp_event_t *ev);
/* Frees ev's storage; ev can be reused after epp_event_init(). Accepts an initialised ev. */
void epp_event_clear(epp_event_t *ev);

/* Parses and validates one event document. now_us is the time of receipt (client mode).
 * Returns 0, or EPP_EINVAL / EPP_ETOOBIG with err filled. ev is cleared first and owns copies
 * of everything it points to (buf may be freed afterwards). */
int epp_event_parse(const char *buf, size_t len, epp_event_mode_t mode, int64_t now_us,
                    epp_event_t *ev, epp_event_error_t *err);

/* The same, for a value that is already parsed (an element of a batch array). */
int epp_event_from_value(const epp_json_value_t *v, epp_event_mode_t mode, int64_t now_us,
                         epp_event_t *ev, epp_event_error_t *err);

/* An event assembled from values the caller picked out of another document (the Segment routes
 * of epp-ingest), under the rules of a client event: user_id and event_name as in
 * docs/contract.md §4 (reported under the caller's field names), the timestamp between 1970 and
 * 9999 and at most 24 h after now_us, the metadata object (the given members, in order) at most 32
 * KiB of compact JSON and EPP_EVENT_MAX_DEPTH deep. Every pointer is borrowed for the call. */
typedef struct {
    const epp_json_value_t *user_id; /* NULL: missing */
    const char *user_id_field;       /* its name in errors, e.g. "userId" */
    const epp_json_value_t *event_name;
    const char *event_name_field;
    const epp_json_member_t *metadata; /* the members of the metadata object */
    size_t metadata_n;
    const epp_uuid_t *event_id; /* NULL: a new UUIDv7 */
    int64_t timestamp_us;
    const char *timestamp_field;
} epp_event_parts_t;

/* Builds ev (received_at = now_us) from parts. 0, or EPP_EINVAL / EPP_ETOOBIG / EPP_ENOMEM with
 * err filled; ev owns copies of everything. */
int epp_event_from_parts(const epp_event_parts_t *parts, int64_t now_us, epp_event_t *ev,
                         epp_event_error_t *err);

/* The timestamp rule of a client event for one value: an RFC 3339 string or a JSON integer of
 * epoch milliseconds, between 1970 and 9999. 0 with *us set, or EPP_EINVAL. */
int epp_event_instant(const epp_json_value_t *v, int64_t *us);

/* Appends the canonical JSON of ev to out. 0 or EPP_ENOMEM. */
int epp_event_serialize(const epp_event_t *ev, epp_buf_t *out);

#endif
