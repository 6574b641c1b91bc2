/*
 * engine/keeper.c, ddbk_client_clone and the busy_item of ddbk_lock_acquire,
 * against a scripted HTTP responder forked by the test (as test_client.c
 * does): it answers every connection with the next canned response (the
 * last one again once the script runs out) and, before answering, reports
 * the operation on a pipe. The test waits on that pipe, never on a sleep,
 * to know how many requests a keeper's thread has made.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzSECRETzz"

#define CCF_TYPE "\"__type\":\"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException\""
#define ISE_BODY "{\"__type\":\"com.amazonaws.dynamodb.v20120810#InternalServerError\"," \
                 "\"message\":\"Internal server error\"}"
#define OTHERS_ITEM "\"Item\":{\"pk\":{\"S\":\"k\"},\"lockOwner\":{\"S\":\"other:1\"}," \
                    "\"lockRvn\":{\"S\":\"r1\"},\"fence\":{\"N\":\"9\"},"        \
                    "\"expiresAt\":{\"N\":\"4102444800\"},\"leaseMs\":{\"N\":\"5000\"}}"
#define CCF_BODY "{" CCF_TYPE ",\"message\":\"The conditional request failed\"," OTHERS_ITEM "}"
#define ACQUIRED_BODY "{\"Attributes\":{\"fence\":{\"N\":\"7\"}}}"

typedef struct canned {
    int status;
    const char *body;
} canned;

/* What a test holds, released by the teardown so a failed assertion leaks
 * nothing and leaves no responder behind. */
static ddbk_client *g_client;
static pid_t g_server = -1;
static int g_listen = -1, g_notes = -1;

static int setup(void **state)
{
    (void)state;
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("ALL_PROXY");
    unsetenv("all_proxy");
    g_client = NULL;
    g_server = -1;
    g_listen = g_notes = -1;
    return 0;
}

static void reap(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
    }
}

static int teardown(void **state)
{
    (void)state;
    if (g_server > 0)
        reap(g_server);
    if (g_listen >= 0)
        close(g_listen);
    if (g_notes >= 0)
        close(g_notes);
    ddbk_client_free(g_client);
    return setup(state);
}

static int listen_socket(int *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Reads one request from fd; returns its operation's first letter ('U' for
 * UpdateItem, 'G' for GetItem, '?' otherwise). */
static char read_request(int fd)
{
    static char req[16384];
    size_t got = 0;
    long want = -1;
    for (;;) {
        ssize_t r = read(fd, req + got, sizeof req - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        req[got] = '\0';
        char *end = strstr(req, "\r\n\r\n");
        if (end != NULL) {
            if (want < 0) {
                char *cl = strcasestr(req, "\r\ncontent-length:");
                want = (long)(end + 4 - req) + (cl != NULL ? strtol(cl + 17, NULL, 10) : 0);
            }
            if ((long)got >= want)
                break;
        }
    }
    req[got] = '\0';
    if (strstr(req, "DynamoDB_20120810.UpdateItem") != NULL)
        return 'U';
    if (strstr(req, "DynamoDB_20120810.GetItem") != NULL)
        return 'G';
    return '?';
}

/* Forks the responder; the test reads one byte per request from g_notes. */
static int serve(const canned *script, int n)
{
    int port, fds[2];
    g_listen = listen_socket(&port);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0) {
        close(fds[1]);
        g_notes = fds[0];
        g_server = pid;
        return port;
    }
    close(fds[0]);
    alarm(30); /* never outlive a broken test */
    for (int i = 0;; i++) {
        int fd = accept(g_listen, NULL, NULL);
        if (fd < 0)
            _exit(2);
        char op = read_request(fd);
        /* Reported before the answer: once the client has its response,
         * the note is already in the pipe. */
        if (write(fds[1], &op, 1) != 1)
            _exit(3);
        const canned *c = &script[i < n ? i : n - 1];
        char resp[8192];
        int len = snprintf(resp, sizeof resp,
                           "HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\n"
                           "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                           c->status, strlen(c->body), c->body);
        for (ssize_t off = 0, w; off < len; off += w)
            if ((w = write(fd, resp + off, (size_t)(len - off))) <= 0)
                break;
        shutdown(fd, SHUT_WR);
        close(fd);
    }
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

/* The requests reported so far and not yet awaited (after a keeper stopped:
 * every request it made, since each note precedes its answer). */
static int drain(char *ops, int cap)
{
    int n = 0, fl = fcntl(g_notes, F_GETFL);
    fcntl(g_notes, F_SETFL, fl | O_NONBLOCK);
    while (n < cap - 1 && read(g_notes, &ops[n], 1) == 1)
        n++;
    ops[n] = '\0';
    return n;
}

static ddbk_client *client_for(const char *ep, int max_attempts)
{
    ddbk_config cfg;
    ddbk_error err;

    ddbk_config_init(&cfg);
    cfg.region = "eu-west-1";
    cfg.endpoint = ep;
    cfg.access_key_id = "AKID";
    cfg.secret_access_key = SECRET;
    cfg.session_token = "TOKEN";
    cfg.max_attempts = max_attempts;
    cfg.base_delay_ms = 1;
    cfg.timeout_ms = 2000;
    ddbk_client *c = ddbk_client_new(&cfg, &err);
    if (c == NULL)
        fail_msg("ddbk_client_new: %s: %s", err.code, err.message);
    return c;
}

static ddbk_client *responder_client(int port, int max_attempts)
{
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
    return client_for(ep, max_attempts);
}

static const ddbk_lock_key KEY = { "t", "pk", "k", NULL, NULL };

/* Takes the lock through the responder, whose first answer must grant it. */
static void acquire_ok(ddbk_client *c, ddbk_lock *l)
{
    ddbk_lock_opts o = { 5000, 0, 0, NULL };
    ddbk_error err;
    if (ddbk_lock_acquire(c, &KEY, &o, l, NULL, &err) != 0)
        fail_msg("acquire: %s: %s", err.code, err.message);
    assert_string_equal(await(1), "U");
    assert_int_equal(l->fence, 7);
}

/* ---------------------------------------------------------- the clone */

static void test_clone_copies_settings(void **state)
{
    ddbk_error err;
    ddbk_response resp;
    ddbk_stats st;
    (void)state;

    ddbk_client *c = g_client = client_for("http://127.0.0.1:9", 1);
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
    assert_ptr_not_equal(k->creds.secret_access_key, c->creds.secret_access_key);
    assert_string_equal(k->creds.source, c->creds.source);

    /* The clone outlives its original (ASan checks nothing is shared). */
    ddbk_client_free(c);
    g_client = k;
    assert_string_equal(k->creds.access_key_id, "AKID");
    assert_string_equal(k->creds.secret_access_key, SECRET);
    assert_string_equal(k->creds.session_token, "TOKEN");
    ddbk_response_init(&resp);
    assert_int_equal(ddbk_call(k, "GetItem", "{}", 2, &resp, &err), -1);
    assert_string_equal(err.code, "ConnectionError");
    ddbk_response_free(&resp);
    ddbk_stats_get(k, &st);
    assert_int_equal(st.requests, 1);
}

/* --------------------------------------------------------- busy_item */

static void acquire_fails(const canned *script, int n, const char *code, const char *want_item,
                          const char *ops)
{
    ddbk_lock l;
    ddbk_lock_holder h;
    ddbk_error err;
    ddbk_buf item;
    ddbk_lock_opts o = { 5000, 0, 0, &item };

    int port = serve(script, n);
    ddbk_client *c = g_client = responder_client(port, 1);
    ddbk_buf_init(&item, 0);
    ddbk_buf_puts(&item, "stale"); /* reset on entry */
    assert_int_equal(ddbk_lock_acquire(c, &KEY, &o, &l, &h, &err), -1);
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
    static const canned script[] = { { 200, ACQUIRED_BODY } };
    ddbk_lock l;
    ddbk_error err;
    ddbk_buf item;
    ddbk_lock_opts o = { 5000, 0, 0, &item };
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 1), 1);
    ddbk_buf_init(&item, 0);
    ddbk_buf_puts(&item, "stale");
    assert_int_equal(ddbk_lock_acquire(c, &KEY, &o, &l, NULL, &err), 0);
    assert_int_equal(item.len, 0);
    assert_int_equal(l.held, 1);
    ddbk_buf_free(&item);
    ddbk_lock_free(&l);
}

/* ---------------------------------------------------------- the keeper */

/* A held handle built by hand, for what needs no server. */
static void fake_held(ddbk_lock *l)
{
    memset(l, 0, sizeof *l);
    ddbk_buf_init(&l->target, 0);
    ddbk_buf_puts(&l->target, "\"TableName\":\"t\",\"Key\":{\"pk\":{\"S\":\"k\"}}");
    strcpy(l->owner, "me:1");
    strcpy(l->rvn, "r0");
    l->lease_ms = 5000;
    l->held = 1;
}

static void test_keep_refuses_bad_arguments(void **state)
{
    ddbk_lock l;
    ddbk_error err;
    (void)state;
    ddbk_client *c = g_client = client_for("http://127.0.0.1:9", 1);
    fake_held(&l);
    static const long periods[] = { 0, -1, -1000 };
    for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++) {
        assert_null(ddbk_lock_keep(c, &l, periods[i], &err));
        assert_string_equal(err.code, "InvalidArgument");
    }
    assert_null(ddbk_lock_keep(c, NULL, 100, &err));
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(ddbk_lock_keep(NULL, &l, 100, &err));
    assert_string_equal(err.code, "InvalidArgument");
    ddbk_lock_mark_released(&l);
    assert_int_equal(l.held, 0);
    assert_null(ddbk_lock_keep(c, &l, 100, &err));
    assert_string_equal(err.code, "InvalidArgument");
    /* And a marked handle answers renew and release itself. */
    assert_int_equal(ddbk_lock_renew(c, &l, 0, &err), -1);
    assert_string_equal(err.code, "lost");
    assert_int_equal(ddbk_lock_release(c, &l, &err), -1);
    assert_string_equal(err.code, "not_owner");
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 0);
    ddbk_lock_free(&l);
}

static void test_keep_stops_before_first_period(void **state)
{
    ddbk_lock l;
    ddbk_error err;
    long renewals = -1;
    (void)state;
    ddbk_client *c = g_client = client_for("http://127.0.0.1:9", 1);
    fake_held(&l);
    ddbk_lock_keeper *k = ddbk_lock_keep(c, &l, 60000, &err);
    assert_non_null(k);
    double t0 = ddbk__mono_us();
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), 0);
    /* A keeper that slept out its period would take a minute here. */
    assert_true(ddbk__mono_us() - t0 < 5e6);
    assert_int_equal(renewals, 0);
    assert_string_equal(err.code, "");
    assert_string_equal(l.rvn, "r0");
    assert_int_equal(l.held, 1);
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 0); /* the caller's client stays unused */
    assert_int_equal(ddbk_lock_keep_stop(NULL, NULL, &err), 0);
    ddbk_lock_free(&l);
}

static void test_keep_renews(void **state)
{
    static const canned script[] = { { 200, ACQUIRED_BODY }, { 200, "{}" } };
    ddbk_lock l;
    ddbk_error err;
    char first_rvn[40], rest[64];
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 2), 1);
    acquire_ok(c, &l);
    strcpy(first_rvn, l.rvn);
    ddbk_lock_keeper *k = ddbk_lock_keep(c, &l, 20, &err);
    assert_non_null(k);
    assert_string_equal(await(3), "UUU");
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), 0);
    assert_string_equal(err.code, "");
    /* Every request the thread made was a renewal that succeeded. */
    assert_int_equal(renewals, 3 + drain(rest, sizeof rest));
    assert_int_equal(strspn(rest, "U"), strlen(rest));
    assert_int_equal(l.held, 1);
    assert_string_not_equal(l.rvn, first_rvn);
    /* The renewals went through the clone, not the caller's client. */
    ddbk_stats st;
    ddbk_stats_get(c, &st);
    assert_int_equal(st.requests, 1);
    ddbk_lock_free(&l);
}

static void test_keep_recovers_from_transient_failure(void **state)
{
    static const canned script[] = {
        { 200, ACQUIRED_BODY }, { 500, ISE_BODY }, { 500, ISE_BODY }, { 200, "{}" },
    };
    ddbk_lock l;
    ddbk_error err;
    char rest[64];
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 4), 1);
    acquire_ok(c, &l);
    ddbk_lock_keeper *k = ddbk_lock_keep(c, &l, 10, &err);
    assert_non_null(k);
    /* A renewal fails (its read-back too), the next one succeeds. */
    assert_string_equal(await(3), "UGU");
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), 0);
    assert_string_equal(err.code, "");
    assert_int_equal(renewals, 1 + drain(rest, sizeof rest));
    assert_int_equal(l.held, 1);
    ddbk_lock_free(&l);
}

static void test_keep_reports_last_transient_failure(void **state)
{
    static const canned script[] = { { 200, ACQUIRED_BODY }, { 200, "{}" }, { 500, ISE_BODY } };
    ddbk_lock l;
    ddbk_error err;
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 3), 1);
    acquire_ok(c, &l);
    ddbk_lock_keeper *k = ddbk_lock_keep(c, &l, 10, &err);
    assert_non_null(k);
    assert_string_equal(await(3), "UUG");
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), -1);
    assert_string_equal(err.code, "InternalServerError");
    assert_int_equal(renewals, 1);
    assert_int_equal(l.held, 1); /* a failed request does not lose the lease */
    ddbk_lock_free(&l);
}

static void test_keep_ends_when_lost(void **state)
{
    static const canned script[] = { { 200, ACQUIRED_BODY }, { 200, "{}" }, { 400, CCF_BODY } };
    ddbk_lock l;
    ddbk_error err;
    long renewals = -1;
    (void)state;

    ddbk_client *c = g_client = responder_client(serve(script, 3), 1);
    acquire_ok(c, &l);
    ddbk_lock_keeper *k = ddbk_lock_keep(c, &l, 10, &err);
    assert_non_null(k);
    assert_string_equal(await(2), "UU");
    assert_int_equal(ddbk_lock_keep_stop(k, &renewals, &err), -1);
    assert_string_equal(err.code, "lost");
    assert_non_null(strstr(err.message, "other:1"));
    assert_int_equal(renewals, 1);
    assert_int_equal(l.held, 0);
    ddbk_lock_free(&l);
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
        cmocka_unit_test_setup_teardown(test_keep_reports_last_transient_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_ends_when_lost, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
