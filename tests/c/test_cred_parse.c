/*
 * engine/cred_parse.c: what credential services answer. ISO 8601 times
 * (against timegm over many dates, and every malformed shape), the JSON of
 * the container endpoint, IMDS, credential_process, the SSO portal and the
 * SSO token cache (each field's type, size, control characters, duplicates,
 * nesting), STS's XML (success, ErrorResponse codes and their retry flags,
 * DTDs and entities refused, depth and length bounds) and the STS form
 * body. Every failure leaves nothing behind and never shows a secret.
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

#include "creds.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN "IQoJb3JpZ2luX2VjEXAMPLETOKEN"
#define T_1300 1796389200 /* 2026-12-04T13:00:00Z */

/* ------------------------------------------------------------ helpers */

static int iso(const char *s, int64_t *t)
{
    return ddbk__iso8601_parse(s, strlen(s), t);
}

static void assert_empty(const ddbk__fetched *f)
{
    assert_null(f->access_key_id);
    assert_null(f->secret_access_key);
    assert_null(f->session_token);
    assert_int_equal(f->expires_at, 0);
}

/* A message never shows a value that could be a secret. */
static void assert_no_secret(const ddbk_error *err)
{
    assert_null(strstr(err->message, SECRET));
    assert_null(strstr(err->message, TOKEN));
    assert_null(strstr(err->code, SECRET));
}

/* Parses body (copied into a buffer of exactly its size, no terminator)
 * as kind; expects failure with code and a message holding `says`. */
static void json_fails(enum ddbk__json_kind kind, const char *body, const char *code,
                       const char *says)
{
    ddbk__fetched f;
    ddbk_error err;
    size_t n = strlen(body);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, body, n);
    memset(&f, 0x5a, sizeof f);
    if (ddbk__cred_json_parse(kind, copy, n, &f, &err) != -1)
        fail_msg("parsed, expected %s (%s): %s", code, says, body);
    assert_empty(&f);
    if (strcmp(err.code, code) != 0 || strstr(err.message, says) == NULL)
        fail_msg("got %s: %s; expected %s: ...%s... for %s", err.code, err.message, code, says,
                 body);
    assert_no_secret(&err);
    free(copy);
}

static void json_ok(enum ddbk__json_kind kind, const char *body, ddbk__fetched *f)
{
    ddbk_error err;
    size_t n = strlen(body);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, body, n);
    if (ddbk__cred_json_parse(kind, copy, n, f, &err) != 0)
        fail_msg("refused (%s: %s): %s", err.code, err.message, body);
    free(copy);
}

static void sts_fails(long status, const char *body, const char *code, const char *says,
                      int retryable, int throttling)
{
    ddbk__fetched f;
    ddbk_error err;
    size_t n = strlen(body);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, body, n);
    memset(&f, 0x5a, sizeof f);
    if (ddbk__sts_parse(status, copy, n, &f, &err) != -1)
        fail_msg("parsed, expected %s: %s", code, body);
    assert_empty(&f);
    if (strcmp(err.code, code) != 0 || strstr(err.message, says) == NULL)
        fail_msg("got %s: %s; expected %s: ...%s... for %s", err.code, err.message, code, says,
                 body);
    assert_int_equal(err.status, status);
    assert_int_equal(err.retryable, retryable);
    assert_int_equal(err.throttling, throttling);
    assert_no_secret(&err);
    free(copy);
}

/* ------------------------------------------------------------ wipe */

static void test_fetched_wipe(void **state)
{
    ddbk__fetched f = {strdup("AKID"), strdup(SECRET), strdup(TOKEN), 42};
    (void)state;
    ddbk__fetched_wipe(&f);
    assert_empty(&f);
    ddbk__fetched_wipe(&f); /* twice is harmless */
    ddbk__fetched_wipe(NULL);
}

/* ------------------------------------------------------------ ISO 8601 */

static void test_iso8601_forms(void **state)
{
    int64_t t;
    (void)state;
    assert_int_equal(iso("2026-12-04T13:00:00Z", &t), 0);
    assert_int_equal(t, T_1300);
    assert_int_equal(iso("2026-12-04t13:00:00z", &t), 0);
    assert_int_equal(t, T_1300);
    /* Fractions are dropped (an expiry rounds down), however many digits. */
    assert_int_equal(iso("2026-12-04T13:00:00.999Z", &t), 0);
    assert_int_equal(t, T_1300);
    assert_int_equal(iso("2026-12-04T13:00:00.123456789012Z", &t), 0);
    assert_int_equal(t, T_1300);
    /* Offsets: 15:00 at +02:00 is 13:00 UTC; 07:30 at -05:30 too. */
    assert_int_equal(iso("2026-12-04T15:00:00+02:00", &t), 0);
    assert_int_equal(t, T_1300);
    assert_int_equal(iso("2026-12-04T07:30:00.5-05:30", &t), 0);
    assert_int_equal(t, T_1300);
    assert_int_equal(iso("2026-12-04T13:00:00+00:00", &t), 0);
    assert_int_equal(t, T_1300);
    /* An offset that crosses midnight and the year. */
    assert_int_equal(iso("2027-01-01T01:00:00+02:00", &t), 0);
    assert_int_equal(t, 1798758000); /* 2026-12-31T23:00:00Z */
    /* Leap days and the epoch's edges. */
    assert_int_equal(iso("2024-02-29T00:00:00Z", &t), 0);
    assert_int_equal(t, 1709164800);
    assert_int_equal(iso("2000-02-29T23:59:59Z", &t), 0);
    assert_int_equal(t, 951868799);
    assert_int_equal(iso("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(iso("1969-12-31T23:59:59Z", &t), 0);
    assert_int_equal(t, -1);
    /* len counts, not a terminator: what follows is not read. */
    assert_int_equal(ddbk__iso8601_parse("2026-12-04T13:00:00Zjunk", 20, &t), 0);
    assert_int_equal(t, T_1300);
}

static void test_iso8601_refusals(void **state)
{
    static const char *const bad[] = {
        "", "2026", "2026-12-04", "2026-12-04T13:00", "2026-12-04T13:00:00",
        "2026-02-30T00:00:00Z", "2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
        "2026-01-00T00:00:00Z", "2026-01-32T00:00:00Z", "2026-12-04T24:00:00Z",
        "2026-12-04T13:60:00Z", "2026-12-04T13:00:60Z", "2026-12-04T13:00:00.Z",
        "2026-12-04T13:00:00ZZ", "2026-12-04T13:00:00Z ", " 2026-12-04T13:00:00Z",
        "2026-12-04 13:00:00Z", "2026-12-04T13:00:00+2:00", "2026-12-04T13:00:00+0200",
        "2026-12-04T13:00:00+24:00", "2026-12-04T13:00:00+02:60", "2026-12-04T13:00:00+02",
        "2026-12-04T13:00:00UTC", "2026-1-04T13:00:00Z", "+2026-12-04T13:00:00Z",
        "2026-12-04T13:00:00,5Z", "2026-12-04T1a:00:00Z", "2026/12/04T13:00:00Z",
        "2026-12-04T13:00:00.5", "2026-12-04T13:00:00-",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t t = 77;
        if (iso(bad[i], &t) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    int64_t t;
    /* Cut short by len; a NUL inside. */
    assert_int_equal(ddbk__iso8601_parse("2026-12-04T13:00:00Z", 19, &t), -1);
    assert_int_equal(ddbk__iso8601_parse("2026-12-04T13:00:00\0Z", 21, &t), -1);
    assert_int_equal(ddbk__iso8601_parse(NULL, 0, &t), -1);
}

/* Every day from 1900 to 2200 at a moving time of day, against timegm. */
static void test_iso8601_matches_timegm(void **state)
{
    (void)state;
    for (int64_t day = -25567; day < 84000; day += 7) {
        time_t when = (time_t)(day * 86400 + (day * 3677) % 86400);
        struct tm tm;
        char text[40];
        int64_t t;
        assert_non_null(gmtime_r(&when, &tm));
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (iso(text, &t) != 0 || t != (int64_t)when)
            fail_msg("%s: got %lld, timegm says %lld", text, (long long)t, (long long)when);
    }
}

/* ------------------------------------------------------------ JSON */

#define CONTAINER_OK                                                                         \
    "{\"RoleArn\":\"arn:aws:iam::1:role/r\",\"AccessKeyId\":\"ASIAEXAMPLE\","               \
    "\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\","                          \
    "\"Expiration\":\"2026-12-04T13:00:00Z\",\"Extra\":{\"a\":[1,2,{\"AccessKeyId\":3}]}}"

static void test_container(void **state)
{
    ddbk__fetched f;
    (void)state;
    json_ok(DDBK__JSON_CONTAINER, CONTAINER_OK, &f);
    assert_string_equal(f.access_key_id, "ASIAEXAMPLE");
    assert_string_equal(f.secret_access_key, SECRET);
    assert_string_equal(f.session_token, TOKEN);
    assert_int_equal(f.expires_at, T_1300);
    ddbk__fetched_wipe(&f);

    /* Each required field, missing, is named. */
    json_fails(DDBK__JSON_CONTAINER,
               "{\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"t\",\"Expiration\":\"2026-12-04T13:00:00Z\"}",
               "MalformedResponse", "AccessKeyId missing");
    json_fails(DDBK__JSON_CONTAINER,
               "{\"AccessKeyId\":\"A\",\"Token\":\"t\",\"Expiration\":\"2026-12-04T13:00:00Z\"}",
               "MalformedResponse", "SecretAccessKey missing");
    json_fails(DDBK__JSON_CONTAINER,
               "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Expiration\":\"2026-12-04T13:00:00Z\"}",
               "MalformedResponse", "Token missing");
    json_fails(DDBK__JSON_CONTAINER,
               "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\"}",
               "MalformedResponse", "Expiration missing");
    /* Fields nested deeper are not the answer's. */
    json_fails(DDBK__JSON_CONTAINER,
               "{\"x\":{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"t\","
               "\"Expiration\":\"2026-12-04T13:00:00Z\"}}",
               "MalformedResponse", "AccessKeyId missing");
    json_fails(DDBK__JSON_CONTAINER,
               "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\","
               "\"Expiration\":\"2026-02-30T13:00:00Z\"}",
               "MalformedResponse", "Expiration is not an ISO 8601 time");
    json_fails(DDBK__JSON_CONTAINER,
               "{\"AccessKeyId\":\"\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\","
               "\"Expiration\":\"2026-12-04T13:00:00Z\"}",
               "MalformedResponse", "AccessKeyId is empty");
    /* The token is required here: empty is refused (a process may omit it). */
    json_fails(DDBK__JSON_CONTAINER,
               "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"\","
               "\"Expiration\":\"2026-12-04T13:00:00Z\"}",
               "MalformedResponse", "Token is empty");
    json_fails(DDBK__JSON_SSO,
               "{\"roleCredentials\":{\"accessKeyId\":\"A\",\"secretAccessKey\":\"" SECRET "\","
               "\"sessionToken\":\"\",\"expiration\":1796389200000}}",
               "MalformedResponse", "roleCredentials.sessionToken is empty");
}

static void test_wrong_types(void **state)
{
    static const char *const values[] = {"1", "null", "true", "false", "{}", "[\"A\"]", "-0.5e3"};
    (void)state;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"AccessKeyId\":%s,\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\","
                 "\"Expiration\":\"2026-12-04T13:00:00Z\"}",
                 values[i]);
        json_fails(DDBK__JSON_CONTAINER, body, "MalformedResponse",
                   "AccessKeyId is not a string");
        snprintf(body, sizeof body,
                 "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\","
                 "\"Expiration\":%s}",
                 values[i]);
        json_fails(DDBK__JSON_CONTAINER, body, "MalformedResponse",
                   "Expiration is not a string");
    }
}

static void test_not_an_object(void **state)
{
    (void)state;
    json_fails(DDBK__JSON_CONTAINER, "", "MalformedResponse", "empty");
    json_fails(DDBK__JSON_CONTAINER, "[]", "MalformedResponse", "not a JSON object");
    json_fails(DDBK__JSON_CONTAINER, "\"AccessKeyId\"", "MalformedResponse", "not a JSON object");
    json_fails(DDBK__JSON_CONTAINER, "42", "MalformedResponse", "not a JSON object");
    json_fails(DDBK__JSON_CONTAINER, "{\"AccessKeyId\":\"A\"", "MalformedResponse",
               "not valid JSON");
    json_fails(DDBK__JSON_CONTAINER, CONTAINER_OK "{}", "MalformedResponse", "not valid JSON");
    json_fails(DDBK__JSON_CONTAINER, CONTAINER_OK " x", "MalformedResponse", "not valid JSON");
    json_fails(DDBK__JSON_CONTAINER, "/*c*/" CONTAINER_OK, "MalformedResponse",
               "not valid JSON");
    /* Invalid UTF-8 in a value. */
    json_fails(DDBK__JSON_CONTAINER,
               "{\"AccessKeyId\":\"A\xff\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"t\","
               "\"Expiration\":\"2026-12-04T13:00:00Z\"}",
               "MalformedResponse", "not valid JSON");
    /* Not read past len: the same valid body, cut by one byte. */
    ddbk__fetched f;
    ddbk_error err;
    const char *body = CONTAINER_OK;
    assert_int_equal(ddbk__cred_json_parse(DDBK__JSON_CONTAINER, body, strlen(body) - 1, &f, &err),
                     -1);
    assert_string_equal(err.code, "MalformedResponse");
    assert_empty(&f);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* 33 levels: one more than allowed, inside an ignored field. */
    char body[256 + 200000];
    size_t n = 0;
    n += (size_t)sprintf(body, "{\"AccessKeyId\":\"A\",\"x\":");
    for (int i = 0; i < 32; i++)
        body[n++] = '[';
    for (int i = 0; i < 32; i++)
        body[n++] = ']';
    body[n++] = '}';
    body[n] = '\0';
    json_fails(DDBK__JSON_CONTAINER, body, "MalformedResponse", "nested deeper than 32");
    /* 31 levels inside is fine (the fields then are missing, not too deep). */
    n = (size_t)sprintf(body, "{\"x\":");
    for (int i = 0; i < 31; i++)
        body[n++] = '[';
    for (int i = 0; i < 31; i++)
        body[n++] = ']';
    body[n++] = '}';
    body[n] = '\0';
    json_fails(DDBK__JSON_CONTAINER, body, "MalformedResponse", "AccessKeyId missing");
    /* 100000 levels: refused at 33, at no cost. */
    n = (size_t)sprintf(body, "{\"x\":");
    for (int i = 0; i < 100000; i++)
        body[n++] = '[';
    body[n] = '\0';
    json_fails(DDBK__JSON_CONTAINER, body, "MalformedResponse", "nested deeper");
}

static void test_sizes(void **state)
{
    (void)state;
    static char body[9000 + 512], v[9000 + 1];
    memset(v, 'k', 9000);

    /* A secret of 4096 bytes is kept; 4097 is refused. */
    v[4096] = '\0';
    sprintf(body, "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"%s\",\"Token\":\"t\","
                  "\"Expiration\":\"2026-12-04T13:00:00Z\"}", v);
    ddbk__fetched f;
    json_ok(DDBK__JSON_CONTAINER, body, &f);
    assert_int_equal(strlen(f.secret_access_key), 4096);
    ddbk__fetched_wipe(&f);
    v[4096] = 'k';
    v[4097] = '\0';
    sprintf(body, "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"%s\",\"Token\":\"t\","
                  "\"Expiration\":\"2026-12-04T13:00:00Z\"}", v);
    json_fails(DDBK__JSON_CONTAINER, body, "MalformedResponse",
               "SecretAccessKey is longer than 4096 bytes");
    /* A token of 8192 is kept; 8193 is refused. */
    v[4097] = 'k';
    v[8192] = '\0';
    sprintf(body, "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"%s\","
                  "\"Expiration\":\"2026-12-04T13:00:00Z\"}", v);
    json_ok(DDBK__JSON_CONTAINER, body, &f);
    assert_int_equal(strlen(f.session_token), 8192);
    ddbk__fetched_wipe(&f);
    v[8192] = 'k';
    v[8193] = '\0';
    sprintf(body, "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"%s\","
                  "\"Expiration\":\"2026-12-04T13:00:00Z\"}", v);
    json_fails(DDBK__JSON_CONTAINER, body, "MalformedResponse",
               "Token is longer than 8192 bytes");
    /* Fields that are not wanted are not bounded by these caps. */
    sprintf(body, "{\"Note\":\"%s\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\","
                  "\"Token\":\"t\",\"Expiration\":\"2026-12-04T13:00:00Z\"}", v);
    json_ok(DDBK__JSON_CONTAINER, body, &f);
    ddbk__fetched_wipe(&f);
}

static void test_control_characters(void **state)
{
    static const char *const values[] = {"A\\nB", "A\\rB", "A\\u0000B", "\\u001f", "A\x7f",
                                         "A\\u007fB", "\\t"};
    (void)state;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"AccessKeyId\":\"AK\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"%s\","
                 "\"Expiration\":\"2026-12-04T13:00:00Z\"}",
                 values[i]);
        json_fails(DDBK__JSON_CONTAINER, body, "MalformedResponse",
                   "Token holds a control character");
    }
    /* Non-ASCII UTF-8 is no control character. */
    ddbk__fetched f;
    json_ok(DDBK__JSON_CONTAINER,
            "{\"AccessKeyId\":\"AK\\u00e9\",\"SecretAccessKey\":\"s\",\"Token\":\"t\","
            "\"Expiration\":\"2026-12-04T13:00:00Z\"}",
            &f);
    assert_string_equal(f.access_key_id, "AK\xc3\xa9");
    ddbk__fetched_wipe(&f);
}

static void test_duplicates_refused(void **state)
{
    (void)state;
    json_fails(DDBK__JSON_CONTAINER,
               "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"t\","
               "\"Expiration\":\"2026-12-04T13:00:00Z\",\"AccessKeyId\":\"B\"}",
               "MalformedResponse", "duplicate field AccessKeyId");
    json_fails(DDBK__JSON_SSO,
               "{\"roleCredentials\":{\"accessKeyId\":\"A\"},\"roleCredentials\":{}}",
               "MalformedResponse", "duplicate field roleCredentials");
    /* An unwanted field may repeat. */
    ddbk__fetched f;
    json_ok(DDBK__JSON_CONTAINER,
            "{\"Note\":1,\"Note\":2,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Token\":\"t\","
            "\"Expiration\":\"2026-12-04T13:00:00Z\"}",
            &f);
    ddbk__fetched_wipe(&f);
}

static void test_imds(void **state)
{
    ddbk__fetched f;
    ddbk_error err;
    (void)state;
    json_ok(DDBK__JSON_IMDS,
            "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-12-04T12:00:00Z\",\n"
            "  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAIMDS\",\n"
            "  \"SecretAccessKey\" : \"" SECRET "\",\n  \"Token\" : \"" TOKEN "\",\n"
            "  \"Expiration\" : \"2026-12-04T13:00:00Z\"\n}",
            &f);
    assert_string_equal(f.access_key_id, "ASIAIMDS");
    assert_string_equal(f.session_token, TOKEN);
    assert_int_equal(f.expires_at, T_1300);
    ddbk__fetched_wipe(&f);

    /* Code other than Success: the service's own word, named. */
    const char *failed = "{\"Code\":\"Failed\",\"Message\":\"no role\"}";
    memset(&f, 0x5a, sizeof f);
    assert_int_equal(ddbk__cred_json_parse(DDBK__JSON_IMDS, failed, strlen(failed), &f, &err), -1);
    assert_empty(&f);
    assert_string_equal(err.code, "CredentialsError");
    assert_non_null(strstr(err.message, "Failed"));
    /* Even with keys beside it, they are not kept. */
    json_fails(DDBK__JSON_IMDS,
               "{\"Code\":\"Expired\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\","
               "\"Token\":\"" TOKEN "\",\"Expiration\":\"2026-12-04T13:00:00Z\"}",
               "CredentialsError", "Code \"Expired\"");
    json_fails(DDBK__JSON_IMDS,
               "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\","
               "\"Token\":\"" TOKEN "\",\"Expiration\":\"2026-12-04T13:00:00Z\"}",
               "MalformedResponse", "Code missing");
    json_fails(DDBK__JSON_IMDS, "{\"Code\":7}", "MalformedResponse", "Code is not a string");
}

static void test_process(void **state)
{
    ddbk__fetched f;
    (void)state;
    /* Version 1, no token, no expiry: static keys. */
    json_ok(DDBK__JSON_PROCESS,
            "{\"Version\": 1, \"AccessKeyId\": \"AKIAPROC\", \"SecretAccessKey\": \"" SECRET "\"}",
            &f);
    assert_string_equal(f.access_key_id, "AKIAPROC");
    assert_null(f.session_token);
    assert_int_equal(f.expires_at, 0);
    ddbk__fetched_wipe(&f);
    json_ok(DDBK__JSON_PROCESS,
            "{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"" TOKEN
            "\",\"Expiration\":\"2026-12-04T14:00:00.000+01:00\"}",
            &f);
    assert_string_equal(f.session_token, TOKEN);
    assert_int_equal(f.expires_at, T_1300);
    ddbk__fetched_wipe(&f);
    /* An empty token is no token. */
    json_ok(DDBK__JSON_PROCESS,
            "{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"\"}",
            &f);
    assert_null(f.session_token);
    ddbk__fetched_wipe(&f);

    json_fails(DDBK__JSON_PROCESS,
               "{\"Version\":2,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\"}",
               "MalformedResponse", "Version is not 1");
    json_fails(DDBK__JSON_PROCESS,
               "{\"Version\":1.0,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\"}",
               "MalformedResponse", "Version is not 1");
    json_fails(DDBK__JSON_PROCESS,
               "{\"Version\":\"1\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\"}",
               "MalformedResponse", "Version is not a number");
    json_fails(DDBK__JSON_PROCESS, "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\"}",
               "MalformedResponse", "Version missing");
    json_fails(DDBK__JSON_PROCESS, "{\"Version\":1,\"AccessKeyId\":\"A\"}", "MalformedResponse",
               "SecretAccessKey missing");
    json_fails(DDBK__JSON_PROCESS,
               "{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\","
               "\"Expiration\":\"tomorrow\"}",
               "MalformedResponse", "Expiration is not an ISO 8601 time");
    json_fails(DDBK__JSON_PROCESS,
               "{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\","
               "\"SessionToken\":null}",
               "MalformedResponse", "SessionToken is not a string");
}

static void test_sso(void **state)
{
    ddbk__fetched f;
    (void)state;
    json_ok(DDBK__JSON_SSO,
            "{\"roleCredentials\":{\"accessKeyId\":\"ASIASSO\",\"secretAccessKey\":\"" SECRET "\","
            "\"sessionToken\":\"" TOKEN "\",\"expiration\":1796389200999}}",
            &f);
    assert_string_equal(f.access_key_id, "ASIASSO");
    assert_string_equal(f.secret_access_key, SECRET);
    assert_string_equal(f.session_token, TOKEN);
    assert_int_equal(f.expires_at, T_1300); /* ms rounded down */
    ddbk__fetched_wipe(&f);

    json_fails(DDBK__JSON_SSO,
               "{\"roleCredentials\":{\"accessKeyId\":\"A\",\"secretAccessKey\":\"" SECRET "\","
               "\"sessionToken\":\"" TOKEN "\",\"expiration\":\"1796389200000\"}}",
               "MalformedResponse", "roleCredentials.expiration is not a number");
    json_fails(DDBK__JSON_SSO,
               "{\"roleCredentials\":{\"accessKeyId\":\"A\",\"secretAccessKey\":\"" SECRET "\","
               "\"sessionToken\":\"" TOKEN "\",\"expiration\":1.7e12}}",
               "MalformedResponse", "roleCredentials.expiration is not epoch milliseconds");
    json_fails(DDBK__JSON_SSO,
               "{\"roleCredentials\":{\"accessKeyId\":\"A\",\"secretAccessKey\":\"" SECRET "\","
               "\"sessionToken\":\"" TOKEN "\",\"expiration\":-5}}",
               "MalformedResponse", "roleCredentials.expiration is not epoch milliseconds");
    json_fails(DDBK__JSON_SSO,
               "{\"roleCredentials\":{\"accessKeyId\":\"A\",\"secretAccessKey\":\"" SECRET "\","
               "\"expiration\":1796389200000}}",
               "MalformedResponse", "roleCredentials.sessionToken missing");
    /* At the top level they are not the credentials. */
    json_fails(DDBK__JSON_SSO,
               "{\"accessKeyId\":\"A\",\"secretAccessKey\":\"" SECRET "\","
               "\"sessionToken\":\"" TOKEN "\",\"expiration\":1796389200000}",
               "MalformedResponse", "roleCredentials.accessKeyId missing");
    json_fails(DDBK__JSON_SSO, "{\"roleCredentials\":[]}", "MalformedResponse",
               "roleCredentials is not an object");
    json_fails(DDBK__JSON_SSO, "{\"roleCredentials\":null}", "MalformedResponse",
               "roleCredentials is not an object");
    /* Nested one more level, they are not read either. */
    json_fails(DDBK__JSON_SSO,
               "{\"roleCredentials\":{\"x\":{\"accessKeyId\":\"A\",\"secretAccessKey\":\"s\","
               "\"sessionToken\":\"t\",\"expiration\":1796389200000}}}",
               "MalformedResponse", "roleCredentials.accessKeyId missing");
    /* Another object at depth 2 is not roleCredentials. */
    json_fails(DDBK__JSON_SSO,
               "{\"other\":{\"accessKeyId\":\"A\",\"secretAccessKey\":\"s\","
               "\"sessionToken\":\"t\",\"expiration\":1796389200000},\"roleCredentials\":{}}",
               "MalformedResponse", "roleCredentials.accessKeyId missing");
}

static void test_sso_cache(void **state)
{
    char *token = (char *)"x";
    int64_t at = 5;
    ddbk_error err;
    (void)state;
    const char *body = "{\"startUrl\":\"https://d.awsapps.com/start\",\"region\":\"us-east-1\","
                       "\"accessToken\":\"" TOKEN "\",\"expiresAt\":\"2026-12-04T13:00:00Z\","
                       "\"refreshToken\":\"r\"}";
    assert_int_equal(ddbk__sso_cache_parse(body, strlen(body), &token, &at, &err), 0);
    assert_string_equal(token, TOKEN);
    assert_int_equal(at, T_1300);
    free(token);
    /* Older CLIs wrote "UTC" for Z. */
    body = "{\"accessToken\":\"" TOKEN "\",\"expiresAt\":\"2026-12-04T13:00:00UTC\"}";
    assert_int_equal(ddbk__sso_cache_parse(body, strlen(body), &token, &at, &err), 0);
    assert_int_equal(at, T_1300);
    free(token);

    static const struct {
        const char *body, *says;
    } bad[] = {
        {"{\"expiresAt\":\"2026-12-04T13:00:00Z\"}", "accessToken missing"},
        {"{\"accessToken\":\"" TOKEN "\"}", "expiresAt missing"},
        {"{\"accessToken\":\"" TOKEN "\",\"expiresAt\":1796389200}", "expiresAt is not a string"},
        {"{\"accessToken\":\"" TOKEN "\",\"expiresAt\":\"2026-12-04\"}",
         "expiresAt is not an ISO 8601 time"},
        {"{\"accessToken\":\"" TOKEN "\",\"expiresAt\":\"UTC\"}", "expiresAt is not an ISO 8601 time"},
        {"{\"accessToken\":\"\",\"expiresAt\":\"2026-12-04T13:00:00Z\"}", "accessToken is empty"},
        {"{\"accessToken\":\"a\\nb\",\"expiresAt\":\"2026-12-04T13:00:00Z\"}",
         "accessToken holds a control character"},
        {"[]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        token = (char *)"x";
        at = 5;
        if (ddbk__sso_cache_parse(bad[i].body, strlen(bad[i].body), &token, &at, &err) != -1)
            fail_msg("accepted %s", bad[i].body);
        assert_null(token);
        assert_int_equal(at, 0);
        assert_string_equal(err.code, "MalformedResponse");
        if (strstr(err.message, bad[i].says) == NULL)
            fail_msg("%s: said %s", bad[i].body, err.message);
        assert_no_secret(&err);
    }
}

static void test_bad_kind(void **state)
{
    ddbk__fetched f;
    ddbk_error err;
    (void)state;
    assert_int_equal(ddbk__cred_json_parse((enum ddbk__json_kind)9, "{}", 2, &f, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_empty(&f);
}

/* ------------------------------------------------------------ STS */

#define STS_CREDS                                                                            \
    "<Credentials>\n      <AccessKeyId>ASIASTS</AccessKeyId>\n"                                 \
    "      <SecretAccessKey>" SECRET "</SecretAccessKey>\n"                                     \
    "      <SessionToken>" TOKEN "</SessionToken>\n"                                            \
    "      <Expiration>2026-12-04T13:00:00Z</Expiration>\n    </Credentials>"

static void sts_ok(long status, const char *body)
{
    ddbk__fetched f;
    ddbk_error err;
    size_t n = strlen(body);
    char *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, body, n);
    if (ddbk__sts_parse(status, copy, n, &f, &err) != 0)
        fail_msg("refused (%s: %s): %s", err.code, err.message, body);
    assert_string_equal(f.access_key_id, "ASIASTS");
    assert_string_equal(f.secret_access_key, SECRET);
    assert_string_equal(f.session_token, TOKEN);
    assert_int_equal(f.expires_at, T_1300);
    ddbk__fetched_wipe(&f);
    free(copy);
}

static void test_sts_success(void **state)
{
    (void)state;
    sts_ok(200, "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
                "  <AssumeRoleResult>\n    <SourceIdentity>x</SourceIdentity>\n"
                "    <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn>"
                "<AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>\n    " STS_CREDS
                "\n    <PackedPolicySize>6</PackedPolicySize>\n  </AssumeRoleResult>\n"
                "  <ResponseMetadata><RequestId>c6104cbe</RequestId></ResponseMetadata>\n"
                "</AssumeRoleResponse>\n");
    sts_ok(200, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                "<AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>s"
                "</SubjectFromWebIdentityToken>" STS_CREDS
                "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>");
    /* A prefix is dropped; CDATA and character references are text. */
    sts_ok(201, "<sts:AssumeRoleResponse xmlns:sts=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                "<sts:AssumeRoleResult><sts:Credentials>"
                "<sts:AccessKeyId><![CDATA[ASIA]]>&#83;TS</sts:AccessKeyId>"
                "<sts:SecretAccessKey>" SECRET "</sts:SecretAccessKey>"
                "<sts:SessionToken>" TOKEN "</sts:SessionToken>"
                "<sts:Expiration>2026-12-04T13:00:00.000Z</sts:Expiration>"
                "</sts:Credentials></sts:AssumeRoleResult></sts:AssumeRoleResponse>");
}

static void test_sts_malformed_success(void **state)
{
    (void)state;
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>A</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
                   "<Expiration>2026-12-04T13:00:00Z</Expiration>"
                   "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "Credentials/SessionToken missing", 0, 0);
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>A</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
                   "<SessionToken>" TOKEN "</SessionToken>"
                   "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "Credentials/Expiration missing", 0, 0);
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>  </AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
                   "<SessionToken>" TOKEN "</SessionToken><Expiration>2026-12-04T13:00:00Z</Expiration>"
                   "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "Credentials/AccessKeyId missing", 0, 0);
    /* The Result of the other action, or Credentials elsewhere, is not read. */
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleWithWebIdentityResult>" STS_CREDS
                   "</AssumeRoleWithWebIdentityResult></AssumeRoleResponse>",
              "MalformedResponse", "Credentials/AccessKeyId missing", 0, 0);
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><X>" STS_CREDS
                   "</X></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "Credentials/AccessKeyId missing", 0, 0);
    sts_fails(200, "<GetCallerIdentityResponse/>", "MalformedResponse",
              "not an AssumeRole answer", 0, 0);
    sts_fails(200, "", "MalformedResponse", "empty", 0, 0);
    sts_fails(200, "{\"AccessKeyId\":\"A\"}", "MalformedResponse", "not XML", 0, 0);
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult>", "MalformedResponse", "not XML", 0, 0);
    sts_fails(200, "<AssumeRoleResponse/><x/>", "MalformedResponse", "not XML", 0, 0);
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>A</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
                   "<SessionToken>" TOKEN "</SessionToken><Expiration>2026-02-30T13:00:00Z</Expiration>"
                   "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "Expiration is not an ISO 8601 time", 0, 0);
    /* Twice the same leaf: refused, not first- or last-wins. */
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>A</AccessKeyId><AccessKeyId>B</AccessKeyId>"
                   "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "duplicate element AccessKeyId", 0, 0);
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>A<b>x</b></AccessKeyId>"
                   "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "AccessKeyId holds an element", 0, 0);
    /* A control character in a value (a tab inside, a char reference). */
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>A\tB</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
                   "<SessionToken>" TOKEN "</SessionToken><Expiration>2026-12-04T13:00:00Z</Expiration>"
                   "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "AccessKeyId holds a control character", 0, 0);
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>A</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey>"
                   "<SessionToken>a&#10;b</SessionToken><Expiration>2026-12-04T13:00:00Z</Expiration>"
                   "</Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "SessionToken holds a control character", 0, 0);
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                   "<AccessKeyId>A&#1;</AccessKeyId></Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "not XML", 0, 0);
}

static void test_sts_bounds(void **state)
{
    (void)state;
    /* 17 elements deep. */
    char body[65536];
    size_t n = 0;
    for (int i = 0; i < 17; i++)
        n += (size_t)sprintf(body + n, "<a>");
    for (int i = 0; i < 17; i++)
        n += (size_t)sprintf(body + n, "</a>");
    sts_fails(200, body, "MalformedResponse", "nested too deep", 0, 0);
    /* A session token past 8192 bytes. */
    n = (size_t)sprintf(body, "<AssumeRoleResponse><AssumeRoleResult><Credentials><SessionToken>");
    memset(body + n, 't', 9000);
    n += 9000;
    sprintf(body + n, "</SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>");
    sts_fails(200, body, "MalformedResponse", "SessionToken is longer than 8192 bytes", 0, 0);
    /* Whitespace around the cap is not counted. */
    n = (size_t)sprintf(body, "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                              "<AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>" SECRET
                              "</SecretAccessKey><Expiration>2026-12-04T13:00:00Z</Expiration>"
                              "<SessionToken>\n  ");
    memset(body + n, 't', 8192);
    n += 8192;
    sprintf(body + n, "\n  </SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>");
    ddbk__fetched f;
    ddbk_error err;
    assert_int_equal(ddbk__sts_parse(200, body, strlen(body), &f, &err), 0);
    assert_int_equal(strlen(f.session_token), 8192);
    ddbk__fetched_wipe(&f);
}

static void test_sts_dtd_refused(void **state)
{
    (void)state;
    /* Billion laughs: refused at the DTD, before any expansion. */
    const char *lol =
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
        "<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
        "<!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">"
        "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
        "<!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">"
        "<!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">"
        "<!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">"
        "<!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">"
        "<!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">"
        "<!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">]>"
        "<AssumeRoleResponse><AssumeRoleResult><Credentials><SessionToken>&lol9;"
        "</SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>";
    sts_fails(200, lol, "MalformedResponse", "a DTD is refused", 0, 0);
    /* An external entity (file disclosure), and a bare DOCTYPE. */
    sts_fails(200, "<!DOCTYPE r SYSTEM \"file:///etc/passwd\"><AssumeRoleResponse/>",
              "MalformedResponse", "a DTD is refused", 0, 0);
    sts_fails(200, "<!DOCTYPE AssumeRoleResponse><AssumeRoleResponse/>", "MalformedResponse",
              "a DTD is refused", 0, 0);
    /* In an error body too: the status stays, and so does the retry. */
    sts_fails(503, "<!DOCTYPE e [<!ENTITY x \"y\">]><ErrorResponse/>", "UnknownError",
              "a DTD is refused", 1, 0);
    /* An entity never declared is an error, not an expansion. */
    sts_fails(200, "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>&xxe;"
                   "</AccessKeyId></Credentials></AssumeRoleResult></AssumeRoleResponse>",
              "MalformedResponse", "not XML", 0, 0);
}

#define STS_ERR(code, msg)                                                                   \
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n"        \
    "    <Type>Sender</Type>\n    <Code>" code "</Code>\n    <Message>" msg "</Message>\n"     \
    "  </Error>\n  <RequestId>4d9f8b4e</RequestId>\n</ErrorResponse>\n"

static void test_sts_errors(void **state)
{
    (void)state;
    sts_fails(403, STS_ERR("AccessDenied", "User: arn:aws:iam::1:user/u is not authorized"),
              "AccessDenied", "is not authorized", 0, 0);
    sts_fails(400, STS_ERR("ExpiredTokenException", "Token expired: current date/time ..."),
              "ExpiredTokenException", "Token expired", 0, 0);
    sts_fails(400, STS_ERR("InvalidIdentityToken", "No OpenIDConnect provider found"),
              "InvalidIdentityToken", "No OpenIDConnect", 0, 0);
    sts_fails(400, STS_ERR("Throttling", "Rate exceeded"), "Throttling", "Rate exceeded", 1, 1);
    sts_fails(400, STS_ERR("ThrottlingException", "Rate exceeded"), "ThrottlingException",
              "Rate exceeded", 1, 1);
    sts_fails(400, STS_ERR("RequestLimitExceeded", "slow down"), "RequestLimitExceeded",
              "slow down", 1, 1);
    sts_fails(400, STS_ERR("IDPCommunicationError", "idp down"), "IDPCommunicationError",
              "idp down", 1, 0);
    sts_fails(500, STS_ERR("InternalFailure", "oops"), "InternalFailure", "oops", 1, 0);
    sts_fails(503, STS_ERR("ServiceUnavailable", "later"), "ServiceUnavailable", "later", 1, 0);
    /* No Message: the code and status say it. */
    sts_fails(403, "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>",
              "AccessDenied", "HTTP 403", 0, 0);
    /* A prefixed ErrorResponse. */
    sts_fails(403, "<s:ErrorResponse xmlns:s=\"x\"><s:Error><s:Code>AccessDenied</s:Code>"
                   "<s:Message>no</s:Message></s:Error></s:ErrorResponse>",
              "AccessDenied", "no", 0, 0);
    /* Control characters in a code are replaced, in a message too. */
    sts_fails(400, STS_ERR("Bad&#9;Code", "line one\nline two"), "Bad?Code",
              "line one line two", 0, 0);
    /* A long code is cut to fit; a long message too, and neither is refused. */
    char code[200], msg[3000], body[4096];
    memset(code, 'C', 120);
    code[120] = '\0';
    memset(msg, 'm', 2000);
    msg[2000] = '\0';
    snprintf(body, sizeof body,
             "<ErrorResponse><Error><Code>%s</Code><Message>%s</Message></Error></ErrorResponse>",
             code, msg);
    ddbk__fetched f;
    ddbk_error err;
    assert_int_equal(ddbk__sts_parse(400, body, strlen(body), &f, &err), -1);
    assert_int_equal(strlen(err.code), sizeof err.code - 1);
    assert_int_equal(strspn(err.code, "C"), sizeof err.code - 1);
    assert_true(strlen(err.message) > 100 && strlen(err.message) < sizeof err.message);
    assert_int_equal(strspn(err.message, "m"), strlen(err.message));
    assert_empty(&f);
    /* An ErrorResponse without a Code. */
    sts_fails(400, "<ErrorResponse><Error><Message>m</Message></Error></ErrorResponse>",
              "UnknownError", "an ErrorResponse without a Code", 0, 0);
    sts_fails(400, "<ErrorResponse><Error><Code> \n</Code></Error></ErrorResponse>",
              "UnknownError", "an ErrorResponse without a Code", 0, 0);
    /* Code elsewhere is not the error's. */
    sts_fails(400, "<ErrorResponse><Code>X</Code></ErrorResponse>", "UnknownError",
              "without a Code", 0, 0);
    /* An ErrorResponse with a 200 status is still an error. */
    sts_fails(200, STS_ERR("AccessDenied", "no"), "AccessDenied", "no", 0, 0);
}

static void test_sts_not_sts(void **state)
{
    (void)state;
    /* A proxy's page: the status decides. */
    sts_fails(503, "<html><body>Service Unavailable</body></html>", "UnknownError", "HTTP 503",
              1, 0);
    sts_fails(502, "Bad Gateway", "UnknownError", "not XML", 1, 0);
    sts_fails(404, "<html>nope</html>", "UnknownError", "no ErrorResponse", 0, 0);
    sts_fails(403, "", "UnknownError", "empty", 0, 0);
    sts_fails(429, "slow", "UnknownError", "HTTP 429", 1, 1);
    /* A success body with a failure status is no success. */
    sts_fails(500, "<AssumeRoleResponse><AssumeRoleResult>" STS_CREDS
                   "</AssumeRoleResult></AssumeRoleResponse>",
              "UnknownError", "no ErrorResponse", 1, 0);
}

/* ------------------------------------------------------------ STS form */

static void test_sts_form(void **state)
{
    ddbk_buf b;
    (void)state;
    ddbk_buf_init(&b, 0);
    assert_int_equal(ddbk__sts_form(&b, "AssumeRole", "RoleArn", "arn:aws:iam::123:role/x y+z",
                                    "RoleSessionName", "ddbkit-1", "ExternalId", NULL,
                                    "DurationSeconds", "", "Policy", "~._-AZaz09", NULL),
                     0);
    assert_string_equal(b.data, "Action=AssumeRole&Version=2011-06-15"
                                "&RoleArn=arn%3Aaws%3Aiam%3A%3A123%3Arole%2Fx%20y%2Bz"
                                "&RoleSessionName=ddbkit-1&Policy=~._-AZaz09");
    assert_int_equal(b.len, strlen(b.data));
    /* Appends; every byte outside the unreserved set as %XX, uppercase. */
    assert_int_equal(ddbk__sts_form(&b, "AssumeRoleWithWebIdentity", "WebIdentityToken",
                                    "a=b&c\xc3\xa9\x01\x7f\xff/?#[]@!$'()*,;%", NULL),
                     0);
    assert_non_null(strstr(b.data, "Policy=~._-AZaz09Action=AssumeRoleWithWebIdentity"
                                   "&Version=2011-06-15&WebIdentityToken="
                                   "a%3Db%26c%C3%A9%01%7F%FF%2F%3F%23%5B%5D%40%21%24%27%28%29"
                                   "%2A%2C%3B%25"));
    assert_int_equal(b.len, strlen(b.data));
    /* No pairs at all. */
    ddbk_buf_reset(&b);
    assert_int_equal(ddbk__sts_form(&b, "AssumeRole", NULL), 0);
    assert_string_equal(b.data, "Action=AssumeRole&Version=2011-06-15");
    ddbk_buf_free(&b);
    /* Past the buffer's cap: -1, nothing written. */
    ddbk_buf_init(&b, 40);
    assert_int_equal(ddbk_buf_puts(&b, "x"), 0);
    assert_int_equal(ddbk__sts_form(&b, "AssumeRole", "RoleArn", "arn:aws:iam::123:role/x", NULL),
                     -1);
    assert_string_equal(b.data, "x");
    assert_int_equal(b.len, 1);
    ddbk_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetched_wipe),
        cmocka_unit_test(test_iso8601_forms),
        cmocka_unit_test(test_iso8601_refusals),
        cmocka_unit_test(test_iso8601_matches_timegm),
        cmocka_unit_test(test_container),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_duplicates_refused),
        cmocka_unit_test(test_imds),
        cmocka_unit_test(test_process),
        cmocka_unit_test(test_sso),
        cmocka_unit_test(test_sso_cache),
        cmocka_unit_test(test_bad_kind),
        cmocka_unit_test(test_sts_success),
        cmocka_unit_test(test_sts_malformed_success),
        cmocka_unit_test(test_sts_bounds),
        cmocka_unit_test(test_sts_dtd_refused),
        cmocka_unit_test(test_sts_errors),
        cmocka_unit_test(test_sts_not_sts),
        cmocka_unit_test(test_sts_form),
    };
    return cmocka_run_group_tests_name("cred_parse", tests, NULL, NULL);
}
