/* epp_http_server.c: the server object and its workers -- creating and destroying the server,
 * the listening socket, one thread per worker each running an epoll loop over its own
 * connections, and everything a connection does on the wire: accept, read, hand complete
 * requests to the route layer, write replies, time limits, lingering close.
 *
 * One loop per worker. Every worker has its own epoll set holding the shared listening socket
 * (EPOLLEXCLUSIVE: one worker wakes per burst of connections), its wake-up eventfd, the loop
 * hook's descriptor (epp_http_set_loop_hook) and its connections. A connection is registered
 * once, edge-triggered for input and output, and never re-registered: suspending a request
 * (the reply comes from Kafka later) costs no system call at all. Reading stops while a request
 * is being answered and resumes after its reply is written; `readable` remembers an edge that
 * no read has drained since, and a read shorter than the room offered means the socket is
 * drained, so a keep-alive request costs one recv, one send and a share of one epoll_wait.
 *
 * Each turn of the loop: wait for events (at most until the next sweep), serve them, write the
 * replies other threads handed over (the resume stack), run the loop hook, write the replies
 * the hook made on this thread (the ready list), and twice a second sweep the connections for
 * time limits. `kicked` is 1 while the worker is awake, so that repliers on other threads skip
 * the eventfd write; it is cleared just before the last look at the resume stack before
 * sleeping.
 *
 * Time limits (the sweep): no byte for timeout_s closes a connection that is not waiting for
 * its reply; the head of a request must arrive within 4 * timeout_s of the connection's start
 * or its previous reply, and its body within 4 * timeout_s of the head; a connection closing
 * after an error reply reads and drops what the client still sends for at most a second (and a
 * bounded number of bytes) so that the client sees the reply rather than a reset. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_http_internal.h"
#include "epp_log.h"

#define SWEEP_US       500000
#define LINGER_US      1000000
#define EVENTS         128
#define ACCEPT_BURST   8
#define RBUF_MIN       4096
#define KEEP_BUF_MAX   (64 * 1024) /* larger per-request buffers are freed after use */
#define BODY_READ_STEP (64 * 1024)

static char tag_listen, tag_wake, tag_hook; /* epoll data of the non-connection descriptors */
static _Thread_local epp_http__worker_t *self_worker;

int64_t epp_http__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

epp_http__worker_t *epp_http__self(void)
{
    return self_worker;
}

static void worker_wake(epp_http__worker_t *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->wake_fd, &one, sizeof(one));
    (void)r;
}

void epp_http__kick(epp_http__worker_t *w)
{
    if (!atomic_exchange(&w->kicked, 1))
        worker_wake(w);
}

static void gauge_add(epp_series_t *g, double v)
{
    if (g)
        epp_series_add(g, v);
}

static void trim_buf(epp_buf_t *b)
{
    if (b->cap > KEEP_BUF_MAX)
        epp_buf_free(b);
    else
        epp_buf_reset(b);
}

/* --- connections ------------------------------------------------------------------------ */

static void conn_free(epp_http__conn_t *c)
{
    epp_http__arena_free(c);
    free(c->rbuf);
    epp_buf_free(&c->req.body);
    epp_buf_free(&c->req.out);
    epp_buf_free(&c->req.hdrs);
    epp_buf_free(&c->wbuf);
    free(c);
}

/* The request on c is over (answered, or the connection is going away). */
static void request_end(epp_http__conn_t *c)
{
    epp_http_server_t *srv = c->srv;
    if (!c->in_request)
        return;
    c->in_request = 0;
    epp_http__body_release(&c->req);
    atomic_fetch_sub(&srv->inflight, 1);
    gauge_add(srv->g_inflight, -1);
}

/* Closes the socket and frees c, unless a handler's reply is still due: then c stays until the
 * reply arrives (its writer closes it). Worker thread. */
static void conn_close(epp_http__conn_t *c)
{
    epp_http__worker_t *w = c->worker;
    epp_http_server_t *srv = c->srv;
    if (c->dispatched) {
        c->closing = 1;
        return;
    }
    request_end(c);
    close(c->fd); /* also leaves the epoll set */
    epp_http__ip_release(srv, c);
    pthread_mutex_lock(&w->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    pthread_mutex_unlock(&w->lock);
    atomic_fetch_sub(&srv->conns_open, 1);
    gauge_add(srv->g_conns, -1);
    conn_free(c);
}

/* Sends what wbuf holds. 1 when all of it is out, 0 when the socket is full (EPOLLOUT will
 * say when to go on), -1 when the client is gone. */
static int conn_flush(epp_http__conn_t *c)
{
    while (c->woff < c->wbuf.len) {
        ssize_t n = send(c->fd, c->wbuf.data + c->woff, c->wbuf.len - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            c->last_io_us = epp_http__now_us();
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            return -1;
        }
    }
    c->woff = 0;
    trim_buf(&c->wbuf);
    return 1;
}

/* Resets c->req for the request whose first byte just arrived (or is parsed from the buffer). */
static void request_begin(epp_http__conn_t *c)
{
    epp_http_req_t *req = &c->req;
    epp_http__arena_reset(c);
    trim_buf(&req->body);
    trim_buf(&req->out);
    epp_buf_reset(&req->hdrs);
    atomic_store_explicit(&req->state, 0, memory_order_relaxed);
    req->conn = c;
    req->srv = c->srv;
    req->suspend_requested = 0;
    req->stock_503 = 0;
    req->cors_ok = 0;
    req->authed = 0;
    req->close_after = 0;
    req->method = "";
    req->method_idx = EPP_HTTP__M_OTHER;
    req->url = "";
    req->query = NULL;
    req->origin = NULL;
    req->nheaders = 0;
    req->route = NULL;
    req->stats = NULL;
    memset(req->params, 0, sizeof(req->params));
    req->reserved = 0;
    req->status = 0;
    req->data = NULL;
    req->ip[0] = '\0';
    c->want_continue = 0;
    c->keep_alive = 0;
    c->http10 = 0;
}

/* Turns the written reply into bytes (sent by conn_progress); the request ends here. Returns
 * -1 when the connection was closed and freed instead. */
static int conn_write_reply(epp_http__conn_t *c)
{
    epp_http_req_t *req = &c->req;
    epp_http_server_t *srv = c->srv;
    c->dispatched = 0;
    if (c->closing) {
        /* The client went away while its request was being answered. */
        conn_close(c);
        return -1;
    }
    if (!c->keep_alive || atomic_load_explicit(&srv->quiesce_req, memory_order_relaxed) ||
        c->phase != EPP_HTTP__P_DONE)
        req->close_after = 1;
    if (epp_http__write_reply(c, req) < 0) {
        conn_close(c);
        return -1;
    }
    epp_http__stats_count(req);
    int64_t now = epp_http__now_us();
    request_end(c);
    c->since_us = now; /* the next head's deadline counts from here */
    c->phase = EPP_HTTP__P_HEAD;
    /* Drop the answered request's bytes; pipelined ones move to the front. */
    size_t used = c->head_len + c->rpos_extra;
    if (used > c->rlen)
        used = c->rlen;
    memmove(c->rbuf, c->rbuf + used, c->rlen - used);
    c->rlen -= used;
    c->head_len = 0;
    c->rpos_extra = 0;
    c->scan = 0;
    if (req->close_after) {
        c->lingering = 1;
        c->linger_left = srv->opts.max_body * 4 + 1024 * 1024;
        c->linger_until_us = now + LINGER_US;
    }
    return 0;
}

/* A protocol error (negative status from the parser): answered, then the connection closes.
 * -1 when the connection is already gone. */
static int conn_refuse(epp_http__conn_t *c, int status)
{
    epp_http_req_t *req = &c->req;
    const char *code = "bad_request", *msg = "the request is malformed";
    switch (status) {
    case 413:
        code = "payload_too_large";
        msg = "the request body is too large";
        break;
    case 414:
        code = "uri_too_long";
        msg = "the request line is too long";
        break;
    case 417:
        code = "expectation_failed";
        msg = "only 100-continue is supported";
        break;
    case 431:
        code = "headers_too_large";
        msg = "the request headers are too large";
        break;
    case 501:
        code = "not_implemented";
        msg = "this transfer coding or method is not supported";
        break;
    case 505:
        code = "http_version_not_supported";
        msg = "only HTTP/1.x is supported";
        break;
    }
    if (!c->in_request) {
        c->in_request = 1;
        atomic_fetch_add(&c->srv->inflight, 1);
        gauge_add(c->srv->g_inflight, 1);
        req->start_us = epp_http__now_us();
    }
    req->method_idx = EPP_HTTP__M_OTHER;
    epp_buf_reset(&req->hdrs);
    epp_http__early_error(req, (unsigned)status, code, msg, 0);
    c->keep_alive = 0;
    c->phase = EPP_HTTP__P_HEAD; /* unread input is dropped by the lingering close */
    c->dispatched = 1;
    return conn_write_reply(c);
}

/* After the head (and, for a body, every step of it): reserves and checks the body, then
 * dispatches when it is complete. Returns 1 to keep going, 0 when the request is suspended. */
static int request_advance(epp_http__conn_t *c)
{
    epp_http_server_t *srv = c->srv;
    epp_http_req_t *req = &c->req;
    if (c->phase == EPP_HTTP__P_BODY) {
        size_t avail = c->rlen - c->head_len - c->rpos_extra;
        size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
        if (n && epp_buf_append(&req->body, c->rbuf + c->head_len + c->rpos_extra, n) < 0) {
            conn_close(c);
            return 0;
        }
        c->rpos_extra += n;
        c->body_left -= n;
        if (c->body_left > 0)
            return 1;
        c->phase = EPP_HTTP__P_DONE;
    }
    if (c->phase == EPP_HTTP__P_CHUNKED) {
        size_t start = c->head_len + c->rpos_extra;
        int done = 0;
        long k = epp_http__parse_chunked(c, c->rbuf + start, c->rlen - start, &done);
        if (k < 0)
            return conn_refuse(c, k == EPP_ENOMEM ? 503 : 400) == 0;
        c->rpos_extra += (size_t)k;
        if (req->body.len > srv->opts.max_body)
            return conn_refuse(c, 413) == 0;
        if (req->body.len > EPP_HTTP__SMALL_BODY && epp_http__body_reserve(req, req->body.cap) < 0) {
            c->dispatched = 1;
            epp_http__early_error(req, 503, "server_busy",
                                  "too many request bodies are in flight; retry later", 1);
            c->keep_alive = 0;
            return conn_write_reply(c) == 0;
        }
        /* Decoded bytes are consumed: the raw area after the head is reused. */
        if (c->head_len + c->rpos_extra == c->rlen) {
            c->rlen = c->head_len;
            c->rpos_extra = 0;
        }
        if (!done)
            return 1;
        c->phase = EPP_HTTP__P_DONE;
    }
    if (c->phase != EPP_HTTP__P_DONE)
        return 1;
    c->dispatched = 1;
    if (epp_http__dispatch(req))
        return conn_write_reply(c) == 0;
    return 0;
}

/* The head of a request is parsed: the route layer decides, then the body (if any) follows. */
static int request_headed(epp_http__conn_t *c)
{
    epp_http_server_t *srv = c->srv;
    epp_http_req_t *req = &c->req;
    c->in_request = 1;
    atomic_fetch_add(&srv->inflight, 1);
    gauge_add(srv->g_inflight, 1);
    req->start_us = epp_http__now_us();
    req->method_idx = epp_http__method_index(req->method);
    epp_http__on_head(req);
    if (atomic_load_explicit(&req->state, memory_order_relaxed) & EPP_HTTP__ST_READY) {
        /* Answered from the head. A small Content-Length body is skipped so the connection
         * can stay; anything else is dropped by the lingering close. */
        if (c->phase == EPP_HTTP__P_BODY && c->body_left <= EPP_HTTP__SMALL_BODY &&
            !c->want_continue) {
            c->discard_left = (size_t)c->body_left;
            c->phase = EPP_HTTP__P_DONE;
        }
        c->dispatched = 1;
        return conn_write_reply(c) == 0;
    }
    if (c->phase != EPP_HTTP__P_DONE && c->want_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (epp_buf_append(&c->wbuf, cont, sizeof(cont) - 1) < 0 || conn_flush(c) < 0) {
            conn_close(c);
            return 0;
        }
    }
    return request_advance(c);
}

/* Reads into the right place for the current phase. 1: read something, 0: nothing more now,
 * -1: end of stream or error (the connection is closed or closing). */
static int conn_read(epp_http__conn_t *c)
{
    char *dst;
    size_t room;
    int into_body = 0;
    epp_http_req_t *req = &c->req;
    if (c->phase == EPP_HTTP__P_BODY && c->head_len + c->rpos_extra == c->rlen) {
        /* Straight into the body: no copy. */
        size_t want = c->body_left < BODY_READ_STEP ? (size_t)c->body_left : BODY_READ_STEP;
        if (epp_buf_reserve(&req->body, want) < 0)
            return -1;
        dst = req->body.data + req->body.len;
        room = want;
        into_body = 1;
    } else {
        size_t limit = EPP_HTTP__HEAD_MAX + 4096;
        if (c->rcap - c->rlen < 1024 && c->rcap < limit) {
            size_t ncap = c->rcap ? c->rcap * 2 : RBUF_MIN;
            if (ncap > limit)
                ncap = limit;
            char *nb = realloc(c->rbuf, ncap + 1);
            if (!nb)
                return -1;
            c->rbuf = nb;
            c->rcap = ncap;
        }
        if (c->rlen == c->rcap)
            return 0; /* full: the parser refuses the head (431) */
        dst = c->rbuf + c->rlen;
        room = c->rcap - c->rlen;
    }
    ssize_t n = recv(c->fd, dst, room, 0);
    if (n > 0) {
        c->last_io_us = epp_http__now_us();
        if ((size_t)n < room)
            c->readable = 0; /* drained: the next edge says when there is more */
        if (into_body) {
            req->body.len += (size_t)n;
            req->body.data[req->body.len] = '\0';
            c->body_left -= (uint64_t)n;
            if (c->body_left == 0)
                c->phase = EPP_HTTP__P_DONE;
        } else {
            c->rlen += (size_t)n;
            c->rbuf[c->rlen] = '\0';
        }
        return 1;
    }
    if (n < 0 && errno == EINTR)
        return 1;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = 0;
        return 0;
    }
    return -1;
}

/* Drops what a closing client still sends; closes at its end of stream or the bounds. */
static void conn_linger(epp_http__conn_t *c)
{
    char sink[16384];
    if (c->woff < c->wbuf.len)
        return; /* the reply first */
    if (c->lingering == 1) {
        shutdown(c->fd, SHUT_WR);
        c->lingering = 2;
    }
    while (c->readable) {
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n > 0 && (size_t)n <= c->linger_left) {
            c->linger_left -= (size_t)n;
            if ((size_t)n < sizeof(sink))
                c->readable = 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = 0;
            return;
        }
        conn_close(c); /* end of stream, error, or too much */
        return;
    }
}

/* Moves connection c as far as it can go without blocking. Worker thread. */
static void conn_progress(epp_http__conn_t *c)
{
    for (;;) {
        if (c->woff < c->wbuf.len) {
            int f = conn_flush(c);
            if (f < 0) {
                conn_close(c);
                return;
            }
            if (f == 0)
                return;
        }
        if (c->lingering) {
            conn_linger(c);
            return;
        }
        if (c->dispatched)
            return; /* the reply is due: nothing is read meanwhile */
        if (c->discard_left) {
            size_t avail = c->rlen;
            size_t n = avail < c->discard_left ? avail : c->discard_left;
            memmove(c->rbuf, c->rbuf + n, c->rlen - n);
            c->rlen -= n;
            c->discard_left -= n;
            if (c->discard_left) {
                int r = c->readable ? conn_read(c) : 0;
                if (r < 0) {
                    conn_close(c);
                    return;
                }
                if (r == 0)
                    return;
                continue;
            }
        }
        if (c->phase == EPP_HTTP__P_HEAD && c->rlen > 0) {
            if (!c->head_started) {
                c->head_started = 1;
                request_begin(c);
            }
            int rc = epp_http__parse_head(c);
            if (rc < 0) {
                if (conn_refuse(c, -rc) < 0)
                    return;
                continue;
            }
            if (rc == 1) {
                c->head_started = 0;
                if (!request_headed(c))
                    return;
                continue;
            }
        } else if (c->phase != EPP_HTTP__P_HEAD) {
            if (!request_advance(c))
                return;
            if (c->phase == EPP_HTTP__P_HEAD || c->dispatched || c->lingering)
                continue;
        }
        /* More input is needed. */
        if (!c->readable)
            return;
        int r = conn_read(c);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 0 && c->phase == EPP_HTTP__P_HEAD && c->rlen == c->rcap) {
            if (conn_refuse(c, 431) < 0)
                return;
            continue;
        }
        if (r == 0)
            return;
    }
}

/* A reply for c is ready (handed over by the resume stack or the ready list). */
static void conn_on_reply(epp_http__conn_t *c)
{
    if (conn_write_reply(c) == 0)
        conn_progress(c);
}

/* --- the worker loop ------------------------------------------------------------------------ */

static void accept_some(epp_http__worker_t *w)
{
    epp_http_server_t *srv = w->srv;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a pending connection reset meanwhile */
        if (atomic_load(&srv->conns_open) >= srv->opts.max_connections) {
            close(fd);
            if (srv->c_refused_conns)
                epp_series_inc(srv->c_refused_conns);
            continue;
        }
        epp_http__conn_t *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = srv;
        c->worker = w;
        c->fd = fd;
        memcpy(&c->addr, &ss, len < sizeof(ss) ? len : sizeof(ss));
        epp_http__addr_key((struct sockaddr *)&c->addr, &c->key);
        if (epp_http__ip_admit(srv, c) < 0) {
            close(fd);
            free(c);
            if (srv->c_refused_conns)
                epp_series_inc(srv->c_refused_conns);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->phase = EPP_HTTP__P_HEAD;
        c->last_io_us = c->since_us = epp_http__now_us();
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            epp_http__ip_release(srv, c);
            close(fd);
            free(c);
            continue;
        }
        pthread_mutex_lock(&w->lock);
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        w->nconns++;
        pthread_mutex_unlock(&w->lock);
        atomic_fetch_add(&srv->conns_open, 1);
        gauge_add(srv->g_conns, 1);
    }
}

static void sweep(epp_http__worker_t *w, int64_t now)
{
    epp_http_server_t *srv = w->srv;
    int64_t idle_us = (int64_t)srv->opts.timeout_s * 1000000;
    epp_http__conn_t *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->dispatched)
            continue; /* waiting for its reply: the application's timeout answers it */
        if (c->lingering) {
            if (now > c->linger_until_us)
                conn_close(c);
            continue;
        }
        int late = now - c->last_io_us > idle_us;
        if (c->phase == EPP_HTTP__P_HEAD)
            late |= now - c->since_us > (int64_t)srv->deadline_us;
        else
            late |= now - c->req.start_us > (int64_t)srv->deadline_us;
        if (late) {
            conn_close(c);
            continue;
        }
        /* An idle keep-alive connection gives its read buffer back. */
        if (c->phase == EPP_HTTP__P_HEAD && c->rlen == 0 && c->rbuf && !c->in_request &&
            c->woff == c->wbuf.len && now - c->last_io_us > SWEEP_US) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
    }
}

static void update_date(epp_http__worker_t *w)
{
    time_t t = time(NULL);
    if (t == w->date_s)
        return;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(w->date, sizeof(w->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    w->date_s = t;
}

static void quiesce_worker(epp_http__worker_t *w)
{
    epp_http_server_t *srv = w->srv;
    if (w->listening) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, srv->listen_fd, NULL);
        w->listening = 0;
    }
    pthread_mutex_lock(&srv->quiesce_lock);
    srv->nquiesced++;
    pthread_cond_broadcast(&srv->quiesce_cond);
    pthread_mutex_unlock(&srv->quiesce_lock);
}

static void *worker_main(void *arg)
{
    epp_http__worker_t *w = arg;
    epp_http_server_t *srv = w->srv;
    struct epoll_event evs[EVENTS];
    int hook_ready = 0, quiesced = 0;
    int64_t next_sweep = epp_http__now_us() + SWEEP_US;
    self_worker = w;
    update_date(w);
    int timeout = SWEEP_US / 1000;
    while (!atomic_load(&w->quit)) {
        int n = epoll_wait(w->epfd, evs, EVENTS, timeout);
        atomic_store(&w->kicked, 1); /* awake: repliers need not write the eventfd */
        update_date(w);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_listen) {
                accept_some(w);
            } else if (p == &tag_wake) {
                uint64_t v;
                ssize_t r = read(w->wake_fd, &v, sizeof(v));
                (void)r;
            } else if (p == &tag_hook) {
                hook_ready = 1;
            } else {
                epp_http__conn_t *c = p;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->readable = 1;
                conn_progress(c);
            }
        }
        if (!quiesced && atomic_load(&srv->quiesce_req)) {
            quiesce_worker(w);
            quiesced = 1;
        }
        /* Replies handed over by other threads. */
        epp_http_req_t *r = atomic_exchange(&w->resume_head, NULL);
        while (r) {
            epp_http_req_t *next = r->resume_next;
            conn_on_reply(r->conn);
            r = next;
        }
        if (srv->hook) {
            srv->hook(srv->hook_ud, hook_ready);
            hook_ready = 0;
        }
        /* Replies made on this thread (by the hook, typically). */
        while (w->ready_head) {
            epp_http__conn_t *c = w->ready_head;
            w->ready_head = c->ready_next;
            conn_on_reply(c);
        }
        int64_t now = epp_http__now_us();
        if (now >= next_sweep) {
            sweep(w, now);
            next_sweep = now + SWEEP_US;
        }
        timeout = (int)((next_sweep - now + 999) / 1000);
        /* About to sleep: from here a reply must wake us. Sequentially consistent with the
         * repliers' push and kick: either the load below sees the push, or the kick sees 0. */
        atomic_store(&w->kicked, 0);
        if (atomic_load(&w->resume_head))
            timeout = 0;
    }
    self_worker = NULL;
    return NULL;
}

/* --- lifecycle -------------------------------------------------------------------------------- */

void epp_http_opts_default(epp_http_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->service = "epp";
    opts->port = 8000;
    opts->threads = 2;
    opts->max_connections = 10000;
    opts->timeout_s = 30;
    opts->max_body = 1024 * 1024;
    opts->max_body_inflight = 64u * 1024 * 1024;
    opts->max_body_inflight_per_ip = 16u * 1024 * 1024;
    opts->auth_fail_rps = 1;
    opts->auth_fail_burst = 20;
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
    pthread_mutex_init(&srv->quiesce_lock, NULL);
    pthread_cond_init(&srv->quiesce_cond, NULL);
    srv->service = strdup(opts->service ? opts->service : "epp");
    srv->bind_address = opts->bind_address ? strdup(opts->bind_address) : NULL;
    if (!srv->service || (opts->bind_address && !srv->bind_address)) {
        snprintf(err, errsz, "out of memory");
        epp_http_destroy(srv);
        return NULL;
    }
    srv->opts.service = srv->service;
    srv->opts.bind_address = srv->bind_address;
    if (srv->opts.threads < 1)
        srv->opts.threads = 1;
    if (srv->opts.max_connections < 1)
        srv->opts.max_connections = 1;
    if (srv->opts.timeout_s < 1)
        srv->opts.timeout_s = 30;
    srv->deadline_us = (uint64_t)srv->opts.timeout_s * 4000000;
    /* The guard copies the keys and the CORS list and clears those fields of opts. */
    if (epp_http__guard_init(srv, err, errsz) < 0) {
        epp_http_destroy(srv);
        return NULL;
    }
    epp_http__metrics_init(srv);
    if (epp_http__builtins_add(srv) < 0) {
        snprintf(err, errsz, "out of memory");
        epp_http_destroy(srv);
        return NULL;
    }
    return srv;
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
    return epp_http__route_add(srv, method, pattern, handler, ud, flags & 0xffffu);
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
    /* Restarts must not wait for old connections in TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0) {
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

static int worker_init(epp_http__worker_t *w)
{
    epp_http_server_t *srv = w->srv;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->wake_fd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_wake};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &ev) < 0)
        return -1;
    ev = (struct epoll_event){.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &tag_listen};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, srv->listen_fd, &ev) < 0)
        return -1;
    w->listening = 1;
    if (srv->hook && srv->hook_fd >= 0) {
        ev = (struct epoll_event){.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &tag_hook};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, srv->hook_fd, &ev) < 0)
            return -1;
    }
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
        epp_http__stats_init(srv, &srv->routes[i].stats, srv->routes[i].pattern);
    int rc = make_listener(srv, err, errsz);
    if (rc < 0)
        return rc;
    unsigned nw = srv->opts.threads;
    srv->workers = calloc(nw, sizeof(*srv->workers));
    if (!srv->workers) {
        snprintf(err, errsz, "out of memory");
        return EPP_ENOMEM;
    }
    srv->nworkers = nw;
    for (unsigned i = 0; i < nw; i++) {
        epp_http__worker_t *w = &srv->workers[i];
        w->srv = srv;
        w->index = i;
        w->epfd = w->wake_fd = -1;
        pthread_mutex_init(&w->lock, NULL);
    }
    for (unsigned i = 0; i < nw; i++) {
        epp_http__worker_t *w = &srv->workers[i];
        if (worker_init(w) < 0) {
            snprintf(err, errsz, "cannot start the HTTP server (worker %u): %s", i,
                     strerror(errno));
            return EPP_EIO;
        }
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
        /* Wait (bounded) until every worker dropped the listening socket from its epoll set,
         * then refuse new connections outright by closing it. */
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

/* Answers 503 to every dispatched request nobody answered yet. */
static void answer_pending(epp_http_server_t *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        epp_http__worker_t *w = &srv->workers[i];
        pthread_mutex_lock(&w->lock);
        size_t n = w->nconns, np = 0;
        epp_http_req_t **pending = calloc(n ? n : 1, sizeof(*pending));
        for (epp_http__conn_t *c = w->conns; c && pending; c = c->next) {
            unsigned st = atomic_load(&c->req.state);
            if ((st & EPP_HTTP__ST_DISPATCHED) && !(st & EPP_HTTP__ST_CLAIMED))
                pending[np++] = &c->req;
        }
        pthread_mutex_unlock(&w->lock);
        /* A dispatched, unanswered request keeps its connection alive (conn_close defers), so
         * the pointers stay valid until these replies are written. */
        for (size_t k = 0; k < np; k++)
            epp_http__reply_shutdown(pending[k]);
        free(pending);
    }
}

void epp_http_destroy(epp_http_server_t *srv)
{
    if (!srv)
        return;
    if (srv->workers) {
        epp_http_quiesce(srv);
        atomic_store(&srv->stopping, 1);
        answer_pending(srv);
        /* Let the answers go out. */
        int64_t deadline = epp_http__now_us() + 2000000;
        while (atomic_load(&srv->inflight) > 0 && epp_http__now_us() < deadline)
            usleep(2000);
        for (unsigned i = 0; i < srv->nworkers; i++) {
            epp_http__worker_t *w = &srv->workers[i];
            atomic_store(&w->quit, 1);
            if (w->started) {
                worker_wake(w);
                pthread_join(w->thread, NULL);
            }
        }
        for (unsigned i = 0; i < srv->nworkers; i++) {
            epp_http__worker_t *w = &srv->workers[i];
            epp_http__conn_t *c = w->conns;
            while (c) {
                epp_http__conn_t *next = c->next;
                close(c->fd);
                epp_http__ip_release(srv, c);
                conn_free(c);
                c = next;
            }
            if (w->epfd >= 0)
                close(w->epfd);
            if (w->wake_fd >= 0)
                close(w->wake_fd);
            pthread_mutex_destroy(&w->lock);
        }
        free(srv->workers);
        srv->workers = NULL;
    }
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    epp_http__routes_free(srv);
    epp_http__guard_free(srv);
    pthread_mutex_destroy(&srv->quiesce_lock);
    pthread_cond_destroy(&srv->quiesce_cond);
    free(srv->service);
    free(srv->bind_address);
    free(srv);
}
