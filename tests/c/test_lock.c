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

/* ------------------------------------------------- the machine by hand */

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

static void expect_send(int what, const ddbk_lock_next *nx, const char *op)
{
    assert_int_equal(what, DDBK_LOCK_SEND);
    assert_int_equal(nx->what, DDBK_LOCK_SEND);
    assert_string_equal(nx->op, op);
    assert_non_null(nx->body);
    assert_int_equal(strlen(nx->body), nx->body_len);
}

/* A held lock, taken through the machine with one canned success. */
static void acquired(ddbk_lock *l)
{
    ddbk_lock_opts o = { 5000, 0, 1000, NULL };
    ddbk_lock_next nx;
    ddbk_error err;
    static const char ok[] = "{\"Attributes\":{\"fence\":{\"N\":\"3\"}}}";
    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, l, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_int_equal(ddbk_lock_op_next(op, ok, sizeof ok - 1, NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_true(l->held);
}

static void test_machine_acquire_success(void **state)
{
    ddbk_lock l;
    ddbk_lock_opts o = { 5000, 0, 1000, NULL };
    ddbk_lock_next nx;
    ddbk_lock_holder h;
    ddbk_error err;
    char rvn[40];
    static const char ok[] = "{\"Attributes\":{\"fence\":{\"N\":\"7\"}}}";
    (void)state;

    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    assert_non_null(op);
    assert_int_equal(ddbk_lock_op_result(op, &h, &err), -1); /* not finished */
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "\"TableName\":\"t\",\"Key\":{\"pk\":{\"S\":\"k\"}}"));
    assert_non_null(strstr(nx.body, "\"ConditionExpression\":\"attribute_not_exists(#k) OR #e < :cut\""));
    assert_non_null(strstr(nx.body, "\"ReturnValuesOnConditionCheckFailure\":\"ALL_OLD\""));
    sent_rvn(nx.body, ":r", rvn);
    assert_int_equal(ddbk_lock_op_next(op, ok, sizeof ok - 1, NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(nx.what, DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, &h, &err), 0);
    assert_string_equal(err.code, "");
    assert_false(h.known);
    /* Done stays done. */
    assert_int_equal(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), DDBK_LOCK_DONE);
    ddbk_lock_op_free(op);
    assert_true(l.held);
    assert_int_equal(l.fence, 7);
    assert_string_equal(l.rvn, rvn);
    assert_int_equal(l.lease_ms, 5000);
    assert_true(ddbk_lock_valid_ms(&l) > 3000);
    ddbk_lock_free(&l);
}

static void test_machine_acquire_busy_then_sleep_then_success(void **state)
{
    ddbk_lock l;
    ddbk_buf busy;
    ddbk_lock_opts o = { 5000, 10000, 1000, &busy };
    ddbk_lock_next nx;
    ddbk_lock_holder h;
    ddbk_error err;
    char rvn1[40], rvn2[40];
    static const char ok[] = "{\"Attributes\":{\"fence\":{\"N\":\"10\"}}}";
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
    assert_int_equal(ddbk_lock_op_next(op, ok, sizeof ok - 1, NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, &h, &err), 0);
    assert_string_equal(err.code, ""); /* the busy look is history */
    assert_true(h.known);              /* the holder as last seen */
    assert_string_equal(h.owner, "other:1");
    assert_int_equal(h.fence, 9);
    assert_int_equal(busy.len, 0); /* emptied on success */
    ddbk_lock_op_free(op);
    assert_true(l.held);
    assert_string_equal(l.rvn, rvn2);
    assert_int_equal(l.fence, 10);
    ddbk_lock_free(&l);
    ddbk_buf_free(&busy);
}

static void test_machine_acquire_busy_without_wait(void **state)
{
    ddbk_lock l;
    ddbk_lock_opts o = { 5000, 0, 1000, NULL };
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
    assert_string_equal(h.owner, "other:1");
    ddbk_lock_op_free(op);
    assert_false(l.held);
    assert_null(l.target.data); /* a failed acquire leaves nothing to free */
}

static void test_machine_acquire_timeout_settled_by_read_back(void **state)
{
    ddbk_lock l;
    ddbk_lock_opts o = { 5000, 0, 1000, NULL };
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
    item_of(item, sizeof item, "Item", l.owner, rvn);
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    assert_string_equal(err.code, "");
    ddbk_lock_op_free(op);
    assert_true(l.held);
    assert_string_equal(l.rvn, rvn);
    assert_int_equal(l.fence, 3);
    ddbk_lock_free(&l);

    /* It did not, and the read-back finds no item: the write's own failure. */
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    expect_send(ddbk_lock_op_next(op, NULL, 0, &timeout, &nx), &nx, "GetItem");
    assert_int_equal(ddbk_lock_op_next(op, "{}", 2, NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "Timeout");
    ddbk_lock_op_free(op);
    assert_false(l.held);

    /* The read-back fails too: unknowable, the write's failure again. */
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    expect_send(ddbk_lock_op_next(op, NULL, 0, &timeout, &nx), &nx, "GetItem");
    ddbk_error reset = failure("ConnectionError", 0, 1, 0);
    assert_int_equal(ddbk_lock_op_next(op, NULL, 0, &reset, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "Timeout");
    ddbk_lock_op_free(op);

    /* A failure retrying cannot help ends it at once. */
    op = ddbk_lock_op_acquire(&KEY, &o, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_error missing = failure("ResourceNotFoundException", 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, NULL, 0, &missing, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "ResourceNotFoundException");
    ddbk_lock_op_free(op);
}

static void test_machine_renew(void **state)
{
    ddbk_lock l;
    ddbk_lock_next nx;
    ddbk_error err;
    char rvn[40], item[512];
    (void)state;

    acquired(&l);
    /* A renewal whose answer was lost: the read-back shows our new version. */
    ddbk_lock_op *op = ddbk_lock_op_renew(&l, 60000, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "\"ConditionExpression\":\"#o = :o AND #r = :r\""));
    sent_rvn(nx.body, ":new", rvn);
    ddbk_error ise = failure("InternalServerError", 500, 1, 0);
    expect_send(ddbk_lock_op_next(op, NULL, 0, &ise, &nx), &nx, "GetItem");
    item_of(item, sizeof item, "Item", l.owner, rvn);
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), NULL, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_string_equal(l.rvn, rvn);
    assert_int_equal(l.lease_ms, 60000);

    /* Taken over by another holder: lost, and the handle knows it. */
    op = ddbk_lock_op_renew(&l, 0, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, OTHERS_ITEM, strlen(OTHERS_ITEM), &ccf, &nx),
                     DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "lost");
    assert_non_null(strstr(err.message, "other:1"));
    ddbk_lock_op_free(op);
    assert_false(l.held);
    assert_string_equal(l.rvn, rvn); /* unchanged */
    /* Not held any more: refused before any request. */
    assert_null(ddbk_lock_op_renew(&l, 0, &err));
    assert_string_equal(err.code, "lost");
    ddbk_lock_free(&l);
}

static void test_machine_release(void **state)
{
    ddbk_lock l;
    ddbk_lock_next nx;
    ddbk_error err;
    static const char freed_by_other[] =
        "{\"Item\":{\"pk\":{\"S\":\"k\"},\"fence\":{\"N\":\"4\"},\"expiresAt\":{\"N\":\"0\"},"
        "\"releasedRvn\":{\"S\":\"someone-elses\"}}}";
    (void)state;

    acquired(&l);
    ddbk_lock_op *op = ddbk_lock_op_release(&l, &err);
    assert_non_null(op);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    assert_non_null(strstr(nx.body, "REMOVE #o, #r"));
    ddbk_error ccf = failure(CCF_CODE, 400, 0, 0);
    assert_int_equal(ddbk_lock_op_next(op, freed_by_other, strlen(freed_by_other), &ccf, &nx),
                     DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), -1);
    assert_string_equal(err.code, "not_owner");
    ddbk_lock_op_free(op);
    assert_false(l.held);
    assert_null(ddbk_lock_op_release(&l, &err));
    assert_string_equal(err.code, "not_owner");
    ddbk_lock_free(&l);

    /* A release whose answer was lost recognises itself in releasedRvn. */
    char item[512];
    acquired(&l);
    op = ddbk_lock_op_release(&l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    snprintf(item, sizeof item,
             "{\"Item\":{\"pk\":{\"S\":\"k\"},\"expiresAt\":{\"N\":\"0\"},"
             "\"releasedRvn\":{\"S\":\"%s\"}}}", l.rvn);
    assert_int_equal(ddbk_lock_op_next(op, item, strlen(item), &ccf, &nx), DDBK_LOCK_DONE);
    assert_int_equal(ddbk_lock_op_result(op, NULL, &err), 0);
    ddbk_lock_op_free(op);
    assert_false(l.held);
    ddbk_lock_free(&l);
}

static void test_machine_refusals_and_abandon(void **state)
{
    ddbk_lock l;
    ddbk_lock_next nx;
    ddbk_error err;
    ddbk_lock_opts bad = { 0, 0, 0, NULL }, good = { 5000, 0, 0, NULL };
    ddbk_lock_key badkey = { "t", "pk", "\xff", NULL, NULL };
    (void)state;

    assert_null(ddbk_lock_op_acquire(&KEY, &bad, &l, &err));
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(ddbk_lock_op_acquire(&badkey, &good, &l, &err));
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(l.target.data); /* nothing left to free */
    /* Abandoned mid-flight: freeing it frees what it prepared (ASan checks). */
    ddbk_lock_op *op = ddbk_lock_op_acquire(&KEY, &good, &l, &err);
    expect_send(ddbk_lock_op_next(op, NULL, 0, NULL, &nx), &nx, "UpdateItem");
    ddbk_lock_op_free(op);
    assert_false(l.held);
    assert_null(l.target.data);
    ddbk_lock_op_free(NULL);
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
        cmocka_unit_test(test_machine_acquire_success),
        cmocka_unit_test(test_machine_acquire_busy_then_sleep_then_success),
        cmocka_unit_test(test_machine_acquire_busy_without_wait),
        cmocka_unit_test(test_machine_acquire_timeout_settled_by_read_back),
        cmocka_unit_test(test_machine_renew),
        cmocka_unit_test(test_machine_release),
        cmocka_unit_test(test_machine_refusals_and_abandon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
