/* epp_http: routing, limits, auth, rate limits, CORS, metrics and asynchronous replies over
 * libmicrohttpd 0.9.75. The contract is in epp_http.h; this comment explains the machinery.
 *
 * Per-connection context. Every accepted socket gets one conn_t (MHD_OPTION_NOTIFY_CONNECTION),
 * which embeds the request object and its buffers (body, reply body, reply headers, a small
 * arena for decoded path and query strings). Requests on a keep-alive connection reuse it, so the
 * hot path allocates nothing of ours: only libmicrohttpd's response object and its headers.
 *
 * The reply state machine. req->state holds atomic bits:
 *   DISPATCHED  the handler has been called (set by the worker before the call);
 *   CLAIMED     a reply function won the right to answer (exactly one caller wins);
 *   READY       the reply (status, body, headers) is written into the request;
 *   SUSPENDED   the worker has called MHD_suspend_connection.
 * A reply function claims, writes the reply, then sets READY; if SUSPENDED was already set it
 * pushes the request onto its worker's resume stack and kicks the worker. After the handler
 * returns, the worker queues the reply at once when READY is set; otherwise it suspends the
 * connection and sets SUSPENDED, and if READY appeared in between it resumes the connection
 * itself. So exactly one of the two threads arranges the resume, and the reply is queued by the
 * worker, in the access handler call that follows the resume. The libmicrohttpd response object
 * is created there, on the worker, so that a burst of replies from one thread (the Kafka
 * delivery-report thread) costs a copy, a CAS and at most one eventfd write per worker each.
 *
 * Lifetime. libmicrohttpd neither times out nor closes a suspended connection (it does not even
 * notice a client disconnect), so a request that was suspended stays alive until its reply
 * resumes it; the reply is then queued (or discarded when the client is gone) and the request
 * completes. A request is therefore never freed under a pending reply. The replying thread must
 * not touch the request after its reply call returns. epp_http_destroy() answers unanswered
 * dispatched requests with 503 and keeps every conn_t allocated until libmicrohttpd has stopped,
 * so a reply racing with destroy gets EPP_ESTATE instead of touching freed memory.
 *
 * Threads and flags (measured with bench/bench_http.sh). Each of opts.threads workers runs one
 * libmicrohttpd daemon in "external" mode (MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
 * MHD_USE_ERROR_LOG) from its own loop, all sharing one listening socket; see "Worker threads"
 * below for why not MHD_USE_INTERNAL_POLLING_THREAD with MHD_OPTION_THREAD_POOL_SIZE (it stalls
 * for up to the connection timeout). MHD_USE_TURBO: with the internal loop it made resumed
 * connections wait for a timeout (docs/architecture.md: 212 req/s); with our loop it measured no
 * better than without, so it is off. Per request the layer makes no syscall of its own on the hot
 * path; what remains is libmicrohttpd's: two recv (one EAGAIN) and one sendmsg. The two epoll_ctl
 * calls libmicrohttpd makes per suspension are absorbed by the epoll shim (see "The epoll shim").
 */
#include "epp_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_log.h"

#define MAX_SEGS     32          /* path segments per request or pattern */
#define MAX_PARAMS   8           /* {param} segments per pattern */
#define MAX_KEY_LEN  256         /* API keys are compared over this fixed length */
#define ARENA_MIN    1024        /* first arena block of a connection */
#define KEEP_BUF_MAX (64 * 1024) /* larger per-connection buffers are freed after use */
#define RL_STRIPES   16
#define RL_SLOTS     256 /* buckets per stripe */
#define RL_PROBE     8
#define STATS_SLOTS  64
#define IP_STRIPES   16
#define IP_BUCKETS   1024
/* Per-connection memory: request line, headers and I/O buffers. libmicrohttpd zeroes the whole
 * pool before every request (MHD_pool_reset), so its size is paid per request: 32 KiB cost ~9%
 * of the CPU under load; 16 KiB still holds ~14 KiB of request headers (larger: 431). */
#define CONN_MEM_LIMIT (16 * 1024)

/* Request state bits (see the comment at the top). */
enum {
    ST_DISPATCHED = 1u << 0,
    ST_CLAIMED = 1u << 1,
    ST_READY = 1u << 2,
    ST_SUSPENDED = 1u << 3,
};

/* Internal route flags beside the public ones. */
enum {
    ROUTE_NO_RATELIMIT = 1u << 16,
};

enum { M_GET, M_POST, M_PUT, M_DELETE, M_PATCH, M_HEAD, M_OPTIONS, M_OTHER, M_COUNT };
static const char *const method_names[M_COUNT] = {"GET",   "POST", "PUT",     "DELETE",
                                                  "PATCH", "HEAD", "OPTIONS", "other"};

/* Metric series of one route pattern, looked up once and cached lock-free: a slot's key is
 * (method index + 1) << 10 | status; its series pointer is published after the key. */
typedef struct {
    _Atomic unsigned key;
    _Atomic(epp_series_t *) series;
} stats_slot_t;

typedef struct {
    const char *pattern;
    epp_series_t *duration;
    stats_slot_t slots[STATS_SLOTS];
} route_stats_t;

typedef struct {
    char *method;
    char *pattern;
    char *segs[MAX_SEGS]; /* point into segbuf; a param segment is its name without braces */
    unsigned char is_param[MAX_SEGS];
    unsigned nsegs;
    char *segbuf;
    epp_http_handler_t handler;
    void *ud;
    unsigned flags;
    int method_idx;
    route_stats_t stats;
} route_t;

/* A chunk of the per-connection arena (decoded path segments and query strings). */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, size;
    char data[];
} arena_block_t;

typedef struct conn conn_t;
typedef struct worker worker_t;
typedef struct ipcount ipcount_t;
static void ip_count(epp_http_server_t *srv, const struct sockaddr_storage *ss, int delta);
static void worker_kick(worker_t *w);

struct epp_http_req {
    conn_t *conn;
    struct MHD_Connection *mhd;
    epp_http_server_t *srv;
    _Atomic unsigned state;
    epp_http_req_t *resume_next; /* worker_t.resume_head link */
    int suspend_requested;
    int queued;
    int stock_503;    /* destroy's reply: fixed headers, req->hdrs ignored */
    int too_big;      /* body past the cap: answered 413 once the upload ends */
    size_t discarded; /* bytes of an oversized body dropped so far */
    int cors_ok;      /* Origin is on the allow-list: add ACAO to the reply */
    int method_idx;
    const char *method;
    const char *url; /* raw path, owned by libmicrohttpd */
    const char *origin;
    route_t *route;
    route_stats_t *stats;
    const char *params[MAX_PARAMS];
    int query_decoded;
    epp_buf_t body;
    epp_buf_t out;  /* reply body */
    epp_buf_t hdrs; /* reply headers: name\0value\0 ... */
    unsigned status;
    int64_t start_us;
    void *data;
    char ip[INET6_ADDRSTRLEN];
};

struct worker {
    epp_http_server_t *srv;
    struct MHD_Daemon *daemon;
    pthread_t thread;
    int started;
    int wake_fd;
    int epoll_fd;
    _Atomic int quit;
    _Atomic int kicked;
    int quiesced;      /* this daemon no longer accepts (worker thread only) */
    struct shim *shim; /* the epoll shim's state for this daemon, or NULL */
    int rerun;         /* run the daemon again before sleeping (worker thread only) */
    /* Replied requests whose connection this worker must resume: a lock-free stack (push by
     * CAS, taken whole by exchange, so no ABA). Resuming on the worker itself keeps
     * libmicrohttpd's daemon mutex uncontended: the worker holds it while it walks its
     * suspended connections, and a replying thread would otherwise sleep on it. */
    _Atomic(epp_http_req_t *) resume_head;
};

struct conn {
    epp_http_server_t *srv;
    worker_t *worker;    /* runs this connection's daemon */
    conn_t *prev, *next; /* srv->conns, under srv->conns_lock */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    arena_block_t *arena;
    int fd; /* the socket (for the epoll shim and the header deadline) */
    /* Header deadline (worker thread only): between requests (no request dispatched to us since
     * the last one completed) since idle_since_us; see sweep_slow_headers(). */
    int in_request;
    int cut;
    int64_t idle_since_us;
    epp_http_req_t req;
};

typedef struct {
    unsigned char key[17]; /* [0]: 1 API key index, 4 IPv4, 6 IPv6; then the bytes */
    unsigned char used;
    double tokens;
    int64_t last_us;
} rl_bucket_t;

typedef struct {
    pthread_mutex_t lock;
    rl_bucket_t b[RL_SLOTS];
} rl_stripe_t;

typedef struct {
    unsigned char bytes[MAX_KEY_LEN];
    size_t len;
} api_key_t;

struct epp_http_server {
    epp_http_opts_t opts; /* strings below are our copies */
    char *service;
    char *bind_address;
    char **cors;
    size_t ncors;
    int cors_any;
    api_key_t *keys;
    size_t nkeys;
    route_t *routes;
    size_t nroutes, route_cap;
    route_stats_t unmatched;
    worker_t *workers;
    unsigned nworkers;
    int listen_fd;
    int port;
    _Atomic int quiesce_req;
    unsigned nquiesced; /* under quiesce_lock */
    pthread_mutex_t quiesce_lock;
    pthread_cond_t quiesce_cond;
    pthread_mutex_t ip_locks[IP_STRIPES];
    ipcount_t *ip_buckets[IP_BUCKETS];
    _Atomic int stopping;
    _Atomic unsigned inflight;
    _Atomic unsigned conns_open;
    pthread_mutex_t conns_lock;
    conn_t *conns;
    rl_stripe_t *rl;
    double rl_burst;
    epp_metric_t *m_requests;
    uint64_t body_deadline_us;
    epp_series_t *g_inflight;
    epp_series_t *g_conns;
    epp_http_loop_hook_fn hook; /* see epp_http_set_loop_hook */
    void *hook_ud;
    int hook_fd;
};

/* ------------------------------------------------------------------------------------------ */
/* The epoll shim: suspend/resume without two epoll_ctl calls per request.
 *
 * libmicrohttpd 0.9.75 removes a connection from its epoll set when it is suspended
 * (EPOLL_CTL_DEL) and adds it back after the resume, once a read hits EAGAIN (EPOLL_CTL_ADD):
 * two system calls per asynchronous request, with an epitem freed (through RCU) and allocated
 * each time -- 10-12% of epp-ingest's CPU under load. This file defines epoll_ctl and epoll_wait,
 * which take precedence over libc's for libmicrohttpd (the executable's definitions come first
 * in symbol lookup). For the epoll descriptor of one of our workers' daemons (registered below;
 * every other descriptor passes straight through):
 *   - a DEL of a connection socket (one registered edge-triggered) is not made: the kernel
 *     registration stays, the socket is marked "kept", and its data pointer (libmicrohttpd's
 *     connection) is muted: epoll_wait drops its events, so libmicrohttpd never sees an event
 *     for a connection it believes removed (it would process a suspended connection, and
 *     abort: "Resumed connection was already in EREADY set"). A connection suspended again
 *     before libmicrohttpd re-registered it gets no DEL at all: dispatch() mutes it itself
 *     (shim_suspended), and resume_replied() unmutes before libmicrohttpd sees the resume;
 *   - an ADD of a kept socket with the same pointer and events makes no call (the registration
 *     is intact; a resumed connection is treated as readable and writable by libmicrohttpd
 *     anyway, and after its EAGAIN the edge-triggered registration reports new data as usual);
 *     with another pointer it becomes a MOD (an ADD if the kernel no longer has the socket);
 *   - a DEL before a close (libmicrohttpd does that too) is equally skipped: closing the socket
 *     removes the registration in the kernel, and the muted pointer is unmuted when a new
 *     connection is registered under the same pointer or socket number (shim_fresh()
 *     from the connection-started notification, which libmicrohttpd calls before its ADD).
 * The state of one epoll descriptor is touched only by its worker thread (libmicrohttpd calls
 * epoll_ctl and epoll_wait from the thread running the daemon), so it needs no lock; the
 * registry is a fixed array of atomics. EPP_HTTP_EPOLL_SHIM=0 turns it off (for comparisons). */

#define SHIM_MAX 256

typedef struct {
    void *ptr; /* the data pointer libmicrohttpd registered */
    uint32_t events;
    unsigned char tracked; /* registered edge-triggered through us (a connection socket) */
    unsigned char kept;    /* libmicrohttpd removed it; the kernel registration stays */
    unsigned char pending; /* an event was dropped while kept */
} shim_fd_t;

typedef struct {
    void *ptr;
    int fd;
} shim_mute_t;

typedef struct shim {
    int epfd;
    shim_fd_t *fds;
    size_t nfds;
    shim_mute_t *mute; /* open addressing by pointer, linear probing; ptr NULL = empty */
    size_t mcap, mcount;
} shim_t;

static _Atomic(shim_t *) shim_reg[SHIM_MAX];
static _Atomic unsigned shim_used; /* slots [0, shim_used) have ever been taken */

/* Every epoll_ctl and epoll_wait of the process goes through this scan. */
static shim_t *shim_find(int epfd)
{
    unsigned n = atomic_load_explicit(&shim_used, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        shim_t *s = atomic_load_explicit(&shim_reg[i], memory_order_acquire);
        if (s && s->epfd == epfd)
            return s;
    }
    return NULL;
}

static int shim_enabled(void)
{
    const char *e = getenv("EPP_HTTP_EPOLL_SHIM");
    return !(e && strcmp(e, "0") == 0);
}

static shim_t *shim_register(int epfd)
{
    if (!shim_enabled())
        return NULL;
    shim_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->epfd = epfd;
    for (unsigned i = 0; i < SHIM_MAX; i++) {
        shim_t *none = NULL;
        if (atomic_compare_exchange_strong(&shim_reg[i], &none, s)) {
            unsigned used = atomic_load(&shim_used);
            while (used < i + 1 && !atomic_compare_exchange_weak(&shim_used, &used, i + 1))
                ;
            return s;
        }
    }
    free(s);
    return NULL; /* registry full: this daemon runs without the shim */
}

static void shim_unregister(shim_t *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < SHIM_MAX; i++) {
        shim_t *cur = s;
        if (atomic_compare_exchange_strong(&shim_reg[i], &cur, NULL))
            break;
    }
    free(s->fds);
    free(s->mute);
    free(s);
}

static size_t mute_slot(const shim_t *s, const void *ptr)
{
    uintptr_t h = (uintptr_t)ptr;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (s->mcap - 1);
}

static shim_mute_t *mute_find(shim_t *s, const void *ptr)
{
    if (s->mcount == 0)
        return NULL;
    for (size_t i = mute_slot(s, ptr);; i = (i + 1) & (s->mcap - 1)) {
        if (s->mute[i].ptr == ptr)
            return &s->mute[i];
        if (!s->mute[i].ptr)
            return NULL;
    }
}

static int mute_add(shim_t *s, void *ptr, int fd)
{
    if ((s->mcount + 1) * 2 > s->mcap) {
        size_t ncap = s->mcap ? s->mcap * 2 : 64;
        shim_mute_t *nm = calloc(ncap, sizeof(*nm));
        if (!nm)
            return -1;
        shim_mute_t *old = s->mute;
        size_t ocap = s->mcap;
        s->mute = nm;
        s->mcap = ncap;
        s->mcount = 0;
        for (size_t i = 0; i < ocap; i++)
            if (old[i].ptr)
                mute_add(s, old[i].ptr, old[i].fd);
        free(old);
    }
    shim_mute_t *m = mute_find(s, ptr);
    if (!m) {
        size_t i = mute_slot(s, ptr);
        while (s->mute[i].ptr)
            i = (i + 1) & (s->mcap - 1);
        m = &s->mute[i];
        m->ptr = ptr;
        s->mcount++;
    }
    m->fd = fd;
    return 0;
}

/* Removes ptr (only when muted for fd, unless fd < 0); backward-shift deletion. */
static void mute_del(shim_t *s, const void *ptr, int fd)
{
    shim_mute_t *m = mute_find(s, ptr);
    if (!m || (fd >= 0 && m->fd != fd))
        return;
    size_t i = (size_t)(m - s->mute);
    size_t j = i;
    for (;;) {
        j = (j + 1) & (s->mcap - 1);
        if (!s->mute[j].ptr)
            break;
        size_t k = mute_slot(s, s->mute[j].ptr);
        /* Move j into the hole at i unless its home k lies cyclically in (i, j]. */
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            s->mute[i] = s->mute[j];
            i = j;
        }
    }
    s->mute[i].ptr = NULL;
    s->mcount--;
}

static shim_fd_t *shim_fd(shim_t *s, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= s->nfds) {
        size_t n = s->nfds ? s->nfds : 256;
        while (n <= (size_t)fd)
            n *= 2;
        shim_fd_t *nf = realloc(s->fds, n * sizeof(*nf));
        if (!nf)
            return NULL;
        memset(nf + s->nfds, 0, (n - s->nfds) * sizeof(*nf));
        s->fds = nf;
        s->nfds = n;
    }
    return &s->fds[fd];
}

static int real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

/* A new connection got socket fd (connection-started notification, worker thread, before
 * libmicrohttpd registers it): whatever was kept for that number belonged to a closed socket,
 * whose kernel registration went with the close. */
static void shim_fresh(shim_t *s, int fd)
{
    if (!s || fd < 0 || (size_t)fd >= s->nfds)
        return;
    shim_fd_t *f = &s->fds[fd];
    if (f->kept)
        mute_del(s, f->ptr, fd);
    memset(f, 0, sizeof(*f));
}

/* The worker suspended connection c (socket fd). libmicrohttpd's DEL (muting it) comes only when
 * it believes the socket registered; a connection resumed and suspended again before its
 * re-registration (the next request arrived before a read hit EAGAIN) gets no DEL, and must be
 * muted here. Worker thread. */
static void shim_suspended(shim_t *s, struct MHD_Connection *c, int fd)
{
    if (!s || fd < 0 || (size_t)fd >= s->nfds || !s->fds[fd].kept)
        return; /* not a socket the shim keeps */
    if (mute_add(s, c, fd) < 0) {
        /* Out of memory: really remove it; libmicrohttpd's next ADD is then a real one. */
        real_epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
        memset(&s->fds[fd], 0, sizeof(s->fds[fd]));
    }
}

/* The worker resumes connection c (libmicrohttpd's pointer, the one it registers): unmuted at
 * once. libmicrohttpd moves it back to its active set at the start of its next run, before its
 * next epoll_wait, so from then on an event for it is an ordinary one -- typically the next
 * request, arriving before libmicrohttpd re-registers the socket (after the reply, once a read
 * hits EAGAIN). Worker thread. */
static void shim_resumed(shim_t *s, struct MHD_Connection *c)
{
    if (s && s->mcount)
        mute_del(s, c, -1);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    shim_t *s = shim_find(epfd);

    if (!s)
        return real_epoll_ctl(epfd, op, fd, ev);
    shim_fd_t *f = shim_fd(s, fd);
    if (!f)
        return real_epoll_ctl(epfd, op, fd, ev);
    if (op == EPOLL_CTL_DEL && f->tracked && !f->kept) {
        if (mute_add(s, f->ptr, fd) < 0)
            return real_epoll_ctl(epfd, op, fd, ev) == 0 ? (f->tracked = 0, 0) : -1;
        f->kept = 1;
        f->pending = 0;
        return 0;
    }
    if (op == EPOLL_CTL_ADD && ev) {
        int rc = 0;
        if (f->kept) {
            mute_del(s, f->ptr, fd);
            /* An event dropped while the socket was kept (data that came after the resume,
             * before this re-registration) is re-armed by a MOD: the kernel re-checks the
             * socket and reports it if it is ready. */
            if (f->pending || f->ptr != ev->data.ptr || f->events != ev->events) {
                rc = real_epoll_ctl(epfd, EPOLL_CTL_MOD, fd, ev);
                if (rc < 0 && errno == ENOENT)
                    rc = real_epoll_ctl(epfd, EPOLL_CTL_ADD, fd, ev);
            }
        } else {
            rc = real_epoll_ctl(epfd, op, fd, ev);
        }
        f->kept = 0;
        f->pending = 0;
        if (rc < 0) {
            f->tracked = 0;
            return rc;
        }
        mute_del(s, ev->data.ptr, -1); /* a pointer reused by a new connection */
        f->ptr = ev->data.ptr;
        f->events = ev->events;
        f->tracked = (ev->events & EPOLLET) != 0;
        return 0;
    }
    if (op == EPOLL_CTL_DEL) {
        if (f->kept)
            mute_del(s, f->ptr, fd);
        memset(f, 0, sizeof(*f));
    }
    return real_epoll_ctl(epfd, op, fd, ev);
}

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
    int n = epoll_pwait(epfd, events, maxevents, timeout, NULL);
    if (n <= 0)
        return n;
    shim_t *s = shim_find(epfd);
    if (!s || s->mcount == 0)
        return n;
    int o = 0;
    for (int i = 0; i < n; i++) {
        shim_mute_t *m = events[i].data.ptr ? mute_find(s, events[i].data.ptr) : NULL;
        if (m) {
            /* Dropped for now; the re-registration re-arms it (see epoll_ctl). */
            if ((size_t)m->fd < s->nfds)
                s->fds[m->fd].pending = 1;
            continue;
        }
        events[o++] = events[i];
    }
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int method_index(const char *m)
{
    for (int i = 0; i < M_OTHER; i++) {
        if (strcmp(m, method_names[i]) == 0)
            return i;
    }
    return M_OTHER;
}

/* Appends s as the inside of a JSON string (quotes not included). */
static int json_escape(epp_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        switch (*p) {
        case '"':
            if (epp_buf_append(b, "\\\"", 2) < 0)
                return EPP_ENOMEM;
            break;
        case '\\':
            if (epp_buf_append(b, "\\\\", 2) < 0)
                return EPP_ENOMEM;
            break;
        case '\n':
            if (epp_buf_append(b, "\\n", 2) < 0)
                return EPP_ENOMEM;
            break;
        default:
            if (*p < 0x20) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 15];
                if (epp_buf_append(b, esc, 6) < 0)
                    return EPP_ENOMEM;
            } else if (epp_buf_append_char(b, (char)*p) < 0) {
                return EPP_ENOMEM;
            }
        }
    }
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes src[0..len) into dst (at least len + 1 bytes). A malformed escape is kept
 * as is. Returns -1 when the result would contain a NUL byte. */
static int url_decode(char *dst, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%' && i + 2 < len && hexval((unsigned char)src[i + 1]) >= 0 &&
            hexval((unsigned char)src[i + 2]) >= 0) {
            int v = hexval((unsigned char)src[i + 1]) * 16 + hexval((unsigned char)src[i + 2]);
            if (v == 0)
                return -1;
            dst[o++] = (char)v;
            i += 2;
        } else {
            dst[o++] = src[i];
        }
    }
    dst[o] = '\0';
    return 0;
}

typedef struct {
    epp_http_req_t *req;
    const char *bad; /* the first argument name (decoded when possible) that fails to decode */
} bad_query_t;

static enum MHD_Result query_check_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                        size_t key_size, const char *value, size_t value_size);

/* libmicrohttpd must leave the path and query raw: we split the path into segments before
 * decoding, so that "%2F" inside a {param} stays part of the parameter. */
static size_t unescape_identity(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

/* Bump allocation from the connection's arena; everything is released when the next request
 * on the connection starts (the first block is kept). */
static char *arena_alloc(conn_t *c, size_t n)
{
    arena_block_t *b = c->arena;
    if (!b || b->size - b->used < n) {
        size_t size = n > ARENA_MIN ? n : ARENA_MIN;
        arena_block_t *nb = malloc(sizeof(*nb) + size);
        if (!nb)
            return NULL;
        nb->size = size;
        nb->used = 0;
        nb->next = b;
        c->arena = b = nb;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_reset(conn_t *c)
{
    arena_block_t *b = c->arena;
    if (!b)
        return;
    while (b->next) {
        arena_block_t *n = b->next;
        free(b);
        b = n;
    }
    /* Keep the oldest (first) block only when it is the small default one. */
    if (b->size > ARENA_MIN) {
        free(b);
        c->arena = NULL;
        return;
    }
    b->used = 0;
    c->arena = b;
}

static void trim_buf(epp_buf_t *b)
{
    if (b->cap > KEEP_BUF_MAX)
        epp_buf_free(b);
    else
        epp_buf_reset(b);
}

/* Splits a comma-separated list into trimmed, non-empty, malloc'd strings. */
static char **split_list(const char *s, size_t *n)
{
    *n = 0;
    if (!s)
        return NULL;
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap, sizeof(*v));
    if (!v)
        return NULL;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *a = p, *z = p + len;
        while (a < z && (*a == ' ' || *a == '\t'))
            a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
            z--;
        if (z > a) {
            v[*n] = strndup(a, (size_t)(z - a));
            if (!v[*n]) {
                for (size_t i = 0; i < *n; i++)
                    free(v[i]);
                free(v);
                *n = 0;
                return NULL;
            }
            (*n)++;
        }
        p = e ? e + 1 : p + len;
    }
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* Metrics */

static void stats_init(epp_http_server_t *srv, route_stats_t *st, const char *pattern)
{
    st->pattern = pattern;
    if (!srv->opts.metrics)
        return;
    epp_metric_t *h =
        epp_metrics_histogram(srv->opts.metrics, "epp_http_request_duration_seconds",
                              "Time from the start of a request to its reply being queued.",
                              "route", epp_metrics_latency_buckets, epp_metrics_latency_buckets_n);
    st->duration = h ? epp_metric_series(h, pattern) : NULL;
}

static epp_series_t *stats_counter(epp_http_server_t *srv, route_stats_t *st, int midx,
                                   unsigned status)
{
    if (!srv->m_requests)
        return NULL;
    unsigned key = ((unsigned)midx + 1) << 10 | (status & 1023);
    unsigned h = (key * 2654435761u) >> 26; /* 6 bits */
    for (unsigned i = 0; i < STATS_SLOTS; i++) {
        stats_slot_t *s = &st->slots[(h + i) & (STATS_SLOTS - 1)];
        unsigned k = atomic_load_explicit(&s->key, memory_order_acquire);
        if (k == key) {
            epp_series_t *ser = atomic_load_explicit(&s->series, memory_order_acquire);
            if (ser)
                return ser;
            break; /* being filled in by another thread: look it up ourselves */
        }
        if (k == 0) {
            unsigned zero = 0;
            char code[12];
            snprintf(code, sizeof(code), "%u", status);
            epp_series_t *ser =
                epp_metric_series(srv->m_requests, st->pattern, method_names[midx], code);
            if (atomic_compare_exchange_strong(&s->key, &zero, key)) {
                atomic_store_explicit(&s->series, ser, memory_order_release);
                return ser;
            }
            if (zero == key)
                return ser;
            continue;
        }
    }
    char code[12];
    snprintf(code, sizeof(code), "%u", status);
    return epp_metric_series(srv->m_requests, st->pattern, method_names[midx], code);
}

/* The gauges are plain series updated with +1/-1 (not render-time functions), so that the
 * registry never calls into a server that has been destroyed. */
static void gauge_add(epp_series_t *g, double v)
{
    if (g)
        epp_series_add(g, v);
}

/* ------------------------------------------------------------------------------------------ */
/* Auth and rate limits */

/* Compares the candidate against every key over a fixed length, without an early exit, so the
 * time taken does not depend on how much of a key matched, on which key matched, or on the key
 * lengths. Returns the matching key index or -1. */
static int auth_match(const epp_http_server_t *srv, const char *cand, size_t len)
{
    unsigned char pad[MAX_KEY_LEN];
    uint64_t too_long = len > MAX_KEY_LEN;
    size_t n = too_long ? MAX_KEY_LEN : len;
    memset(pad, 0, sizeof(pad));
    memcpy(pad, cand, n);
    int found = -1;
    for (size_t k = 0; k < srv->nkeys; k++) {
        const api_key_t *key = &srv->keys[k];
        volatile uint64_t diff = (uint64_t)(key->len ^ n) | too_long;
        unsigned acc = 0;
        for (size_t i = 0; i < MAX_KEY_LEN; i++)
            acc |= (unsigned)(pad[i] ^ key->bytes[i]);
        diff |= acc;
        /* mask is all ones when diff == 0, without a branch on the secret. */
        uint64_t d = diff;
        uint64_t mask = ((d | (0 - d)) >> 63) - 1;
        found = (int)(((uint64_t)(unsigned)found & ~mask) | ((uint64_t)k & mask));
    }
    return found;
}

/* Returns the API key presented by the request (Authorization: Bearer, else X-API-Key). */
static const char *auth_candidate(epp_http_req_t *req, size_t *len)
{
    const char *a = MHD_lookup_connection_value(req->mhd, MHD_HEADER_KIND, "Authorization");
    if (a) {
        while (*a == ' ')
            a++;
        if (strncasecmp(a, "Bearer ", 7) == 0) {
            a += 7;
            while (*a == ' ')
                a++;
            size_t l = strlen(a);
            while (l > 0 && a[l - 1] == ' ')
                l--;
            *len = l;
            return a;
        }
    }
    const char *x = MHD_lookup_connection_value(req->mhd, MHD_HEADER_KIND, "X-API-Key");
    if (x) {
        *len = strlen(x);
        return x;
    }
    return NULL;
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Takes one token from the bucket of key; 0 when allowed, else the seconds to wait. Buckets
 * live in a striped, fixed-size table: a full probe window evicts its least recently used
 * bucket, so the table stays bounded whatever the number of clients. */
static unsigned ratelimit_take(epp_http_server_t *srv, const unsigned char key[17])
{
    double rps = srv->opts.rate_limit_rps;
    uint64_t h = fnv1a(key, 17);
    rl_stripe_t *st = &srv->rl[h % RL_STRIPES];
    unsigned start = (unsigned)(h >> 8) % RL_SLOTS;
    int64_t now = mono_us();
    unsigned wait = 0;
    pthread_mutex_lock(&st->lock);
    rl_bucket_t *b = NULL, *victim = NULL;
    for (unsigned i = 0; i < RL_PROBE; i++) {
        rl_bucket_t *c = &st->b[(start + i) % RL_SLOTS];
        if (c->used && memcmp(c->key, key, 17) == 0) {
            b = c;
            break;
        }
        /* Victim: the first free slot, else the least recently used one. */
        if (!victim || (victim->used && (!c->used || c->last_us < victim->last_us)))
            victim = c;
    }
    if (!b) {
        b = victim;
        memcpy(b->key, key, 17);
        b->used = 1;
        b->tokens = srv->rl_burst;
        b->last_us = now;
    }
    double t = b->tokens + (double)(now - b->last_us) / 1e6 * rps;
    if (t > srv->rl_burst)
        t = srv->rl_burst;
    b->last_us = now;
    if (t >= 1.0) {
        b->tokens = t - 1.0;
    } else {
        b->tokens = t;
        double s = ceil((1.0 - t) / rps);
        wait = s < 1 ? 1 : (unsigned)s;
    }
    pthread_mutex_unlock(&st->lock);
    return wait;
}

/* ------------------------------------------------------------------------------------------ */
/* Replies */

static int hdr_add(epp_http_req_t *req, const char *name, const char *value)
{
    if (epp_buf_append(&req->hdrs, name, strlen(name) + 1) < 0 ||
        epp_buf_append(&req->hdrs, value, strlen(value) + 1) < 0)
        return EPP_ENOMEM;
    return 0;
}

/* Wins the right to answer. require_dispatched: only a request whose handler was called (the
 * public reply functions and destroy's 503). */
static int claim(epp_http_req_t *req, int require_dispatched)
{
    unsigned old = atomic_load(&req->state);
    do {
        if (old & ST_CLAIMED)
            return EPP_ESTATE;
        if (require_dispatched && !(old & ST_DISPATCHED))
            return EPP_ESTATE;
    } while (!atomic_compare_exchange_weak(&req->state, &old, old | ST_CLAIMED));
    return 0;
}

/* Publishes a claimed reply; resumes the connection when the worker has suspended it. After
 * this the caller must not touch req (unless it is the worker inside the access handler). */
static void publish(epp_http_req_t *req)
{
    worker_t *w = req->conn->worker;
    unsigned old = atomic_fetch_or(&req->state, ST_READY);
    if (old & ST_SUSPENDED) {
        /* The connection is suspended and nothing else touches req until it is resumed, so
         * linking it in is safe; the worker resumes it. */
        epp_http_req_t *head = atomic_load(&w->resume_head);
        do {
            req->resume_next = head;
        } while (!atomic_compare_exchange_weak(&w->resume_head, &head, req));
        /* Sequentially consistent with the worker's clearing of `kicked` before it takes the
         * stack: either it sees this request, or this kick finds kicked == 0 and wakes it. */
        worker_kick(w);
    }
}

/* Resumes the connections of replied requests: worker thread (or destroy, after the workers
 * stopped). Returns how many. */
static unsigned resume_replied(worker_t *w)
{
    epp_http_req_t *r = atomic_exchange(&w->resume_head, NULL);
    unsigned n = 0;
    while (r) {
        epp_http_req_t *next = r->resume_next;
        shim_resumed(w->shim, r->mhd);
        MHD_resume_connection(r->mhd);
        r = next;
        n++;
    }
    return n;
}

static int fill_reply(epp_http_req_t *req, unsigned status, const char *content_type,
                      const char *body, size_t len)
{
    req->status = status;
    epp_buf_reset(&req->out);
    int rc = 0;
    if (len > 0)
        rc = epp_buf_append(&req->out, body, len);
    if (rc == 0 && content_type)
        rc = hdr_add(req, "Content-Type", content_type);
    if (rc < 0) {
        /* Out of memory: answer 500 without a body rather than not at all. */
        req->status = 500;
        epp_buf_reset(&req->out);
    }
    return rc;
}

static int fill_error(epp_http_req_t *req, unsigned status, const char *code, const char *message,
                      const char *field, unsigned retry_after_s)
{
    epp_buf_t *b = &req->out;
    req->status = status;
    epp_buf_reset(b);
    int rc = epp_buf_append_str(b, "{\"error\":{\"code\":\"");
    if (rc == 0)
        rc = json_escape(b, code ? code : "error");
    if (rc == 0)
        rc = epp_buf_append_str(b, "\",\"message\":\"");
    if (rc == 0)
        rc = json_escape(b, message ? message : "");
    if (rc == 0 && field) {
        rc = epp_buf_append_str(b, "\",\"field\":\"");
        if (rc == 0)
            rc = json_escape(b, field);
    }
    if (rc == 0)
        rc = epp_buf_append_str(b, "\"}}");
    if (rc == 0)
        rc = hdr_add(req, "Content-Type", "application/json");
    if (rc == 0 && retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", retry_after_s);
        rc = hdr_add(req, "Retry-After", ra);
    }
    if (rc < 0) {
        req->status = 500;
        epp_buf_reset(b);
    }
    return rc;
}

int epp_http_reply(epp_http_req_t *req, unsigned status, const char *content_type, const char *body,
                   size_t len)
{
    int rc = claim(req, 1);
    if (rc < 0)
        return rc;
    rc = fill_reply(req, status, content_type, body, len);
    publish(req);
    return rc;
}

int epp_http_reply_json(epp_http_req_t *req, unsigned status, const char *json, size_t len)
{
    return epp_http_reply(req, status, "application/json", json, len);
}

int epp_http_reply_error(epp_http_req_t *req, unsigned status, const char *code,
                         const char *message, const char *field, unsigned retry_after_s)
{
    int rc = claim(req, 1);
    if (rc < 0)
        return rc;
    rc = fill_error(req, status, code, message, field, retry_after_s);
    publish(req);
    return rc;
}

/* destroy()'s 503 for a request the application has not answered yet. The application may be
 * adding reply headers at this very moment (epp_http_add_header needs no claim), so this reply
 * leaves req->hdrs alone: queue_reply() uses fixed headers for it. */
static void reply_shutdown(epp_http_req_t *req)
{
    static const char body[] =
        "{\"error\":{\"code\":\"shutting_down\",\"message\":\"the service is shutting down\"}}";
    if (claim(req, 1) < 0)
        return;
    req->status = 503;
    req->stock_503 = 1;
    epp_buf_reset(&req->out);
    if (epp_buf_append(&req->out, body, sizeof(body) - 1) < 0)
        epp_buf_reset(&req->out);
    publish(req);
}

/* Replies from the worker before the handler is called (404, 401, 413, ...). */
static void early_error(epp_http_req_t *req, unsigned status, const char *code, const char *message,
                        unsigned retry_after_s)
{
    if (claim(req, 0) < 0)
        return;
    fill_error(req, status, code, message, NULL, retry_after_s);
    atomic_fetch_or(&req->state, ST_READY);
}

int epp_http_add_header(epp_http_req_t *req, const char *name, const char *value)
{
    if (!name || !value || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return EPP_EINVAL;
    return hdr_add(req, name, value);
}

void epp_http_suspend(epp_http_req_t *req)
{
    req->suspend_requested = 1;
}

/* Queues the published reply: worker thread, inside the access handler. */
static enum MHD_Result queue_reply(epp_http_req_t *req)
{
    epp_http_server_t *srv = req->srv;
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        req->out.len, req->out.len ? req->out.data : (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    if (req->stock_503) {
        MHD_add_response_header(resp, "Content-Type", "application/json");
        MHD_add_response_header(resp, "Retry-After", "1");
    } else {
        for (size_t off = 0; off < req->hdrs.len;) {
            const char *name = req->hdrs.data + off;
            const char *value = name + strlen(name) + 1;
            off = (size_t)(value - req->hdrs.data) + strlen(value) + 1;
            MHD_add_response_header(resp, name, value);
        }
    }
    if (req->cors_ok) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin",
                                srv->cors_any ? "*" : req->origin);
        if (!srv->cors_any)
            MHD_add_response_header(resp, "Vary", "Origin");
        /* Browsers hide other headers from scripts; a client backing off needs this one. */
        if (req->status == 429 || req->status == 503)
            MHD_add_response_header(resp, "Access-Control-Expose-Headers", "Retry-After");
    }
    /* After quiesce, keep-alive clients are told to go: they reconnect elsewhere (or get
     * refused), so that in-flight requests drain. */
    if (atomic_load_explicit(&srv->quiesce_req, memory_order_relaxed))
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(req->mhd, req->status, resp);
    MHD_destroy_response(resp);
    req->queued = 1;
    route_stats_t *st = req->stats ? req->stats : &srv->unmatched;
    epp_series_t *c = stats_counter(srv, st, req->method_idx, req->status);
    if (c)
        epp_series_inc(c);
    if (st->duration)
        epp_series_observe(st->duration, (double)(mono_us() - req->start_us) / 1e6);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Built-in routes */

static void h_health(epp_http_req_t *req, void *ud)
{
    epp_http_server_t *srv = ud;
    epp_buf_t b = {0};
    epp_buf_append_str(&b, "{\"status\":\"ok\",\"service\":\"");
    json_escape(&b, srv->service);
    epp_buf_append_str(&b, "\"}");
    epp_http_reply_json(req, 200, b.data ? b.data : "{}", b.data ? b.len : 2);
    epp_buf_free(&b);
}

static void h_ready(epp_http_req_t *req, void *ud)
{
    epp_http_server_t *srv = ud;
    char reason[256] = "";
    if (!srv->opts.ready || srv->opts.ready(srv->opts.ready_ud, reason, sizeof(reason))) {
        static const char ok[] = "{\"status\":\"ready\"}";
        epp_http_reply_json(req, 200, ok, sizeof(ok) - 1);
        return;
    }
    epp_buf_t b = {0};
    reason[sizeof(reason) - 1] = '\0';
    epp_buf_append_str(&b, "{\"status\":\"not_ready\",\"reason\":\"");
    json_escape(&b, reason[0] ? reason : "not ready");
    epp_buf_append_str(&b, "\"}");
    epp_http_reply_json(req, 503, b.data ? b.data : "{}", b.data ? b.len : 2);
    epp_buf_free(&b);
}

static void h_metrics(epp_http_req_t *req, void *ud)
{
    epp_http_server_t *srv = ud;
    if (!srv->opts.metrics) {
        epp_http_reply_error(req, 404, "not_found", "metrics are not enabled", NULL, 0);
        return;
    }
    epp_buf_t b = {0};
    if (epp_metrics_render(srv->opts.metrics, &b) < 0) {
        epp_buf_free(&b);
        epp_http_reply_error(req, 500, "internal", "metrics rendering failed", NULL, 0);
        return;
    }
    epp_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "",
                   b.len);
    epp_buf_free(&b);
}

/* ------------------------------------------------------------------------------------------ */
/* Routing */

/* Splits the raw path into decoded segments (in the connection arena). Returns the count, or
 * -1 for a path we refuse (too many segments, an encoded NUL, not absolute). */
static int split_path(conn_t *c, const char *url, char **segs)
{
    if (url[0] != '/')
        return -1;
    int n = 0;
    const char *p = url + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == MAX_SEGS)
            return -1;
        char *d = arena_alloc(c, len + 1);
        if (!d || url_decode(d, p, len) < 0)
            return -1;
        segs[n++] = d;
        if (!e)
            break;
        p = e + 1;
    }
    return n;
}

static int route_match(const route_t *r, char **segs, int n)
{
    if ((unsigned)n != r->nsegs)
        return 0;
    for (int i = 0; i < n; i++) {
        if (r->is_param[i] ? segs[i][0] == '\0' : strcmp(r->segs[i], segs[i]) != 0)
            return 0;
    }
    return 1;
}

static int origin_allowed(const epp_http_server_t *srv, const char *origin)
{
    if (!origin)
        return 0;
    if (srv->cors_any)
        return 1;
    for (size_t i = 0; i < srv->ncors; i++) {
        if (strcmp(srv->cors[i], origin) == 0)
            return 1;
    }
    return 0;
}

/* Builds "GET, POST" for the routes matching the path. */
static void allow_list(epp_http_server_t *srv, char **segs, int n, char *out, size_t outsz)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < srv->nroutes; i++) {
        route_t *r = &srv->routes[i];
        if (!route_match(r, segs, n))
            continue;
        if (strstr(out, r->method))
            continue;
        int w = snprintf(out + o, outsz - o, "%s%s", o ? ", " : "", r->method);
        if (w < 0 || (size_t)w >= outsz - o)
            break;
        o += (size_t)w;
    }
    if (srv->cors && o && o + 9 < outsz)
        snprintf(out + o, outsz - o, ", OPTIONS");
}

static void preflight(epp_http_req_t *req, const char *allow)
{
    epp_http_server_t *srv = req->srv;
    if (claim(req, 0) < 0)
        return;
    fill_reply(req, 204, NULL, NULL, 0);
    if (req->cors_ok) {
        hdr_add(req, "Access-Control-Allow-Methods", allow);
        hdr_add(req, "Access-Control-Allow-Headers",
                "Content-Type, Content-Encoding, Authorization, X-API-Key, traceparent");
        hdr_add(req, "Access-Control-Max-Age", "600");
    }
    (void)srv;
    atomic_fetch_or(&req->state, ST_READY);
}

/* Everything decided from the request line and headers. Leaves READY set when it answered. */
static void on_headers(epp_http_req_t *req)
{
    epp_http_server_t *srv = req->srv;
    conn_t *c = req->conn;
    char *segs[MAX_SEGS];

    if (srv->cors) {
        req->origin = MHD_lookup_connection_value(req->mhd, MHD_HEADER_KIND, "Origin");
        req->cors_ok = origin_allowed(srv, req->origin);
    }
    if (atomic_load(&srv->stopping)) {
        early_error(req, 503, "shutting_down", "the service is shutting down", 1);
        return;
    }
    int n = split_path(c, req->url, segs);
    if (n < 0) {
        early_error(req, 400, "invalid_path", "the request path is malformed", 0);
        return;
    }
    int midx = req->method_idx == M_HEAD ? M_GET : req->method_idx;
    route_t *found = NULL;
    route_t *path_route = NULL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        route_t *r = &srv->routes[i];
        if (!route_match(r, segs, n))
            continue;
        if (!path_route)
            path_route = r;
        if (r->method_idx == midx && (midx != M_OTHER || strcmp(r->method, req->method) == 0)) {
            found = r;
            break;
        }
    }
    if (!path_route) {
        early_error(req, 404, "not_found", "no such route", 0);
        return;
    }
    if (!found) {
        char allow[128];
        allow_list(srv, segs, n, allow, sizeof(allow));
        req->stats = &path_route->stats;
        if (req->method_idx == M_OPTIONS && srv->cors) {
            preflight(req, allow);
            return;
        }
        early_error(req, 405, "method_not_allowed", "method not allowed on this route", 0);
        hdr_add(req, "Allow", allow);
        return;
    }
    req->route = found;
    req->stats = &found->stats;
    unsigned np = 0;
    for (unsigned i = 0; i < found->nsegs && np < MAX_PARAMS; i++) {
        if (found->is_param[i])
            req->params[np++] = segs[i];
    }

    /* API key. */
    int key_idx = -1;
    if (srv->nkeys > 0 && !(found->flags & EPP_HTTP_ROUTE_PUBLIC)) {
        size_t len = 0;
        const char *cand = auth_candidate(req, &len);
        key_idx = cand ? auth_match(srv, cand, len) : -1;
        if (key_idx < 0) {
            early_error(req, 401, "unauthorized",
                        cand ? "invalid API key" : "an API key is required", 0);
            hdr_add(req, "WWW-Authenticate", "Bearer");
            return;
        }
    }

    /* Rate limit: per key when keys are on, else per client address. */
    if (srv->rl && !(found->flags & (ROUTE_NO_RATELIMIT | EPP_HTTP_ROUTE_PUBLIC))) {
        unsigned char key[17] = {0};
        if (key_idx >= 0) {
            key[0] = 1;
            memcpy(key + 1, &key_idx, sizeof(key_idx));
        } else if (c->addr.ss_family == AF_INET) {
            key[0] = 4;
            memcpy(key + 1, &((struct sockaddr_in *)&c->addr)->sin_addr, 4);
        } else if (c->addr.ss_family == AF_INET6) {
            key[0] = 6;
            memcpy(key + 1, &((struct sockaddr_in6 *)&c->addr)->sin6_addr, 16);
        }
        unsigned wait = ratelimit_take(srv, key);
        if (wait > 0) {
            early_error(req, 429, "rate_limited", "rate limit exceeded", wait);
            return;
        }
    }

    /* A query argument that does not decode (a %00) would otherwise read as absent, and a
     * handler would answer as if the filter had not been given: refuse the request instead. */
    bad_query_t bq = {req, NULL};
    MHD_get_connection_values_n(req->mhd, MHD_GET_ARGUMENT_KIND, query_check_iter, &bq);
    if (bq.bad) {
        if (claim(req, 0) < 0)
            return;
        char msg[160];
        snprintf(msg, sizeof msg, "query parameter %.64s is not valid percent-encoding text",
                 bq.bad);
        fill_error(req, 400, "invalid_parameter", msg, bq.bad, 0);
        atomic_fetch_or(&req->state, ST_READY);
        return;
    }

    /* Body limits, decided before reading any of it. */
    const char *cl = MHD_lookup_connection_value(req->mhd, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(req->mhd, MHD_HEADER_KIND, "Transfer-Encoding");
    unsigned long long clen = 0;
    if (cl) {
        char *end;
        errno = 0;
        clen = strtoull(cl, &end, 10);
        if (errno || end == cl)
            clen = ~0ull;
    }
    if (found->flags & EPP_HTTP_ROUTE_NO_BODY) {
        if (clen > 0 || te) {
            early_error(req, 413, "payload_too_large", "this route takes no request body", 0);
            return;
        }
    } else if (clen > srv->opts.max_body) {
        early_error(req, 413, "payload_too_large", "the request body is too large", 0);
        return;
    } else if (clen > 0 && clen > req->body.cap && clen <= 256 * 1024) {
        /* One allocation for a body of known, modest size; a client declaring a large body
         * and sending nothing does not get to pin that much memory up front. */
        epp_buf_reserve(&req->body, (size_t)clen);
    }
}

/* Calls the handler and then queues the reply or suspends the connection. */
static enum MHD_Result dispatch(epp_http_req_t *req)
{
    epp_http_server_t *srv = req->srv;
    atomic_fetch_or(&req->state, ST_DISPATCHED);
    req->route->handler(req, req->route->ud);
    unsigned st = atomic_load(&req->state);
    if (!(st & ST_READY) && !req->suspend_requested) {
        EPP_ERROR("http handler for %s %s returned without replying or suspending", req->method,
                  req->route->pattern);
        if (epp_http_reply_error(req, 500, "internal", "the handler did not reply", NULL, 0) == 0)
            st = atomic_load(&req->state);
    }
    if (!(st & ST_READY)) {
        MHD_suspend_connection(req->mhd);
        shim_suspended(req->conn->worker->shim, req->mhd, req->conn->fd);
        unsigned old = atomic_fetch_or(&req->state, ST_SUSPENDED);
        if (old & ST_READY) {
            /* The reply arrived between the check and the suspension (we are the worker). */
            shim_resumed(req->conn->worker->shim, req->mhd);
            MHD_resume_connection(req->mhd);
            req->conn->worker->rerun = 1;
        } else if (atomic_load(&srv->stopping)) {
            /* destroy() may have walked the connections before this request was dispatched. */
            reply_shutdown(req);
        }
        return MHD_YES;
    }
    return queue_reply(req);
}

/* ------------------------------------------------------------------------------------------ */
/* libmicrohttpd callbacks */

static void req_reset(conn_t *c, struct MHD_Connection *mhd, const char *method, const char *url)
{
    epp_http_req_t *req = &c->req;
    arena_reset(c);
    trim_buf(&req->body);
    trim_buf(&req->out);
    epp_buf_reset(&req->hdrs);
    atomic_store(&req->state, 0);
    req->conn = c;
    req->mhd = mhd;
    req->srv = c->srv;
    req->suspend_requested = 0;
    req->queued = 0;
    req->too_big = 0;
    req->stock_503 = 0;
    req->discarded = 0;
    req->cors_ok = 0;
    req->method = method;
    req->method_idx = method_index(method);
    req->url = url;
    req->origin = NULL;
    req->route = NULL;
    req->stats = NULL;
    memset(req->params, 0, sizeof(req->params));
    req->query_decoded = 0;
    req->status = 0;
    req->data = NULL;
    req->ip[0] = '\0';
    req->start_us = mono_us();
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mhd, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    epp_http_server_t *srv = cls;
    epp_http_req_t *req = *con_cls;
    (void)version;

    if (!req) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        conn_t *c = ci ? ci->socket_context : NULL;
        if (!c)
            return MHD_NO;
        req_reset(c, mhd, method, url);
        c->in_request = 1;
        req = &c->req;
        *con_cls = req;
        atomic_fetch_add(&srv->inflight, 1);
        gauge_add(srv->g_inflight, 1);
        on_headers(req);
        if (atomic_load(&req->state) & ST_READY)
            return queue_reply(req);
        return MHD_YES;
    }

    unsigned st = atomic_load(&req->state);
    if (st & ST_READY) {
        /* Resumed with a reply, or an early reply libmicrohttpd did not take yet. */
        if (req->queued) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        return queue_reply(req);
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        /* A body that dribbles in (every byte resetting the idle timeout) must still end
         * within 4 timeouts; past that the connection is closed without a reply. */
        if (mono_us() - req->start_us > (int64_t)srv->body_deadline_us)
            return MHD_NO;
        if (req->too_big) {
            /* Discarding the rest of an oversized chunked body, up to a bound. */
            req->discarded += n;
            return req->discarded > srv->opts.max_body * 4 + 1024 * 1024 ? MHD_NO : MHD_YES;
        }
        if (req->body.len + n > srv->opts.max_body) {
            req->too_big = 1;
            trim_buf(&req->body);
            /* libmicrohttpd 0.9.75 cannot queue a reply in the middle of an upload: the
             * rest is read and dropped (bounded above), then 413. */
            return MHD_YES;
        }
        if (epp_buf_append(&req->body, upload_data, n) < 0)
            return MHD_NO;
        return MHD_YES;
    }
    if (req->too_big) {
        early_error(req, 413, "payload_too_large", "the request body is too large", 0);
        return queue_reply(req);
    }
    if (st & ST_DISPATCHED)
        return MHD_YES; /* suspended and woken without a reply: cannot happen; be safe */
    return dispatch(req);
}

static void on_completed(void *cls, struct MHD_Connection *mhd, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    epp_http_server_t *srv = cls;
    epp_http_req_t *req = *con_cls;
    (void)mhd;
    (void)toe;
    if (!req)
        return;
    *con_cls = NULL;
    req->conn->in_request = 0;
    req->conn->idle_since_us = mono_us();
    atomic_fetch_sub(&srv->inflight, 1);
    gauge_add(srv->g_inflight, -1);
}

static void on_connection(void *cls, struct MHD_Connection *mhd, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    worker_t *w = cls;
    epp_http_server_t *srv = w->srv;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
        int fd = fi ? fi->connect_fd : -1;
        shim_fresh(w->shim, fd);
        conn_t *c = calloc(1, sizeof(*c));
        if (!c)
            return; /* on_access refuses the connection */
        c->fd = fd;
        c->idle_since_us = mono_us();
        c->srv = srv;
        c->worker = w;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                   : sizeof(struct sockaddr_in);
            memcpy(&c->addr, ci->client_addr, len);
            c->addrlen = len;
            ip_count(srv, &c->addr, 1);
        }
        pthread_mutex_lock(&srv->conns_lock);
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        pthread_mutex_unlock(&srv->conns_lock);
        atomic_fetch_add(&srv->conns_open, 1);
        gauge_add(srv->g_conns, 1);
        *socket_context = c;
        return;
    }
    conn_t *c = *socket_context;
    if (!c)
        return;
    *socket_context = NULL;
    if (c->addrlen)
        ip_count(srv, &c->addr, -1);
    atomic_fetch_sub(&srv->conns_open, 1);
    gauge_add(srv->g_conns, -1);
    pthread_mutex_lock(&srv->conns_lock);
    if (atomic_load(&srv->stopping)) {
        /* destroy() frees it once libmicrohttpd has stopped (a reply may still race). */
        pthread_mutex_unlock(&srv->conns_lock);
        return;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&srv->conns_lock);
    arena_reset(c);
    free(c->arena);
    epp_buf_free(&c->req.body);
    epp_buf_free(&c->req.out);
    epp_buf_free(&c->req.hdrs);
    free(c);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!EPP_LOG_ON(EPP_LOG_WARN))
        return;
    /* Hostile clients can make libmicrohttpd complain once per connection: at most 20 lines
     * a second reach the log. */
    static _Atomic int64_t window;
    static _Atomic int lines;
    int64_t now_s = mono_us() / 1000000;
    int64_t w = atomic_load(&window);
    if (w != now_s && atomic_compare_exchange_strong(&window, &w, now_s))
        atomic_store(&lines, 0);
    if (atomic_fetch_add(&lines, 1) >= 20)
        return;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    EPP_LOGKV(EPP_LOG_WARN, "libmicrohttpd", "detail", msg);
}

/* ------------------------------------------------------------------------------------------ */
/* Server lifecycle */

void epp_http_opts_default(epp_http_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->service = "epp";
    opts->port = 8000;
    opts->threads = 2;
    opts->max_connections = 10000;
    opts->timeout_s = 30;
    opts->max_body = 1024 * 1024;
}

static void route_free(route_t *r)
{
    free(r->method);
    free(r->pattern);
    free(r->segbuf);
}

static int route_add(epp_http_server_t *srv, const char *method, const char *pattern,
                     epp_http_handler_t handler, void *ud, unsigned flags)
{
    if (!method || !pattern || !handler || pattern[0] != '/')
        return EPP_EINVAL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        if (strcmp(srv->routes[i].method, method) == 0 &&
            strcmp(srv->routes[i].pattern, pattern) == 0)
            return EPP_EINVAL;
    }
    if (srv->nroutes == srv->route_cap) {
        /* Routes are added before start only, so reallocation moves nothing in use. */
        size_t cap = srv->route_cap ? srv->route_cap * 2 : 8;
        route_t *nr = realloc(srv->routes, cap * sizeof(*nr));
        if (!nr)
            return EPP_ENOMEM;
        srv->routes = nr;
        srv->route_cap = cap;
    }
    route_t *r = &srv->routes[srv->nroutes];
    memset(r, 0, sizeof(*r));
    r->method = strdup(method);
    r->pattern = strdup(pattern);
    r->segbuf = strdup(pattern + 1);
    if (!r->method || !r->pattern || !r->segbuf) {
        route_free(r);
        return EPP_ENOMEM;
    }
    unsigned nparams = 0;
    char *p = r->segbuf;
    for (;;) {
        char *e = strchr(p, '/');
        if (e)
            *e = '\0';
        if (r->nsegs == MAX_SEGS) {
            route_free(r);
            return EPP_EINVAL;
        }
        size_t len = strlen(p);
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if (++nparams > MAX_PARAMS) {
                route_free(r);
                return EPP_EINVAL;
            }
            p[len - 1] = '\0';
            r->is_param[r->nsegs] = 1;
            p++;
        }
        r->segs[r->nsegs++] = p;
        if (!e)
            break;
        p = e + 1;
    }
    r->handler = handler;
    r->ud = ud;
    r->flags = flags;
    r->method_idx = method_index(method);
    srv->nroutes++;
    return 0;
}

epp_http_server_t *epp_http_create(const epp_http_opts_t *opts, char *err, size_t errsz)
{
    epp_http_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    srv->opts = *opts;
    srv->listen_fd = -1;
    srv->hook_fd = -1;
    pthread_mutex_init(&srv->conns_lock, NULL);
    pthread_mutex_init(&srv->quiesce_lock, NULL);
    pthread_cond_init(&srv->quiesce_cond, NULL);
    for (unsigned i = 0; i < IP_STRIPES; i++)
        pthread_mutex_init(&srv->ip_locks[i], NULL);
    srv->service = strdup(opts->service ? opts->service : "epp");
    srv->bind_address = opts->bind_address ? strdup(opts->bind_address) : NULL;
    if (!srv->service || (opts->bind_address && !srv->bind_address))
        goto nomem;
    srv->opts.service = srv->service;
    srv->opts.bind_address = srv->bind_address;
    srv->opts.api_keys = NULL;
    srv->opts.cors_origins = NULL;
    if (srv->opts.threads < 1)
        srv->opts.threads = 1;
    if (srv->opts.max_connections < 1)
        srv->opts.max_connections = 1;
    srv->body_deadline_us = (uint64_t)(srv->opts.timeout_s ? srv->opts.timeout_s : 30) * 4000000;

    size_t nkeys = 0;
    char **keys = split_list(opts->api_keys, &nkeys);
    if (opts->api_keys && opts->api_keys[0] && !keys)
        goto nomem;
    if (nkeys > 0) {
        srv->keys = calloc(nkeys, sizeof(*srv->keys));
        if (!srv->keys) {
            for (size_t i = 0; i < nkeys; i++)
                free(keys[i]);
            free(keys);
            goto nomem;
        }
    }
    int bad_key = 0;
    for (size_t i = 0; i < nkeys; i++) {
        size_t len = strlen(keys[i]);
        if (len > MAX_KEY_LEN)
            bad_key = 1;
        else
            memcpy(srv->keys[i].bytes, keys[i], len);
        srv->keys[i].len = len;
        memset(keys[i], 0, len); /* the copy in our table is the only one kept */
        free(keys[i]);
    }
    free(keys);
    srv->nkeys = nkeys;
    if (bad_key) {
        snprintf(err, errsz, "an API key is longer than %d bytes", MAX_KEY_LEN);
        epp_http_destroy(srv);
        return NULL;
    }

    if (opts->cors_origins) {
        srv->cors = split_list(opts->cors_origins, &srv->ncors);
        if (!srv->cors) {
            srv->cors = calloc(1, sizeof(char *)); /* CORS on, empty allow-list */
            if (!srv->cors)
                goto nomem;
        }
        for (size_t i = 0; i < srv->ncors; i++)
            srv->cors_any |= strcmp(srv->cors[i], "*") == 0;
    }

    if (opts->rate_limit_rps > 0) {
        srv->rl_burst = opts->rate_limit_burst > 0 ? opts->rate_limit_burst : opts->rate_limit_rps;
        if (srv->rl_burst < 1)
            srv->rl_burst = 1;
        srv->rl = calloc(RL_STRIPES, sizeof(*srv->rl));
        if (!srv->rl)
            goto nomem;
        for (int i = 0; i < RL_STRIPES; i++)
            pthread_mutex_init(&srv->rl[i].lock, NULL);
    }

    if (opts->metrics) {
        srv->m_requests = epp_metrics_counter(
            opts->metrics, "epp_http_requests_total",
            "HTTP requests answered, by route pattern, method and status.", "route,method,status");
        epp_metric_t *g = epp_metrics_gauge(opts->metrics, "epp_http_requests_in_flight",
                                            "HTTP requests received and not yet completed.", NULL);
        srv->g_inflight = g ? epp_metric_default(g) : NULL;
        g = epp_metrics_gauge(opts->metrics, "epp_http_connections_open",
                              "Open HTTP client connections.", NULL);
        srv->g_conns = g ? epp_metric_default(g) : NULL;
    }
    stats_init(srv, &srv->unmatched, "unmatched");

    if (route_add(srv, "GET", "/health", h_health, srv,
                  EPP_HTTP_ROUTE_PUBLIC | EPP_HTTP_ROUTE_NO_BODY | ROUTE_NO_RATELIMIT) < 0 ||
        route_add(srv, "GET", "/ready", h_ready, srv, EPP_HTTP_ROUTE_NO_BODY | ROUTE_NO_RATELIMIT) <
            0 ||
        route_add(srv, "GET", "/metrics", h_metrics, srv,
                  EPP_HTTP_ROUTE_NO_BODY | ROUTE_NO_RATELIMIT) < 0)
        goto nomem;
    return srv;

nomem:
    snprintf(err, errsz, "out of memory");
    epp_http_destroy(srv);
    return NULL;
}

int epp_http_set_loop_hook(epp_http_server_t *srv, int fd, epp_http_loop_hook_fn hook, void *ud)
{
    if (!srv || srv->workers || !hook)
        return EPP_EINVAL;
    srv->hook = hook;
    srv->hook_ud = ud;
    srv->hook_fd = fd;
    return 0;
}

int epp_http_route(epp_http_server_t *srv, const char *method, const char *pattern,
                   epp_http_handler_t handler, void *ud, unsigned flags)
{
    if (!srv || srv->workers)
        return EPP_EINVAL;
    return route_add(srv, method, pattern, handler, ud, flags & 0xffffu);
}

/* ------------------------------------------------------------------------------------------ */
/* Worker threads: one libmicrohttpd daemon each, run from our own loop.
 *
 * libmicrohttpd 0.9.75's internal epoll loop (MHD_epoll) re-enters epoll_wait with the full
 * timeout whenever a call returned exactly MAX_EVENTS (128) events: with 128 connections ready
 * at once and nothing else happening, the events already collected wait for the next connection
 * timeout (30 s). That stalled a single-threaded server under 256 connections and can stall a
 * pool worker. Run in "external" mode instead, MHD_run() always polls with a zero timeout, and
 * this loop sleeps in poll(2) on the daemon's epoll descriptor for MHD_get_timeout(). Each
 * worker owns a daemon; all share one listening socket that we create. Replies from other
 * threads wake the loop through the worker's eventfd (worker_kick); the optional loop hook
 * (epp_http_set_loop_hook) runs on every turn and its descriptor is watched while asleep. */

static void worker_wake(worker_t *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->wake_fd, &one, sizeof(one));
    (void)r;
}

/* Makes the worker run its daemon again soon (a reply was pushed onto its resume stack). In
 * external mode libmicrohttpd does not signal resumes itself. `kicked` is 1 while the worker is
 * awake, so a burst of replies costs no syscall at all while it works, and one eventfd write
 * when it was about to sleep or asleep. */
static void worker_kick(worker_t *w)
{
    if (!atomic_exchange(&w->kicked, 1))
        worker_wake(w);
}

/* The request line and headers must arrive within 4 * timeout_s (the body's bound too): a
 * client dribbling a header byte at a time resets libmicrohttpd's idle timeout with every byte,
 * and the 16 KiB header buffer would hold it for hours. About once a second each worker shuts
 * down the sockets of its connections that have been between requests for longer (an idle
 * keep-alive connection is closed by the idle timeout well before that); libmicrohttpd then
 * sees the end of the stream and closes the connection itself. Worker thread. */
static void sweep_slow_headers(worker_t *w, int64_t now)
{
    epp_http_server_t *srv = w->srv;
    pthread_mutex_lock(&srv->conns_lock);
    for (conn_t *c = srv->conns; c; c = c->next) {
        if (c->worker != w || c->in_request || c->cut || c->fd < 0)
            continue;
        if (now - c->idle_since_us > (int64_t)srv->body_deadline_us) {
            shutdown(c->fd, SHUT_RDWR);
            c->cut = 1;
        }
    }
    pthread_mutex_unlock(&srv->conns_lock);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    epp_http_server_t *srv = w->srv;
    int hook_ready = 0;
    int64_t next_sweep = mono_us() + 1000000;
    while (!atomic_load(&w->quit)) {
        if (atomic_load(&srv->quiesce_req) && !w->quiesced) {
            MHD_quiesce_daemon(w->daemon); /* the listening socket stays ours */
            w->quiesced = 1;
            pthread_mutex_lock(&srv->quiesce_lock);
            srv->nquiesced++;
            pthread_cond_broadcast(&srv->quiesce_cond);
            pthread_mutex_unlock(&srv->quiesce_lock);
        }
        atomic_store(&w->kicked, 1); /* awake: repliers need not write the eventfd */
        resume_replied(w);
        MHD_run(w->daemon);
        if (srv->hook) {
            /* Replies made in here land on this worker's own stack without a wake-up (kicked
             * is 1); the check before sleeping below picks them up. */
            srv->hook(srv->hook_ud, hook_ready);
            hook_ready = 0;
        }
        if (w->rerun) {
            w->rerun = 0; /* a connection was resumed from inside MHD_run() */
            continue;
        }
        int64_t now = mono_us();
        if (now >= next_sweep) {
            sweep_slow_headers(w, now);
            next_sweep = now + 1000000;
        }
        MHD_UNSIGNED_LONG_LONG to = 0;
        int timeout = 1000; /* at least once a second: the header sweep */
        if (MHD_get_timeout(w->daemon, &to) == MHD_YES && to < 1000)
            timeout = (int)to;
        if (timeout == 0)
            continue;
        /* About to sleep: from here a reply must wake us. Sequentially consistent with
         * publish(): either the load below sees its push, or its kick sees 0 and writes. */
        atomic_store(&w->kicked, 0);
        if (atomic_load(&w->resume_head))
            continue;
        struct pollfd pf[3] = {{.fd = w->epoll_fd, .events = POLLIN},
                               {.fd = w->wake_fd, .events = POLLIN},
                               {.fd = srv->hook_fd, .events = POLLIN}};
        if (poll(pf, srv->hook && srv->hook_fd >= 0 ? 3 : 2, timeout) > 0) {
            if (pf[1].revents) {
                uint64_t v;
                ssize_t r = read(w->wake_fd, &v, sizeof(v));
                (void)r;
            }
            hook_ready = pf[2].revents != 0;
        }
    }
    return NULL;
}

/* Per-IP connection counts shared by all workers: the accept policy refuses a connection
 * when its address already has max_per_ip open (checked without reserving, so concurrent
 * accepts on different workers may pass the limit by at most threads - 1); the counts move
 * with the connection-started and -closed notifications, which always come in pairs. */
typedef struct ipcount {
    struct ipcount *next;
    unsigned char key[17];
    unsigned count;
} ipcount_t;

static int addr_key(const struct sockaddr *sa, unsigned char key[17])
{
    memset(key, 0, 17);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        key[0] = 6;
        memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

/* The chain of a key's bucket; a bucket is guarded by lock ip_locks[bucket % IP_STRIPES]. */
static ipcount_t **ip_lock(epp_http_server_t *srv, const unsigned char key[17], unsigned *stripe)
{
    unsigned bucket = (unsigned)(fnv1a(key, 17) % IP_BUCKETS);
    *stripe = bucket % IP_STRIPES;
    pthread_mutex_lock(&srv->ip_locks[*stripe]);
    ipcount_t **pp = &srv->ip_buckets[bucket];
    while (*pp && memcmp((*pp)->key, key, 17) != 0)
        pp = &(*pp)->next;
    return pp;
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    epp_http_server_t *srv = cls;
    unsigned char key[17];
    unsigned stripe;
    (void)addrlen;
    if (srv->opts.max_per_ip == 0 || addr_key(addr, key) < 0)
        return MHD_YES;
    ipcount_t **pp = ip_lock(srv, key, &stripe);
    int ok = !*pp || (*pp)->count < srv->opts.max_per_ip;
    pthread_mutex_unlock(&srv->ip_locks[stripe]);
    return ok ? MHD_YES : MHD_NO;
}

static void ip_count(epp_http_server_t *srv, const struct sockaddr_storage *ss, int delta)
{
    unsigned char key[17];
    unsigned stripe;
    if (srv->opts.max_per_ip == 0 || addr_key((const struct sockaddr *)ss, key) < 0)
        return;
    ipcount_t **pp = ip_lock(srv, key, &stripe);
    if (delta > 0) {
        if (!*pp) {
            ipcount_t *e = calloc(1, sizeof(*e));
            if (e) {
                memcpy(e->key, key, 17);
                *pp = e;
            }
        }
        if (*pp)
            (*pp)->count++;
    } else if (*pp && --(*pp)->count == 0) {
        ipcount_t *e = *pp;
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&srv->ip_locks[stripe]);
}

static int make_listener(epp_http_server_t *srv, char *err, size_t errsz)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *bind_addr = srv->bind_address;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (!bind_addr || !bind_addr[0] || strcmp(bind_addr, "0.0.0.0") == 0) {
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = htons((uint16_t)srv->opts.port);
        len = sizeof(*sin);
    } else if (inet_pton(AF_INET, bind_addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)srv->opts.port);
        len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, bind_addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)srv->opts.port);
        len = sizeof(*sin6);
    } else {
        snprintf(err, errsz, "bind address '%s' is not an IP address", bind_addr);
        return EPP_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errsz, "socket: %s", strerror(errno));
        return EPP_EIO;
    }
    int one = 1;
    /* Restarts must not wait for old connections in TIME_WAIT (what
     * MHD_OPTION_LISTENING_ADDRESS_REUSE would do if libmicrohttpd made the socket). */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
        snprintf(err, errsz, "cannot listen on %s:%d: %s", bind_addr ? bind_addr : "0.0.0.0",
                 srv->opts.port, strerror(errno));
        close(fd);
        return EPP_EIO;
    }
    len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    srv->port = ntohs(ss.ss_family == AF_INET6 ? sin6->sin6_port : sin->sin_port);
    srv->listen_fd = fd;
    return 0;
}

int epp_http_start(epp_http_server_t *srv, char *err, size_t errsz)
{
    if (srv->workers) {
        snprintf(err, errsz, "already started");
        return EPP_ESTATE;
    }
    /* Per-route metric series, now that the routes array no longer moves. */
    for (size_t i = 0; i < srv->nroutes; i++)
        stats_init(srv, &srv->routes[i].stats, srv->routes[i].pattern);

    int rc = make_listener(srv, err, errsz);
    if (rc < 0)
        return rc;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    unsigned nw = srv->opts.threads;
    unsigned per_worker = (srv->opts.max_connections + nw - 1) / nw;
    srv->workers = calloc(nw, sizeof(*srv->workers));
    if (!srv->workers) {
        snprintf(err, errsz, "out of memory");
        return EPP_ENOMEM;
    }
    srv->nworkers = nw;
    for (unsigned i = 0; i < nw; i++)
        srv->workers[i].wake_fd = -1;
    for (unsigned i = 0; i < nw; i++) {
        worker_t *w = &srv->workers[i];
        w->srv = srv;
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct MHD_OptionItem ops[] = {
            /* First, so that libmicrohttpd reports nothing through its own stderr logger. */
            {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, NULL},
            {MHD_OPTION_LISTEN_SOCKET, srv->listen_fd, NULL},
            {MHD_OPTION_CONNECTION_LIMIT, per_worker, NULL},
            {MHD_OPTION_CONNECTION_TIMEOUT, srv->opts.timeout_s, NULL},
            {MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEM_LIMIT, NULL},
            {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv},
            {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, w},
            {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape_identity, NULL},
            {MHD_OPTION_END, 0, NULL},
        };
        w->daemon = MHD_start_daemon(flags, 0, on_accept, srv, on_access, srv, MHD_OPTION_ARRAY,
                                     ops, MHD_OPTION_END);
        const union MHD_DaemonInfo *di =
            w->daemon ? MHD_get_daemon_info(w->daemon, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
        if (w->wake_fd < 0 || !di) {
            snprintf(err, errsz, "cannot start the HTTP server (worker %u)", i);
            return EPP_EIO;
        }
        w->epoll_fd = di->epoll_fd;
        w->shim = shim_register(w->epoll_fd);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, errsz, "cannot start an HTTP worker thread");
            return EPP_EIO;
        }
        w->started = 1;
    }
    if (srv->nkeys == 0)
        EPP_WARN("API keys are not set: every route is open to anyone who can connect");
    char port[16];
    snprintf(port, sizeof(port), "%d", srv->port);
    EPP_LOGKV(EPP_LOG_INFO, "listening", "port", port);
    return 0;
}

int epp_http_port(const epp_http_server_t *srv)
{
    return srv->port;
}

void epp_http_quiesce(epp_http_server_t *srv)
{
    if (!srv || !srv->workers)
        return;
    pthread_mutex_lock(&srv->quiesce_lock);
    if (!atomic_load(&srv->quiesce_req)) {
        atomic_store(&srv->quiesce_req, 1);
        unsigned running = 0;
        for (unsigned i = 0; i < srv->nworkers; i++) {
            if (srv->workers[i].started) {
                worker_wake(&srv->workers[i]);
                running++;
            }
        }
        /* Wait (bounded) until every daemon stopped accepting, then refuse new connections
         * outright by closing the socket. */
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 2;
        while (srv->nquiesced < running &&
               pthread_cond_timedwait(&srv->quiesce_cond, &srv->quiesce_lock, &dl) == 0)
            ;
        if (srv->nquiesced == running && srv->listen_fd >= 0) {
            close(srv->listen_fd);
            srv->listen_fd = -1;
        }
    }
    pthread_mutex_unlock(&srv->quiesce_lock);
}

unsigned epp_http_inflight(const epp_http_server_t *srv)
{
    return atomic_load(&((epp_http_server_t *)srv)->inflight);
}

static void conn_free(conn_t *c)
{
    arena_reset(c);
    free(c->arena);
    epp_buf_free(&c->req.body);
    epp_buf_free(&c->req.out);
    epp_buf_free(&c->req.hdrs);
    free(c);
}

void epp_http_destroy(epp_http_server_t *srv)
{
    if (!srv)
        return;
    if (srv->workers) {
        epp_http_quiesce(srv);
        pthread_mutex_lock(&srv->conns_lock);
        atomic_store(&srv->stopping, 1);
        size_t n = 0;
        for (conn_t *c = srv->conns; c; c = c->next)
            n++;
        epp_http_req_t **pending = calloc(n ? n : 1, sizeof(*pending));
        size_t np = 0;
        for (conn_t *c = srv->conns; c && pending; c = c->next) {
            unsigned st = atomic_load(&c->req.state);
            if ((st & ST_DISPATCHED) && !(st & ST_CLAIMED))
                pending[np++] = &c->req;
        }
        pthread_mutex_unlock(&srv->conns_lock);
        /* No conn_t is freed from here on (stopping is set), so the pointers stay valid. */
        for (size_t i = 0; i < np; i++)
            reply_shutdown(pending[i]);
        free(pending);
        /* Let the answers go out: libmicrohttpd drops queued replies when it stops. */
        int64_t deadline = mono_us() + 2000000;
        while (atomic_load(&srv->inflight) > 0 && mono_us() < deadline)
            usleep(2000);
        for (unsigned i = 0; i < srv->nworkers; i++) {
            worker_t *w = &srv->workers[i];
            atomic_store(&w->quit, 1);
            if (w->started) {
                worker_wake(w);
                pthread_join(w->thread, NULL);
            }
        }
        for (unsigned i = 0; i < srv->nworkers; i++) {
            worker_t *w = &srv->workers[i];
            if (w->daemon) {
                resume_replied(w); /* libmicrohttpd must not stop with suspended connections */
                if (!w->quiesced)
                    MHD_quiesce_daemon(w->daemon); /* never let a daemon close our socket */
                /* Before the daemon closes its epoll descriptor, whose number may be reused at
                 * once: libmicrohttpd's last calls go straight to the kernel (closing a kept
                 * socket removes its registration). */
                shim_unregister(w->shim);
                w->shim = NULL;
                MHD_stop_daemon(w->daemon);
            }
            if (w->wake_fd >= 0)
                close(w->wake_fd);
        }
        free(srv->workers);
        srv->workers = NULL;
    }
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    conn_t *c = srv->conns;
    while (c) {
        conn_t *next = c->next;
        conn_free(c);
        c = next;
    }
    for (size_t i = 0; i < srv->nroutes; i++)
        route_free(&srv->routes[i]);
    free(srv->routes);
    if (srv->keys) {
        memset(srv->keys, 0, srv->nkeys * sizeof(*srv->keys));
        free(srv->keys);
    }
    for (size_t i = 0; i < srv->ncors; i++)
        free(srv->cors[i]);
    free(srv->cors);
    if (srv->rl) {
        for (int i = 0; i < RL_STRIPES; i++)
            pthread_mutex_destroy(&srv->rl[i].lock);
        free(srv->rl);
    }
    for (unsigned i = 0; i < IP_BUCKETS; i++) {
        while (srv->ip_buckets[i]) {
            ipcount_t *e = srv->ip_buckets[i];
            srv->ip_buckets[i] = e->next;
            free(e);
        }
    }
    for (unsigned i = 0; i < IP_STRIPES; i++)
        pthread_mutex_destroy(&srv->ip_locks[i]);
    pthread_mutex_destroy(&srv->conns_lock);
    pthread_mutex_destroy(&srv->quiesce_lock);
    pthread_cond_destroy(&srv->quiesce_cond);
    free(srv->service);
    free(srv->bind_address);
    free(srv);
}

/* ------------------------------------------------------------------------------------------ */
/* Request accessors */

const char *epp_http_method(const epp_http_req_t *req)
{
    return req->method;
}

const char *epp_http_path(const epp_http_req_t *req)
{
    return req->url;
}

const char *epp_http_route_pattern(const epp_http_req_t *req)
{
    return req->route ? req->route->pattern : "unmatched";
}

const char *epp_http_path_param(const epp_http_req_t *req, const char *name)
{
    const route_t *r = req->route;
    if (!r || !name)
        return NULL;
    unsigned np = 0;
    for (unsigned i = 0; i < r->nsegs && np < MAX_PARAMS; i++) {
        if (!r->is_param[i])
            continue;
        if (strcmp(r->segs[i], name) == 0)
            return req->params[np];
        np++;
    }
    return NULL;
}

typedef struct {
    epp_http_req_t *req;
    const char *name;
    const char *found;
} query_find_t;

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    query_find_t *q = cls;
    (void)kind;
    char *k = arena_alloc(q->req->conn, key_size + 1);
    if (!k || url_decode(k, key, key_size) < 0 || strcmp(k, q->name) != 0)
        return MHD_YES;
    if (!value) {
        q->found = "";
        return MHD_NO;
    }
    char *v = arena_alloc(q->req->conn, value_size + 1);
    if (v && url_decode(v, value, value_size) == 0)
        q->found = v;
    return MHD_NO;
}

static enum MHD_Result query_check_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                        size_t key_size, const char *value, size_t value_size)
{
    bad_query_t *q = cls;
    (void)kind;
    char *k = arena_alloc(q->req->conn, key_size + 1);
    char *v = value ? arena_alloc(q->req->conn, value_size + 1) : NULL;
    if (!k || url_decode(k, key, key_size) < 0) {
        q->bad = "(name)";
        return MHD_NO;
    }
    if (value && (!v || url_decode(v, value, value_size) < 0)) {
        q->bad = k;
        return MHD_NO;
    }
    return MHD_YES;
}

const char *epp_http_query(const epp_http_req_t *req, const char *name)
{
    query_find_t q = {(epp_http_req_t *)req, name, NULL};
    if (!name)
        return NULL;
    MHD_get_connection_values_n(req->mhd, MHD_GET_ARGUMENT_KIND, query_iter, &q);
    return q.found;
}

const char *epp_http_header(const epp_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->mhd, MHD_HEADER_KIND, name);
}

const char *epp_http_body(const epp_http_req_t *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

const char *epp_http_client_ip(const epp_http_req_t *req)
{
    epp_http_req_t *r = (epp_http_req_t *)req;
    if (!r->ip[0]) {
        const conn_t *c = req->conn;
        const void *a = NULL;
        if (c->addr.ss_family == AF_INET)
            a = &((const struct sockaddr_in *)&c->addr)->sin_addr;
        else if (c->addr.ss_family == AF_INET6)
            a = &((const struct sockaddr_in6 *)&c->addr)->sin6_addr;
        if (!a || !inet_ntop(c->addr.ss_family, a, r->ip, sizeof(r->ip)))
            snprintf(r->ip, sizeof(r->ip), "unknown");
    }
    return r->ip;
}

int64_t epp_http_start_us(const epp_http_req_t *req)
{
    return req->start_us;
}

void epp_http_set_data(epp_http_req_t *req, void *data)
{
    req->data = data;
}

void *epp_http_get_data(const epp_http_req_t *req)
{
    return req->data;
}
