#include "admin_backup_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "epp_buf.h"
#include "epp_error.h"
#include "epp_json.h"
#include "epp_time.h"

struct backup_writer {
    char *path;
    char *partial;
    int fd;
    gzFile gz;
    backup_format_t format;
    epp_buf_t line;
    uint64_t rows, bytes;
    uLong crc;
    bool finished;
};

int backup_format_parse(const char *s, backup_format_t *out)
{
    if (s && strcmp(s, "ndjson") == 0)
        *out = BACKUP_NDJSON;
    else if (s && strcmp(s, "csv") == 0)
        *out = BACKUP_CSV;
    else
        return EPP_EINVAL;
    return 0;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

void backup_writer_destroy(backup_writer_t *w)
{
    if (!w)
        return;
    if (w->gz)
        gzclose(w->gz);
    if (w->fd >= 0)
        close(w->fd);
    if (!w->finished && w->partial)
        unlink(w->partial);
    free(w->path);
    free(w->partial);
    epp_buf_free(&w->line);
    free(w);
}

static int put(backup_writer_t *w, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (gzwrite(w->gz, data, (unsigned)len) != (int)len)
        return EPP_EIO;
    w->crc = crc32(w->crc, data, (uInt)len);
    w->bytes += len;
    return 0;
}

backup_writer_t *backup_writer_create(const char *path, backup_format_t format, char *err,
                                      size_t errsz)
{
    backup_writer_t *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    w->fd = -1;
    w->format = format;
    w->crc = crc32(0L, Z_NULL, 0);
    w->path = strdup(path);
    w->partial = malloc(strlen(path) + sizeof(".partial"));
    if (!w->path || !w->partial) {
        snprintf(err, errsz, "out of memory");
        backup_writer_destroy(w);
        return NULL;
    }
    sprintf(w->partial, "%s.partial", path);
    w->fd = open(w->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int gzfd = w->fd >= 0 ? dup(w->fd) : -1;
    /* "T": transparent (plain) writing through the same code path when not compressing. */
    w->gz = gzfd >= 0 ? gzdopen(gzfd, has_suffix(path, ".gz") ? "wb6" : "wbT") : NULL;
    if (!w->gz) {
        snprintf(err, errsz, "cannot write %s: %s", w->partial, strerror(errno));
        if (gzfd >= 0)
            close(gzfd);
        backup_writer_destroy(w);
        return NULL;
    }
    gzbuffer(w->gz, 256 * 1024);
    if (format == BACKUP_CSV) {
        static const char header[] =
            "event_id,user_id,event_name,timestamp,processed_at,metadata\n";
        if (put(w, header, sizeof(header) - 1) != 0) {
            snprintf(err, errsz, "cannot write %s", w->partial);
            backup_writer_destroy(w);
            return NULL;
        }
    }
    return w;
}

/* A CSV field: quoted when it holds a comma, quote, CR or LF (quotes doubled), or is empty
 * (an unquoted empty field would read back as NULL). */
static int csv_field(epp_buf_t *b, const char *s, bool always_quote)
{
    bool quote = always_quote || *s == '\0' || strpbrk(s, ",\"\r\n") != NULL;
    if (!quote)
        return epp_buf_append_str(b, s);
    int rc = epp_buf_append_char(b, '"');
    for (const char *p = s; rc == 0 && *p; p++) {
        if (*p == '"')
            rc = epp_buf_append_char(b, '"');
        if (rc == 0)
            rc = epp_buf_append_char(b, *p);
    }
    return rc == 0 ? epp_buf_append_char(b, '"') : rc;
}

int backup_writer_row(backup_writer_t *w, const backup_row_t *row)
{
    char ts[EPP_TIME_BUFSZ], pa[EPP_TIME_BUFSZ];
    epp_time_format(row->timestamp_us, ts);
    epp_time_format(row->processed_at_us, pa);
    epp_buf_t *b = &w->line;
    epp_buf_reset(b);
    int rc;
    if (w->format == BACKUP_NDJSON) {
        rc = epp_buf_printf(b, "{\"event_id\":\"%s\",\"user_id\":", row->event_id);
        if (rc == 0)
            rc = epp_json_write_string(b, row->user_id, strlen(row->user_id));
        if (rc == 0)
            rc = epp_buf_append_str(b, ",\"event_name\":");
        if (rc == 0)
            rc = epp_json_write_string(b, row->event_name, strlen(row->event_name));
        if (rc == 0)
            rc = epp_buf_printf(
                b, ",\"timestamp\":\"%s\",\"processed_at\":\"%s\",\"metadata\":", ts, pa);
        if (rc == 0)
            rc = epp_buf_append_str(b, row->metadata);
        if (rc == 0)
            rc = epp_buf_append_str(b, "}\n");
    } else {
        rc = csv_field(b, row->event_id, false);
        if (rc == 0)
            rc = epp_buf_append_char(b, ',');
        if (rc == 0)
            rc = csv_field(b, row->user_id, false);
        if (rc == 0)
            rc = epp_buf_append_char(b, ',');
        if (rc == 0)
            rc = csv_field(b, row->event_name, false);
        if (rc == 0)
            rc = epp_buf_printf(b, ",%s,%s,", ts, pa);
        if (rc == 0)
            rc = csv_field(b, row->metadata, true);
        if (rc == 0)
            rc = epp_buf_append_char(b, '\n');
    }
    if (rc != 0)
        return rc;
    rc = put(w, b->data, b->len);
    if (rc == 0)
        w->rows++;
    return rc;
}

int backup_writer_finish(backup_writer_t *w, uint64_t *rows, uint64_t *bytes, uint32_t *crc,
                         char *err, size_t errsz)
{
    int zrc = gzclose(w->gz);
    w->gz = NULL;
    if (zrc != Z_OK) {
        snprintf(err, errsz, "writing %s failed", w->partial);
        return EPP_EIO;
    }
    if (fsync(w->fd) != 0 || close(w->fd) != 0) {
        w->fd = -1;
        snprintf(err, errsz, "writing %s failed: %s", w->partial, strerror(errno));
        return EPP_EIO;
    }
    w->fd = -1;
    if (rename(w->partial, w->path) != 0) {
        snprintf(err, errsz, "cannot rename %s to %s: %s", w->partial, w->path, strerror(errno));
        return EPP_EIO;
    }
    w->finished = true;
    /* Make the rename itself durable. */
    char *dircopy = strdup(w->path);
    if (dircopy) {
        int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dircopy);
    }
    *rows = w->rows;
    *bytes = w->bytes;
    *crc = (uint32_t)w->crc;
    return 0;
}

int backup_file_detect(const char *path, backup_format_t *out)
{
    if (has_suffix(path, ".csv") || has_suffix(path, ".csv.gz")) {
        *out = BACKUP_CSV;
        return 0;
    }
    if (has_suffix(path, ".ndjson") || has_suffix(path, ".ndjson.gz") ||
        has_suffix(path, ".jsonl") || has_suffix(path, ".jsonl.gz")) {
        *out = BACKUP_NDJSON;
        return 0;
    }
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return EPP_EIO;
    int c = gzgetc(gz);
    gzclose(gz);
    *out = c == '{' ? BACKUP_NDJSON : BACKUP_CSV;
    return 0;
}
