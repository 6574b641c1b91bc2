/*
 * engine/prepare.c: an operation and its body become a signed DynamoDB
 * request: method, URL, the Host header (default port dropped), the JSON
 * content type, X-Amz-Date, X-Amz-Target, the session token when there is
 * one, and the Authorization header, whose signature is also recomputed
 * here from a hand-built canonical request with libcrypto's HMAC().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "internal.h"

#define T0 1440938160 /* 2015-08-30T12:36:00Z */
#define AUTH_PREFIX                                                         \
    "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/dynamodb/aws4_request, " \
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static ddbk_client *client_for(const char *endpoint, const char *token)
{
    ddbk_config cfg;
    ddbk_error err;
    ddbk_client *c;

    ddbk_config_init(&cfg);
    cfg.endpoint = endpoint;
    cfg.region = "us-east-1";
    cfg.access_key_id = "AKID";
    cfg.secret_access_key = SECRET;
    cfg.session_token = token;
    c = ddbk_client_new(&cfg, &err);
    if (c == NULL)
        fail_msg("ddbk_client_new(%s): %s: %s", endpoint, err.code, err.message);
    return c;
}

static const char *header(const ddbk_request *r, const char *name)
{
    const char *found = NULL;

    for (int i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0) {
            if (found != NULL)
                fail_msg("header %s twice", name);
            found = r->headers[i].value;
        }
    return found;
}

static void prepare_ok(ddbk_client *c, const char *op, const char *body,
                       int64_t t, ddbk_request *r)
{
    ddbk_error err;

    memset(r, 0x5a, sizeof *r);
    if (ddbk_prepare(c, op, body, body ? strlen(body) : 0, t, r, &err) != 0)
        fail_msg("ddbk_prepare(%s): %s: %s", op, err.code, err.message);
}

static const char *signature_of(const ddbk_request *r)
{
    const char *auth = header(r, "Authorization");
    assert_non_null(auth);
    const char *sig = strstr(auth, "Signature=");
    assert_non_null(sig);
    return sig + 10;
}

static int is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void test_basic(void **state)
{
    ddbk_client *c = client_for("http://127.0.0.1:8000", NULL);
    ddbk_request r;
    const char *body = "{\"TableName\":\"t\",\"Key\":{\"pk\":{\"S\":\"a\"}}}";

    (void)state;
    prepare_ok(c, "GetItem", body, T0, &r);
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.url, "http://127.0.0.1:8000/");
    assert_string_equal(r.host, "127.0.0.1:8000");
    assert_ptr_equal(r.body, body); /* borrowed, not copied */
    assert_int_equal(r.body_len, strlen(body));
    assert_int_equal(r.nheaders, 5);
    assert_string_equal(header(&r, "Host"), "127.0.0.1:8000");
    assert_string_equal(header(&r, "Content-Type"), "application/x-amz-json-1.0");
    assert_string_equal(header(&r, "X-Amz-Date"), "20150830T123600Z");
    assert_string_equal(header(&r, "X-Amz-Target"), "DynamoDB_20120810.GetItem");
    assert_null(header(&r, "X-Amz-Security-Token"));
    const char *auth = header(&r, "Authorization");
    assert_non_null(auth);
    assert_memory_equal(auth, AUTH_PREFIX, strlen(AUTH_PREFIX));
    assert_true(is_hex64(auth + strlen(AUTH_PREFIX)));
    /* The secret appears nowhere in the request. */
    for (int i = 0; i < r.nheaders; i++)
        assert_null(strstr(r.headers[i].value, SECRET));
    ddbk_client_free(c);
}

static void test_host_port(void **state)
{
    static const char *const cases[][3] = {
        /* endpoint, Host, url */
        {"http://127.0.0.1:8000", "127.0.0.1:8000", "http://127.0.0.1:8000/"},
        {"http://127.0.0.1:8000/", "127.0.0.1:8000", "http://127.0.0.1:8000/"},
        {"http://127.0.0.1:80", "127.0.0.1", "http://127.0.0.1/"},
        {"http://127.0.0.1", "127.0.0.1", "http://127.0.0.1/"},
        {"https://dynamodb.us-east-1.amazonaws.com:443", "dynamodb.us-east-1.amazonaws.com",
         "https://dynamodb.us-east-1.amazonaws.com/"},
        {"https://dynamodb.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com",
         "https://dynamodb.us-east-1.amazonaws.com/"},
        /* Only the scheme's own default port is dropped. */
        {"http://localhost:443", "localhost:443", "http://localhost:443/"},
        {"https://localhost:80", "localhost:80", "https://localhost:80/"},
        {"https://localhost:8443", "localhost:8443", "https://localhost:8443/"},
        {"http://localhost:8080", "localhost:8080", "http://localhost:8080/"},
        {"http://localhost:180", "localhost:180", "http://localhost:180/"},
        {"https://localhost:1443", "localhost:1443", "https://localhost:1443/"},
        {"http://[::1]:8000", "[::1]:8000", "http://[::1]:8000/"},
        {"http://[::1]:80", "[::1]", "http://[::1]/"},
    };
    ddbk_request r;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ddbk_client *c = client_for(cases[i][0], NULL);
        prepare_ok(c, "GetItem", "{}", T0, &r);
        if (strcmp(header(&r, "Host"), cases[i][1]) != 0)
            fail_msg("%s: Host %s, want %s", cases[i][0], header(&r, "Host"), cases[i][1]);
        assert_string_equal(r.host, cases[i][1]);
        assert_string_equal(r.url, cases[i][2]);
        ddbk_client_free(c);
    }
}

static void test_session_token(void **state)
{
    char token[1501];
    ddbk_request r;

    (void)state;
    for (int i = 0; i < 1500; i++)
        token[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64];
    token[1500] = '\0';
    ddbk_client *c = client_for("http://127.0.0.1:8000", token);
    prepare_ok(c, "PutItem", "{}", T0, &r);
    assert_int_equal(r.nheaders, 6);
    assert_string_equal(header(&r, "X-Amz-Security-Token"), token);
    const char *auth = header(&r, "Authorization");
    assert_non_null(strstr(auth, "SignedHeaders=content-type;host;x-amz-date;"
                                 "x-amz-security-token;x-amz-target, Signature="));
    assert_true(is_hex64(signature_of(&r)));
    assert_null(strstr(auth, token)); /* signed, not copied into the auth line */
    ddbk_client_free(c);

    /* The longest token the header holds, and one byte more. */
    char big[2049];
    memset(big, 'T', 2048);
    big[2047] = '\0';
    c = client_for("http://127.0.0.1:8000", big);
    prepare_ok(c, "GetItem", "{}", T0, &r);
    assert_int_equal(strlen(header(&r, "X-Amz-Security-Token")), 2047);
    ddbk_client_free(c);
    big[2047] = 'T';
    big[2048] = '\0';
    c = client_for("http://127.0.0.1:8000", big);
    ddbk_error err;
    assert_int_equal(ddbk_prepare(c, "GetItem", "{}", 2, T0, &r, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(strstr(err.message, "TTTTTTTT")); /* never echoes the token */
    ddbk_client_free(c);
}

static void test_signature_stability(void **state)
{
    ddbk_client *c = client_for("http://127.0.0.1:8000", NULL);
    ddbk_client *c2 = client_for("http://127.0.0.1:8000", NULL);
    ddbk_request r;
    char s1[65], s2[65];

    (void)state;
    prepare_ok(c, "GetItem", "{\"a\":1}", T0, &r);
    snprintf(s1, sizeof s1, "%s", signature_of(&r));
    prepare_ok(c, "GetItem", "{\"a\":1}", T0, &r);
    assert_string_equal(signature_of(&r), s1);
    /* Another client, same inputs: same signature (no hidden state). */
    prepare_ok(c2, "GetItem", "{\"a\":1}", T0, &r);
    assert_string_equal(signature_of(&r), s1);

    /* Body, op and time each change it. */
    prepare_ok(c, "GetItem", "{\"a\":2}", T0, &r);
    snprintf(s2, sizeof s2, "%s", signature_of(&r));
    assert_string_not_equal(s1, s2);
    prepare_ok(c, "PutItem", "{\"a\":1}", T0, &r);
    assert_string_not_equal(signature_of(&r), s1);
    prepare_ok(c, "GetItem", "{\"a\":1}", T0 + 1, &r);
    assert_string_not_equal(signature_of(&r), s1);
    /* Body bytes past body_len do not count. */
    ddbk_error err;
    assert_int_equal(ddbk_prepare(c, "GetItem", "{\"a\":1}XXXX", 7, T0, &r, &err), 0);
    assert_string_equal(signature_of(&r), s1);

    /* Across a day boundary and back: the cached key follows the date. */
    prepare_ok(c, "GetItem", "{\"a\":1}", T0 + 86400, &r);
    assert_string_equal(header(&r, "X-Amz-Date"), "20150831T123600Z");
    assert_non_null(strstr(header(&r, "Authorization"), "/20150831/us-east-1/"));
    prepare_ok(c, "GetItem", "{\"a\":1}", T0, &r);
    assert_string_equal(signature_of(&r), s1);
    ddbk_client_free(c);
    ddbk_client_free(c2);
}

static void test_invalid_op(void **state)
{
    static const char *const bad[] = {
        "Get Item", "", "Get\r\nX: y", "GetItem\n", "Get-Item", "Get.Item",
        "GetItem1", "G\xc3\xa9tItem", " GetItem",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 64 */
    };
    ddbk_client *c = client_for("http://127.0.0.1:8000", NULL);
    ddbk_request r;
    ddbk_error err;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(ddbk_prepare(c, bad[i], "{}", 2, T0, &r, &err), -1);
        assert_string_equal(err.code, "InvalidArgument");
        assert_true(err.message[0] != '\0');
    }
    assert_int_equal(ddbk_prepare(c, NULL, "{}", 2, T0, &r, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    /* 63 letters is still a name. */
    char op63[64];
    memset(op63, 'A', 63);
    op63[63] = '\0';
    prepare_ok(c, op63, "{}", T0, &r);
    assert_int_equal(strlen(header(&r, "X-Amz-Target")), 18 + 63);
    ddbk_client_free(c);
}

static void test_null_body(void **state)
{
    ddbk_client *c = client_for("http://127.0.0.1:8000", NULL);
    ddbk_request r;
    char sig[65];

    (void)state;
    prepare_ok(c, "ListTables", NULL, T0, &r);
    assert_non_null(r.body);
    assert_int_equal(r.body_len, 2);
    assert_memory_equal(r.body, "{}", 2);
    snprintf(sig, sizeof sig, "%s", signature_of(&r));
    /* NULL signs exactly as "{}". */
    prepare_ok(c, "ListTables", "{}", T0, &r);
    assert_string_equal(signature_of(&r), sig);
    ddbk_client_free(c);
}

static void test_time_now(void **state)
{
    ddbk_client *c = client_for("http://127.0.0.1:8000", NULL);
    ddbk_request r;
    char before[17], after[17];

    (void)state;
    time_t t1 = time(NULL);
    prepare_ok(c, "GetItem", "{}", 0, &r);
    time_t t2 = time(NULL);
    ddbk__amz_date((int64_t)t1, before);
    ddbk__amz_date((int64_t)t2, after);
    const char *d = header(&r, "X-Amz-Date");
    assert_true(strcmp(d, before) >= 0 && strcmp(d, after) <= 0);
    ddbk_client_free(c);
}

/* ---------------------------------------------- an independent signature */

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void sha256_hex(const char *s, size_t n, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s, n, d);
    hex(d, sizeof d, out);
}

static void hmac(const unsigned char *key, size_t klen, const char *msg,
                 unsigned char out[32])
{
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg,
                         strlen(msg), out, &n));
    assert_int_equal(n, 32);
}

/* SigV4 by the book for one DynamoDB POST. */
static void expected_signature(const char *host, const char *token,
                               const char *target, const char *body,
                               char out[65])
{
    char canonical[4096], sts[512], body_hash[65], creq_hash[65];
    char k0[128];
    unsigned char a[32], b[32];

    sha256_hex(body, strlen(body), body_hash);
    if (token != NULL)
        snprintf(canonical, sizeof canonical,
                 "POST\n/\n\n"
                 "content-type:application/x-amz-json-1.0\n"
                 "host:%s\n"
                 "x-amz-date:20150830T123600Z\n"
                 "x-amz-security-token:%s\n"
                 "x-amz-target:%s\n\n"
                 "content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n%s",
                 host, token, target, body_hash);
    else
        snprintf(canonical, sizeof canonical,
                 "POST\n/\n\n"
                 "content-type:application/x-amz-json-1.0\n"
                 "host:%s\n"
                 "x-amz-date:20150830T123600Z\n"
                 "x-amz-target:%s\n\n"
                 "content-type;host;x-amz-date;x-amz-target\n%s",
                 host, target, body_hash);
    sha256_hex(canonical, strlen(canonical), creq_hash);
    snprintf(sts, sizeof sts,
             "AWS4-HMAC-SHA256\n20150830T123600Z\n"
             "20150830/us-east-1/dynamodb/aws4_request\n%s", creq_hash);

    snprintf(k0, sizeof k0, "AWS4%s", SECRET);
    hmac((const unsigned char *)k0, strlen(k0), "20150830", a);
    hmac(a, 32, "us-east-1", b);
    hmac(b, 32, "dynamodb", a);
    hmac(a, 32, "aws4_request", b);
    hmac(b, 32, sts, a);
    hex(a, 32, out);
}

static void test_signature_by_hand(void **state)
{
    const char *body = "{\"TableName\":\"Music\",\"Key\":{\"Artist\":{\"S\":\"No One You Know\"}}}";
    char want[65];
    ddbk_request r;

    (void)state;
    ddbk_client *c = client_for("http://127.0.0.1:8000", NULL);
    prepare_ok(c, "GetItem", body, T0, &r);
    expected_signature("127.0.0.1:8000", NULL, "DynamoDB_20120810.GetItem", body, want);
    assert_string_equal(signature_of(&r), want);
    char full[512];
    snprintf(full, sizeof full, AUTH_PREFIX "%s", want);
    assert_string_equal(header(&r, "Authorization"), full);
    ddbk_client_free(c);

    /* With the default port dropped and a session token. */
    c = client_for("https://dynamodb.us-east-1.amazonaws.com:443", "FQoGZXIvYXdzEXAMPLETOKEN");
    prepare_ok(c, "Query", "{}", T0, &r);
    expected_signature("dynamodb.us-east-1.amazonaws.com", "FQoGZXIvYXdzEXAMPLETOKEN",
                       "DynamoDB_20120810.Query", "{}", want);
    assert_string_equal(signature_of(&r), want);
    ddbk_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_host_port),
        cmocka_unit_test(test_session_token),
        cmocka_unit_test(test_signature_stability),
        cmocka_unit_test(test_invalid_op),
        cmocka_unit_test(test_null_body),
        cmocka_unit_test(test_time_now),
        cmocka_unit_test(test_signature_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
