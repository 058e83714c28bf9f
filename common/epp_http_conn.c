/* epp_http_conn.c: one connection on the wire -- accepting it, reading into the right place for
 * the phase of its request (head, Content-Length body, chunked body), handing a complete request
 * to the route layer and the handler, writing the reply, pipelining, the lingering close after
 * an error reply, and the time limits the worker's sweep applies. All of it runs on the worker
 * thread that owns the connection (epp_http_server.c runs the loop).
 *
 * A connection is registered once, edge-triggered for input and output, and never
 * re-registered: suspending a request (the reply comes from Kafka later) costs no system call
 * at all. Reading stops while a request is being answered and resumes after its reply is
 * written; `readable` remembers an edge that no read has drained since, and a read shorter than
 * the room offered means the socket is drained, so a keep-alive request costs one recv, one send
 * and a share of one epoll_wait.
 *
 * Time limits (epp_http__sweep, twice a second): no byte for timeout_s closes a connection that
 * is not waiting for its reply; the head of a request must arrive within 4 * timeout_s of the
 * connection's start or its previous reply, and its body within 4 * timeout_s of the head; a
 * connection closing after an error reply reads and drops what the client still sends for at
 * most a second (and a bounded number of bytes) so that the client sees the reply rather than a
 * reset. A dispatched request is never timed out: its connection lives until the reply. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "epp_error.h"
#include "epp_http_internal.h"

#define LINGER_US      1000000
#define ACCEPT_BURST   8
#define RBUF_MIN       4096
#define KEEP_BUF_MAX   ((size_t)64 * 1024) /* larger per-request buffers are freed after use */
#define BODY_READ_STEP ((size_t)64 * 1024)

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

void epp_http__conn_free(epp_http__conn_t *c)
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
    epp_http__conn_free(c);
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
    req->auth_pending = 0;
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
        c->linger_left = srv->opts.max_body * 4 + (size_t)1024 * 1024;
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
        if (req->body.len > EPP_HTTP__SMALL_BODY &&
            epp_http__body_reserve(req, req->body.cap) < 0) {
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
void epp_http__conn_progress(epp_http__conn_t *c)
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
void epp_http__conn_on_reply(epp_http__conn_t *c)
{
    if (conn_write_reply(c) == 0)
        epp_http__conn_progress(c);
}

void epp_http__accept(epp_http__worker_t *w)
{
    epp_http_server_t *srv = w->srv;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd =
            accept4(srv->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && w->spare_fd >= 0) {
            /* Out of descriptors: the listening socket would stay readable and the loop spin.
             * The spare descriptor makes room to take the connection and close it at once. */
            close(w->spare_fd);
            fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                close(fd);
            w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (srv->c_refused_conns)
                epp_series_inc(srv->c_refused_conns);
            return;
        }
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

void epp_http__sweep(epp_http__worker_t *w, int64_t now)
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
            c->woff == c->wbuf.len && now - c->last_io_us > EPP_HTTP__SWEEP_US) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
    }
}
