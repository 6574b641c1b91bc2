/*
 * engine/keeper.c, ddbk_client_clone and the busy_item of ddbk_lock_acquire,
 * against a scripted HTTP responder forked by the test (responder.h): it
 * answers every connection with the next canned response (the last one
 * again once the script runs out) and, before answering, reports the
 * operation on a pipe. The test waits on that pipe, never on a sleep, to
 * know how many requests a keeper's thread has made.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "creds.h"
#include "responder.h"

#define OTHERS_ITEM "\"Item\":{\"pk\":{\"S\":\"k\"},\"lockOwner\":{\"S\":\"other:1\"}," \
                    "\"lockRvn\":{\"S\":\"r1\"},\"fence\":{\"N\":\"9\"},"        \
                    "\"expiresAt\":{\"N\":\"4102444800\"},\"leaseMs\":{\"N\":\"5000\"}}"
#define CCF_BODY "{" CCF_TYPE ",\"message\":\"The conditional request failed\"," OTHERS_ITEM "}"
/* Not a body: the responder answers it with lock_grant, the success a real
 * service gives that very write (with fence 7 for an acquire). */
#define GRANT "<grant>"
/* Not a body either: the responder reads the request and never answers
 * (the connection stays open until the responder ends). */
#define HANG "<hang>"

typedef struct canned {
    int status;
    const char *body;
} canned;

/* What a test holds, released by the teardown so a failed assertion leaks
 * nothing and leaves no responder behind. */
static ddbk_client *g_client;

static int setup(void **state)
{
    (void)state;
    responder_setup();
    g_client = NULL;
    return 0;
}

static int teardown(void **state)
{
    responder_stop();
    ddbk_client_free(g_client);
    return setup(state);
}

/* One connection at a time: each request's operation is reported before
 * its answer, so once the client has its response, the note is already in
 * the pipe. */
static void respond(int lfd, int notes, const void *arg, int n)
{
    static char req[16384];
    const canned *script = arg;
    size_t got;
    for (int i = 0;; i++) {
        int fd = accept_request(lfd, req, sizeof req, &got);
        note(notes, op_letter(req));
        const canned *c = &script[i < n ? i : n - 1];
        static char grant[1024];
        if (strcmp(c->body, HANG) == 0)
            continue; /* fd left open: the client waits for its own timeout */
        answer_and_close(fd, c->status, NULL,
                         strcmp(c->body, GRANT) == 0 ? lock_grant(req, 7, grant, sizeof grant)
                                                     : c->body);
    }
}

/* Forks the responder; the test reads one byte per request from g_notes. */
static int serve(const canned *script, int n)
{
    return responder_start(respond, script, n);
}

/* Blocks until the responder has reported n more requests; returns them. */
static const char *await(int n)
{
    static char ops[64];
    assert_true(n < (int)sizeof ops);
    for (int i = 0; i < n; i++) {
        struct pollfd p = { g_notes, POLLIN, 0 };
        /* The bound only keeps a broken keeper from hanging the suite. */
        if (poll(&p, 1, 15000) != 1)
            fail_msg("the responder saw %d of %d requests", i, n);
        assert_int_equal(read(g_notes, &ops[i], 1), 1);
    }
    ops[n] = '\0';
    return ops;
}

/* A client of the responder on port (9: nothing listens there). */
static ddbk_client *responder_client(int port, int max_attempts)
{
    ddbk_config cfg;
    char ep[64];

    local_config(&cfg, ep, sizeof ep, port);
    cfg.session_token = "TOKEN";
    cfg.max_attempts = max_attempts;
    cfg.base_delay_ms = 1;
    cfg.timeout_ms = 2000;
    return new_client(&cfg, NULL);
}

static const ddbk_lock_key KEY = { "t", "pk", "k", NULL, NULL };

/* The handle's record version as a caller reads it, even while a keeper
 * renews it. */
static const char *rvn_of(const ddbk_lock *l)
{
    static ddbk_lock_info in;
    ddbk_lock_info_get(l, &in);
    return in.rvn;
}

/* Takes the lock through the responder, whose first answer must grant it. */
static ddbk_lock *acquire_ok(ddbk_client *c)
{
    ddbk_lock *l;
    ddbk_lock_opts o = { 5000, 0, 0, NULL, 0 };
    ddbk_error err;
    if (ddbk_lock_acquire(c, &KEY, &o, &l, NULL, &err) != 0)
        fail_msg("acquire: %s: %s", err.code, err.message);
    assert_string_equal(await(1), "U");
    assert_int_equal(ddbk_lock_fence(l), 7);
    return l;
}

/* ---------------------------------------------------------- the clone */

static void test_clone_copies_settings(void **state)
{
    ddbk_error err;
    ddbk_response resp;
    ddbk_stats st;
    (void)state;

    ddbk_client *c = g_client = responder_client(9, 1);
    c->connect_timeout_ms = 321;
    c->max_backoff_ms = 4321;
    c->verify_tls = 0;
    c->max_response_bytes = 12345;
    /* Spend some quota and record a call: neither may carry over. */
    c->quota = 3;
    ddbk_response_init(&resp);
    assert_int_equal(ddbk_call(c, "GetItem", "{}", 2, &resp, &err), -1);
    ddbk_response_free(&resp);
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 1);

    ddbk_client *k = ddbk_client_clone(c, &err);
    assert_non_null(k);
    assert_string_equal(err.code, "");
    assert_string_equal(ddbk_client_region(k), "eu-west-1");
    assert_string_equal(ddbk_client_endpoint(k), "http://127.0.0.1:9");
    assert_string_equal(k->host, c->host);
    assert_string_equal(k->url, c->url);
    assert_int_equal(k->connect_timeout_ms, 321);
    assert_int_equal(k->timeout_ms, 2000);
    assert_int_equal(k->max_attempts, 1);
    assert_int_equal(k->base_delay_ms, 1);
    assert_int_equal(k->max_backoff_ms, 4321);
    assert_int_equal(k->verify_tls, 0);
    assert_int_equal(k->max_response_bytes, 12345);
    assert_int_equal(k->quota_max, 500);
    assert_int_equal(k->quota, 500);
    ddbk_stats_get(k, &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.nops, 0);
    /* Its own pool, digest context and strings. */
    assert_non_null(k->curl);
    assert_ptr_not_equal(k->curl, c->curl);
    assert_non_null(k->md);
    assert_ptr_not_equal(k->md, c->md);
    /* The same credentials cell (a rotation reaches both), its own copy
     * to sign with. */
    assert_ptr_equal(k->cell, c->cell);
    assert_ptr_not_equal(k->creds, c->creds);

    /* The clone outlives its original (ASan checks nothing is shared). */
    ddbk_client_free(c);
    g_client = k;
    ddbk_response_init(&resp);
    assert_int_equal(ddbk_call(k, "GetItem", "{}", 2, &resp, &err), -1);
    assert_string_equal(err.code, "ConnectionError");
    assert_string_equal(k->creds->access_key_id, "AKID"); /* taken to sign */
    assert_string_equal(k->creds->secret_access_key, SECRET);
    assert_string_equal(k->creds->session_token, "TOKEN");
    ddbk_response_free(&resp);
    ddbk_stats_get(k, &st);
    assert_int_equal(st.requests, 1);
}

/* --------------------------------------------------------- busy_item */

static void acquire_fails(const canned *script, int n, const char *code, const char *want_item,
                          const char *ops)
{
    ddbk_lock *l = NULL;
    ddbk_lock_holder h;
    ddbk_error err;
    ddbk_buf item;
    ddbk_lock_opts o = { 5000, 0, 0, &item, 0 };

    int port = serve(script, n);
    ddbk_client *c = g_client = responder_client(port, 1);
    ddbk_buf_init(&item, 0);
    ddbk_buf_puts(&item, "stale"); /* reset on entry */
    assert_int_equal(ddbk_lock_acquire(c, &KEY, &o, &l, &h, &err), -1);
    assert_null(l);
    assert_string_equal(err.code, code);
    assert_string_equal(await((int)strlen(ops)), ops);
    if (want_item) {
        assert_non_null(item.data);
        assert_string_equal(item.data, want_item);
        assert_int_equal(h.known, 1);
        assert_string_equal(h.owner, "other:1");
    } else {
        assert_int_equal(item.len, 0);
    }
    ddbk_buf_free(&item);
}

static void test_busy_item_of_failed_condition(void **state)
{
    static const canned script[] = { { 400, CCF_BODY } };
    (void)state;
    acquire_fails(script, 1, "busy", CCF_BODY, "U");
}

static void test_busy_item_of_read_back(void **state)
{
    static const canned script[] = { { 500, ISE_BODY }, { 200, "{" OTHERS_ITEM "}" } };
    (void)state;
    /* The update's outcome was unknown: the item read back is the one seen. */
    acquire_fails(script, 2, "InternalServerError", "{" OTHERS_ITEM "}", "UG");
}

static void test_busy_item_empty_when_not_seen(void **state)
{
    static const canned script[] = {
        { 400, "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ValidationException\","
               "\"message\":\"bad\"}" },
    };
    (void)state;
    acquire_fails(script, 1, "ValidationException", NULL, "U");
}

static void test_busy_item_empty_on_success(void **state)
{
    static const canned script[] = { { 200, GRANT } };
    ddbk_lock *l = NULL;
    ddbk_error err;
    ddbk_buf item;
    ddbk_lock_opts o = { 5000, 0, 0, &item, 0 };
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 1), 1);
    ddbk_buf_init(&item, 0);
    ddbk_buf_puts(&item, "stale");
    assert_int_equal(ddbk_lock_acquire(c, &KEY, &o, &l, NULL, &err), 0);
    assert_int_equal(item.len, 0);
    assert_int_equal(ddbk_lock_held(l), 1);
    ddbk_buf_free(&item);
    ddbk_lock_free(l);
}

/* ---------------------------------------------------------- the keeper */

/* A held handle built by hand, for what needs no server. */
static ddbk_lock *fake_held(void)
{
    ddbk_lock *l = ddbk__lock_new();
    assert_non_null(l);
    ddbk_buf_puts(&l->target, "\"TableName\":\"t\",\"Key\":{\"pk\":{\"S\":\"k\"}}");
    strcpy(l->owner, "me:1");
    strcpy(l->rvn, "r0");
    l->lease_ms = 5000;
    l->held = 1;
    return l;
}

static void test_keep_refuses_bad_arguments(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_error err;
    (void)state;
    ddbk_client *c = g_client = responder_client(9, 1);
    l = fake_held();
    static const long periods[] = { 0, -1, -1000 };
    for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++) {
        assert_null(ddbk_lock_keep(c, l, periods[i], &err));
        assert_string_equal(err.code, "InvalidArgument");
    }
    assert_null(ddbk_lock_keep(c, NULL, 100, &err));
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(ddbk_lock_keep(NULL, l, 100, &err));
    assert_string_equal(err.code, "InvalidArgument");
    ddbk_lock_mark_released(l);
    assert_int_equal(ddbk_lock_held(l), 0);
    assert_null(ddbk_lock_keep(c, l, 100, &err));
    assert_string_equal(err.code, "InvalidArgument");
    /* And a marked handle answers renew and release itself. */
    assert_int_equal(ddbk_lock_renew(c, l, 0, &err), -1);
    assert_string_equal(err.code, "lost");
    assert_int_equal(ddbk_lock_release(c, l, &err), -1);
    assert_string_equal(err.code, "not_owner");
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 0);
    ddbk_lock_free(l);
}

static void test_keep_stops_before_first_period(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_error err;
    long renewals = -1;
    (void)state;
    ddbk_client *c = g_client = responder_client(9, 1);
    l = fake_held();
    l->lease_ms = 180000; /* a period of a minute must be inside it */
    ddbk_lock_keeper *k = ddbk_lock_keep(c, l, 60000, &err);
    assert_non_null(k);
    double t0 = ddbk__mono_us();
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), 0);
    /* A keeper that slept out its period would take a minute here. */
    assert_true(ddbk__mono_us() - t0 < 5e6);
    assert_int_equal(renewals, 0);
    assert_string_equal(err.code, "");
    assert_string_equal(rvn_of(l), "r0");
    assert_int_equal(ddbk_lock_held(l), 1);
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 0); /* the caller's client stays unused */
    assert_int_equal(ddbk_lock_keep_stop(NULL, NULL, &err), 0);
    ddbk_lock_free(l);
}

static void test_keep_renews(void **state)
{
    static const canned script[] = { { 200, GRANT }, { 200, GRANT } };
    ddbk_lock *l = NULL;
    ddbk_error err;
    char first_rvn[40], rest[64];
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 2), 1);
    l = acquire_ok(c);
    strcpy(first_rvn, rvn_of(l));
    ddbk_lock_keeper *k = ddbk_lock_keep(c, l, 20, &err);
    assert_non_null(k);
    /* The handle is read while the thread renews it: each read is whole
     * (held, our owner, a record version of 32 hex digits), never torn. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(await(1)[0], 'U');
        ddbk_lock_info in;
        ddbk_lock_info_get(l, &in);
        assert_int_equal(in.held, 1);
        assert_string_equal(in.owner, ddbk_lock_owner(l));
        assert_int_equal(strlen(in.rvn), 32);
        assert_int_equal(strspn(in.rvn, "0123456789abcdef"), 32);
        assert_int_equal(in.fence, 7);
        assert_int_equal(ddbk_lock_fence(l), 7);
        assert_true(ddbk_lock_held(l));
        assert_true(ddbk_lock_valid_ms(l) > 0);
    }
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), 0);
    assert_string_equal(err.code, "");
    /* Every request the thread made was a renewal that succeeded. */
    assert_int_equal(renewals, 3 + drain(rest, sizeof rest));
    assert_int_equal(strspn(rest, "U"), strlen(rest));
    assert_int_equal(ddbk_lock_held(l), 1);
    assert_string_not_equal(rvn_of(l), first_rvn);
    /* The renewals went through the clone, and stop added its requests to
     * the caller's client: one acquire and every renewal, each once. */
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 1 + (uint64_t)renewals);
    assert_int_equal(st.latency_count, 1 + (uint64_t)renewals);
    const ddbk_op_stats *u = find_op(&st, "UpdateItem");
    assert_non_null(u);
    assert_int_equal(u->calls, 1 + (uint64_t)renewals);
    assert_int_equal(u->requests, 1 + (uint64_t)renewals);
    assert_int_equal(st.errors, 0);
    assert_true(st.bytes_out > 0 && st.bytes_in > 0);
    ddbk_lock_free(l);
}

static void test_keep_recovers_from_transient_failure(void **state)
{
    static const canned script[] = {
        { 200, GRANT }, { 500, ISE_BODY }, { 500, ISE_BODY }, { 200, GRANT },
    };
    ddbk_lock *l = NULL;
    ddbk_error err;
    char rest[64];
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 4), 1);
    l = acquire_ok(c);
    ddbk_lock_keeper *k = ddbk_lock_keep(c, l, 10, &err);
    assert_non_null(k);
    /* A renewal fails (its read-back too), the next one succeeds. */
    assert_string_equal(await(3), "UGU");
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), 0);
    assert_string_equal(err.code, "");
    assert_int_equal(renewals, 1 + drain(rest, sizeof rest));
    assert_int_equal(ddbk_lock_held(l), 1);
    ddbk_lock_free(l);
}

/* A renewal answered 200 {} proves nothing: it is no renewal. The keeper
 * reads the item back (here the read-back fails too), keeps the lease it
 * had, and the next beat's proven renewal is the one counted. */
static void test_keep_counts_only_proven_renewals(void **state)
{
    static const canned script[] = {
        { 200, GRANT }, { 200, "{}" }, { 500, ISE_BODY }, { 200, GRANT },
    };
    ddbk_lock *l = NULL;
    ddbk_error err;
    char rest[64], rvn0[40];
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 4), 1);
    l = acquire_ok(c);
    snprintf(rvn0, sizeof rvn0, "%s", rvn_of(l));
    ddbk_lock_keeper *k = ddbk_lock_keep(c, l, 10, &err);
    assert_non_null(k);
    assert_string_equal(await(3), "UGU");
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), 0);
    assert_int_equal(renewals, 1 + drain(rest, sizeof rest));
    assert_int_equal(strspn(rest, "U"), strlen(rest));
    assert_int_equal(ddbk_lock_held(l), 1);
    assert_string_not_equal(rvn_of(l), rvn0);
    ddbk_lock_free(l);
}

static void test_keep_reports_last_transient_failure(void **state)
{
    static const canned script[] = { { 200, GRANT }, { 200, GRANT }, { 500, ISE_BODY } };
    ddbk_lock *l = NULL;
    ddbk_error err;
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 3), 1);
    l = acquire_ok(c);
    ddbk_lock_keeper *k = ddbk_lock_keep(c, l, 10, &err);
    assert_non_null(k);
    assert_string_equal(await(3), "UUG");
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), -1);
    assert_string_equal(err.code, "InternalServerError");
    assert_int_equal(renewals, 1);
    assert_int_equal(ddbk_lock_held(l), 1); /* a failed request does not lose the lease */
    ddbk_lock_free(l);
}

static void test_keep_ends_when_lost(void **state)
{
    static const canned script[] = { { 200, GRANT }, { 200, GRANT }, { 400, CCF_BODY } };
    ddbk_lock *l = NULL;
    ddbk_error err;
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 3), 1);
    l = acquire_ok(c);
    ddbk_lock_keeper *k = ddbk_lock_keep(c, l, 10, &err);
    assert_non_null(k);
    assert_string_equal(await(2), "UU");
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), -1);
    assert_string_equal(err.code, "lost");
    assert_non_null(strstr(err.message, "other:1"));
    assert_int_equal(renewals, 1);
    assert_int_equal(ddbk_lock_held(l), 0);
    ddbk_lock_free(l);
}

/* A period at or past the lease renews after the lease ran out: refused,
 * naming the field. */
static void test_keep_refuses_period_not_inside_lease(void **state)
{
    ddbk_lock *l = NULL;
    ddbk_error err;
    long renewals;
    (void)state;
    ddbk_client *c = g_client = responder_client(9, 1);
    l = fake_held(); /* a lease of 5000 ms */
    static const long periods[] = { 5000, 5001, 60000 };
    for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++) {
        assert_null(ddbk_lock_keep(c, l, periods[i], &err));
        assert_string_equal(err.code, "InvalidArgument");
        assert_non_null(strstr(err.message, "period_ms"));
    }
    ddbk_lock_keeper *k = ddbk_lock_keep(c, l, 4999, &err);
    assert_non_null(k);
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), 0);
    ddbk_lock_free(l);
}

/* A stop while a renewal hangs waits for the attempt in flight only: no
 * retry, no read-back after it (a retry chain here is 3 attempts of 2 s and
 * a read-back of as many). The renewal is abandoned: the handle keeps the
 * lease it had, and stop says the last renewal did not succeed. */
static void test_keep_stop_cuts_the_retry_chain(void **state)
{
    static const canned script[] = { { 200, GRANT }, { 0, HANG } };
    ddbk_lock *l = NULL;
    ddbk_error err;
    char rvn0[40], rest[64];
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 2), 3);
    l = acquire_ok(c);
    snprintf(rvn0, sizeof rvn0, "%s", rvn_of(l));
    ddbk_lock_keeper *k = ddbk_lock_keep(c, l, 10, &err);
    assert_non_null(k);
    assert_string_equal(await(1), "U"); /* the renewal is on the wire, unanswered */
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), -1);
    assert_string_equal(err.code, "Cancelled");
    assert_int_equal(renewals, 0);
    assert_int_equal(drain(rest, sizeof rest), 0); /* nothing after it */
    assert_int_equal(ddbk_lock_held(l), 1);
    assert_string_equal(rvn_of(l), rvn0);
    /* The cut renewal is counted in the caller's stats, as a failed call. */
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.errors, 1);
    int cancelled = 0;
    for (int i = 0; i < st.ncodes; i++)
        if (strcmp(st.codes[i].code, "Cancelled") == 0)
            cancelled += (int)st.codes[i].count;
    assert_int_equal(cancelled, 1);
    ddbk_lock_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clone_copies_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_item_of_failed_condition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_item_of_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_item_empty_when_not_seen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_item_empty_on_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_refuses_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_stops_before_first_period, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_renews, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_recovers_from_transient_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_counts_only_proven_renewals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_reports_last_transient_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_ends_when_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_refuses_period_not_inside_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_stop_cuts_the_retry_chain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
