#include "epp_pgcopy.h"

#include <string.h>

#include "epp_error.h"
#include "epp_time.h"

void epp_pgcopy_put_be16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

void epp_pgcopy_put_be32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

void epp_pgcopy_put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

uint32_t epp_pgcopy_get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t epp_pgcopy_get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

int epp_pgcopy_array_header(epp_buf_t *out, uint32_t elem_oid, size_t n)
{
    unsigned char h[20];
    epp_pgcopy_put_be32(h, 1);     /* dimensions */
    epp_pgcopy_put_be32(h + 4, 0); /* no NULLs */
    epp_pgcopy_put_be32(h + 8, elem_oid);
    epp_pgcopy_put_be32(h + 12, (uint32_t)n);
    epp_pgcopy_put_be32(h + 16, 1); /* lower bound */
    return epp_buf_append(out, h, sizeof h);
}

int epp_pgcopy_array_elem(epp_buf_t *out, const void *data, size_t len)
{
    unsigned char l[4];
    epp_pgcopy_put_be32(l, (uint32_t)len);
    int rc = epp_buf_append(out, l, 4);
    return rc == 0 ? epp_buf_append(out, data, len) : rc;
}

const char *epp_pgcopy_options(epp_pgcopy_format_t fmt)
{
    return fmt == EPP_PGCOPY_BINARY ? "(FORMAT binary)" : "(FORMAT text)";
}

int epp_pgcopy_begin(epp_buf_t *out, epp_pgcopy_format_t fmt)
{
    if (fmt != EPP_PGCOPY_BINARY)
        return 0;
    /* Signature "PGCOPY\n\377\r\n\0", flags (int32 0), header extension length (int32 0). */
    static const unsigned char hdr[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n',
                                          0,   0,   0,   0,   0,   0,   0,    0,    0};
    return epp_buf_append(out, hdr, sizeof hdr);
}

int epp_pgcopy_end(epp_buf_t *out, epp_pgcopy_format_t fmt)
{
    if (fmt != EPP_PGCOPY_BINARY)
        return 0;
    static const unsigned char trailer[2] = {0xff, 0xff};
    return epp_buf_append(out, trailer, sizeof trailer);
}

static void put_field(unsigned char **p, const void *data, size_t len)
{
    epp_pgcopy_put_be32(*p, (uint32_t)len);
    memcpy(*p + 4, data, len);
    *p += 4 + len;
}

static int row_binary(epp_buf_t *out, const epp_pgcopy_row_t *r)
{
    size_t need = 2 + (4 + 16) + (4 + r->user_id_len) + (4 + r->event_name_len) +
                  (4 + 1 + r->metadata_len) + (4 + 8);
    int rc = epp_buf_reserve(out, need);
    if (rc != 0)
        return rc;
    unsigned char *start = (unsigned char *)out->data + out->len;
    unsigned char *p = start;
    epp_pgcopy_put_be16(p, 5);
    p += 2;
    put_field(&p, r->event_id.b, 16);
    put_field(&p, r->user_id, r->user_id_len);
    put_field(&p, r->event_name, r->event_name_len);
    /* jsonb's binary form: version 1, then the text. */
    epp_pgcopy_put_be32(p, (uint32_t)(1 + r->metadata_len));
    p[4] = 1;
    memcpy(p + 5, r->metadata, r->metadata_len);
    p += 5 + r->metadata_len;
    epp_pgcopy_put_be32(p, 8);
    epp_pgcopy_put_be64(p + 4, (uint64_t)(r->timestamp_us - EPP_PGCOPY_PG_EPOCH_US));
    p += 12;
    out->len += (size_t)(p - start);
    out->data[out->len] = '\0';
    return 0;
}

/* Appends s escaped for the text format. Only these four bytes need escaping: the rest is data
 * (the server takes "\N" as NULL only when it is the whole field, and a lone backslash is
 * doubled here anyway). */
static int append_text_escaped(epp_buf_t *out, const char *s, size_t len)
{
    int rc = epp_buf_reserve(out, len * 2 + 1);
    if (rc != 0)
        return rc;
    char *p = out->data + out->len;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        switch (c) {
        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;
        case '\t':
            *p++ = '\\';
            *p++ = 't';
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        case '\r':
            *p++ = '\\';
            *p++ = 'r';
            break;
        default:
            *p++ = c;
        }
    }
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static int row_text(epp_buf_t *out, const epp_pgcopy_row_t *r)
{
    char id[EPP_UUID_STRLEN + 1];
    char ts[EPP_TIME_BUFSZ];
    epp_uuid_format(&r->event_id, id);
    size_t tslen = epp_time_format(r->timestamp_us, ts);
    int rc = epp_buf_append(out, id, EPP_UUID_STRLEN);
    if (rc == 0)
        rc = epp_buf_append_char(out, '\t');
    if (rc == 0)
        rc = append_text_escaped(out, r->user_id, r->user_id_len);
    if (rc == 0)
        rc = epp_buf_append_char(out, '\t');
    if (rc == 0)
        rc = append_text_escaped(out, r->event_name, r->event_name_len);
    if (rc == 0)
        rc = epp_buf_append_char(out, '\t');
    if (rc == 0)
        rc = append_text_escaped(out, r->metadata, r->metadata_len);
    if (rc == 0)
        rc = epp_buf_append_char(out, '\t');
    if (rc == 0)
        rc = epp_buf_append(out, ts, tslen);
    if (rc == 0)
        rc = epp_buf_append_char(out, '\n');
    return rc;
}

int epp_pgcopy_row(epp_buf_t *out, epp_pgcopy_format_t fmt, const epp_pgcopy_row_t *row)
{
    return fmt == EPP_PGCOPY_BINARY ? row_binary(out, row) : row_text(out, row);
}
