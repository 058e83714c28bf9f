/* ingest_segment: Segment Tracking API bodies (the /v1 routes) into validated events, with no
 * HTTP or Kafka in sight, so that the fuzzer (tests/fuzz/fuzz_segment.c) links it with libepp
 * alone. The mapping is documented in docs/segment.md; in short, each message becomes one event:
 *
 *   event_id   messageId when it is a UUID; else UUIDv5(INGEST_SEGMENT_NAMESPACE, messageId);
 *              no messageId: a new UUIDv7
 *   user_id    userId, else anonymousId (a string, or a number's text); one is required
 *   event_name the track's event; "identify", "page", "screen", "group", "alias" otherwise
 *   timestamp  (originalTimestamp, else timestamp) + (receivedAt - sentAt) when sentAt is given
 *              (the message's, else the batch's); else that client time; else receivedAt
 *   metadata   {"type", "messageId", "anonymousId", "name", "category", "groupId",
 *               "previousId", "properties", "traits", "context", "originalTimestamp",
 *               "sentAt"}: those the message has, in this order, values as sent (the last two
 *              only when they corrected the timestamp); "properties"
 *              ({} when absent) on track, page and screen, "traits" ({} when absent) on identify
 *              and group; a batch message without context gets the batch's
 *
 * Thread-safety: none needed; everything here belongs to one request on one thread. */
#ifndef INGEST_SEGMENT_H
#define INGEST_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "epp_event.h"
#include "ingest_batch.h"

#define INGEST_SEGMENT_MAX_MESSAGE ((size_t)32 * 1024)  /* compact JSON bytes of one message */
#define INGEST_SEGMENT_MAX_BODY    ((size_t)500 * 1024) /* bytes of a request, after gzip */

/* The namespace of the UUIDv5 event ids made from messageIds that are not UUIDs:
 * UUIDv5(NAMESPACE_URL, "urn:epp:segment:messageId"). */
#define INGEST_SEGMENT_NAMESPACE "c3c9574d-162e-543f-bb73-400f86b351f4"

typedef enum {
    INGEST_SEGMENT_BATCH = 0, /* {"batch": [...], ...}: each message names its type */
    INGEST_SEGMENT_TRACK,
    INGEST_SEGMENT_IDENTIFY,
    INGEST_SEGMENT_PAGE,
    INGEST_SEGMENT_SCREEN,
    INGEST_SEGMENT_GROUP,
    INGEST_SEGMENT_ALIAS,
} ingest_segment_kind_t;

/* The type name of kind ("track", ...; "batch"). Static. */
const char *ingest_segment_kind_name(ingest_segment_kind_t kind);

/* What ingest_segment_parse() reports. Both callbacks return 0 to go on or a negative code to
 * stop the parse, which then returns that code. */
typedef struct {
    /* Once, before the first message, when the body is usable: n (>= 1) messages follow, and
     * the body's writeKey (NULL when it has none or it is not a string; borrowed for the call).
     * The caller authenticates here. */
    int (*begin)(size_t n, const char *write_key, size_t write_key_len, void *ud);
    /* Once per message, in order. rc == 0: ev is valid (borrowed until the callback returns);
     * rc < 0 (EPP_EINVAL, EPP_ETOOBIG, EPP_ENOMEM): err says why it was refused. message_id is
     * the message's messageId when it has a string one (else NULL), for naming it in a reply. */
    int (*message)(size_t index, int rc, const epp_event_t *ev, const epp_event_error_t *err,
                   const char *message_id, size_t message_id_len, void *ud);
    void *ud;
} ingest_segment_visitor_t;

/* Parses a decoded body of the given kind (a single message, or a batch of at most max_messages)
 * received at now_us. Returns 0 (messages may have been refused: that is not a failure), a
 * callback's negative code, or a negative code with fail filled when the body as a whole is
 * unusable: 400 for not JSON, not an object, no "batch" array, an empty batch, more than
 * max_messages (payload_too_large: it bounds the work and the reply a body can cause); 503 out
 * of memory. */
int ingest_segment_parse(const char *body, size_t len, ingest_segment_kind_t kind,
                         size_t max_messages, int64_t now_us,
                         const ingest_segment_visitor_t *visitor, ingest_fail_t *fail);

#endif
