/* Unit tests of the consumer's pure modules: rollup aggregation in C, COPY encoding, the
 * decoder's treatment of in-batch duplicates and bad messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer_batch.h"
#include "consumer_dlq.h"
#include "consumer_msg.h"
#include "consumer_positions.h"
#include "consumer_rollup.h"
#include "epp_uidcache.h"
#include "epp_error.h"
#include "epp_pg.h"
#include "epp_pgcopy.h"
#include "epp_test.h"
#include "epp_trace.h"
#include "epp_users.h"

#define MIN_US  (60LL * 1000000)
#define HOUR_US (60 * MIN_US)
#define DAY_US  (24 * HOUR_US)

static void test_buckets(void)
{
    CHECK_INT_EQ(consumer_rollup_bucket(CONSUMER_ROLLUP_MINUTE, 0), 0);
    CHECK_INT_EQ(consumer_rollup_bucket(CONSUMER_ROLLUP_MINUTE, MIN_US - 1), 0);
    CHECK_INT_EQ(consumer_rollup_bucket(CONSUMER_ROLLUP_MINUTE, MIN_US), MIN_US);
    /* Before 1970, floor not truncation. */
    CHECK_INT_EQ(consumer_rollup_bucket(CONSUMER_ROLLUP_MINUTE, -1), -MIN_US);
    CHECK_INT_EQ(consumer_rollup_bucket(CONSUMER_ROLLUP_HOUR, HOUR_US + 5), HOUR_US);
    CHECK_INT_EQ(consumer_rollup_bucket(CONSUMER_ROLLUP_DAY, 3 * DAY_US - 1), 2 * DAY_US);
    CHECK_INT_EQ(consumer_rollup_bucket(CONSUMER_ROLLUP_DAY, -DAY_US), -DAY_US);
    /* The bitmaps' buckets are the rollups' buckets. */
    for (int64_t ts = -3 * DAY_US - 7; ts < 3 * DAY_US; ts += 3 * MIN_US + 13) {
        CHECK_INT_EQ(epp_users_bucket(EPP_USERS_MINUTE, ts),
                     consumer_rollup_bucket(CONSUMER_ROLLUP_MINUTE, ts));
        CHECK_INT_EQ(epp_users_bucket(EPP_USERS_HOUR, ts),
                     consumer_rollup_bucket(CONSUMER_ROLLUP_HOUR, ts));
        CHECK_INT_EQ(epp_users_bucket(EPP_USERS_DAY, ts),
                     consumer_rollup_bucket(CONSUMER_ROLLUP_DAY, ts));
    }
}

static void test_rollup_counts(void)
{
    consumer_rollup_t *r = consumer_rollup_create();
    CHECK(r != NULL);
    /* 5000 events over 3 names, 2 days: forces the table to grow. */
    for (int i = 0; i < 5000; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i % 3);
        /* Keys are borrowed: keep them alive in static storage for the test. */
        static char names[5000][16];
        memcpy(names[i], name, sizeof name);
        int64_t ts = (int64_t)(i % 2) * DAY_US + (int64_t)(i % 7) * MIN_US;
        CHECK_INT_EQ(consumer_rollup_add(r, ts, names[i], strlen(names[i])), 0);
    }
    /* minute: 2 days x 7 minutes x 3 names (all combinations occur since 2, 7, 3 are coprime
     * with the cycle of 42); hour and day: 2 x 3. */
    CHECK_INT_EQ(consumer_rollup_size(r), 42 + 6 + 6);
    int64_t total = 0;
    for (int d = 0; d < 2; d++)
        for (int n = 0; n < 3; n++) {
            char name[4];
            snprintf(name, sizeof name, "n%d", n);
            total += consumer_rollup_get(r, CONSUMER_ROLLUP_DAY, d * DAY_US, name, 2);
        }
    CHECK_INT_EQ(total, 5000);
    epp_buf_t bk = {0}, keys = {0}, ns = {0};
    size_t n = 0;
    CHECK_INT_EQ(consumer_rollup_arrays(r, CONSUMER_ROLLUP_MINUTE, &bk, &keys, &ns, &n), 0);
    CHECK_INT_EQ(n, 42);
    /* array_recv header: ndim 1, no nulls, element type, size, lower bound 1. */
    CHECK_INT_EQ(bk.len, 20 + 42 * 12);
    CHECK_INT_EQ(ns.len, 20 + 42 * 12);
    CHECK((unsigned char)bk.data[11] == (1184 & 0xff) && (unsigned char)bk.data[15] == 42);
    /* Sorted by bucket, then key bytes: minute 0 of day 0 holds n0, n1, n2 in order. */
    CHECK(memcmp(keys.data + 20, "\0\0\0\2n0", 6) == 0);
    CHECK(memcmp(keys.data + 26, "\0\0\0\2n1", 6) == 0);
    CHECK_INT_EQ(consumer_rollup_arrays(r, CONSUMER_ROLLUP_DAY, &bk, &keys, &ns, &n), 0);
    CHECK_INT_EQ(n, 6);
    consumer_rollup_reset(r);
    CHECK_INT_EQ(consumer_rollup_size(r), 0);
    CHECK_INT_EQ(consumer_rollup_arrays(r, CONSUMER_ROLLUP_DAY, &bk, &keys, &ns, &n), 0);
    CHECK_INT_EQ(n, 0);
    epp_buf_free(&bk);
    epp_buf_free(&keys);
    epp_buf_free(&ns);
    consumer_rollup_destroy(r);
}

static void test_pgcopy_text_escapes(void)
{
    epp_pgcopy_row_t row;
    memset(&row, 0, sizeof row);
    row.user_id = "a\tb";
    row.user_id_len = 3;
    row.event_name = "x\\y";
    row.event_name_len = 3;
    row.metadata = "{\"k\":\"l\\nm\"}";
    row.metadata_len = strlen(row.metadata);
    row.timestamp_us = 1764232305123000LL;
    epp_buf_t out = {0};
    CHECK_INT_EQ(epp_pgcopy_row(&out, EPP_PGCOPY_TEXT, &row), 0);
    CHECK_STR_EQ(out.data, "00000000-0000-0000-0000-000000000000\ta\\tb\tx\\\\y\t"
                           "{\"k\":\"l\\\\nm\"}\t2025-11-27T08:31:45.123Z\n");
    epp_buf_reset(&out);
    CHECK_INT_EQ(epp_pgcopy_row(&out, EPP_PGCOPY_BINARY, &row), 0);
    /* 2 + (4+16) + (4+3) + (4+3) + (4+1+12) + (4+8) */
    CHECK_INT_EQ(out.len, 2 + 20 + 7 + 7 + 17 + 12);
    epp_buf_free(&out);
}

static void test_sqlstate_classes(void)
{
    CHECK_INT_EQ(epp_pg_classify_sqlstate("08006"), EPP_EIO);
    CHECK_INT_EQ(epp_pg_classify_sqlstate("57P01"), EPP_EUNAVAIL);
    CHECK_INT_EQ(epp_pg_classify_sqlstate("57P03"), EPP_EUNAVAIL);
    CHECK_INT_EQ(epp_pg_classify_sqlstate("40001"), EPP_EAGAIN);
    CHECK_INT_EQ(epp_pg_classify_sqlstate("40P01"), EPP_EAGAIN);
    CHECK_INT_EQ(epp_pg_classify_sqlstate("53300"), EPP_EUNAVAIL);
    CHECK_INT_EQ(epp_pg_classify_sqlstate("22P05"), EPP_EINVAL);
    CHECK_INT_EQ(epp_pg_classify_sqlstate("23505"), EPP_EINVAL);
    CHECK_INT_EQ(epp_pg_classify_sqlstate(NULL), EPP_EIO);
    epp_pg_error_t e = {.code = EPP_EINVAL, .sqlstate = "22021"};
    CHECK(epp_pg_is_data_error(&e));
    snprintf(e.sqlstate, sizeof e.sqlstate, "23514");
    CHECK(epp_pg_is_data_error(&e));
    e.code = EPP_EAGAIN; /* a row routed under a partition set that changed meanwhile */
    CHECK(!epp_pg_is_data_error(&e));
    e.code = EPP_EINVAL;
    snprintf(e.sqlstate, sizeof e.sqlstate, "42P01");
    CHECK(!epp_pg_is_data_error(&e));
    e.code = EPP_EIO;
    snprintf(e.sqlstate, sizeof e.sqlstate, "08006");
    CHECK(!epp_pg_is_data_error(&e));
    CHECK(!epp_pg_is_data_error(NULL));
}

/* The writer trusts the poll thread's rollups only when they count every row in state OK
 * (b->aggregated): a count of the inserted rows only, or one cut short by a failed allocation,
 * is computed again by the writer. */
static void test_aggregated_flag(void)
{
    consumer_batch_t *b = consumer_batch_create(EPP_PGCOPY_BINARY);
    CHECK(b != NULL);
    b->rows = calloc(3, sizeof *b->rows);
    CHECK(b->rows != NULL);
    b->cap = b->n = 3;
    CHECK_INT_EQ(epp_buf_append(&b->arena, "u1\0click\0", 9), 0);
    for (size_t i = 0; i < 3; i++) {
        consumer_row_t *r = &b->rows[i];
        r->state = i == 2 ? CONSUMER_ROW_BAD : CONSUMER_ROW_OK;
        r->timestamp_us = (int64_t)i * MIN_US;
        r->user_off = 0;
        r->user_len = 2;
        r->name_off = 3;
        r->name_len = 5;
    }
    CHECK(!b->aggregated);
    CHECK_INT_EQ(consumer_batch_aggregate(b, 0), 0);
    CHECK(b->aggregated);
    CHECK_INT_EQ(consumer_rollup_get(b->rollup, CONSUMER_ROLLUP_DAY, 0, "click", 5), 2);
    CHECK_INT_EQ(b->nusers, 1);
    b->rows[0].inserted = 1;
    CHECK_INT_EQ(consumer_batch_aggregate(b, 1), 0);
    CHECK(!b->aggregated);
    CHECK_INT_EQ(consumer_rollup_get(b->rollup, CONSUMER_ROLLUP_DAY, 0, "click", 5), 1);
    CHECK_INT_EQ(consumer_batch_aggregate(b, 0), 0);
    consumer_batch_reset(b);
    CHECK(!b->aggregated);
    consumer_batch_destroy(b);
}

static void test_decode(void)
{
    epp_event_t ev;
    epp_event_init(&ev);
    epp_event_error_t err;
    const char *good = "{\"event_id\":\"0190b6a0-0000-7000-8000-000000000001\",\"user_id\":\"u1\","
                       "\"event_name\":\"click\",\"timestamp\":\"2026-11-27T08:00:00.000Z\","
                       "\"received_at\":\"2026-11-27T08:00:00.000Z\",\"metadata\":{\"a\":1}}";
    CHECK_INT_EQ(consumer_decode(good, strlen(good), &ev, &err), 0);
    CHECK_INT_EQ(ev.user_id_len, 2);
    CHECK(consumer_decode("", 0, &ev, &err) == EPP_EINVAL);
    CHECK_STR_EQ(err.code, "invalid_json");
    CHECK(consumer_decode("{", 1, &ev, &err) != 0);
    epp_event_clear(&ev);
}

/* A batch span is a new root linked to its messages' producer spans: sampled when one of them
 * is, else by the ratio (0 here). */
static void test_linked_sampling(void)
{
    char err[256] = "";
    epp_tracer_opts_t o = {0};
    o.endpoint = "http://127.0.0.1:9"; /* never contacted: nothing sampled is ended */
    o.service = "test";
    o.sample_ratio = 0.0;
    epp_tracer_t *t = epp_tracer_create(&o, err, sizeof err);
    CHECK(t != NULL);
    epp_trace_ctx_t links[2];
    CHECK_INT_EQ(
        epp_traceparent_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", &links[0]),
        0);
    CHECK_INT_EQ(
        epp_traceparent_parse("00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01", &links[1]),
        0);
    epp_span_t *s = epp_span_start_linked(t, "events process", EPP_SPAN_CONSUMER, links, 1, 0);
    CHECK(s != NULL && !epp_span_sampled(s));
    CHECK(epp_span_ctx(s) != NULL &&
          memcmp(epp_span_ctx(s)->trace_id, links[0].trace_id, 16) != 0); /* a new trace */
    epp_span_end(s, 0);
    s = epp_span_start_linked(t, "events process", EPP_SPAN_CONSUMER, links, 2, 0);
    CHECK(epp_span_sampled(s));
    CHECK(memcmp(epp_span_ctx(s)->trace_id, links[1].trace_id, 16) != 0);
    epp_span_set_status(s, EPP_SPAN_STATUS_ERROR, "test"); /* export fails at destroy */
    epp_span_end(s, 0);
    CHECK(epp_span_start_linked(NULL, "x", EPP_SPAN_CONSUMER, links, 2, 0) == NULL);
    epp_tracer_destroy(t);
}

static void test_uidcache(void)
{
    epp_uidcache_t *c = epp_uidcache_create(3);
    CHECK(c != NULL);
    CHECK_INT_EQ(epp_uidcache_get(c, "u1", 2), -1);
    CHECK_INT_EQ(epp_uidcache_put(c, "u1", 2, 0), 0);
    CHECK_INT_EQ(epp_uidcache_put(c, "u1", 2, 0), 0); /* again: no second entry */
    CHECK_INT_EQ(epp_uidcache_put(c, "u2", 2, 7), 0);
    CHECK_INT_EQ(epp_uidcache_put(c, "u22", 3, 9), 0);
    CHECK_INT_EQ((int64_t)epp_uidcache_size(c), 3);
    CHECK_INT_EQ(epp_uidcache_get(c, "u1", 2), 0);
    CHECK_INT_EQ(epp_uidcache_get(c, "u2", 2), 7);
    CHECK_INT_EQ(epp_uidcache_get(c, "u", 1), -1);
    /* Full: cleared, then the new entry is kept. */
    CHECK_INT_EQ(epp_uidcache_put(c, "u3", 2, 4), 0);
    CHECK_INT_EQ((int64_t)epp_uidcache_size(c), 1);
    CHECK_INT_EQ(epp_uidcache_get(c, "u3", 2), 4);
    CHECK_INT_EQ(epp_uidcache_get(c, "u1", 2), -1);
    epp_uidcache_destroy(c);

    /* Growth past the initial table, every entry still found. */
    c = epp_uidcache_create(100000);
    char key[32];
    for (int i = 0; i < 50000; i++) {
        int n = snprintf(key, sizeof key, "user-%d", i);
        CHECK_INT_EQ(epp_uidcache_put(c, key, (size_t)n, i * 3LL), 0);
    }
    int found = 0;
    for (int i = 0; i < 50000; i++) {
        int n = snprintf(key, sizeof key, "user-%d", i);
        found += epp_uidcache_get(c, key, (size_t)n) == i * 3LL;
    }
    CHECK_INT_EQ(found, 50000);
    CHECK_INT_EQ(epp_uidcache_get(NULL, "x", 1), -1);
    epp_uidcache_destroy(c);
    epp_uidcache_destroy(NULL);
}

/* The stored bitmap format: what epp_users_serialize writes is what sql/031 reads (cookie
 * 12346, no run containers), and reading never trusts the bytes. */
static void test_bitmap_format(void)
{
    roaring_bitmap_t *r = roaring_bitmap_create();
    /* A run (which run_optimize turns into a run container), an array container, a bitset
     * container (more than 4096 in one block of 65536) and the largest uid. */
    roaring_bitmap_add_range(r, 10, 5000);
    for (uint32_t v = 70000; v < 80000; v += 3)
        roaring_bitmap_add(r, v);
    roaring_bitmap_add(r, 4294967295U);
    roaring_bitmap_run_optimize(r);
    epp_buf_t out = {0};
    CHECK_INT_EQ(epp_users_serialize(r, &out), 0);
    CHECK(out.len > 8 && memcmp(out.data, "\x3a\x30\0\0", 4) == 0);
    roaring_bitmap_t *back = epp_users_deserialize(out.data, out.len);
    CHECK(back != NULL && roaring_bitmap_equals(back, r));
    CHECK_INT_EQ((int64_t)roaring_bitmap_get_cardinality(back), 4990 + 3334 + 1);
    roaring_bitmap_free(back);
    /* Truncated, extended, garbage: refused, never read past the length. */
    for (size_t len = 0; len < out.len; len += 1 + len / 3)
        CHECK(epp_users_deserialize(out.data, len) == NULL);
    CHECK(epp_users_deserialize(out.data, out.len + 1) == NULL);
    char junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 37 + 11);
    CHECK(epp_users_deserialize(junk, sizeof junk) == NULL);
    CHECK(epp_users_deserialize(NULL, 0) == NULL);
    /* The empty bitmap. */
    roaring_bitmap_t *empty = roaring_bitmap_create();
    CHECK_INT_EQ(epp_users_serialize(empty, &out), 0);
    CHECK_INT_EQ((int64_t)out.len, 8);
    back = epp_users_deserialize(out.data, out.len);
    CHECK(back != NULL && roaring_bitmap_is_empty(back));
    roaring_bitmap_free(back);
    roaring_bitmap_free(empty);
    roaring_bitmap_free(r);
    epp_buf_free(&out);
}

/* The minute level's packed rows (sql/032): what is packed unpacks the same, a subset of the
 * minutes can be asked for, and every malformed row is refused without reading past its end. */
static void test_minute_packing(void)
{
    roaring_bitmap_t *minutes[EPP_USERS_MINUTES] = {0};
    minutes[0] = roaring_bitmap_create();
    roaring_bitmap_add(minutes[0], 7);
    minutes[17] = roaring_bitmap_create(); /* empty: not stored */
    minutes[59] = roaring_bitmap_create();
    for (uint32_t v = 0; v < 9000; v++) /* a bitset container */
        roaring_bitmap_add(minutes[59], v * 7);
    roaring_bitmap_add(minutes[59], 4294967295U);
    epp_buf_t out = {0}, one = {0};
    int64_t pairs = -1;
    CHECK_INT_EQ(epp_users_pack_minutes(minutes, &out, &one, &pairs), 0);
    CHECK_INT_EQ(pairs, 1 + 9000 + 1);
    CHECK(out.len > 12 && memcmp(out.data, "EPM1", 4) == 0);
    CHECK(out.data[4] == 1 && (unsigned char)out.data[11] == 0x08); /* minutes 0 and 59 */

    roaring_bitmap_t *back[EPP_USERS_MINUTES];
    CHECK_INT_EQ(epp_users_unpack_minutes(out.data, out.len, ~(uint64_t)0, back), 0);
    for (int k = 0; k < EPP_USERS_MINUTES; k++) {
        if (k == 0 || k == 59)
            CHECK(back[k] != NULL && roaring_bitmap_equals(back[k], minutes[k]));
        else
            CHECK(back[k] == NULL);
    }
    epp_users_free_minutes(back);
    CHECK_INT_EQ(epp_users_unpack_minutes(out.data, out.len, (uint64_t)1 << 59, back), 0);
    CHECK(back[0] == NULL && back[59] != NULL);
    epp_users_free_minutes(back);

    /* Truncated or extended, another magic, a mask beyond minute 59 or empty, junk. */
    for (size_t len = 0; len < out.len; len += 1 + len / 5)
        CHECK_INT_EQ(epp_users_unpack_minutes(out.data, len, ~(uint64_t)0, back), EPP_EINVAL);
    CHECK_INT_EQ(epp_users_unpack_minutes(out.data, out.len + 1, ~(uint64_t)0, back), EPP_EINVAL);
    CHECK_INT_EQ(epp_users_unpack_minutes(out.data, out.len - 1, 0, back), EPP_EINVAL);
    char bad[256];
    memcpy(bad, out.data, 40);
    bad[0] = 'X';
    CHECK_INT_EQ(epp_users_unpack_minutes(bad, 40, 0, back), EPP_EINVAL);
    static const char minute60[12] = {'E', 'P', 'M', '1', 0, 0, 0, 0, 0, 0, 0, 0x10};
    static const char no_minute[12] = {'E', 'P', 'M', '1'};
    static const char minute0[12] = {'E', 'P', 'M', '1', 1};
    memcpy(bad, minute60, sizeof minute60);
    CHECK_INT_EQ(epp_users_unpack_minutes(bad, 12, ~(uint64_t)0, back), EPP_EINVAL);
    memcpy(bad, no_minute, sizeof no_minute);
    CHECK_INT_EQ(epp_users_unpack_minutes(bad, 12, ~(uint64_t)0, back), EPP_EINVAL);
    for (size_t i = 12; i < sizeof bad; i++)
        bad[i] = (char)(i * 37 + 11);
    memcpy(bad, minute0, sizeof minute0);
    CHECK_INT_EQ(epp_users_unpack_minutes(bad, sizeof bad, ~(uint64_t)0, back), EPP_EINVAL);
    for (int k = 0; k < EPP_USERS_MINUTES; k++)
        CHECK(back[k] == NULL);

    /* Nothing to store. */
    roaring_bitmap_t *none[EPP_USERS_MINUTES] = {0};
    none[3] = minutes[17];
    CHECK_INT_EQ(epp_users_pack_minutes(none, &out, &one, &pairs), 0);
    CHECK_INT_EQ(pairs, 0);
    CHECK_INT_EQ(epp_users_row_bucket(EPP_USERS_MINUTE, 3 * HOUR_US + 17 * MIN_US), 3 * HOUR_US);
    CHECK_INT_EQ(epp_users_row_bucket(EPP_USERS_MINUTE, -MIN_US), -HOUR_US);
    CHECK_INT_EQ(epp_users_row_bucket(EPP_USERS_HOUR, 5 * HOUR_US), 5 * HOUR_US);
    epp_users_free_minutes(minutes);
    epp_buf_free(&out);
    epp_buf_free(&one);
}

/* The minute level's rows packed from sorted (minute, uid) pairs, as the consumer appends them,
 * are byte for byte those packed from the minutes' bitmaps through CRoaring: one pair, array
 * containers under many 16-bit keys, a bitset container (over 4,096 uids under one key) beside
 * an array, the largest uid, pairs given twice. */
static void test_pair_packing(void)
{
    enum { CAP = 20000 };
    epp_users_pair_t *p = malloc(CAP * sizeof *p);
    epp_buf_t a = {0}, b = {0}, one = {0};
    uint64_t x = 12345;
    for (int round = 0; round < 16; round++) {
        int shape = round % 4;
        size_t want = shape == 0 ? 1 : shape == 1 ? 300 : shape == 2 ? 6000 : 19000, n = 0;
        roaring_bitmap_t *minutes[EPP_USERS_MINUTES] = {0};
        for (size_t i = 0; i < want; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            int m = shape == 3 ? (int)(x >> 63) * 59 : (int)((x >> 33) % EPP_USERS_MINUTES);
            uint32_t uid = shape == 3 ? (uint32_t)((x >> 20) % 70000) : (uint32_t)(x >> 24);
            if (i == 0 && shape == 1)
                uid = 4294967295U;
            p[n++] = (epp_users_pair_t){.minute = 7 * HOUR_US + m * MIN_US, .uid = uid};
            if (i % 50 == 7) { /* given twice */
                p[n] = p[n - 1];
                n++;
            }
            if (minutes[m] == NULL)
                minutes[m] = roaring_bitmap_create();
            roaring_bitmap_add(minutes[m], uid);
        }
        epp_users_sort_pairs(p, n);
        int64_t distinct = -1, pairs = -2;
        CHECK_INT_EQ(epp_users_pack_pairs(p, n, &a, &one, &distinct), 0);
        CHECK_INT_EQ(epp_users_pack_minutes(minutes, &b, &one, &pairs), 0);
        CHECK_INT_EQ(distinct, pairs);
        CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
        if (shape == 3) /* a bitset container is there: over 4,096 uids under key 0 */
            CHECK(roaring_bitmap_rank(minutes[0], 65535) > 4096);
        epp_users_free_minutes(minutes);
    }
    free(p);
    epp_buf_free(&a);
    epp_buf_free(&b);
    epp_buf_free(&one);
}

/* Read positions (the writers' gap check): a started partition vouches from its start offset, a
 * message moves the position past it, and an unknown position vouches for nothing before the
 * message -- but for everything after it. */
static void test_positions(void)
{
    consumer_positions_t *ps = consumer_positions_create();
    CHECK(ps != NULL);
    CHECK_INT_EQ(consumer_positions_get(ps, 3), CONSUMER_POS_UNKNOWN);
    CHECK_INT_EQ(consumer_positions_set(ps, 3, 100), 0);
    CHECK_INT_EQ(consumer_positions_advance(ps, 3, 100), 100);
    /* 101 was a transaction marker: the next message's position still says 101. */
    CHECK_INT_EQ(consumer_positions_advance(ps, 3, 102), 101);
    CHECK_INT_EQ(consumer_positions_get(ps, 3), 103);
    /* The log start. */
    CHECK_INT_EQ(consumer_positions_set(ps, 0, -1), 0);
    CHECK_INT_EQ(consumer_positions_advance(ps, 0, 7), -1);
    CHECK_INT_EQ(consumer_positions_advance(ps, 0, 8), 8);
    /* Unknown (revoked, or started without a loaded offset), and never seen. */
    CHECK_INT_EQ(consumer_positions_set(ps, 3, CONSUMER_POS_UNKNOWN), 0);
    CHECK_INT_EQ(consumer_positions_advance(ps, 3, 500), 500);
    CHECK_INT_EQ(consumer_positions_advance(ps, 3, 501), 501);
    CHECK_INT_EQ(consumer_positions_advance(ps, 40, 9), 9);
    CHECK_INT_EQ(consumer_positions_get(ps, 40), 10);
    CHECK_INT_EQ(consumer_positions_set(ps, -1, 5), EPP_EINVAL);
    consumer_positions_destroy(ps);
}

static void check_conf(rd_kafka_conf_t *kc, const char *key, const char *want)
{
    char v[256];
    size_t n = sizeof v;
    CHECK_INT_EQ(rd_kafka_conf_get(kc, key, v, &n), RD_KAFKA_CONF_OK);
    CHECK_STR_EQ(v, want);
}

/* The dead-letter producer connects like the consumer (its security settings, nothing else of
 * KAFKA_CONSUMER_CONFIG) and takes any message the consumer can fetch plus the headers' room. */
static void test_dlq_conf(void)
{
    consumer_conf_t conf;
    memset(&conf, 0, sizeof conf);
    conf.bootstrap = (char *)"127.0.0.1:9";
    conf.dlq_topic = (char *)"t.dlq";
    conf.kafka_consumer_config =
        (char *)"security.protocol=sasl_ssl, sasl.mechanisms=PLAIN,sasl.username=u,"
                "sasl.password=p,enable.ssl.certificate.verification=false,"
                "ssl.endpoint.identification.algorithm=none,fetch.min.bytes=5,client.id=other";
    char err[256];
    rd_kafka_conf_t *kc = consumer_dlq_conf(&conf, err, sizeof err);
    CHECK(kc != NULL);
    check_conf(kc, "security.protocol", "sasl_ssl");
    check_conf(kc, "sasl.mechanisms", "PLAIN");
    check_conf(kc, "sasl.username", "u");
    check_conf(kc, "enable.ssl.certificate.verification", "false");
    check_conf(kc, "ssl.endpoint.identification.algorithm", "none");
    check_conf(kc, "fetch.min.bytes", "1"); /* a consumer setting: not taken */
    check_conf(kc, "client.id", "epp-consumer-dlq");
    check_conf(kc, "acks", "-1");
    /* librdkafka's default receive.message.max.bytes (100,000,000) + 64 KiB. */
    check_conf(kc, "message.max.bytes", "100065536");
    rd_kafka_conf_destroy(kc);

    /* fetch.max.bytes above receive.message.max.bytes: librdkafka raises the latter to
     * fetch.max.bytes + 512 for the consumer. */
    conf.kafka_consumer_config =
        (char *)"receive.message.max.bytes=2000000,fetch.max.bytes=3000000";
    kc = consumer_dlq_conf(&conf, err, sizeof err);
    CHECK(kc != NULL);
    check_conf(kc, "message.max.bytes", "3066048");
    rd_kafka_conf_destroy(kc);

    conf.kafka_consumer_config = (char *)"security.protocol=carrier-pigeon";
    kc = consumer_dlq_conf(&conf, err, sizeof err);
    CHECK(kc == NULL);
    CHECK(strstr(err, "KAFKA_CONSUMER_CONFIG") != NULL);
}

/* The message store: copies keep every field and header; a partition's chunks come back to the
 * store when their messages are gone, so a steady stream reuses the same few. */
static void test_msg_store(void)
{
    consumer_msgs_t *s = consumer_msgs_create();
    CHECK(s != NULL);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
    rd_kafka_header_add(hdrs, "traceparent", -1, "first", -1);
    rd_kafka_header_add(hdrs, "content-type", -1, "application/json", -1);
    rd_kafka_header_add(hdrs, "empty", -1, NULL, 0);
    rd_kafka_header_add(hdrs, "traceparent", -1, "second", -1);
    consumer_msg_t f = {.partition = 3,
                        .offset = 42,
                        .timestamp_ms = 1700000000123,
                        .payload = "{\"a\":1}",
                        .len = 7,
                        .key = "user-1",
                        .key_len = 6};
    consumer_msg_t *m = consumer_msg_new(s, &f, hdrs);
    rd_kafka_headers_destroy(hdrs);
    CHECK(m != NULL);
    CHECK_INT_EQ(m->partition, 3);
    CHECK_INT_EQ(m->offset, 42);
    CHECK_INT_EQ(m->timestamp_ms, 1700000000123);
    CHECK_MEM_EQ(m->payload, m->len, "{\"a\":1}", 7);
    CHECK_MEM_EQ(m->key, m->key_len, "user-1", 6);
    CHECK_INT_EQ(m->nheaders, 4);
    CHECK_MEM_EQ(m->headers[1].name, m->headers[1].name_len, "content-type", 12);
    CHECK(m->headers[2].value == NULL);
    size_t len = 0;
    const char *v = consumer_msg_header(m, "traceparent", &len); /* the last one */
    CHECK_MEM_EQ(v, len, "second", 6);
    CHECK(consumer_msg_header(m, "empty", &len) == NULL);
    CHECK(consumer_msg_header(m, "absent", &len) == NULL);

    /* No payload, no key, no headers. */
    consumer_msg_t none = {.partition = 3, .offset = 43, .timestamp_ms = -1};
    consumer_msg_t *n = consumer_msg_new(s, &none, NULL);
    CHECK(n != NULL && n->payload == NULL && n->key == NULL && n->nheaders == 0);
    CHECK(n->chunk == m->chunk);

    /* A block over a quarter of a chunk is a malloc of its own. */
    static char big[64 * 1024];
    memset(big, 'x', sizeof big);
    consumer_msg_t fb = {.partition = 3, .offset = 44, .payload = big, .len = sizeof big};
    consumer_msg_t *b = consumer_msg_new(s, &fb, NULL);
    CHECK(b != NULL && b->chunk == NULL);
    CHECK_MEM_EQ(b->payload, b->len, big, sizeof big);
    consumer_msg_destroy(b);
    consumer_msg_destroy(m);
    consumer_msg_destroy(n);

    /* A stream over 8 partitions, freed in batches of 5,000 as the consumer does: the chunks in
     * use stay those of about two batches, whatever the number of messages. */
    enum { BATCH = 5000, ROUNDS = 40 };
    static consumer_msg_t *held[BATCH];
    char payload[300];
    memset(payload, 'p', sizeof payload);
    size_t after_first = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < BATCH; i++) {
            consumer_msg_t fi = {.partition = i % 8,
                                 .offset = r * BATCH + i,
                                 .payload = payload,
                                 .len = 200 + (size_t)(i % 100)};
            held[i] = consumer_msg_new(s, &fi, NULL);
            CHECK(held[i] != NULL && held[i]->chunk != NULL);
            CHECK_INT_EQ(held[i]->offset, r * BATCH + i);
        }
        for (int i = 0; i < BATCH; i++)
            consumer_msg_destroy(held[i]);
        if (r == 0)
            after_first = consumer_msgs_chunks(s);
    }
    CHECK(after_first > 0);
    CHECK(consumer_msgs_chunks(s) <= after_first + 8);

    /* Partition numbers beyond the store's slots share chunks, and stay correct. */
    for (int i = 0; i < 100; i++) {
        consumer_msg_t fi = {
            .partition = 4096 * (i % 3) + 1, .offset = i, .payload = payload, .len = 100};
        held[i] = consumer_msg_new(s, &fi, NULL);
        CHECK(held[i] != NULL);
        CHECK_INT_EQ(held[i]->partition, 4096 * (i % 3) + 1);
    }
    for (int i = 0; i < 100; i++)
        consumer_msg_destroy(held[i]);
    consumer_msgs_destroy(s);
}

int main(void)
{
    EPP_RUN(test_buckets);
    EPP_RUN(test_rollup_counts);
    EPP_RUN(test_aggregated_flag);
    EPP_RUN(test_pgcopy_text_escapes);
    EPP_RUN(test_sqlstate_classes);
    EPP_RUN(test_decode);
    EPP_RUN(test_linked_sampling);
    EPP_RUN(test_uidcache);
    EPP_RUN(test_bitmap_format);
    EPP_RUN(test_minute_packing);
    EPP_RUN(test_pair_packing);
    EPP_RUN(test_positions);
    EPP_RUN(test_dlq_conf);
    EPP_RUN(test_msg_store);
    return EPP_TEST_RESULT();
}
