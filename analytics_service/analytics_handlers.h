/* HTTP handlers of the analytics API (docs/contract.md §7): parameter checks, one pool connection
 * per request, JSON answers. */
#ifndef ANALYTICS_HANDLERS_H
#define ANALYTICS_HANDLERS_H

#include <stdint.h>

#include "analytics_pool.h"
#include "analytics_ucache.h"
#include "epp_http.h"
#include "epp_trace.h"

#define ANALYTICS_NROUTES 6

typedef struct analytics_ctx analytics_ctx_t;

/* The user data of one route (private to analytics_handlers.c). */
typedef struct {
    analytics_ctx_t *ctx;
    const void *route;
} analytics_binding_t;

/* Shared by every handler; read-only once the server has started. */
struct analytics_ctx {
    analytics_pool_t *pool;     /* borrowed */
    int pool_wait_ms;           /* how long a request waits for a connection */
    int64_t max_points;         /* timeseries answers larger than this are a 400 */
    epp_tracer_t *tracer;       /* borrowed; NULL: tracing off (no span, no cost) */
    analytics_ucache_t *ucache; /* borrowed; NULL: user bitmaps not cached */
    /* Filled by analytics_handlers_register(). */
    epp_http_server_t *srv; /* for server.port */
    analytics_binding_t bindings[ANALYTICS_NROUTES];
};

/* Adds the /analytics/... routes; each request becomes a SERVER span when ctx->tracer is set.
 * ctx must outlive the server. 0 or a negative EPP_E* code. */
int analytics_handlers_register(epp_http_server_t *srv, analytics_ctx_t *ctx);

#endif
