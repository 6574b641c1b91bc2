/*
 * engine/parse.c and engine/error.c: an HTTP status and body become success
 * or a classified error (code, message, retryable, throttling), and a
 * transport failure becomes a Timeout or ConnectionError.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <unistd.h>

#include "ddbkit.h"
#include "internal.h"
#include "responder.h"

#define NS "com.amazonaws.dynamodb.v20120810#"

static int parse(long status, const char *body, ddbk_error *err)
{
    return ddbk_parse(status, NULL, body, body ? strlen(body) : 0, err);
}

/* Parses and checks the whole classification. */
static void expect(long status, const char *body, const char *code,
                   const char *message, int retryable, int throttling)
{
    ddbk_error err;

    memset(&err, 0x5a, sizeof err); /* garbage in: parse must clear it */
    assert_int_equal(parse(status, body, &err), -1);
    assert_string_equal(err.code, code);
    if (message)
        assert_string_equal(err.message, message);
    assert_int_equal(err.status, status);
    assert_int_equal(err.retryable, retryable);
    assert_int_equal(err.throttling, throttling);
    assert_int_equal(err.timeout, 0);
    assert_string_equal(err.request_id, "");
}

static void test_success(void **state)
{
    ddbk_error err;

    (void)state;
    for (long s = 200; s < 300; s += 33) {
        memset(&err, 0, sizeof err);
        assert_int_equal(parse(s, "{\"Item\":{}}", &err), 0);
        assert_string_equal(err.code, "");
    }
    assert_int_equal(parse(200, "", &err), 0);
    assert_int_equal(parse(200, NULL, &err), 0);
    assert_int_equal(parse(299, "{\"__type\":\"X\"}", &err), 0);
    /* Not 2xx: failures, even with an empty body. */
    assert_int_equal(parse(199, "", &err), -1);
    assert_int_equal(parse(300, "", &err), -1);
    assert_int_equal(parse(0, NULL, &err), -1);
}

static void test_type_namespace_stripped(void **state)
{
    (void)state;
    expect(400, "{\"__type\":\"" NS "ConditionalCheckFailedException\","
                "\"message\":\"The conditional request failed\"}",
           "ConditionalCheckFailedException", "The conditional request failed", 0, 0);
    /* No namespace at all. */
    expect(400, "{\"__type\":\"ValidationException\",\"message\":\"bad\"}",
           "ValidationException", "bad", 0, 0);
    /* Several '#': the last one counts. */
    expect(400, "{\"__type\":\"a#b#ValidationException\",\"message\":\"m\"}",
           "ValidationException", "m", 0, 0);
    /* Key order does not matter. */
    expect(400, "{\"message\":\"first\",\"__type\":\"" NS "ValidationException\"}",
           "ValidationException", "first", 0, 0);
    /* Whitespace around tokens. */
    expect(400, " \n{ \"__type\" : \"" NS "ValidationException\" ,\n \"message\" : \"ws\" } \n",
           "ValidationException", "ws", 0, 0);
}

static void test_message_case(void **state)
{
    (void)state;
    expect(400, "{\"__type\":\"" NS "ValidationException\",\"Message\":\"capital\"}",
           "ValidationException", "capital", 0, 0);
    expect(400, "{\"__type\":\"" NS "ValidationException\",\"message\":\"lower\"}",
           "ValidationException", "lower", 0, 0);
    /* Both: the first one wins. */
    expect(400, "{\"__type\":\"X\",\"Message\":\"one\",\"message\":\"two\"}",
           "X", "one", 0, 0);
    /* Other spellings are not messages. */
    expect(400, "{\"__type\":\"X\",\"MESSAGE\":\"no\",\"messages\":\"no\"}",
           "X", "X", 0, 0);
    /* A message that is not a string is ignored. */
    expect(400, "{\"__type\":\"X\",\"message\":42}", "X", "X", 0, 0);
    expect(400, "{\"__type\":\"X\",\"message\":null,\"Message\":\"later\"}",
           "X", "later", 0, 0);
    /* Escapes are decoded. */
    expect(400, "{\"__type\":\"X\",\"message\":\"a\\\"b\\nc\\u00e9\"}",
           "X", "a\"b\nc\xc3\xa9", 0, 0);
}

static void test_no_message_uses_code(void **state)
{
    (void)state;
    expect(400, "{\"__type\":\"" NS "ResourceNotFoundException\"}",
           "ResourceNotFoundException", "ResourceNotFoundException", 0, 0);
}

static void test_413(void **state)
{
    ddbk_error err;

    (void)state;
    expect(413, "", "RequestEntityTooLarge", NULL, 0, 0);
    expect(413, NULL, "RequestEntityTooLarge", NULL, 0, 0);
    expect(413, "<html>Request Entity Too Large</html>", "RequestEntityTooLarge",
           NULL, 0, 0);
    expect(413, "{}", "RequestEntityTooLarge", NULL, 0, 0);
    parse(413, "", &err);
    assert_non_null(strstr(err.message, "413"));
    /* A 413 with a __type keeps DynamoDB's code. */
    expect(413, "{\"__type\":\"" NS "ValidationException\",\"message\":\"m\"}",
           "ValidationException", "m", 0, 0);
}

static void test_5xx_without_type(void **state)
{
    static const long statuses[] = {500, 502, 503, 504};
    ddbk_error err;

    (void)state;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        expect(statuses[i], "", "UnknownError", NULL, 1, 0);
        expect(statuses[i], "<html>Bad Gateway</html>", "UnknownError", NULL, 1, 0);
        parse(statuses[i], "", &err);
        char want[16];
        snprintf(want, sizeof want, "%ld", statuses[i]);
        assert_non_null(strstr(err.message, want));
    }
    /* Other statuses without __type are UnknownError, not retried. */
    expect(400, "", "UnknownError", NULL, 0, 0);
    expect(404, "not json", "UnknownError", NULL, 0, 0);
    expect(501, "", "UnknownError", NULL, 0, 0);
    /* A message without __type is kept in the text. */
    parse(500, "{\"message\":\"boom\"}", &err);
    assert_string_equal(err.code, "UnknownError");
    assert_non_null(strstr(err.message, "boom"));
    assert_non_null(strstr(err.message, "500"));
}

/* A 5xx may hide a write that landed (DynamoDB's InternalServerError on a
 * write means it may or may not have been applied); a 4xx refused it. */
static void test_5xx_is_ambiguous(void **state)
{
    static const long statuses[] = {500, 501, 502, 503, 504, 599};
    ddbk_error err;

    (void)state;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        parse(statuses[i], "{\"__type\":\"" NS "InternalServerError\"}", &err);
        assert_int_equal(err.ambiguous, 1);
    }
    parse(400, "{\"__type\":\"" NS "ThrottlingException\"}", &err);
    assert_int_equal(err.ambiguous, 0);
    parse(400, "{\"__type\":\"" NS "ConditionalCheckFailedException\"}", &err);
    assert_int_equal(err.ambiguous, 0);
    parse(413, "", &err);
    assert_int_equal(err.ambiguous, 0);
}

static void test_throttling(void **state)
{
    static const char *const codes[] = {
        "ThrottlingException", "ProvisionedThroughputExceededException",
        "RequestLimitExceeded", "TransactionInProgressException",
    };
    char body[256];

    (void)state;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        snprintf(body, sizeof body, "{\"__type\":\"" NS "%s\",\"message\":\"slow\"}",
                 codes[i]);
        expect(400, body, codes[i], "slow", 1, 1);
        /* Without the namespace too. */
        snprintf(body, sizeof body, "{\"__type\":\"%s\"}", codes[i]);
        expect(400, body, codes[i], codes[i], 1, 1);
    }
    /* A name that merely contains a throttling code is not one. */
    expect(400, "{\"__type\":\"NotThrottlingException\"}", "NotThrottlingException",
           NULL, 0, 0);
    expect(400, "{\"__type\":\"throttlingexception\"}", "throttlingexception",
           NULL, 0, 0);
}

static void test_transient(void **state)
{
    (void)state;
    expect(500, "{\"__type\":\"" NS "InternalServerError\",\"message\":\"Internal server error\"}",
           "InternalServerError", "Internal server error", 1, 0);
    /* Retryable by code even on a status that is not 5xx. */
    expect(400, "{\"__type\":\"InternalServerError\"}", "InternalServerError",
           NULL, 1, 0);
    expect(503, "{\"__type\":\"ServiceUnavailable\"}", "ServiceUnavailable",
           NULL, 1, 0);
}

static void test_not_retryable(void **state)
{
    static const char *const codes[] = {
        "ConditionalCheckFailedException", "ValidationException",
        "TransactionCanceledException", "ResourceNotFoundException",
        "AccessDeniedException", "UnrecognizedClientException",
    };
    char body[256];

    (void)state;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        snprintf(body, sizeof body, "{\"__type\":\"" NS "%s\",\"message\":\"no\"}",
                 codes[i]);
        expect(400, body, codes[i], "no", 0, 0);
    }
}

static void test_request_id(void **state)
{
    ddbk_error err;
    char longid[300];

    (void)state;
    assert_int_equal(ddbk_parse(400, "REQ-123", "{\"__type\":\"X\"}", 14, &err), -1);
    assert_string_equal(err.request_id, "REQ-123");
    assert_int_equal(ddbk_parse(500, "R2", "", 0, &err), -1);
    assert_string_equal(err.request_id, "R2");
    /* NULL: empty, and a stale id does not survive. */
    assert_int_equal(ddbk_parse(400, NULL, "", 0, &err), -1);
    assert_string_equal(err.request_id, "");
    /* Overlong: truncated and terminated. */
    memset(longid, 'r', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(ddbk_parse(400, longid, "", 0, &err), -1);
    assert_int_equal(strlen(err.request_id), sizeof err.request_id - 1);
    assert_memory_equal(err.request_id, longid, sizeof err.request_id - 1);
}

/* Only the top level counts: the item an error carries (ReturnValuesOn
 * ConditionCheckFailure) or cancellation reasons may hold keys named
 * "message" or "__type". */
static void test_nested_keys_ignored(void **state)
{
    (void)state;
    expect(400,
           "{\"Item\":{\"message\":{\"S\":\"not me\"},\"__type\":{\"S\":\"NotMe\"}},"
           "\"__type\":\"" NS "ConditionalCheckFailedException\","
           "\"message\":\"The conditional request failed\"}",
           "ConditionalCheckFailedException", "The conditional request failed", 0, 0);
    /* Nested before and no top-level message: message = code. */
    expect(400,
           "{\"Item\":{\"message\":{\"S\":\"not me\"}},"
           "\"__type\":\"" NS "ConditionalCheckFailedException\"}",
           "ConditionalCheckFailedException", "ConditionalCheckFailedException", 0, 0);
    /* Inside arrays of maps. */
    expect(400,
           "{\"__type\":\"" NS "TransactionCanceledException\","
           "\"CancellationReasons\":[{\"Code\":\"None\"},"
           "{\"Code\":\"ConditionalCheckFailed\",\"Message\":\"inner\"}],"
           "\"Message\":\"outer\"}",
           "TransactionCanceledException", "outer", 0, 0);
    expect(400,
           "{\"CancellationReasons\":[{\"Message\":\"inner\",\"__type\":\"Inner\"}],"
           "\"__type\":\"" NS "TransactionCanceledException\"}",
           "TransactionCanceledException", "TransactionCanceledException", 0, 0);
    /* Deeper nesting, then top level again. */
    expect(400,
           "{\"a\":{\"b\":{\"c\":{\"message\":\"deep\"}}},\"x\":[[{\"message\":\"d\"}]],"
           "\"__type\":\"T\",\"message\":\"top\"}",
           "T", "top", 0, 0);
    /* A top-level key whose value is a map or array is not taken. */
    expect(400, "{\"message\":{\"S\":\"m\"},\"__type\":[\"Arr\"]}", "UnknownError",
           NULL, 0, 0);
    /* An empty map as a top-level value, then a string elsewhere. */
    expect(400, "{\"message\":{},\"Item\":{\"k\":\"not me\"},\"__type\":\"T\"}",
           "T", "T", 0, 0);
}

/* A cancelled transaction whose items were throttled (or not at fault)
 * applied nothing: it is retried like a throttled request. One reason of
 * another kind (a failed condition) makes it final. */
static void test_transaction_throttled(void **state)
{
    (void)state;
    expect(400,
           "{\"__type\":\"" NS "TransactionCanceledException\","
           "\"CancellationReasons\":[{\"Code\":\"ThrottlingError\",\"Message\":\"x\"},"
           "{\"Code\":\"None\"}],\"Message\":\"Transaction cancelled\"}",
           "TransactionCanceledException", "Transaction cancelled", 1, 1);
    /* The reasons after __type and message (scanning goes on for them),
     * and the provisioned table's code. */
    expect(400,
           "{\"__type\":\"" NS "TransactionCanceledException\",\"Message\":\"m\","
           "\"CancellationReasons\":[{\"Code\":\"None\"},"
           "{\"Code\":\"ProvisionedThroughputExceeded\"}]}",
           "TransactionCanceledException", "m", 1, 1);
    /* A failed condition among them: final. */
    expect(400,
           "{\"__type\":\"" NS "TransactionCanceledException\",\"Message\":\"m\","
           "\"CancellationReasons\":[{\"Code\":\"ThrottlingError\"},"
           "{\"Code\":\"ConditionalCheckFailed\",\"Item\":{\"Code\":{\"S\":\"ThrottlingError\"}}}]}",
           "TransactionCanceledException", "m", 0, 0);
    /* Only None, or no reasons: nothing says throttled. */
    expect(400,
           "{\"__type\":\"" NS "TransactionCanceledException\",\"Message\":\"m\","
           "\"CancellationReasons\":[{\"Code\":\"None\"}]}",
           "TransactionCanceledException", "m", 0, 0);
    expect(400, "{\"__type\":\"" NS "TransactionCanceledException\",\"Message\":\"m\"}",
           "TransactionCanceledException", "m", 0, 0);
    /* A Code somewhere else (an item's attribute, a top-level key, another
     * error's reasons) is not a reason. */
    expect(400,
           "{\"Code\":\"ThrottlingError\",\"Item\":{\"Code\":{\"S\":\"ThrottlingError\"}},"
           "\"__type\":\"" NS "TransactionCanceledException\",\"Message\":\"m\"}",
           "TransactionCanceledException", "m", 0, 0);
    expect(400,
           "{\"__type\":\"" NS "ValidationException\",\"Message\":\"m\","
           "\"CancellationReasons\":[{\"Code\":\"ThrottlingError\"}]}",
           "ValidationException", "m", 0, 0);
    /* Reasons nested one level too deep are not reasons. */
    expect(400,
           "{\"__type\":\"" NS "TransactionCanceledException\",\"Message\":\"m\","
           "\"CancellationReasons\":[[{\"Code\":\"ThrottlingError\"}]]}",
           "TransactionCanceledException", "m", 0, 0);
}

static void test_malformed(void **state)
{
    static const char *const bodies[] = {
        "{", "{\"", "{\"__type", "{\"__type\":", "{\"__type\":\"X", "}", "]",
        "{\"__type\":\"X\",", "{\"a\":[", "[[[[[[[[", "{{{{", "null", "42",
        "\"just a string\"", "{\"__type\":\"X\"}}}}", "\xff\xfe\x00",
        "{\"__type\":\"\xff\xff\"}", "{\"message\":\"\\u12\"}", "{'a':1}",
        "{\"__type\":\"X\" \"message\":\"y\"}", "",
    };
    ddbk_error err;

    (void)state;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        assert_int_equal(parse(400, bodies[i], &err), -1);
        assert_true(err.code[0] != '\0');
        assert_true(memchr(err.code, '\0', sizeof err.code) != NULL);
        assert_true(memchr(err.message, '\0', sizeof err.message) != NULL);
        assert_int_equal(parse(503, bodies[i], &err), -1);
        assert_int_equal(err.retryable, 1);
    }
    /* Truncated after the type: what was found is kept. */
    expect(400, "{\"__type\":\"" NS "ValidationException\",\"message\":\"cut",
           "ValidationException", "ValidationException", 0, 0);
    expect(400, "{\"__type\":\"" NS "ThrottlingException\",\"mess",
           "ThrottlingException", NULL, 1, 1);

    /* Every prefix of a real error body, with the exact length (no NUL
     * after it, so a read past body_len would be seen by ASan). */
    const char *full = "{\"__type\":\"" NS "ConditionalCheckFailedException\","
                       "\"message\":\"The conditional request failed\","
                       "\"Item\":{\"pk\":{\"S\":\"a\"},\"n\":{\"N\":\"1.5e3\"},"
                       "\"l\":{\"L\":[{\"BOOL\":true},{\"NULL\":true}]}}}";
    size_t n = strlen(full);
    for (size_t k = 0; k <= n; k++) {
        char *copy = malloc(k ? k : 1);
        assert_non_null(copy);
        memcpy(copy, full, k);
        assert_int_equal(ddbk_parse(400, "id", copy, k, &err), -1);
        assert_true(strlen(err.code) < sizeof err.code);
        free(copy);
    }
    assert_string_equal(err.code, "ConditionalCheckFailedException");
}

static void test_overlong(void **state)
{
    char *body;
    size_t big = 5000;
    ddbk_error err;

    (void)state;
    body = malloc(big * 2 + 100);
    assert_non_null(body);

    /* An overlong __type without namespace: code truncated to fit. */
    strcpy(body, "{\"__type\":\"");
    memset(body + strlen(body), 'T', big);
    strcpy(body + 11 + big, "\",\"message\":\"");
    size_t at = strlen(body);
    memset(body + at, 'm', big);
    strcpy(body + at + big, "\"}");
    assert_int_equal(parse(400, body, &err), -1);
    assert_int_equal(strlen(err.code), sizeof err.code - 1);
    for (size_t i = 0; i < sizeof err.code - 1; i++)
        assert_int_equal(err.code[i], 'T');
    assert_int_equal(strlen(err.message), sizeof err.message - 1);
    for (size_t i = 0; i < sizeof err.message - 1; i++)
        assert_int_equal(err.message[i], 'm');
    assert_int_equal(err.retryable, 0);

    /* An overlong message without __type on a 5xx. */
    strcpy(body, "{\"message\":\"");
    memset(body + 12, 'q', big);
    strcpy(body + 12 + big, "\"}");
    assert_int_equal(parse(500, body, &err), -1);
    assert_string_equal(err.code, "UnknownError");
    assert_true(strlen(err.message) < sizeof err.message);
    assert_non_null(strstr(err.message, "qqqq"));
    assert_int_equal(err.retryable, 1);

    /* A long namespace before a short code. */
    strcpy(body, "{\"__type\":\"");
    memset(body + 11, 'n', 300);
    strcpy(body + 311, "#ThrottlingException\"}");
    assert_int_equal(parse(400, body, &err), -1);
    /* The scan keeps the first 127 bytes of __type, all namespace here, so
     * the code cannot survive (a limit, not checked); it must still be a
     * terminated string that fits. */
    assert_true(strlen(err.code) < sizeof err.code);
    free(body);

    /* A short namespace with a code of exactly 95 characters. */
    char t95[96];
    memset(t95, 'C', 95);
    t95[95] = '\0';
    char b2[256];
    snprintf(b2, sizeof b2, "{\"__type\":\"ns#%s\"}", t95);
    assert_int_equal(parse(400, b2, &err), -1);
    assert_string_equal(err.code, t95);
    assert_string_equal(err.message, t95);
}

/* A long namespace must not cost the code: AWS namespaces are short, but a
 * proxy's may not be, and the scratch is larger than the code for that. */
static void test_long_namespace_keeps_code(void **state)
{
    char body[512];
    char ns[101];
    ddbk_error err;

    (void)state;
    memset(ns, 'n', 100);
    ns[100] = '\0';
    snprintf(body, sizeof body, "{\"__type\":\"%s#ThrottlingException\"}", ns);
    assert_int_equal(parse(400, body, &err), -1);
    assert_string_equal(err.code, "ThrottlingException");
    assert_int_equal(err.throttling, 1);
}

static void test_deep_nesting(void **state)
{
    size_t depth = 20000;
    char *body = malloc(depth * 2 + 64);
    ddbk_error err;

    (void)state;
    assert_non_null(body);
    size_t n = 0;
    n += (size_t)sprintf(body, "{\"__type\":\"T\",\"a\":");
    for (size_t i = 0; i < depth; i++)
        body[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        body[n++] = ']';
    body[n++] = '}';
    body[n] = '\0';
    assert_int_equal(ddbk_parse(400, NULL, body, n, &err), -1);
    assert_string_equal(err.code, "T");
    free(body);
}

/* Past the decoder's nesting limit the scan stops (yajl's own stack would
 * grow with the body): a __type after a million levels is not read, so the
 * status decides; a __type before them is kept. */
static void test_nesting_past_the_limit(void **state)
{
    size_t depth = 1000000;
    char *body = malloc(depth * 2 + 64); /* valid JSON, 2 MB */
    ddbk_error err;

    (void)state;
    assert_non_null(body);
    for (int before = 0; before < 2; before++) {
        size_t n = (size_t)sprintf(body, "{%s\"Item\":", before ? "\"__type\":\"T\"," : "");
        for (size_t i = 0; i < depth; i++)
            body[n++] = '[';
        for (size_t i = 0; i < depth; i++)
            body[n++] = ']';
        n += (size_t)sprintf(body + n, ",\"__type\":\"Late\"}");
        assert_int_equal(ddbk_parse(400, NULL, body, n, &err), -1);
        assert_string_equal(err.code, before ? "T" : "UnknownError");
    }
    /* At the limit exactly, the scan goes on to the name. */
    size_t n = (size_t)sprintf(body, "{\"Item\":");
    for (size_t i = 1; i < DDBK__MAX_JSON_DEPTH; i++)
        body[n++] = '[';
    for (size_t i = 1; i < DDBK__MAX_JSON_DEPTH; i++)
        body[n++] = ']';
    n += (size_t)sprintf(body + n, ",\"__type\":\"Late\"}");
    assert_int_equal(ddbk_parse(400, NULL, body, n, &err), -1);
    assert_string_equal(err.code, "Late");
    free(body);
}

static void test_error_transport(void **state)
{
    ddbk_error err;

    (void)state;
    memset(&err, 0x5a, sizeof err);
    ddbk_error_transport(&err, 1, "Operation timed out after 3000 milliseconds");
    assert_string_equal(err.code, "Timeout");
    assert_string_equal(err.message, "Operation timed out after 3000 milliseconds");
    assert_int_equal(err.timeout, 1);
    assert_int_equal(err.retryable, 1);
    assert_int_equal(err.throttling, 0);
    assert_int_equal(err.status, 0);
    assert_string_equal(err.request_id, "");

    memset(&err, 0x5a, sizeof err);
    ddbk_error_transport(&err, 0, "Couldn't connect to server");
    assert_string_equal(err.code, "ConnectionError");
    assert_string_equal(err.message, "Couldn't connect to server");
    assert_int_equal(err.timeout, 0);
    assert_int_equal(err.retryable, 1);
    assert_int_equal(err.throttling, 0);
    assert_int_equal(err.status, 0);

    ddbk_error_transport(&err, 0, NULL);
    assert_string_equal(err.code, "ConnectionError");
    assert_true(err.message[0] != '\0');

    /* A '%' in the text is not a format. */
    ddbk_error_transport(&err, 1, "100%s done %n");
    assert_string_equal(err.message, "100%s done %n");

    /* Overlong text: truncated and terminated. */
    char longwhat[2000];
    memset(longwhat, 'w', sizeof longwhat - 1);
    longwhat[sizeof longwhat - 1] = '\0';
    ddbk_error_transport(&err, 0, longwhat);
    assert_int_equal(strlen(err.message), sizeof err.message - 1);
}

static void test_error_set_clear(void **state)
{
    ddbk_error err;
    char longcode[200];

    (void)state;
    memset(&err, 0x5a, sizeof err);
    ddbk_error_clear(&err);
    assert_string_equal(err.code, "");
    assert_string_equal(err.message, "");
    assert_int_equal(err.status, 0);
    assert_int_equal(err.retryable, 0);

    err.retryable = 1;
    err.timeout = 1;
    strcpy(err.request_id, "old");
    ddbk_error_set(&err, "InvalidArgument", 400, "bad %s #%d", "thing", 2);
    assert_string_equal(err.code, "InvalidArgument");
    assert_string_equal(err.message, "bad thing #2");
    assert_int_equal(err.status, 400);
    assert_int_equal(err.retryable, 0);
    assert_int_equal(err.timeout, 0);
    assert_string_equal(err.request_id, "");

    memset(longcode, 'c', sizeof longcode - 1);
    longcode[sizeof longcode - 1] = '\0';
    ddbk_error_set(&err, longcode, 0, "%s", "");
    assert_int_equal(strlen(err.code), sizeof err.code - 1);
}

/* A __type that names no error gets the status's code, never an empty one
 * or a server's control characters. */
static void test_type_without_a_name(void **state)
{
    static const char *const bodies[] = {
        "{\"__type\":\"\"}", "{\"__type\":\"" NS "\"}", "{\"__type\":\"#\"}",
        "{\"__type\":\":x\"}", "{\"__type\":\"ns#:x\"}", "{\"__type\":5}",
        "{\"__type\":null}", "{\"__type\":true}", "{\"__type\":{\"a\":\"b\"}}",
        "{\"__type\":[\"ValidationException\"]}", "{\"__type\":\"a\\u001b]0;x\\u0007\"}",
        "{\"__type\":\"two words\"}", "{\"__type\":\"\",\"message\":\"m\"}",
    };
    ddbk_error err;

    (void)state;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        expect(400, bodies[i], "UnknownError", NULL, 0, 0);
        expect(500, bodies[i], "UnknownError", NULL, 1, 0);
        expect(413, bodies[i], "RequestEntityTooLarge", NULL, 0, 0);
    }
    parse(400, "{\"__type\":\"\",\"message\":\"the text\"}", &err);
    assert_true(ddbk_error_is(&err, DDBK_ERR_UNKNOWN));
    assert_non_null(strstr(err.message, "400"));
    assert_non_null(strstr(err.message, "the text"));
    /* The name between the namespace and a ':' suffix. */
    expect(400, "{\"__type\":\"" NS "ValidationException:http://internal.example/x#y\"}",
           "ValidationException", "ValidationException", 0, 0);
    expect(400, "{\"__type\":\"ThrottlingException:\"}", "ThrottlingException", NULL, 1, 1);
}

/* A long namespace is cut before the name is copied. */
static void test_very_long_namespace_keeps_code(void **state)
{
    char body[1024];
    char ns[601];
    ddbk_error err;

    (void)state;
    memset(ns, 'n', 600);
    ns[600] = '\0';
    snprintf(body, sizeof body, "{\"__type\":\"%s#ThrottlingException\"}", ns);
    assert_int_equal(parse(400, body, &err), -1);
    assert_string_equal(err.code, "ThrottlingException");
}

/* A response cut short (its Content-Length not reached) is a
 * ConnectionError, and what arrived of its body is no error body: the
 * caller finds none, so nothing (a failed condition's Item) is read from
 * half a response. */
static void cut_respond(int lfd, int notes, const void *arg, int n)
{
    static char req[16384];
    size_t got;
    (void)arg;
    (void)n;
    for (;;) {
        int fd = accept_request(lfd, req, sizeof req, &got);
        note(notes, op_letter(req));
        const char *body = "{" CCF_TYPE ",\"message\":\"cut\",\"Item\":{\"k\":{\"S\":\"v\"}}}";
        char head[256];
        int len = snprintf(head, sizeof head,
                           "HTTP/1.1 400 X\r\nContent-Type: application/x-amz-json-1.0\r\n"
                           "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                           strlen(body) + 100);
        if (write(fd, head, (size_t)len) != len || write(fd, body, strlen(body)) < 0)
            _exit(4);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
}

static void test_cut_response_has_no_error_body(void **state)
{
    ddbk_config cfg;
    ddbk_response resp;
    ddbk_error err;
    char ep[64];

    (void)state;
    responder_setup();
    int port = responder_start(cut_respond, NULL, 0);
    local_config(&cfg, ep, sizeof ep, port);
    cfg.max_attempts = 1;
    ddbk_client *c = new_client(&cfg, NULL);
    ddbk_response_init(&resp);
    assert_int_equal(ddbk_call(c, "PutItem", "{}", 2, &resp, &err), -1);
    assert_string_equal(err.code, "ConnectionError");
    assert_int_equal(err.status, 0);
    assert_int_equal(resp.body.len, 0);
    ddbk_response_free(&resp);
    ddbk_client_free(c);
    responder_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_type_namespace_stripped),
        cmocka_unit_test(test_message_case),
        cmocka_unit_test(test_no_message_uses_code),
        cmocka_unit_test(test_413),
        cmocka_unit_test(test_5xx_without_type),
        cmocka_unit_test(test_throttling),
        cmocka_unit_test(test_transient),
        cmocka_unit_test(test_not_retryable),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_nested_keys_ignored),
        cmocka_unit_test(test_transaction_throttled),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_overlong),
        cmocka_unit_test(test_long_namespace_keeps_code),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_nesting_past_the_limit),
        cmocka_unit_test(test_5xx_is_ambiguous),
        cmocka_unit_test(test_error_transport),
        cmocka_unit_test(test_error_set_clear),
        cmocka_unit_test(test_type_without_a_name),
        cmocka_unit_test(test_very_long_namespace_keeps_code),
        cmocka_unit_test(test_cut_response_has_no_error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
