/* bench_proto_mhd: libmicrohttpd 0.9.75 in the modes whose suspend/resume does not need the
 * epoll interposition epp_http once had (issue 20, docs/architecture.md "The HTTP layer"): its
 * own thread pool over poll() (--mode poll), a thread per connection (--mode tpc), and, for the
 * record, its epoll pool (--mode epoll, which churns epoll_ctl on every suspension). POST is
 * suspended and resumed from a second thread that answers 202, as a Kafka delivery report would.
 * A prototype for measurement only.
 *
 * Usage: bench_proto_mhd [--mode poll|tpc|epoll] [--port N] [--threads N] [--sync]; prints the
 * port, runs until killed. bench/designs.sh runs it beside nginx and the other designs. */
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bench_args.h"
typedef struct {
    struct MHD_Connection *c;
    int state;
} rq_t; /* 0 new, 1 suspended, 2 ready */
#define QCAP 65536
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    rq_t *q[QCAP];
    size_t head, tail;
} Q = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
static int sync_mode;
static enum MHD_Result reply(struct MHD_Connection *c)
{
    static const char body[] =
        "{\"event_id\":\"0190a5c2-7b1e-7000-8000-000000000001\",\"status\":\"accepted\"}";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, 202, r);
    MHD_destroy_response(r);
    return ret;
}
static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *ver, const char *up, size_t *upsz,
                                 void **cc)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)ver;
    (void)up;
    rq_t *r = *cc;
    if (!r) {
        r = calloc(1, sizeof *r);
        r->c = c;
        *cc = r;
        return MHD_YES;
    }
    if (*upsz) {
        *upsz = 0;
        return MHD_YES;
    }
    if (r->state == 2 || sync_mode)
        return reply(c);
    r->state = 1;
    MHD_suspend_connection(c);
    pthread_mutex_lock(&Q.lock);
    int was_empty = Q.head == Q.tail;
    Q.q[Q.tail++ % QCAP] = r;
    pthread_mutex_unlock(&Q.lock);
    if (was_empty)
        pthread_cond_signal(&Q.cond);
    return MHD_YES;
}
static void on_done(void *cls, struct MHD_Connection *c, void **cc,
                    enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    free(*cc);
    *cc = NULL;
}
static void *drainer(void *a)
{
    (void)a;
    static rq_t *batch[QCAP];
    pthread_mutex_lock(&Q.lock);
    for (;;) {
        while (Q.head == Q.tail)
            pthread_cond_wait(&Q.cond, &Q.lock);
        size_t k = 0;
        while (Q.head != Q.tail)
            batch[k++] = Q.q[Q.head++ % QCAP];
        pthread_mutex_unlock(&Q.lock);
        for (size_t i = 0; i < k; i++) {
            batch[i]->state = 2;
            MHD_resume_connection(batch[i]->c);
        }
        pthread_mutex_lock(&Q.lock);
    }
    return NULL;
}
int main(int argc, char **argv)
{
    const char *mode = "poll";
    int threads = 2, port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mode"))
            mode = argv[++i];
        else if (!strcmp(argv[i], "--threads"))
            threads = (int)bench_arg_long("bench_proto_mhd", "--threads", argv[++i], 1, 256);
        else if (!strcmp(argv[i], "--port"))
            port = (int)bench_arg_long("bench_proto_mhd", "--port", argv[++i], 0, 65535);
        else if (!strcmp(argv[i], "--sync"))
            sync_mode = 1;
    }
    unsigned flags = MHD_ALLOW_SUSPEND_RESUME | MHD_USE_INTERNAL_POLLING_THREAD;
    int pool = 1;
    if (!strcmp(mode, "tpc")) {
        flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
        pool = 0;
    } else if (!strcmp(mode, "poll"))
        flags |= MHD_USE_POLL;
    else if (!strcmp(mode, "epoll"))
        flags |= MHD_USE_EPOLL;
    pthread_t t;
    pthread_create(&t, NULL, drainer, NULL);
    struct MHD_Daemon *d =
        pool ? MHD_start_daemon(flags, port, NULL, NULL, on_access, NULL,
                                MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
                                10000, MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, 16384, MHD_OPTION_END)
             : MHD_start_daemon(flags, port, NULL, NULL, on_access, NULL,
                                MHD_OPTION_CONNECTION_LIMIT, 10000, MHD_OPTION_NOTIFY_COMPLETED,
                                on_done, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT, 16384,
                                MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "start failed\n");
        return 1;
    }
    printf("%d\n", MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    fflush(stdout);
    pause();
}
