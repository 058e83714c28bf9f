/* bench_proto_h2o: the design measured against epp_http before it was written (issue 20,
 * docs/architecture.md "The HTTP layer") -- h2o's event loop (libh2o-evloop 2.2.5), one loop per
 * thread on SO_REUSEPORT, TCP_NODELAY, POST answered 202 either inline (--sync) or, as ingestion
 * answers after the Kafka ack, from a second thread through h2o's multithread messages, which
 * wake the owning loop. A prototype for measurement only: it keeps no promise of epp_http.h (a
 * client that disconnects while its reply is pending would leave a dangling request).
 *
 * Usage: bench_proto_h2o [--port N] [--threads N] [--sync]; prints the port, runs until killed.
 * bench/designs.sh runs it beside nginx and the other designs. */

#include <h2o.h>
#include <h2o/multithread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "bench_args.h"

static h2o_globalconf_t config;
static int port = 0, nthreads = 2, sync_mode = 0;
typedef struct {
    h2o_context_t ctx;
    h2o_accept_ctx_t actx;
    h2o_multithread_receiver_t recv;
    h2o_multithread_queue_t *q;
} th_t;
static th_t *ths;
typedef struct {
    h2o_multithread_message_t super;
    h2o_req_t *req;
    th_t *th;
} msg_t;
#define QCAP 65536
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    msg_t *q[QCAP];
    size_t head, tail;
} Q = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
static __thread th_t *self_th;

static void reply(h2o_req_t *req)
{
    static const char body[] =
        "{\"event_id\":\"0190a5c2-7b1e-7000-8000-000000000001\",\"status\":\"accepted\"}";
    req->res.status = 202;
    req->res.reason = "Accepted";
    req->res.content_length = sizeof(body) - 1;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_send_inline(req, body, sizeof(body) - 1);
}
static int on_req(h2o_handler_t *h, h2o_req_t *req)
{
    (void)h;
    if (sync_mode) {
        reply(req);
        return 0;
    }
    msg_t *m = h2o_mem_alloc_pool(&req->pool, sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->req = req;
    m->th = self_th;
    pthread_mutex_lock(&Q.lock);
    int was_empty = Q.head == Q.tail;
    Q.q[Q.tail++ % QCAP] = m;
    pthread_mutex_unlock(&Q.lock);
    if (was_empty)
        pthread_cond_signal(&Q.cond);
    return 0;
}
static void on_msgs(h2o_multithread_receiver_t *r, h2o_linklist_t *msgs)
{
    (void)r;
    /* The receiver wants the list empty on return: it is taken whole, and each message is
     * unlinked before its reply (which may free it) is sent. */
    h2o_linklist_t *node = msgs->next;
    h2o_linklist_init_anchor(msgs);
    while (node != msgs) {
        h2o_linklist_t *next = node->next;
        node->next = node->prev = NULL;
        reply(H2O_STRUCT_FROM_MEMBER(msg_t, super.link, node)->req);
        node = next;
    }
}
static void *drainer(void *a)
{
    (void)a;
    static msg_t *batch[QCAP];
    pthread_mutex_lock(&Q.lock);
    for (;;) {
        while (Q.head == Q.tail)
            pthread_cond_wait(&Q.cond, &Q.lock);
        size_t k = 0;
        while (Q.head != Q.tail)
            batch[k++] = Q.q[Q.head++ % QCAP];
        pthread_mutex_unlock(&Q.lock);
        for (size_t i = 0; i < k; i++)
            h2o_multithread_send_message(&batch[i]->th->recv, &batch[i]->super);
        pthread_mutex_lock(&Q.lock);
    }
    return NULL;
}
static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err)
        return;
    th_t *th = listener->data;
    h2o_socket_t *sock;
    while ((sock = h2o_evloop_socket_accept(listener)) != NULL) {
        int one = 1;
        setsockopt(h2o_socket_get_fd(sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        h2o_accept(&th->actx, sock);
    }
}
static void *run(void *arg)
{
    th_t *th = arg;
    self_th = th;
    h2o_evloop_t *loop = h2o_evloop_create();
    h2o_context_init(&th->ctx, loop, &config);
    th->actx.ctx = &th->ctx;
    th->actx.hosts = config.hosts;
    th->q = h2o_multithread_create_queue(loop);
    h2o_multithread_register_receiver(th->q, &th->recv, on_msgs);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(fd, (void *)&a, sizeof a) || listen(fd, 1024)) {
        perror("bind");
        exit(1);
    }
    h2o_socket_t *ls = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    ls->data = th;
    h2o_socket_read_start(ls, on_accept);
    for (;;)
        h2o_evloop_run(loop, INT32_MAX);
}
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port"))
            port = (int)bench_arg_long("bench_proto_h2o", "--port", argv[++i], 0, 65535);
        else if (!strcmp(argv[i], "--threads"))
            nthreads = (int)bench_arg_long("bench_proto_h2o", "--threads", argv[++i], 1, 256);
        else if (!strcmp(argv[i], "--sync"))
            sync_mode = 1;
    }
    h2o_config_init(&config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = on_req;
    ths = calloc(nthreads, sizeof *ths);
    pthread_t t;
    pthread_create(&t, NULL, drainer, NULL);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t, NULL, run, &ths[i]);
    printf("%d\n", port);
    fflush(stdout);
    pause();
}
