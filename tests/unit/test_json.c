/* Unit tests for epp_json: exact numbers, the strings jsonb refuses, limits, serialisation. */
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_json.h"
#include "epp_test.h"

/* Parses s (strlen) with the given limits; returns the code, keeps the doc in *doc. */
static int parse_lim(const char *s, size_t max_depth, size_t max_size, epp_json_doc_t **doc,
                     epp_json_error_t *err)
{
    epp_json_limits_t lim = {.max_depth = max_depth, .max_size = max_size};
    return epp_json_parse(s, strlen(s), &lim, doc, err);
}

/* 0 when s parses; the error code otherwise. */
static int parse_rc(const char *s)
{
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    int rc = epp_json_parse(s, strlen(s), NULL, &doc, &err);
    epp_json_doc_destroy(doc);
    return rc;
}

/* Parses and re-serialises; returns a malloc'd string or NULL. */
static char *roundtrip(const char *s)
{
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    if (epp_json_parse(s, strlen(s), NULL, &doc, &err))
        return NULL;
    epp_buf_t out = {0};
    int rc = epp_json_serialize(epp_json_root(doc), &out);
    epp_json_doc_destroy(doc);
    if (rc) {
        epp_buf_free(&out);
        return NULL;
    }
    return epp_buf_steal(&out);
}

static void test_numbers_exact(void)
{
    const char *in = "{\"big\":12345678901234567890,\"x\":0.1,\"neg\":-0,\"huge\":1e400,"
                     "\"e\":-1.5E-7,\"arr\":[0,1.000,123456789012345678901234567890.5]}";
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    CHECK_INT_EQ(epp_json_parse(in, strlen(in), NULL, &doc, &err), 0);
    const epp_json_value_t *root = epp_json_root(doc);
    const epp_json_value_t *v = epp_json_get(root, "big");
    CHECK(v && v->type == EPP_JSON_NUMBER);
    CHECK_STR_EQ(v->u.s.text, "12345678901234567890");
    CHECK_STR_EQ(epp_json_get(root, "x")->u.s.text, "0.1");
    CHECK_STR_EQ(epp_json_get(root, "neg")->u.s.text, "-0");
    CHECK_STR_EQ(epp_json_get(root, "huge")->u.s.text, "1e400");
    CHECK_STR_EQ(epp_json_get(root, "e")->u.s.text, "-1.5E-7");
    const epp_json_value_t *arr = epp_json_get(root, "arr");
    CHECK(arr && arr->type == EPP_JSON_ARRAY && arr->u.arr.n == 3);
    CHECK_STR_EQ(arr->u.arr.items[1]->u.s.text, "1.000");
    epp_json_doc_destroy(doc);

    char *out = roundtrip(in);
    CHECK(out);
    CHECK_STR_EQ(out, in);
    free(out);

    /* A top-level number needs yajl_complete_parse() to end the token. */
    out = roundtrip("  12345678901234567890  ");
    CHECK_STR_EQ(out, "12345678901234567890");
    free(out);
}

static void test_tree_shape(void)
{
    const char *in = " { \"a\" : [ true , false , null , \"s\" ] , \"o\" : { \"k\" : { } } ,"
                     " \"a\" : 2 , \"e\" : [ ] } ";
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    CHECK_INT_EQ(epp_json_parse(in, strlen(in), NULL, &doc, &err), 0);
    const epp_json_value_t *root = epp_json_root(doc);
    CHECK_INT_EQ(root->type, EPP_JSON_OBJECT);
    CHECK_INT_EQ(root->depth, 1);
    CHECK_INT_EQ(root->u.obj.n, 4); /* duplicates kept */
    CHECK_STR_EQ(root->u.obj.members[0].key, "a");
    const epp_json_value_t *a0 = root->u.obj.members[0].value;
    CHECK_INT_EQ(a0->type, EPP_JSON_ARRAY);
    CHECK_INT_EQ(a0->u.arr.n, 4);
    CHECK_INT_EQ(a0->depth, 2);
    CHECK_INT_EQ(a0->u.arr.items[0]->type, EPP_JSON_TRUE);
    CHECK_INT_EQ(a0->u.arr.items[1]->type, EPP_JSON_FALSE);
    CHECK_INT_EQ(a0->u.arr.items[2]->type, EPP_JSON_NULL);
    CHECK_INT_EQ(a0->u.arr.items[3]->depth, 3);
    /* epp_json_get returns the last duplicate, as jsonb keeps it. */
    const epp_json_value_t *a = epp_json_get(root, "a");
    CHECK(a && a->type == EPP_JSON_NUMBER);
    CHECK_STR_EQ(a->u.s.text, "2");
    const epp_json_value_t *k = epp_json_get(epp_json_get(root, "o"), "k");
    CHECK(k && k->type == EPP_JSON_OBJECT && k->u.obj.n == 0 && k->depth == 3);
    CHECK(epp_json_get(root, "missing") == NULL);
    CHECK(epp_json_get(a, "x") == NULL);
    epp_json_doc_destroy(doc);

    char *out = roundtrip(in);
    CHECK_STR_EQ(out, "{\"a\":[true,false,null,\"s\"],\"o\":{\"k\":{}},\"a\":2,\"e\":[]}");
    free(out);
}

static void test_nul_rejected(void)
{
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    const char *in = "{\"a\":\"x\\u0000y\"}";
    CHECK_INT_EQ(epp_json_parse(in, strlen(in), NULL, &doc, &err), EPP_EINVAL);
    CHECK(doc == NULL);
    CHECK_STR_EQ(err.kind, "invalid_json");
    CHECK_INT_EQ(err.offset, 7);
    CHECK(strstr(err.message, "\\u0000") != NULL);
    /* In keys too, and in either case of hex digits. */
    CHECK_INT_EQ(parse_rc("{\"\\u0000\":1}"), EPP_EINVAL);
    CHECK_INT_EQ(parse_rc("[\"\\u0000\"]"), EPP_EINVAL);
    /* A raw NUL byte inside a string is a control character: invalid JSON. */
    CHECK_INT_EQ(epp_json_parse("[\"a\0b\"]", 7, NULL, &doc, &err), EPP_EINVAL);
    /* An escaped backslash followed by "u0000" is not an escape. */
    char *out = roundtrip("[\"\\\\u0000\"]");
    CHECK_STR_EQ(out, "[\"\\\\u0000\"]");
    free(out);
    /* Other \u escapes are fine, including \u0001 (re-escaped on output). */
    out = roundtrip("[\"\\u00e9\\u0001\\u20AC\"]");
    CHECK_STR_EQ(out, "[\"\xc3\xa9\\u0001\xe2\x82\xac\"]");
    free(out);
}

static void test_invalid_utf8_rejected(void)
{
    static const struct {
        const char *in;
        size_t offset;
    } bad[] = {
        {"[\"\xff\"]", 2},             /* never valid */
        {"[\"a\xc0\x80\"]", 3},        /* overlong NUL */
        {"[\"\xc1\xbf\"]", 2},         /* overlong */
        {"[\"\xe0\x80\xaf\"]", 2},     /* overlong 3-byte */
        {"[\"\xf0\x80\x80\xaf\"]", 2}, /* overlong 4-byte */
        {"[\"\xed\xa0\x80\"]", 2},     /* encoded surrogate U+D800 */
        {"[\"\xf4\x90\x80\x80\"]", 2}, /* above U+10FFFF */
        {"[\"\xc3\"]", 2},             /* truncated 2-byte */
        {"[\"\xe2\x82\"]", 2},         /* truncated 3-byte */
        {"[\"\xe2\x82", 2},            /* truncated at end of input */
        {"[\"\x80\"]", 2},             /* lone continuation byte */
        {"{\"k\xff\":1}", 3},          /* in a key */
        {"{\"k\":1,\"\xe2\x28\xa1\":1}", 8},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        epp_json_doc_t *doc = NULL;
        epp_json_error_t err;
        int rc = epp_json_parse(bad[i].in, strlen(bad[i].in), NULL, &doc, &err);
        if (rc != EPP_EINVAL || doc)
            EPP_FAIL_("case %zu accepted", i);
        if (err.offset != bad[i].offset)
            EPP_FAIL_("case %zu: offset %zu, expected %zu (%s)", i, err.offset, bad[i].offset,
                      err.message);
        CHECK_STR_EQ(err.kind, "invalid_json");
    }
    /* Valid multi-byte UTF-8 of every length passes through unchanged. */
    char *out = roundtrip("{\"s\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}");
    CHECK_STR_EQ(out, "{\"s\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}");
    free(out);

    CHECK(epp_json_utf8_valid("abc\xc3\xa9", 5));
    CHECK(!epp_json_utf8_valid("a\0b", 3));
    CHECK(!epp_json_utf8_valid("\xed\xbf\xbf", 3));
    CHECK(!epp_json_utf8_valid("\xc3", 1));
    CHECK(epp_json_utf8_valid("", 0));
}

static void test_surrogates(void)
{
    /* A valid pair becomes one 4-byte character. */
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    const char *in = "{\"s\":\"\\ud83d\\ude00\",\"t\":\"\\uD83D\\uDE00!\"}";
    CHECK_INT_EQ(epp_json_parse(in, strlen(in), NULL, &doc, &err), 0);
    CHECK_STR_EQ(epp_json_get(epp_json_root(doc), "s")->u.s.text, "\xf0\x9f\x98\x80");
    CHECK_STR_EQ(epp_json_get(epp_json_root(doc), "t")->u.s.text, "\xf0\x9f\x98\x80!");
    epp_json_doc_destroy(doc);

    static const char *bad[] = {
        "[\"\\ud800\"]",        /* high alone at the end of the string */
        "[\"\\ud800x\"]",       /* high followed by a plain character */
        "[\"\\ud800\\u0041\"]", /* high followed by a non-surrogate escape */
        "[\"\\ud800\\ud800\"]", /* high followed by high */
        "[\"\\ud800\\n\"]",     /* high followed by another escape */
        "[\"\\udc00\"]",        /* lone low */
        "[\"\\ude00\\ud83d\"]", /* pair in the wrong order */
        "{\"\\udfff\":1}",      /* in a key */
        "[\"\\uDBFF\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        doc = NULL;
        int rc = epp_json_parse(bad[i], strlen(bad[i]), NULL, &doc, &err);
        if (rc != EPP_EINVAL || doc)
            EPP_FAIL_("case %zu (%s) accepted", i, bad[i]);
        if (!strstr(err.message, "surrogate"))
            EPP_FAIL_("case %zu: message \"%s\"", i, err.message);
    }
}

static void test_syntax_errors(void)
{
    static const char *bad[] = {
        "",
        "   ",
        "{",
        "}",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\"}",
        "{a:1}",
        "[1] [2]",
        "{} x",
        "'a'",
        "[01]",
        "[1.]",
        "[.5]",
        "[+1]",
        "[NaN]",
        "[Infinity]",
        "[\"a\\x\"]",
        "[\"\\u12\"]",
        "[\"tab\there\"]",
        "/* c */ {}",
        "[\"unterminated]",
        "nul",
        "[1e]",
        "\xef\xbb\xbf{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        epp_json_doc_t *doc = NULL;
        epp_json_error_t err;
        memset(&err, 0, sizeof err);
        int rc = epp_json_parse(bad[i], strlen(bad[i]), NULL, &doc, &err);
        if (rc != EPP_EINVAL || doc)
            EPP_FAIL_("case %zu (%s) accepted", i, bad[i]);
        CHECK_STR_EQ(err.kind, "invalid_json");
        CHECK(err.message[0] != '\0');
        CHECK(strstr(err.message, "byte") != NULL);
    }
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    CHECK_INT_EQ(parse_lim("{\"a\":1,}", 0, 0, &doc, &err), EPP_EINVAL);
    CHECK(strstr(err.message, "at byte 8") != NULL);
    CHECK_INT_EQ(parse_lim("[1, 2", 0, 0, &doc, &err), EPP_EINVAL);
    CHECK_INT_EQ(err.offset, 5);
    /* Scalars at the top level are values too. */
    CHECK_INT_EQ(parse_rc("\"s\""), 0);
    CHECK_INT_EQ(parse_rc("null"), 0);
    CHECK_INT_EQ(parse_rc(" true "), 0);
}

/* "[[...[]...]]" with n brackets, or the same with objects: {"a":{"a":...{}}}. */
static char *nested(size_t n, int objects)
{
    epp_buf_t b = {0};
    for (size_t i = 0; i < n; i++)
        epp_buf_append_str(&b, objects ? (i + 1 < n ? "{\"a\":" : "{") : "[");
    for (size_t i = 0; i < n; i++)
        epp_buf_append_char(&b, objects ? '}' : ']');
    return epp_buf_steal(&b);
}

static void test_depth_limit(void)
{
    for (int objects = 0; objects <= 1; objects++) {
        epp_json_doc_t *doc = NULL;
        epp_json_error_t err;
        char *ok = nested(32, objects), *deep = nested(33, objects);
        CHECK_INT_EQ(parse_lim(ok, 32, 0, &doc, &err), 0);
        /* The innermost container has depth 32. */
        const epp_json_value_t *v = epp_json_root(doc);
        while (v->type == EPP_JSON_ARRAY ? v->u.arr.n : v->u.obj.n)
            v = v->type == EPP_JSON_ARRAY ? v->u.arr.items[0] : v->u.obj.members[0].value;
        CHECK_INT_EQ(v->depth, 32);
        epp_json_doc_destroy(doc);
        doc = NULL;
        CHECK_INT_EQ(parse_lim(deep, 32, 0, &doc, &err), EPP_EINVAL);
        CHECK(doc == NULL);
        CHECK_STR_EQ(err.kind, "too_deep");
        CHECK(strstr(err.message, "32") != NULL);
        free(ok);
        free(deep);
    }
    /* Scalars inside the deepest allowed container do not count as a level. */
    CHECK_INT_EQ(parse_rc("[1]"), 0);
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    CHECK_INT_EQ(parse_lim("[[1,\"x\",null]]", 2, 0, &doc, &err), 0);
    epp_json_doc_destroy(doc);
    doc = NULL;
    /* Without a limit the default (128) still applies, and beyond it the parse fails cleanly. */
    char *s128 = nested(128, 0), *s129 = nested(129, 0), *s5000 = nested(5000, 1);
    CHECK_INT_EQ(parse_rc(s128), 0);
    CHECK_INT_EQ(parse_rc(s129), EPP_EINVAL);
    CHECK_INT_EQ(parse_rc(s5000), EPP_EINVAL);
    CHECK_INT_EQ(parse_lim(s5000, 10000, 0, &doc, &err), 0);
    epp_json_doc_destroy(doc);
    free(s128);
    free(s129);
    free(s5000);
}

static void test_size_limit(void)
{
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    const char *in = "{\"a\":\"0123456789\"}"; /* 18 bytes */
    CHECK_INT_EQ(parse_lim(in, 0, 18, &doc, &err), 0);
    epp_json_doc_destroy(doc);
    doc = NULL;
    CHECK_INT_EQ(parse_lim(in, 0, 17, &doc, &err), EPP_ETOOBIG);
    CHECK(doc == NULL);
    CHECK_INT_EQ(err.code, EPP_ETOOBIG);
    CHECK_STR_EQ(err.kind, "too_large");
}

static void test_large_document(void)
{
    /* Many small values overflow the first arena chunk and the inline pending stack. */
    epp_buf_t b = {0};
    epp_buf_append_char(&b, '[');
    for (int i = 0; i < 20000; i++)
        epp_buf_printf(&b, "%s{\"k%d\":[%d,\"v\",{}]}", i ? "," : "", i, i);
    epp_buf_append_char(&b, ']');
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    CHECK_INT_EQ(epp_json_parse(b.data, b.len, NULL, &doc, &err), 0);
    const epp_json_value_t *root = epp_json_root(doc);
    CHECK_INT_EQ(root->u.arr.n, 20000);
    CHECK_STR_EQ(root->u.arr.items[19999]->u.obj.members[0].key, "k19999");
    epp_buf_t out = {0};
    CHECK_INT_EQ(epp_json_serialize(root, &out), 0);
    CHECK_MEM_EQ(out.data, out.len, b.data, b.len);
    epp_buf_free(&out);
    epp_json_doc_destroy(doc);
    epp_buf_free(&b);
}

static void test_long_escaped_strings(void)
{
    /* yajl decodes escaped strings into a buffer that grows past its allocation pool here, and
     * its state stack grows with the nesting; both paths must keep the text intact. */
    epp_buf_t b = {0}, want = {0};
    for (int i = 0; i < 100; i++)
        epp_buf_append_str(&b, "[");
    epp_buf_append_char(&b, '"');
    for (int i = 0; i < 3000; i++) {
        epp_buf_append_str(&b, "\\u00e9\\n\\ud83d\\ude00");
        epp_buf_append_str(&want, "\xc3\xa9\n\xf0\x9f\x98\x80");
    }
    epp_buf_append_char(&b, '"');
    for (int i = 0; i < 100; i++)
        epp_buf_append_str(&b, "]");
    epp_json_doc_t *doc = NULL;
    epp_json_error_t err;
    CHECK_INT_EQ(epp_json_parse(b.data, b.len, NULL, &doc, &err), 0);
    const epp_json_value_t *v = epp_json_root(doc);
    while (v->type == EPP_JSON_ARRAY)
        v = v->u.arr.items[0];
    CHECK_INT_EQ(v->type, EPP_JSON_STRING);
    CHECK_MEM_EQ(v->u.s.text, v->u.s.len, want.data, want.len);
    epp_json_doc_destroy(doc);
    epp_buf_free(&b);
    epp_buf_free(&want);
}

static void test_write_string(void)
{
    epp_buf_t b = {0};
    CHECK_INT_EQ(epp_json_write_string(&b, "a\"b\\c\n\t\r\b\f\x01\x1f/\x7f\xc3\xa9", 16), 0);
    CHECK_STR_EQ(b.data, "\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001f/\x7f\xc3\xa9\"");
    epp_buf_reset(&b);
    CHECK_INT_EQ(epp_json_write_string(&b, "", 0), 0);
    CHECK_STR_EQ(b.data, "\"\"");
    epp_buf_reset(&b);
    /* A string with escapes survives a parse/serialise round trip byte for byte. */
    CHECK_INT_EQ(epp_json_write_string(&b, "x\ny\"z", 5), 0);
    char *out = roundtrip(b.data);
    CHECK_STR_EQ(out, b.data);
    free(out);
    epp_buf_free(&b);
}

/* epp_json_write_string() against a byte-at-a-time reference, with every kind of byte at every
 * position around the eight-byte words it scans. */
static void test_write_string_positions(void)
{
    static const unsigned char specials[] = {0x00, 0x01, 0x08, 0x0a, 0x1f, '"',  '\\',
                                             0x20, 0x21, 0x5b, 0x7f, 0x80, 0xc3, 0xff};
    char in[40], want[300];
    for (size_t len = 0; len <= sizeof in; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (size_t k = 0; k < sizeof specials; k++) {
                for (size_t i = 0; i < len; i++)
                    in[i] = (char)('a' + i % 26);
                in[pos] = (char)specials[k];
                if (pos + 9 < len)
                    in[pos + 9] = '"';
                size_t w = 0;
                want[w++] = '"';
                for (size_t i = 0; i < len; i++) {
                    unsigned char c = (unsigned char)in[i];
                    if (c == '"' || c == '\\') {
                        want[w++] = '\\';
                        want[w++] = (char)c;
                    } else if (c < 0x20) {
                        const char *named = c == '\b'   ? "b"
                                            : c == '\f' ? "f"
                                            : c == '\n' ? "n"
                                            : c == '\r' ? "r"
                                            : c == '\t' ? "t"
                                                        : NULL;
                        w += named ? (size_t)snprintf(want + w, 8, "\\%s", named)
                                   : (size_t)snprintf(want + w, 8, "\\u%04x", c);
                    } else {
                        want[w++] = (char)c;
                    }
                }
                want[w++] = '"';
                epp_buf_t out = {0};
                CHECK_INT_EQ(epp_json_write_string(&out, in, len), 0);
                CHECK_MEM_EQ(out.data, out.len, want, w);
                epp_buf_free(&out);
            }
        }
    }
}

/* epp_json_compact_size() is the length epp_json_serialize() writes, escapes included; raw_len
 * is the container's source text. */
/* epp_grow (epp_buf.h): room for one more item, doubling from the first capacity, the items
 * kept; nothing changes while there is room. */
static void test_grow(void)
{
    const size_t most = (size_t)3 * 64; /* 3 doubled six times: the first past 100 */
    int64_t *v = NULL;
    size_t cap = 0;
    for (size_t n = 0; n < 100; n++) {
        CHECK_INT_EQ(epp_grow(&v, &cap, n, sizeof *v, 3), 0);
        CHECK(cap > n && (n >= 3 || cap == 3) && cap <= most);
        v[n] = (int64_t)n * 7;
    }
    CHECK_INT_EQ(cap, most);
    int64_t *same = v;
    CHECK_INT_EQ(epp_grow(&v, &cap, 150, sizeof *v, 3), 0);
    CHECK(v == same && cap == most);
    for (size_t n = 0; n < 100; n++)
        CHECK_INT_EQ(v[n], (int64_t)n * 7);
    free(v);
}

static void test_compact_size(void)
{
    static const char *docs[] = {
        "null",
        "true",
        "false",
        "-12.5e3",
        "\"\"",
        "\"a\\\"b\\\\c\\n\\u0001\\u001f\\u007f\"",
        "\"\\u00e9\\ud83d\\ude00 \\/\"",
        "[]",
        "{}",
        "[1, [2, [3]], {\"k\": []}]",
        "{\"a\\nb\": {\"x\": \"y\", \"n\": 12345678901234567890}, \"\": null}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        epp_json_doc_t *doc = NULL;
        CHECK_INT_EQ(epp_json_parse(docs[i], strlen(docs[i]), NULL, &doc, NULL), 0);
        epp_buf_t out = {0};
        CHECK_INT_EQ(epp_json_serialize(epp_json_root(doc), &out), 0);
        if (epp_json_compact_size(epp_json_root(doc)) != out.len)
            fprintf(stderr, "doc %zu: %.*s\n", i, (int)out.len, out.data);
        CHECK_INT_EQ((int)epp_json_compact_size(epp_json_root(doc)), (int)out.len);
        /* The source text of a container bounds its compact form. */
        const epp_json_value_t *root = epp_json_root(doc);
        if (root->type == EPP_JSON_ARRAY || root->type == EPP_JSON_OBJECT)
            CHECK(root->raw_len == strlen(docs[i]) && root->raw_len >= out.len);
        epp_buf_free(&out);
        epp_json_doc_destroy(doc);
    }
}

int main(void)
{
    EPP_RUN(test_numbers_exact);
    EPP_RUN(test_tree_shape);
    EPP_RUN(test_nul_rejected);
    EPP_RUN(test_invalid_utf8_rejected);
    EPP_RUN(test_surrogates);
    EPP_RUN(test_syntax_errors);
    EPP_RUN(test_depth_limit);
    EPP_RUN(test_size_limit);
    EPP_RUN(test_large_document);
    EPP_RUN(test_long_escaped_strings);
    EPP_RUN(test_write_string);
    EPP_RUN(test_write_string_positions);
    EPP_RUN(test_compact_size);
    EPP_RUN(test_grow);
    return EPP_TEST_RESULT();
}
