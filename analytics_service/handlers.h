/* HTTP handlers of the analytics API (SPEC section 7): parameter checks, one pool connection
 * per request, JSON answers. */
#ifndef ANALYTICS_HANDLERS_H
#define ANALYTICS_HANDLERS_H

#include <stdint.h>

#include "db_pool.h"
#include "epp_http.h"

/* Shared by every handler; read-only once the server has started. */
typedef struct {
    analytics_pool_t *pool; /* borrowed */
    int pool_wait_ms;       /* how long a request waits for a connection */
    int64_t max_points;     /* timeseries answers larger than this are a 400 */
} analytics_ctx_t;

/* Adds the /analytics/... routes. ctx must outlive the server. 0 or a negative EPP_E* code. */
int analytics_handlers_register(epp_http_server_t *srv, analytics_ctx_t *ctx);

#endif
