/* epp_http_server.c: the server object and its workers -- creating, starting and destroying the
 * server, the listening socket, one thread per worker each running an epoll loop over its own
 * connections (what a connection does on the wire is epp_http_conn.c's), quiesce, and destroy's
 * 503 for requests nobody answered.
 *
 * One loop per worker. Every worker has its own epoll set holding the shared listening socket
 * (EPOLLEXCLUSIVE: one worker wakes per burst of connections), its wake-up eventfd, the loop
 * hook's descriptor (epp_http_set_loop_hook) and its connections. Each turn of the loop: wait
 * for events (at most until the next sweep), serve them, write the replies other threads handed
 * over (the resume stack), run the loop hook, write the replies the hook made on this thread
 * (the ready list), and twice a second sweep the connections for their time limits. `kicked` is
 * 1 while the worker is awake, so that repliers on other threads skip the eventfd write; it is
 * cleared just before the last look at the resume stack before sleeping. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#define EVENTS 128

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
    int64_t next_sweep = epp_http__now_us() + EPP_HTTP__SWEEP_US;
    self_worker = w;
    update_date(w);
    int timeout = EPP_HTTP__SWEEP_US / 1000;
    while (!atomic_load(&w->quit)) {
        int n = epoll_wait(w->epfd, evs, EVENTS, timeout);
        atomic_store(&w->kicked, 1); /* awake: repliers need not write the eventfd */
        update_date(w);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_listen) {
                epp_http__accept(w);
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
                epp_http__conn_progress(c);
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
            epp_http__conn_on_reply(r->conn);
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
            epp_http__conn_on_reply(c);
        }
        int64_t now = epp_http__now_us();
        if (now >= next_sweep) {
            epp_http__sweep(w, now);
            next_sweep = now + EPP_HTTP__SWEEP_US;
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
    opts->max_body = (size_t)1024 * 1024;
    opts->max_body_inflight = (size_t)64 * 1024 * 1024;
    opts->max_body_inflight_per_ip = (size_t)16 * 1024 * 1024;
    opts->auth_fail_rps = 1;
    opts->auth_fail_burst = 20;
}

void epp_http_opts_set(epp_http_opts_t *opts, const epp_opts_http_t *conf)
{
    opts->bind_address = conf->bind_address;
    opts->port = (int)conf->port;
    if (conf->threads <= 0)
        return;
    opts->threads = (unsigned)conf->threads;
    opts->max_connections = (unsigned)conf->max_connections;
    opts->max_per_ip = (unsigned)conf->max_per_ip;
    opts->timeout_s = (unsigned)conf->timeout_s;
    opts->cors_origins = conf->cors_origins;
    opts->rate_limit_rps = conf->rate_limit_rps;
    opts->rate_limit_burst = conf->rate_limit_burst;
    opts->auth_fail_rps = conf->auth_failure_rps;
    opts->auth_fail_burst = conf->auth_failure_burst;
    opts->api_keys = conf->api_keys;
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
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
        w->epfd = w->wake_fd = w->spare_fd = -1;
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

void epp_http_refuse(epp_http_server_t *srv)
{
    if (srv)
        atomic_store(&srv->stopping, 1);
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
        epp_http_req_t **pending = calloc(n ? n : 1, sizeof(epp_http_req_t *));
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
        epp_http_refuse(srv);
        atomic_store(&srv->destroying, 1);
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
                epp_http__conn_free(c);
                c = next;
            }
            if (w->epfd >= 0)
                close(w->epfd);
            if (w->wake_fd >= 0)
                close(w->wake_fd);
            if (w->spare_fd >= 0)
                close(w->spare_fd);
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
