/* bench_users_gen: a synthetic unique-users data set for bench_analytics.sh at a scale where
 * generating the events themselves would take the shared machine for an hour (100M events).
 *
 *   bench_users_gen EVENTS USERS DAYS START_EPOCH_S SEED OUTDIR [FROM_S TO_S]...
 *
 * EVENTS events spread evenly over DAYS days from START (a whole UTC day), each by a user
 * drawn uniformly from USERS (uids 0..USERS-1, user_id "user-<uid>"). Writes, in PostgreSQL COPY
 * text format:
 *   OUTDIR/ids.tsv     user_id, uid             -> public.epp_user_ids
 *   OUTDIR/minute.tsv  bucket, n, bits           -> public.epp_user_bitmap_minute: one row per
 *                      UTC hour (sql/032): bucket the hour, bits its minutes' bitmaps packed, n
 *                      the number of (minute, uid) pairs
 *   OUTDIR/hour.tsv, OUTDIR/day.tsv              -> the hour and day tables (one row per bucket)
 * and, for each FROM_S TO_S pair (whole minutes), prints the exact number of distinct users in
 * [FROM, TO) -- the union of its minutes' sets -- as "expect FROM_S TO_S N", so that the bench
 * can check epp-analytics' answers on data that has no events table behind it.
 *
 * Bitmaps are written with common/epp_users.c, exactly as the consumer writes them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <roaring/roaring.h>

#include "epp_buf.h"
#include "epp_rand.h"
#include "epp_time.h"
#include "epp_users.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
    return epp_rand_next(&rng);
}

#define MINUTE_US (60LL * 1000000)

static FILE *open_level(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.tsv", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        perror(path);
    return f;
}

/* One row: bucket, n, bits (bytea in hex, escaped for COPY text format). */
static void write_row(FILE *f, int64_t bucket_us, uint64_t n, const epp_buf_t *bits)
{
    char ts[64];
    epp_time_format(bucket_us, ts);
    fprintf(f, "%s\t%" PRIu64 "\t\\\\x", ts, n);
    for (size_t k = 0; k < bits->len; k++)
        fprintf(f, "%02x", (unsigned char)bits->data[k]);
    fputc('\n', f);
}

/* The hour or day level: one row per non-empty bucket. */
static int write_level(const char *dir, const char *name, int64_t start_us, int64_t width_us,
                       roaring_bitmap_t **bits, size_t n)
{
    FILE *f = open_level(dir, name);
    if (f == NULL)
        return 1;
    epp_buf_t ser = {0};
    for (size_t i = 0; i < n; i++) {
        if (roaring_bitmap_is_empty(bits[i]))
            continue;
        if (epp_users_serialize(bits[i], &ser) != 0) {
            fprintf(stderr, "out of memory\n");
            epp_buf_free(&ser);
            fclose(f);
            return 1;
        }
        write_row(f, start_us + (int64_t)i * width_us, roaring_bitmap_get_cardinality(bits[i]),
                  &ser);
    }
    epp_buf_free(&ser);
    return fclose(f) != 0;
}

/* The minute level (sql/032): one row per UTC hour holding minutes, its minutes' bitmaps packed
 * as the consumer packs them (epp_users_pack_minutes); minute m starts at start_us + m minutes. */
static int write_minutes(const char *dir, int64_t start_us, roaring_bitmap_t **mins, size_t n)
{
    FILE *f = open_level(dir, "minute");
    if (f == NULL)
        return 1;
    epp_buf_t packed = {0}, one = {0};
    int rc = 0;
    for (size_t m = 0; m < n && rc == 0;) {
        int64_t t = start_us + (int64_t)m * MINUTE_US;
        int64_t hour = epp_users_row_bucket(EPP_USERS_MINUTE, t);
        roaring_bitmap_t *slots[EPP_USERS_MINUTES] = {0};
        for (int k = (int)((t - hour) / MINUTE_US); m < n && k < EPP_USERS_MINUTES; m++, k++)
            slots[k] = mins[m];
        int64_t pairs = 0;
        if (epp_users_pack_minutes(slots, &packed, &one, &pairs) != 0) {
            fprintf(stderr, "out of memory\n");
            rc = 1;
        } else if (pairs > 0) {
            write_row(f, hour, (uint64_t)pairs, &packed);
        }
    }
    epp_buf_free(&packed);
    epp_buf_free(&one);
    return fclose(f) != 0 || rc;
}

/* The ids of users 0..users-1, "user-<uid>" -> uid. 0, or 1 after printing why. */
static int write_ids(const char *dir, int64_t users)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ids.tsv", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    for (int64_t u = 0; u < users; u++)
        fprintf(f, "user-%" PRId64 "\t%" PRId64 "\n", u, u);
    return fclose(f) != 0;
}

static void free_level(roaring_bitmap_t **bits, size_t n)
{
    for (size_t i = 0; bits != NULL && i < n; i++)
        epp_users_free(bits[i]);
    free(bits);
}

int main(int argc, char **argv)
{
    if (argc < 7 || (argc - 7) % 2 != 0) {
        fprintf(stderr, "usage: %s EVENTS USERS DAYS START_EPOCH_S SEED OUTDIR [FROM_S TO_S]...\n",
                argv[0]);
        return 2;
    }
    int64_t events = strtoll(argv[1], NULL, 10), users = strtoll(argv[2], NULL, 10);
    int64_t days = strtoll(argv[3], NULL, 10);
    int64_t start = strtoll(argv[4], NULL, 10) * 1000000;
    rng ^= (uint64_t)strtoll(argv[5], NULL, 10) * 0xbf58476d1ce4e5b9ULL;
    const char *dir = argv[6];
    if (events < 1 || users < 1 || users > EPP_USERS_MAX_UID + 1 || days < 1 ||
        start % (1440 * MINUTE_US) != 0)
        return 2;
    size_t nmin = (size_t)days * 1440, nhour = (size_t)days * 24, nday = (size_t)days;
    roaring_bitmap_t **mins = calloc(nmin, sizeof(roaring_bitmap_t *));
    roaring_bitmap_t **hours = calloc(nhour, sizeof(roaring_bitmap_t *));
    roaring_bitmap_t **dayb = calloc(nday, sizeof(roaring_bitmap_t *));
    /* Each minute's events; a small buffer of uids per minute, added in one call. */
    uint32_t *buf =
        mins && hours && dayb ? malloc(sizeof *buf * (size_t)(events / (int64_t)nmin + 2)) : NULL;
    int rc = 0;
    if (buf == NULL) {
        fprintf(stderr, "out of memory\n");
        rc = 1;
    } else {
        int64_t done = 0;
        for (size_t m = 0; m < nmin; m++) {
            int64_t upto = events * (int64_t)(m + 1) / (int64_t)nmin, k = 0;
            for (; done < upto; done++)
                buf[k++] = (uint32_t)(next_rand() % (uint64_t)users);
            mins[m] = roaring_bitmap_of_ptr((size_t)k, buf);
        }
        for (size_t h = 0; h < nhour; h++)
            hours[h] = roaring_bitmap_or_many(60, (const roaring_bitmap_t **)&mins[h * 60]);
        for (size_t d = 0; d < nday; d++)
            dayb[d] = roaring_bitmap_or_many(24, (const roaring_bitmap_t **)&hours[d * 24]);
    }
    free(buf);
    if (rc == 0)
        rc = write_ids(dir, users) || write_minutes(dir, start, mins, nmin) ||
             write_level(dir, "hour", start, 3600LL * 1000000, hours, nhour) ||
             write_level(dir, "day", start, 86400LL * 1000000, dayb, nday);

    for (int a = 7; rc == 0 && a + 1 < argc; a += 2) {
        int64_t from = strtoll(argv[a], NULL, 10) * 1000000,
                to = strtoll(argv[a + 1], NULL, 10) * 1000000;
        roaring_bitmap_t *u = roaring_bitmap_create();
        for (int64_t t = from; t < to; t += 60LL * 1000000) {
            int64_t m = (t - start) / (60LL * 1000000);
            if (m >= 0 && (size_t)m < nmin)
                roaring_bitmap_or_inplace(u, mins[m]);
        }
        printf("expect %s %s %" PRIu64 "\n", argv[a], argv[a + 1],
               roaring_bitmap_get_cardinality(u));
        roaring_bitmap_free(u);
    }
    free_level(mins, nmin);
    free_level(hours, nhour);
    free_level(dayb, nday);
    return rc;
}
