/* ingest_batch: turning a request body into validated events, with no HTTP or Kafka in sight,
 * so that the fuzzer (tests/fuzz/fuzz_batch.c) links it with libepp alone.
 *
 * It covers: the media types each route accepts, gzip request bodies (Content-Encoding), the
 * three batch shapes of SPEC section 4 (a JSON array, {"events": [...]}, NDJSON) split into
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
    unsigned status;  /* 400, 413, 415 */
    const char *code; /* "invalid_json", "too_large", "unsupported_media_type", ... (static) */
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

/* One element of a batch: either a valid event (rc == 0) or a rejection (rc < 0, err filled). */
typedef struct {
    int rc;
    epp_event_t ev;
    epp_event_error_t err;
} ingest_item_t;

typedef struct {
    ingest_item_t *items; /* n of them, in request order */
    size_t n;
    size_t n_valid;
} ingest_batch_t;

/* Splits and validates a batch body (already decoded) in client mode at now_us. media selects
 * JSON (an array, or an object whose only member is "events": [...]) or NDJSON (one event per
 * line; blank lines ignored). Returns 0 with batch filled -- individual events may be rejected,
 * that is not a failure -- or a negative code with fail filled when the body as a whole is
 * unusable: not JSON / not a batch shape (400 invalid_json), no events (400 invalid_field),
 * more than max_events (413 too_large). batch must be zeroed; free it with ingest_batch_free()
 * in both cases. */
int ingest_batch_parse(const char *body, size_t len, ingest_media_t media, size_t max_events,
                       int64_t now_us, ingest_batch_t *batch, ingest_fail_t *fail);

/* Frees every event and the item array; batch is zeroed. Accepts a zeroed batch. */
void ingest_batch_free(ingest_batch_t *batch);

#endif
