/*
 * engine/cred_cell.c: the refresh policy on a clock the test passes in.
 * Fetches run the real machine (cred_fetch.c) of a container plan, fed by
 * the test with the answers a container endpoint gives: no I/O. The jitter
 * draw is fixed through ddbk__test_random.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "creds.h"

#define NOW0 INT64_C(1796385600000) /* 2026-12-04T12:00:00Z, epoch ms */

static double g_r;
static double fixed_random(void) { return g_r; }

static int setup(void **state)
{
    (void)state;
    g_r = 0.0;
    ddbk__test_random = fixed_random;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ddbk__test_random = NULL;
    return 0;
}

static void container_plan(ddbk__plan *p)
{
    memset(p, 0, sizeof *p);
    p->nsteps = 1;
    p->steps[0].kind = DDBK__STEP_CONTAINER;
    snprintf(p->steps[0].url, sizeof p->steps[0].url, "http://127.0.0.1:9/creds");
    snprintf(p->provider, sizeof p->provider, DDBK__PROV_CONTAINER);
}

static ddbk__cell *new_cell(enum ddbk__step_kind kind)
{
    ddbk__plan p;
    ddbk_error err;
    container_plan(&p);
    if (kind != DDBK__STEP_CONTAINER) {
        p.steps[0].kind = kind;
        snprintf(p.provider, sizeof p.provider, "%s",
                 kind == DDBK__STEP_HOST ? DDBK__PROV_HOST : DDBK__PROV_CONFIG);
        if (kind == DDBK__STEP_STATIC) {
            p.steps[0].keys.access_key_id = "AKIDSTATIC";
            p.steps[0].keys.secret_access_key = "SECRETSTATIC";
        }
    }
    ddbk__cell *c = ddbk__cell_new(&p, &err);
    assert_non_null(c);
    return c;
}

/* A container answer with credentials n, expiring at exp_s. */
static void answer(char *out, size_t cap, int n, int64_t exp_s)
{
    char iso[32];
    time_t t = (time_t)exp_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(out, cap,
             "{\"AccessKeyId\":\"AKID%d\",\"SecretAccessKey\":\"SECRET%d\","
             "\"Token\":\"TOKEN%d\",\"Expiration\":\"%s\"}", n, n, n, iso);
}

/* Runs a fetch claimed at now_ms, every HTTP action answered with status and
 * body, sleeps skipped; then ends it. Returns 1 when the cell took it. */
static int fetch(ddbk__cell *c, int64_t now_ms, long status, const char *body)
{
    ddbk__fetch *f = NULL;
    ddbk__action a;
    ddbk_error err;
    int steps = 0;

    assert_int_equal(ddbk__cell_begin(c, now_ms, &f, &err), 1);
    assert_non_null(f);
    for (;;) {
        assert_true(++steps < 50);
        ddbk__fetch_next(f, now_ms / 1000, &a);
        if (a.kind == DDBK__ACT_DONE || a.kind == DDBK__ACT_FAILED)
            break;
        if (a.kind == DDBK__ACT_HTTP) {
            assert_string_equal(a.method, "GET");
            assert_string_equal(a.url, "http://127.0.0.1:9/creds");
            ddbk__fetch_feed_http(f, status, 0, NULL, body, strlen(body));
        }
    }
    int done = a.kind == DDBK__ACT_DONE;
    ddbk__cell_end(c, f, now_ms);
    return done;
}

static void test_static_ready(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_STATIC);
    ddbk__fetched out;
    ddbk__fetch *f;
    ddbk_error err;
    uint64_t gen = 0;
    ddbk_credentials_info info;

    memset(&out, 0, sizeof out);
    assert_int_equal(ddbk__cell_state(c, NOW0), DDBK__CELL_FRESH);
    assert_int_equal(ddbk__cell_begin(c, NOW0, &f, &err), 0); /* nothing to fetch */
    assert_int_equal(ddbk__cell_take(c, NOW0, &out, &gen, &err), 1);
    assert_string_equal(out.access_key_id, "AKIDSTATIC");
    assert_string_equal(out.secret_access_key, "SECRETSTATIC");
    assert_null(out.session_token);
    char *before = out.access_key_id;
    assert_int_equal(ddbk__cell_take(c, NOW0 + 86400000, &out, &gen, &err), 0);
    assert_ptr_equal(out.access_key_id, before); /* no copy when unchanged */
    ddbk__cell_info(c, &info);
    assert_string_equal(info.provider, "config");
    assert_int_equal(info.expires_at, 0);
    assert_int_equal(info.refresh_at, 0);
    ddbk__fetched_wipe(&out);
    ddbk__cell_unref(c);
}

static void test_first_fetch_and_generation(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_CONTAINER);
    ddbk__fetched out;
    ddbk_error err;
    uint64_t gen = 0;
    char body[512];

    memset(&out, 0, sizeof out);
    /* Nothing yet: EXPIRED, and take says why without I/O. */
    assert_int_equal(ddbk__cell_state(c, NOW0), DDBK__CELL_EXPIRED);
    assert_int_equal(ddbk__cell_take(c, NOW0, &out, &gen, &err), -1);
    assert_string_equal(err.code, "CredentialsError");
    assert_non_null(strstr(err.message, "container"));

    answer(body, sizeof body, 1, NOW0 / 1000 + 3600);
    assert_int_equal(fetch(c, NOW0, 200, body), 1);
    assert_int_equal(ddbk__cell_state(c, NOW0), DDBK__CELL_FRESH);
    assert_int_equal(ddbk__cell_take(c, NOW0, &out, &gen, &err), 1);
    assert_string_equal(out.access_key_id, "AKID1");
    assert_string_equal(out.session_token, "TOKEN1");
    uint64_t g1 = gen;
    assert_int_equal(ddbk__cell_take(c, NOW0 + 1000, &out, &gen, &err), 0);
    assert_true(gen == g1);

    /* A second fetch: a new generation, copied once. */
    answer(body, sizeof body, 2, NOW0 / 1000 + 7200);
    assert_int_equal(fetch(c, NOW0 + 3300000, 200, body), 1);
    assert_int_equal(ddbk__cell_take(c, NOW0 + 3300000, &out, &gen, &err), 1);
    assert_true(gen == g1 + 1);
    assert_string_equal(out.access_key_id, "AKID2");
    assert_string_equal(out.secret_access_key, "SECRET2");
    assert_int_equal(ddbk__cell_take(c, NOW0 + 3300000, &out, &gen, &err), 0);

    ddbk_credentials_info info;
    ddbk__cell_info(c, &info);
    assert_string_equal(info.provider, "container");
    assert_int_equal(info.fetches, 2);
    assert_int_equal(info.failures, 0);
    assert_int_equal(info.expires_at, NOW0 / 1000 + 7200);
    ddbk__fetched_wipe(&out);
    ddbk__cell_unref(c);
}

/* Refresh at expires - m(1 + 0.5 r), m = min(300 s, L/4); EXPIRED from
 * expires - g, g = min(60 s, L/10). */
static void check_times(int64_t life_s, double r)
{
    ddbk__cell *c = new_cell(DDBK__STEP_CONTAINER);
    char body[512];
    int64_t exp = NOW0 + life_s * 1000;
    int64_t m = life_s * 1000 / 4 < 300000 ? life_s * 1000 / 4 : 300000;
    int64_t g = life_s * 1000 / 10 < 60000 ? life_s * 1000 / 10 : 60000;
    int64_t refresh = exp - (int64_t)((double)m * (1.0 + 0.5 * r));

    g_r = r;
    answer(body, sizeof body, 1, exp / 1000);
    assert_int_equal(fetch(c, NOW0, 200, body), 1);
    assert_int_equal(ddbk__cell_state(c, refresh - 1), DDBK__CELL_FRESH);
    assert_int_equal(ddbk__cell_state(c, refresh), DDBK__CELL_REFRESH);
    /* Within the jitter's bounds whatever r is. */
    assert_true(refresh <= exp - m && refresh >= exp - m * 3 / 2);
    assert_int_equal(ddbk__cell_state(c, exp - g - 1), DDBK__CELL_REFRESH);
    assert_int_equal(ddbk__cell_state(c, exp - g), DDBK__CELL_EXPIRED);

    ddbk_credentials_info info;
    ddbk__cell_info(c, &info);
    assert_int_equal(info.refresh_at, refresh / 1000);
    ddbk__cell_unref(c);
}

static void test_refresh_and_expiry_times(void **state)
{
    (void)state;
    check_times(3600, 0.0);    /* m = 300 s, g = 60 s */
    check_times(3600, 0.999);
    check_times(3600, 0.5);
    check_times(100, 0.0);     /* m = 25 s, g = 10 s */
    check_times(100, 0.999);
    check_times(900, 0.25);    /* m = 225 s, g = 60 s */
}

static void test_expired_guard(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_CONTAINER);
    ddbk__fetched out;
    ddbk_error err;
    uint64_t gen = 0;
    char body[512];

    memset(&out, 0, sizeof out);
    answer(body, sizeof body, 1, NOW0 / 1000 + 3600);
    assert_int_equal(fetch(c, NOW0, 200, body), 1);
    assert_int_equal(ddbk__cell_take(c, NOW0 + 3540000 - 1, &out, &gen, &err), 1);
    /* 60 s before expiry they are never handed out again. */
    assert_int_equal(ddbk__cell_take(c, NOW0 + 3540000, &out, &gen, &err), -1);
    assert_string_equal(err.code, "CredentialsError");
    assert_non_null(strstr(err.message, "expired"));
    assert_null(strstr(err.message, "SECRET1"));
    assert_null(strstr(err.message, "TOKEN1"));

    /* Credentials that come already expired are a failure. */
    answer(body, sizeof body, 2, NOW0 / 1000 + 3600);
    assert_int_equal(fetch(c, NOW0 + 3600000, 200, body), 1);
    ddbk_credentials_info info;
    ddbk__cell_info(c, &info);
    assert_int_equal(info.failures, 1);
    assert_non_null(strstr(info.last_error, "too soon"));
    assert_int_equal(ddbk__cell_state(c, NOW0 + 3600000), DDBK__CELL_EXPIRED);
    ddbk__fetched_wipe(&out);
    ddbk__cell_unref(c);
}

static void test_single_flight(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_CONTAINER);
    ddbk__fetch *f1 = NULL, *f2 = NULL;
    ddbk_error err;
    char body[512];

    answer(body, sizeof body, 1, NOW0 / 1000 + 3600);
    assert_int_equal(fetch(c, NOW0, 200, body), 1);
    int64_t due = NOW0 + 3400000; /* past refresh (r = 0: 3300 s), before g */
    assert_int_equal(ddbk__cell_state(c, due), DDBK__CELL_REFRESH);
    assert_int_equal(ddbk__cell_begin(c, due, &f1, &err), 1);
    assert_int_equal(ddbk__cell_fetching(c), 1);
    /* The others: FRESH while it runs, and no second claim. */
    assert_int_equal(ddbk__cell_state(c, due), DDBK__CELL_FRESH);
    assert_int_equal(ddbk__cell_begin(c, due, &f2, &err), 0);
    assert_null(f2);
    ddbk__cell_wait(c, 1); /* bounded: returns though the fetch runs */
    assert_int_equal(ddbk__cell_fetching(c), 1);
    /* An abandoned fetch frees the claim, counting nothing. */
    ddbk__cell_abandon(c, f1);
    assert_int_equal(ddbk__cell_fetching(c), 0);
    assert_int_equal(ddbk__cell_state(c, due), DDBK__CELL_REFRESH);
    ddbk_credentials_info info;
    ddbk__cell_info(c, &info);
    assert_int_equal(info.failures, 0);
    assert_int_equal(info.fetches, 1);
    ddbk__cell_unref(c);
}

static void test_backoff(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_CONTAINER);
    ddbk__fetched out;
    ddbk__fetch *f;
    ddbk_error err;
    uint64_t gen = 0;
    char body[512];
    int64_t now = NOW0;

    memset(&out, 0, sizeof out);
    g_r = 0.0; /* each backoff is half its base: 500 ms, 1 s, 2 s, ... 30 s */
    long expect = 500;
    for (int i = 0; i < 9; i++) {
        assert_int_equal(fetch(c, now, 404, "{\"message\":\"no\"}"), 0);
        assert_int_equal(ddbk__cell_begin(c, now + expect - 1, &f, &err), 0);
        /* During the backoff, a call with nothing usable fails at once. */
        assert_int_equal(ddbk__cell_take(c, now + expect - 1, &out, &gen, &err), -1);
        assert_true(strcmp(err.code, "CredentialsError") == 0 || err.code[0] != '\0');
        assert_int_equal(ddbk__cell_fetching(c), 0);
        now += expect;
        expect = expect * 2 > 30000 ? 30000 : expect * 2;
    }
    ddbk_credentials_info info;
    ddbk__cell_info(c, &info);
    assert_int_equal(info.failures, 9);
    assert_true(info.last_error[0] != '\0');

    /* A success resets it: the next failure waits 500 ms again. */
    answer(body, sizeof body, 1, now / 1000 + 3600);
    assert_int_equal(fetch(c, now, 200, body), 1);
    int64_t due = now + 3400000;
    assert_int_equal(fetch(c, due, 503, "oops"), 0);
    assert_int_equal(ddbk__cell_begin(c, due + 499, &f, &err), 0);
    /* ... and the old credentials still sign, as REFRESH is not due again
     * until the backoff ran out. */
    assert_int_equal(ddbk__cell_state(c, due + 499), DDBK__CELL_FRESH);
    assert_int_equal(ddbk__cell_take(c, due + 499, &out, &gen, &err), 1);
    assert_string_equal(out.access_key_id, "AKID1");
    assert_int_equal(ddbk__cell_state(c, due + 500), DDBK__CELL_REFRESH);
    assert_int_equal(fetch(c, due + 500, 200, body), 1);
    ddbk__fetched_wipe(&out);
    ddbk__cell_unref(c);
}

static void test_failure_after_expiry(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_CONTAINER);
    ddbk__fetched out;
    ddbk_error err;
    uint64_t gen = 0;
    char body[512];

    memset(&out, 0, sizeof out);
    answer(body, sizeof body, 1, NOW0 / 1000 + 3600);
    assert_int_equal(fetch(c, NOW0, 200, body), 1);
    int64_t late = NOW0 + 3590000; /* EXPIRED */
    assert_int_equal(fetch(c, late, 500, "{}"), 0);
    assert_int_equal(ddbk__cell_take(c, late, &out, &gen, &err), -1);
    assert_int_equal(err.code[0] != '\0', 1);
    assert_null(strstr(err.message, "SECRET"));
    assert_null(strstr(err.message, "TOKEN1"));
    ddbk__cell_unref(c);
}

static void test_host_set(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_HOST);
    ddbk__fetched out, in;
    ddbk__fetch *f;
    ddbk_error err;
    uint64_t gen = 0;

    memset(&out, 0, sizeof out);
    assert_int_equal(ddbk__cell_is_host(c), 1);
    assert_int_equal(ddbk__cell_state(c, NOW0), DDBK__CELL_EXPIRED);
    assert_int_equal(ddbk__cell_begin(c, NOW0, &f, &err), 0); /* the host fetches */
    assert_int_equal(ddbk__cell_take(c, NOW0, &out, &gen, &err), -1);
    assert_string_equal(err.code, "MissingCredentials");

    in = (ddbk__fetched){ "AKIDH", "SECRETH", "", 0 };
    assert_int_equal(ddbk__cell_set(c, &in, "imds", &err), 0);
    assert_int_equal(ddbk__cell_take(c, ddbk__wall_ms(), &out, &gen, &err), 1);
    assert_string_equal(out.access_key_id, "AKIDH");
    assert_null(out.session_token); /* "" is none */
    ddbk_credentials_info info;
    ddbk__cell_info(c, &info);
    assert_string_equal(info.provider, "imds");

    /* Refused: a control character (it would go into a header), empty keys,
     * credentials already expired. Nothing changes then. */
    in = (ddbk__fetched){ "AKID\r\nX: y", "S", NULL, 0 };
    assert_int_equal(ddbk__cell_set(c, &in, NULL, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(strstr(err.message, "AKID"));
    in = (ddbk__fetched){ "", "S", NULL, 0 };
    assert_int_equal(ddbk__cell_set(c, &in, NULL, &err), -1);
    in = (ddbk__fetched){ "AKIDOLD", "S", NULL, ddbk__wall_ms() / 1000 - 10 };
    assert_int_equal(ddbk__cell_set(c, &in, NULL, &err), -1);
    assert_int_equal(ddbk__cell_take(c, ddbk__wall_ms(), &out, &gen, &err), 0);
    assert_string_equal(out.access_key_id, "AKIDH");

    in = (ddbk__fetched){ "AKIDH2", "SECRETH2", "TOK", ddbk__wall_ms() / 1000 + 3600 };
    assert_int_equal(ddbk__cell_set(c, &in, NULL, &err), 0);
    assert_int_equal(ddbk__cell_take(c, ddbk__wall_ms(), &out, &gen, &err), 1);
    assert_string_equal(out.session_token, "TOK");
    /* A HOST cell says when a refresh is due, but the host fetches. */
    assert_int_equal(ddbk__cell_state(c, ddbk__wall_ms() + 3500000), DDBK__CELL_REFRESH);
    assert_int_equal(ddbk__cell_begin(c, ddbk__wall_ms() + 3500000, &f, &err), 0);
    ddbk__fetched_wipe(&out);
    ddbk__cell_unref(c);
}

static void test_refcount(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_STATIC);
    ddbk__cell *d = ddbk__cell_ref(c);
    assert_ptr_equal(c, d);
    ddbk__cell_unref(c);
    assert_int_equal(ddbk__cell_state(d, NOW0), DDBK__CELL_FRESH); /* still alive */
    ddbk__cell_unref(d);
}

/* Another thread (a lock keeper's clone) finding the cell EXPIRED while
 * this one fetches waits for that fetch, then takes its result. */
typedef struct waiter {
    ddbk__cell *c;
    int rc;
    char akid[32];
} waiter;

static void *wait_and_take(void *arg)
{
    waiter *w = arg;
    ddbk__fetched out;
    ddbk__fetch *f = NULL;
    ddbk_error err;
    uint64_t gen = 0;

    memset(&out, 0, sizeof out);
    if (ddbk__cell_begin(w->c, NOW0, &f, &err) != 0) {
        ddbk__cell_abandon(w->c, f);
        w->rc = -2; /* the claim is the main thread's, or nothing is due */
        return NULL;
    }
    ddbk__cell_wait(w->c, 20000);
    w->rc = ddbk__cell_take(w->c, NOW0, &out, &gen, &err);
    if (out.access_key_id)
        snprintf(w->akid, sizeof w->akid, "%s", out.access_key_id);
    ddbk__fetched_wipe(&out);
    return NULL;
}

static void test_wait_for_another_thread(void **state)
{
    (void)state;
    ddbk__cell *c = new_cell(DDBK__STEP_CONTAINER);
    ddbk__fetch *f = NULL;
    ddbk__action a;
    ddbk_error err;
    char body[512];
    pthread_t t;
    waiter w = { c, 0, "" };

    assert_int_equal(ddbk__cell_begin(c, NOW0, &f, &err), 1);
    assert_int_equal(pthread_create(&t, NULL, wait_and_take, &w), 0);
    answer(body, sizeof body, 7, NOW0 / 1000 + 3600);
    for (int i = 0; i < 50; i++) {
        ddbk__fetch_next(f, NOW0 / 1000, &a);
        if (a.kind == DDBK__ACT_DONE || a.kind == DDBK__ACT_FAILED)
            break;
        if (a.kind == DDBK__ACT_HTTP)
            ddbk__fetch_feed_http(f, 200, 0, NULL, body, strlen(body));
    }
    ddbk__cell_end(c, f, NOW0);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 1);
    assert_string_equal(w.akid, "AKID7");
    ddbk__cell_unref(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_static_ready),
        T(test_first_fetch_and_generation),
        T(test_refresh_and_expiry_times),
        T(test_expired_guard),
        T(test_single_flight),
        T(test_backoff),
        T(test_failure_after_expiry),
        T(test_host_set),
        T(test_refcount),
        T(test_wait_for_another_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
