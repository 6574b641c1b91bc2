/*
 * engine/lock.c without a server: the JSON it writes for keys, what it
 * refuses before sending anything, the validity arithmetic, and the lock
 * machine (ddbk_lock_op) driven by hand with canned outcomes. The protocol
 * against a real service is tested on DynamoDB Local (tests/spec/lock_*).
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

#include "internal.h"
#include "responder.h"

int build_target(ddbk_lock *l, const ddbk_lock_key *k, ddbk_error *err);
int64_t released_expires_at(int64_t now_ms, long skew_ms);

/* Which items an acquire takes (engine/lock.c): missing, released, ddbkit's
 * and expired, foreign and expired past the grace. */
#define ACQUIRE_FREE                                                                  \
    "attribute_not_exists(#k)"                                                        \
    " OR (attribute_exists(#m) AND attribute_not_exists(#o))"                         \
    " OR ((attribute_exists(#o) OR attribute_exists(#x)) AND #e < :cut)"              \
    " OR (attribute_not_exists(#o) AND attribute_not_exists(#x) AND #e < :fcut)"

static void test_target_hash_and_range(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_error err;
    ddbk_lock_key k = { "tbl", "pk", "LOCK#1", "sk", "LOCK#1" };
    (void)state;
    l = ddbk__lock_new();
    assert_non_null(l);
    assert_int_equal(build_target(l, &k, &err), 0);
    assert_string_equal(l->target.data,
                        "\"TableName\":\"tbl\",\"Key\":{\"pk\":{\"S\":\"LOCK#1\"},"
                        "\"sk\":{\"S\":\"LOCK#1\"}}");
    assert_string_equal(l->pk_name, "pk");

    ddbk_lock_key node = { "idempotency-cache", "cacheKey", "lock:k\"1", NULL, NULL };
    assert_int_equal(build_target(l, &node, &err), 0);
    assert_string_equal(l->target.data,
                        "\"TableName\":\"idempotency-cache\",\"Key\":{\"cacheKey\":"
                        "{\"S\":\"lock:k\\\"1\"}}");
    ddbk_lock_free(l);
    l = NULL;
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
        ddbk_lock *l = NULL;
        ddbk_error err;
        l = ddbk__lock_new();
        assert_non_null(l);
        assert_int_equal(build_target(l, &bad[i], &err), -1);
        assert_string_equal(err.code, "InvalidArgument");
        ddbk_lock_free(l);
        l = NULL;
    }
}

/* What DynamoDB would refuse is refused before sending, and the error names
 * the field: overlong forms, surrogates, code points past U+10FFFF, bytes
 * that start nothing. */
static void test_target_refuses_what_dynamodb_would(void **state)
{
    static const char *const bad[] = {
        "\xff", "a\xc3", "\xc0\xaf",            /* a stray byte, a cut sequence, overlong '/' */
        "\xe0\x80\xaf", "\xf0\x80\x80\xaf",     /* overlong in 3 and 4 bytes */
        "\xed\xa0\x80", "\xed\xbf\xbf",         /* UTF-16 surrogates */
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", /* past U+10FFFF */
    };
    static const char *const fields[] = { "table", "pk_name", "pk_value", "sk_name", "sk_value" };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t f = 0; f < 5; f++) {
            ddbk_lock_key k = { "t", "pk", "v", "sk", "s" };
            const char **slot[] = { &k.table, &k.pk_name, &k.pk_value, &k.sk_name, &k.sk_value };
            ddbk_error err;
            *slot[f] = bad[i];
            ddbk_lock *l = ddbk__lock_new();
            assert_non_null(l);
            assert_int_equal(build_target(l, &k, &err), -1);
            assert_string_equal(err.code, "InvalidArgument");
            char want[64];
            snprintf(want, sizeof want, "%s is not valid UTF-8", fields[f]);
            if (!strstr(err.message, want))
                fail_msg("case %zu, field %s: \"%s\"", i, fields[f], err.message);
            ddbk_lock_free(l);
        }
    }
    /* The largest and the edges of each length are fine. */
    ddbk_lock_key ok = { "t", "pk", "\x7f\xc2\x80\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80"
                                    "\xf4\x8f\xbf\xbf", NULL, NULL };
    ddbk_error err;
    ddbk_lock *l = ddbk__lock_new();
    assert_int_equal(build_target(l, &ok, &err), 0);
    ddbk_lock_free(l);
}

static void test_acquire_checks_options_before_sending(void **state)
{
    ddbk_config cfg;
    ddbk_error err;
    ddbk_lock *l = NULL;
    ddbk_lock_key k = { "t", "pk", "v", NULL, NULL };
    static const ddbk_lock_opts bad[] = {
        { 0, 0, 0, NULL, 0 },    { -5, 0, 0, NULL, 0 },  { 100, -1, 0, NULL, 0 },
        { 100, 0, -1, NULL, 0 }, { 100, 0, 0, NULL, -1 },
    };
    (void)state;
    ddbk_config_init(&cfg);
    cfg.endpoint = "http://127.0.0.1:9"; /* never contacted: the options fail first */
    cfg.access_key_id = "AKID";
    cfg.secret_access_key = "secret";
    ddbk_client *c = ddbk_client_new(&cfg, &err);
    assert_non_null(c);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l = (ddbk_lock *)&k; /* overwritten: NULL on failure */
        assert_int_equal(ddbk_lock_acquire(c, &k, &bad[i], &l, NULL, &err), -1);
        assert_string_equal(err.code, "InvalidArgument");
        assert_null(l);
    }
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 0);
    ddbk_client_free(c);
}

static void test_valid_ms(void **state)
{
    ddbk_lock *l = NULL;
    (void)state;
    l = ddbk__lock_new();
    assert_non_null(l);
    assert_int_equal(ddbk_lock_valid_ms(l), 0); /* not held */
    l->held = 1;
    l->lease_ms = 10000;
    l->skew_ms = 1000;
    l->lease_start_mono_ms = ddbk__mono_us() / 1000.0;
    long v = ddbk_lock_valid_ms(l);
    assert_true(v <= 9000 && v > 8000);
    l->lease_start_mono_ms -= 20000; /* long past */
    assert_int_equal(ddbk_lock_valid_ms(l), 0);
    ddbk_lock_free(l);
    l = NULL;
}

static void test_renew_release_of_lost_handle(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_error err;
    (void)state;
    l = ddbk__lock_new();
    assert_non_null(l);
    /* Not held: answered without a client, and without a request. */
    assert_int_equal(ddbk_lock_renew(NULL, l, 0, &err), -1);
    assert_string_equal(err.code, "lost");
    assert_int_equal(ddbk_lock_release(NULL, l, &err), -1);
    assert_string_equal(err.code, "not_owner");
    ddbk_lock_free(l);
    l = NULL;
}

static void test_fence_condition(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_buf b;
    (void)state;
    l = ddbk__lock_new();
    assert_non_null(l);
    l->fence = 42;
    ddbk_buf_init(&b, 0);
    ddbk_buf_puts(&b, "{");
    assert_int_equal(ddbk_lock_fence_condition(l, "fence", &b), 0);
    assert_string_equal(b.data,
                        "{\"ConditionExpression\":\"attribute_not_exists(#ddbkit_fence) OR "
                        "#ddbkit_fence <= :ddbkit_fence\",\"ExpressionAttributeNames\":"
                        "{\"#ddbkit_fence\":\"fence\"},\"ExpressionAttributeValues\":"
                        "{\":ddbkit_fence\":{\"N\":\"42\"}}");
    size_t before = b.len;
    assert_int_equal(ddbk_lock_fence_condition(l, "\xff", &b), -1);
    assert_int_equal(b.len, before); /* a failure appends nothing */
    assert_int_equal(strlen(b.data), before);
    ddbk_buf_free(&b);
    ddbk_lock_free(l);
    l = NULL;
}

/* ------------------------------------------------- the machine by hand */

/* The handle's record version and lease, as a caller reads them. */
static const char *rvn_of(const ddbk_lock *l)
{
    static ddbk_lock_info in;
    ddbk_lock_info_get(l, &in);
    return in.rvn;
}

static long lease_of(const ddbk_lock *l)
{
    ddbk_lock_info in;
    ddbk_lock_info_get(l, &in);
    return in.lease_ms;
}

#define CCF_CODE "ConditionalCheckFailedException"
#define OTHERS_ITEM "{\"Item\":{\"pk\":{\"S\":\"k\"},\"lockOwner\":{\"S\":\"other:1\"}," \
                    "\"lockRvn\":{\"S\":\"r1\"},\"fence\":{\"N\":\"9\"},"        \
                    "\"expiresAt\":{\"N\":\"4102444800\"},\"leaseMs\":{\"N\":\"5000\"}}}"

static const ddbk_lock_key KEY = { "t", "pk", "k", NULL, NULL };

static ddbk_error failure(const char *code, long status, int retryable, int timeout)
{
    ddbk_error e;
    ddbk_error_set(&e, code, status, "canned %s", code);
    e.retryable = retryable;
    e.timeout = timeout;
    return e;
}

/* The record version a write sends as :r (acquire) or :new (renew). */
static void sent_rvn(const char *body, const char *name, char out[40])
{
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":{\"S\":\"", name);
    const char *p = strstr(body, pat);
    assert_non_null(p);
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    assert_true(n > 0 && n < 40);
    memcpy(out, p, n);
    out[n] = '\0';
}

/* The number the request sent as ExpressionAttributeValues[name]. */
static long long sent_num(const char *body, const char *name)
{
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":{\"N\":\"", name);
    const char *p = strstr(body, pat);
    assert_non_null(p);
    return strtoll(p + strlen(pat), NULL, 10);
}

static long long wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The item as the holder `owner` with record version `rvn` left it. */
static const char *item_of(char *buf, size_t cap, const char *field, const char *owner,
                           const char *rvn)
{
    snprintf(buf, cap,
             "{\"%s\":{\"pk\":{\"S\":\"k\"},\"lockOwner\":{\"S\":\"%s\"},\"lockRvn\":{\"S\":\"%s\"},"
             "\"fence\":{\"N\":\"3\"},\"expiresAt\":{\"N\":\"4102444800\"},"
             "\"leaseMs\":{\"N\":\"5000\"}}}",
             field, owner, rvn);
    return buf;
}

/* The success a real service gives an acquire (ALL_NEW): our owner, the
 * record version the write sent, and the fence it grew. */
static const char *grant_of(char *buf, size_t cap, const char *owner, const char *rvn,
                            long fence)
{
    snprintf(buf, cap,
             "{\"Attributes\":{\"pk\":{\"S\":\"k\"},\"lockOwner\":{\"S\":\"%s\"},"
             "\"lockRvn\":{\"S\":\"%s\"},\"fence\":{\"N\":\"%ld\"},"
             "\"expiresAt\":{\"N\":\"4102444800\"},\"leaseMs\":{\"N\":\"5000\"}}}",
             owner, rvn, fence);
    return buf;
}

static void expect_send(int what, const ddbk_lock_next *nx, const char *op)
{
    assert_int_equal(what, DDBK_LOCK_SEND);
    assert_int_equal(nx->what, DDBK_LOCK_SEND);
    assert_string_equal(nx->op, op);
    assert_non_null(nx->body);
    assert_int_equal(strlen(nx->body), nx->body_len);
}

/* A held lock, taken through the machine with one canned success. */
static ddbk_lock *acquired(void)
{
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 0 };
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn[40], ok[512];
    ddbk_lock *l;
    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", rvn);
    grant_of(ok, sizeof ok, ddbk_lock_owner(l), rvn, 3);
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    return l;
}

static void test_machine_acquire_success(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 0 };
    ddbk_lock_next nx;
    ddbk_lock_holder h;
    ddbk_error err;
    char rvn[40], ok[512];
    (void)state;

    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    assert_non_null(op);
    assert_int_equal(ddbk_lock_op_result(op, &h, &err), -1); /* not finished */
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "\"TableName\":\"t\",\"Key\":{\"pk\":{\"S\":\"k\"}}"));
    assert_non_null(strstr(nx.body, "\"ConditionExpression\":\"" ACQUIRE_FREE "\""));
    assert_non_null(strstr(nx.body, "#f = if_not_exists(#f, :base) + :one REMOVE #m\""));
    assert_non_null(strstr(nx.body, "\"#x\":\"releasedRvn\",\"#m\":\"releasedAt\""));
    assert_non_null(strstr(nx.body, "\"ReturnValuesOnConditionCheckFailure\":\"ALL_OLD\""));
    assert_non_null(strstr(nx.body, "\"ReturnValues\":\"ALL_NEW\""));
    sent_rvn(nx.body, ":r", rvn);
    grant_of(ok, sizeof ok, ddbk_lock_owner(l), rvn, 7);
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(nx.what, DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, &h, &err), 0);
    assert_string_equal(err.code, "");
    assert_false(h.known);
    /* Done stays done. */
    assert_int_equal(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), DDBK_LOCK_DONE);
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    assert_int_equal(ddbk_lock_fence(l), 7);
    assert_string_equal(rvn_of(l), rvn);
    assert_int_equal(lease_of(l), 5000);
    assert_true(ddbk_lock_valid_ms(l) > 3000);
    ddbk_lock_free(l);
    l = NULL;
}

static void test_machine_acquire_busy_then_sleep_then_success(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_buf busy;
    ddbk_lock_opts o = { 5000, 10000, 1000, &busy, 0 };
    ddbk_lock_next nx;
    ddbk_lock_holder h;
    ddbk_error err;
    char rvn1[40], rvn2[40], ok[512];
    (void)state;

    ddbk_buf_init(&busy, 0);
    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", rvn1);
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    /* Held by another: wait (full jitter under the first 25 ms ceiling). */
    assert_int_equal(ddbk_lock_op_next(op, OTHERS_ITEM, strlen(OTHERS_ITEM), &ccf, &nx),
                     DDBK_LOCK_SLEEP);
    assert_true(nx.sleep_ms >= 0 && nx.sleep_ms <= 25);
    assert_string_equal(busy.data, OTHERS_ITEM); /* the item as seen, kept for the caller */
    /* The wait is over: a new attempt with a new record version. */
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", rvn2);
    assert_string_not_equal(rvn1, rvn2);
    grant_of(ok, sizeof ok, ddbk_lock_owner(l), rvn2, 10);
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, &h, &err), 0);
    assert_string_equal(err.code, ""); /* the busy look is history */
    assert_true(h.known);              /* the holder as last seen */
    assert_string_equal(h.owner, "other:1");
    assert_int_equal(h.fence, 9);
    assert_int_equal(busy.len, 0); /* emptied on success */
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    assert_string_equal(rvn_of(l), rvn2);
    assert_int_equal(ddbk_lock_fence(l), 10);
    ddbk_lock_free(l);
    l = NULL;
    ddbk_buf_free(&busy);
}

/* The clock-free takeover came due while an attempt was on its way (sent
 * just before, answered just after): the next attempt goes at once, with
 * the watched version, instead of waiting out a random backoff that could
 * be longer than the holder's whole lease (a loaded CI slept 305 ms after
 * a 300 ms lease). */
static void test_machine_takeover_due_in_flight_goes_at_once(void **state)
{
    static const char stale[] =
        "{\"Item\":{\"pk\":{\"S\":\"k\"},\"lockOwner\":{\"S\":\"other:1\"},"
        "\"lockRvn\":{\"S\":\"r1\"},\"fence\":{\"N\":\"9\"},"
        "\"expiresAt\":{\"N\":\"4102444800\"},\"leaseMs\":{\"N\":\"20\"}}}";
    ddbk_lock *l = NULL;
    ddbk_lock_opts o = { 5000, 10000, 1000, NULL, 0 };
    ddbk_lock_next nx;
    ddbk_error err;
    struct timespec ts = { 0, 40 * 1000000L };
    (void)state;

    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    /* First look at r1 (lease 20 ms): wait at most until it is due. */
    assert_int_equal(ddbk_lock_op_next(op, stale, strlen(stale), &ccf, &nx), DDBK_LOCK_SLEEP);
    assert_true(nx.sleep_ms >= 0 && nx.sleep_ms <= 20);
    /* The next attempt is built at once, before r1 has stood a lease. */
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_null(strstr(nx.body, ":seen"));
    /* Its answer (r1 unchanged) comes after the lease has passed. */
    nanosleep(&ts, NULL);
    ccf = failure(CCF_CODE, 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, stale, strlen(stale), &ccf, &nx), DDBK_LOCK_SLEEP);
    assert_true(nx.sleep_ms == 0);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "\":seen\":{\"S\":\"r1\"}"));
    /* That one carried the takeover: a refusal now backs off as usual
     * (no retry storm), bounded by the backoff ceiling. */
    ccf = failure(CCF_CODE, 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, stale, strlen(stale), &ccf, &nx), DDBK_LOCK_SLEEP);
    assert_true(nx.sleep_ms >= 0 && nx.sleep_ms <= 500);
    ddbk_lock_op_free(op);
    ddbk_lock_free(l);
}

static void test_machine_acquire_busy_without_wait(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 0 };
    ddbk_lock_next nx;
    ddbk_lock_holder h;
    ddbk_error err;
    (void)state;

    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, OTHERS_ITEM, strlen(OTHERS_ITEM), &ccf, &nx),
                     DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, &h, &err), -1);
    assert_string_equal(err.code, "busy");
    assert_true(ddbk_error_is(&err, DDBK_ERR_BUSY));
    assert_false(ddbk_error_is(&err, DDBK_ERR_LOST));
    assert_string_equal(h.owner, "other:1");
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    assert_null(l->target.data); /* a failed acquire keeps nothing but the handle */
    ddbk_lock_free(l);
}

static void test_machine_acquire_timeout_settled_by_read_back(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 0 };
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn[40], item[512];
    (void)state;

    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", rvn);
    /* The engine gave up on timeouts: did the write land? Read it back. */
    ddbk_error timeout = failure("Timeout", 0, 1, 1);
    expect_send(ddbk_lock_op_next(op, NULL, 0, &timeout, &nx), &nx, "GetItem");
    assert_string_equal(nx.body, "{\"TableName\":\"t\",\"Key\":{\"pk\":{\"S\":\"k\"}},"
                                 "\"ConsistentRead\":true}");
    /* It did: our owner and our record version. */
    item_of(item, sizeof item, "Item", ddbk_lock_owner(l), rvn);
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    assert_string_equal(err.code, "");
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    assert_string_equal(rvn_of(l), rvn);
    assert_int_equal(ddbk_lock_fence(l), 3);
    ddbk_lock_free(l);
    l = NULL;

    /* It did not, and the read-back finds no item: the write's own failure. */
    ddbk_lock_free(l);
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    expect_send(ddbk_lock_op_next(op, NULL, 0, &timeout, &nx), &nx, "GetItem");
    assert_int_equal(ddbk_lock_op_next(op, "{}", 2, NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "Timeout");
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));

    /* The read-back fails too: unknowable, the write's failure again. */
    ddbk_lock_free(l);
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    expect_send(ddbk_lock_op_next(op, NULL, 0, &timeout, &nx), &nx, "GetItem");
    ddbk_error reset = failure("ConnectionError", 0, 1, 0);
    assert_int_equal(ddbk_lock_op_next(op, NULL, 0, &reset, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "Timeout");
    ddbk_lock_op_free(op);

    /* A failure retrying cannot help ends it at once. */
    ddbk_lock_free(l);
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_error missing = failure("ResourceNotFoundException", 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, NULL, 0, &missing, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "ResourceNotFoundException");
    ddbk_lock_op_free(op);
    ddbk_lock_free(l);
}

static void test_machine_renew(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn[40], item[512];
    (void)state;

    l = acquired();
    /* A renewal whose answer was lost: the read-back shows our new version. */
    ddbk_lock_op *op = ddbk_lock_op_renew(l, 60000, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "\"ConditionExpression\":\"#o = :o AND #r = :r\""));
    sent_rvn(nx.body, ":new", rvn);
    ddbk_error ise = failure("InternalServerError", 500, 1, 0);
    expect_send(ddbk_lock_op_next(op, NULL, 0, &ise, &nx), &nx, "GetItem");
    item_of(item, sizeof item, "Item", ddbk_lock_owner(l), rvn);
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_string_equal(rvn_of(l), rvn);
    assert_int_equal(lease_of(l), 60000);

    /* Taken over by another holder: lost, and the handle knows it. */
    op = ddbk_lock_op_renew(l, 0, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, OTHERS_ITEM, strlen(OTHERS_ITEM), &ccf, &nx),
                     DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "lost");
    assert_non_null(strstr(err.message, "other:1"));
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    assert_string_equal(rvn_of(l), rvn); /* unchanged */
    /* Not held any more: refused before any request. */
    assert_null(ddbk_lock_op_renew(l, 0, &err));
    assert_string_equal(err.code, "lost");
    ddbk_lock_free(l);
    l = NULL;
}

static void test_machine_release(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_next nx;
    ddbk_error err;
    static const char freed_by_other[] =
        "{\"Item\":{\"pk\":{\"S\":\"k\"},\"fence\":{\"N\":\"4\"},\"expiresAt\":{\"N\":\"0\"},"
        "\"releasedRvn\":{\"S\":\"someone-elses\"}}}";
    (void)state;

    l = acquired();
    ddbk_lock_op *op = ddbk_lock_op_release(l, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "REMOVE #o, #r"));
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, freed_by_other, strlen(freed_by_other), &ccf, &nx),
                     DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "not_owner");
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    assert_null(ddbk_lock_op_release(l, &err));
    assert_string_equal(err.code, "not_owner");
    ddbk_lock_free(l);
    l = NULL;

    /* A release whose answer was lost recognises itself in releasedRvn. */
    char item[512];
    l = acquired();
    op = ddbk_lock_op_release(l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    snprintf(item, sizeof item,
             "{\"Item\":{\"pk\":{\"S\":\"k\"},\"expiresAt\":{\"N\":\"0\"},"
             "\"releasedRvn\":{\"S\":\"%s\"}}}", rvn_of(l));
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), &ccf, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    ddbk_lock_free(l);
    l = NULL;
}

static void test_machine_refusals_and_abandon(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_next nx;
    ddbk_error err;
    ddbk_lock_opts bad = { 0, 0, 0, NULL, 0 }, good = { 5000, 0, 0, NULL, 0 };
    ddbk_lock_key badkey = { "t", "pk", "\xff", NULL, NULL };
    (void)state;

    assert_null(ddbk_lock_op_acquire(&KEY, &bad, &l, &err));
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(ddbk_lock_op_acquire(&badkey, &good, &l, &err));
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(l); /* nothing made, nothing to free */
    /* Abandoned mid-flight: freeing it frees what it prepared (ASan checks). */
    ddbk_lock_free(l);
    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &good, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    assert_null(l->target.data); /* empty, and still the caller's to free */
    ddbk_lock_free(l);
    l = NULL;
    ddbk_lock_op_free(NULL);
    ddbk_lock_free(NULL);
}


/* ------------------------------------------- answers that prove nothing */

/* Feeds a write's 2xx answer `body` to a fresh acquire and returns the op,
 * which must now want the read-back; the record version it sent in rvn. */
static ddbk_lock_op *acquire_answered(ddbk_lock **l, const char *body, size_t len, char rvn[40])
{
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 0 };
    ddbk_lock_next nx;
    ddbk_error err;
    ddbk_lock_free(*l);
    *l = NULL;
    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, l, &err);
    assert_non_null(op);
    assert_non_null(*l);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", rvn);
    expect_send(ddbk_lock_op_next(op, body, len, NULL, &nx), &nx, "GetItem");
    return op;
}

/* A 2xx without the attributes that prove the write is no grant: the item
 * is read back, and only our owner and record version there make it one. */
static void test_machine_acquire_unproven_success_is_read_back(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn[40], body[512], item[512];
    (void)state;

    const char *unproven[] = {
        "{}",
        "{" CCF_TYPE ",\"message\":\"The conditional request failed\"}",
        "{\"Attributes\":{\"fence\":{\"N\":\"7\"}}}",
        "{\"Attributes\":", /* cut short */
        "5", "null", "[]", "",
    };
    for (size_t i = 0; i < sizeof unproven / sizeof unproven[0]; i++) {
        ddbk_lock_op *op = acquire_answered(&l, unproven[i], strlen(unproven[i]), rvn);
        /* The read-back finds no item: the write did not land. */
        assert_int_equal(ddbk_lock_op_next(op, "{}", 2, NULL, &nx), DDBK_LOCK_DONE);
        assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
        assert_string_equal(err.code, "MalformedResponse");
        ddbk_lock_op_free(op);
        assert_false(ddbk_lock_held(l));
        assert_int_equal(ddbk_lock_fence(l), 0);
    }

    /* Our owner but another record version, or ours without a fence. */
    ddbk_lock_op *op = acquire_answered(&l, "{}", 2, rvn);
    ddbk_lock_op_free(op);
    char other_rvn[40];
    snprintf(other_rvn, sizeof other_rvn, "%s", "0123");
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 0 };
    ddbk_lock_free(l);
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", rvn);
    grant_of(body, sizeof body, ddbk_lock_owner(l), other_rvn, 7);
    expect_send(ddbk_lock_op_next(op, body, strlen(body), NULL, &nx), &nx, "GetItem");
    ddbk_lock_op_free(op);
    ddbk_lock_free(l);
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", rvn);
    snprintf(body, sizeof body,
             "{\"Attributes\":{\"lockOwner\":{\"S\":\"%s\"},\"lockRvn\":{\"S\":\"%s\"}}}",
             ddbk_lock_owner(l), rvn);
    expect_send(ddbk_lock_op_next(op, body, strlen(body), NULL, &nx), &nx, "GetItem");
    /* The read-back shows the write did land: the lock is ours after all. */
    item_of(item, sizeof item, "Item", ddbk_lock_owner(l), rvn);
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    assert_int_equal(ddbk_lock_fence(l), 3);
    assert_string_equal(rvn_of(l), rvn);
    ddbk_lock_free(l);
    l = NULL;
}

static void test_machine_renew_release_unproven_success(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn0[40], rvn[40], item[512], ok[512];
    (void)state;

    l = acquired();
    snprintf(rvn0, sizeof rvn0, "%s", rvn_of(l));
    ddbk_lock_op *op = ddbk_lock_op_renew(l, 0, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "\"ReturnValues\":\"UPDATED_NEW\""));
    expect_send(ddbk_lock_op_next(op, "{}", 2, NULL, &nx), &nx, "GetItem");
    /* Nothing changed: the old lease stands, and the renewal failed. */
    item_of(item, sizeof item, "Item", ddbk_lock_owner(l), rvn0);
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "MalformedResponse");
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    assert_string_equal(rvn_of(l), rvn0);

    /* A proven renewal: the new record version came back. */
    op = ddbk_lock_op_renew(l, 0, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":new", rvn);
    snprintf(ok, sizeof ok, "{\"Attributes\":{\"lockRvn\":{\"S\":\"%s\"}}}", rvn);
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_string_equal(rvn_of(l), rvn);

    /* A release answered {} that the read-back shows did not land. */
    op = ddbk_lock_op_release(l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "\"ReturnValues\":\"UPDATED_NEW\""));
    expect_send(ddbk_lock_op_next(op, "{}", 2, NULL, &nx), &nx, "GetItem");
    item_of(item, sizeof item, "Item", ddbk_lock_owner(l), rvn_of(l));
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "MalformedResponse");
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    /* A proven release: our record version as releasedRvn. */
    op = ddbk_lock_op_release(l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    snprintf(ok, sizeof ok, "{\"Attributes\":{\"expiresAt\":{\"N\":\"0\"},"
                            "\"releasedRvn\":{\"S\":\"%s\"}}}", rvn_of(l));
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    ddbk_lock_free(l);
    l = NULL;
}

/* A record version another process wrote goes into our JSON escaped: one
 * with a quote and a backslash is still watched, and the clock-free
 * takeover names it exactly. */
static void test_machine_foreign_rvn_is_escaped(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_opts o = { 5000, 10000, 0, NULL, 0 };
    ddbk_lock_next nx;
    ddbk_error err;
    static const char odd[] =
        "{\"Item\":{\"pk\":{\"S\":\"k\"},\"lockOwner\":{\"S\":\"other:1\"},"
        "\"lockRvn\":{\"S\":\"a\\\"b\\\\c\\n\"},\"fence\":{\"N\":\"9\"},"
        "\"expiresAt\":{\"N\":\"4102444800\"},\"leaseMs\":{\"N\":\"1\"}}}";
    (void)state;

    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    int what = ddbk_lock_op_next(op, odd, strlen(odd), &ccf, &nx);
    /* Its holder's lease (1 ms) is due at once or after the wait we are told. */
    for (int i = 0; i < 3 && what == DDBK_LOCK_SLEEP; i++) {
        struct timespec ts = { 0, (nx.sleep_ms + 1) * 1000000L };
        nanosleep(&ts, NULL);
        what = ddbk_lock_op_next(op, NULL, 0, NULL, &nx);
    }
    expect_send(what, &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "OR #r = :seen\""));
    assert_non_null(strstr(nx.body, "\":seen\":{\"S\":\"a\\\"b\\\\c\\n\"}"));
    ddbk_lock_op_free(op);
    ddbk_lock_free(l);
}

/* ------------------------------------ our own writes whose outcome is lost */

/* A renewal lands but its answer and the read-back are both lost: the handle
 * stays on the old record version. The next renewal's failed condition shows
 * our owner with the version that lost renewal sent: ours, adopted, and the
 * renewal goes on from it instead of reporting "taken over by" ourselves. */
static void test_machine_renew_adopts_its_own_lost_write(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn0[40], lost[40], rvn2[40], rvn3[40], item[512], ok[256], cond[80];
    (void)state;

    l = acquired();
    snprintf(rvn0, sizeof rvn0, "%s", rvn_of(l));
    ddbk_lock_op *op = ddbk_lock_op_renew(l, 0, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":new", lost);
    ddbk_error timeout = failure("Timeout", 0, 1, 1);
    timeout.ambiguous = 1;
    expect_send(ddbk_lock_op_next(op, NULL, 0, &timeout, &nx), &nx, "GetItem");
    assert_int_equal(ddbk_lock_op_next(op, NULL, 0, &timeout, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "Timeout");
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    assert_string_equal(rvn_of(l), rvn0); /* unknown: the old version stands */

    /* The next renewal meets the item as the lost one left it. */
    op = ddbk_lock_op_renew(l, 0, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":new", rvn2);
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    item_of(item, sizeof item, "Item", ddbk_lock_owner(l), lost);
    /* Adopted: the renewal is sent again, conditioned on the lost version. */
    expect_send(ddbk_lock_op_next(op, item, strlen(item), &ccf, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", cond);
    assert_string_equal(cond, lost);
    sent_rvn(nx.body, ":new", rvn3);
    assert_string_not_equal(rvn3, rvn2);
    snprintf(ok, sizeof ok, "{\"Attributes\":{\"lockRvn\":{\"S\":\"%s\"}}}", rvn3);
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    assert_string_equal(err.code, "");
    ddbk_lock_op_free(op);
    assert_true(ddbk_lock_held(l));
    assert_string_equal(rvn_of(l), rvn3);

    /* A stranger's version under our owner name is not adopted (only
     * versions this handle sent are), nor is one it already moved past. */
    op = ddbk_lock_op_renew(l, 0, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    item_of(item, sizeof item, "Item", ddbk_lock_owner(l), lost);
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), &ccf, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "lost");
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    ddbk_lock_free(l);
}

/* The same for a release: its condition names the version it knows; the
 * item shows the one a lost renewal wrote. */
static void test_machine_release_adopts_its_own_lost_write(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_next nx;
    ddbk_error err;
    char lost[40], cond[80], item[512], ok[256];
    (void)state;

    l = acquired();
    /* A renewal abandoned in flight (a runtime cancelled it): unknown too. */
    ddbk_lock_op *op = ddbk_lock_op_renew(l, 0, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":new", lost);
    ddbk_lock_op_free(op);

    op = ddbk_lock_op_release(l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    item_of(item, sizeof item, "Item", ddbk_lock_owner(l), lost);
    expect_send(ddbk_lock_op_next(op, item, strlen(item), &ccf, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", cond);
    assert_string_equal(cond, lost);
    snprintf(ok, sizeof ok, "{\"Attributes\":{\"expiresAt\":{\"N\":\"0\"},"
                            "\"releasedRvn\":{\"S\":\"%s\"}}}", lost);
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    ddbk_lock_free(l);
}

/* ------------------------------------------------ bodies nested deep */

#define DEEP_LEVELS 1000000

/* {"<field>":{"lockOwner":[[[...]]]}} nested DEEP_LEVELS deep (2 MB), with
 * the error type in front when ccf. Freed by the caller. */
static char *deep_body(const char *field, int ccf, size_t *len)
{
    char head[256];
    int n = snprintf(head, sizeof head, "{%s\"%s\":{\"lockOwner\":", ccf ? CCF_TYPE "," : "",
                     field);
    size_t total = (size_t)n + 2 * (size_t)DEEP_LEVELS + 2;
    char *b = malloc(total + 1);
    assert_non_null(b);
    memcpy(b, head, (size_t)n);
    memset(b + n, '[', DEEP_LEVELS);
    memset(b + n + DEEP_LEVELS, ']', DEEP_LEVELS);
    memcpy(b + n + 2 * DEEP_LEVELS, "}}", 3);
    *len = total;
    return b;
}

/* Each kind of answer, nested a million deep, fed to the machine: a
 * MalformedResponse, not a stack overflow. */
static void test_machine_deep_bodies(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn[40];
    size_t alen, ilen, clen;
    (void)state;

    char *attrs = deep_body("Attributes", 0, &alen);
    char *item = deep_body("Item", 0, &ilen);
    char *ccf_body = deep_body("Item", 1, &clen);
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);

    /* A success, then a read-back, both deep. */
    ddbk_lock_op *op = acquire_answered(&l, attrs, alen, rvn);
    assert_int_equal(ddbk_lock_op_next(op, item, ilen, NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "MalformedResponse");
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));

    /* A failed condition whose old item is deep: read back. */
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 0 };
    ddbk_lock_free(l);
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    expect_send(ddbk_lock_op_next(op, ccf_body, clen, &ccf, &nx), &nx, "GetItem");
    assert_int_equal(ddbk_lock_op_next(op, item, ilen, NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "MalformedResponse");
    ddbk_lock_op_free(op);
    ddbk_lock_free(l);

    /* Renew and release: the handle keeps its lease. */
    l = acquired();
    char rvn0[40];
    snprintf(rvn0, sizeof rvn0, "%s", rvn_of(l));
    for (int kind = 0; kind < 2; kind++) {
        op = kind == 0 ? ddbk_lock_op_renew(l, 0, &err) : ddbk_lock_op_release(l, &err);
        expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
        expect_send(ddbk_lock_op_next(op, kind == 0 ? attrs : ccf_body, kind == 0 ? alen : clen,
                                      kind == 0 ? NULL : &ccf, &nx),
                    &nx, "GetItem");
        assert_int_equal(ddbk_lock_op_next(op, item, ilen, NULL, &nx), DDBK_LOCK_DONE);
        assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
        assert_string_equal(err.code, "MalformedResponse");
        ddbk_lock_op_free(op);
        assert_true(ddbk_lock_held(l));
        assert_string_equal(rvn_of(l), rvn0);
    }
    ddbk_lock_free(l);
    l = NULL;
    free(attrs);
    free(item);
    free(ccf_body);
}

/* The same over HTTP, through the blocking calls: a loopback responder
 * answers every request with a deep 200 (and a deep failed condition). */
typedef struct deep_script {
    int status;
    const char *body;
    size_t len;
} deep_script;

static void deep_respond(int lfd, int notes, const void *arg, int n)
{
    static char req[16384];
    const deep_script *script = arg;
    size_t got;
    for (int i = 0;; i++) {
        int fd = accept_request(lfd, req, sizeof req, &got);
        note(notes, op_letter(req));
        const deep_script *c = &script[i < n ? i : n - 1];
        answer_big_and_close(fd, c->status, c->body, c->len);
    }
}

static int deep_teardown(void **state)
{
    (void)state;
    responder_stop();
    return 0;
}

static int deep_setup(void **state)
{
    (void)state;
    responder_setup();
    return 0;
}

static void test_blocking_calls_survive_deep_answers(void **state)
{
    ddbk_config cfg;
    ddbk_error err;
    ddbk_lock *l = NULL;
    char ep[64], notes[64];
    size_t alen, clen;
    (void)state;

    char *attrs = deep_body("Attributes", 0, &alen);
    char *ccf_body = deep_body("Item", 1, &clen);
    deep_script script[] = { { 200, attrs, alen } };
    int port = responder_start(deep_respond, script, 1);
    local_config(&cfg, ep, sizeof ep, port);
    cfg.max_attempts = 1;
    cfg.timeout_ms = 10000;
    ddbk_client *c = new_client(&cfg, NULL);
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 0 };

    assert_int_equal(ddbk_lock_acquire(c, &KEY, &o, &l, NULL, &err), -1);
    assert_string_equal(err.code, "MalformedResponse");
    assert_null(l); /* a failed blocking acquire leaves no handle */
    drain(notes, sizeof notes);
    assert_string_equal(notes, "UG"); /* the write, then the read-back */
    responder_stop();

    deep_script ccf_script[] = { { 400, ccf_body, clen }, { 200, attrs, alen } };
    port = responder_start(deep_respond, ccf_script, 2);
    local_config(&cfg, ep, sizeof ep, port);
    ddbk_client *c2 = new_client(&cfg, NULL);
    assert_int_equal(ddbk_lock_acquire(c2, &KEY, &o, &l, NULL, &err), -1);
    assert_string_equal(err.code, "MalformedResponse");

    ddbk_client_free(c);
    ddbk_client_free(c2);
    free(attrs);
    free(ccf_body);
}

/* A fresh item's fence starts from the wall clock (ms x 1000), so an item
 * created after the last one was deleted hands out higher fences; a
 * foreign item's cutoff is the grace earlier than ddbkit's own. */
static void test_machine_acquire_clock_values(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_opts o = { 5000, 0, 1000, NULL, 30000 };
    ddbk_lock_next nx;
    ddbk_error err;
    (void)state;

    long long before = wall_now_ms();
    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    long long after = wall_now_ms();
    long long base = sent_num(nx.body, ":base");
    assert_true(base >= before * 1000 && base <= after * 1000);
    assert_true(base < 9007199254740992LL); /* exact as a double */
    long long cut = sent_num(nx.body, ":cut"), fcut = sent_num(nx.body, ":fcut");
    assert_true(cut >= (before - 1000) / 1000 && cut <= (after - 1000) / 1000);
    assert_true(fcut >= (before - 31000) / 1000 && fcut <= (after - 31000) / 1000);
    assert_null(strstr(nx.body, ":zero")); /* an unused value would be refused */
    ddbk_lock_op_free(op);
    ddbk_lock_free(l);
}

/* A release leaves expiresAt a second or more in the past by every clock
 * within the skew margin (free for the Node adapter at once), recent (TTL
 * deletes it), and marks the item released. */
static void test_machine_release_values(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_lock_opts o = { 5000, 0, 2000, NULL, 0 };
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn[40], ok[512];
    (void)state;

    assert_int_equal(released_expires_at(1700000000999LL, 0), 1699999999);
    assert_int_equal(released_expires_at(1700000000999LL, 2000), 1699999997);
    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    sent_rvn(nx.body, ":r", rvn);
    grant_of(ok, sizeof ok, ddbk_lock_owner(l), rvn, 7);
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    ddbk_lock_op_free(op);
    op = ddbk_lock_op_release(l, &err);
    long long before = wall_now_ms();
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    long long after = wall_now_ms();
    assert_non_null(strstr(nx.body, "\"UpdateExpression\":\"SET #e = :past, #x = :r, #m = :now "
                                    "REMOVE #o, #r\""));
    long long past = sent_num(nx.body, ":past"), now = sent_num(nx.body, ":now");
    assert_true(now >= before && now <= after);
    assert_true(past == (now - 2000) / 1000 - 1);
    assert_true(past * 1000 < before - 2000); /* past for a clock 2 s behind */
    assert_true(past > before / 1000 - 5 * 365 * 86400); /* TTL still collects it */
    snprintf(ok, sizeof ok, "{\"Attributes\":{\"expiresAt\":{\"N\":\"%lld\"},"
                            "\"releasedRvn\":{\"S\":\"%s\"}}}", past, rvn);
    assert_int_equal(ddbk_lock_op_next(op, ok, strlen(ok), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_false(ddbk_lock_held(l));
    ddbk_lock_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_hash_and_range),
        cmocka_unit_test(test_target_refusals),
        cmocka_unit_test(test_target_refuses_what_dynamodb_would),
        cmocka_unit_test(test_acquire_checks_options_before_sending),
        cmocka_unit_test(test_valid_ms),
        cmocka_unit_test(test_renew_release_of_lost_handle),
        cmocka_unit_test(test_fence_condition),
        cmocka_unit_test(test_machine_acquire_success),
        cmocka_unit_test(test_machine_acquire_clock_values),
        cmocka_unit_test(test_machine_release_values),
        cmocka_unit_test(test_machine_acquire_busy_then_sleep_then_success),
        cmocka_unit_test(test_machine_acquire_busy_without_wait),
        cmocka_unit_test(test_machine_takeover_due_in_flight_goes_at_once),
        cmocka_unit_test(test_machine_acquire_timeout_settled_by_read_back),
        cmocka_unit_test(test_machine_renew),
        cmocka_unit_test(test_machine_release),
        cmocka_unit_test(test_machine_refusals_and_abandon),
        cmocka_unit_test(test_machine_acquire_unproven_success_is_read_back),
        cmocka_unit_test(test_machine_renew_release_unproven_success),
        cmocka_unit_test(test_machine_foreign_rvn_is_escaped),
        cmocka_unit_test(test_machine_renew_adopts_its_own_lost_write),
        cmocka_unit_test(test_machine_release_adopts_its_own_lost_write),
        cmocka_unit_test(test_machine_deep_bodies),
        cmocka_unit_test_setup_teardown(test_blocking_calls_survive_deep_answers, deep_setup,
                                        deep_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
