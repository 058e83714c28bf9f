/* epp_http: the HTTP/1.1 server every epp service is built on (our own, over epoll; the
 * machinery is described in epp_http_internal.h and docs/architecture.md).
 *
 * It gives: routing by method and path pattern ("/analytics/users/{user_id}/events"), request
 * bodies accumulated up to a cap (413 beyond it), JSON error replies in the docs/contract.md §4
 * shape, 404 and 405 (with Allow), per-connection time limits, connection limits, API keys
 * (Bearer, HTTP Basic with the key as user name, or X-API-Key; constant-time compare; every
 * route but /health when keys are set), a throttle on failed authentications per client (429
 * before any key is compared), a per-key or per-client token-bucket rate limit that failed
 * attempts also draw from (429 + Retry-After; IPv6 clients are bucketed by /64), a budget of
 * request bodies in flight (503 + Retry-After beyond it), a CORS allow-list with
 * preflight, request metrics, and the built-in routes GET /health, GET /ready and GET /metrics.
 *
 * Asynchronous replies: a handler may return without replying after calling
 * epp_http_suspend(); any thread may later call one of the epp_http_reply*() functions. A reply
 * made on the worker thread that owns the connection (typically from the loop hook, see
 * epp_http_set_loop_hook) is written by that thread without any hand-off; one made elsewhere is
 * handed to the owner through a lock-free stack and at most one eventfd write per burst. This is
 * how ingestion answers after the Kafka acknowledgement without holding a thread.
 *
 * Threads: handlers run on the server's worker threads (opts.threads of them, each running one
 * epoll loop over its own connections). Every request gets exactly one reply; a reply function
 * may be called exactly once per request.
 *
 * Request lifetime (async replies): the request object stays valid from the handler call until
 * the reply call returns -- even when the client disconnected meanwhile (the reply is then
 * discarded). A suspended request MUST eventually get a reply, or epp_http_destroy() answers it
 * 503. After a reply call returns, the caller must not touch the request again: the object is
 * reused for the next request on the connection. A reply racing with epp_http_destroy() is safe
 * (one of them wins, the other gets EPP_ESTATE) until destroy returns.
 *
 * Time limits: timeout_s closes a connection idle for that long (no byte received); a request
 * body must arrive within 4 * timeout_s in total, however it dribbles in, and so must the request
 * line and headers (counted from the connection's start or the end of its previous request;
 * checked twice a second: the connection is then closed without a reply). A suspended request
 * is not timed out (the application's own timeout answers it). Slowloris clients are also
 * bounded by max_per_ip / max_connections. Sizes: request line and headers share 16 KiB (431
 * beyond, 414 when the request line alone is longer); at most 100 headers; bodies are capped by
 * max_body (413, answered as soon as the size is known; the rest of the body is read and dropped
 * up to 4 * max_body + 1 MiB before the connection closes). Memory: a connection holds at most
 * ~34 KiB of its own (16 KiB of head, a body up to 16 KiB, the reply); a larger body reserves
 * its size from max_body_inflight (server-wide) and max_body_inflight_per_ip (per client), and a
 * request that does not fit is answered 503 + Retry-After before its body is read. Connections
 * over max_per_ip or max_connections are closed at accept. */
#ifndef EPP_HTTP_H
#define EPP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "epp_buf.h"
#include "epp_metrics.h"
#include "epp_options.h"

typedef struct epp_http_server epp_http_server_t;
typedef struct epp_http_req epp_http_req_t;

/* A route handler. It must reply (epp_http_reply*) or suspend (epp_http_suspend) before it
 * returns. ud is the pointer given to epp_http_route(). */
typedef void (*epp_http_handler_t)(epp_http_req_t *req, void *ud);

/* /ready: returns 1 when ready; otherwise writes a reason (e.g. "kafka unreachable"). */
typedef int (*epp_http_ready_fn)(void *ud, char *reason, size_t reason_size);

typedef struct {
    const char *service;             /* "epp-ingest": logs, metrics, error JSON; borrowed */
    const char *bind_address;        /* NULL or "0.0.0.0": all interfaces; "127.0.0.1": loopback */
    int port;                        /* 0: pick a free port (see epp_http_port) */
    unsigned threads;                /* worker threads (>= 1) */
    unsigned max_connections;        /* total; beyond it connections are refused */
    unsigned max_per_ip;             /* 0: no per-IP limit (IPv6: per /64) */
    unsigned timeout_s;              /* idle/slow connection timeout (slowloris bound) */
    size_t max_body;                 /* request body cap in bytes; larger bodies get 413 */
    size_t max_body_inflight;        /* bytes of bodies over 16 KiB in flight, server-wide (503) */
    size_t max_body_inflight_per_ip; /* the same per client (IPv6: per /64); 0: no own share */
    const char *api_keys;     /* comma-separated; NULL or "": auth off (a warning is logged) */
    double rate_limit_rps;    /* per key (or per client IP without keys); 0: off */
    double rate_limit_burst;  /* bucket size; 0: same as rate_limit_rps */
    double auth_fail_rps;     /* failed authentications a client may make per second (429
                                 beyond, before any key is compared); 0: no throttle */
    double auth_fail_burst;   /* that bucket's size; 0: same as auth_fail_rps */
    const char *cors_origins; /* comma-separated allow-list, "*" for any; NULL: CORS off */
    epp_metrics_t *metrics;   /* request metrics are registered here; borrowed; may be NULL */
    epp_http_ready_fn ready;  /* NULL: /ready is always 200 */
    void *ready_ud;
} epp_http_opts_t;

/* Fills opts with defaults: threads 2, max_connections 10000, timeout 30 s, max_body 1 MiB,
 * max_body_inflight 64 MiB (16 MiB per client), failed authentications 1 per second with a
 * burst of 20, port 8000, everything else off/NULL. */
void epp_http_opts_default(epp_http_opts_t *opts);

/* Copies a program's HTTP options (epp_options.h) into opts: where to listen
 * (EPP_OPTS_HTTP_LISTEN) and, when the program's table has EPP_OPTS_HTTP_SERVER (conf->threads
 * > 0), the threads, connection limits, timeout, CORS, rate limits and API keys. Everything else
 * keeps what opts held. conf's strings are borrowed for as long as opts is used. */
void epp_http_opts_set(epp_http_opts_t *opts, const epp_opts_http_t *conf);

/* Creates a server (not listening yet). Copies what it needs from opts. NULL on failure with a
 * message in err. */
epp_http_server_t *epp_http_create(const epp_http_opts_t *opts, char *err, size_t errsz);

enum {
    EPP_HTTP_ROUTE_PUBLIC = 1 << 0,  /* no API key needed (only /health is public by default) */
    EPP_HTTP_ROUTE_NO_BODY = 1 << 1, /* a body is refused with 413 (GET-like routes) */
    /* The key may also come in the request body (Segment's writeKey): when keys are set and no
     * Authorization/X-API-Key header is presented, the handler runs with authentication pending
     * and must call epp_http_auth_key() before it acts on the request. A key presented in a
     * header is checked (and a wrong one refused) before the handler, as on any route. */
    EPP_HTTP_ROUTE_SELF_AUTH = 1 << 2,
};

/* Adds a route before epp_http_start(). method: "GET", "POST", ... pattern: a path whose
 * segments may be "{name}" parameters (read with epp_http_path_param). 0 or EPP_EINVAL. */
int epp_http_route(epp_http_server_t *srv, const char *method, const char *pattern,
                   epp_http_handler_t handler, void *ud, unsigned flags);

/* A hook every worker thread runs on each turn of its event loop, after serving its
 * connections and before it sleeps. While a worker sleeps it also watches fd (when >= 0): fd
 * turning readable wakes it, and the hook then runs with fd_readable = 1 and must consume what
 * made fd readable (several workers may wake for one event; the others see fd_readable = 1 and
 * nothing to read). The hook must not block. Its use: serving a library's completion callbacks
 * (Kafka delivery reports) on the workers themselves, so that the replies those callbacks make
 * resume their connections without waking another thread. Set before epp_http_start(); 0 or
 * EPP_EINVAL. */
typedef void (*epp_http_loop_hook_fn)(void *ud, int fd_readable);
int epp_http_set_loop_hook(epp_http_server_t *srv, int fd, epp_http_loop_hook_fn hook, void *ud);

/* Starts listening. 0 or a negative EPP_E* code (message in err). */
int epp_http_start(epp_http_server_t *srv, char *err, size_t errsz);

/* The port actually bound (useful with port 0). */
int epp_http_port(const epp_http_server_t *srv);

/* Stops accepting new connections (the listening socket is closed: new connects are refused);
 * requests in flight continue, and their replies carry "Connection: close". Any thread;
 * idempotent. */
void epp_http_quiesce(epp_http_server_t *srv);

/* Stops taking requests: from now on each request is answered 503 shutting_down when its head
 * or its body completes, without its handler (a handler already called still answers).
 * Requests in flight count in epp_http_inflight until answered, so once that reaches 0 after
 * this call no handler runs any more: a service whose handlers start work elsewhere (a Kafka
 * produce) waits for that, then finishes that work. Any thread; idempotent. */
void epp_http_refuse(epp_http_server_t *srv);

/* Number of requests that have been received but not yet answered (suspended ones included);
 * a request counts until its reply has been sent (or the client went away). */
unsigned epp_http_inflight(const epp_http_server_t *srv);

/* Stops the server: requests still unanswered get 503 (with up to 2 s for those answers to go
 * out); then frees it. Not from a handler. Accepts NULL. */
void epp_http_destroy(epp_http_server_t *srv);

/* --- Request accessors: valid from the handler call until the reply is sent. --- */
const char *epp_http_method(const epp_http_req_t *req);
const char *epp_http_path(const epp_http_req_t *req);
/* The route pattern matched ("/events"), for metrics and spans. */
const char *epp_http_route_pattern(const epp_http_req_t *req);
/* A "{name}" path parameter, URL-decoded, or NULL. */
const char *epp_http_path_param(const epp_http_req_t *req, const char *name);
/* A query-string argument, URL-decoded, or NULL. */
const char *epp_http_query(const epp_http_req_t *req, const char *name);
/* A request header (case-insensitive name), or NULL. */
const char *epp_http_header(const epp_http_req_t *req, const char *name);
/* The body received so far (complete when the handler runs); *len may be NULL. Never NULL. */
const char *epp_http_body(const epp_http_req_t *req, size_t *len);
/* The client's address as text. */
const char *epp_http_client_ip(const epp_http_req_t *req);
/* Monotonic microseconds when the request started. */
int64_t epp_http_start_us(const epp_http_req_t *req);

/* Per-request user data for async handlers (not freed by the layer). */
void epp_http_set_data(epp_http_req_t *req, void *data);
void *epp_http_get_data(const epp_http_req_t *req);

/* Settles authentication pending on an EPP_HTTP_ROUTE_SELF_AUTH route with key (len bytes; NULL:
 * none found), compared against the configured keys in constant time, then applies the per-key
 * rate limit. Returns 0 when the request may proceed -- always when nothing was pending (keys
 * off, or a valid key in a header) --; otherwise the request has been answered and the handler
 * must not reply: EPP_EINVAL (401) or EPP_EAGAIN (429: the rate limit, which a failed key also
 * draws from, per client address, as a wrong key in a header does; or the client's
 * failed-authentication throttle, checked before the key is compared). Handler thread. */
int epp_http_auth_key(epp_http_req_t *req, const char *key, size_t len);

/* --- Replies: exactly one per request; any thread when the request is suspended. --- */

/* Adds a response header to the coming reply (before the reply call, same thread). */
int epp_http_add_header(epp_http_req_t *req, const char *name, const char *value);

/* Replies with a copy of body. */
int epp_http_reply(epp_http_req_t *req, unsigned status, const char *content_type, const char *body,
                   size_t len);
/* Replies application/json with a copy of json. */
int epp_http_reply_json(epp_http_req_t *req, unsigned status, const char *json, size_t len);
/* Replies {"error":{"code":code,"message":message[,"field":field]}}; field may be NULL.
 * retry_after_s > 0 adds Retry-After. */
int epp_http_reply_error(epp_http_req_t *req, unsigned status, const char *code,
                         const char *message, const char *field, unsigned retry_after_s);

/* Marks the request as answered later. The handler returns; the reply comes from any thread. */
void epp_http_suspend(epp_http_req_t *req);

#endif
