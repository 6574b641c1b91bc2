/*
 * engine/stats.c: per-client counters. Exact per-op and total counts, error
 * codes, the "other" overflow slot (counts conserved), and the latency
 * summary: min, max and mean exact, percentiles from the histogram within
 * its stated error and never above the max.
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

static int setup(void **state)
{
    ddbk_config cfg;
    ddbk_error err;

    ddbk_config_init(&cfg);
    cfg.endpoint = "http://127.0.0.1:9";
    cfg.region = "us-east-1";
    cfg.access_key_id = "AKID";
    cfg.secret_access_key = "SECRET";
    *state = ddbk_client_new(&cfg, &err);
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    ddbk_client_free(*state);
    return 0;
}

static const ddbk_op_stats *find_op(const ddbk_stats *s, const char *op)
{
    for (int i = 0; i < s->nops; i++)
        if (strcmp(s->ops[i].op, op) == 0)
            return &s->ops[i];
    return NULL;
}

static uint64_t code_count(const ddbk_stats *s, const char *code)
{
    for (int i = 0; i < s->ncodes; i++)
        if (strcmp(s->codes[i].code, code) == 0)
            return s->codes[i].count;
    return 0;
}

static void test_empty(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;

    memset(&st, 0x5a, sizeof st);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.nops, 0);
    assert_int_equal(st.ncodes, 0);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.bytes_in, 0);
    assert_int_equal(st.bytes_out, 0);
    assert_int_equal(st.latency_count, 0);
    assert_true(st.latency_min_us == 0 && st.latency_max_us == 0);
    assert_true(st.latency_mean_us == 0 && st.latency_p50_us == 0);
    assert_true(st.latency_p90_us == 0 && st.latency_p99_us == 0);
}

static void test_counts(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;
    ddbk_error e;

    /* GetItem: 3 calls, one with 2 retries ending in an error. */
    ddbk_stats_record_attempt(c, "GetItem", 100, 200, 1000);
    ddbk_stats_record_call(c, "GetItem", 0, NULL);
    ddbk_stats_record_attempt(c, "GetItem", 100, 50, 2000);
    ddbk_stats_record_attempt(c, "GetItem", 100, 50, 3000);
    ddbk_stats_record_attempt(c, "GetItem", 100, 50, 4000);
    ddbk_error_set(&e, "ThrottlingException", 400, "slow");
    ddbk_stats_record_call(c, "GetItem", 2, &e);
    ddbk_stats_record_attempt(c, "GetItem", 100, 200, 1000);
    ddbk_stats_record_call(c, "GetItem", 0, NULL);
    /* PutItem: 2 calls, one error without retry, one success after 1 retry. */
    ddbk_stats_record_attempt(c, "PutItem", 10, 20, 500);
    ddbk_error_set(&e, "ConditionalCheckFailedException", 400, "no");
    ddbk_stats_record_call(c, "PutItem", 0, &e);
    ddbk_stats_record_attempt(c, "PutItem", 10, 20, 500);
    ddbk_stats_record_attempt(c, "PutItem", 10, 20, 500);
    ddbk_stats_record_call(c, "PutItem", 1, NULL);
    /* A second throttling error elsewhere. */
    ddbk_stats_record_attempt(c, "Query", 1, 2, 10);
    ddbk_error_set(&e, "ThrottlingException", 400, "slow");
    ddbk_stats_record_call(c, "Query", 0, &e);

    ddbk_stats_get(c, &st);
    assert_int_equal(st.nops, 3);
    const ddbk_op_stats *g = find_op(&st, "GetItem");
    const ddbk_op_stats *p = find_op(&st, "PutItem");
    const ddbk_op_stats *q = find_op(&st, "Query");
    assert_non_null(g);
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal(g->calls, 3);
    assert_int_equal(g->requests, 5);
    assert_int_equal(g->retries, 2);
    assert_int_equal(g->errors, 1);
    assert_int_equal(p->calls, 2);
    assert_int_equal(p->requests, 3);
    assert_int_equal(p->retries, 1);
    assert_int_equal(p->errors, 1);
    assert_int_equal(q->calls, 1);
    assert_int_equal(q->requests, 1);
    assert_int_equal(q->retries, 0);
    assert_int_equal(q->errors, 1);

    assert_int_equal(st.requests, 9);
    assert_int_equal(st.retries, 3);
    assert_int_equal(st.errors, 3);
    assert_int_equal(st.bytes_out, 5 * 100 + 3 * 10 + 1);
    assert_int_equal(st.bytes_in, 200 + 150 + 200 + 60 + 2);
    assert_int_equal(st.ncodes, 2);
    assert_int_equal(code_count(&st, "ThrottlingException"), 2);
    assert_int_equal(code_count(&st, "ConditionalCheckFailedException"), 1);

    assert_int_equal(st.latency_count, 9);
    assert_true(st.latency_min_us == 10);
    assert_true(st.latency_max_us == 4000);
    assert_true(fabs(st.latency_mean_us - 12510.0 / 9) < 1e-9);

    /* Reset clears everything, latency included. */
    ddbk_stats_reset(c);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.nops, 0);
    assert_int_equal(st.ncodes, 0);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.latency_count, 0);
    assert_true(st.latency_max_us == 0);
    assert_true(st.latency_p99_us == 0);
    /* And counting starts over cleanly. */
    ddbk_stats_record_attempt(c, "GetItem", 1, 1, 7);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.nops, 1);
    assert_int_equal(st.ops[0].requests, 1);
    assert_int_equal(st.ops[0].calls, 0);
    assert_true(st.latency_min_us == 7 && st.latency_max_us == 7);
}

/* Ops past the table land in "other"; nothing is lost or double counted. */
static void test_ops_overflow(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;
    char name[40];
    const int nnames = DDBK_STATS_MAX_OPS + 20;

    for (int round = 0; round < 3; round++)
        for (int i = 0; i < nnames; i++) {
            snprintf(name, sizeof name, "Op%d", i);
            ddbk_stats_record_attempt(c, name, 1, 1, 1);
            ddbk_stats_record_call(c, name, 1, NULL);
        }
    ddbk_stats_get(c, &st);
    assert_int_equal(st.nops, DDBK_STATS_MAX_OPS);
    uint64_t calls = 0, requests = 0, retries = 0;
    int others = 0;
    for (int i = 0; i < st.nops; i++) {
        calls += st.ops[i].calls;
        requests += st.ops[i].requests;
        retries += st.ops[i].retries;
        if (strcmp(st.ops[i].op, "other") == 0)
            others++;
        else
            /* A named slot counts only its own op. */
            assert_int_equal(st.ops[i].calls, 3);
    }
    assert_int_equal(others, 1);
    assert_int_equal(calls, 3 * nnames);
    assert_int_equal(requests, 3 * nnames);
    assert_int_equal(retries, 3 * nnames);
    assert_int_equal(st.requests, 3 * nnames);
    assert_int_equal(st.retries, 3 * nnames);
    /* The first ones seen keep their names. */
    assert_non_null(find_op(&st, "Op0"));
    assert_non_null(find_op(&st, "Op30"));
    assert_null(find_op(&st, "Op51"));
    const ddbk_op_stats *o = find_op(&st, "other");
    assert_non_null(o);
    assert_int_equal(o->calls, 3 * (nnames - (DDBK_STATS_MAX_OPS - 1)));
}

static void test_codes_overflow(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;
    ddbk_error e;
    const int ncodes = DDBK_STATS_MAX_CODES + 10;

    for (int round = 0; round < 2; round++)
        for (int i = 0; i < ncodes; i++) {
            char code[32];
            snprintf(code, sizeof code, "Code%dException", i);
            ddbk_error_set(&e, code, 400, "x");
            ddbk_stats_record_call(c, "GetItem", 0, &e);
        }
    ddbk_stats_get(c, &st);
    assert_int_equal(st.ncodes, DDBK_STATS_MAX_CODES);
    uint64_t total = 0;
    int others = 0;
    for (int i = 0; i < st.ncodes; i++) {
        total += st.codes[i].count;
        if (strcmp(st.codes[i].code, "other") == 0)
            others++;
        else
            assert_int_equal(st.codes[i].count, 2);
    }
    assert_int_equal(others, 1);
    assert_int_equal(total, 2 * ncodes);
    assert_int_equal(st.errors, 2 * ncodes);
    assert_int_equal(code_count(&st, "other"), 2 * (ncodes - (DDBK_STATS_MAX_CODES - 1)));
    assert_int_equal(code_count(&st, "Code0Exception"), 2);
    assert_int_equal(find_op(&st, "GetItem")->errors, 2 * ncodes);
}

/* An op name is counted in one slot however long it is (a host recording
 * its own attempts may use any name; ddbk_prepare accepts up to 63 letters,
 * the slot keeps 39). */
static void test_long_op_name_one_slot(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;
    char name[64];

    memset(name, 'A', 50);
    name[50] = '\0';
    for (int i = 0; i < 5; i++) {
        ddbk_stats_record_attempt(c, name, 1, 1, 1);
        ddbk_stats_record_call(c, name, 0, NULL);
    }
    ddbk_stats_get(c, &st);
    assert_int_equal(st.nops, 1);
    assert_int_equal(st.ops[0].calls, 5);
    assert_int_equal(st.ops[0].requests, 5);
}

/* Nearest-rank percentile of 1..n. */
static double true_pct(int n, double q)
{
    return ceil(q * n);
}

static void check_pct(double got, double want, double max, double tol)
{
    if (!(got <= max))
        fail_msg("percentile %.3f above max %.3f", got, max);
    if (fabs(got - want) > tol * want)
        fail_msg("percentile %.3f, true %.3f: off by more than %.0f%%", got, want,
                 tol * 100);
}

static void test_latency_uniform(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;

    /* 1..1000 us, shuffled order (a stride coprime with 1000). */
    for (int i = 0; i < 1000; i++)
        ddbk_stats_record_attempt(c, "GetItem", 0, 0, (double)((i * 367) % 1000 + 1));
    ddbk_stats_get(c, &st);
    assert_int_equal(st.latency_count, 1000);
    assert_true(st.latency_min_us == 1);
    assert_true(st.latency_max_us == 1000);
    assert_true(fabs(st.latency_mean_us - 500.5) < 1e-9);
    check_pct(st.latency_p50_us, true_pct(1000, 0.50), 1000, 0.10);
    check_pct(st.latency_p90_us, true_pct(1000, 0.90), 1000, 0.10);
    check_pct(st.latency_p99_us, true_pct(1000, 0.99), 1000, 0.10);
    assert_true(st.latency_p50_us <= st.latency_p90_us);
    assert_true(st.latency_p90_us <= st.latency_p99_us);

    /* A wider range: 1..100000 us. */
    ddbk_stats_reset(c);
    for (int i = 1; i <= 100000; i++)
        ddbk_stats_record_attempt(c, "GetItem", 0, 0, (double)i);
    ddbk_stats_get(c, &st);
    assert_true(fabs(st.latency_mean_us - 50000.5) < 1e-6);
    check_pct(st.latency_p50_us, true_pct(100000, 0.50), 100000, 0.10);
    check_pct(st.latency_p90_us, true_pct(100000, 0.90), 100000, 0.10);
    check_pct(st.latency_p99_us, true_pct(100000, 0.99), 100000, 0.10);
}

static void test_latency_constant_and_tiny(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;

    /* All the same: every percentile is that value, never above it. */
    for (int i = 0; i < 100; i++)
        ddbk_stats_record_attempt(c, "GetItem", 0, 0, 777.0);
    ddbk_stats_get(c, &st);
    assert_true(st.latency_min_us == 777 && st.latency_max_us == 777);
    assert_true(st.latency_mean_us == 777);
    assert_true(st.latency_p50_us <= 777 && st.latency_p50_us > 777 * 0.9);
    assert_true(st.latency_p99_us <= 777 && st.latency_p99_us > 777 * 0.9);

    /* Sub-microsecond and zero latencies. */
    ddbk_stats_reset(c);
    ddbk_stats_record_attempt(c, "GetItem", 0, 0, 0.0);
    ddbk_stats_record_attempt(c, "GetItem", 0, 0, 0.25);
    ddbk_stats_get(c, &st);
    assert_true(st.latency_min_us == 0);
    assert_true(st.latency_max_us == 0.25);
    assert_true(st.latency_p99_us <= 0.25);

    /* One huge latency (an hour) lands in range, not past the table. */
    ddbk_stats_reset(c);
    ddbk_stats_record_attempt(c, "GetItem", 0, 0, 3.6e9);
    ddbk_stats_record_attempt(c, "GetItem", 0, 0, 1e15);
    ddbk_stats_get(c, &st);
    assert_true(st.latency_max_us == 1e15);
    assert_true(st.latency_p99_us <= 1e15);
    assert_true(st.latency_p50_us <= 1e15);
}

/* A two-valued distribution with the median exactly on a bucket's lower
 * edge (512 us) and a much larger max: the histogram's stated accuracy
 * (internal.h: "within 9% of the truth") must hold there too. */
static void test_latency_bucket_edge(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;

    for (int i = 0; i < 60; i++)
        ddbk_stats_record_attempt(c, "GetItem", 0, 0, 512.0);
    for (int i = 0; i < 40; i++)
        ddbk_stats_record_attempt(c, "GetItem", 0, 0, 5000.0);
    ddbk_stats_get(c, &st);
    assert_true(st.latency_p99_us <= 5000);
    check_pct(st.latency_p99_us, 5000, 5000, 0.09);
    check_pct(st.latency_p50_us, 512, 5000, 0.09);
}

/* Latencies come from the host (the Lua binding passes any number, 0/0 and
 * math.huge included): a non-finite one must not poison min, mean and the
 * percentiles for the rest of the client's life (nor index the histogram
 * through an undefined float-to-int conversion). */
static void test_latency_non_finite(void **state)
{
    ddbk_client *c = *state;
    ddbk_stats st;

    ddbk_stats_record_attempt(c, "GetItem", 0, 0, NAN);
    ddbk_stats_record_attempt(c, "GetItem", 0, 0, INFINITY);
    ddbk_stats_record_attempt(c, "GetItem", 0, 0, 100.0);
    ddbk_stats_record_attempt(c, "GetItem", 0, 0, 200.0);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 4);
    assert_true(isfinite(st.latency_min_us));
    assert_true(isfinite(st.latency_max_us));
    assert_true(isfinite(st.latency_mean_us));
    assert_true(isfinite(st.latency_p50_us));
    assert_true(st.latency_p50_us <= st.latency_max_us);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ops_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_op_name_one_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_uniform, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_constant_and_tiny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_bucket_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_non_finite, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
