/* Unit tests for epp_metrics: the exact text format, lock-free updates from several threads,
 * name validation, process metrics, and `promtool check metrics` on a full registry. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_metrics.h"
#include "epp_test.h"

static double queue_depth(void *arg)
{
    return *(double *)arg;
}

static void test_render_exact(void)
{
    epp_metrics_t *m = epp_metrics_create();
    epp_metric_t *req =
        epp_metrics_counter(m, "epp_requests_total", "Requests by route.", "route, status");
    epp_metric_t *up = epp_metrics_counter(m, "epp_events_total", "Events.\nTwo \\ lines.", NULL);
    epp_metric_t *temp = epp_metrics_gauge(m, "epp_temperature", "A gauge.", NULL);
    epp_metric_t *unused = epp_metrics_gauge(m, "epp_unused", "Never given a series.", "x");
    static const double bounds[] = {0.1, 1, 2.5};
    epp_metric_t *lat =
        epp_metrics_histogram(m, "epp_latency_seconds", "Latency.", "route", bounds, 3);
    double depth = 42;
    CHECK(req && up && temp && unused && lat);
    CHECK_INT_EQ(epp_metrics_gauge_fn(m, "epp_queue_depth", "Queue depth.", queue_depth, &depth),
                 0);

    epp_series_t *ok = epp_metric_series(req, "/v1/events", "202");
    epp_series_t *bad = epp_metric_series(req, "a\"b\\c\nd", "400");
    CHECK(ok && bad);
    CHECK(epp_metric_series(req, "/v1/events", "202") == ok); /* same values, same series */
    epp_series_inc(ok);
    epp_series_inc(ok);
    epp_series_add(ok, 3);
    epp_series_inc(bad);
    epp_series_add(bad, 0.5);
    epp_series_add(bad, -7); /* ignored: counters never go down */
    epp_series_set(epp_metric_default(temp), -1.5);
    epp_series_add(epp_metric_default(temp), 0.25);
    epp_series_t *h = epp_metric_series(lat, "/x");
    epp_series_observe(h, 0.05);
    epp_series_observe(h, 0.1); /* le is inclusive */
    epp_series_observe(h, 2);
    epp_series_observe(h, 100);
    epp_series_observe(h, NAN); /* ignored */
    CHECK(epp_series_value(ok) == 5);
    CHECK(epp_series_value(bad) == 1.5);
    CHECK(epp_series_value(h) == 4);

    epp_buf_t out = {0};
    CHECK_INT_EQ(epp_metrics_render(m, &out), 0);
    const char *want = "# HELP epp_requests_total Requests by route.\n"
                       "# TYPE epp_requests_total counter\n"
                       "epp_requests_total{route=\"/v1/events\",status=\"202\"} 5\n"
                       "epp_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"400\"} 1.5\n"
                       "# HELP epp_events_total Events.\\nTwo \\\\ lines.\n"
                       "# TYPE epp_events_total counter\n"
                       "epp_events_total 0\n"
                       "# HELP epp_temperature A gauge.\n"
                       "# TYPE epp_temperature gauge\n"
                       "epp_temperature -1.25\n"
                       "# HELP epp_latency_seconds Latency.\n"
                       "# TYPE epp_latency_seconds histogram\n"
                       "epp_latency_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n"
                       "epp_latency_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"
                       "epp_latency_seconds_bucket{route=\"/x\",le=\"2.5\"} 3\n"
                       "epp_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
                       "epp_latency_seconds_sum{route=\"/x\"} 102.15\n"
                       "epp_latency_seconds_count{route=\"/x\"} 4\n"
                       "# HELP epp_queue_depth Queue depth.\n"
                       "# TYPE epp_queue_depth gauge\n"
                       "epp_queue_depth 42\n";
    CHECK_STR_EQ(out.data, want);
    epp_buf_free(&out);
    epp_metrics_destroy(m);
}

static void test_number_format(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {-3, "-3"},
        {1234567890123, "1234567890123"},
        {0.1, "0.1"},
        {1e20, "1e+20"},
        {1.0 / 3, "0.3333333333333333"},
        {2.5e-7, "2.5e-07"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
    };
    epp_metrics_t *m = epp_metrics_create();
    epp_metric_t *g = epp_metrics_gauge(m, "g", "h", "i");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%zu", i);
        epp_series_set(epp_metric_series(g, idx), cases[i].v);
    }
    epp_buf_t out = {0};
    CHECK_INT_EQ(epp_metrics_render(m, &out), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[64];
        snprintf(line, sizeof line, "g{i=\"%zu\"} %s\n", i, cases[i].want);
        if (!strstr(out.data, line)) {
            fprintf(stderr, "%s", out.data);
            epp_buf_free(&out);
            epp_metrics_destroy(m);
            EPP_FAIL_("missing line: %s", line);
        }
    }
    epp_buf_free(&out);
    epp_metrics_destroy(m);
}

static void test_names(void)
{
    epp_metrics_t *m = epp_metrics_create();
    static const double b[] = {1, 2};
    static const double unsorted[] = {2, 1};
    CHECK(epp_metrics_counter(m, "ok_name:sub_total", "h", NULL) != NULL);
    CHECK(epp_metrics_counter(m, "_ok", "h", "a,b_2,_c") != NULL);
    CHECK(epp_metrics_counter(m, "9bad", "h", NULL) == NULL);
    CHECK(epp_metrics_counter(m, "bad-name", "h", NULL) == NULL);
    CHECK(epp_metrics_counter(m, "", "h", NULL) == NULL);
    CHECK(epp_metrics_counter(m, NULL, "h", NULL) == NULL);
    CHECK(epp_metrics_counter(m, "x1", "h", "a:b") == NULL);        /* ':' not in label names */
    CHECK(epp_metrics_counter(m, "x2", "h", "__a") == NULL);        /* reserved prefix */
    CHECK(epp_metrics_counter(m, "x3", "h", "1a") == NULL);         /* leading digit */
    CHECK(epp_metrics_counter(m, "x4", "h", "a,,b") == NULL);       /* empty name */
    CHECK(epp_metrics_counter(m, "x5", "h", "a,a") == NULL);        /* repeated */
    CHECK(epp_metrics_histogram(m, "x6", "h", "le", b, 2) == NULL); /* le is the bucket label */
    CHECK(epp_metrics_histogram(m, "x7", "h", NULL, unsorted, 2) == NULL);
    CHECK(epp_metrics_gauge(m, "x8", "h", "le") != NULL); /* fine outside histograms */
    CHECK_INT_EQ(epp_metrics_gauge_fn(m, "bad name", "h", queue_depth, NULL), EPP_EINVAL);

    /* re-registering: the same family when the shape matches, NULL otherwise */
    epp_metric_t *a = epp_metrics_counter(m, "dup_total", "h", "route");
    CHECK(a != NULL);
    CHECK(epp_metrics_counter(m, "dup_total", "other help", "route") == a);
    CHECK(epp_metrics_gauge(m, "dup_total", "h", "route") == NULL);
    CHECK(epp_metrics_counter(m, "dup_total", "h", "status") == NULL);
    CHECK(epp_metrics_gauge_fn(m, "dup_total", "h", queue_depth, NULL) == EPP_EINVAL);
    epp_metric_t *hst = epp_metrics_histogram(m, "dup_seconds", "h", NULL, b, 2);
    CHECK(hst != NULL && epp_metrics_histogram(m, "dup_seconds", "h", NULL, b, 2) == hst);
    CHECK(epp_metrics_histogram(m, "dup_seconds", "h", NULL, b, 1) == NULL);

    /* default series only for label-less families; NULL label values read as "" */
    CHECK(epp_metric_default(a) == NULL);
    CHECK(epp_metric_default(hst) != NULL);
    const char *vals[] = {NULL};
    CHECK(epp_metric_series_v(a, vals) == epp_metric_series(a, ""));
    /* invalid UTF-8 in a value is repaired, and the repaired value finds the same series */
    epp_series_t *u = epp_metric_series(a, "\xff");
    CHECK(u != NULL && u == epp_metric_series(a, "\xff"));
    CHECK(u == epp_metric_series(a, "\xef\xbf\xbd"));
    /* updates on NULL series (a failed lookup) are harmless */
    epp_series_inc(NULL);
    epp_series_add(NULL, 1);
    epp_series_set(NULL, 1);
    epp_series_observe(NULL, 1);
    CHECK(epp_series_value(NULL) == 0);
    epp_metrics_destroy(m);
    epp_metrics_destroy(NULL);
}

enum { THREADS = 4, ITERS = 200000 };

typedef struct {
    epp_series_t *counter, *fraction, *gauge, *hist;
} shared_t;

static void *hammer(void *arg)
{
    shared_t *sh = arg;
    for (int i = 0; i < ITERS; i++) {
        epp_series_inc(sh->counter);
        epp_series_add(sh->fraction, 0.5);
        epp_series_add(sh->gauge, i % 2 ? 1 : -0.5);
        epp_series_observe(sh->hist, (double)(i % 4));
    }
    return NULL;
}

static void test_concurrent_updates(void)
{
    epp_metrics_t *m = epp_metrics_create();
    static const double b[] = {0.5, 1.5, 2.5};
    shared_t sh = {
        epp_metric_default(epp_metrics_counter(m, "c_total", "h", NULL)),
        epp_metric_default(epp_metrics_counter(m, "f_total", "h", NULL)),
        epp_metric_default(epp_metrics_gauge(m, "g", "h", NULL)),
        epp_metric_default(epp_metrics_histogram(m, "h_seconds", "h", NULL, b, 3)),
    };
    CHECK(sh.counter && sh.fraction && sh.gauge && sh.hist);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, hammer, &sh);
    /* render while the threads run: it must not block them or crash */
    epp_buf_t out = {0};
    for (int i = 0; i < 20; i++) {
        epp_buf_reset(&out);
        CHECK_INT_EQ(epp_metrics_render(m, &out), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    CHECK(epp_series_value(sh.counter) == (double)THREADS * ITERS);
    CHECK(epp_series_value(sh.fraction) == (double)THREADS * ITERS * 0.5);
    CHECK(epp_series_value(sh.gauge) == (double)THREADS * (ITERS / 2.0) * 0.5); /* ITERS is even */
    CHECK(epp_series_value(sh.hist) == (double)THREADS * ITERS);
    epp_buf_reset(&out);
    CHECK_INT_EQ(epp_metrics_render(m, &out), 0);
    char want[128];
    snprintf(want, sizeof want, "h_seconds_bucket{le=\"0.5\"} %d\n", THREADS * ITERS / 4);
    CHECK(strstr(out.data, want) != NULL);
    snprintf(want, sizeof want, "h_seconds_bucket{le=\"+Inf\"} %d\n", THREADS * ITERS);
    CHECK(strstr(out.data, want) != NULL);
    snprintf(want, sizeof want, "h_seconds_sum %d\n", THREADS * (ITERS / 4) * (0 + 1 + 2 + 3));
    CHECK(strstr(out.data, want) != NULL);
    snprintf(want, sizeof want, "c_total %d\n", THREADS * ITERS);
    CHECK(strstr(out.data, want) != NULL);
    epp_buf_free(&out);
    epp_metrics_destroy(m);
}

/* The value of the sample line that starts with prefix, or NaN. */
static double sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

static void test_process_metrics(void)
{
    epp_metrics_t *m = epp_metrics_create();
    CHECK_INT_EQ(epp_metrics_add_process(m, "epp-test"), 0);
    CHECK_INT_EQ(epp_metrics_add_process(m, "epp-test"), 0); /* idempotent */
    /* burn a little CPU so the counter is above zero */
    clock_t until = clock() + CLOCKS_PER_SEC / 20;
    volatile double x = 0;
    while (clock() < until)
        for (int i = 0; i < 100000; i++)
            x += (double)i;
    epp_buf_t out = {0};
    CHECK_INT_EQ(epp_metrics_render(m, &out), 0);
    const char *t = out.data;
    double cpu = sample(t, "process_cpu_seconds_total");
    double rss = sample(t, "process_resident_memory_bytes");
    double vsz = sample(t, "process_virtual_memory_bytes");
    double fds = sample(t, "process_open_fds");
    double maxfds = sample(t, "process_max_fds");
    double start = sample(t, "process_start_time_seconds");
    double build = sample(t, "epp_build_info{service=\"epp-test\",version=\"" EPP_VERSION "\"}");
    double now = (double)time(NULL);
    int ok = cpu > 0 && cpu < 3600 && rss > 100000 && vsz >= rss && fds >= 3 && fds < 1000 &&
             maxfds >= fds && start > now - 3600 && start <= now + 1 && build == 1;
    if (!ok)
        fprintf(stderr, "%s", t);
    CHECK(strstr(t, "# TYPE process_cpu_seconds_total counter\n") != NULL);
    CHECK(strstr(t, "# TYPE process_open_fds gauge\n") != NULL);
    epp_buf_free(&out);
    epp_metrics_destroy(m);
    CHECK(ok);
}

/* Runs `promtool check metrics` on text through its stdin. Returns 0 when promtool exited 0 and
 * printed nothing, 1 on any complaint (printed to stderr), -1 when promtool is not installed. */
static int promtool_check(const char *text)
{
    if (access("/usr/bin/promtool", X_OK) != 0 && system("command -v promtool >/dev/null") != 0)
        return -1;
    char in_path[] = "/tmp/epp_test_metrics_XXXXXX";
    int fd = mkstemp(in_path);
    if (fd < 0)
        return 1;
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) {
        close(fd);
        unlink(in_path);
        return 1;
    }
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", in_path);
    FILE *p = popen(cmd, "r");
    if (!p) {
        unlink(in_path);
        return 1;
    }
    char line[512];
    int complaints = 0;
    while (fgets(line, sizeof line, p)) {
        fprintf(stderr, "promtool: %s", line);
        complaints++;
    }
    int status = pclose(p);
    unlink(in_path);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "promtool exit status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return 1;
    }
    return complaints ? 1 : 0;
}

static void test_promtool(void)
{
    epp_metrics_t *m = epp_metrics_create();
    epp_metric_t *req = epp_metrics_counter(m, "epp_http_requests_total",
                                            "HTTP requests by route and status.", "route,status");
    epp_metric_t *bytes =
        epp_metrics_counter(m, "epp_ingest_bytes_total", "Request body bytes received.", NULL);
    epp_metric_t *inflight =
        epp_metrics_gauge(m, "epp_http_requests_in_flight", "Requests being served.", NULL);
    epp_metric_t *lag = epp_metrics_gauge(m, "epp_consumer_lag_messages",
                                          "Messages behind the partition end.", "partition");
    epp_metric_t *lat =
        epp_metrics_histogram(m, "epp_http_request_duration_seconds", "Request latency.", "route",
                              epp_metrics_latency_buckets, epp_metrics_latency_buckets_n);
    epp_metric_t *size = epp_metrics_histogram(m, "epp_batch_size_events", "Events per batch.",
                                               NULL, (const double[]){1, 10, 100, 1000}, 4);
    double depth = 3;
    CHECK(req && bytes && inflight && lag && lat && size);
    CHECK_INT_EQ(epp_metrics_gauge_fn(m, "epp_queue_depth", "Queued.", queue_depth, &depth), 0);
    CHECK_INT_EQ(epp_metrics_add_process(m, "epp \"odd\"\\service\n"), 0);

    epp_series_add(epp_metric_series(req, "/v1/events", "202"), 10);
    epp_series_inc(epp_metric_series(req, "quote\" back\\slash\nnewline \xff", "500"));
    epp_series_add(epp_metric_default(bytes), 1e17);
    epp_series_set(epp_metric_default(inflight), 2);
    epp_series_set(epp_metric_series(lag, "0"), 12);
    epp_series_set(epp_metric_series(lag, "1"), NAN);
    epp_series_set(epp_metric_series(lag, "2"), INFINITY);
    epp_series_t *h = epp_metric_series(lat, "/v1/events");
    for (int i = 0; i < 100; i++)
        epp_series_observe(h, i * 0.0007);
    epp_series_observe(h, 1e9);
    epp_series_observe(epp_metric_default(size), 500);

    epp_buf_t out = {0};
    CHECK_INT_EQ(epp_metrics_render(m, &out), 0);
    CHECK(strstr(out.data, "le=\"0.0005\"") != NULL);
    CHECK(strstr(out.data, "service=\"epp \\\"odd\\\"\\\\service\\n\"") != NULL);
    int rc = promtool_check(out.data);
    if (rc == -1) {
        fprintf(stderr, "SKIP test_promtool: promtool not installed (Debian package prometheus)\n");
    } else if (rc != 0) {
        fprintf(stderr, "--- rendered ---\n%s--- end ---\n", out.data);
    }
    epp_buf_free(&out);
    epp_metrics_destroy(m);
    CHECK(rc != 1);
}

int main(void)
{
    EPP_RUN(test_render_exact);
    EPP_RUN(test_number_format);
    EPP_RUN(test_names);
    EPP_RUN(test_concurrent_updates);
    EPP_RUN(test_process_metrics);
    EPP_RUN(test_promtool);
    return EPP_TEST_RESULT();
}
