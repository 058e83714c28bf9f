/* evgen: random but valid events for the client tools (epp-send, epp-load), and the URL rule
 * they share.
 *
 * Events look like what a web shop sends: user_id "<prefix><n>", an event name from a list, and
 * metadata shaped by the event name ({"page":"/p/17"}, {"amount":12.5,"currency":"EUR"}...).
 * With a test marker, every event's metadata also holds {"epp_test": "<marker>"}: the marker
 * epp-admin delete-test and backup --where-test select on (metadata ? 'epp_test').
 *
 * Not thread-safe: one generator per thread (it holds the random state). */
#ifndef EPP_EVGEN_H
#define EPP_EVGEN_H

#include <stddef.h>
#include <stdint.h>

#include "epp_buf.h"
#include "epp_config.h"

#define EPP_EVGEN_DEFAULT_NAMES "page_view,click,signup,purchase,add_to_cart,search,login,logout"

/* The options of the clients that send generated events (epp-send, epp-load), declared once
 * (see common/epp_options.h): the target, the request shape, and what the events hold. st is
 * the tool's configuration struct, which has these fields under these names. */
/* clang-format off */
#define EPP_EVGEN_OPTS(st, users_def, prefix_def)                                                  \
    EPP_CONF_STR("url", "EPP_INGEST_URL", "http://localhost:8001/events", st, url,                 \
                 "Ingestion Service base URL, or its full /events URL"),                           \
    EPP_CONF_SECRET_STR("api-key", "EPP_API_KEY", NULL, st, api_key,                               \
                        "API key, sent as Authorization: Bearer"),                                 \
    EPP_CONF_INT("batch", NULL, "0", 0, 1000, st, batch,                                           \
                 "Events per request via POST /events/batch (0: one event per POST /events)"),     \
    EPP_CONF_DBL("timeout", NULL, "10", 0.01, 3600, st, timeout_s,                                 \
                 "Seconds before a request counts as failed; also the longest wait for the "       \
                 "last answers"),                                                                  \
    EPP_CONF_INT("users", NULL, users_def, 1, 100000000, st, users,                                \
                 "Distinct users the events are spread over (user_id: --user-prefix and a "        \
                 "number)"),                                                                       \
    EPP_CONF_STR("user-prefix", NULL, prefix_def, st, user_prefix, "user_id prefix"),              \
    EPP_CONF_STR("event-names", NULL, EPP_EVGEN_DEFAULT_NAMES, st, event_names,                    \
                 "Comma-separated event names to pick from"),                                      \
    EPP_CONF_STR("test-marker", NULL, NULL, st, test_marker,                                       \
                 "Mark the events as test data: metadata gets {\"epp_test\": MARKER} (see "        \
                 "epp-admin delete-test)")
/* clang-format on */

typedef struct {
    char **names; /* owned */
    size_t n_names;
    char *user_prefix; /* owned */
    int64_t users;
    char *marker; /* owned; NULL: events are not marked */
    uint64_t rng;
} epp_evgen_t;

/* names_csv: comma-separated event names (NULL: the default list); each must be non-empty.
 * users >= 1. marker may be NULL or "" (no marker). seed 0 picks one from the clock.
 * Returns 0, or EPP_EINVAL with a message in err, or EPP_ENOMEM. On failure g is left empty
 * (epp_evgen_free is still safe). */
int epp_evgen_init(epp_evgen_t *g, const char *names_csv, const char *user_prefix, int64_t users,
                   const char *marker, uint64_t seed, char *err, size_t errsz);
void epp_evgen_free(epp_evgen_t *g);

/* A uniformly distributed 64-bit random number (xorshift64*; not for secrets). */
uint64_t epp_evgen_rand(epp_evgen_t *g);

/* Appends event number i as one compact JSON object. The user is i % users, so events spread
 * evenly over the users. event_id: a canonical UUID string to include, or NULL. ts_us: the
 * timestamp to include (epoch microseconds), or 0 to let the server use the time of receipt.
 * 0 or EPP_ENOMEM. */
int epp_evgen_event(epp_evgen_t *g, uint64_t i, const char *event_id, int64_t ts_us,
                    epp_buf_t *out);

/* The URL rule: url may be a base URL ("http://host:8001", with or without a trailing slash),
 * or a full "/events" or "/events/batch" URL. Returns a malloc'd URL of the single-event route
 * (batch == 0) or of the batch route (batch != 0), or NULL on allocation failure. Any other
 * path is treated as a base URL, so "http://lb/ingest" gives "http://lb/ingest/events". */
char *epp_evgen_resolve_url(const char *url, int batch);

#endif
