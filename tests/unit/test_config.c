/* Unit tests for epp_config: precedence, flag forms, value checks and their messages, --help,
 * --version, positional arguments, the Markdown table and secret redaction in the log. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epp_config.h"
#include "epp_error.h"
#include "epp_log.h"
#include "epp_test.h"

typedef struct {
    char *bootstrap;
    char *password;
    char *nodefault;
    int64_t port;
    int64_t offset;
    bool quiet;
    bool verbose;
    double ratio;
} test_conf_t;

static const epp_conf_opt_t opts[] = {
    EPP_CONF_STR("bootstrap", "TEST_BOOTSTRAP", "localhost:9092", test_conf_t, bootstrap,
                 "Kafka bootstrap servers"),
    EPP_CONF_SECRET_STR("password", "TEST_PASSWORD", "default-pw", test_conf_t, password,
                        "Database password"),
    EPP_CONF_STR("nodefault", NULL, NULL, test_conf_t, nodefault, "A flag-only string"),
    EPP_CONF_INT("port", "HTTP_PORT", "8001", 1, 65535, test_conf_t, port, "HTTP listen port"),
    EPP_CONF_INT("offset", "TEST_OFFSET", "-5", 1, 0, test_conf_t, offset, "Unbounded integer"),
    EPP_CONF_BOOL("quiet", "TEST_QUIET", "false", test_conf_t, quiet, "Say less"),
    EPP_CONF_BOOL("verbose", NULL, "true", test_conf_t, verbose, "Say more"),
    EPP_CONF_DBL("ratio", "TEST_RATIO", "0.25", 0, 1, test_conf_t, ratio, "Sampling ratio"),
    EPP_CONF_END,
};

static const char *const env_names[] = {"TEST_BOOTSTRAP", "TEST_PASSWORD", "HTTP_PORT",
                                        "TEST_OFFSET",    "TEST_QUIET",    "TEST_RATIO"};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        unsetenv(env_names[i]);
}

/* Parses a NULL-terminated argument list (argv[0] is added). */
static int parse(test_conf_t *cfg, int *rest, char *err, size_t errsz, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "prog";
    va_list ap;
    va_start(ap, errsz);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 31;)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    memset(cfg, 0xa5, sizeof *cfg); /* garbage: parse must not read or free it */
    return epp_config_parse(opts, cfg, argc, argv, "prog", "A test program.", rest, err, errsz);
}

/* Redirects fd to a temporary file until capture_end(), which returns what was written
 * (caller frees). */
typedef struct {
    int fd, saved;
    FILE *tmp;
} capture_t;

static void capture_begin(capture_t *c, int fd)
{
    fflush(stdout);
    fflush(stderr);
    c->fd = fd;
    c->tmp = tmpfile();
    c->saved = dup(fd);
    dup2(fileno(c->tmp), fd);
}

static char *capture_end(capture_t *c)
{
    fflush(stdout);
    fflush(stderr);
    dup2(c->saved, c->fd);
    close(c->saved);
    long n = ftell(c->tmp);
    if (n < 0)
        n = lseek(fileno(c->tmp), 0, SEEK_END);
    char *s = calloc((size_t)n + 1, 1);
    lseek(fileno(c->tmp), 0, SEEK_SET);
    size_t got = 0;
    while (got < (size_t)n) {
        ssize_t r = read(fileno(c->tmp), s + got, (size_t)n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    fclose(c->tmp);
    return s;
}

static void test_defaults(void)
{
    test_conf_t cfg;
    char err[256];
    clear_env();
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, NULL), 0);
    CHECK_STR_EQ(cfg.bootstrap, "localhost:9092");
    CHECK_STR_EQ(cfg.password, "default-pw");
    CHECK(cfg.nodefault == NULL);
    CHECK_INT_EQ(cfg.port, 8001);
    CHECK_INT_EQ(cfg.offset, -5);
    CHECK(!cfg.quiet);
    CHECK(cfg.verbose);
    CHECK(cfg.ratio == 0.25);
    CHECK_STR_EQ(err, "");
    epp_config_free(opts, &cfg);
    CHECK(cfg.bootstrap == NULL && cfg.password == NULL);
}

static void test_precedence(void)
{
    test_conf_t cfg;
    char err[256];
    clear_env();
    setenv("TEST_BOOTSTRAP", "env-host:1", 1);
    setenv("HTTP_PORT", "9000", 1);
    setenv("TEST_QUIET", "yes", 1);
    setenv("TEST_RATIO", "0.5", 1);
    /* env beats defaults */
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, NULL), 0);
    CHECK_STR_EQ(cfg.bootstrap, "env-host:1");
    CHECK_INT_EQ(cfg.port, 9000);
    CHECK(cfg.quiet);
    CHECK(cfg.ratio == 0.5);
    epp_config_free(opts, &cfg);
    /* flags beat env, in both the --flag=value and --flag value forms */
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--bootstrap=flag-host:2", "--port", "9100",
                       "--quiet=false", "--ratio", "1", NULL),
                 0);
    CHECK_STR_EQ(cfg.bootstrap, "flag-host:2");
    CHECK_INT_EQ(cfg.port, 9100);
    CHECK(!cfg.quiet);
    CHECK(cfg.ratio == 1.0);
    epp_config_free(opts, &cfg);
    /* the last occurrence of a flag wins; an empty value is a value */
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--port=1", "--port=2",
                       "--bootstrap=", "--nodefault", "x y", NULL),
                 0);
    CHECK_INT_EQ(cfg.port, 2);
    CHECK_STR_EQ(cfg.bootstrap, "");
    CHECK_STR_EQ(cfg.nodefault, "x y");
    epp_config_free(opts, &cfg);
    CHECK(cfg.nodefault == NULL);
    clear_env();
}

static void test_bools(void)
{
    static const struct {
        const char *arg;
        bool want;
    } cases[] = {
        {"--quiet", true},    {"--quiet=true", true}, {"--quiet=TRUE", true},
        {"--quiet=1", true},  {"--quiet=yes", true},  {"--quiet=false", false},
        {"--quiet=0", false}, {"--quiet=no", false},  {"--verbose=no", false},
    };
    test_conf_t cfg;
    char err[256];
    clear_env();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, cases[i].arg, NULL), 0);
        bool got = strncmp(cases[i].arg, "--quiet", 7) == 0 ? cfg.quiet : cfg.verbose;
        epp_config_free(opts, &cfg);
        if (got != cases[i].want)
            EPP_FAIL_("%s gave %d", cases[i].arg, got);
    }
    /* a bare bool flag does not swallow the next argument */
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--quiet", "--port", "80", NULL), 0);
    CHECK(cfg.quiet);
    CHECK_INT_EQ(cfg.port, 80);
    epp_config_free(opts, &cfg);
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--quiet=maybe", NULL), EPP_EINVAL);
    CHECK_STR_EQ(
        err,
        "invalid value \"maybe\" for --quiet (TEST_QUIET): not a boolean (true|false|1|0|yes|no)");
    epp_config_free(opts, &cfg);
}

static void test_bad_values(void)
{
    static const struct {
        const char *arg;
        const char *want;
    } cases[] = {
        {"--port=abc", "invalid value \"abc\" for --port (HTTP_PORT): not an integer"},
        {"--port=70000",
         "invalid value \"70000\" for --port (HTTP_PORT): must be between 1 and 65535"},
        {"--port=0", "invalid value \"0\" for --port (HTTP_PORT): must be between 1 and 65535"},
        {"--port=80x", "invalid value \"80x\" for --port (HTTP_PORT): not an integer"},
        {"--port= 80", "invalid value \" 80\" for --port (HTTP_PORT): not an integer"},
        {"--port=0x50", "invalid value \"0x50\" for --port (HTTP_PORT): not an integer"},
        {"--port=8.0", "invalid value \"8.0\" for --port (HTTP_PORT): not an integer"},
        {"--port=", "invalid value \"\" for --port (HTTP_PORT): not an integer"},
        {"--port=99999999999999999999",
         "invalid value \"99999999999999999999\" for --port (HTTP_PORT): must be between 1 and "
         "65535"},
        {"--offset=99999999999999999999",
         "invalid value \"99999999999999999999\" for --offset (TEST_OFFSET): integer out of "
         "range"},
        {"--ratio=0.5x", "invalid value \"0.5x\" for --ratio (TEST_RATIO): not a number"},
        {"--ratio=nan", "invalid value \"nan\" for --ratio (TEST_RATIO): not a number"},
        {"--ratio=", "invalid value \"\" for --ratio (TEST_RATIO): not a number"},
        {"--ratio=1.5", "invalid value \"1.5\" for --ratio (TEST_RATIO): must be between 0 and 1"},
        {"--foo", "unknown option --foo (see --help)"},
        {"--foo=bar", "unknown option --foo (see --help)"},
        {"-x", "unknown option -x (see --help)"},
        {"extra", "unexpected argument \"extra\" (see --help)"},
        {"--port", "option --port needs a value (see --help)"},
    };
    test_conf_t cfg;
    char err[256];
    clear_env();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = parse(&cfg, NULL, err, sizeof err, cases[i].arg, NULL);
        epp_config_free(opts, &cfg);
        if (rc != EPP_EINVAL || strcmp(err, cases[i].want) != 0)
            EPP_FAIL_("%s: rc %d, err \"%s\", want \"%s\"", cases[i].arg, rc, err, cases[i].want);
    }
    /* valid edge cases */
    CHECK_INT_EQ(
        parse(&cfg, NULL, err, sizeof err, "--port=65535", "--offset", "-42", "--ratio=1e-3", NULL),
        0);
    CHECK_INT_EQ(cfg.port, 65535);
    CHECK_INT_EQ(cfg.offset, -42);
    CHECK(cfg.ratio == 0.001);
    epp_config_free(opts, &cfg);
}

static void test_bad_env(void)
{
    test_conf_t cfg;
    char err[256];
    clear_env();
    setenv("HTTP_PORT", "abc", 1);
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, NULL), EPP_EINVAL);
    epp_config_free(opts, &cfg);
    CHECK_STR_EQ(err, "invalid value \"abc\" for HTTP_PORT (--port): not an integer");
    setenv("HTTP_PORT", "70000", 1);
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, NULL), EPP_EINVAL);
    epp_config_free(opts, &cfg);
    CHECK_STR_EQ(err,
                 "invalid value \"70000\" for HTTP_PORT (--port): must be between 1 and 65535");
    /* a bad env value is an error even when a flag would override it: the operator should know */
    setenv("HTTP_PORT", "", 1);
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--port=80", NULL), EPP_EINVAL);
    epp_config_free(opts, &cfg);
    CHECK_STR_EQ(err, "invalid value \"\" for HTTP_PORT (--port): not an integer");
    clear_env();
    setenv("TEST_RATIO", "2", 1);
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, NULL), EPP_EINVAL);
    epp_config_free(opts, &cfg);
    CHECK_STR_EQ(err, "invalid value \"2\" for TEST_RATIO (--ratio): must be between 0 and 1");
    clear_env();
}

static void test_help(void)
{
    test_conf_t cfg;
    char err[256];
    capture_t cap;
    clear_env();
    setenv("TEST_PASSWORD", "hunter2", 1);
    setenv("HTTP_PORT", "abc", 1); /* --help works even with a bad environment */
    capture_begin(&cap, STDOUT_FILENO);
    int rc = parse(&cfg, NULL, err, sizeof err, "--port=1", "--help", NULL);
    char *out = capture_end(&cap);
    epp_config_free(opts, &cfg);
    clear_env();
    CHECK_INT_EQ(rc, 1);
    CHECK(strstr(out, "Usage: prog") != NULL);
    CHECK(strstr(out, "A test program.") != NULL);
    for (const epp_conf_opt_t *opt = opts; opt->flag; opt++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", opt->flag);
        if (!strstr(out, flag) || !strstr(out, opt->help) || (opt->env && !strstr(out, opt->env)) ||
            (opt->def && !strstr(out, opt->def))) {
            free(out);
            EPP_FAIL_("--help does not describe --%s", opt->flag);
        }
    }
    CHECK(strstr(out, "1..65535") != NULL);
    /* the secret's default is part of the program and shown; the value given is not */
    CHECK(strstr(out, "hunter2") == NULL);
    free(out);

    capture_begin(&cap, STDOUT_FILENO);
    rc = parse(&cfg, NULL, err, sizeof err, "-h", NULL);
    out = capture_end(&cap);
    epp_config_free(opts, &cfg);
    CHECK_INT_EQ(rc, 1);
    CHECK(strstr(out, "--port=INT") != NULL);
    free(out);

    capture_begin(&cap, STDOUT_FILENO);
    rc = parse(&cfg, NULL, err, sizeof err, "--version", NULL);
    out = capture_end(&cap);
    epp_config_free(opts, &cfg);
    CHECK_INT_EQ(rc, 1);
    CHECK_STR_EQ(out, "prog " EPP_VERSION "\n");
    free(out);

    /* "-h" as the value of a flag is a value, not a request for help */
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--bootstrap", "-h", NULL), 0);
    CHECK_STR_EQ(cfg.bootstrap, "-h");
    epp_config_free(opts, &cfg);
}

static void test_rest_index(void)
{
    test_conf_t cfg;
    char err[256];
    int rest = -1;
    clear_env();
    CHECK_INT_EQ(parse(&cfg, &rest, err, sizeof err, "--port", "5", "file", "--quiet", NULL), 0);
    CHECK_INT_EQ(rest, 3);
    CHECK_INT_EQ(cfg.port, 5);
    CHECK(!cfg.quiet); /* options after the first positional belong to the caller */
    epp_config_free(opts, &cfg);
    CHECK_INT_EQ(parse(&cfg, &rest, err, sizeof err, "--quiet", "--", "--port=abc", NULL), 0);
    CHECK_INT_EQ(rest, 3);
    CHECK(cfg.quiet);
    epp_config_free(opts, &cfg);
    CHECK_INT_EQ(parse(&cfg, &rest, err, sizeof err, "--quiet", NULL), 0);
    CHECK_INT_EQ(rest, 2);
    epp_config_free(opts, &cfg);
    CHECK_INT_EQ(parse(&cfg, &rest, err, sizeof err, "-", NULL), 0);
    CHECK_INT_EQ(rest, 1);
    epp_config_free(opts, &cfg);
    /* without rest_index, positionals are errors, also after "--" */
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--", "x", NULL), EPP_EINVAL);
    CHECK_STR_EQ(err, "unexpected argument \"x\" (see --help)");
    epp_config_free(opts, &cfg);
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--", NULL), 0);
    epp_config_free(opts, &cfg);
}

static void test_markdown(void)
{
    capture_t cap;
    capture_begin(&cap, STDOUT_FILENO);
    epp_config_print_markdown(stdout, opts);
    char *out = capture_end(&cap);
    CHECK(strncmp(out, "| flag | env | default | description |\n|---|---|---|---|\n", 56) == 0);
    CHECK(strstr(out, "| `--port` | `HTTP_PORT` | `8001` | HTTP listen port (1..65535) |\n") !=
          NULL);
    CHECK(strstr(out, "| `--nodefault` | - | (none) | A flag-only string |\n") != NULL);
    CHECK(strstr(
              out,
              "| `--password` | `TEST_PASSWORD` | `default-pw` | Database password (secret) |\n") !=
          NULL);
    int rows = 0;
    for (const char *p = out; (p = strchr(p, '\n')) != NULL; p++)
        rows++;
    free(out);
    CHECK_INT_EQ(rows, 2 + 8);

    /* --help-markdown is built in: every program prints its README table the same way. */
    test_conf_t cfg;
    char err[256];
    clear_env();
    capture_begin(&cap, STDOUT_FILENO);
    int rc = parse(&cfg, NULL, err, sizeof err, "--help-markdown", NULL);
    out = capture_end(&cap);
    epp_config_free(opts, &cfg);
    CHECK_INT_EQ(rc, 1);
    CHECK(strstr(out, "| flag | env | default | description |\n") == out);
    CHECK(strstr(out, "| `--port` | `HTTP_PORT` | `8001` |") != NULL);
    free(out);
}

static void test_log_redacts_secrets(void)
{
    test_conf_t cfg;
    char err[256];
    capture_t cap;
    clear_env();
    setenv("TEST_PASSWORD", "hunter2", 1);
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--port=8080", "--ratio=0.1", NULL), 0);
    clear_env();
    epp_log_init("test", EPP_LOG_INFO, 1);
    capture_begin(&cap, STDERR_FILENO);
    epp_config_log(opts, &cfg);
    char *out = capture_end(&cap);
    epp_config_free(opts, &cfg);
    CHECK(strstr(out, "hunter2") == NULL);
    CHECK(strstr(out, "\"password\":\"(set)\"") != NULL);
    CHECK(strstr(out, "\"msg\":\"configuration\"") != NULL);
    CHECK(strstr(out, "\"port\":\"8080\"") != NULL);
    CHECK(strstr(out, "\"ratio\":\"0.1\"") != NULL);
    CHECK(strstr(out, "\"bootstrap\":\"localhost:9092\"") != NULL);
    CHECK(strstr(out, "\"nodefault\":null") != NULL);
    CHECK(strstr(out, "\"quiet\":\"false\"") != NULL);
    free(out);

    /* an unset secret says so */
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, "--password=", NULL), 0);
    capture_begin(&cap, STDERR_FILENO);
    epp_config_log(opts, &cfg);
    out = capture_end(&cap);
    epp_config_free(opts, &cfg);
    CHECK(strstr(out, "\"password\":\"(unset)\"") != NULL);
    free(out);

    /* nothing is logged below the threshold */
    epp_log_init("test", EPP_LOG_WARN, 1);
    CHECK_INT_EQ(parse(&cfg, NULL, err, sizeof err, NULL), 0);
    capture_begin(&cap, STDERR_FILENO);
    epp_config_log(opts, &cfg);
    out = capture_end(&cap);
    epp_config_free(opts, &cfg);
    CHECK_STR_EQ(out, "");
    free(out);
}

/* Secrets inside list-valued options (librdkafka override lists): the value of every key that
 * looks secret is "(set)", everything else of the list is shown as given. */
typedef struct {
    char *kafka;
    char *plain;
} list_conf_t;

static const epp_conf_opt_t list_opts[] = {
    EPP_CONF_STR("kafka-config", "TEST_KAFKA_CONFIG", NULL, list_conf_t, kafka, "Overrides"),
    EPP_CONF_STR("plain", NULL, "a=b,c", list_conf_t, plain, "Nothing secret"),
    EPP_CONF_END,
};

static void test_log_redacts_list_secrets(void)
{
    list_conf_t cfg;
    char err[256];
    setenv("TEST_KAFKA_CONFIG",
           "linger.ms=5, sasl.username=alice,SASL.PASSWORD=pw1,ssl.key.password=pw2,"
           "ssl.keystore.password=pw3,ssl.key.pem=-----BEGIN-PEM,"
           "sasl.oauthbearer.client.secret=pw4,my.Secret.thing=pw5,acks=all,novalue",
           1);
    char *argv[] = {"prog", NULL};
    CHECK_INT_EQ(epp_config_parse(list_opts, &cfg, 1, argv, "prog", "s", NULL, err, sizeof err), 0);
    unsetenv("TEST_KAFKA_CONFIG");
    epp_log_init("test", EPP_LOG_INFO, 1);
    capture_t cap;
    capture_begin(&cap, STDERR_FILENO);
    epp_config_log(list_opts, &cfg);
    char *out = capture_end(&cap);
    epp_config_free(list_opts, &cfg);
    static const char *const hidden[] = {"alice", "pw1", "pw2", "pw3", "BEGIN-PEM", "pw4", "pw5"};
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++)
        CHECK(strstr(out, hidden[i]) == NULL);
    CHECK(strstr(out, "\"kafka-config\":\"linger.ms=5, sasl.username=(set),SASL.PASSWORD=(set),"
                      "ssl.key.password=(set),ssl.keystore.password=(set),ssl.key.pem=(set),"
                      "sasl.oauthbearer.client.secret=(set),my.Secret.thing=(set),acks=all,"
                      "novalue\"") != NULL);
    CHECK(strstr(out, "\"plain\":\"a=b,c\"") != NULL);
    free(out);
}

static void test_free_accepts_zeroed(void)
{
    test_conf_t cfg;
    memset(&cfg, 0, sizeof cfg);
    epp_config_free(opts, &cfg);
    epp_config_free(opts, NULL);
    CHECK(cfg.bootstrap == NULL);
}

int main(void)
{
    EPP_RUN(test_defaults);
    EPP_RUN(test_precedence);
    EPP_RUN(test_bools);
    EPP_RUN(test_bad_values);
    EPP_RUN(test_bad_env);
    EPP_RUN(test_help);
    EPP_RUN(test_rest_index);
    EPP_RUN(test_markdown);
    EPP_RUN(test_log_redacts_secrets);
    EPP_RUN(test_log_redacts_list_secrets);
    EPP_RUN(test_free_accepts_zeroed);
    return EPP_TEST_RESULT();
}
