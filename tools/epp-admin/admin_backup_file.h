/* backup_file: the backup file format of epp-admin, written and read as a stream.
 *
 * A backup holds rows of public.events, one per line, in one of two formats:
 *  - NDJSON: {"event_id":"...","user_id":"...","event_name":"...","timestamp":"<RFC 3339>",
 *    "processed_at":"<RFC 3339>","metadata":{...}} -- metadata exactly as jsonb printed it, so
 *    number text is kept;
 *  - CSV (RFC 4180, a header line event_id,user_id,event_name,timestamp,processed_at,metadata),
 *    which Postgres' COPY ... (FORMAT csv, HEADER true) reads back directly.
 * Files whose name ends in ".gz" are gzip-compressed (streamed through zlib, so a backup never
 * has to fit in memory; the one-shot epp_gzip API is for bounded request bodies). Reading
 * accepts plain and gzip files alike.
 *
 * A writer writes to FILE.partial and renames it to FILE only in backup_writer_finish() after
 * an fsync, so a FILE that exists is complete. The summary checksum is a CRC-32 (zlib's) of the
 * uncompressed content -- the same value the gzip trailer carries -- so `gzip -dc FILE | ...`
 * can be checked against it without epp-admin.
 *
 * One thread at a time per object. */
#ifndef EPP_BACKUP_FILE_H
#define EPP_BACKUP_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { BACKUP_NDJSON, BACKUP_CSV } backup_format_t;

typedef struct backup_writer backup_writer_t;

/* One row, as text (borrowed for the duration of the call). Times are epoch microseconds. */
typedef struct {
    const char *event_id;
    const char *user_id;
    const char *event_name;
    const char *metadata; /* JSON object text */
    int64_t timestamp_us;
    int64_t processed_at_us;
} backup_row_t;

/* Parses "ndjson" or "csv". 0 or EPP_EINVAL. */
int backup_format_parse(const char *s, backup_format_t *out);

/* Opens path.partial for writing. NULL with a message in err on failure. */
backup_writer_t *backup_writer_create(const char *path, backup_format_t format, char *err,
                                      size_t errsz);
/* Appends one row. 0 or EPP_EIO / EPP_ENOMEM. */
int backup_writer_row(backup_writer_t *w, const backup_row_t *row);
/* Completes the file: flushes, fsyncs, renames path.partial to path. Reports what was written.
 * 0 or EPP_EIO with a message. The writer must still be destroyed. */
int backup_writer_finish(backup_writer_t *w, uint64_t *rows, uint64_t *bytes, uint32_t *crc,
                         char *err, size_t errsz);
/* Frees the writer; an unfinished file's .partial is removed. Accepts NULL. */
void backup_writer_destroy(backup_writer_t *w);

/* The format of a backup file: from its name (.csv / .csv.gz; .ndjson / .ndjson.gz / .jsonl)
 * or, failing that, its first byte ('{' NDJSON, else CSV). 0 or EPP_EIO. */
int backup_file_detect(const char *path, backup_format_t *out);

#endif
