/* epp_http_parse.c: the HTTP/1.1 wire format (RFC 9112) -- the request line and headers, parsed
 * in place in the connection's read buffer; Content-Length and chunked bodies; and the head of a
 * reply. What a request means (routes, keys, limits) is decided elsewhere (epp_http_route.c,
 * epp_http_guard.c); when bytes arrive and replies leave, in epp_http_server.c.
 *
 * The parser is strict where leniency has been used to smuggle requests or to hold a server:
 * lines end in CRLF only (a bare CR or LF is a 400), header names are tokens with no space before
 * the colon, no line folding, no NUL anywhere in the head, one Content-Length (or several equal
 * ones), never both Content-Length and Transfer-Encoding, and chunk sizes of at most 15 hex
 * digits. A byte that cannot start a method is refused at once rather than when the head would
 * have ended (a TLS hello on the plain port is closed without waiting for a timeout). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "epp_error.h"
#include "epp_hex.h"
#include "epp_http_internal.h"

/* RFC 9110 tchar. */
static int is_tchar(unsigned char ch)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr(extra, ch) != NULL);
}

/* The first bytes of a request must be a method token followed by a space. */
static int early_check(const epp_http__conn_t *c)
{
    size_t n = c->rlen < 24 ? c->rlen : 24;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c->rbuf[i];
        if (ch == ' ')
            return i == 0 ? -400 : 0;
        if (!is_tchar(ch))
            return -400;
    }
    return n == 24 ? -501 : 0; /* no method is that long */
}

static void parse_framing(epp_http__conn_t *c, const char *name, const char *value, int *cl_seen,
                          uint64_t *cl, int *te, int *bad)
{
    epp_http_req_t *req = &c->req;
    if (strcasecmp(name, "Content-Length") == 0) {
        uint64_t v = 0;
        int digits = 0;
        for (const char *p = value; *p; p++) {
            if (*p < '0' || *p > '9' || ++digits > 18) {
                *bad = -400;
                return;
            }
            v = v * 10 + (uint64_t)(*p - '0');
        }
        if (digits == 0 || (*cl_seen && *cl != v))
            *bad = -400;
        *cl_seen = 1;
        *cl = v;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        if (strcasecmp(value, "chunked") != 0 || *te)
            *bad = -501;
        *te = 1;
    } else if (strcasecmp(name, "Connection") == 0) {
        /* A list of tokens: "close" wins; "keep-alive" matters to HTTP/1.0 only. */
        const char *p = value;
        while (*p) {
            while (*p == ' ' || *p == ',' || *p == '\t')
                p++;
            size_t n = strcspn(p, " ,\t");
            if (n == 5 && strncasecmp(p, "close", 5) == 0)
                c->keep_alive = -1;
            else if (n == 10 && strncasecmp(p, "keep-alive", 10) == 0 && c->keep_alive == 0)
                c->keep_alive = 1;
            p += n;
        }
    } else if (strcasecmp(name, "Expect") == 0) {
        if (strcasecmp(value, "100-continue") == 0)
            c->want_continue = 1;
        else
            *bad = -417;
    }
    (void)req;
}

int epp_http__parse_head(epp_http__conn_t *c)
{
    epp_http_req_t *req = &c->req;
    char *buf = c->rbuf;
    int rc = early_check(c);
    if (rc < 0)
        return rc;
    /* Find the blank line that ends the head. */
    size_t i = c->scan > 3 ? c->scan - 3 : 0;
    size_t end = 0;
    const char *hit = NULL;
    while (i + 3 < c->rlen) {
        const char *cr = memchr(buf + i, '\r', c->rlen - i - 3);
        if (!cr)
            break;
        if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n') {
            hit = cr;
            break;
        }
        i = (size_t)(cr - buf) + 1;
    }
    if (!hit) {
        /* A bare LF is refused now rather than after a timeout (the head could never end). */
        for (size_t k = c->scan; k < c->rlen; k++) {
            const char *lf = memchr(buf + k, '\n', c->rlen - k);
            if (!lf)
                break;
            if (lf == buf || lf[-1] != '\r')
                return -400;
            k = (size_t)(lf - buf);
        }
        c->scan = c->rlen;
        if (c->rlen >= EPP_HTTP__HEAD_MAX)
            return memchr(buf, '\n', c->rlen) ? -431 : -414;
        return 0;
    }
    end = (size_t)(hit - buf) + 4;
    if (end > EPP_HTTP__HEAD_MAX)
        return memchr(buf, '\n', EPP_HTTP__HEAD_MAX) ? -431 : -414;
    c->head_len = end;

    /* Line endings: CRLF only; no NUL. */
    for (size_t k = 0; k < end; k++) {
        char ch = buf[k];
        if (ch == '\0')
            return -400;
        if (ch == '\r' && buf[k + 1] != '\n')
            return -400;
        if (ch == '\n' && (k == 0 || buf[k - 1] != '\r'))
            return -400;
    }

    /* Request line: method SP target SP HTTP/1.x */
    char *line_end = strstr(buf, "\r\n");
    *line_end = '\0';
    char *sp1 = strchr(buf, ' ');
    if (!sp1)
        return -400;
    *sp1 = '\0';
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2 || sp2 == target)
        return -400;
    *sp2 = '\0';
    const char *version = sp2 + 1;
    if (strchr(version, ' '))
        return -400;
    for (const unsigned char *p = (const unsigned char *)target; *p; p++) {
        if (*p <= 0x20 || *p == 0x7f)
            return -400;
    }
    if (strncmp(version, "HTTP/", 5) != 0 || version[5] < '0' || version[5] > '9' ||
        version[6] != '.' || version[7] < '0' || version[7] > '9' || version[8])
        return -400;
    if (version[5] != '1')
        return -505;
    int http10 = version[7] == '0';
    c->http10 = http10;
    req->method = buf;
    char *q = strchr(target, '?');
    if (q) {
        *q = '\0';
        req->query = q + 1;
        char *frag = strchr(req->query, '#');
        if (frag)
            *frag = '\0';
    }
    req->url = target;

    /* Headers. */
    int cl_seen = 0, te = 0, bad = 0;
    uint64_t cl = 0;
    c->keep_alive = 0;
    char *p = line_end + 2;
    while (p < buf + end - 2) {
        char *e = strstr(p, "\r\n");
        *e = '\0';
        if (*p == ' ' || *p == '\t')
            return -400; /* obsolete line folding */
        char *colon = strchr(p, ':');
        if (!colon || colon == p)
            return -400;
        for (char *n = p; n < colon; n++) {
            if (!is_tchar((unsigned char)*n))
                return -400;
        }
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *ve = e;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        *ve = '\0';
        for (const unsigned char *u = (const unsigned char *)v; *u; u++) {
            if ((*u < 0x20 && *u != '\t') || *u == 0x7f)
                return -400;
        }
        if (req->nheaders == EPP_HTTP__MAX_HEADERS)
            return -431;
        req->headers[req->nheaders].name = p;
        req->headers[req->nheaders].value = v;
        req->nheaders++;
        parse_framing(c, p, v, &cl_seen, &cl, &te, &bad);
        if (bad)
            return bad;
        p = e + 2;
    }
    if (cl_seen && te)
        return -400; /* both framings: the request-smuggling shape */
    if (te && http10)
        return -400;
    /* HTTP/1.1 keeps the connection unless "close"; HTTP/1.0 closes unless "keep-alive". */
    c->keep_alive = http10 ? c->keep_alive == 1 : c->keep_alive != -1;
    if (te) {
        c->phase = EPP_HTTP__P_CHUNKED;
        c->chunk_state = 0;
        c->chunk_left = 0;
    } else if (cl > 0) {
        c->phase = EPP_HTTP__P_BODY;
        c->body_left = cl;
    } else {
        c->phase = EPP_HTTP__P_DONE;
        c->want_continue = 0;
    }
    if (http10)
        c->want_continue = 0;
    return 1;
}

/* Chunked decoder states. */
enum {
    CK_SIZE0,   /* the first hex digit of a size */
    CK_SIZE,    /* more hex digits, or the end of the size */
    CK_EXT,     /* a chunk extension, skipped up to CR */
    CK_SIZE_LF, /* the LF after a size line */
    CK_DATA,    /* chunk_left bytes of data */
    CK_DATA_CR, /* the CRLF after the data */
    CK_DATA_LF,
    CK_TRAILER0, /* the start of a trailer line, or the final CRLF */
    CK_TRAILER,  /* a trailer field, skipped */
    CK_TRAILER_LF,
    CK_FINAL_LF,
};

long epp_http__parse_chunked(epp_http__conn_t *c, const char *in, size_t len, int *done)
{
    epp_http_req_t *req = &c->req;
    size_t i = 0;
    *done = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->chunk_state) {
        case CK_SIZE0:
        case CK_SIZE: {
            int v = epp_hex_digit(ch);
            if (v >= 0) {
                /* chunk_left counts digits in its top byte while the size is read. */
                unsigned digits = (unsigned)(c->chunk_left >> 56) + 1;
                if (digits > 15)
                    return -400;
                uint64_t size = (c->chunk_left & ((1ull << 56) - 1)) * 16 + (uint64_t)v;
                c->chunk_left = (uint64_t)digits << 56 | size;
                c->chunk_state = CK_SIZE;
                i++;
                break;
            }
            if (c->chunk_state == CK_SIZE0)
                return -400;
            if (ch == ';' || ch == ' ' || ch == '\t') {
                c->chunk_state = CK_EXT;
                c->chunk_aux = 0;
                i++;
            } else if (ch == '\r') {
                c->chunk_state = CK_SIZE_LF;
                i++;
            } else {
                return -400;
            }
            break;
        }
        case CK_EXT:
            if (ch == '\r')
                c->chunk_state = CK_SIZE_LF;
            else if (ch == '\n' || ++c->chunk_aux > 1024)
                return -400;
            i++;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return -400;
            i++;
            c->chunk_left &= (1ull << 56) - 1;
            c->chunk_state = c->chunk_left ? CK_DATA : CK_TRAILER0;
            break;
        case CK_DATA: {
            size_t n = len - i;
            if (n > c->chunk_left)
                n = (size_t)c->chunk_left;
            if (epp_buf_append(&req->body, in + i, n) < 0)
                return EPP_ENOMEM;
            i += n;
            c->chunk_left -= n;
            if (c->chunk_left == 0)
                c->chunk_state = CK_DATA_CR;
            /* The caller checks the body's size after each call: stop at a bounded step. */
            if (req->body.len > c->srv->opts.max_body)
                return (long)i;
            break;
        }
        case CK_DATA_CR:
            if (ch != '\r')
                return -400;
            c->chunk_state = CK_DATA_LF;
            i++;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return -400;
            c->chunk_state = CK_SIZE0;
            c->chunk_left = 0;
            i++;
            break;
        case CK_TRAILER0:
            if (ch == '\r') {
                c->chunk_state = CK_FINAL_LF;
            } else {
                c->chunk_state = CK_TRAILER;
                c->chunk_aux = 0;
            }
            i++;
            break;
        case CK_TRAILER:
            if (ch == '\r')
                c->chunk_state = CK_TRAILER_LF;
            else if (ch == '\n' || ++c->chunk_aux > EPP_HTTP__HEAD_MAX)
                return -400;
            i++;
            break;
        case CK_TRAILER_LF:
            if (ch != '\n')
                return -400;
            c->chunk_state = CK_TRAILER0;
            i++;
            break;
        case CK_FINAL_LF:
            if (ch != '\n')
                return -400;
            *done = 1;
            return (long)(i + 1);
        default:
            return -400;
        }
    }
    return (long)i;
}

const char *epp_http__find_header(const epp_http_req_t *req, const char *name)
{
    for (unsigned i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

static const char *reason(unsigned status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

static int append_uint(epp_buf_t *b, unsigned long long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return epp_buf_append(b, tmp + sizeof(tmp) - n, n);
}

static int append_header(epp_buf_t *b, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (epp_buf_reserve(b, nl + vl + 4) < 0)
        return EPP_ENOMEM;
    memcpy(b->data + b->len, name, nl);
    b->data[b->len + nl] = ':';
    b->data[b->len + nl + 1] = ' ';
    memcpy(b->data + b->len + nl + 2, value, vl);
    b->data[b->len + nl + 2 + vl] = '\r';
    b->data[b->len + nl + 3 + vl] = '\n';
    b->len += nl + vl + 4;
    b->data[b->len] = '\0';
    return 0;
}

int epp_http__write_reply(epp_http__conn_t *c, epp_http_req_t *req)
{
    epp_http_server_t *srv = c->srv;
    epp_buf_t *b = &c->wbuf;
    unsigned status = req->status;
    /* 204 and 304 carry no body and no Content-Length; HEAD carries the length only. */
    int no_body = status == 204 || status == 304;
    int head = req->method_idx == EPP_HTTP__M_HEAD;
    int rc = epp_buf_reserve(b, 160 + req->hdrs.len + req->out.len);
    rc |= epp_buf_append(b, "HTTP/1.1 ", 9);
    rc |= append_uint(b, status);
    rc |= epp_buf_append_char(b, ' ');
    rc |= epp_buf_append_str(b, reason(status));
    rc |= epp_buf_append(b, "\r\n", 2);
    rc |= epp_buf_append_str(b, c->worker->date);
    if (req->stock_503) {
        rc |= append_header(b, "Content-Type", "application/json");
        rc |= append_header(b, "Retry-After", "1");
    } else {
        for (size_t off = 0; off < req->hdrs.len;) {
            const char *name = req->hdrs.data + off;
            const char *value = name + strlen(name) + 1;
            off = (size_t)(value - req->hdrs.data) + strlen(value) + 1;
            rc |= append_header(b, name, value);
        }
    }
    if (req->cors_ok) {
        rc |= append_header(b, "Access-Control-Allow-Origin", srv->cors_any ? "*" : req->origin);
        if (!srv->cors_any)
            rc |= append_header(b, "Vary", "Origin");
        /* Browsers hide other headers from scripts; a client backing off needs this one. */
        if (status == 429 || status == 503)
            rc |= append_header(b, "Access-Control-Expose-Headers", "Retry-After");
    }
    if (!no_body) {
        rc |= epp_buf_append(b, "Content-Length: ", 16);
        rc |= append_uint(b, req->out.len);
        rc |= epp_buf_append(b, "\r\n", 2);
    }
    if (req->close_after)
        rc |= epp_buf_append(b, "Connection: close\r\n", 19);
    else if (c->http10)
        rc |= epp_buf_append(b, "Connection: keep-alive\r\n", 24);
    rc |= epp_buf_append(b, "\r\n", 2);
    if (!no_body && !head && req->out.len)
        rc |= epp_buf_append(b, req->out.data, req->out.len);
    return rc ? EPP_ENOMEM : 0;
}
