/* The cache of decoded user bitmaps (analytics_service/analytics_ucache.c) on its own: pins are
 * the entries of the range, ids are listed as a Postgres array, a row is served only for its
 * id and cardinality, rows a snapshot no longer holds leave, a new generation or a reset empties
 * the cache without freeing what a request still holds (ASan checks that in the sanitizer
 * stage), the budget holds by evicting the least recently pinned entries, and minute rows
 * are kept packed, as stored. The answers
 * these serve are tested against Postgres in analytics.users_exact. */
#include <stdio.h>
#include <string.h>

#include "epp_error.h"
#include "epp_test.h"
#include "analytics_ucache.h"

#define HOUR 3600000000LL

static roaring_bitmap_t *users(uint32_t lo, uint32_t n)
{
    roaring_bitmap_t *r = roaring_bitmap_create();
    roaring_bitmap_add_range(r, lo, (uint64_t)lo + n);
    return r;
}

/* One request that pins nothing and decodes hour rows ids[i] (bucket i hours, users
 * [i*10, i*10+5)). */
static void fill(analytics_ucache_t *c, const int64_t *ids, int n, const char *gen)
{
    analytics_uc_req_t r = {0};
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_DAY, 0, HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_check(c, &r, gen), 1);
    for (int i = 0; i < n; i++)
        CHECK_INT_EQ(analytics_ucache_add(c, &r, ANALYTICS_UC_HOUR, ids[i], ids[i] * HOUR, 5,
                                          users((uint32_t)ids[i] * 10, 5)),
                     0);
    analytics_ucache_release(c, &r, 1);
}

/* Pins the hour entries of [0, to) for r and checks the ids it lists. */
static void pin_hours(analytics_ucache_t *c, analytics_uc_req_t *r, int64_t to, epp_buf_t *ids,
                      const char *want)
{
    CHECK_INT_EQ(analytics_ucache_pin(c, r, ANALYTICS_UC_HOUR, 0, to), 0);
    CHECK_INT_EQ(analytics_ucache_ids(r, ANALYTICS_UC_HOUR, ids), 0);
    CHECK_STR_EQ(ids->data, want);
}

static void test_pin_get_release(void)
{
    analytics_ucache_t *c = analytics_ucache_create(1 << 20, NULL);
    const int64_t ids[] = {3, 1, 2, 7};
    fill(c, ids, 4, "g1");

    analytics_uc_req_t r = {0};
    epp_buf_t b = {0};
    /* Hours 1 and 2, and 7 from a second span: listed in id order whatever the pin order. */
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_HOUR, 7 * HOUR, 8 * HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_HOUR, 1 * HOUR, 3 * HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_DAY, 0, 1000 * HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_ids(&r, ANALYTICS_UC_HOUR, &b), 0);
    CHECK_STR_EQ(b.data, "{1,2,7}");
    CHECK_INT_EQ(analytics_ucache_ids(&r, ANALYTICS_UC_DAY, &b), 0);
    CHECK_STR_EQ(b.data, "{}");
    CHECK_INT_EQ(analytics_ucache_check(c, &r, "g1"), 1);
    const roaring_bitmap_t *x = analytics_ucache_get(&r, ANALYTICS_UC_HOUR, 2, 5);
    CHECK(x != NULL && roaring_bitmap_contains(x, 20) && !roaring_bitmap_contains(x, 25));
    CHECK(analytics_ucache_get(&r, ANALYTICS_UC_HOUR, 7, 6) == NULL); /* another cardinality */
    CHECK(analytics_ucache_get(&r, ANALYTICS_UC_HOUR, 3, 5) == NULL); /* not pinned */
    CHECK(analytics_ucache_get(&r, ANALYTICS_UC_DAY, 1, 5) == NULL);  /* another level */
    CHECK(analytics_ucache_get(&r, ANALYTICS_UC_HOUR, 1, 5) != NULL);
    /* 7 was pinned but not returned: gone from that snapshot, so it leaves the cache. */
    analytics_ucache_release(c, &r, 1);

    pin_hours(c, &r, 1000 * HOUR, &b, "{1,2,3}");
    analytics_ucache_release(c, &r, 0); /* a failed statement drops nothing */
    pin_hours(c, &r, 1000 * HOUR, &b, "{1,2,3}");
    analytics_ucache_release(c, &r, 0);
    epp_buf_free(&b);
    analytics_ucache_destroy(c);
}

static void test_generation(void)
{
    analytics_ucache_t *c = analytics_ucache_create(1 << 20, NULL);
    const int64_t ids[] = {1, 2};
    fill(c, ids, 2, "g1");

    /* Request a pins under g1; request b sees g2 first and empties the cache; a's pins stay
     * readable until a releases them, and a must run again. */
    analytics_uc_req_t a = {0}, b = {0};
    epp_buf_t s = {0};
    CHECK_INT_EQ(analytics_ucache_pin(c, &a, ANALYTICS_UC_HOUR, 0, 10 * HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_pin(c, &b, ANALYTICS_UC_HOUR, 5 * HOUR, 10 * HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_check(c, &b, "g2"), 1); /* b pinned nothing */
    CHECK_INT_EQ(analytics_ucache_add(c, &b, ANALYTICS_UC_HOUR, 1, 6 * HOUR, 3, users(0, 3)), 0);
    analytics_ucache_release(c, &b, 1);
    CHECK(analytics_ucache_get(&a, ANALYTICS_UC_HOUR, 1, 5) != NULL);
    /* a's answer reports g2 too (it ran after the change): its pins are of g1. */
    CHECK_INT_EQ(analytics_ucache_check(c, &a, "g2"), 0);
    analytics_ucache_release(c, &a, 0);

    /* What is cached now is b's row of g2, not a's of g1. */
    pin_hours(c, &a, 10 * HOUR, &s, "{1}");
    CHECK_INT_EQ(analytics_ucache_check(c, &a, "g2"), 1);
    CHECK(analytics_ucache_get(&a, ANALYTICS_UC_HOUR, 1, 5) == NULL);
    const roaring_bitmap_t *x = analytics_ucache_get(&a, ANALYTICS_UC_HOUR, 1, 3);
    CHECK(x != NULL && roaring_bitmap_get_cardinality(x) == 3);
    analytics_ucache_reset(c); /* while a holds its pin */
    CHECK(roaring_bitmap_get_cardinality(x) == 3);
    analytics_ucache_release(c, &a, 1);
    pin_hours(c, &a, 10 * HOUR, &s, "{}");
    analytics_ucache_release(c, &a, 0);
    epp_buf_free(&s);
    analytics_ucache_destroy(c);
}

static void test_budget(void)
{
    /* Room for a few dozen small bitmaps: 200 rows decoded one request at a time. */
    analytics_ucache_t *c = analytics_ucache_create(8192, NULL);
    for (int64_t i = 0; i < 200; i++) {
        const int64_t id[] = {i};
        fill(c, id, 1, "g");
    }
    analytics_uc_req_t r = {0};
    epp_buf_t s = {0};
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_HOUR, 0, 1000 * HOUR), 0);
    CHECK(r.npins > 0 && r.npins < 200);
    /* The most recent ones stayed. */
    CHECK(analytics_ucache_get(&r, ANALYTICS_UC_HOUR, 199, 5) != NULL);
    CHECK(analytics_ucache_get(&r, ANALYTICS_UC_HOUR, 0, 5) == NULL);
    analytics_ucache_release(c, &r, 0);
    epp_buf_free(&s);
    analytics_ucache_destroy(c);

    /* Budget 0: no cache; everything still works and frees what it is handed. */
    CHECK(analytics_ucache_create(0, NULL) == NULL);
    CHECK_INT_EQ(analytics_ucache_pin(NULL, &r, ANALYTICS_UC_HOUR, 0, HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_check(NULL, &r, "g"), 1);
    CHECK_INT_EQ(analytics_ucache_add(NULL, &r, ANALYTICS_UC_DAY, 1, 0, 1, users(0, 1)), 0);
    analytics_ucache_release(NULL, &r, 1);
}

static void test_uids(void)
{
    analytics_ucache_t *c = analytics_ucache_create(1 << 20, NULL);
    analytics_uc_req_t r = {0};
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_DAY, 0, HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_check(c, &r, "g1"), 1);
    analytics_uc_user_t u[3] = {{"alice", 5, 7}, {"bob", 3, -1}, {"al", 2, 9}};
    analytics_ucache_put_uids(c, &r, u, 3);
    analytics_uc_user_t q[4] = {{"alice", 5, 0}, {"bob", 3, 0}, {"al", 2, 0}, {"alic", 4, 0}};
    CHECK_INT_EQ(analytics_ucache_uids(c, &r, q, 4), 0);
    CHECK(q[0].uid == 7 && q[1].uid == -1 && q[2].uid == 9 && q[3].uid == -1);
    analytics_ucache_release(c, &r, 1);

    /* Many names: the table grows, and past a quarter of the budget starts again. */
    char names[20000][12];
    analytics_uc_user_t many[20000];
    for (int i = 0; i < 20000; i++) {
        snprintf(names[i], sizeof names[i], "u%d", i);
        many[i] = (analytics_uc_user_t){names[i], (int)strlen(names[i]), i};
    }
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_DAY, 0, HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_check(c, &r, "g1"), 1);
    analytics_ucache_put_uids(c, &r, many, 20000);
    CHECK_INT_EQ(analytics_ucache_uids(c, &r, many, 20000), 0);
    int hits = 0, wrong = 0;
    for (int i = 0; i < 20000; i++) {
        hits += many[i].uid >= 0;
        wrong += many[i].uid >= 0 && many[i].uid != i;
    }
    CHECK(hits > 1000 && hits < 20000); /* 1 MB / 4 holds some, not all */
    CHECK_INT_EQ(wrong, 0);

    /* Another generation: what r read belongs to the old one. */
    analytics_uc_req_t other = {0};
    CHECK_INT_EQ(analytics_ucache_check(c, &other, "g2"), 1);
    CHECK_INT_EQ(analytics_ucache_uids(c, &r, q, 1), EPP_EAGAIN);
    analytics_ucache_put_uids(c, &r, u, 1); /* dropped: r is of the old generation */
    CHECK_INT_EQ(analytics_ucache_uids(c, &other, q, 1), 0);
    CHECK(q[0].uid == -1);
    analytics_ucache_release(c, &r, 0);
    analytics_ucache_release(c, &other, 0);
    analytics_ucache_destroy(c);
}

/* Minute rows are kept as stored (a copy: the caller's buffer may go), served only for their id
 * and cardinality, beside hour rows of the same ids, and leave when a snapshot no longer holds
 * them, as the decoded levels do. */
static void test_packed_minutes(void)
{
    analytics_ucache_t *c = analytics_ucache_create(1 << 20, NULL);
    analytics_uc_req_t r = {0};
    char row[] = "EPM1 an hour of minutes";
    CHECK_INT_EQ(analytics_ucache_check(c, &r, "g1"), 1);
    CHECK_INT_EQ(analytics_ucache_add_packed(c, &r, 5, 2 * HOUR, 40, row, sizeof row), 0);
    CHECK_INT_EQ(analytics_ucache_add_packed(c, &r, 6, 3 * HOUR, 41, row, 4), 0);
    CHECK_INT_EQ(analytics_ucache_add(c, &r, ANALYTICS_UC_HOUR, 5, 2 * HOUR, 5, users(0, 5)), 0);
    analytics_ucache_release(c, &r, 1);
    memset(row, 'x', sizeof row);

    epp_buf_t b = {0};
    size_t len = 99;
    /* The hours overlapping a minute span: only hour 2's row. */
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_MINUTE, 2 * HOUR, 3 * HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_check(c, &r, "g1"), 1);
    CHECK_INT_EQ(analytics_ucache_ids(&r, ANALYTICS_UC_MINUTE, &b), 0);
    CHECK_STR_EQ(b.data, "{5}");
    CHECK_INT_EQ(analytics_ucache_ids(&r, ANALYTICS_UC_HOUR, &b), 0);
    CHECK_STR_EQ(b.data, "{}");
    CHECK(analytics_ucache_get_packed(&r, 5, 39, &len) == NULL); /* another cardinality */
    CHECK(len == 0);
    CHECK(analytics_ucache_get_packed(&r, 6, 41, &len) == NULL); /* not pinned */
    const unsigned char *got = analytics_ucache_get_packed(&r, 5, 40, &len);
    CHECK(got != NULL && len == sizeof row && memcmp(got, "EPM1 an hour of minutes", len) == 0);
    CHECK(analytics_ucache_get(&r, ANALYTICS_UC_HOUR, 5, 5) == NULL); /* the hour level's 5 */
    analytics_ucache_release(c, &r, 1);

    /* Hours 2 and 3 pinned, the snapshot returns only hour 3's row: hour 2's was merged. */
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_MINUTE, 2 * HOUR, 4 * HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_check(c, &r, "g1"), 1);
    CHECK(analytics_ucache_get_packed(&r, 6, 41, &len) != NULL && len == 4);
    analytics_ucache_release(c, &r, 1);
    CHECK_INT_EQ(analytics_ucache_pin(c, &r, ANALYTICS_UC_MINUTE, 0, 100 * HOUR), 0);
    CHECK_INT_EQ(analytics_ucache_ids(&r, ANALYTICS_UC_MINUTE, &b), 0);
    CHECK_STR_EQ(b.data, "{6}");
    analytics_ucache_release(c, &r, 0);
    epp_buf_free(&b);
    analytics_ucache_destroy(c);
}

int main(void)
{
    EPP_RUN(test_pin_get_release);
    EPP_RUN(test_generation);
    EPP_RUN(test_budget);
    EPP_RUN(test_uids);
    EPP_RUN(test_packed_minutes);
    return EPP_TEST_RESULT();
}
