/*
 * engine/retry.c: the AWS standard retry mode. Which errors are retried,
 * the full-jitter delay under min(max_backoff, base * 2^(attempt-1)), the
 * per-client retry quota (5 tokens a retry, 10 after a timeout, refunds on
 * success), and the jitter source. The client is built against an endpoint
 * that is never contacted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static ddbk_client *new_client(int max_attempts, long base, long max_backoff,
                               int quota)
{
    ddbk_config cfg;
    ddbk_error err;
    ddbk_client *c;

    ddbk_config_init(&cfg);
    cfg.endpoint = "http://127.0.0.1:9";
    cfg.region = "us-east-1";
    cfg.access_key_id = "AKID";
    cfg.secret_access_key = "SECRET";
    cfg.connect_timeout_ms = 50;
    cfg.timeout_ms = 100;
    cfg.max_attempts = max_attempts;
    cfg.base_delay_ms = base;
    cfg.max_backoff_ms = max_backoff;
    cfg.retry_quota = quota;
    c = ddbk_client_new(&cfg, &err);
    if (c == NULL)
        fail_msg("ddbk_client_new: %s: %s", err.code, err.message);
    return c;
}

static ddbk_error retryable_error(int timeout)
{
    ddbk_error e;

    if (timeout) {
        ddbk_error_transport(&e, 1, "timed out");
    } else {
        ddbk_error_set(&e, "ThrottlingException", 400, "slow down");
        e.retryable = 1;
        e.throttling = 1;
    }
    return e;
}

static void test_not_retryable(void **state)
{
    ddbk_client *c = new_client(5, 10, 1000, 500);
    ddbk_error e;
    ddbk_stats st;

    (void)state;
    ddbk_error_set(&e, "ValidationException", 400, "bad");
    assert_int_equal(ddbk_retry_decide(c, &e, 1, 0.5), -1);
    assert_int_equal(c->quota, 500); /* no tokens spent on a give-up */
    /* A real parse result, too. */
    assert_int_equal(ddbk_parse(400, NULL, "{\"__type\":\"x#ConditionalCheckFailedException\"}",
                                46, &e), -1);
    assert_int_equal(ddbk_retry_decide(c, &e, 1, 0.5), -1);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.quota_exhausted, 0);
    assert_int_equal(st.retry_delay_ms_total, 0);
    ddbk_client_free(c);
}

static void test_attempts_spent(void **state)
{
    ddbk_client *c = new_client(3, 10, 1000, 500);
    ddbk_error e = retryable_error(0);

    (void)state;
    assert_true(ddbk_retry_decide(c, &e, 1, 0.0) >= 0);
    assert_true(ddbk_retry_decide(c, &e, 2, 0.0) >= 0);
    int q = c->quota;
    assert_int_equal(ddbk_retry_decide(c, &e, 3, 0.0), -1);
    assert_int_equal(ddbk_retry_decide(c, &e, 4, 0.0), -1);
    assert_int_equal(c->quota, q); /* giving up costs nothing */
    ddbk_client_free(c);

    /* max_attempts 1: never retried. */
    c = new_client(1, 10, 1000, 500);
    assert_int_equal(ddbk_retry_decide(c, &e, 1, 0.0), -1);
    ddbk_client_free(c);
}

static void test_delays(void **state)
{
    /* base 100, cap 2000: ceilings 100, 200, 400, 800, 1600, 2000 (capped). */
    static const long ceil_ms[] = {100, 200, 400, 800, 1600, 2000, 2000, 2000};
    ddbk_client *c = new_client(100, 100, 2000, 0);
    ddbk_error e = retryable_error(0);

    (void)state;
    for (int attempt = 1; attempt <= 8; attempt++) {
        long top = ceil_ms[attempt - 1];
        assert_int_equal(ddbk_retry_decide(c, &e, attempt, 0.0), 0);
        long hi = ddbk_retry_decide(c, &e, attempt, 0.9999999);
        assert_true(hi < top);
        assert_true(hi >= top - 1);
        /* rnd at or past 1 stays just under the ceiling, never at it. */
        hi = ddbk_retry_decide(c, &e, attempt, 1.0);
        assert_true(hi < top);
        assert_true(hi >= top - 1);
        hi = ddbk_retry_decide(c, &e, attempt, 7.0);
        assert_true(hi < top);
        /* Negative rnd clamps to 0. */
        assert_int_equal(ddbk_retry_decide(c, &e, attempt, -3.0), 0);
        /* Linear in rnd. */
        assert_int_equal(ddbk_retry_decide(c, &e, attempt, 0.5), top / 2);
        assert_int_equal(ddbk_retry_decide(c, &e, attempt, 0.25), top / 4);
    }
    /* Far attempts do not overflow the doubling. */
    assert_true(ddbk_retry_decide(c, &e, 99, 0.5) == 1000);
    ddbk_client_free(c);

    /* Base above the cap: the cap wins from the first retry. */
    c = new_client(10, 5000, 300, 0);
    assert_true(ddbk_retry_decide(c, &e, 1, 0.9999999) < 300);
    assert_true(ddbk_retry_decide(c, &e, 1, 0.9999999) >= 299);
    ddbk_client_free(c);

    /* Base 0: no waiting at all. */
    c = new_client(10, 0, 300, 0);
    for (int attempt = 1; attempt < 10; attempt++)
        assert_int_equal(ddbk_retry_decide(c, &e, attempt, 0.9999), 0);
    ddbk_client_free(c);

    /* The default config: 50 ms base, 20 s cap. */
    c = new_client(3, 50, 20000, 500);
    assert_true(ddbk_retry_decide(c, &e, 1, 0.9999999) == 49);
    assert_true(ddbk_retry_decide(c, &e, 2, 0.9999999) == 99);
    ddbk_client_free(c);
}

static void test_quota(void **state)
{
    ddbk_client *c = new_client(100, 1, 10, 23);
    ddbk_error e = retryable_error(0), t = retryable_error(1);
    ddbk_stats st;

    (void)state;
    assert_int_equal(c->quota_max, 23);
    assert_int_equal(c->quota, 23);
    assert_true(ddbk_retry_decide(c, &e, 1, 0.0) >= 0);
    assert_int_equal(c->quota, 18);
    assert_true(ddbk_retry_decide(c, &t, 1, 0.0) >= 0);
    assert_int_equal(c->quota, 8);
    /* 8 left: a timeout retry (10) is refused, a plain one (5) is not. */
    assert_int_equal(ddbk_retry_decide(c, &t, 1, 0.0), -1);
    assert_int_equal(c->quota, 8);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.quota_exhausted, 1);
    assert_true(ddbk_retry_decide(c, &e, 1, 0.0) >= 0);
    assert_int_equal(c->quota, 3);
    assert_int_equal(ddbk_retry_decide(c, &e, 1, 0.0), -1);
    assert_int_equal(ddbk_retry_decide(c, &e, 2, 0.0), -1);
    assert_int_equal(c->quota, 3);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.quota_exhausted, 3);
    /* A non-retryable error or spent attempts are not quota exhaustion. */
    ddbk_error v;
    ddbk_error_set(&v, "ValidationException", 400, "bad");
    assert_int_equal(ddbk_retry_decide(c, &v, 1, 0.0), -1);
    assert_int_equal(ddbk_retry_decide(c, &e, 100, 0.0), -1);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.quota_exhausted, 3);

    /* A success without retry refunds 1 token... */
    ddbk_retry_success(c, 0, 0);
    assert_int_equal(c->quota, 4);
    ddbk_retry_success(c, 0, 1); /* last_was_timeout ignored when not retried */
    assert_int_equal(c->quota, 5);
    /* ...with a retry, what the retry took. */
    ddbk_retry_success(c, 1, 0);
    assert_int_equal(c->quota, 10);
    ddbk_retry_success(c, 1, 1);
    assert_int_equal(c->quota, 20);
    /* Never above the max. */
    ddbk_retry_success(c, 1, 1);
    assert_int_equal(c->quota, 23);
    ddbk_retry_success(c, 0, 0);
    assert_int_equal(c->quota, 23);
    ddbk_client_free(c);
}

static void test_quota_drains_then_refills(void **state)
{
    ddbk_client *c = new_client(3, 1, 10, 500);
    ddbk_error e = retryable_error(0);
    ddbk_stats st;
    int granted = 0;

    (void)state;
    for (int i = 0; i < 200; i++)
        if (ddbk_retry_decide(c, &e, 1, 0.0) >= 0)
            granted++;
    assert_int_equal(granted, 100); /* 500 / 5 */
    assert_int_equal(c->quota, 0);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.quota_exhausted, 100);
    for (int i = 0; i < 5; i++)
        ddbk_retry_success(c, 0, 0);
    assert_int_equal(c->quota, 5);
    assert_true(ddbk_retry_decide(c, &e, 1, 0.0) >= 0);
    assert_int_equal(ddbk_retry_decide(c, &e, 1, 0.0), -1);
    ddbk_client_free(c);
}

static void test_quota_disabled(void **state)
{
    ddbk_client *c = new_client(3, 1, 10, 0);
    ddbk_error e = retryable_error(0), t = retryable_error(1);
    ddbk_stats st;

    (void)state;
    for (int i = 0; i < 10000; i++) {
        assert_true(ddbk_retry_decide(c, &e, 1, 0.0) >= 0);
        assert_true(ddbk_retry_decide(c, &t, 2, 0.0) >= 0);
    }
    ddbk_retry_success(c, 1, 1);
    ddbk_retry_success(c, 0, 0);
    assert_int_equal(c->quota, 0);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.quota_exhausted, 0);
    /* Attempts still bound it. */
    assert_int_equal(ddbk_retry_decide(c, &e, 3, 0.0), -1);
    ddbk_client_free(c);
}

static void test_random(void **state)
{
    double min = 1, max = 0, sum = 0, first;
    int distinct = 0, buckets[10] = {0};
    const int n = 100000;

    (void)state;
    first = ddbk_random();
    for (int i = 0; i < n; i++) {
        double r = ddbk_random();
        assert_true(r >= 0.0);
        assert_true(r < 1.0);
        if (r != first)
            distinct++;
        if (r < min)
            min = r;
        if (r > max)
            max = r;
        sum += r;
        buckets[(int)(r * 10)]++;
    }
    assert_true(distinct > n - 10);
    assert_true(min < 0.001);
    assert_true(max > 0.999);
    assert_true(fabs(sum / n - 0.5) < 0.01);
    for (int b = 0; b < 10; b++)
        assert_true(buckets[b] > n / 10 - n / 50 && buckets[b] < n / 10 + n / 50);
}

static void test_delay_total(void **state)
{
    ddbk_client *c = new_client(10, 100, 10000, 0);
    ddbk_error e = retryable_error(0);
    ddbk_stats st;
    long sum = 0;

    (void)state;
    for (int attempt = 1; attempt < 10; attempt++) {
        long d = ddbk_retry_decide(c, &e, attempt, 0.5);
        assert_true(d >= 0);
        sum += d;
    }
    /* 50 + 100 + 200 + 400 + 800 + 1600 + 3200 + 5000 + 5000 */
    assert_int_equal(sum, 16350);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.retry_delay_ms_total, 16350);
    /* Give-ups add nothing. */
    assert_int_equal(ddbk_retry_decide(c, &e, 10, 0.5), -1);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.retry_delay_ms_total, 16350);
    ddbk_stats_reset(c);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.retry_delay_ms_total, 0);
    ddbk_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_retryable),
        cmocka_unit_test(test_attempts_spent),
        cmocka_unit_test(test_delays),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_quota_drains_then_refills),
        cmocka_unit_test(test_quota_disabled),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_delay_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
