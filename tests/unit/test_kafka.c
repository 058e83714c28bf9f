/* Unit tests for epp_kafka: configuration building, error mapping, and the reachability check
 * against an in-process mock cluster and against nothing at all. */
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "epp_error.h"
#include "epp_kafka.h"
#include "epp_log.h"
#include "epp_test.h"

static void check_conf(rd_kafka_conf_t *conf, const char *key, const char *want)
{
    char val[128];
    size_t len = sizeof(val);
    CHECK(rd_kafka_conf_get(conf, key, val, &len) == RD_KAFKA_CONF_OK);
    CHECK_STR_EQ(val, want);
}

static int keep_linger(const char *key)
{
    return strcmp(key, "linger.ms") == 0;
}

/* Properties in order, then the pass-through list, which wins. */
static void test_conf_create(void)
{
    char err[256] = "";
    const epp_kafka_prop_t props[] = {
        EPP_KAFKA_PROP("bootstrap.servers", "127.0.0.1:1"),
        EPP_KAFKA_PROP_INT("linger.ms", 7),
        EPP_KAFKA_PROP("client.id", "mine"),
        EPP_KAFKA_PROP("acks", "all"),
    };
    const epp_kafka_passthrough_t pass = {" client.id=a=b , acks=1,", "TEST_CONFIG", NULL};
    rd_kafka_conf_t *conf = epp_kafka_conf_create(props, 4, &pass, err, sizeof(err));
    CHECK(conf != NULL);
    check_conf(conf, "bootstrap.servers", "127.0.0.1:1");
    check_conf(conf, "linger.ms", "7");
    check_conf(conf, "client.id", "a=b"); /* only the first '=' splits; the operator wins */
    check_conf(conf, "acks", "1");
    rd_kafka_conf_destroy(conf);

    /* keep() picks the items taken; the others are not even looked at. */
    const epp_kafka_passthrough_t some = {"linger.ms=3,no.such.setting=1", "TEST_CONFIG",
                                          keep_linger};
    conf = epp_kafka_conf_create(NULL, 0, &some, err, sizeof(err));
    CHECK(conf != NULL);
    check_conf(conf, "linger.ms", "3");
    rd_kafka_conf_destroy(conf);

    const epp_kafka_passthrough_t empty = {"", "TEST_CONFIG", NULL};
    conf = epp_kafka_conf_create(NULL, 0, &empty, err, sizeof(err));
    CHECK(conf != NULL);
    rd_kafka_conf_destroy(conf);

    CHECK(epp_kafka_is_connection_key("security.protocol"));
    CHECK(epp_kafka_is_connection_key("sasl.password"));
    CHECK(epp_kafka_is_connection_key("ssl.ca.location"));
    CHECK(epp_kafka_is_connection_key("enable.ssl.certificate.verification"));
    CHECK(!epp_kafka_is_connection_key("fetch.min.bytes"));
    CHECK(!epp_kafka_is_connection_key("client.id"));
}

static void test_conf_errors(void)
{
    char err[256] = "";
    const epp_kafka_prop_t bad_key[] = {EPP_KAFKA_PROP("no.such.setting", "1")};
    CHECK(epp_kafka_conf_create(bad_key, 1, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no.such.setting") != NULL);

    const epp_kafka_prop_t bad_value[] = {EPP_KAFKA_PROP("linger.ms", "abc")};
    err[0] = '\0';
    CHECK(epp_kafka_conf_create(bad_value, 1, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "linger.ms") != NULL);

    const char *const bad_lists[] = {"novalue", "=1", "acks=all,bogus=1"};
    for (size_t i = 0; i < 3; i++) {
        const epp_kafka_passthrough_t pass = {bad_lists[i], "TEST_CONFIG", NULL};
        err[0] = '\0';
        CHECK(epp_kafka_conf_create(NULL, 0, &pass, err, sizeof(err)) == NULL);
        CHECK(strncmp(err, "TEST_CONFIG: ", 13) == 0);
    }
    CHECK(strstr(err, "bogus") != NULL);
}

static void test_err_map(void)
{
    CHECK_INT_EQ(epp_kafka_err_to_epp(RD_KAFKA_RESP_ERR_NO_ERROR), 0);
    CHECK_INT_EQ(epp_kafka_err_to_epp(RD_KAFKA_RESP_ERR__QUEUE_FULL), EPP_EAGAIN);
    CHECK_INT_EQ(epp_kafka_err_to_epp(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), EPP_ETIMEDOUT);
    CHECK_INT_EQ(epp_kafka_err_to_epp(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION), EPP_EUNAVAIL);
    CHECK_INT_EQ(epp_kafka_err_to_epp(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), EPP_ETOOBIG);
    CHECK_INT_EQ(epp_kafka_err_to_epp(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC), EPP_ENOTFOUND);
    CHECK_INT_EQ(epp_kafka_err_to_epp(RD_KAFKA_RESP_ERR_INVALID_RECORD), EPP_EINVAL);
    /* Anything unlisted is retriable: losing data to a wrong "permanent" is worse. */
    CHECK(epp_error_is_retriable(epp_kafka_err_to_epp(RD_KAFKA_RESP_ERR_UNKNOWN)));
}

static rd_kafka_t *new_producer(const char *bootstrap)
{
    char err[256];
    const epp_kafka_prop_t props[] = {EPP_KAFKA_PROP("bootstrap.servers", bootstrap)};
    rd_kafka_conf_t *conf = epp_kafka_conf_create(props, bootstrap ? 1 : 0, NULL, err, sizeof(err));
    if (conf == NULL)
        return NULL;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static void test_ping_mock(void)
{
    rd_kafka_t *owner = new_producer(NULL);
    CHECK(owner != NULL);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, 1);
    CHECK(mc != NULL);
    CHECK(rd_kafka_mock_topic_create(mc, "pingtopic", 5, 1) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_t *rk = new_producer(rd_kafka_mock_cluster_bootstraps(mc));
    CHECK(rk != NULL);
    char reason[256] = "";
    CHECK_INT_EQ(epp_kafka_ping(rk, NULL, 5000, reason, sizeof(reason)), 0);
    CHECK_INT_EQ(epp_kafka_ping(rk, "pingtopic", 5000, reason, sizeof(reason)), 5);

    /* A broker that is down: the check reports unavailable within its timeout. */
    CHECK(rd_kafka_mock_broker_set_down(mc, 1) == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_INT_EQ(epp_kafka_ping(rk, NULL, 500, reason, sizeof(reason)), EPP_EUNAVAIL);
    CHECK(strstr(reason, "unreachable") != NULL);
    CHECK(rd_kafka_mock_broker_set_up(mc, 1) == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_INT_EQ(epp_kafka_ping(rk, NULL, 5000, reason, sizeof(reason)), 0);

    rd_kafka_destroy(rk);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
}

static void test_ping_nothing(void)
{
    /* Port 1 on loopback: connection refused at once. */
    rd_kafka_t *rk = new_producer("127.0.0.1:1");
    CHECK(rk != NULL);
    char reason[256] = "";
    CHECK_INT_EQ(epp_kafka_ping(rk, NULL, 300, reason, sizeof(reason)), EPP_EUNAVAIL);
    CHECK(reason[0] != '\0');
    rd_kafka_destroy(rk);
}

int main(void)
{
    epp_log_init("test_kafka", EPP_LOG_OFF, 1);
    EPP_RUN(test_conf_create);
    EPP_RUN(test_conf_errors);
    EPP_RUN(test_err_map);
    EPP_RUN(test_ping_mock);
    EPP_RUN(test_ping_nothing);
    return EPP_TEST_RESULT();
}
