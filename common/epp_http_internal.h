/* epp_http_internal.h: what the files of the HTTP layer share, and nothing the services see.
 *
 * The layer (contract in epp_http.h) is split by concern, each file opening with what it owns:
 *   epp_http_server.c  the server object, its worker threads and their epoll loops, the
 *                      listening socket, quiesce, destroy;
 *   epp_http_conn.c    one connection on the wire: accept, read, hand complete requests on,
 *                      write replies, lingering close, time limits;
 *   epp_http_parse.c   the HTTP/1.1 wire format: request line, headers, Content-Length and
 *                      chunked bodies, and the serialisation of a reply's head;
 *   epp_http_reply.c   the reply state machine (which thread answers, and when), the reply
 *                      functions, and the hand-off of replies made on other threads;
 *   epp_http_route.c   routes, path matching, 404/405/OPTIONS, CORS, the built-in routes and
 *                      the request metrics;
 *   epp_http_guard.c   API keys, rate limits, the failed-authentication throttle, per-address
 *                      connection counts and the budget of request bodies in flight;
 *   epp_http_req.c     the request accessors (path, query, headers, body, client address) and
 *                      the per-connection arena they decode into.
 * Internal names are epp_http__<verb>; types are file-local unless listed here.
 *
 * Threads: a connection (and the request it carries) belongs to one worker thread, which alone
 * reads, parses, dispatches, writes and frees it. Other threads touch a request only through the
 * reply functions (epp_http_reply.c), whose state bits say who may do what. */
#ifndef EPP_HTTP_INTERNAL_H
#define EPP_HTTP_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "epp_buf.h"
#include "epp_http.h"
#include "epp_metrics.h"

#define EPP_HTTP__MAX_SEGS    32  /* path segments per request or pattern */
#define EPP_HTTP__MAX_PARAMS  8   /* {param} segments per pattern */
#define EPP_HTTP__MAX_HEADERS 100 /* request headers (431 beyond) */
#define EPP_HTTP__MAX_KEY_LEN 256 /* API keys are compared over this fixed length */
/* Request line and headers together (431, or 414 for the request line alone, beyond it). */
#define EPP_HTTP__HEAD_MAX ((size_t)16 * 1024)
/* A body up to this size is part of a connection's own allowance and takes nothing from the
 * server's budget of bodies in flight; a larger one reserves its size there. */
#define EPP_HTTP__SMALL_BODY ((size_t)16 * 1024)
#define EPP_HTTP__SWEEP_US   500000 /* how often a worker checks its connections' time limits */

/* Request state bits (epp_http_reply.c explains the machine). */
enum {
    EPP_HTTP__ST_DISPATCHED = 1u << 0, /* the handler has been called */
    EPP_HTTP__ST_CLAIMED = 1u << 1,    /* a reply function won the right to answer */
    EPP_HTTP__ST_READY = 1u << 2,      /* the reply is written into the request */
    EPP_HTTP__ST_SUSPENDED = 1u << 3,  /* the handler returned without a reply */
};

/* Route flags of the layer's own, above the public ones. */
enum {
    EPP_HTTP__ROUTE_NO_RATELIMIT = 1u << 16,
};

enum {
    EPP_HTTP__M_GET,
    EPP_HTTP__M_POST,
    EPP_HTTP__M_PUT,
    EPP_HTTP__M_DELETE,
    EPP_HTTP__M_PATCH,
    EPP_HTTP__M_HEAD,
    EPP_HTTP__M_OPTIONS,
    EPP_HTTP__M_OTHER,
    EPP_HTTP__M_COUNT
};
extern const char *const epp_http__method_names[EPP_HTTP__M_COUNT];

/* Metric series of one route pattern, looked up once and cached lock-free. */
typedef struct {
    _Atomic unsigned key;
    _Atomic(epp_series_t *) series;
} epp_http__stats_slot_t;

#define EPP_HTTP__STATS_SLOTS 64
typedef struct {
    const char *pattern;
    epp_series_t *duration;
    epp_http__stats_slot_t slots[EPP_HTTP__STATS_SLOTS];
} epp_http__stats_t;

typedef struct {
    char *method;
    char *pattern;
    char *segs[EPP_HTTP__MAX_SEGS]; /* point into segbuf; a param segment is its bare name */
    unsigned char is_param[EPP_HTTP__MAX_SEGS];
    unsigned nsegs;
    char *segbuf;
    epp_http_handler_t handler;
    void *ud;
    unsigned flags;
    int method_idx;
    epp_http__stats_t stats;
} epp_http__route_t;

typedef struct epp_http__arena epp_http__arena_t;
typedef struct epp_http__conn epp_http__conn_t;
typedef struct epp_http__worker epp_http__worker_t;
typedef struct epp_http__ipent epp_http__ipent_t;

/* A client address as a bucket key: [0] 4 (IPv4) or 6 (IPv6, its /64 only), then the bytes. */
typedef struct {
    unsigned char b[17];
} epp_http__addr_key_t;

typedef struct {
    const char *name; /* NUL-terminated inside the connection's read buffer */
    const char *value;
} epp_http__header_t;

struct epp_http_req {
    epp_http__conn_t *conn;
    epp_http_server_t *srv;
    _Atomic unsigned state;
    epp_http_req_t *resume_next; /* a worker's resume stack */
    int suspend_requested;
    int stock_503;    /* destroy's reply: fixed headers, req->hdrs ignored */
    int cors_ok;      /* the Origin is on the allow-list: the reply carries ACAO */
    int auth_pending; /* EPP_HTTP_ROUTE_SELF_AUTH, keys set, none in a header: epp_http_auth_key */
    int close_after;  /* the connection closes once this reply is written */
    int method_idx;
    const char *method; /* the request line's parts, NUL-terminated in the read buffer */
    const char *url;    /* the path, without the query */
    const char *query;  /* after '?', or NULL */
    const char *origin;
    epp_http__header_t headers[EPP_HTTP__MAX_HEADERS];
    unsigned nheaders;
    epp_http__route_t *route;
    epp_http__stats_t *stats;
    const char *params[EPP_HTTP__MAX_PARAMS];
    epp_buf_t body;
    size_t reserved; /* bytes of the body budget this request holds */
    epp_buf_t out;   /* reply body */
    epp_buf_t hdrs;  /* reply headers: name\0value\0 ... */
    unsigned status;
    int64_t start_us;
    void *data;
    char ip[INET6_ADDRSTRLEN];
};

/* The parser's view of the request in progress on a connection. */
typedef enum {
    EPP_HTTP__P_HEAD,    /* reading the request line and headers */
    EPP_HTTP__P_BODY,    /* reading a Content-Length body */
    EPP_HTTP__P_CHUNKED, /* reading a chunked body */
    EPP_HTTP__P_DONE,    /* the request is complete (dispatched or answered) */
} epp_http__phase_t;

struct epp_http__conn {
    epp_http_server_t *srv;
    epp_http__worker_t *worker;
    epp_http__conn_t *prev, *next; /* the worker's list, under worker->lock */
    int fd;
    struct sockaddr_storage addr;
    epp_http__addr_key_t key;
    epp_http__ipent_t *ipent; /* this address's counts (epp_http_guard.c) */
    epp_http__arena_t *arena;
    /* Input: rbuf[0, rlen) holds bytes read; the head of the current request occupies
     * [0, head_len) once parsed; scan is where the search for its end resumes. */
    char *rbuf;
    size_t rcap, rlen, head_len, scan;
    size_t rpos_extra; /* bytes after the head that the current request has consumed */
    int head_started;  /* request_begin() ran for the head being read */
    epp_http__phase_t phase;
    uint64_t body_left;  /* Content-Length bytes still to read */
    int chunk_state;     /* epp_http_parse.c's chunked decoder */
    uint64_t chunk_left; /* bytes of the current chunk still to read */
    size_t chunk_aux;    /* length of a chunk extension or trailer line being skipped */
    size_t discard_left; /* an answered request's body still to skip (keep-alive) */
    int readable;        /* an edge said readable and no read has drained it since */
    int in_request;      /* between the first byte of a request and its reply */
    int dispatched;      /* the handler was called and the reply has not been written yet */
    int closing;         /* close once nothing is in flight */
    int lingering;       /* the reply went out; reading to EOF before the close */
    size_t linger_left;  /* bytes still allowed to be read and dropped while lingering */
    int want_continue;   /* send "100 Continue" before reading the body */
    int keep_alive;      /* the client allows another request on this connection */
    int http10;          /* the request was HTTP/1.0 (keep-alive must be said) */
    int64_t last_io_us;  /* idle timeout: the last byte read or written */
    int64_t since_us;    /* header deadline (between requests) and body deadline */
    int64_t linger_until_us;
    /* Output: wbuf[woff, wlen) still to send. */
    epp_buf_t wbuf;
    size_t woff;
    epp_http__conn_t *ready_next; /* the worker's local list of replies to write */
    epp_http_req_t req;
};

struct epp_http__worker {
    epp_http_server_t *srv;
    unsigned index;
    pthread_t thread;
    int started;
    int epfd;
    int wake_fd;
    int spare_fd;  /* /dev/null, given up to accept-and-close when descriptors run out */
    int listening; /* the listening socket is in this worker's epoll set */
    _Atomic int quit;
    _Atomic int kicked; /* 1 while awake: repliers need not write wake_fd */
    /* Replied requests whose connection this worker must write: a lock-free stack (push by
     * CAS, taken whole by exchange, so no ABA). */
    _Atomic(epp_http_req_t *) resume_head;
    epp_http__conn_t *ready_head; /* replies made on this thread, written after the hook */
    pthread_mutex_t lock;         /* guards conns (this worker adds and removes; destroy reads) */
    epp_http__conn_t *conns;
    unsigned nconns;
    char date[40]; /* "Date: ...\r\n" of the current second */
    int64_t date_s;
};

typedef struct {
    unsigned char bytes[EPP_HTTP__MAX_KEY_LEN];
    size_t len;
} epp_http__key_t;

typedef struct epp_http__buckets epp_http__buckets_t;

struct epp_http_server {
    epp_http_opts_t opts; /* strings below are our copies */
    char *service;
    char *bind_address;
    char **cors;
    size_t ncors;
    int cors_any;
    epp_http__key_t *keys;
    size_t nkeys;
    epp_http__route_t *routes;
    size_t nroutes, route_cap;
    epp_http__stats_t unmatched;
    epp_http__worker_t *workers;
    unsigned nworkers;
    int listen_fd;
    int port;
    _Atomic int quiesce_req;
    unsigned nquiesced; /* under quiesce_lock */
    pthread_mutex_t quiesce_lock;
    pthread_cond_t quiesce_cond;
    _Atomic int stopping;   /* epp_http_refuse: new requests get 503 without their handler */
    _Atomic int destroying; /* epp_http_destroy: suspended requests get 503 too */
    _Atomic unsigned inflight;
    _Atomic unsigned conns_open;
    uint64_t deadline_us; /* headers and bodies must arrive within this (4 * timeout_s) */
    /* The guard (epp_http_guard.c). */
    epp_http__buckets_t *rl;       /* request rate per key or client */
    epp_http__buckets_t *authfail; /* failed authentications per client */
    pthread_mutex_t ip_locks[16];
    epp_http__ipent_t **ip_table;
    _Atomic size_t body_inflight; /* bytes reserved by large bodies */
    /* Metrics. */
    epp_metric_t *m_requests;
    epp_series_t *g_inflight;
    epp_series_t *g_conns;
    epp_series_t *c_refused_conns;
    epp_series_t *c_busy;
    epp_http_loop_hook_fn hook;
    void *hook_ud;
    int hook_fd;
};

/* --- epp_http_server.c --- */
int64_t epp_http__now_us(void);
/* Wakes worker w when it may be asleep (a reply was pushed onto its resume stack). */
void epp_http__kick(epp_http__worker_t *w);
/* The worker running the calling thread, or NULL on any other thread. */
epp_http__worker_t *epp_http__self(void);

/* --- epp_http_conn.c (worker thread only) --- */
void epp_http__accept(epp_http__worker_t *w);
/* Moves c as far as it can go without blocking (after an epoll event). */
void epp_http__conn_progress(epp_http__conn_t *c);
/* c's suspended request has its reply (from the resume stack or the ready list). */
void epp_http__conn_on_reply(epp_http__conn_t *c);
void epp_http__sweep(epp_http__worker_t *w, int64_t now);
void epp_http__conn_free(epp_http__conn_t *c);

/* --- epp_http_parse.c --- */
/* Looks for the end of the head in c->rbuf (resuming at c->scan) and parses it into c->req.
 * Returns 1 when parsed, 0 when more bytes are needed, or a negative HTTP status to refuse
 * the request with (-400, -414, -431, -501, -505). */
int epp_http__parse_head(epp_http__conn_t *c);
/* Decodes chunked body bytes from in[0, len) into the request body. Returns the bytes consumed
 * (*done = 1 once the last chunk and trailers were read), or -400 for a malformed stream. */
long epp_http__parse_chunked(epp_http__conn_t *c, const char *in, size_t len, int *done);
/* Writes the reply of req (status, headers, body) into c->wbuf. 0 or EPP_ENOMEM. */
int epp_http__write_reply(epp_http__conn_t *c, epp_http_req_t *req);
const char *epp_http__find_header(const epp_http_req_t *req, const char *name);

/* --- epp_http_reply.c --- */
int epp_http__claim(epp_http_req_t *req, int require_dispatched);
/* A refusal decided by the layer before the handler (404, 401, 413, 429, ...): claims the
 * request, fills the error and marks it ready. */
void epp_http__early_error(epp_http_req_t *req, unsigned status, const char *code,
                           const char *message, unsigned retry_after_s);
void epp_http__early_error_field(epp_http_req_t *req, unsigned status, const char *code,
                                 const char *message, const char *field);
int epp_http__fill_reply(epp_http_req_t *req, unsigned status, const char *content_type,
                         const char *body, size_t len);
int epp_http__hdr_add(epp_http_req_t *req, const char *name, const char *value);
/* Calls the route's handler, then returns 1 when the reply is ready to write at once, or 0 when
 * the request is suspended (the reply arrives later through the worker's resume stack). */
int epp_http__dispatch(epp_http_req_t *req);
/* destroy()'s 503 for a dispatched request nobody answered. */
void epp_http__reply_shutdown(epp_http_req_t *req);
/* The same answer, synchronously, to a request no handler has seen (its worker's thread). */
void epp_http__refuse_shutdown(epp_http_req_t *req);

/* --- epp_http_route.c --- */
int epp_http__route_add(epp_http_server_t *srv, const char *method, const char *pattern,
                        epp_http_handler_t handler, void *ud, unsigned flags);
void epp_http__routes_free(epp_http_server_t *srv);
int epp_http__builtins_add(epp_http_server_t *srv);
void epp_http__metrics_init(epp_http_server_t *srv);
void epp_http__stats_init(epp_http_server_t *srv, epp_http__stats_t *st, const char *pattern);
/* Counts a written reply in the request metrics. */
void epp_http__stats_count(epp_http_req_t *req);
/* Everything decided from the request line and headers: route, CORS, key, rate limits, the
 * body's size. Leaves READY set when it answered the request itself. */
void epp_http__on_head(epp_http_req_t *req);
int epp_http__method_index(const char *m);

/* --- epp_http_guard.c --- */
int epp_http__guard_init(epp_http_server_t *srv, char *err, size_t errsz);
void epp_http__guard_free(epp_http_server_t *srv);
void epp_http__addr_key(const struct sockaddr *sa, epp_http__addr_key_t *key);
/* A new connection from key: 0 to keep it (and count it), or -1 to refuse it (over
 * max_per_ip). The closing connection gives its count back with epp_http__ip_release. */
int epp_http__ip_admit(epp_http_server_t *srv, epp_http__conn_t *c);
void epp_http__ip_release(epp_http_server_t *srv, epp_http__conn_t *c);
/* Reserves n more bytes of the body budget for req (over a small-body allowance). 0, or -1
 * when the server-wide or this client's share would be exceeded. */
int epp_http__body_reserve(epp_http_req_t *req, size_t total);
void epp_http__body_release(epp_http_req_t *req);
/* The key check and the throttles of epp_http__on_head: 0 to go on, or 1 when it answered. */
int epp_http__guard_check(epp_http_req_t *req, const epp_http__route_t *route);

/* --- epp_http_req.c --- */
char *epp_http__arena_alloc(epp_http__conn_t *c, size_t n);
void epp_http__arena_reset(epp_http__conn_t *c);
void epp_http__arena_free(epp_http__conn_t *c);
/* Percent-decodes src[0, len) into dst (len + 1 bytes); plus: '+' is a space (queries).
 * -1 when the result would hold a NUL byte. */
int epp_http__url_decode(char *dst, const char *src, size_t len, int plus);
/* The first query argument that does not decode, or NULL when all do. */
const char *epp_http__query_check(epp_http_req_t *req);

#endif
