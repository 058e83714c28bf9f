/* ingest_batch: turning a request body into validated events, with no HTTP or Kafka in sight,
 * so that the fuzzer (tests/fuzz/fuzz_batch.c) links it with libepp alone.
 *
 * It covers: the media types each route accepts, gzip request bodies (Content-Encoding), the
 * three batch shapes of docs/contract.md §4 (a JSON array, {"events": [...]}, NDJSON) split into
 * per-index results, and the HTTP status of each validation failure.
 *
 * Thread-safety: none needed; every object here belongs to one request on one thread. */
#ifndef INGEST_BATCH_H
#define INGEST_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "epp_buf.h"
#include "epp_event.h"

typedef enum {
    INGEST_MEDIA_OTHER = 0, /* anything else: 415 */
    INGEST_MEDIA_JSON,      /* application/json, optionally ;charset=utf-8 */
    INGEST_MEDIA_NDJSON,    /* application/x-ndjson (or application/ndjson), charset as above */
} ingest_media_t;

/* Classifies a Content-Type header value (NULL: INGEST_MEDIA_OTHER). Case-insensitive; the only
 * parameter allowed is charset=utf-8 (quoted or not), because we decode nothing else. */
ingest_media_t ingest_media_type(const char *content_type);

/* A request-level failure: the status and the error JSON members to send. */
typedef struct {
    unsigned status; /* 400, 413, 415 */
    const char
        *code; /* "invalid_json", "payload_too_large", "unsupported_media_type", ... (static) */
    char message[192];
    char field[64];
} ingest_fail_t;

/* Decodes the body according to Content-Encoding (NULL or "identity": none; "gzip": inflated
 * with at most max_bytes of output). On success *out and *out_len point either at body itself or at
 * scratch, which receives the inflated bytes (the caller frees scratch). Returns 0, or a
 * negative code with fail filled: 413 too_large (a bomb or an over-limit body), 400
 * invalid_encoding (corrupt gzip), 415 unsupported_media_type (another encoding). */
int ingest_body_decode(const char *body, size_t len, const char *content_encoding, size_t max_bytes,
                       epp_buf_t *scratch, const char **out, size_t *out_len, ingest_fail_t *fail);

/* The HTTP status for an event that failed validation: 413 for a size limit (EPP_ETOOBIG),
 * 503 when memory ran out (EPP_ENOMEM: retrying may work), else 400. */
unsigned ingest_event_error_status(int rc);

/* What ingest_batch_parse() reports, in request order. Both callbacks return 0 to go on or a
 * negative code to stop the parse (which then returns that code). */
typedef struct {
    /* Once, before the first event, when the body is a usable batch of n (1..max) events. After
     * begin, the body as a whole can no longer fail: every event gets its event() call. */
    int (*begin)(size_t n, void *ud);
    /* Once per event. rc == 0: ev is valid -- borrowed until the callback returns (the same
     * epp_event_t is reused for the next event, so nothing is allocated per event); rc < 0
     * (EPP_EINVAL, EPP_ETOOBIG, EPP_ENOMEM): err says why it was rejected. */
    int (*event)(size_t index, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                 void *ud);
    void *ud;
} ingest_batch_visitor_t;

/* Splits and validates a batch body (already decoded) in client mode at now_us, calling the
 * visitor for it. media selects JSON (an array, or an object whose only member is
 * "events": [...]) or NDJSON (one event per line; blank lines ignored). Returns 0 -- individual
 * events may have been rejected, that is not a failure -- or a negative code: with fail filled
 * when the body as a whole is unusable (before begin): not JSON / not a batch shape (400
 * invalid_json), no events (400 invalid_field), more than max_events (413 too_large); or the
 * code a callback returned. */
int ingest_batch_parse(const char *body, size_t len, ingest_media_t media, size_t max_events,
                       int64_t now_us, const ingest_batch_visitor_t *visitor, ingest_fail_t *fail);

#endif
