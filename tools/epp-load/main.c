/* epp-load: an open-loop load generator for the Ingestion Service (docs/contract.md §8).
 *
 * Open loop: request i has an intended send time start + i/rps, fixed before the run. When
 * every connection is busy, due requests wait in a queue, and their latency still counts from
 * the intended time, so a server that stalls shows its stall in the percentiles instead of
 * silently slowing the generator down ("coordinated omission").
 *
 * It has to drive epp-ingest at its bench throughput (tens of thousands of requests/s) from one
 * core, so it is a single-threaded epoll loop over non-blocking keep-alive HTTP/1.1
 * connections (one request in flight per connection, no pipelining), sending pre-rendered
 * request templates and parsing only what it needs from a response: the status line,
 * Content-Length, chunked transfer coding and Connection: close. Waits use epoll_pwait2's
 * nanosecond timeout (and a 1 µs timer slack) so requests leave at their intended times rather
 * than in millisecond bursts. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "epp_buf.h"
#include "epp_config.h"
#include "epp_error.h"
#include "epp_log.h"
#include "epp_start.h"
#include "epp_time.h"
#include "epp_uuid.h"
#include "send_evgen.h"
#include "load_hist.h"

typedef struct {
    char *url;
    double rps;
    char *duration;
    int64_t connections;
    int64_t batch;
    bool event_id;
    char *record;
    bool json;
    double timeout_s;
    int64_t templates;
    int64_t users;
    char *user_prefix;
    char *event_names;
    char *test_marker;
    char *api_key;
    epp_opts_log_t log;
} load_conf_t;

static const epp_conf_opt_t load_opts[] = {
    EPP_EVGEN_OPTS(load_conf_t, "1000", "load-"),
    EPP_CONF_DBL("rps", NULL, "1000", 0.1, 10000000, load_conf_t, rps,
                 "Requests per second, constant (open loop)"),
    EPP_CONF_STR("duration", NULL, "30s", load_conf_t, duration,
                 "How long to send: 500ms, 30s, 2m, 1h (a bare number is seconds)"),
    EPP_CONF_INT("connections", NULL, "64", 1, 60000, load_conf_t, connections,
                 "Keep-alive connections (one request in flight on each; http only)"),
    EPP_CONF_BOOL("event-id", NULL, "false", load_conf_t, event_id,
                  "Give every event a fresh client UUIDv7 event_id"),
    EPP_CONF_STR("record", NULL, NULL, load_conf_t, record,
                 "Write \"event_id status\" per event to this file (implies --event-id)"),
    EPP_CONF_BOOL("json", NULL, "false", load_conf_t, json, "Print the report as JSON"),
    EPP_CONF_INT("templates", NULL, "1024", 1, 1000000, load_conf_t, templates,
                 "Distinct pre-rendered request bodies to cycle through"),
    EPP_OPTS_LOG(load_conf_t, log, "warn"),
    EPP_CONF_END,
};

/* A pre-rendered request: the whole HTTP message, and where its event_id placeholders are. */
typedef struct {
    char *data;
    size_t len;
    size_t *id_off; /* offsets of the 36-character event_id placeholders (batch of them) */
    size_t n_ids;
} tmpl_t;

typedef enum {
    CONN_DOWN,       /* no socket; reconnect at retry_ns */
    CONN_CONNECTING, /* non-blocking connect in progress */
    CONN_IDLE,       /* connected, nothing in flight */
    CONN_BUSY,       /* a request is being written or its response read */
} conn_state_t;

typedef struct {
    int fd;
    conn_state_t state;
    int64_t retry_ns;
    uint64_t served; /* responses read on this socket: tells a stale keep-alive from a refusal */
    /* The request in flight. */
    int64_t req;        /* request number: intended time start + req/rps */
    const tmpl_t *tmpl; /* what is being sent */
    char *own;          /* with event_ids: a patched copy of tmpl->data */
    size_t own_cap;
    size_t out_off;
    int64_t sent_ns; /* when its first byte was written, for the timeout */
    bool resent;     /* already re-sent once after a stale keep-alive close */
    bool in_idle;    /* on the idle stack (entries go stale when a socket dies there) */
    /* Its response. */
    char *in;
    size_t in_len, in_cap;
} conn_t;

typedef struct {
    char key[24];
    uint64_t n;
} counter_t;

typedef struct {
    const load_conf_t *conf;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[256], port[16], path[1024];
    tmpl_t *tmpls;
    size_t n_tmpls;
    int ep;
    conn_t *conns;
    size_t n_conns;
    conn_t **idle;
    size_t n_idle;
    FILE *record;
    /* Schedule. */
    int64_t start_ns;
    double interval_ns;
    int64_t total;     /* requests in the run */
    int64_t due;       /* requests whose intended time has come */
    int64_t issued;    /* requests handed to a connection */
    int64_t in_flight; /* requests on connections */
    int64_t completed; /* requests finished: answered, or failed */
    int64_t answered;  /* requests answered with an HTTP status */
    int64_t last_done_ns;
    int64_t last_issue_ns;
    /* Results. */
    epp_hist_t hist;
    counter_t status[32];
    size_t n_status;
    counter_t errors[16];
    size_t n_errors;
} load_t;

/* Set by SIGINT, SIGTERM or SIGHUP (epp_start): stop sending, report what was measured. */
static volatile sig_atomic_t g_stop;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void bump(counter_t *c, size_t *n, size_t cap, const char *key, uint64_t by)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(c[i].key, key) == 0) {
            c[i].n += by;
            return;
        }
    }
    if (*n < cap) {
        snprintf(c[*n].key, sizeof(c[*n].key), "%s", key);
        c[(*n)++].n = by;
    }
}

static void count_error(load_t *L, const char *key)
{
    bump(L->errors, &L->n_errors, sizeof(L->errors) / sizeof(L->errors[0]), key, 1);
}

/* "500ms", "30s", "2m", "1h", or a bare number of seconds. */
static int parse_duration(const char *s, double *secs)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0) || !isfinite(v))
        return EPP_EINVAL;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        *secs = v;
    else if (strcmp(end, "ms") == 0)
        *secs = v / 1000;
    else if (strcmp(end, "m") == 0)
        *secs = v * 60;
    else if (strcmp(end, "h") == 0)
        *secs = v * 3600;
    else
        return EPP_EINVAL;
    return 0;
}

/* http://host[:port][/path]. IPv6 literals in brackets are accepted. */
static int parse_url(load_t *L, const char *url, char *err, size_t errsz)
{
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, errsz, "only http:// URLs are supported: %s", url);
        return EPP_EINVAL;
    }
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    size_t hostport_len = slash ? (size_t)(slash - h) : strlen(h);
    snprintf(L->path, sizeof(L->path), "%s", slash ? slash : "/");
    char hp[300];
    if (hostport_len == 0 || hostport_len >= sizeof(hp)) {
        snprintf(err, errsz, "bad host in URL: %s", url);
        return EPP_EINVAL;
    }
    memcpy(hp, h, hostport_len);
    hp[hostport_len] = '\0';
    char *colon = strrchr(hp, ':');
    char *bracket = strrchr(hp, ']');
    if (colon && (!bracket || colon > bracket)) {
        *colon = '\0';
        snprintf(L->port, sizeof(L->port), "%s", colon + 1);
    } else {
        snprintf(L->port, sizeof(L->port), "80");
    }
    char *host = hp;
    if (host[0] == '[') {
        host++;
        char *rb = strchr(host, ']');
        if (rb)
            *rb = '\0';
    }
    if (strlen(host) >= sizeof(L->host) || strlen(L->port) > 5) {
        snprintf(err, errsz, "bad host or port in URL");
        return EPP_EINVAL;
    }
    memcpy(L->host, host, strlen(host) + 1);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(L->host, L->port, &hints, &res);
    if (gai != 0 || !res) {
        snprintf(err, errsz, "cannot resolve %.200s:%.8s: %s", L->host, L->port, gai_strerror(gai));
        return EPP_EINVAL;
    }
    memcpy(&L->addr, res->ai_addr, res->ai_addrlen);
    L->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

#define ID_PLACEHOLDER "00000000-0000-0000-0000-000000000000"

/* Renders the request templates: whole HTTP messages whose bodies are random valid events. */
static int render_templates(load_t *L, char *err, size_t errsz)
{
    const load_conf_t *c = L->conf;
    epp_evgen_t gen;
    int rc = epp_evgen_init(&gen, c->event_names, c->user_prefix, c->users, c->test_marker, 0, err,
                            errsz);
    if (rc != 0)
        return rc;
    L->n_tmpls = (size_t)c->templates;
    L->tmpls = calloc(L->n_tmpls, sizeof(*L->tmpls));
    if (!L->tmpls) {
        epp_evgen_free(&gen);
        return EPP_ENOMEM;
    }
    bool ids = c->event_id || c->record;
    int64_t per = c->batch > 0 ? c->batch : 1;
    epp_buf_t body = {0}, msg = {0};
    uint64_t ev = 0;
    for (size_t t = 0; t < L->n_tmpls && rc == 0; t++) {
        tmpl_t *T = &L->tmpls[t];
        epp_buf_reset(&body);
        epp_buf_reset(&msg);
        size_t *offs = ids ? calloc((size_t)per, sizeof(size_t)) : NULL;
        if (ids && !offs) {
            rc = EPP_ENOMEM;
            break;
        }
        if (c->batch > 0)
            rc = epp_buf_append_char(&body, '[');
        for (int64_t k = 0; k < per && rc == 0; k++) {
            if (k > 0)
                rc = epp_buf_append_char(&body, ',');
            if (rc == 0 && ids)
                offs[k] = body.len + strlen("{\"event_id\":\"");
            if (rc == 0)
                rc = epp_evgen_event(&gen, ev++, ids ? ID_PLACEHOLDER : NULL, 0, &body);
        }
        if (rc == 0 && c->batch > 0)
            rc = epp_buf_append_char(&body, ']');
        if (rc == 0)
            rc = epp_buf_printf(&msg,
                                "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: epp-load\r\n"
                                "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                                L->path, L->host, L->port, body.len);
        if (rc == 0 && c->api_key && *c->api_key)
            rc = epp_buf_printf(&msg, "Authorization: Bearer %s\r\n", c->api_key);
        if (rc == 0)
            rc = epp_buf_append_str(&msg, "\r\n");
        size_t head = msg.len;
        if (rc == 0)
            rc = epp_buf_append(&msg, body.data, body.len);
        if (rc != 0) {
            free(offs);
            break;
        }
        for (int64_t k = 0; ids && k < per; k++)
            offs[k] += head;
        T->len = msg.len;
        T->data = epp_buf_steal(&msg);
        T->id_off = offs;
        T->n_ids = ids ? (size_t)per : 0;
        if (!T->data)
            rc = EPP_ENOMEM;
    }
    epp_buf_free(&body);
    epp_buf_free(&msg);
    epp_evgen_free(&gen);
    if (rc != 0)
        snprintf(err, errsz, "cannot render request templates: %s", epp_strerror(rc));
    return rc;
}

static void conn_close(load_t *L, conn_t *c, int64_t retry_ns)
{
    if (c->fd >= 0) {
        epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = CONN_DOWN;
    c->retry_ns = retry_ns;
    c->in_len = 0;
    c->served = 0;
}

static int conn_open(load_t *L, conn_t *c)
{
    c->fd = socket(L->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return EPP_EIO;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->in_len = 0;
    c->served = 0;
    int r = connect(c->fd, (struct sockaddr *)&L->addr, L->addrlen);
    if (r != 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return EPP_EIO;
    }
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &e) != 0) {
        close(c->fd);
        c->fd = -1;
        return EPP_EIO;
    }
    c->state = CONN_CONNECTING;
    return 0;
}

static void push_idle(load_t *L, conn_t *c)
{
    c->state = CONN_IDLE;
    if (!c->in_idle) {
        c->in_idle = true;
        L->idle[L->n_idle++] = c;
    }
}

/* An idle connection, or NULL. Entries whose socket died since they were pushed are dropped. */
static conn_t *pop_idle(load_t *L)
{
    while (L->n_idle > 0) {
        conn_t *c = L->idle[--L->n_idle];
        c->in_idle = false;
        if (c->state == CONN_IDLE)
            return c;
    }
    return NULL;
}

static void want_write(load_t *L, conn_t *c, bool on)
{
    struct epoll_event e = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &e);
}

static const char *req_data(const conn_t *c)
{
    return c->own ? c->own : c->tmpl->data;
}

/* Writes "event_id status" for every event of the request on c. */
static void record_result(load_t *L, const conn_t *c, const char *status)
{
    if (!L->record || !c->own)
        return;
    for (size_t k = 0; k < c->tmpl->n_ids; k++)
        fprintf(L->record, "%.36s %s\n", c->own + c->tmpl->id_off[k], status);
}

/* The request on c is over (a response, or an error): account for it and free the connection
 * for the next one. */
static void finish_request(load_t *L, conn_t *c, int status, const char *error, int64_t t)
{
    char key[24];
    if (error) {
        count_error(L, error);
        record_result(L, c, error);
    } else {
        snprintf(key, sizeof(key), "%d", status);
        L->answered++;
        bump(L->status, &L->n_status, sizeof(L->status) / sizeof(L->status[0]), key, 1);
        record_result(L, c, key);
    }
    /* Latency is recorded for answers (any status) and for timeouts (at least the timeout);
     * a request that failed to connect or broke off has no meaningful latency. */
    if (!error || strcmp(error, "timeout") == 0) {
        int64_t intended = L->start_ns + (int64_t)((double)c->req * L->interval_ns);
        epp_hist_record(&L->hist, (t - intended) / 1000);
    }
    L->completed++;
    L->in_flight--;
    L->last_done_ns = t;
    c->tmpl = NULL;
}

static int conn_write(load_t *L, conn_t *c)
{
    const tmpl_t *T = c->tmpl;
    while (c->out_off < T->len) {
        ssize_t n = send(c->fd, req_data(c) + c->out_off, T->len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            want_write(L, c, true);
            return 0;
        }
        return EPP_EIO;
    }
    return 0;
}

/* Hands request number req to the idle connection c. */
static void issue(load_t *L, conn_t *c, int64_t req)
{
    const tmpl_t *T = &L->tmpls[(size_t)req % L->n_tmpls];
    c->req = req;
    c->tmpl = T;
    c->out_off = 0;
    c->resent = false;
    c->in_len = 0;
    if (T->n_ids) {
        if (c->own_cap < T->len) {
            char *p = realloc(c->own, T->len);
            if (!p) {
                fprintf(stderr, "epp-load: out of memory\n");
                exit(1);
            }
            c->own = p;
            c->own_cap = T->len;
        }
        memcpy(c->own, T->data, T->len);
        for (size_t k = 0; k < T->n_ids; k++) {
            epp_uuid_t id;
            char s[EPP_UUID_STRLEN + 1];
            epp_uuid_v7(&id);
            epp_uuid_format(&id, s);
            memcpy(c->own + T->id_off[k], s, EPP_UUID_STRLEN);
        }
    }
    c->state = CONN_BUSY;
    c->sent_ns = now_ns();
    L->issued++;
    L->last_issue_ns = c->sent_ns;
    L->in_flight++;
    if (conn_write(L, c) != 0) {
        /* Fails at once only when the socket is already dead: try again on a fresh one. */
        c->resent = true;
        conn_close(L, c, 0);
        if (conn_open(L, c) != 0) {
            finish_request(L, c, 0, "connect", now_ns());
            conn_close(L, c, now_ns() + 100000000LL);
        }
    }
}

/* Parses a complete response at the start of c->in. Returns the bytes it used (> 0) and sets
 * *status and *close; 0 when more bytes are needed; -1 when it is not HTTP. */
static ssize_t parse_response(const conn_t *c, int *status, bool *close_after)
{
    const char *b = c->in;
    size_t len = c->in_len;
    const char *eoh = memmem(b, len, "\r\n\r\n", 4);
    if (!eoh)
        return len > 65536 ? -1 : 0;
    size_t head = (size_t)(eoh - b) + 4;
    if (len < 12 || memcmp(b, "HTTP/1.", 7) != 0)
        return -1;
    /* "HTTP/1.x NNN": three digits. */
    if (!isdigit((unsigned char)b[9]) || !isdigit((unsigned char)b[10]) ||
        !isdigit((unsigned char)b[11]))
        return -1;
    *status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    *close_after = b[7] == '0';
    long long clen = -1;
    bool chunked = false;
    const char *line = memchr(b, '\n', head) + 1;
    while (line < eoh) {
        const char *nl = memchr(line, '\n', (size_t)(eoh + 2 - line));
        if (!nl)
            break;
        size_t ll = (size_t)(nl - line);
        if (ll > 15 && strncasecmp(line, "content-length:", 15) == 0) {
            clen = strtoll(line + 15, NULL, 10);
        } else if (ll > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
            chunked = memmem(line, ll, "chunked", 7) != NULL;
        } else if (ll > 11 && strncasecmp(line, "connection:", 11) == 0) {
            if (memmem(line, ll, "close", 5))
                *close_after = true;
            else if (memmem(line, ll, "keep-alive", 10))
                *close_after = false;
        }
        line = nl + 1;
    }
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200))
        return (ssize_t)head;
    if (chunked) {
        size_t p = head;
        for (;;) {
            const char *crlf = memmem(b + p, len - p, "\r\n", 2);
            if (!crlf)
                return 0;
            unsigned long long sz = strtoull(b + p, NULL, 16);
            p = (size_t)(crlf - b) + 2;
            if (sz == 0) {
                /* Trailers (none expected) end with an empty line. */
                const char *end = memmem(b + p, len - p, "\r\n", 2);
                while (end && end != b + p) {
                    p = (size_t)(end - b) + 2;
                    end = memmem(b + p, len - p, "\r\n", 2);
                }
                if (!end)
                    return 0;
                return (ssize_t)(p + 2);
            }
            if (len - p < sz + 2)
                return 0;
            p += sz + 2;
        }
    }
    if (clen < 0) {
        /* No length: the body ends when the server closes; we do not wait for that. */
        *close_after = true;
        return (ssize_t)head;
    }
    if (len - head < (size_t)clen)
        return 0;
    return (ssize_t)(head + (size_t)clen);
}

/* A connection failed while a request was on it: a first-use failure or one after a
 * stale keep-alive close is retried once on a new socket; anything else counts as an error. */
static void conn_failed(load_t *L, conn_t *c, const char *error)
{
    int64_t t = now_ns();
    bool stale = c->served > 0 && c->in_len == 0;
    if (c->state == CONN_BUSY && c->tmpl) {
        if (stale && !c->resent) {
            c->resent = true;
            conn_close(L, c, 0);
            c->out_off = 0;
            if (conn_open(L, c) == 0)
                return; /* the request goes out again once connected */
            error = "connect";
        }
        finish_request(L, c, 0, error, t);
        conn_close(L, c, t);
        return;
    }
    /* The server closed an idle keep-alive connection: not an error, just reconnect. */
    conn_close(L, c, t);
}

static void conn_readable(load_t *L, conn_t *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
            char *p = realloc(c->in, cap);
            if (!p) {
                fprintf(stderr, "epp-load: out of memory\n");
                exit(1);
            }
            c->in = p;
            c->in_cap = cap;
        }
        size_t avail = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, avail, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            if ((size_t)n < avail)
                break; /* a short read: the socket is drained */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        conn_failed(L, c, n == 0 ? "closed" : "io");
        return;
    }
    if (c->state != CONN_BUSY) {
        /* Bytes nobody asked for (or an early close notice): drop the connection. */
        if (c->in_len > 0) {
            count_error(L, "unexpected");
            conn_close(L, c, now_ns());
        }
        return;
    }
    int status = 0;
    bool close_after = false;
    ssize_t used = parse_response(c, &status, &close_after);
    if (used == 0)
        return;
    int64_t t = now_ns();
    if (used < 0) {
        finish_request(L, c, 0, "bad_response", t);
        conn_close(L, c, t);
        return;
    }
    finish_request(L, c, status, NULL, t);
    c->served++;
    c->in_len -= (size_t)used;
    if (close_after || c->in_len > 0) {
        conn_close(L, c, t);
        return;
    }
    push_idle(L, c);
}

static void conn_event(load_t *L, conn_t *c, uint32_t ev)
{
    if (c->state == CONN_CONNECTING) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if ((ev & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            if (c->tmpl) {
                c->state = CONN_BUSY;
                finish_request(L, c, 0, "connect", now_ns());
            } else {
                count_error(L, "connect");
            }
            conn_close(L, c, now_ns() + 100000000LL);
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        if (c->tmpl) {
            /* A request was waiting for this connection (a re-send). */
            c->state = CONN_BUSY;
            want_write(L, c, false);
            if (conn_write(L, c) != 0) {
                finish_request(L, c, 0, "io", now_ns());
                conn_close(L, c, now_ns());
            }
            return;
        }
        want_write(L, c, false);
        push_idle(L, c);
        return;
    }
    if (c->state == CONN_BUSY && (ev & EPOLLOUT) && c->out_off < c->tmpl->len) {
        if (conn_write(L, c) != 0) {
            conn_failed(L, c, "io");
            return;
        }
        if (c->out_off == c->tmpl->len)
            want_write(L, c, false);
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_readable(L, c);
}

/* Times out requests that waited too long and reopens dropped connections. */
static void housekeeping(load_t *L, int64_t t)
{
    int64_t limit = (int64_t)(L->conf->timeout_s * 1e9);
    for (size_t i = 0; i < L->n_conns; i++) {
        conn_t *c = &L->conns[i];
        if (c->state == CONN_BUSY && t - c->sent_ns > limit) {
            finish_request(L, c, 0, "timeout", t);
            conn_close(L, c, t);
        }
        if (c->state == CONN_DOWN && c->retry_ns <= t && !g_stop) {
            if (conn_open(L, c) != 0) {
                count_error(L, "connect");
                c->retry_ns = t + 100000000LL;
            }
        }
    }
}

static void run(load_t *L, double duration_s)
{
    for (size_t i = 0; i < L->n_conns; i++) {
        L->conns[i].fd = -1;
        if (conn_open(L, &L->conns[i]) != 0) {
            count_error(L, "connect");
            L->conns[i].state = CONN_DOWN;
            L->conns[i].retry_ns = 0;
        }
    }
    struct epoll_event evs[256];
    /* Let the connections come up first (at most a second), so that the first requests do not
     * pay for the handshakes. */
    int64_t warm_end = now_ns() + 1000000000LL;
    while (L->n_idle < L->n_conns && now_ns() < warm_end && !g_stop) {
        int n = epoll_wait(L->ep, evs, 256, 10);
        for (int i = 0; i < n; i++)
            conn_event(L, evs[i].data.ptr, evs[i].events);
    }
    L->total = (int64_t)llround(duration_s * L->conf->rps);
    L->start_ns = now_ns();
    int64_t drain_end = -1;
    int64_t last_house = L->start_ns;
    int64_t timeout_ns = (int64_t)(L->conf->timeout_s * 1e9);
    while (!g_stop) {
        int64_t t = now_ns();
        while (L->due < L->total && L->start_ns + (int64_t)((double)L->due * L->interval_ns) <= t)
            L->due++;
        while (L->issued < L->due) {
            conn_t *c = pop_idle(L);
            if (!c)
                break;
            issue(L, c, L->issued);
        }
        if (L->due >= L->total) {
            if (drain_end < 0)
                drain_end = t + timeout_ns;
            if ((L->issued >= L->total && L->in_flight == 0) || t >= drain_end)
                break;
        }
        if (t - last_house >= 10000000LL) {
            housekeeping(L, t);
            last_house = t;
        }
        /* Sleep until the next intended send time, or for I/O; never past a housekeeping
         * tick. */
        int64_t wait = 10000000LL;
        if (L->issued >= L->due && L->due < L->total) {
            int64_t next = L->start_ns + (int64_t)((double)L->due * L->interval_ns);
            if (next - t < wait)
                wait = next - t > 0 ? next - t : 0;
        }
        struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
        int n = epoll_pwait2(L->ep, evs, 256, &ts, NULL);
        for (int i = 0; i < n; i++)
            conn_event(L, evs[i].data.ptr, evs[i].events);
    }
    /* Requests still unanswered when the drain time ran out (or on Ctrl-C) are timeouts: their
     * events may or may not be stored, and --record says so. */
    int64_t t_end = now_ns();
    for (size_t i = 0; i < L->n_conns; i++) {
        conn_t *c = &L->conns[i];
        if (c->tmpl && (c->state == CONN_BUSY || c->state == CONN_CONNECTING)) {
            c->state = CONN_BUSY;
            finish_request(L, c, 0, "timeout", t_end);
        }
    }
    if (L->last_done_ns == 0)
        L->last_done_ns = now_ns();
}

static void print_report(load_t *L, double duration_s)
{
    const load_conf_t *c = L->conf;
    double el = (double)(L->last_done_ns - L->start_ns) / 1e9;
    /* The achieved rate: answers (any status) over the sending window -- the scheduled duration, or
     * longer when the generator fell behind (no idle connection) and sent its last request late.
     * The time the last responses take to arrive is not part of it (it is in the latencies). */
    double window = (double)(L->last_issue_ns - L->start_ns + (int64_t)L->interval_ns) / 1e9;
    if (window < duration_s)
        window = duration_s;
    double rate = window > 0 ? (double)L->answered / window : 0;
    int64_t per = c->batch > 0 ? c->batch : 1;
    uint64_t ok = 0, errs = 0;
    for (size_t i = 0; i < L->n_status; i++)
        if (L->status[i].key[0] == '2')
            ok += L->status[i].n;
    for (size_t i = 0; i < L->n_errors; i++)
        errs += L->errors[i].n;
    int64_t not_sent = L->total - L->issued;
    double p[5] = {50, 90, 99, 99.9, 100};
    int64_t v[5];
    for (int i = 0; i < 5; i++)
        v[i] = epp_hist_percentile(&L->hist, p[i]);
    v[4] = L->hist.total ? L->hist.max : 0;
    double mean = L->hist.total ? L->hist.sum / (double)L->hist.total : 0;
    if (c->json) {
        printf("{\"url\":\"http://%s:%s%s\",\"target_rps\":%.1f,\"duration_s\":%.3f,"
               "\"connections\":%lld,\"batch\":%lld,\"scheduled\":%lld,\"sent\":%lld,"
               "\"completed\":%lld,\"answered\":%lld,\"not_sent\":%lld,\"elapsed_s\":%.3f,"
               "\"send_window_s\":%.3f,"
               "\"achieved_rps\":%.1f,"
               "\"events_per_s\":%.1f,\"ok\":%llu,",
               L->host, L->port, L->path, c->rps, duration_s, (long long)c->connections,
               (long long)c->batch, (long long)L->total, (long long)L->issued,
               (long long)L->completed, (long long)L->answered, (long long)not_sent, el, window,
               rate, rate * (double)per, (unsigned long long)ok);
        printf("\"latency_us\":{\"p50\":%lld,\"p90\":%lld,\"p99\":%lld,\"p99_9\":%lld,"
               "\"max\":%lld,\"mean\":%.1f},",
               (long long)v[0], (long long)v[1], (long long)v[2], (long long)v[3], (long long)v[4],
               mean);
        printf("\"status\":{");
        for (size_t i = 0; i < L->n_status; i++)
            printf("%s\"%s\":%llu", i ? "," : "", L->status[i].key,
                   (unsigned long long)L->status[i].n);
        printf("},\"errors\":{");
        for (size_t i = 0; i < L->n_errors; i++)
            printf("%s\"%s\":%llu", i ? "," : "", L->errors[i].key,
                   (unsigned long long)L->errors[i].n);
        printf("}}\n");
        return;
    }
    printf("target:    %.1f req/s for %.3f s over %lld connections to http://%s:%s%s%s\n", c->rps,
           duration_s, (long long)c->connections, L->host, L->port, L->path,
           c->batch > 0 ? " (batch)" : "");
    printf("requests:  %lld scheduled, %lld sent, %lld answered, %lld failed, %lld not sent\n",
           (long long)L->total, (long long)L->issued, (long long)L->answered,
           (long long)(L->completed - L->answered), (long long)not_sent);
    printf("achieved:  %.1f req/s (%.1f events/s) over %.3f s of sending; last response at "
           "%.3f s\n",
           rate, rate * (double)per, window, el);
    printf("latency:   p50=%.3fms p90=%.3fms p99=%.3fms p99.9=%.3fms max=%.3fms mean=%.3fms "
           "(from intended send time)\n",
           (double)v[0] / 1e3, (double)v[1] / 1e3, (double)v[2] / 1e3, (double)v[3] / 1e3,
           (double)v[4] / 1e3, mean / 1e3);
    printf("status:   ");
    for (size_t i = 0; i < L->n_status; i++)
        printf(" %s=%llu", L->status[i].key, (unsigned long long)L->status[i].n);
    printf("%s\nerrors:   ", L->n_status ? "" : " none");
    for (size_t i = 0; i < L->n_errors; i++)
        printf(" %s=%llu", L->errors[i].key, (unsigned long long)L->errors[i].n);
    printf("%s\n", L->n_errors ? "" : " none");
    (void)errs;
}

int main(int argc, char **argv)
{
    load_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    char err[256];
    epp_start_t start = {
        .prog = "epp-load",
        .summary = "Open-loop constant-rate load against the Ingestion Service.",
        .table = load_opts,
        .cfg = &conf,
        .log = &conf.log,
        .flags = EPP_START_IGNORE_SIGPIPE | EPP_START_FLAG_STOP,
        .stop = &g_stop,
    };
    int rc = epp_start(&start, argc, argv);
    if (rc != 0)
        return epp_start_exit_status(rc);

    int exit_code = 2;
    load_t L;
    memset(&L, 0, sizeof(L));
    L.conf = &conf;
    L.ep = -1;
    double duration_s = 0;
    char *url = NULL;
    if (parse_duration(conf.duration, &duration_s) != 0) {
        fprintf(stderr, "epp-load: --duration: expected e.g. 500ms, 30s, 2m: '%s'\n",
                conf.duration);
        goto done;
    }
    url = epp_evgen_resolve_url(conf.url, conf.batch > 0);
    if (!url || parse_url(&L, url, err, sizeof(err)) != 0 ||
        render_templates(&L, err, sizeof(err)) != 0) {
        fprintf(stderr, "epp-load: %s\n", url ? err : "out of memory");
        goto done;
    }
    if (conf.record) {
        L.record = fopen(conf.record, "w");
        if (!L.record) {
            fprintf(stderr, "epp-load: cannot write %s: %s\n", conf.record, strerror(errno));
            goto done;
        }
    }
    L.interval_ns = 1e9 / conf.rps;
    L.n_conns = (size_t)conf.connections;
    L.conns = calloc(L.n_conns, sizeof(*L.conns));
    L.idle = calloc(L.n_conns, sizeof(conn_t *));
    L.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!L.conns || !L.idle || L.ep < 0) {
        fprintf(stderr, "epp-load: cannot set up: %s\n", strerror(errno));
        goto done;
    }
    epp_hist_init(&L.hist);
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    /* One descriptor per connection: raise the soft limit (often 1024) as far as needed and
     * allowed. */
    struct rlimit rl;
    rlim_t want = (rlim_t)conf.connections + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want)
            fprintf(stderr, "epp-load: warning: only %llu file descriptors for %lld connections\n",
                    (unsigned long long)rl.rlim_cur, (long long)conf.connections);
    }

    run(&L, duration_s);
    print_report(&L, duration_s);
    uint64_t bad = 0;
    for (size_t i = 0; i < L.n_status; i++)
        if (L.status[i].key[0] != '2')
            bad += L.status[i].n;
    for (size_t i = 0; i < L.n_errors; i++)
        bad += L.errors[i].n;
    exit_code = (bad == 0 && L.completed == L.total) ? 0 : 1;
done:
    if (L.record && fclose(L.record) != 0) {
        fprintf(stderr, "epp-load: writing %s failed\n", conf.record);
        exit_code = 1;
    }
    for (size_t i = 0; L.conns && i < L.n_conns; i++) {
        if (L.conns[i].fd >= 0)
            close(L.conns[i].fd);
        free(L.conns[i].own);
        free(L.conns[i].in);
    }
    for (size_t i = 0; L.tmpls && i < L.n_tmpls; i++) {
        free(L.tmpls[i].data);
        free(L.tmpls[i].id_off);
    }
    free(L.tmpls);
    free(L.conns);
    free(L.idle);
    if (L.ep >= 0)
        close(L.ep);
    free(url);
    epp_config_free(load_opts, &conf);
    return exit_code;
}
