/* The event generator shared by epp-send and epp-load: every event it makes passes the
 * ingestion validation (epp_event_parse), markers and ids land where they should, and the URL
 * rule accepts base and full URLs. */
#include <stdlib.h>
#include <string.h>

#include "epp_error.h"
#include "epp_event.h"
#include "epp_json.h"
#include "epp_test.h"
#include "epp_time.h"
#include "send_evgen.h"

static void test_events_valid(void)
{
    epp_evgen_t g;
    char err[128];
    CHECK_INT_EQ(epp_evgen_init(&g, NULL, "user-", 30, "t\"1", 7, err, sizeof(err)), 0);
    CHECK_INT_EQ(g.n_names, 8);
    epp_buf_t b = {0};
    int64_t now = epp_time_now_us();
    for (uint64_t i = 0; i < 2000; i++) {
        epp_buf_reset(&b);
        const char *id = i % 2 ? "0193a000-0000-7000-8000-000000000001" : NULL;
        CHECK_INT_EQ(epp_evgen_event(&g, i, id, i % 3 ? now : 0, &b), 0);
        epp_event_t ev;
        epp_event_error_t e;
        epp_event_init(&ev);
        int rc = epp_event_parse(b.data, b.len, EPP_EVENT_FROM_CLIENT, now, &ev, &e);
        if (rc != 0)
            fprintf(stderr, "invalid: %s: %s\n", b.data, e.message);
        CHECK_INT_EQ(rc, 0);
        char want_user[32];
        snprintf(want_user, sizeof(want_user), "user-%d", (int)(i % 30));
        CHECK_STR_EQ(ev.user_id, want_user);
        CHECK_INT_EQ(ev.event_id_generated, id ? 0 : 1);
        /* The marker is in metadata, escaped correctly. */
        epp_json_doc_t *doc = NULL;
        CHECK_INT_EQ(epp_json_parse(ev.metadata, ev.metadata_len, NULL, &doc, NULL), 0);
        const epp_json_value_t *m = epp_json_get(epp_json_root(doc), "epp_test");
        CHECK(m && m->type == EPP_JSON_STRING);
        CHECK_STR_EQ(m->u.s.text, "t\"1");
        epp_json_doc_destroy(doc);
        epp_event_clear(&ev);
    }
    epp_buf_free(&b);
    epp_evgen_free(&g);
}

static void test_names_and_errors(void)
{
    epp_evgen_t g;
    char err[128];
    CHECK_INT_EQ(epp_evgen_init(&g, "a,,b", "u", 1, NULL, 1, err, sizeof(err)), EPP_EINVAL);
    epp_evgen_free(&g);
    CHECK_INT_EQ(epp_evgen_init(&g, "only", "u", 0, NULL, 1, err, sizeof(err)), EPP_EINVAL);
    CHECK_INT_EQ(epp_evgen_init(&g, "only", "u", 1, "", 1, err, sizeof(err)), 0);
    CHECK(g.marker == NULL);
    epp_buf_t b = {0};
    CHECK_INT_EQ(epp_evgen_event(&g, 5, NULL, 0, &b), 0);
    CHECK(strstr(b.data, "\"event_name\":\"only\"") != NULL);
    CHECK(strstr(b.data, "\"user_id\":\"u0\"") != NULL);
    CHECK(strstr(b.data, "epp_test") == NULL);
    epp_buf_free(&b);
    epp_evgen_free(&g);
    epp_evgen_free(NULL);
}

static void check_url(const char *in, int batch, const char *want)
{
    char *got = epp_evgen_resolve_url(in, batch);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "resolve(%s, %d) = %s, want %s\n", in, batch, got, want);
    CHECK(strcmp(got, want) == 0);
    free(got);
}

static void test_url_rule(void)
{
    check_url("http://localhost:8001", 0, "http://localhost:8001/events");
    check_url("http://localhost:8001/", 0, "http://localhost:8001/events");
    check_url("http://localhost:8001/events", 0, "http://localhost:8001/events");
    check_url("http://localhost:8001/events/", 1, "http://localhost:8001/events/batch");
    check_url("http://localhost:8001/events/batch", 0, "http://localhost:8001/events");
    check_url("http://localhost:8001/events/batch", 1, "http://localhost:8001/events/batch");
    check_url("http://lb/ingest", 1, "http://lb/ingest/events/batch");
}

int main(void)
{
    EPP_RUN(test_events_valid);
    EPP_RUN(test_names_and_errors);
    EPP_RUN(test_url_rule);
    return EPP_TEST_RESULT();
}
