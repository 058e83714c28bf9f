/* bench_http_echo: the HTTP layer alone, shaped like ingestion's hot path.
 *
 * POST /events reads the body, suspends the request and queues it; a second thread (standing in
 * for the Kafka delivery-report thread) drains the queue in bursts and answers each request
 * 202 {"event_id":"...","status":"accepted"}. With --sync the handler answers at once instead.
 * bench/bench_http.sh compares it with nginx under wrk.
 *
 * Request metrics are on (as in the services) unless --no-metrics.
 *
 * Usage: bench_http_echo [--port N] [--threads N] [--sync] [--no-metrics]. Prints the bound port
 * on stdout and runs until SIGINT/SIGTERM. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epp_http.h"
#include "epp_log.h"
#include "epp_metrics.h"
#include "bench_args.h"

#define QCAP 65536

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    epp_http_req_t *q[QCAP];
    size_t head, tail;
    int stop;
} Q = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static volatile sig_atomic_t quit;
static unsigned long long counter;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void reply_accepted(epp_http_req_t *req, unsigned long long n)
{
    char out[96];
    int len = snprintf(out, sizeof(out),
                       "{\"event_id\":\"0190a5c2-7b1e-7000-8000-%012llx\",\"status\":\"accepted\"}",
                       n & 0xffffffffffffull);
    epp_http_reply_json(req, 202, out, (size_t)len);
}

static void h_events_sync(epp_http_req_t *req, void *ud)
{
    (void)ud;
    reply_accepted(req, __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
}

static void h_events(epp_http_req_t *req, void *ud)
{
    (void)ud;
    size_t len;
    epp_http_body(req, &len);
    if (len == 0) {
        epp_http_reply_error(req, 400, "invalid_json", "empty body", NULL, 0);
        return;
    }
    epp_http_suspend(req);
    pthread_mutex_lock(&Q.lock);
    if (Q.tail - Q.head == QCAP) {
        pthread_mutex_unlock(&Q.lock);
        epp_http_reply_error(req, 503, "unavailable", "queue full", NULL, 1);
        return;
    }
    int was_empty = Q.head == Q.tail;
    Q.q[Q.tail++ % QCAP] = req;
    pthread_mutex_unlock(&Q.lock);
    if (was_empty)
        pthread_cond_signal(&Q.cond);
}

/* Drains the queue in bursts, as librdkafka's delivery reports arrive. */
static void *drainer(void *arg)
{
    static epp_http_req_t *batch[QCAP];
    unsigned long long n = 0;
    (void)arg;
    pthread_mutex_lock(&Q.lock);
    for (;;) {
        while (Q.head == Q.tail && !Q.stop)
            pthread_cond_wait(&Q.cond, &Q.lock);
        if (Q.stop)
            break;
        size_t k = 0;
        while (Q.head != Q.tail)
            batch[k++] = Q.q[Q.head++ % QCAP];
        pthread_mutex_unlock(&Q.lock);
        for (size_t i = 0; i < k; i++)
            reply_accepted(batch[i], ++n);
        pthread_mutex_lock(&Q.lock);
    }
    pthread_mutex_unlock(&Q.lock);
    return NULL;
}

int main(int argc, char **argv)
{
    epp_http_opts_t o;
    int sync = 0, metrics = 1;
    epp_http_opts_default(&o);
    o.service = "bench-http-echo";
    o.bind_address = "127.0.0.1";
    o.port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            o.port = (int)bench_arg_long("bench_http_echo", "--port", argv[++i], 0, 65535);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            o.threads = (unsigned)bench_arg_long("bench_http_echo", "--threads", argv[++i], 1, 256);
        else if (strcmp(argv[i], "--sync") == 0)
            sync = 1;
        else if (strcmp(argv[i], "--no-metrics") == 0)
            metrics = 0;
        else {
            fprintf(stderr, "usage: %s [--port N] [--threads N] [--sync] [--no-metrics]\n",
                    argv[0]);
            return 2;
        }
    }
    epp_log_init("bench-http-echo", EPP_LOG_ERROR, 1);
    epp_metrics_t *m = metrics ? epp_metrics_create() : NULL;
    o.metrics = m;
    char err[256];
    epp_http_server_t *srv = epp_http_create(&o, err, sizeof(err));
    if (!srv ||
        epp_http_route(srv, "POST", "/events", sync ? h_events_sync : h_events, NULL, 0) != 0 ||
        epp_http_start(srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_http_echo: %s\n", err);
        epp_http_destroy(srv);
        epp_metrics_destroy(m);
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, drainer, NULL);
    printf("%d\n", epp_http_port(srv));
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!quit)
        pause();
    pthread_mutex_lock(&Q.lock);
    Q.stop = 1;
    pthread_cond_signal(&Q.cond);
    pthread_mutex_unlock(&Q.lock);
    pthread_join(th, NULL);
    epp_http_destroy(srv); /* answers anything left in the queue with 503 */
    epp_metrics_destroy(m);
    return 0;
}
