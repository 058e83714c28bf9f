/* libFuzzer target: epp_http's wire parser (common/epp_http_parse.c) -- the request head, fed in
 * two pieces as a client dribbling it would (the split point comes from the first byte), then a
 * chunked body when the head announces one, and the reply head written for the request.
 *
 * Properties checked beyond "no crash, no sanitizer report":
 *  - a head is either refused with a 4xx/5xx status, incomplete, or parsed, and a parsed head
 *    ends inside what was read, with a method made of token characters, a path without spaces
 *    or control bytes, at most EPP_HTTP__MAX_HEADERS headers, and never both Content-Length and
 *    chunked framing;
 *  - the chunked decoder consumes at most what it was given and never grows the body past the
 *    cap by more than one step of input;
 *  - the reply head is one status line, header lines and a blank line, with no bare CR or LF. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epp_http_internal.h"
#include "fuzz_check.h"

static int tchar(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static epp_http_server_t srv;
    static epp_http__worker_t worker;
    epp_http__conn_t *c = calloc(1, sizeof(*c));
    srv.opts.max_body = 4096;
    c->srv = &srv;
    c->worker = &worker;
    strcpy(worker.date, "Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n");
    c->req.conn = c;
    c->req.srv = &srv;
    c->rcap = size;
    c->rbuf = malloc(size + 1);
    memcpy(c->rbuf, data, size);
    size_t split = size ? data[0] % (size + 1) : 0;
    c->rlen = split;
    c->rbuf[c->rlen] = '\0';
    int rc = epp_http__parse_head(c);
    if (rc == 0) {
        c->rlen = size;
        c->rbuf[c->rlen] = '\0';
        rc = epp_http__parse_head(c);
    }
    REQUIRE(rc == 0 || rc == 1 || (rc <= -400 && rc >= -505));
    if (rc == 1) {
        epp_http_req_t *req = &c->req;
        REQUIRE(c->head_len >= 4 && c->head_len <= c->rlen);
        REQUIRE(req->method[0]);
        for (const char *m = req->method; *m; m++)
            REQUIRE(tchar((unsigned char)*m));
        for (const unsigned char *u = (const unsigned char *)req->url; *u; u++)
            REQUIRE(*u > 0x20 && *u != 0x7f);
        REQUIRE(req->nheaders <= EPP_HTTP__MAX_HEADERS);
        if (c->phase == EPP_HTTP__P_CHUNKED) {
            REQUIRE(!epp_http__find_header(req, "Content-Length"));
            int done = 0;
            size_t off = c->head_len;
            while (off < c->rlen && !done) {
                size_t step = (c->rlen - off) / 2 + 1;
                long k = epp_http__parse_chunked(c, c->rbuf + off, step, &done);
                if (k < 0)
                    break;
                REQUIRE((size_t)k <= step);
                off += (size_t)k;
                REQUIRE(req->body.len <= srv.opts.max_body + step);
                if (req->body.len > srv.opts.max_body)
                    break;
                if (k == 0)
                    break;
            }
        }
        req->status = 200 + (unsigned)(size % 400);
        req->method_idx = EPP_HTTP__M_GET;
        epp_http__fill_reply(req, req->status, "application/json", "{}", 2);
        REQUIRE(epp_http__write_reply(c, req) == 0);
        const char *w = c->wbuf.data;
        const char *end = strstr(w, "\r\n\r\n");
        REQUIRE(end && strncmp(w, "HTTP/1.1 ", 9) == 0);
        for (const char *p = w; p < end; p++) {
            if (*p == '\r')
                REQUIRE(p[1] == '\n');
            if (*p == '\n')
                REQUIRE(p > w && p[-1] == '\r');
        }
    }
    epp_buf_free(&c->req.body);
    epp_buf_free(&c->req.out);
    epp_buf_free(&c->req.hdrs);
    epp_buf_free(&c->wbuf);
    free(c->rbuf);
    free(c);
    return 0;
}
