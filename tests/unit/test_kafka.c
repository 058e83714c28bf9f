/* Unit tests for epp_kafka: configuration building, error mapping, and the reachability check
 * against an in-process mock cluster and against nothing at all. */
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "epp_error.h"
#include "epp_kafka.h"
#include "epp_log.h"
#include "epp_test.h"

static void test_conf_new(void)
{
    char err[256] = "";
    const char *const overrides[] = {"linger.ms=7", "client.id=a=b", NULL};
    rd_kafka_conf_t *conf = epp_kafka_conf_new("127.0.0.1:1", overrides, err, sizeof(err));
    CHECK(conf != NULL);
    char val[64];
    size_t len = sizeof(val);
    CHECK(rd_kafka_conf_get(conf, "bootstrap.servers", val, &len) == RD_KAFKA_CONF_OK);
    CHECK_STR_EQ(val, "127.0.0.1:1");
    len = sizeof(val);
    CHECK(rd_kafka_conf_get(conf, "linger.ms", val, &len) == RD_KAFKA_CONF_OK);
    CHECK_STR_EQ(val, "7");
    len = sizeof(val);
    CHECK(rd_kafka_conf_get(conf, "client.id", val, &len) == RD_KAFKA_CONF_OK);
    CHECK_STR_EQ(val, "a=b"); /* only the first '=' splits */
    rd_kafka_conf_destroy(conf);
}

static void test_conf_errors(void)
{
    char err[256] = "";
    const char *const bad_key[] = {"no.such.setting=1", NULL};
    CHECK(epp_kafka_conf_new(NULL, bad_key, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no.such.setting") != NULL);

    const char *const bad_value[] = {"linger.ms=abc", NULL};
    err[0] = '\0';
    CHECK(epp_kafka_conf_new(NULL, bad_value, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "linger.ms") != NULL);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    CHECK_INT_EQ(epp_kafka_conf_set(conf, "novalue", err, sizeof(err)), EPP_EINVAL);
    CHECK_INT_EQ(epp_kafka_conf_set(conf, "=1", err, sizeof(err)), EPP_EINVAL);
    CHECK_INT_EQ(epp_kafka_conf_set_list(conf, NULL, err, sizeof(err)), 0);
    CHECK_INT_EQ(epp_kafka_conf_set_list(conf, "", err, sizeof(err)), 0);
    CHECK_INT_EQ(epp_kafka_conf_set_list(conf, " linger.ms=3 , acks=all,", err, sizeof(err)), 0);
    char val[64];
    size_t len = sizeof(val);
    CHECK(rd_kafka_conf_get(conf, "linger.ms", val, &len) == RD_KAFKA_CONF_OK);
    CHECK_STR_EQ(val, "3");
    CHECK_INT_EQ(epp_kafka_conf_set_list(conf, "acks=all,bogus=1", err, sizeof(err)), EPP_EINVAL);
    CHECK(strstr(err, "bogus") != NULL);
    rd_kafka_conf_destroy(conf);
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

static rd_kafka_t *new_producer(const char *bootstrap, const char *extra)
{
    char err[256];
    const char *const overrides[] = {extra, NULL};
    rd_kafka_conf_t *conf =
        epp_kafka_conf_new(bootstrap, extra ? overrides : NULL, err, sizeof(err));
    if (conf == NULL)
        return NULL;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static void test_ping_mock(void)
{
    rd_kafka_t *owner = new_producer(NULL, NULL);
    CHECK(owner != NULL);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, 1);
    CHECK(mc != NULL);
    CHECK(rd_kafka_mock_topic_create(mc, "pingtopic", 5, 1) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_t *rk = new_producer(rd_kafka_mock_cluster_bootstraps(mc), NULL);
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
    rd_kafka_t *rk = new_producer("127.0.0.1:1", NULL);
    CHECK(rk != NULL);
    char reason[256] = "";
    CHECK_INT_EQ(epp_kafka_ping(rk, NULL, 300, reason, sizeof(reason)), EPP_EUNAVAIL);
    CHECK(reason[0] != '\0');
    rd_kafka_destroy(rk);
}

int main(void)
{
    epp_log_init("test_kafka", EPP_LOG_OFF, 1);
    EPP_RUN(test_conf_new);
    EPP_RUN(test_conf_errors);
    EPP_RUN(test_err_map);
    EPP_RUN(test_ping_mock);
    EPP_RUN(test_ping_nothing);
    return EPP_TEST_RESULT();
}
