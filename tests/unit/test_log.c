/* Unit tests for epp_log: the JSON line shape (checked with yajl's parser), escaping, the text
 * format, level filtering without evaluating arguments, long lines, and whole lines under
 * concurrent logging. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <yajl/yajl_tree.h>

#include "epp_error.h"
#include "epp_log.h"
#include "epp_test.h"

/* Redirects stderr to a temporary O_APPEND file until capture_end(), which returns everything
 * written (caller frees). */
typedef struct {
    int saved, fd;
    char path[64];
} capture_t;

static void capture_begin(capture_t *c)
{
    fflush(stderr);
    snprintf(c->path, sizeof c->path, "/tmp/epp_test_log_XXXXXX");
    int tmp = mkstemp(c->path);
    close(tmp);
    c->fd = open(c->path, O_WRONLY | O_APPEND);
    c->saved = dup(STDERR_FILENO);
    dup2(c->fd, STDERR_FILENO);
}

static char *capture_end(capture_t *c)
{
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    close(c->fd);
    FILE *f = fopen(c->path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n)
        s[0] = '\0';
    fclose(f);
    unlink(c->path);
    return s;
}

/* The string member key of a parsed object, or NULL. */
static const char *str_field(yajl_val obj, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_json_line(void)
{
    capture_t cap;
    epp_log_init("epp-test", EPP_LOG_DEBUG, 1);
    capture_begin(&cap);
    EPP_INFO("listening on %d", 8001);
    char *out = capture_end(&cap);
    CHECK_INT_EQ(count_lines(out), 1);
    char errbuf[128];
    yajl_val doc = yajl_tree_parse(out, errbuf, sizeof errbuf);
    if (!doc) {
        free(out);
        EPP_FAIL_("not JSON: %s", errbuf);
    }
    CHECK(YAJL_IS_OBJECT(doc));
    CHECK_INT_EQ(doc->u.object.len, 4);
    CHECK_STR_EQ(doc->u.object.keys[0], "ts");
    CHECK_STR_EQ(doc->u.object.keys[1], "level");
    CHECK_STR_EQ(doc->u.object.keys[2], "service");
    CHECK_STR_EQ(doc->u.object.keys[3], "msg");
    CHECK_STR_EQ(str_field(doc, "level"), "info");
    CHECK_STR_EQ(str_field(doc, "service"), "epp-test");
    CHECK_STR_EQ(str_field(doc, "msg"), "listening on 8001");

    /* ts is RFC 3339 UTC with milliseconds, and close to now */
    const char *ts = str_field(doc, "ts");
    CHECK(ts != NULL && strlen(ts) == 24 && ts[23] == 'Z' && ts[19] == '.' && ts[10] == 'T');
    struct tm tm = {0};
    const char *end = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    CHECK(end == ts + 19);
    long long diff = (long long)(timegm(&tm) - time(NULL));
    CHECK(diff >= -5 && diff <= 1);
    yajl_tree_free(doc);
    free(out);
}

static void test_kv(void)
{
    capture_t cap;
    epp_log_init("svc", EPP_LOG_INFO, 1);
    capture_begin(&cap);
    EPP_LOGKV(EPP_LOG_WARN, "batch failed", "topic", "events", "err", NULL, "n", "3");
    epp_log_kv(EPP_LOG_ERROR, "direct %s not a format", "k", "v", (const char *)0);
    char *out = capture_end(&cap);
    const char *nl = strchr(out, '\n');
    CHECK(nl != NULL);
    /* the exact text after the timestamp */
    const char *want1 = "\",\"level\":\"warn\",\"service\":\"svc\",\"msg\":\"batch failed\","
                        "\"topic\":\"events\",\"err\":null,\"n\":\"3\"}\n";
    CHECK(strncmp(out, "{\"ts\":\"", 7) == 0);
    CHECK_MEM_EQ(out + 31, (size_t)(nl + 1 - (out + 31)), want1, strlen(want1));
    const char *want2 = "\",\"level\":\"error\",\"service\":\"svc\",\"msg\":\"direct %s not a "
                        "format\",\"k\":\"v\"}\n";
    CHECK_STR_EQ(nl + 1 + 31, want2);
    free(out);
}

static void test_escaping(void)
{
    capture_t cap;
    epp_log_init("q\"s", EPP_LOG_INFO, 1);
    capture_begin(&cap);
    EPP_INFO("%s", "a\"b\\c\nd\te\r\x01\x1f\x7f caf\xc3\xa9 \xff\xc3 \xe2\x82\xac");
    epp_log_kv(EPP_LOG_INFO, "m", "k\"ey\n", "v\x02\"\\", (const char *)0);
    char *out = capture_end(&cap);
    CHECK_INT_EQ(count_lines(out), 2);
    /* the raw text uses JSON escapes, and invalid UTF-8 became U+FFFD */
    CHECK(strstr(out, "\"service\":\"q\\\"s\"") != NULL);
    CHECK(strstr(out, "\"msg\":\"a\\\"b\\\\c\\nd\\te\\r\\u0001\\u001f\\u007f caf\xc3\xa9 "
                      "\\ufffd\\ufffd \xe2\x82\xac\"") != NULL);
    CHECK(strstr(out, "\"k\\\"ey\\n\":\"v\\u0002\\\"\\\\\"") != NULL);
    /* and both lines parse back to the original strings */
    char *second = strchr(out, '\n') + 1;
    second[-1] = '\0';
    char errbuf[128];
    yajl_val doc = yajl_tree_parse(out, errbuf, sizeof errbuf);
    yajl_val doc2 = yajl_tree_parse(second, errbuf, sizeof errbuf);
    free(out);
    CHECK(doc != NULL && doc2 != NULL);
    CHECK_STR_EQ(str_field(doc, "msg"),
                 "a\"b\\c\nd\te\r\x01\x1f\x7f caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd \xe2\x82\xac");
    CHECK_STR_EQ(str_field(doc, "service"), "q\"s");
    CHECK_STR_EQ(str_field(doc2, "k\"ey\n"), "v\x02\"\\");
    yajl_tree_free(doc);
    yajl_tree_free(doc2);
}

static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

static void test_level_filter(void)
{
    capture_t cap;
    epp_log_init("svc", EPP_LOG_INFO, 1);
    evaluated = 0;
    capture_begin(&cap);
    EPP_DEBUG("skipped %d", side_effect());
    EPP_LOGKV(EPP_LOG_DEBUG, "skipped", "k", side_effect() ? "a" : "b");
    epp_log_write(EPP_LOG_DEBUG, "skipped by the function too");
    epp_log_kv(EPP_LOG_DEBUG, "skipped", "k", "v", (const char *)0);
    EPP_INFO("kept %d", side_effect());
    EPP_WARN("kept");
    EPP_ERROR("kept");
    char *out = capture_end(&cap);
    CHECK_INT_EQ(evaluated, 1);
    CHECK_INT_EQ(count_lines(out), 3);
    CHECK(strstr(out, "skipped") == NULL);
    CHECK(strstr(out, "\"msg\":\"kept 1\"") != NULL);
    free(out);

    epp_log_init("svc", EPP_LOG_OFF, 1);
    capture_begin(&cap);
    EPP_ERROR("nothing %d", side_effect());
    out = capture_end(&cap);
    CHECK_STR_EQ(out, "");
    CHECK_INT_EQ(evaluated, 1);
    free(out);

    epp_log_init("svc", EPP_LOG_DEBUG, 1);
    capture_begin(&cap);
    EPP_DEBUG("now %d", side_effect());
    out = capture_end(&cap);
    CHECK(strstr(out, "\"level\":\"debug\",\"service\":\"svc\",\"msg\":\"now 2\"") != NULL);
    free(out);
}

static void test_text_format(void)
{
    capture_t cap;
    epp_log_init("epp-ingest", EPP_LOG_DEBUG, 0);
    capture_begin(&cap);
    EPP_INFO("listening");
    epp_log_kv(EPP_LOG_WARN, "two\nlines", "port", "8001", "addr", "a b", "x", "", "y", NULL,
               (const char *)0);
    EPP_DEBUG("d");
    EPP_ERROR("e");
    char *out = capture_end(&cap);
    CHECK_INT_EQ(count_lines(out), 4);
    /* "2026-11-27T08:31:45.123Z INFO  epp-ingest: listening" */
    CHECK(strlen(out) > 25 && out[4] == '-' && out[10] == 'T' && out[23] == 'Z' && out[24] == ' ');
    char *l2 = strchr(out, '\n') + 1;
    char *l3 = strchr(l2, '\n') + 1;
    char *l4 = strchr(l3, '\n') + 1;
    CHECK_MEM_EQ(out + 24, (size_t)(l2 - out - 24), " INFO  epp-ingest: listening\n", 29);
    const char *w2 = " WARN  epp-ingest: two\\nlines port=8001 addr=\"a b\" x=\"\" y=null\n";
    CHECK_MEM_EQ(l2 + 24, (size_t)(l3 - l2 - 24), w2, strlen(w2));
    CHECK_MEM_EQ(l3 + 24, (size_t)(l4 - l3 - 24), " DEBUG epp-ingest: d\n", 21);
    CHECK_STR_EQ(l4 + 24, " ERROR epp-ingest: e\n");
    free(out);
}

static void test_long_line(void)
{
    capture_t cap;
    size_t n = 100000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    big[n / 2] = '"'; /* escaped past the stack buffer */
    epp_log_init("svc", EPP_LOG_INFO, 1);
    capture_begin(&cap);
    EPP_INFO("%s", big);
    epp_log_kv(EPP_LOG_INFO, "kv", "big", big, "after", "x", (const char *)0);
    char *out = capture_end(&cap);
    CHECK_INT_EQ(count_lines(out), 2);
    char *second = strchr(out, '\n') + 1;
    second[-1] = '\0';
    char errbuf[128];
    yajl_val doc = yajl_tree_parse(out, errbuf, sizeof errbuf);
    yajl_val doc2 = yajl_tree_parse(second, errbuf, sizeof errbuf);
    free(out);
    int ok = doc && doc2 && str_field(doc, "msg") && strcmp(str_field(doc, "msg"), big) == 0 &&
             str_field(doc2, "big") && strcmp(str_field(doc2, "big"), big) == 0 &&
             str_field(doc2, "after") && strcmp(str_field(doc2, "after"), "x") == 0;
    yajl_tree_free(doc);
    yajl_tree_free(doc2);
    free(big);
    CHECK(ok);
}

enum { THREADS = 4, LINES = 300 };

static void *log_thread(void *arg)
{
    char value[3000];
    int id = (int)(size_t)arg;
    memset(value, 'a' + id, sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (int i = 0; i < LINES; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        /* alternate short lines (stack buffer) and long ones (heap) */
        epp_log_kv(EPP_LOG_INFO, "line", "i", num, "v", i % 2 ? value : "short", (const char *)0);
    }
    return NULL;
}

static void test_concurrent_lines_stay_whole(void)
{
    capture_t cap;
    pthread_t th[THREADS];
    epp_log_init("svc", EPP_LOG_INFO, 1);
    capture_begin(&cap);
    for (int t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, log_thread, (void *)(size_t)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    char *out = capture_end(&cap);
    int lines = 0, bad = 0;
    for (char *p = out, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        *nl = '\0';
        yajl_val doc = yajl_tree_parse(p, NULL, 0);
        if (!doc || !str_field(doc, "v"))
            bad++;
        yajl_tree_free(doc);
        lines++;
    }
    free(out);
    CHECK_INT_EQ(bad, 0);
    CHECK_INT_EQ(lines, THREADS * LINES);
}

static void test_parse_helpers(void)
{
    epp_log_level_t level;
    int json = -1;
    CHECK_INT_EQ(epp_log_level_parse("DEBUG", &level), 0);
    CHECK_INT_EQ(level, EPP_LOG_DEBUG);
    CHECK_INT_EQ(epp_log_level_parse("info", &level), 0);
    CHECK_INT_EQ(level, EPP_LOG_INFO);
    CHECK_INT_EQ(epp_log_level_parse("warning", &level), 0);
    CHECK_INT_EQ(level, EPP_LOG_WARN);
    CHECK_INT_EQ(epp_log_level_parse("Warn", &level), 0);
    CHECK_INT_EQ(level, EPP_LOG_WARN);
    CHECK_INT_EQ(epp_log_level_parse("error", &level), 0);
    CHECK_INT_EQ(level, EPP_LOG_ERROR);
    CHECK_INT_EQ(epp_log_level_parse("off", &level), 0);
    CHECK_INT_EQ(level, EPP_LOG_OFF);
    CHECK_INT_EQ(epp_log_level_parse("verbose", &level), EPP_EINVAL);
    CHECK_INT_EQ(epp_log_level_parse("", &level), EPP_EINVAL);
    CHECK_INT_EQ(epp_log_format_parse("text", &json), 0);
    CHECK_INT_EQ(json, 0);
    CHECK_INT_EQ(epp_log_format_parse("JSON", &json), 0);
    CHECK_INT_EQ(json, 1);
    CHECK_INT_EQ(epp_log_format_parse("xml", &json), EPP_EINVAL);
}

static void test_errno_preserved(void)
{
    capture_t cap;
    epp_log_init("svc", EPP_LOG_INFO, 1);
    capture_begin(&cap);
    errno = ECONNREFUSED;
    EPP_INFO("connect failed");
    int saved = errno;
    free(capture_end(&cap));
    CHECK_INT_EQ(saved, ECONNREFUSED);
}

int main(void)
{
    EPP_RUN(test_json_line);
    EPP_RUN(test_kv);
    EPP_RUN(test_escaping);
    EPP_RUN(test_level_filter);
    EPP_RUN(test_text_format);
    EPP_RUN(test_long_line);
    EPP_RUN(test_concurrent_lines_stay_whole);
    EPP_RUN(test_parse_helpers);
    EPP_RUN(test_errno_preserved);
    return EPP_TEST_RESULT();
}
