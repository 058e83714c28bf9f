/* ingest_segment_http: the Segment-compatible routes of epp-ingest (docs/segment.md):
 * POST /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias (one message), and
 * POST /v1/batch (also /v1/import), with the one-letter names analytics.js uses (/v1/t, /v1/i,
 * /v1/p, /v1/s, /v1/g, /v1/a, /v1/b). Each message becomes one event (ingest_segment.h); the
 * reply, 200 {"success":true}, comes only after Kafka acknowledged every stored message.
 *
 * Authentication: the write key as HTTP Basic user name, or "writeKey" in the body
 * (EPP_HTTP_ROUTE_SELF_AUTH); with INGEST_API_KEYS set it must be one of those keys.
 *
 * Threads: as ingest_http.h (handlers on the HTTP workers, replies from delivery reports). */
#ifndef INGEST_SEGMENT_HTTP_H
#define INGEST_SEGMENT_HTTP_H

#include "epp_http.h"
#include "ingest_req.h"

/* Adds the /v1 routes to srv (app borrowed for the server's lifetime). 0 or EPP_EINVAL. */
int ingest_segment_routes(ingest_app_t *app, epp_http_server_t *srv);

#endif
