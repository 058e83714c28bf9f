/* epp_pgcopy: encodes event rows for Postgres COPY ... FROM STDIN, in the binary format
 * (FORMAT binary) or the text format, for the column list
 *     (event_id, user_id, event_name, metadata, "timestamp")
 * of public.events (and of the consumer's staging table, which has the same columns).
 *
 * Binary COPY sends uuid as 16 bytes, timestamptz as int64 microseconds since 2000-01-01 and
 * jsonb as a version byte (1) plus the JSON text, so the server parses neither UUIDs nor
 * timestamps. The text format escapes backslash, tab, newline and carriage return.
 *
 * The functions only append to an epp_buf_t; they keep no state. Thread-safe. */
#ifndef EPP_PGCOPY_H
#define EPP_PGCOPY_H

#include <stddef.h>
#include <stdint.h>

#include "epp_buf.h"
#include "epp_uuid.h"

typedef struct {
    epp_uuid_t event_id;
    const char *user_id; /* UTF-8, not necessarily NUL-terminated */
    size_t user_id_len;
    const char *event_name;
    size_t event_name_len;
    const char *metadata; /* JSON object text */
    size_t metadata_len;
    int64_t timestamp_us; /* Unix epoch microseconds, UTC */
} epp_pgcopy_row_t;

typedef enum {
    EPP_PGCOPY_BINARY,
    EPP_PGCOPY_TEXT,
} epp_pgcopy_format_t;

/* Microseconds between the Unix epoch and Postgres' epoch (2000-01-01). */
#define EPP_PGCOPY_PG_EPOCH_US 946684800000000LL

/* The COPY options for a format: "(FORMAT binary)" or "(FORMAT text)". Static string. */
const char *epp_pgcopy_options(epp_pgcopy_format_t fmt);

/* Appends what the format needs before the first row (the binary signature and header; nothing
 * for text). 0 or EPP_ENOMEM. */
int epp_pgcopy_begin(epp_buf_t *out, epp_pgcopy_format_t fmt);
/* Appends one row. 0 or EPP_ENOMEM. */
int epp_pgcopy_row(epp_buf_t *out, epp_pgcopy_format_t fmt, const epp_pgcopy_row_t *row);
/* Appends what the format needs after the last row (the binary trailer). 0 or EPP_ENOMEM. */
int epp_pgcopy_end(epp_buf_t *out, epp_pgcopy_format_t fmt);

/* Big-endian helpers, also used for binary query parameters. */
void epp_pgcopy_put_be16(unsigned char *p, uint16_t v);
void epp_pgcopy_put_be32(unsigned char *p, uint32_t v);
void epp_pgcopy_put_be64(unsigned char *p, uint64_t v);
uint32_t epp_pgcopy_get_be32(const unsigned char *p);
uint64_t epp_pgcopy_get_be64(const unsigned char *p);

/* Type OIDs of the binary array parameters the writers send. */
#define EPP_PG_OID_BYTEA       17
#define EPP_PG_OID_INT8        20
#define EPP_PG_OID_TEXT        25
#define EPP_PG_OID_TIMESTAMPTZ 1184

/* Appends the array_recv header of a one-dimensional array of n elements of type elem_oid
 * without NULLs (a binary array parameter); each element follows as its int32 length and
 * bytes. 0 or EPP_ENOMEM. */
int epp_pgcopy_array_header(epp_buf_t *out, uint32_t elem_oid, size_t n);
/* Appends one element of such an array: its length, then len bytes. 0 or EPP_ENOMEM. */
int epp_pgcopy_array_elem(epp_buf_t *out, const void *data, size_t len);

#endif
