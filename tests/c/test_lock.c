/*
 * engine/lock.c without a server: the JSON it writes for keys, what it
 * refuses before sending anything, and the validity arithmetic. The
 * protocol itself is tested against DynamoDB Local (tests/spec/lock_*).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "internal.h"

int put_str(ddbk_buf *b, const char *s);
int build_target(ddbk_lock *l, const ddbk_lock_key *k, ddbk_error *err);

static void test_put_str_escapes(void **state)
{
    ddbk_buf b;
    (void)state;
    ddbk_buf_init(&b, 0);
    assert_int_equal(put_str(&b, "a\"b\\c\n\x01 é✓"), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\u000a\\u0001 é✓\"");
    ddbk_buf_free(&b);
}

static void test_put_str_refuses_bad_utf8(void **state)
{
    static const char *const bad[] = { "\xff", "a\xc3", "\xc0\xaf", "\xe2\x82", "\xf8\x88\x80\x80\x80" };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ddbk_buf b;
        ddbk_buf_init(&b, 0);
        assert_int_equal(put_str(&b, bad[i]), -2);
        ddbk_buf_free(&b);
    }
}

static void test_target_hash_and_range(void **state)
{
    ddbk_lock l;
    ddbk_error err;
    ddbk_lock_key k = { "tbl", "pk", "LOCK#1", "sk", "LOCK#1" };
    (void)state;
    memset(&l, 0, sizeof l);
    ddbk_buf_init(&l.target, 0);
    assert_int_equal(build_target(&l, &k, &err), 0);
    assert_string_equal(l.target.data,
                        "\"TableName\":\"tbl\",\"Key\":{\"pk\":{\"S\":\"LOCK#1\"},"
                        "\"sk\":{\"S\":\"LOCK#1\"}}");
    assert_string_equal(l.pk_name, "pk");

    ddbk_lock_key node = { "idempotency-cache", "cacheKey", "lock:k\"1", NULL, NULL };
    assert_int_equal(build_target(&l, &node, &err), 0);
    assert_string_equal(l.target.data,
                        "\"TableName\":\"idempotency-cache\",\"Key\":{\"cacheKey\":"
                        "{\"S\":\"lock:k\\\"1\"}}");
    ddbk_lock_free(&l);
}

static void test_target_refusals(void **state)
{
    static const ddbk_lock_key bad[] = {
        { NULL, "pk", "v", NULL, NULL },
        { "", "pk", "v", NULL, NULL },
        { "t", NULL, "v", NULL, NULL },
        { "t", "pk", "", NULL, NULL },
        { "t", "pk", "v", "sk", NULL },      /* a sort key name without value */
        { "t", "pk", "v", NULL, "x" },
        { "t", "pk", "\xff", NULL, NULL },   /* not UTF-8 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ddbk_lock l;
        ddbk_error err;
        memset(&l, 0, sizeof l);
        ddbk_buf_init(&l.target, 0);
        assert_int_equal(build_target(&l, &bad[i], &err), -1);
        assert_string_equal(err.code, "InvalidArgument");
        ddbk_lock_free(&l);
    }
}

static void test_acquire_checks_options_before_sending(void **state)
{
    ddbk_config cfg;
    ddbk_error err;
    ddbk_lock l;
    ddbk_lock_key k = { "t", "pk", "v", NULL, NULL };
    static const ddbk_lock_opts bad[] = {
        { 0, 0, 0, NULL }, { -5, 0, 0, NULL }, { 100, -1, 0, NULL }, { 100, 0, -1, NULL },
    };
    (void)state;
    ddbk_config_init(&cfg);
    cfg.endpoint = "http://127.0.0.1:9"; /* never contacted: the options fail first */
    cfg.access_key_id = "AKID";
    cfg.secret_access_key = "secret";
    ddbk_client *c = ddbk_client_new(&cfg, &err);
    assert_non_null(c);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ddbk_lock_acquire(c, &k, &bad[i], &l, NULL, &err), -1);
        assert_string_equal(err.code, "InvalidArgument");
    }
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 0);
    ddbk_client_free(c);
}

static void test_valid_ms(void **state)
{
    ddbk_lock l;
    (void)state;
    memset(&l, 0, sizeof l);
    assert_int_equal(ddbk_lock_valid_ms(&l), 0); /* not held */
    l.held = 1;
    l.lease_ms = 10000;
    l.skew_ms = 1000;
    l.lease_start_mono_ms = ddbk__mono_us() / 1000.0;
    long v = ddbk_lock_valid_ms(&l);
    assert_true(v <= 9000 && v > 8000);
    l.lease_start_mono_ms -= 20000; /* long past */
    assert_int_equal(ddbk_lock_valid_ms(&l), 0);
}

static void test_renew_release_of_lost_handle(void **state)
{
    ddbk_lock l;
    ddbk_error err;
    (void)state;
    memset(&l, 0, sizeof l);
    /* Not held: answered without a client, and without a request. */
    assert_int_equal(ddbk_lock_renew(NULL, &l, 0, &err), -1);
    assert_string_equal(err.code, "lost");
    assert_int_equal(ddbk_lock_release(NULL, &l, &err), -1);
    assert_string_equal(err.code, "not_owner");
}

static void test_fence_condition(void **state)
{
    ddbk_lock l;
    ddbk_buf b;
    (void)state;
    memset(&l, 0, sizeof l);
    l.fence = 42;
    ddbk_buf_init(&b, 0);
    ddbk_buf_puts(&b, "{");
    assert_int_equal(ddbk_lock_fence_condition(&l, "fence", &b), 0);
    assert_string_equal(b.data,
                        "{\"ConditionExpression\":\"attribute_not_exists(#ddbkit_fence) OR "
                        "#ddbkit_fence <= :ddbkit_fence\",\"ExpressionAttributeNames\":"
                        "{\"#ddbkit_fence\":\"fence\"},\"ExpressionAttributeValues\":"
                        "{\":ddbkit_fence\":{\"N\":\"42\"}}");
    size_t before = b.len;
    assert_int_equal(ddbk_lock_fence_condition(&l, "\xff", &b), -1);
    assert_int_equal(b.len, before); /* a failure appends nothing */
    assert_int_equal(strlen(b.data), before);
    ddbk_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_str_escapes),
        cmocka_unit_test(test_put_str_refuses_bad_utf8),
        cmocka_unit_test(test_target_hash_and_range),
        cmocka_unit_test(test_target_refusals),
        cmocka_unit_test(test_acquire_checks_options_before_sending),
        cmocka_unit_test(test_valid_ms),
        cmocka_unit_test(test_renew_release_of_lost_handle),
        cmocka_unit_test(test_fence_condition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
