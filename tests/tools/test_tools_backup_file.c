/* epp-admin's backup file writer: NDJSON and CSV encodings of awkward values, gzip by file
 * name, the summary's byte count and CRC-32, the .partial-then-rename contract, and format
 * detection. (Round trips through Postgres are in test_tools_stack.py.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "admin_backup_file.h"
#include "epp_buf.h"
#include "epp_json.h"
#include "epp_test.h"

static char dir[64];

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* Reads a plain or gzip file whole into buf. */
static void slurp(const char *path, epp_buf_t *buf)
{
    gzFile gz = gzopen(path, "rb");
    char chunk[4096];
    int n;
    epp_buf_reset(buf);
    while (gz && (n = gzread(gz, chunk, sizeof(chunk))) > 0)
        epp_buf_append(buf, chunk, (size_t)n);
    if (gz)
        gzclose(gz);
}

static const backup_row_t ROW = {
    .event_id = "0193a000-0000-7000-8000-000000000001",
    .user_id = "comma,\"quote\" back\\slash \xc3\xbc",
    .event_name = "line\nbreak",
    .metadata = "{\"s\": \"a,b\\\"c\\nd\", \"n\": 12345678901234567890}",
    .timestamp_us = 1795768305123000LL,
    .processed_at_us = 1795768305123456LL,
};

static void test_ndjson_gz(void)
{
    char path[128], partial[160];
    path_of(path, sizeof(path), "b.ndjson.gz");
    snprintf(partial, sizeof(partial), "%s.partial", path);
    char err[256];
    backup_writer_t *w = backup_writer_create(path, BACKUP_NDJSON, err, sizeof(err));
    CHECK(w != NULL);
    CHECK_INT_EQ(backup_writer_row(w, &ROW), 0);
    CHECK_INT_EQ(backup_writer_row(w, &ROW), 0);
    CHECK(access(partial, F_OK) == 0);
    CHECK(access(path, F_OK) != 0); /* not visible before finish */
    uint64_t rows = 0, bytes = 0;
    uint32_t crc = 0;
    CHECK_INT_EQ(backup_writer_finish(w, &rows, &bytes, &crc, err, sizeof(err)), 0);
    backup_writer_destroy(w);
    CHECK(access(partial, F_OK) != 0);
    CHECK_INT_EQ(rows, 2);
    epp_buf_t b = {0};
    slurp(path, &b);
    CHECK_INT_EQ(b.len, bytes);
    CHECK_INT_EQ(crc32(0, (const Bytef *)b.data, (uInt)b.len), crc);
    /* The file really is gzip. */
    FILE *f = fopen(path, "rb");
    unsigned char magic[2] = {0, 0};
    CHECK(f && fread(magic, 1, 2, f) == 2);
    fclose(f);
    CHECK(magic[0] == 0x1f && magic[1] == 0x8b);
    /* Each line is a JSON object with the values intact. */
    char *nl = memchr(b.data, '\n', b.len);
    CHECK(nl != NULL);
    epp_json_doc_t *doc = NULL;
    CHECK_INT_EQ(epp_json_parse(b.data, (size_t)(nl - b.data), NULL, &doc, NULL), 0);
    const epp_json_value_t *root = epp_json_root(doc);
    CHECK_STR_EQ(epp_json_get(root, "user_id")->u.s.text, ROW.user_id);
    CHECK_STR_EQ(epp_json_get(root, "event_name")->u.s.text, ROW.event_name);
    CHECK_STR_EQ(epp_json_get(root, "timestamp")->u.s.text, "2026-11-27T08:31:45.123Z");
    CHECK_STR_EQ(epp_json_get(root, "processed_at")->u.s.text, "2026-11-27T08:31:45.123456Z");
    const epp_json_value_t *md = epp_json_get(root, "metadata");
    CHECK(md && md->type == EPP_JSON_OBJECT);
    CHECK_STR_EQ(epp_json_get(md, "n")->u.s.text, "12345678901234567890");
    epp_json_doc_destroy(doc);
    backup_format_t fmt;
    CHECK_INT_EQ(backup_file_detect(path, &fmt), 0);
    CHECK_INT_EQ(fmt, BACKUP_NDJSON);
    epp_buf_free(&b);
    unlink(path);
}

static void test_csv_plain(void)
{
    char path[128], other[128];
    path_of(path, sizeof(path), "b.csv");
    char err[256];
    backup_writer_t *w = backup_writer_create(path, BACKUP_CSV, err, sizeof(err));
    CHECK(w != NULL);
    backup_row_t plain = ROW;
    plain.user_id = "simple";
    plain.event_name = "";
    CHECK_INT_EQ(backup_writer_row(w, &ROW), 0);
    CHECK_INT_EQ(backup_writer_row(w, &plain), 0);
    uint64_t rows, bytes;
    uint32_t crc;
    CHECK_INT_EQ(backup_writer_finish(w, &rows, &bytes, &crc, err, sizeof(err)), 0);
    backup_writer_destroy(w);
    epp_buf_t b = {0};
    slurp(path, &b);
    const char *want =
        "event_id,user_id,event_name,timestamp,processed_at,metadata\n"
        "0193a000-0000-7000-8000-000000000001,\"comma,\"\"quote\"\" back\\slash \xc3\xbc\","
        "\"line\nbreak\",2026-11-27T08:31:45.123Z,2026-11-27T08:31:45.123456Z,"
        "\"{\"\"s\"\": \"\"a,b\\\"\"c\\nd\"\", \"\"n\"\": 12345678901234567890}\"\n"
        "0193a000-0000-7000-8000-000000000001,simple,\"\",2026-11-27T08:31:45.123Z,"
        "2026-11-27T08:31:45.123456Z,\"{\"\"s\"\": \"\"a,b\\\"\"c\\nd\"\", \"\"n\"\": "
        "12345678901234567890}\"\n";
    CHECK_STR_EQ(b.data, want);
    CHECK_INT_EQ(rows, 2);
    CHECK_INT_EQ(bytes, strlen(want));
    backup_format_t fmt;
    CHECK_INT_EQ(backup_file_detect(path, &fmt), 0);
    CHECK_INT_EQ(fmt, BACKUP_CSV);
    /* Detection by content when the name says nothing. */
    path_of(other, sizeof(other), "noext");
    CHECK_INT_EQ(rename(path, other), 0);
    CHECK_INT_EQ(backup_file_detect(other, &fmt), 0);
    CHECK_INT_EQ(fmt, BACKUP_CSV);
    unlink(other);
    epp_buf_free(&b);
}

static void test_abandoned(void)
{
    char path[128], partial[160];
    path_of(path, sizeof(path), "gone.ndjson");
    snprintf(partial, sizeof(partial), "%s.partial", path);
    char err[256];
    backup_writer_t *w = backup_writer_create(path, BACKUP_NDJSON, err, sizeof(err));
    CHECK(w != NULL);
    CHECK_INT_EQ(backup_writer_row(w, &ROW), 0);
    backup_writer_destroy(w); /* no finish: nothing is left behind */
    CHECK(access(partial, F_OK) != 0);
    CHECK(access(path, F_OK) != 0);
    backup_writer_destroy(NULL);
    CHECK(backup_writer_create("/nonexistent-dir/x.ndjson", BACKUP_NDJSON, err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "/nonexistent-dir/x.ndjson.partial") != NULL);
    backup_format_t fmt;
    CHECK_INT_EQ(backup_format_parse("csv", &fmt), 0);
    CHECK_INT_EQ(fmt, BACKUP_CSV);
    CHECK(backup_format_parse("xml", &fmt) != 0);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/epp-backup-test-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    EPP_RUN(test_ndjson_gz);
    EPP_RUN(test_csv_plain);
    EPP_RUN(test_abandoned);
    rmdir(dir);
    return EPP_TEST_RESULT();
}
