/*
 * engine/cred_fetch.c: the fetch machine, driven by hand with fed answers
 * (no network). For each provider the exact request sequence (method, URL,
 * headers, body; AssumeRole's Authorization checked against a SigV4 the
 * test computes with the generic canonicaliser), a chained role
 * (source_profile -> static keys -> AssumeRole -> AssumeRole), and every
 * failure: no answer and timeouts (status 0), 5xx then success, throttling,
 * malformed JSON and XML, an IMDS session token that expired (401), an
 * expired SSO token, a missing or bad token file, a credential_process
 * that failed. Plans come from ddbk__plan_resolve over temporary files and
 * variables, as a host would have them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "creds.h"
#include "sigv4_canon.h"

#define NOW 1800000000LL /* 2027-01-15T08:00:00Z */
#define LATER "2030-01-01T00:00:00Z"
#define LATER_S 1893456000LL

static char tmpdir[256], cred_path[300], conf_path[300];

static const char *const vars[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SSO", "DDBKIT_CREDENTIAL_PROCESS_TIMEOUT_MS",
    NULL,
};

static double half(void)
{
    return 0.5;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ddbk_fetch_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    for (int i = 0; vars[i] != NULL; i++)
        unsetenv(vars[i]);
    setenv("HOME", tmpdir, 1);
    path_in(cred_path, sizeof cred_path, "credentials");
    path_in(conf_path, sizeof conf_path, "config");
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
    setenv("AWS_CONFIG_FILE", conf_path, 1);
    /* Never the real link-local address, though nothing here sends. */
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9", 1);
    ddbk__test_random = half;
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    ddbk__test_random = NULL;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static ddbk__fetch *start(const ddbk_config *cfg, ddbk__plan *plan)
{
    ddbk_error err;
    ddbk__fetch *f;

    if (ddbk__plan_resolve(cfg, plan, &err) != 0)
        fail_msg("resolve failed: %s: %s", err.code, err.message);
    f = ddbk__fetch_new(plan, NOW, &err);
    assert_non_null(f);
    return f;
}

static const char *hdr(const ddbk__action *a, const char *name)
{
    for (int i = 0; i < a->nheaders; i++)
        if (strcasecmp(a->header_name[i], name) == 0)
            return a->header_value[i];
    return NULL;
}

/* The next action is an HTTP request of `method` to `url`. */
static void expect_http(ddbk__fetch *f, ddbk__action *a, const char *method, const char *url)
{
    ddbk__fetch_next(f, NOW, a);
    if (a->kind != DDBK__ACT_HTTP) {
        ddbk__fetched out;
        ddbk_error err;
        ddbk__fetch_result(f, &out, &err);
        fail_msg("expected HTTP %s %s, got action %d (%s: %s)", method, url, a->kind, err.code,
                 err.message);
    }
    assert_string_equal(a->method, method);
    assert_string_equal(a->url, url);
}

static void feed(ddbk__fetch *f, long status, const char *body)
{
    ddbk__fetch_feed_http(f, status, 0, NULL, body, body ? strlen(body) : 0);
}

static void expect_done(ddbk__fetch *f, const char *id, const char *secret, const char *token,
                        int64_t expires_at)
{
    ddbk__action a;
    ddbk__fetched out;
    ddbk_error err;

    ddbk__fetch_next(f, NOW, &a);
    if (a.kind != DDBK__ACT_DONE) {
        ddbk__fetch_result(f, &out, &err);
        fail_msg("expected DONE, got %d (%s: %s)", a.kind, err.code, err.message);
    }
    assert_int_equal(ddbk__fetch_result(f, &out, &err), 0);
    assert_string_equal(out.access_key_id, id);
    assert_string_equal(out.secret_access_key, secret);
    if (token == NULL)
        assert_null(out.session_token);
    else
        assert_string_equal(out.session_token, token);
    assert_int_equal(out.expires_at, expires_at);
    ddbk__fetched_wipe(&out);
}

/* FAILED with code; the message holds every `want` (NULL-terminated) and
 * none of the secrets the tests use. */
static void expect_failed(ddbk__fetch *f, const char *code, ...)
{
    static const char *const secrets[] = {"SECRET", "TOKENVALUE", "BEARER", "WEBTOKEN",
                                          "IMDSTOKEN", "AUTHTOKEN", NULL};
    ddbk__action a;
    ddbk__fetched out;
    ddbk_error err;
    va_list ap;
    const char *w;

    ddbk__fetch_next(f, NOW, &a);
    assert_int_equal(a.kind, DDBK__ACT_FAILED);
    assert_int_equal(ddbk__fetch_result(f, &out, &err), -1);
    assert_null(out.access_key_id);
    assert_string_equal(err.code, code);
    va_start(ap, code);
    while ((w = va_arg(ap, const char *)) != NULL)
        if (strstr(err.message, w) == NULL)
            fail_msg("message \"%s\" lacks \"%s\"", err.message, w);
    va_end(ap);
    for (int i = 0; secrets[i] != NULL; i++)
        if (strstr(err.message, secrets[i]) != NULL)
            fail_msg("message \"%s\" leaks a secret", err.message);
}

static void expect_sleep(ddbk__fetch *f, long ms)
{
    ddbk__action a;
    ddbk__fetch_next(f, NOW, &a);
    assert_int_equal(a.kind, DDBK__ACT_SLEEP);
    assert_int_equal(a.sleep_ms, ms);
}

static char json[1024];

static const char *creds_json(const char *id, const char *token)
{
    snprintf(json, sizeof json,
             "{\"Code\":\"Success\",\"AccessKeyId\":\"%s\",\"SecretAccessKey\":\"SECRET-%s\","
             "\"Token\":\"%s\",\"Expiration\":\"" LATER "\"}",
             id, id, token);
    return json;
}

static char xml[2048];

static const char *sts_xml(const char *action, const char *id, const char *token)
{
    snprintf(xml, sizeof xml,
             "<%sResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><%sResult>"
             "<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>SECRET-%s"
             "</SecretAccessKey><SessionToken>%s</SessionToken><Expiration>" LATER
             "</Expiration></Credentials></%sResult></%sResponse>",
             action, action, id, id, token, action, action);
    return xml;
}

static const char *sts_error(const char *code)
{
    snprintf(xml, sizeof xml,
             "<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>not "
             "allowed</Message></Error><RequestId>r1</RequestId></ErrorResponse>",
             code);
    return xml;
}

/* ------------------------------------------------------------ IMDS */

static void test_imds_sequence(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    f = start(NULL, &plan);
    assert_string_equal(plan.provider, "imds");
    assert_string_equal(ddbk__fetch_provider(f), "imds");

    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    assert_string_equal(hdr(&a, "X-aws-ec2-metadata-token-ttl-seconds"), "21600");
    assert_int_equal(a.connect_timeout_ms, 1000);
    assert_int_equal(a.timeout_ms, 1000);
    assert_null(a.body);
    feed(f, 200, "IMDSTOKEN-1");

    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
    assert_string_equal(hdr(&a, "X-aws-ec2-metadata-token"), "IMDSTOKEN-1");
    feed(f, 200, "web-role\nother\n");

    expect_http(f, &a, "GET",
                "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/web-role");
    assert_string_equal(hdr(&a, "X-aws-ec2-metadata-token"), "IMDSTOKEN-1");
    feed(f, 200, creds_json("ASIAIMDS", "TOKENVALUE-imds"));

    expect_done(f, "ASIAIMDS", "SECRET-ASIAIMDS", "TOKENVALUE-imds", LATER_S);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

static void test_imds_token_expired_refetched_once(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    f = start(NULL, &plan);
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    feed(f, 200, "IMDSTOKEN-1");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
    feed(f, 200, "r");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/r");
    feed(f, 401, "");
    /* A new session token, then the credentials again (the role is known). */
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    feed(f, 200, "IMDSTOKEN-2");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/r");
    assert_string_equal(hdr(&a, "X-aws-ec2-metadata-token"), "IMDSTOKEN-2");
    /* A second 401 is not retried again. */
    feed(f, 401, "");
    expect_failed(f, "CredentialsError", "imds", "GET credentials", "HTTP 401", NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

static void test_imds_no_answer(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    f = start(NULL, &plan);
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    ddbk__fetch_feed_http(f, 0, 1, "Connection timed out after 1000 ms", NULL, 0);
    expect_sleep(f, 50); /* full jitter of 100 ms, drawn at 0.5 */
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    ddbk__fetch_feed_http(f, 0, 1, "Connection timed out after 1000 ms", NULL, 0);
    /* Two attempts for IMDS, and the whole chain's story in one message. */
    expect_failed(f, "MissingCredentials", "imds: PUT token: timed out", "after 2 attempts",
                  "environment: AWS_ACCESS_KEY_ID not set", "web-identity:",
                  "profile: no profile \"default\"", "container:", NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

static void test_imds_no_role(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    f = start(NULL, &plan);
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    feed(f, 200, "IMDSTOKEN");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
    feed(f, 404, "");
    expect_failed(f, "CredentialsError", "no IAM role is attached", NULL);
    ddbk__fetch_free(f);

    /* A role name that is not one never reaches a URL. */
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    feed(f, 200, "IMDSTOKEN");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
    feed(f, 200, "../../x");
    expect_failed(f, "CredentialsError", "not a role name", NULL);
    ddbk__fetch_free(f);

    /* A Code other than Success. */
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    feed(f, 200, "IMDSTOKEN");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
    feed(f, 200, "r");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/r");
    feed(f, 200, "{\"Code\":\"AssumeRoleUnauthorizedAccess\"}");
    expect_failed(f, "CredentialsError", "imds", NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

/* ------------------------------------------------------------ container */

static void test_container_token_file(void **state)
{
    char tf[300];
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    path_in(tf, sizeof tf, "pod-token");
    write_file(tf, "AUTHTOKEN-1\n");
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:8080/v1/credentials", 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tf, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "AUTHTOKEN-env", 1); /* the file wins */
    f = start(NULL, &plan);
    assert_string_equal(plan.provider, "container");
    assert_string_equal(plan.id, "container||http://127.0.0.1:8080/v1/credentials");

    expect_http(f, &a, "GET", "http://127.0.0.1:8080/v1/credentials");
    assert_string_equal(hdr(&a, "Authorization"), "AUTHTOKEN-1");
    feed(f, 503, "busy");
    expect_sleep(f, 50);
    /* The file is read again at each request: it rotates. */
    write_file(tf, "AUTHTOKEN-2");
    expect_http(f, &a, "GET", "http://127.0.0.1:8080/v1/credentials");
    assert_string_equal(hdr(&a, "Authorization"), "AUTHTOKEN-2");
    feed(f, 500, "");
    expect_sleep(f, 100);
    expect_http(f, &a, "GET", "http://127.0.0.1:8080/v1/credentials");
    feed(f, 200, creds_json("ASIACONT", "TOKENVALUE-c"));
    expect_done(f, "ASIACONT", "SECRET-ASIACONT", "TOKENVALUE-c", LATER_S);
    ddbk__fetch_free(f);

    /* A token holding a line break never becomes a header. */
    write_file(tf, "AUTHTOKEN\r\nX-Evil: 1");
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_failed(f, "CredentialsError", "container", tf, "not one line", NULL);
    ddbk__fetch_free(f);
    /* Nor does a missing one become an empty header. */
    unlink(tf);
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_failed(f, "CredentialsError", tf, "missing", NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

static void test_container_relative_and_failures(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc", 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "AUTHTOKEN-env", 1);
    f = start(NULL, &plan);
    expect_http(f, &a, "GET", "http://169.254.170.2/v2/credentials/abc");
    assert_string_equal(hdr(&a, "Authorization"), "AUTHTOKEN-env");
    feed(f, 200, "{\"AccessKeyId\":\"A\"");  /* cut short */
    expect_failed(f, "CredentialsError", "container: GET credentials", "MalformedResponse",
                  NULL);
    ddbk__fetch_free(f);

    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_http(f, &a, "GET", "http://169.254.170.2/v2/credentials/abc");
    feed(f, 403, "{}");
    expect_failed(f, "CredentialsError", "HTTP 403", NULL);
    ddbk__fetch_free(f);

    /* Three attempts at most, then the last cause. */
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    for (int i = 0; i < 3; i++) {
        if (i > 0)
            expect_sleep(f, 50L << (i - 1));
        expect_http(f, &a, "GET", "http://169.254.170.2/v2/credentials/abc");
        ddbk__fetch_feed_http(f, 0, 0, "Connection refused", NULL, 0);
    }
    expect_failed(f, "CredentialsError", "no answer: Connection refused", "after 3 attempts",
                  NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

/* ------------------------------------------------------------ STS */

/* The action's Authorization is the SigV4 of its own headers and body,
 * computed by the generic canonicaliser with these keys. */
static void check_signed(const ddbk__action *a, const char *id, const char *secret,
                         const char *region, const char *path)
{
    ddbk_kv h[4];
    int n = 0;
    ddbk_sigv4_request req;
    ddbk_sigv4_key key;
    ddbk_sigv4_out out;
    ddbk_error err;

    h[n++] = (ddbk_kv){"Content-Type", hdr(a, "Content-Type")};
    h[n++] = (ddbk_kv){"Host", hdr(a, "Host")};
    h[n++] = (ddbk_kv){"X-Amz-Date", hdr(a, "X-Amz-Date")};
    if (hdr(a, "X-Amz-Security-Token") != NULL)
        h[n++] = (ddbk_kv){"X-Amz-Security-Token", hdr(a, "X-Amz-Security-Token")};
    for (int i = 0; i < n; i++)
        assert_non_null(h[i].value);
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = path;
    req.headers = h;
    req.nheaders = n;
    req.body = a->body;
    req.body_len = a->body_len;
    req.normalize_path = 1;
    memset(&key, 0, sizeof key);
    assert_int_equal(ddbk__sigv4_sign(&req, id, secret, region, "sts", hdr(a, "X-Amz-Date"),
                                      &key, NULL, NULL, &out, &err),
                     0);
    assert_string_equal(hdr(a, "Authorization"), out.authorization);
    assert_string_equal(hdr(a, "X-Amz-Date"), "20270115T080000Z");
}

static int body_has(const ddbk__action *a, const char *part)
{
    char buf[4096];
    assert_true(a->body_len < sizeof buf);
    memcpy(buf, a->body, a->body_len);
    buf[a->body_len] = '\0';
    return strstr(buf, part) != NULL;
}

static void test_role_chain(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;
    ddbk_config cfg;

    (void)state;
    write_file(cred_path, "[base]\naws_access_key_id = AKIABASE\n"
                          "aws_secret_access_key = SECRET-base\n");
    write_file(conf_path, "[profile top]\nrole_arn = arn:aws:iam::111111111111:role/top\n"
                          "source_profile = mid\nexternal_id = ext-1\n"
                          "role_session_name = top-session\nduration_seconds = 1800\n"
                          "[profile mid]\nrole_arn = arn:aws:iam::222222222222:role/mid\n"
                          "source_profile = base\n"
                          "[profile base]\nregion = eu-west-3\n");
    memset(&cfg, 0, sizeof cfg);
    cfg.profile = "top";
    f = start(&cfg, &plan);
    assert_int_equal(plan.nsteps, 3);
    assert_int_equal(plan.steps[0].kind, DDBK__STEP_STATIC);
    assert_string_equal(plan.steps[0].profile, "base");
    assert_string_equal(plan.steps[1].profile, "mid");
    assert_string_equal(plan.provider, "assume-role");
    assert_string_equal(plan.id, "assume-role|top|arn:aws:iam::111111111111:role/top");
    /* No region anywhere for "top": STS in us-east-1, regional. */
    assert_string_equal(plan.steps[2].sts_url, "https://sts.us-east-1.amazonaws.com/");

    /* Hop 1: mid's role, signed with base's static keys (no token). */
    expect_http(f, &a, "POST", "https://sts.us-east-1.amazonaws.com/");
    assert_string_equal(hdr(&a, "Content-Type"),
                        "application/x-www-form-urlencoded; charset=utf-8");
    assert_string_equal(hdr(&a, "Host"), "sts.us-east-1.amazonaws.com");
    assert_null(hdr(&a, "X-Amz-Security-Token"));
    assert_true(body_has(&a, "Action=AssumeRole&Version=2011-06-15"));
    assert_true(body_has(&a, "RoleArn=arn%3Aaws%3Aiam%3A%3A222222222222%3Arole%2Fmid"));
    assert_true(body_has(&a, "RoleSessionName=ddbkit-1800000000000"));
    assert_false(body_has(&a, "ExternalId"));
    assert_int_equal(a.timeout_ms, 10000);
    assert_non_null(strstr(hdr(&a, "Authorization"),
                            "Credential=AKIABASE/20270115/us-east-1/sts/aws4_request"));
    check_signed(&a, "AKIABASE", "SECRET-base", "us-east-1", "/");
    feed(f, 200, sts_xml("AssumeRole", "ASIAMID", "TOKENVALUE-mid"));

    /* Hop 2: top's role, signed with mid's temporary keys and token. */
    expect_http(f, &a, "POST", "https://sts.us-east-1.amazonaws.com/");
    assert_string_equal(hdr(&a, "X-Amz-Security-Token"), "TOKENVALUE-mid");
    assert_true(body_has(&a, "RoleSessionName=top-session"));
    assert_true(body_has(&a, "ExternalId=ext-1"));
    assert_true(body_has(&a, "DurationSeconds=1800"));
    check_signed(&a, "ASIAMID", "SECRET-ASIAMID", "us-east-1", "/");
    feed(f, 200, sts_xml("AssumeRole", "ASIATOP", "TOKENVALUE-top"));

    expect_done(f, "ASIATOP", "SECRET-ASIATOP", "TOKENVALUE-top", LATER_S);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

static void test_sts_endpoint_and_errors(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    write_file(cred_path, "[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = k\n"
                          "[k]\naws_access_key_id = AKIAK\naws_secret_access_key = SECRET-k\n");
    setenv("AWS_REGION", "eu-north-1", 1);
    setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:4566/sts", 1);
    f = start(NULL, &plan);
    assert_string_equal(plan.steps[1].sts_region, "eu-north-1");

    /* Throttling is retried, then AccessDenied ends it with STS's code. */
    expect_http(f, &a, "POST", "http://127.0.0.1:4566/sts");
    assert_string_equal(hdr(&a, "Host"), "127.0.0.1:4566");
    check_signed(&a, "AKIAK", "SECRET-k", "eu-north-1", "/sts");
    feed(f, 400, sts_error("Throttling"));
    expect_sleep(f, 50);
    expect_http(f, &a, "POST", "http://127.0.0.1:4566/sts");
    feed(f, 403, sts_error("AccessDenied"));
    expect_failed(f, "AccessDenied", "assume-role (profile \"default\"): AssumeRole",
                  "not allowed", NULL);
    ddbk__fetch_free(f);

    /* A 5xx, then garbage where XML should be. */
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_http(f, &a, "POST", "http://127.0.0.1:4566/sts");
    feed(f, 502, "<html>bad gateway</html>");
    expect_sleep(f, 50);
    expect_http(f, &a, "POST", "http://127.0.0.1:4566/sts");
    feed(f, 200, "<AssumeRoleResponse><AssumeRoleResult>");
    expect_failed(f, "CredentialsError", "AssumeRole", "MalformedResponse", NULL);
    ddbk__fetch_free(f);

    /* AWS_ENDPOINT_URL serves STS too when AWS_ENDPOINT_URL_STS is unset. */
    ddbk__plan_wipe(&plan);
    unsetenv("AWS_ENDPOINT_URL_STS");
    setenv("AWS_ENDPOINT_URL", "https://localhost.localstack.cloud:4566", 1);
    f = start(NULL, &plan);
    expect_http(f, &a, "POST", "https://localhost.localstack.cloud:4566/");
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

static void test_web_identity(void **state)
{
    char tf[300];
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    path_in(tf, sizeof tf, "irsa-token");
    write_file(tf, "WEBTOKEN-1\n");
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tf, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::3:role/irsa", 1);
    setenv("AWS_ROLE_SESSION_NAME", "pod-7", 1);
    setenv("AWS_DEFAULT_REGION", "ap-southeast-2", 1);
    f = start(NULL, &plan);
    assert_string_equal(plan.provider, "web-identity");

    expect_http(f, &a, "POST", "https://sts.ap-southeast-2.amazonaws.com/");
    assert_null(hdr(&a, "Authorization"));  /* unsigned */
    assert_true(body_has(&a, "Action=AssumeRoleWithWebIdentity"));
    assert_true(body_has(&a, "RoleSessionName=pod-7"));
    assert_true(body_has(&a, "WebIdentityToken=WEBTOKEN-1&") ||
                body_has(&a, "WebIdentityToken=WEBTOKEN-1"));
    assert_false(body_has(&a, "%0A")); /* the file's newline trimmed */
    feed(f, 200, sts_xml("AssumeRoleWithWebIdentity", "ASIAWEB", "TOKENVALUE-w"));
    expect_done(f, "ASIAWEB", "SECRET-ASIAWEB", "TOKENVALUE-w", LATER_S);
    ddbk__fetch_free(f);

    /* An empty token file, then none: the file is named. */
    write_file(tf, "\n");
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_failed(f, "CredentialsError", "web-identity: AssumeRoleWithWebIdentity", tf, "empty",
                  NULL);
    ddbk__fetch_free(f);
    unlink(tf);
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_failed(f, "CredentialsError", tf, "missing", NULL);
    ddbk__fetch_free(f);

    /* An expired token is STS's to say. */
    write_file(tf, "WEBTOKEN-old");
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_http(f, &a, "POST", "https://sts.ap-southeast-2.amazonaws.com/");
    feed(f, 400, sts_error("ExpiredTokenException"));
    expect_failed(f, "ExpiredTokenException", "web-identity", NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

/* ------------------------------------------------------------ SSO */

static void sso_cache(const char *key, const char *body)
{
    unsigned char md[20];
    unsigned int n = 0;
    char dir[400], path[500], hex[41];

    snprintf(dir, sizeof dir, "%s/.aws", tmpdir);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/.aws/sso", tmpdir);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/.aws/sso/cache", tmpdir);
    mkdir(dir, 0700);
    assert_int_equal(EVP_Digest(key, strlen(key), md, &n, EVP_sha1(), NULL), 1);
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(path, sizeof path, "%s/%s.json", dir, hex);
    write_file(path, body);
}

static void test_sso(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;

    (void)state;
    write_file(conf_path, "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\n"
                          "sso_role_name = Dev Role\n"
                          "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n"
                          "sso_region = eu-west-1\n");
    setenv("AWS_PROFILE", "dev", 1);
    sso_cache("corp", "{\"accessToken\":\"BEARER-1\",\"expiresAt\":\"" LATER "\"}");
    f = start(NULL, &plan);
    assert_string_equal(plan.provider, "sso");

    expect_http(f, &a, "GET",
                "https://portal.sso.eu-west-1.amazonaws.com/federation/credentials"
                "?account_id=123456789012&role_name=Dev%20Role");
    assert_string_equal(hdr(&a, "x-amz-sso_bearer_token"), "BEARER-1");
    feed(f, 200,
         "{\"roleCredentials\":{\"accessKeyId\":\"ASIASSO\",\"secretAccessKey\":\"SECRET-s\","
         "\"sessionToken\":\"TOKENVALUE-s\",\"expiration\":1893456000000}}");
    expect_done(f, "ASIASSO", "SECRET-s", "TOKENVALUE-s", LATER_S);
    ddbk__fetch_free(f);

    /* The portal refusing the token. */
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_http(f, &a, "GET",
                "https://portal.sso.eu-west-1.amazonaws.com/federation/credentials"
                "?account_id=123456789012&role_name=Dev%20Role");
    feed(f, 401, "{}");
    expect_failed(f, "CredentialsError", "aws sso login", NULL);
    ddbk__fetch_free(f);

    /* An expired cached token: no request at all. */
    sso_cache("corp", "{\"accessToken\":\"BEARER-1\",\"expiresAt\":\"2020-01-01T00:00:00Z\"}");
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_failed(f, "CredentialsError",
                  "sso (profile \"dev\"): GetRoleCredentials: the SSO session has expired: "
                  "run `aws sso login`",
                  NULL);
    ddbk__fetch_free(f);

    /* No cached token at all: no request, and what to do about it. */
    {
        char cache[400];
        unsigned char md[20];
        unsigned int n = 0;
        char hex[41];
        EVP_Digest("corp", 4, md, &n, EVP_sha1(), NULL);
        for (unsigned i = 0; i < n; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        snprintf(cache, sizeof cache, "%s/.aws/sso/cache/%s.json", tmpdir, hex);
        assert_int_equal(unlink(cache), 0);
    }
    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    expect_failed(f, "CredentialsError", "no SSO token in", "missing", "run `aws sso login`",
                  NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);

    /* The legacy form keys the cache by the start URL; AWS_ENDPOINT_URL_SSO. */
    write_file(conf_path, "[profile dev]\nsso_start_url = https://old.awsapps.com/start\n"
                          "sso_region = us-east-2\nsso_account_id = 1\nsso_role_name = r\n");
    setenv("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:7000/", 1);
    sso_cache("https://old.awsapps.com/start",
              "{\"accessToken\":\"BEARER-2\",\"expiresAt\":\"" LATER "\"}");
    f = start(NULL, &plan);
    expect_http(f, &a, "GET",
                "http://127.0.0.1:7000/federation/credentials?account_id=1&role_name=r");
    assert_string_equal(hdr(&a, "x-amz-sso_bearer_token"), "BEARER-2");
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

/* ------------------------------------------------------------ process */

static void test_process(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;
    const char *out = "{\"Version\":1,\"AccessKeyId\":\"AKIAPROC\","
                      "\"SecretAccessKey\":\"SECRET-p\"}";

    (void)state;
    write_file(conf_path, "[default]\ncredential_process = /opt/bin/helper --account \"a b\"\n");
    setenv("DDBKIT_CREDENTIAL_PROCESS_TIMEOUT_MS", "250", 1);
    f = start(NULL, &plan);
    assert_string_equal(plan.provider, "process");

    ddbk__fetch_next(f, NOW, &a);
    assert_int_equal(a.kind, DDBK__ACT_EXEC);
    assert_string_equal(a.argv[0], "/opt/bin/helper");
    assert_string_equal(a.argv[1], "--account");
    assert_string_equal(a.argv[2], "a b");
    assert_null(a.argv[3]);
    assert_int_equal(a.exec_timeout_ms, 250);
    assert_int_equal(a.max_output_bytes, 65536);
    ddbk__fetch_feed_exec(f, 0, NULL, out, strlen(out));
    expect_done(f, "AKIAPROC", "SECRET-p", NULL, 0);
    ddbk__fetch_free(f);

    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    ddbk__fetch_next(f, NOW, &a);
    ddbk__fetch_feed_exec(f, -1, "timed out", NULL, 0);
    expect_failed(f, "CredentialsError", "process (profile \"default\"): credential_process: "
                                         "timed out", NULL);
    ddbk__fetch_free(f);

    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    ddbk__fetch_next(f, NOW, &a);
    ddbk__fetch_feed_exec(f, 2, NULL, "", 0);
    expect_failed(f, "CredentialsError", "exited with status 2", NULL);
    ddbk__fetch_free(f);

    f = ddbk__fetch_new(&plan, NOW, &(ddbk_error){0});
    ddbk__fetch_next(f, NOW, &a);
    ddbk__fetch_feed_exec(f, 0, NULL, "garbage", 7);
    expect_failed(f, "CredentialsError", "MalformedResponse", NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);

    /* A real run, through the runner, of a command the test writes. */
    char script[300], line[400];
    path_in(script, sizeof script, "helper.sh");
    write_file(script, "#!/bin/sh\nprintf '{\"Version\":1,\"AccessKeyId\":\"AKIAREAL\","
                       "\"SecretAccessKey\":\"SECRET-r\",\"SessionToken\":\"TOKENVALUE-r\","
                       "\"Expiration\":\"" LATER "\"}'\n");
    chmod(script, 0700);
    snprintf(line, sizeof line, "[default]\ncredential_process = %s\n", script);
    write_file(conf_path, line);
    f = start(NULL, &plan);
    ddbk__fetch_next(f, NOW, &a);
    assert_int_equal(a.kind, DDBK__ACT_EXEC);
    {
        ddbk_buf buf;
        const char *what;
        int rc;
        ddbk_buf_init(&buf, 0);
        rc = ddbk__process_run(a.argv, 5000, a.max_output_bytes, &buf, &what);
        ddbk__fetch_feed_exec(f, rc, what, buf.data, buf.len);
        ddbk_buf_free(&buf);
    }
    expect_done(f, "AKIAREAL", "SECRET-r", "TOKENVALUE-r", LATER_S);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

/* ------------------------------------------------------------ sources */

static void test_credential_source(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;
    ddbk_config cfg;

    (void)state;
    write_file(conf_path, "[profile ec2]\nrole_arn = arn:aws:iam::4:role/x\n"
                          "credential_source = Ec2InstanceMetadata\n"
                          "[profile ecs]\nrole_arn = arn:aws:iam::4:role/y\n"
                          "credential_source = EcsContainer\n"
                          "[profile envsrc]\nrole_arn = arn:aws:iam::4:role/z\n"
                          "credential_source = Environment\n");
    memset(&cfg, 0, sizeof cfg);
    cfg.profile = "ec2";
    f = start(&cfg, &plan);
    assert_int_equal(plan.nsteps, 2);
    assert_int_equal(plan.steps[0].kind, DDBK__STEP_IMDS);
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    feed(f, 200, "IMDSTOKEN");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
    feed(f, 200, "r");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/r");
    feed(f, 200, creds_json("ASIAI", "TOKENVALUE-i"));
    expect_http(f, &a, "POST", "https://sts.us-east-1.amazonaws.com/");
    assert_string_equal(hdr(&a, "X-Amz-Security-Token"), "TOKENVALUE-i");
    check_signed(&a, "ASIAI", "SECRET-ASIAI", "us-east-1", "/");
    /* The IMDS failure message of a hop names the step, not the chain. */
    feed(f, 403, sts_error("AccessDenied"));
    expect_failed(f, "AccessDenied", "assume-role (profile \"ec2\")", NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);

    cfg.profile = "ecs";
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://localhost:1/c", 1);
    f = start(&cfg, &plan);
    assert_int_equal(plan.steps[0].kind, DDBK__STEP_CONTAINER);
    expect_http(f, &a, "GET", "http://localhost:1/c");
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);

    cfg.profile = "envsrc";
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SECRET-env", 1);
    f = start(&cfg, &plan);
    assert_int_equal(plan.steps[0].kind, DDBK__STEP_STATIC);
    expect_http(f, &a, "POST", "https://sts.us-east-1.amazonaws.com/");
    check_signed(&a, "AKIAENV", "SECRET-env", "us-east-1", "/");
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}

static void test_static_and_host(void **state)
{
    ddbk__plan plan, copy;
    ddbk__fetch *f;
    ddbk_config cfg;
    ddbk_error err;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    cfg.access_key_id = "AKIACFG";
    cfg.secret_access_key = "SECRET-cfg";
    f = start(&cfg, &plan);
    assert_string_equal(plan.provider, "config");
    expect_done(f, "AKIACFG", "SECRET-cfg", NULL, 0);
    ddbk__fetch_free(f);
    /* A copy owns its keys: the original wiped, the copy still runs. */
    assert_int_equal(ddbk__plan_copy(&plan, &copy), 0);
    ddbk__plan_wipe(&plan);
    f = ddbk__fetch_new(&copy, NOW, &err);
    expect_done(f, "AKIACFG", "SECRET-cfg", NULL, 0);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&copy);

    memset(&cfg, 0, sizeof cfg);
    cfg.credentials_from_host = 1;
    f = start(&cfg, &plan);
    assert_string_equal(plan.provider, "host");
    expect_failed(f, "CredentialsError", "the host sets", NULL);
    ddbk__fetch_free(f);
    ddbk__plan_wipe(&plan);
}


/* A driver that asks twice, feeds the wrong kind of answer, or reads the
 * result early gets a sane machine, not a stall or a crash. */
static void test_driver_misuse(void **state)
{
    ddbk__plan plan;
    ddbk__action a;
    ddbk__fetch *f;
    ddbk__fetched out;
    ddbk_error err;

    (void)state;
    f = start(NULL, &plan);
    assert_int_equal(ddbk__fetch_result(f, &out, &err), -1);
    assert_non_null(strstr(err.message, "has not ended"));
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    /* Asked again without an answer: the same request again. */
    expect_http(f, &a, "PUT", "http://127.0.0.1:9/latest/api/token");
    /* An EXEC answer to an HTTP request is ignored. */
    ddbk__fetch_feed_exec(f, 0, NULL, "{}", 2);
    feed(f, 200, "IMDSTOKEN");
    expect_http(f, &a, "GET", "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/");
    ddbk__fetch_free(f);

    /* Freed mid-fetch, and freed NULL. */
    ddbk__fetch_free(NULL);
    ddbk__plan_wipe(&plan);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_imds_sequence),
        T(test_imds_token_expired_refetched_once),
        T(test_imds_no_answer),
        T(test_imds_no_role),
        T(test_container_token_file),
        T(test_container_relative_and_failures),
        T(test_role_chain),
        T(test_sts_endpoint_and_errors),
        T(test_web_identity),
        T(test_sso),
        T(test_process),
        T(test_credential_source),
        T(test_static_and_host),
        T(test_driver_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
