/*
 * engine/client.c (and the transport under ddbk_call): configuration checks,
 * region and endpoint resolution, missing credentials, that no error message
 * carries the secret, and whole calls against a closed port, a port that
 * never answers, and a scripted HTTP server forked by the test.
 *
 * Every test runs with a fresh empty HOME and no AWS_* or proxy variables.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include "creds.h"
#include "responder.h"

static char tmpdir[256];

/* What a test that makes calls holds, released by the teardown so a failed
 * assertion leaks nothing (and leaves no server child behind). */
static ddbk_client *g_client;
static ddbk_response g_resp;

static const char *const cleared_vars[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_EC2_METADATA_DISABLED", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
    "AWS_CA_BUNDLE", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
    "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
    "all_proxy", NULL,
};

static int env_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ddbk_client_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    for (int i = 0; cleared_vars[i] != NULL; i++)
        unsetenv(cleared_vars[i]);
    setenv("HOME", tmpdir, 1);
    g_client = NULL;
    ddbk_response_init(&g_resp);
    responder_setup();
    return 0;
}

static int env_teardown(void **state)
{
    char cmd[300];

    (void)state;
    responder_stop();
    ddbk__test_wall_offset_ms = 0;
    ddbk__test_random = NULL;
    ddbk_client_free(g_client);
    g_client = NULL;
    ddbk_response_free(&g_resp);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static ddbk_client *new_ok(const ddbk_config *cfg)
{
    ddbk_error err;
    ddbk_client *c = new_client(cfg, &err);
    assert_string_equal(err.code, "");
    return c;
}

static void new_fails(const ddbk_config *cfg, const char *code, const char *in_message)
{
    ddbk_error err;

    memset(&err, 0, sizeof err);
    ddbk_client *c = ddbk_client_new(cfg, &err);
    if (c != NULL) {
        ddbk_client_free(c);
        fail_msg("ddbk_client_new succeeded, want %s", code);
    }
    assert_string_equal(err.code, code);
    assert_true(err.message[0] != '\0');
    if (in_message != NULL && strstr(err.message, in_message) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", err.message, in_message);
    assert_null(strstr(err.message, SECRET));
    assert_null(strstr(err.message, "wJalrXUtnFEMI"));
}

static void test_defaults(void **state)
{
    ddbk_config cfg;

    (void)state;
    ddbk_config_init(&cfg);
    assert_null(cfg.region);
    assert_null(cfg.endpoint);
    assert_int_equal(cfg.connect_timeout_ms, 1000);
    assert_int_equal(cfg.timeout_ms, 3000);
    assert_int_equal(cfg.max_attempts, 3);
    assert_int_equal(cfg.base_delay_ms, 50);
    assert_int_equal(cfg.max_backoff_ms, 20000);
    assert_int_equal(cfg.retry_quota, 500);
    assert_int_equal(cfg.verify_tls, 1);
    assert_int_equal(cfg.max_response_bytes, DDBK_BUF_DEFAULT_MAX);

    /* A NULL config is the defaults, with everything from the environment. */
    setenv("AWS_REGION", "ap-south-1", 1);
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    ddbk_client *c = new_ok(NULL);
    assert_string_equal(ddbk_client_region(c), "ap-south-1");
    assert_string_equal(ddbk_client_endpoint(c), "https://dynamodb.ap-south-1.amazonaws.com");
    assert_int_equal(c->max_attempts, 3);
    assert_int_equal(c->quota, 500);
    assert_int_equal(c->quota_max, 500);
    ddbk_credentials_info info;
    assert_int_equal(ddbk_client_credentials(c, &info), 0);
    assert_string_equal(info.provider, "environment");
    assert_int_equal(cfg.use_fips, -1);
    assert_int_equal(cfg.use_dualstack, -1);
    assert_null(cfg.ca_file);
    assert_int_equal(cfg.credentials_from_host, 0);
    ddbk_client_free(c);
}

static void test_endpoint_validation(void **state)
{
    static const char *const bad[] = {
        "ftp://x", "http://", "https://", "http://host/path", "http://host/path/",
        "http://user@host", "http://user:pw@host:8000", "host:8000", "127.0.0.1",
        "http://host?x=1", "http://host#frag", "http://ho st", "http://host\r\nX: y",
        "//host", "",
    };
    ddbk_config cfg;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        base_config(&cfg);
        cfg.endpoint = bad[i];
        if (bad[i][0] == '\0') {
            /* Empty means unset: the default endpoint. */
            ddbk_client *c = new_ok(&cfg);
            assert_string_equal(ddbk_client_endpoint(c),
                                "https://dynamodb.eu-west-1.amazonaws.com");
            ddbk_client_free(c);
            continue;
        }
        /* The message names what was given (CR/LF case: its start). */
        char shown[32];
        snprintf(shown, sizeof shown, "%.*s", (int)strcspn(bad[i], "\r\n"), bad[i]);
        new_fails(&cfg, "InvalidArgument", shown);
    }

    /* A host longer than the Host header holds. */
    char longep[400];
    snprintf(longep, sizeof longep, "http://");
    memset(longep + 7, 'h', 300);
    longep[307] = '\0';
    base_config(&cfg);
    cfg.endpoint = longep;
    new_fails(&cfg, "InvalidArgument", "http://hhhh");

    /* What a message shows of a bad endpoint or region has no control
     * character: no header, terminal escape or log line made from it. */
    static const char *const hostile[] = {
        "http://host\r\nX-Evil: 1", "http://\x1b]52;c;Evil\x07", "http://h/\x1b[2J",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        ddbk_error err;
        base_config(&cfg);
        cfg.endpoint = hostile[i];
        assert_null(ddbk_client_new(&cfg, &err));
        assert_string_equal(err.code, "InvalidArgument");
        for (const char *p = err.message; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                fail_msg("message \"%s\" holds a control character", err.message);
    }
    {
        ddbk_error err;
        base_config(&cfg);
        cfg.region = "eu\x1b[2J\r\n";
        assert_null(ddbk_client_new(&cfg, &err));
        assert_string_equal(err.code, "InvalidArgument");
        assert_null(strpbrk(err.message, "\x1b\r\n"));
    }

    /* And the same checks apply to an endpoint from the environment. */
    base_config(&cfg);
    setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://envhost/some/path", 1);
    new_fails(&cfg, "InvalidArgument", "http://envhost/some/path");
}

/* The port must be one: digits, 1..65535. What set_endpoint keeps as the
 * signed Host must be what curl sends, and curl sends no port at all for
 * "h:" or "h:080" on http (it is the default, 80), so accepting those as
 * they are signs a Host the server never sees. */
static void test_endpoint_bad_port(void **state)
{
    static const char *const cases[][2] = {
        /* endpoint, the Host it may be accepted with (NULL: must fail) */
        {"http://127.0.0.1:", "127.0.0.1"},
        {"http://127.0.0.1:080", "127.0.0.1"},
        {"https://example.com:0443", "example.com"},
        {"http://h:abc", NULL},
        {"http://h:8000x", NULL},
        {"http://h:99999", NULL},
        {"http://h:-1", NULL},
        {"http://[::1", NULL},
    };
    ddbk_config cfg;
    ddbk_error err;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        base_config(&cfg);
        cfg.endpoint = cases[i][0];
        ddbk_client *c = ddbk_client_new(&cfg, &err);
        if (c == NULL) {
            assert_string_equal(err.code, "InvalidArgument");
            continue;
        }
        char host[256];
        snprintf(host, sizeof host, "%s", c->host);
        ddbk_client_free(c);
        if (cases[i][1] == NULL || strcmp(host, cases[i][1]) != 0)
            fail_msg("endpoint \"%s\" accepted, signing Host \"%s\"", cases[i][0], host);
    }
}

static void test_endpoint_forms(void **state)
{
    static const char *const cases[][3] = {
        /* given, endpoint, Host */
        {"http://127.0.0.1:8000", "http://127.0.0.1:8000", "127.0.0.1:8000"},
        {"http://127.0.0.1:8000/", "http://127.0.0.1:8000", "127.0.0.1:8000"},
        {"http://localhost//", "http://localhost", "localhost"},
        /* The scheme's default port is normalised away, as curl's Host is. */
        {"https://example.com:443", "https://example.com", "example.com"},
        {"http://example.com:80", "http://example.com", "example.com"},
        {"http://127.0.0.1:080", "http://127.0.0.1", "127.0.0.1"},
        {"http://[::1]:8000", "http://[::1]:8000", "[::1]:8000"},
    };
    ddbk_config cfg;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        base_config(&cfg);
        cfg.endpoint = cases[i][0];
        ddbk_client *c = new_ok(&cfg);
        assert_string_equal(ddbk_client_endpoint(c), cases[i][1]);
        assert_string_equal(c->host, cases[i][2]);
        char url[512];
        snprintf(url, sizeof url, "%s/", cases[i][1]);
        assert_string_equal(c->url, url);
        ddbk_client_free(c);
    }
}

static void test_region_resolution(void **state)
{
    ddbk_config cfg;
    ddbk_client *c;

    (void)state;
    /* Explicit. */
    base_config(&cfg);
    setenv("AWS_REGION", "us-west-2", 1);
    setenv("AWS_DEFAULT_REGION", "us-west-1", 1);
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_region(c), "eu-west-1");
    assert_string_equal(ddbk_client_endpoint(c), "https://dynamodb.eu-west-1.amazonaws.com");
    ddbk_client_free(c);

    /* AWS_REGION, then AWS_DEFAULT_REGION. */
    cfg.region = NULL;
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_region(c), "us-west-2");
    assert_string_equal(ddbk_client_endpoint(c), "https://dynamodb.us-west-2.amazonaws.com");
    ddbk_client_free(c);
    unsetenv("AWS_REGION");
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_region(c), "us-west-1");
    ddbk_client_free(c);
    cfg.region = ""; /* empty is unset */
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_region(c), "us-west-1");
    ddbk_client_free(c);
    unsetenv("AWS_DEFAULT_REGION");

    /* An endpoint but no region: signs as us-east-1. */
    cfg.region = NULL;
    cfg.endpoint = "http://127.0.0.1:8000";
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_region(c), "us-east-1");
    assert_string_equal(ddbk_client_endpoint(c), "http://127.0.0.1:8000");
    ddbk_client_free(c);

    /* Neither. */
    cfg.endpoint = NULL;
    new_fails(&cfg, "MissingRegion", "region");

    /* The profile's region in the config file. */
    char path[512];
    snprintf(path, sizeof path, "%s/config", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[default]\nregion = ca-central-1\n", f);
    fclose(f);
    setenv("AWS_CONFIG_FILE", path, 1);
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_region(c), "ca-central-1");
    ddbk_client_free(c);
    unsetenv("AWS_CONFIG_FILE");

    /* A region that is not one. */
    static const char *const bad[] = {"US-EAST-1", "us east 1", "us-east-1/x",
                                      "us-east-1.evil.com#", "eu_west_1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        base_config(&cfg);
        cfg.region = bad[i];
        new_fails(&cfg, "InvalidArgument", "region");
    }
}

/* A region too long to hold is refused by the region chain; the client must
 * not take that refusal for "no region" and quietly sign as us-east-1. */
static void test_overlong_region_not_replaced(void **state)
{
    ddbk_config cfg;
    char region[100];
    ddbk_error err;

    (void)state;
    memset(region, 'a', 80);
    region[80] = '\0';
    base_config(&cfg);
    cfg.region = region;
    cfg.endpoint = "http://127.0.0.1:8000";
    ddbk_client *c = ddbk_client_new(&cfg, &err);
    if (c != NULL) {
        char got[64];
        snprintf(got, sizeof got, "%s", ddbk_client_region(c));
        ddbk_client_free(c);
        fail_msg("an 80-byte region was accepted as \"%s\"", got);
    }
    assert_string_equal(err.code, "InvalidArgument");
}

static void test_endpoint_env(void **state)
{
    ddbk_config cfg;
    ddbk_client *c;

    (void)state;
    base_config(&cfg);
    setenv("AWS_ENDPOINT_URL", "http://generic:1111", 1);
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_endpoint(c), "http://generic:1111");
    ddbk_client_free(c);

    setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://ddb:2222", 1);
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_endpoint(c), "http://ddb:2222");
    assert_string_equal(c->host, "ddb:2222");
    assert_string_equal(ddbk_client_region(c), "eu-west-1");
    ddbk_client_free(c);

    /* With an env endpoint and no region: us-east-1, not MissingRegion. */
    cfg.region = NULL;
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_region(c), "us-east-1");
    ddbk_client_free(c);

    /* The config's endpoint beats both. */
    cfg.endpoint = "http://explicit:3333";
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_endpoint(c), "http://explicit:3333");
    ddbk_client_free(c);

    /* Empty env values count as unset. */
    cfg.endpoint = NULL;
    cfg.region = "eu-west-1";
    setenv("AWS_ENDPOINT_URL_DYNAMODB", "", 1);
    c = new_ok(&cfg);
    assert_string_equal(ddbk_client_endpoint(c), "http://generic:1111");
    ddbk_client_free(c);
}

static void test_bad_numbers(void **state)
{
    ddbk_config cfg;

    (void)state;
    for (int k = 0; k < 9; k++) {
        base_config(&cfg);
        switch (k) {
        case 0: cfg.max_attempts = 0; break;
        case 1: cfg.max_attempts = -1; break;
        case 2: cfg.timeout_ms = 0; break;
        case 3: cfg.timeout_ms = -5; break;
        case 4: cfg.connect_timeout_ms = 0; break;
        case 5: cfg.connect_timeout_ms = -1; break;
        case 6: cfg.base_delay_ms = -1; break;
        case 7: cfg.max_backoff_ms = -1; break;
        case 8: cfg.retry_quota = -1; break;
        }
        new_fails(&cfg, "InvalidArgument", NULL);
    }
    /* The edges that are allowed. */
    base_config(&cfg);
    cfg.max_attempts = 1;
    cfg.base_delay_ms = 0;
    cfg.max_backoff_ms = 0;
    cfg.retry_quota = 0;
    cfg.timeout_ms = 1;
    cfg.connect_timeout_ms = 1;
    ddbk_client_free(new_ok(&cfg));
}

static void test_missing_credentials(void **state)
{
    ddbk_config cfg;

    (void)state;
    ddbk_config_init(&cfg);
    cfg.region = "us-east-1";
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1); /* else IMDS applies */
    new_fails(&cfg, "MissingCredentials", NULL);
    /* Half a pair in the environment is still missing. */
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    new_fails(&cfg, "MissingCredentials", NULL);
    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    new_fails(&cfg, "MissingCredentials", NULL);
    unsetenv("AWS_SECRET_ACCESS_KEY");

    /* Half a pair in the config is an argument error. */
    cfg.secret_access_key = SECRET;
    new_fails(&cfg, "InvalidArgument", NULL);
    cfg.secret_access_key = NULL;
    cfg.access_key_id = "AKID";
    new_fails(&cfg, "InvalidArgument", NULL);
}

/* Every failure the client can report, with a secret configured: none of
 * the messages carries it (new_fails checks each). */
static void test_secret_never_in_messages(void **state)
{
    ddbk_config cfg;
    char path[512];

    (void)state;
    base_config(&cfg);
    cfg.endpoint = "ftp://x";
    new_fails(&cfg, "InvalidArgument", NULL);
    base_config(&cfg);
    cfg.endpoint = "http://127.0.0.1:8000/path";
    new_fails(&cfg, "InvalidArgument", NULL);
    base_config(&cfg);
    cfg.region = "BAD";
    new_fails(&cfg, "InvalidArgument", NULL);
    base_config(&cfg);
    cfg.max_attempts = 0;
    new_fails(&cfg, "InvalidArgument", NULL);
    base_config(&cfg);
    cfg.access_key_id = NULL;
    new_fails(&cfg, "InvalidArgument", NULL);

    /* A credentials file with the secret but no key id. */
    snprintf(path, sizeof path, "%s/credentials", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[default]\naws_secret_access_key = " SECRET "\n", f);
    fclose(f);
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1); /* else IMDS applies */
    ddbk_config_init(&cfg);
    cfg.region = "us-east-1";
    new_fails(&cfg, "MissingCredentials", NULL);
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");

    /* A failed call. */
    base_config(&cfg);
    cfg.endpoint = "http://127.0.0.1:9";
    cfg.max_attempts = 1;
    cfg.connect_timeout_ms = 200;
    ddbk_client *c = g_client = new_ok(&cfg);
    ddbk_error err;
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), -1);
    assert_null(strstr(err.message, SECRET));
}

static void test_call_closed_port(void **state)
{
    ddbk_config cfg;
    ddbk_error err;
    ddbk_stats st;

    (void)state;
    base_config(&cfg);
    cfg.endpoint = "http://127.0.0.1:9";
    cfg.connect_timeout_ms = 200;
    cfg.max_attempts = 2;
    cfg.base_delay_ms = 1;
    ddbk_client *c = g_client = new_ok(&cfg);
    assert_int_equal(ddbk_call(c, "GetItem", "{\"TableName\":\"t\"}", 17, &g_resp, &err), -1);
    assert_string_equal(err.code, "ConnectionError");
    assert_int_equal(err.retryable, 1);
    assert_int_equal(err.timeout, 0);
    assert_int_equal(err.ambiguous, 0); /* nothing was sent */
    assert_int_equal(err.status, 0);
    assert_true(err.message[0] != '\0');
    assert_int_equal(g_resp.attempts, 2);
    assert_int_equal(g_resp.status, 0);

    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.bytes_out, 2 * 17);
    assert_int_equal(st.bytes_in, 0);
    assert_int_equal(st.latency_count, 2);
    assert_true(st.retry_delay_ms_total <= 1);
    const ddbk_op_stats *g = find_op(&st, "GetItem");
    assert_non_null(g);
    assert_int_equal(g->calls, 1);
    assert_int_equal(g->requests, 2);
    assert_int_equal(g->retries, 1);
    assert_int_equal(g->errors, 1);
    assert_int_equal(st.ncodes, 1);
    assert_string_equal(st.codes[0].code, "ConnectionError");
    assert_int_equal(st.codes[0].count, 1);
    /* One retry took 5 tokens. */
    assert_int_equal(c->quota, 495);

    /* A second call on the same client behaves the same. */
    assert_int_equal(ddbk_call(c, "GetItem", NULL, 0, &g_resp, &err), -1);
    assert_string_equal(err.code, "ConnectionError");
    assert_int_equal(g_resp.attempts, 2);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 4);
}

static void test_call_invalid_op(void **state)
{
    ddbk_config cfg;
    ddbk_error err;
    ddbk_stats st;

    (void)state;
    base_config(&cfg);
    cfg.endpoint = "http://127.0.0.1:9";
    ddbk_client *c = g_client = new_ok(&cfg);
    assert_int_equal(ddbk_call(c, "Get Item", "{}", 2, &g_resp, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_int_equal(g_resp.attempts, 0);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 0); /* nothing was sent */
}

/* A listening socket nobody accepts on: the connection completes in the
 * kernel and the response never comes, so the attempt times out. */
static void test_call_timeout(void **state)
{
    ddbk_config cfg;
    ddbk_error err;
    ddbk_stats st;
    char ep[64];
    int port;

    (void)state;
    g_listen = listen_socket(&port);
    local_config(&cfg, ep, sizeof ep, port);
    cfg.timeout_ms = 150;
    cfg.max_attempts = 2;
    cfg.base_delay_ms = 1;
    ddbk_client *c = g_client = new_ok(&cfg);
    assert_int_equal(ddbk_call(c, "PutItem", "{}", 2, &g_resp, &err), -1);
    assert_string_equal(err.code, "Timeout");
    assert_int_equal(err.timeout, 1);
    assert_int_equal(err.retryable, 1);
    assert_int_equal(err.ambiguous, 1); /* sent, never answered */
    assert_int_equal(g_resp.attempts, 2);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retries, 1);
    assert_true(st.latency_min_us >= 100000); /* each attempt waited it out */
    /* The retry after a timeout costs 10 tokens. */
    assert_int_equal(c->quota, 490);
}

/* ------------------------------------------- a scripted HTTP server */

typedef struct canned {
    int status;
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;
} canned;

/* Where the server appends every raw request. */
static const char *log_path(void)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/requests.log", tmpdir);
    return path;
}

/* The server child: answers the next n connections with the canned
 * responses, one request each (Connection: close), appends every raw request
 * to log_path(), and exits. */
static void respond(int lfd, int notes, const void *arg, int n)
{
    static char req[16384];
    const canned *responses = arg;
    FILE *log = fopen(log_path(), "w");
    size_t got;

    (void)notes;
    for (int i = 0; i < n; i++) {
        int fd = accept_request(lfd, req, sizeof req, &got);
        if (log != NULL) {
            fwrite(req, 1, got, log);
            fputs("\n=====\n", log);
            fflush(log);
        }
        answer_and_close(fd, responses[i].status, responses[i].headers, responses[i].body);
    }
    if (log != NULL)
        fclose(log);
}

/* Forks the server; returns its port. */
static int serve(const canned *responses, int n)
{
    return responder_start(respond, responses, n);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    static char buf[65536];
    size_t n = 0;

    if (f == NULL)
        return NULL;
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static ddbk_client *server_client(int port, int max_attempts)
{
    ddbk_config cfg;
    char ep[64];

    local_config(&cfg, ep, sizeof ep, port);
    cfg.max_attempts = max_attempts;
    cfg.base_delay_ms = 1;
    cfg.timeout_ms = 2000;
    return new_ok(&cfg);
}

static void test_call_success_after_retry(void **state)
{
    static const canned script[] = {
        {500, "x-amzn-RequestId: REQ1\r\n", ISE_BODY},
        {200, "x-amzn-RequestId:   REQ2  \r\n", "{\"Item\":{\"pk\":{\"S\":\"a\"}}}"},
    };
    char host_line[64];
    ddbk_error err;
    ddbk_stats st;

    (void)state;
    int port = serve(script, 2);
    ddbk_client *c = g_client = server_client(port, 3);
    int rc = ddbk_call(c, "GetItem", "{\"TableName\":\"t\"}", 17, &g_resp, &err);
    responder_stop();
    if (rc != 0)
        fail_msg("ddbk_call: %s: %s", err.code, err.message);
    assert_int_equal(g_resp.status, 200);
    assert_int_equal(g_resp.attempts, 2);
    assert_string_equal(g_resp.request_id, "REQ2");
    assert_string_equal(g_resp.body.data, "{\"Item\":{\"pk\":{\"S\":\"a\"}}}");

    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.ncodes, 0);
    assert_int_equal(st.bytes_out, 34);
    assert_true(st.bytes_in > 20);
    /* The retry's 5 tokens came back with the success. */
    assert_int_equal(c->quota, 500);

    /* What went over the wire: the signed headers, the Host that was
     * signed, and no "Expect: 100-continue". */
    const char *log = slurp(log_path());
    assert_non_null(log);
    snprintf(host_line, sizeof host_line, "\r\nHost: 127.0.0.1:%d\r\n", port);
    assert_non_null(strstr(log, host_line));
    assert_non_null(strstr(log, "POST / HTTP/1.1\r\n"));
    assert_non_null(strstr(log, "\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"));
    assert_non_null(strstr(log, "\r\nContent-Type: application/x-amz-json-1.0\r\n"));
    assert_non_null(strstr(log, "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/"));
    assert_non_null(strstr(log, "/eu-west-1/dynamodb/aws4_request"));
    assert_null(strcasestr(log, "Expect:"));
    assert_null(strstr(log, SECRET));
    assert_non_null(strstr(log, "\r\n\r\n{\"TableName\":\"t\"}"));
}

/* ddbk_call clears err when it starts: a call that succeeds after a retry
 * must not hand back the error of the attempt it retried. */
static void test_call_success_clears_error(void **state)
{
    static const canned script[] = {
        {503, NULL, ""},
        {200, NULL, "{}"},
    };
    ddbk_error err;

    (void)state;
    ddbk_client *c = g_client = server_client(serve(script, 2), 3);
    int rc = ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err);
    responder_stop();
    assert_int_equal(rc, 0);
    assert_int_equal(g_resp.attempts, 2);
    assert_string_equal(err.code, "");
    assert_int_equal(err.retryable, 0);
}

static void test_call_error_response(void **state)
{
    static const canned script[] = {
        {400, "x-amzn-RequestId: CCF1\r\n",
         "{" CCF_TYPE ",\"message\":\"The conditional request failed\","
         "\"Item\":{\"n\":{\"N\":\"1\"}}}"},
    };
    ddbk_error err;
    ddbk_stats st;

    (void)state;
    ddbk_client *c = g_client = server_client(serve(script, 1), 3);
    int rc = ddbk_call(c, "PutItem", "{}", 2, &g_resp, &err);
    responder_stop();
    assert_int_equal(rc, -1);
    assert_string_equal(err.code, "ConditionalCheckFailedException");
    assert_string_equal(err.message, "The conditional request failed");
    assert_string_equal(err.request_id, "CCF1");
    assert_int_equal(err.status, 400);
    assert_int_equal(err.retryable, 0);
    assert_int_equal(g_resp.attempts, 1);
    /* The body stays for the caller (the Item of the failed condition). */
    assert_non_null(strstr(g_resp.body.data, "\"Item\""));
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.ncodes, 1);
    assert_string_equal(st.codes[0].code, "ConditionalCheckFailedException");
    assert_int_equal(c->quota, 500);
}

static void test_call_response_too_large(void **state)
{
    static char big[4001];
    canned script[1];
    ddbk_config cfg;
    char ep[64];
    ddbk_error err;

    (void)state;
    memset(big, ' ', 4000);
    big[0] = '{';
    big[3999] = '}';
    script[0].status = 200;
    script[0].headers = NULL;
    script[0].body = big;
    local_config(&cfg, ep, sizeof ep, serve(script, 1));
    cfg.max_response_bytes = 1000;
    cfg.max_attempts = 3;
    ddbk_client *c = g_client = new_ok(&cfg);
    int rc = ddbk_call(c, "Scan", "{}", 2, &g_resp, &err);
    responder_stop();
    assert_int_equal(rc, -1);
    assert_string_equal(err.code, "ResponseTooLarge");
    assert_int_equal(err.retryable, 0);
    assert_int_equal(g_resp.attempts, 1);
    assert_true(g_resp.body.len <= 1000);
    assert_non_null(strstr(err.message, "1000"));
}

/* A kept-alive connection that the server closes after reading a request:
 * the request may have been applied, so curl's own resend on a fresh
 * connection would be a second send that no figure shows. Every send must
 * be an attempt: counted in the stats, under max_attempts and the quota,
 * and the failure marked ambiguous. */
static const ka_step DROPS[] = { {200, "{}"}, {0, NULL} };

/* Runs a GetItem (answered, so the connection is pooled) then an UpdateItem
 * that every send of is dropped; returns the notes the server wrote. */
static const char *drop_after_warm(ddbk_client *c, ddbk_error *err)
{
    static char notes[256];
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, err), 0);
    assert_int_equal(ddbk_call(c, "UpdateItem", "{}", 2, &g_resp, err), -1);
    drain(notes, sizeof notes);
    return notes;
}

static int count_of(const char *s, char ch)
{
    int n = 0;
    for (; *s; s++)
        n += *s == ch;
    return n;
}

static void test_call_lost_answer_is_an_attempt(void **state)
{
    ddbk_error err;
    ddbk_stats st;

    (void)state;
    int port = responder_start(respond_keepalive, DROPS, 2);
    ddbk_client *c = g_client = server_client(port, 3);
    const char *notes = drop_after_warm(c, &err);
    assert_string_equal(err.code, "ConnectionError");
    assert_int_equal(err.retryable, 1);
    assert_int_equal(err.ambiguous, 1);
    assert_non_null(strstr(err.message, "may have been applied"));
    assert_int_equal(g_resp.attempts, 3);
    /* DynamoDB got max_attempts sends, and the stats say so. */
    assert_int_equal(count_of(notes, 'U'), 3);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, (uint64_t)count_of(notes, 'G') + 3);
    assert_int_equal(find_op(&st, "UpdateItem")->requests, 3);
    assert_int_equal(st.retries, 2);
    assert_int_equal(c->quota, 500 - 2 * 5);
}

/* With max_attempts = 1 a request is sent once, whatever the pool did. */
static void test_call_lost_answer_single_attempt(void **state)
{
    ddbk_error err;
    ddbk_stats st;

    (void)state;
    int port = responder_start(respond_keepalive, DROPS, 2);
    ddbk_client *c = g_client = server_client(port, 1);
    const char *notes = drop_after_warm(c, &err);
    assert_int_equal(err.ambiguous, 1);
    assert_int_equal(g_resp.attempts, 1);
    assert_int_equal(count_of(notes, 'U'), 1);
    ddbk_stats_get(c, &st);
    assert_int_equal(find_op(&st, "UpdateItem")->requests, 1);
    assert_int_equal(st.retries, 0);
}

/* A retry after a lost answer that fails its condition may have failed on
 * the call's own first write: the owner of the item is told. */
static void test_call_ccf_after_lost_answer(void **state)
{
    static const ka_step script[] = {
        {200, "{}"},
        {0, NULL},
        {400, "{" CCF_TYPE ",\"message\":\"The conditional request failed\"}"},
    };
    ddbk_error err;

    (void)state;
    int port = responder_start(respond_keepalive, script, 3);
    ddbk_client *c = g_client = server_client(port, 3);
    const char *notes = drop_after_warm(c, &err);
    assert_string_equal(err.code, "ConditionalCheckFailedException");
    assert_int_equal(err.ambiguous, 1);
    assert_int_equal(g_resp.attempts, 2);
    assert_int_equal(count_of(notes, 'U'), 2);

    /* The next call starts clean: an answered failure is not ambiguous. */
    assert_int_equal(ddbk_call(c, "PutItem", "{}", 2, &g_resp, &err), -1);
    assert_string_equal(err.code, "ConditionalCheckFailedException");
    assert_int_equal(err.ambiguous, 0);
}

/* A call that succeeds after a lost answer says so in its response: a
 * write that is not idempotent may have been applied twice. */
static void test_call_success_after_lost_answer(void **state)
{
    static const ka_step script[] = { {200, "{}"}, {0, NULL}, {200, "{\"ok\":1}"} };
    ddbk_error err;

    (void)state;
    int port = responder_start(respond_keepalive, script, 3);
    ddbk_client *c = g_client = server_client(port, 3);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0);
    assert_int_equal(g_resp.ambiguous, 0);
    assert_int_equal(ddbk_call(c, "UpdateItem", "{}", 2, &g_resp, &err), 0);
    assert_int_equal(g_resp.attempts, 2);
    assert_int_equal(g_resp.ambiguous, 1);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0);
    assert_int_equal(g_resp.ambiguous, 0); /* each call starts clean */
}

/* A request id is what the server says, shown in errors and logs: it ends
 * at the first control byte, so no escape sequence rides it. */
static void test_request_id_control_bytes(void **state)
{
    static const canned script[] = {
        {400, "x-amzn-RequestId: RID1\x1b]52;c;Evil\x07\r\n",
         "{" CCF_TYPE ",\"message\":\"no\"}"},
    };
    ddbk_error err;

    (void)state;
    ddbk_client *c = g_client = server_client(serve(script, 1), 1);
    assert_int_equal(ddbk_call(c, "PutItem", "{}", 2, &g_resp, &err), -1);
    responder_stop();
    assert_string_equal(g_resp.request_id, "RID1");
    assert_string_equal(err.request_id, "RID1");
}

/* ------------------------------------------------------------ credentials */

static void endpoint_is(int fips, int dual, const char *want)
{
    ddbk_config cfg;
    base_config(&cfg);
    cfg.region = "us-west-2";
    cfg.use_fips = fips;
    cfg.use_dualstack = dual;
    ddbk_client *c = new_ok(&cfg);
    assert_string_equal(ddbk_client_endpoint(c), want);
    ddbk_client_free(c);
}

static void test_fips_dualstack_endpoints(void **state)
{
    (void)state;
    endpoint_is(0, 0, "https://dynamodb.us-west-2.amazonaws.com");
    endpoint_is(1, 0, "https://dynamodb-fips.us-west-2.amazonaws.com");
    endpoint_is(0, 1, "https://dynamodb.us-west-2.api.aws");
    endpoint_is(1, 1, "https://dynamodb-fips.us-west-2.api.aws");
    /* -1: the environment, "true" in any case; anything else is off. */
    endpoint_is(-1, -1, "https://dynamodb.us-west-2.amazonaws.com");
    setenv("AWS_USE_FIPS_ENDPOINT", "TRUE", 1);
    endpoint_is(-1, -1, "https://dynamodb-fips.us-west-2.amazonaws.com");
    setenv("AWS_USE_DUALSTACK_ENDPOINT", "true", 1);
    endpoint_is(-1, -1, "https://dynamodb-fips.us-west-2.api.aws");
    endpoint_is(0, -1, "https://dynamodb.us-west-2.api.aws"); /* the config wins */
    setenv("AWS_USE_FIPS_ENDPOINT", "1", 1);
    endpoint_is(-1, 0, "https://dynamodb.us-west-2.amazonaws.com");

    /* An explicit endpoint wins over both. */
    ddbk_config cfg;
    base_config(&cfg);
    cfg.endpoint = "http://127.0.0.1:8000";
    cfg.use_fips = 1;
    cfg.use_dualstack = 1;
    ddbk_client *c = new_ok(&cfg);
    assert_string_equal(ddbk_client_endpoint(c), "http://127.0.0.1:8000");
    ddbk_client_free(c);
}

static void test_ca_file(void **state)
{
    ddbk_config cfg;
    char path[512];

    (void)state;
    base_config(&cfg);
    cfg.ca_file = "/nonexistent/ddbkit-ca.pem";
    new_fails(&cfg, "InvalidArgument", "/nonexistent/ddbkit-ca.pem");
    cfg.ca_file = NULL;
    setenv("AWS_CA_BUNDLE", "/nonexistent/bundle.pem", 1);
    new_fails(&cfg, "InvalidArgument", "AWS_CA_BUNDLE \"/nonexistent/bundle.pem\"");

    /* A readable file is taken; the config's wins over the environment's. */
    snprintf(path, sizeof path, "%s/ca.pem", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    cfg.ca_file = path;
    ddbk_client *c = new_ok(&cfg);
    assert_string_equal(c->ca_file, path);
    ddbk_error err;
    ddbk_client *k = ddbk_client_clone(c, &err);
    assert_non_null(k);
    assert_string_equal(k->ca_file, path);
    ddbk_client_free(k);
    ddbk_client_free(c);
    setenv("AWS_CA_BUNDLE", path, 1);
    cfg.ca_file = NULL;
    c = new_ok(&cfg);
    assert_string_equal(c->ca_file, path);
    ddbk_client_free(c);
}

/* A container endpoint's answer: credentials n, expiring exp_s. */
static void creds_json(char *out, size_t cap, int n, int64_t exp_s)
{
    char iso[32];
    time_t t = (time_t)exp_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(out, cap,
             "{\"AccessKeyId\":\"AKIDROT%d\",\"SecretAccessKey\":\"SECRETROT%d\","
             "\"Token\":\"TOKENROT%d\",\"Expiration\":\"%s\"}", n, n, n, iso);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* A client whose credentials come from the container endpoint that the
 * responder on port plays, as DynamoDB too. No keys anywhere else. */
static ddbk_client *container_client(int port)
{
    ddbk_config cfg;
    char uri[96];
    static char ep[64];

    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/creds", port);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    ddbk_config_init(&cfg);
    cfg.region = "eu-west-1";
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
    cfg.endpoint = ep;
    cfg.max_attempts = 1;
    cfg.timeout_ms = 2000;
    return new_ok(&cfg);
}

static double zero(void) { return 0.0; }

/* ddbk_call fetches the credentials at its first call, refreshes them when
 * due (refresh at expiry - 300 s with r = 0), and never signs with expired
 * ones: past the expiry guard with a failed refresh, the call fails with
 * the cell's error, sending nothing to DynamoDB. */
static void test_call_refresh_rotation(void **state)
{
    char c1[256], c2[256];
    ddbk_error err;
    ddbk_stats st;
    ddbk_credentials_info info;

    (void)state;
    ddbk__test_random = zero;
    int64_t now_s = ddbk__wall_ms() / 1000;
    creds_json(c1, sizeof c1, 1, now_s + 3600);
    creds_json(c2, sizeof c2, 2, now_s + 7200);
    canned script[] = {
        {200, NULL, c1}, {200, NULL, "{}"}, {200, NULL, "{}"},
        {200, NULL, c2}, {200, NULL, "{}"},
    };
    int port = serve(script, 5);
    ddbk_client *c = g_client = container_client(port);
    ddbk_client_credentials(c, &info);
    assert_string_equal(info.provider, "container");
    assert_int_equal(info.fetches, 0); /* no I/O at creation */

    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0); /* no fetch */
    ddbk__test_wall_offset_ms = 3400 * 1000; /* past the refresh time, creds valid */
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0);
    responder_stop();

    const char *log = slurp(log_path());
    assert_non_null(log);
    assert_int_equal(count(log, "GET /creds HTTP/1.1"), 2);
    assert_int_equal(count(log, "Credential=AKIDROT1/"), 2);
    assert_int_equal(count(log, "Credential=AKIDROT2/"), 1);
    assert_int_equal(count(log, "X-Amz-Security-Token: TOKENROT1\r\n"), 2);
    assert_int_equal(count(log, "X-Amz-Security-Token: TOKENROT2\r\n"), 1);
    /* In order: each fetch before the requests it signs. */
    const char *f2 = strstr(strstr(log, "GET /creds") + 1, "GET /creds");
    assert_non_null(f2);
    assert_null(strstr(f2, "Credential=AKIDROT1/"));
    assert_null(strstr(log, "SECRETROT"));
    ddbk_client_credentials(c, &info);
    assert_int_equal(info.fetches, 2);
    assert_int_equal(info.expires_at, now_s + 7200);

    /* Past the second set's expiry guard, the endpoint gone: the call fails
     * with the cell's error and nothing is signed with the expired set. */
    ddbk__test_wall_offset_ms = (7200 - 30) * 1000;
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), -1);
    assert_string_equal(err.code, "CredentialsError");
    assert_non_null(strstr(err.message, "container"));
    assert_null(strstr(err.message, "SECRETROT"));
    assert_null(strstr(err.message, "TOKENROT"));
    assert_int_equal(g_resp.attempts, 0);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.errors, 1); /* the failed call is counted */
    /* In the backoff, the next call fails at once with the same error. */
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), -1);
    assert_string_equal(err.code, "CredentialsError");
    ddbk_client_credentials(c, &info);
    assert_int_equal(info.failures, 1);
    assert_true(info.last_error[0] != '\0');
    assert_null(strstr(info.last_error, "TOKENROT"));
}

/* A clone (what a lock keeper's thread signs with) shares the cell: the
 * rotation its original fetched reaches it, without a fetch of its own. */
static void test_clone_shares_rotation(void **state)
{
    char c1[256], c2[256];
    ddbk_error err;
    ddbk_response resp;

    (void)state;
    ddbk__test_random = zero;
    int64_t now_s = ddbk__wall_ms() / 1000;
    creds_json(c1, sizeof c1, 1, now_s + 3600);
    creds_json(c2, sizeof c2, 2, now_s + 7200);
    canned script[] = {
        {200, NULL, c1}, {200, NULL, "{}"}, {200, NULL, "{}"},
        {200, NULL, c2}, {200, NULL, "{}"}, {200, NULL, "{}"}, {200, NULL, "{}"},
    };
    int port = serve(script, 7);
    ddbk_client *c = g_client = container_client(port);
    ddbk_client *k = ddbk_client_clone(c, &err);
    assert_non_null(k);
    ddbk_response_init(&resp);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0);
    assert_int_equal(ddbk_call(k, "PutItem", "{}", 2, &resp, &err), 0); /* the same set */
    ddbk__test_wall_offset_ms = 3400 * 1000;
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0); /* refreshes */
    assert_int_equal(ddbk_call(k, "PutItem", "{}", 2, &resp, &err), 0);
    assert_int_equal(ddbk_call(k, "PutItem", "{}", 2, &resp, &err), 0);
    responder_stop();
    ddbk_response_free(&resp);
    ddbk_client_free(k);

    const char *log = slurp(log_path());
    assert_non_null(log);
    assert_int_equal(count(log, "GET /creds HTTP/1.1"), 2);
    assert_int_equal(count(log, "Credential=AKIDROT1/"), 2);
    assert_int_equal(count(log, "Credential=AKIDROT2/"), 3);
    /* The clone's last two requests: the new set. */
    const char *f2 = strstr(strstr(log, "GET /creds") + 1, "GET /creds");
    assert_int_equal(count(f2, "X-Amz-Target: DynamoDB_20120810.PutItem"), 2);
    assert_null(strstr(f2, "AKIDROT1"));
}

/* credentials_from_host: no chain, nothing until the host sets them; then
 * every call signs with what it set last. Other clients refuse the set. */
static void test_host_credentials(void **state)
{
    ddbk_config cfg;
    ddbk_error err;
    char ep[64];

    (void)state;
    static const canned script[] = { {200, NULL, "{}"}, {200, NULL, "{}"} };
    int port = serve(script, 2);
    local_config(&cfg, ep, sizeof ep, port);
    cfg.access_key_id = cfg.secret_access_key = NULL;
    cfg.credentials_from_host = 1;
    cfg.max_attempts = 1;
    ddbk_client *c = g_client = new_ok(&cfg);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), -1);
    assert_string_equal(err.code, "MissingCredentials");
    assert_int_equal(g_resp.attempts, 0);

    assert_int_equal(ddbk_client_set_credentials(c, "AKIDHOST1", SECRET, NULL, 0, &err), 0);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0);
    int64_t exp = ddbk__wall_ms() / 1000 + 900;
    assert_int_equal(ddbk_client_set_credentials(c, "AKIDHOST2", SECRET, "HOSTTOKEN", exp, &err),
                     0);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), 0);
    responder_stop();
    ddbk_credentials_info info;
    ddbk_client_credentials(c, &info);
    assert_string_equal(info.provider, "host");
    assert_int_equal(info.expires_at, exp);
    const char *log = slurp(log_path());
    assert_int_equal(count(log, "Credential=AKIDHOST1/"), 1);
    assert_int_equal(count(log, "Credential=AKIDHOST2/"), 1);
    assert_int_equal(count(log, "X-Amz-Security-Token: HOSTTOKEN"), 1);

    assert_int_equal(ddbk_client_set_credentials(c, "AKID\n", SECRET, NULL, 0, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(strstr(err.message, SECRET));

    base_config(&cfg);
    ddbk_client *other = new_ok(&cfg);
    assert_int_equal(ddbk_client_set_credentials(other, "A", "B", NULL, 0, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_non_null(strstr(err.message, "credentials_from_host"));
    ddbk_client_free(other);
}

/* ------------------------------------------------------------------ TLS */

/* A CA made for the test, a server certificate it signed for 127.0.0.1, and
 * another CA that signed nothing, in tmpdir (openssl's command line). */
static int make_certs(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "(cd '%s' && printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj /CN=ddbkit-test-ca && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout other.key -out other.pem -days 2 -subj /CN=ddbkit-other-ca && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout srv.key -out srv.csr -subj /CN=127.0.0.1 && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 2 -extfile ext.cnf) >/dev/null 2>&1", tmpdir);
    return system(cmd);
}

/* The TLS responder: n connections, one request each; GET /creds gets
 * credentials 1 (body in script[0].body), anything else "{}". A handshake
 * the client refuses just ends that connection. */
static void respond_tls(int lfd, int notes, const void *arg, int n)
{
    const canned *script = arg;
    char path[600], req[16384];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    (void)notes;
    snprintf(path, sizeof path, "%s/srv.pem", tmpdir);
    if (!ctx || SSL_CTX_use_certificate_file(ctx, path, SSL_FILETYPE_PEM) != 1)
        _exit(5);
    snprintf(path, sizeof path, "%s/srv.key", tmpdir);
    if (SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1)
        _exit(5);
    FILE *log = fopen(log_path(), "w");
    for (int i = 0; i < n; i++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(2);
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            size_t got = 0;
            int r;
            while ((r = SSL_read(ssl, req + got, (int)(sizeof req - 1 - got))) > 0) {
                got += (size_t)r;
                req[got] = '\0';
                if (whole_request(req, got, NULL, NULL))
                    break;
            }
            if (log) {
                fwrite(req, 1, got, log);
                fputs("\n=====\n", log);
                fflush(log);
            }
            const char *body = strncmp(req, "GET /creds", 10) == 0 ? script[0].body : "{}";
            char resp[1024];
            int len = snprintf(resp, sizeof resp,
                               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                               strlen(body), body);
            SSL_write(ssl, resp, len);
            SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        close(fd);
    }
    if (log)
        fclose(log);
    SSL_CTX_free(ctx);
}

/* Verification on, against a server whose certificate a CA made for the
 * test signed: ca_file makes it pass, for DynamoDB and for the container
 * credentials endpoint alike; another CA fails with a clear error that
 * names the host and the file, and is not retried. */
static void test_tls_ca_file(void **state)
{
    char ca[512], other[512], ep[64], uri[96], c1[256];
    ddbk_config cfg;
    ddbk_error err;

    (void)state;
    if (make_certs() != 0)
        skip(); /* no openssl command: nothing to test against */
    snprintf(ca, sizeof ca, "%s/ca.pem", tmpdir);
    snprintf(other, sizeof other, "%s/other.pem", tmpdir);
    creds_json(c1, sizeof c1, 1, ddbk__wall_ms() / 1000 + 3600);
    canned script[] = { {200, NULL, c1} };
    int port = responder_start(respond_tls, script, 7); /* the fetch tries 3 times */
    snprintf(ep, sizeof ep, "https://127.0.0.1:%d", port);

    base_config(&cfg);
    cfg.endpoint = ep;
    cfg.max_attempts = 3;
    cfg.base_delay_ms = 1;
    cfg.ca_file = ca;
    ddbk_client *c = g_client = new_ok(&cfg);
    if (ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err) != 0)
        fail_msg("%s: %s", err.code, err.message);
    ddbk_client_free(c);

    cfg.ca_file = other;
    c = g_client = new_ok(&cfg);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), -1);
    assert_string_equal(err.code, "ConnectionError");
    char want[700];
    snprintf(want, sizeof want,
             "TLS: certificate verification failed for 127.0.0.1:%d (ca_file %s)", port, other);
    if (strncmp(err.message, want, strlen(want)) != 0)
        fail_msg("message \"%s\", want it to start with \"%s\"", err.message, want);
    assert_int_equal(err.retryable, 0);
    assert_int_equal(err.ambiguous, 0);
    assert_int_equal(g_resp.attempts, 1);
    ddbk_client_free(c);

    /* The credentials come over https too, verified with the same file. */
    snprintf(uri, sizeof uri, "https://127.0.0.1:%d/creds", port);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    cfg.access_key_id = cfg.secret_access_key = NULL;
    cfg.ca_file = ca;
    cfg.max_attempts = 1;
    c = g_client = new_ok(&cfg);
    if (ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err) != 0)
        fail_msg("%s: %s", err.code, err.message);
    ddbk_client_free(c);
    g_client = NULL;
    const char *log = slurp(log_path());
    assert_non_null(log);
    assert_non_null(strstr(log, "GET /creds HTTP/1.1"));
    assert_non_null(strstr(log, "Credential=AKIDROT1/"));

    /* The other CA: the fetch fails on the certificate, and says so. */
    cfg.ca_file = other;
    c = g_client = new_ok(&cfg);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &g_resp, &err), -1);
    responder_stop();
    assert_string_equal(err.code, "CredentialsError");
    if (strstr(err.message, "TLS: certificate verification failed") == NULL)
        fail_msg("message \"%s\" does not name the TLS failure", err.message);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_endpoint_validation),
        T(test_endpoint_bad_port),
        T(test_endpoint_forms),
        T(test_region_resolution),
        T(test_overlong_region_not_replaced),
        T(test_endpoint_env),
        T(test_bad_numbers),
        T(test_missing_credentials),
        T(test_secret_never_in_messages),
        T(test_call_closed_port),
        T(test_call_invalid_op),
        T(test_call_timeout),
        T(test_call_success_after_retry),
        T(test_call_success_clears_error),
        T(test_call_error_response),
        T(test_call_response_too_large),
        T(test_call_lost_answer_is_an_attempt),
        T(test_call_lost_answer_single_attempt),
        T(test_call_ccf_after_lost_answer),
        T(test_request_id_control_bytes),
        T(test_call_success_after_lost_answer),
        T(test_fips_dualstack_endpoints),
        T(test_ca_file),
        T(test_call_refresh_rotation),
        T(test_clone_shares_rotation),
        T(test_host_credentials),
        T(test_tls_ca_file),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
