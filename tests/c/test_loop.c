/*
 * engine/loop.c: calls in flight at once against a responder forked by the
 * test (responder.h). Unlike test_client's one-connection-at-a-time server,
 * this one polls every connection it accepted and keeps each alive
 * (HTTP/1.1), so hundreds of calls are truly concurrent and connection
 * reuse shows. It answers the i-th request with the i-th canned response
 * (the last one again once the script runs out) and, before answering,
 * writes a note on a pipe: 'A' per connection accepted, then the
 * operation's first letter per request. The test waits on that pipe or on
 * the loop itself, never on a sleep.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "creds.h"
#include "responder.h"

#define CCF_BODY "{" CCF_TYPE ",\"message\":\"The conditional request failed\"," \
                 "\"Item\":{\"n\":{\"N\":\"1\"}}}"

typedef struct canned {
    int status;       /* 0: read the request, never answer; DROP: read it and
                       * close the connection unanswered; -s: answer s only
                       * with the next request's answer */
    const char *body; /* NULL: {"Echo":<the request's body>} */
} canned;

#define DROP 1

static const canned ECHO[] = { { 200, NULL } };
static const canned HANG[] = { { 0, NULL } };

/* What one call's callback saw. Static storage: a loop freed by the
 * teardown after a failed assertion still calls back into it. */
typedef struct outcome {
    int runs;
    int ok;
    int had_resp;
    long status;
    int attempts;
    int ambiguous;
    char body[512];
    char request_id[96];
    ddbk_error err;
} outcome;

#define MANY 200
static outcome g_out[MANY];

static ddbk_loop *g_loop;
static ddbk_client *g_client, *g_client2;

static double draw_half(void) { return 0.5; }
static double draw_top(void) { return 0.999; }

/* The container endpoint the responder plays too (GET /creds): the i-th
 * fetch gets g_creds[i], a 500 once they run out. Set before the fork. */
#define MAX_CREDS 4
static const char *g_creds[MAX_CREDS];
static int g_ncreds;

static int setup(void **state)
{
    (void)state;
    ddbk__test_random = NULL;
    ddbk__test_wall_offset_ms = 0;
    g_ncreds = 0;
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    unsetenv("AWS_EC2_METADATA_DISABLED");
    responder_setup();
    g_loop = NULL;
    g_client = g_client2 = NULL;
    memset(g_out, 0, sizeof g_out);
    return 0;
}

static int teardown(void **state)
{
    ddbk_loop_free(g_loop); /* before the clients its calls use */
    ddbk_client_free(g_client);
    ddbk_client_free(g_client2);
    responder_stop();
    return setup(state);
}

/* ------------------------------------------------------- the responder */

#define MAX_CONNS 512

typedef struct conn {
    int fd;
    size_t got;
    char buf[8192];
} conn;

static void send_canned(int fd, const canned *k, int i, const char *body, long blen)
{
    char text[8192], id[48];
    if (k->body != NULL)
        snprintf(text, sizeof text, "%s", k->body);
    else
        snprintf(text, sizeof text, "{\"Echo\":%.*s}", (int)blen, body);
    snprintf(id, sizeof id, "x-amzn-RequestId: R%d\r\n", i + 1);
    send_response(fd, k->status < 0 ? -k->status : k->status, id, text);
}

/* A whole request in c->buf: answers it (or not, for status 0; or later,
 * for a held one) and returns 1; 2 when the connection is to be closed
 * unanswered (DROP); 0 while more is to come. */
static int answer(conn *c, int notes, const canned *script, int n, int *served)
{
    static int held_fd = -1, held_i; /* a held answer has no body to echo */
    const char *body;
    long blen;
    if (!whole_request(c->buf, c->got, &body, &blen))
        return 0;

    if (strncmp(c->buf, "GET /creds ", 11) == 0) {
        /* A credentials fetch: noted '?', not a step of the script. */
        static int fetched;
        note(notes, '?');
        const char *b = fetched < g_ncreds ? g_creds[fetched] : NULL;
        fetched++;
        send_response(c->fd, b ? 200 : 500, NULL, b ? b : "{\"message\":\"down\"}");
        c->got = 0;
        return 1;
    }
    note(notes, op_letter(c->buf));
    /* Which rotated set signed it: its number, noted. */
    const char *akid = strstr(c->buf, "Credential=AKIDROT");
    if (akid != NULL)
        note(notes, akid[18]);
    int i = (*served)++;
    const canned *k = &script[i < n ? i : n - 1];
    if (k->status == DROP)
        return 2;
    if (k->status < 0) {
        held_fd = c->fd;
        held_i = i;
    } else if (k->status != 0) {
        if (held_fd >= 0) {
            send_canned(held_fd, &script[held_i], held_i, NULL, 0);
            held_fd = -1;
        }
        send_canned(c->fd, k, i, body, blen);
    }
    c->got = 0; /* curl sends no second request before this answer */
    return 1;
}

static void respond(int lfd, int notes, const void *script, int n)
{
    static conn conns[MAX_CONNS];
    static struct pollfd p[MAX_CONNS + 1];
    int nconn = 0, served = 0;

    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    for (;;) {
        p[0].fd = lfd;
        p[0].events = POLLIN;
        for (int i = 0; i < nconn; i++) {
            p[i + 1].fd = conns[i].fd;
            p[i + 1].events = POLLIN;
        }
        if (poll(p, (nfds_t)nconn + 1, -1) < 0)
            _exit(2);
        /* Highest first: a closed one is replaced by the last, already seen. */
        for (int i = nconn - 1; i >= 0; i--) {
            if (p[i + 1].revents == 0)
                continue;
            conn *c = &conns[i];
            ssize_t r = read(c->fd, c->buf + c->got, sizeof c->buf - 1 - c->got);
            if (r > 0) {
                c->got += (size_t)r;
                c->buf[c->got] = '\0';
            }
            if (r <= 0 || answer(c, notes, script, n, &served) == 2) {
                close(c->fd);
                conns[i].fd = conns[nconn - 1].fd;
                conns[i].got = conns[nconn - 1].got;
                memcpy(conns[i].buf, conns[nconn - 1].buf, conns[nconn - 1].got + 1);
                nconn--;
            }
        }
        if (p[0].revents) {
            int fd;
            while ((fd = accept(lfd, NULL, NULL)) >= 0) {
                if (nconn == MAX_CONNS)
                    _exit(4);
                conns[nconn].fd = fd;
                conns[nconn].got = 0;
                nconn++;
                note(notes, 'A');
            }
        }
    }
}

/* Forks the responder; returns its port. */
static int serve(const canned *script, int n)
{
    return responder_start(respond, script, n);
}

static int count(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* How many of the notes not yet read are c. */
static int new_notes(char c)
{
    char notes[256];
    drain(notes, sizeof notes);
    return count(notes, c);
}

/* --------------------------------------------------------------- helpers */

static ddbk_client *client_for(int port, int max_attempts, long base_delay_ms)
{
    ddbk_config cfg;
    char ep[64];

    local_config(&cfg, ep, sizeof ep, port);
    cfg.max_attempts = max_attempts;
    cfg.base_delay_ms = base_delay_ms;
    cfg.timeout_ms = 5000;
    return new_client(&cfg, NULL);
}

static ddbk_loop *new_loop(void)
{
    ddbk_error err;
    ddbk_loop *l = ddbk_loop_new(&err);
    if (l == NULL)
        fail_msg("ddbk_loop_new: %s: %s", err.code, err.message);
    return l;
}

static void record(void *ud, const ddbk_response *resp, const ddbk_error *err)
{
    outcome *o = ud;
    o->runs++;
    o->ok = err == NULL;
    o->had_resp = resp != NULL;
    if (resp != NULL) {
        o->status = resp->status;
        o->attempts = resp->attempts;
        o->ambiguous = resp->ambiguous;
        snprintf(o->body, sizeof o->body, "%s", resp->body.data ? resp->body.data : "");
        snprintf(o->request_id, sizeof o->request_id, "%s", resp->request_id);
    }
    if (err != NULL)
        o->err = *err;
}

static void submit_ok(ddbk_client *c, const char *op, const char *body, outcome *o)
{
    ddbk_error err;
    if (ddbk_loop_submit(g_loop, c, op, body, body ? strlen(body) : 0, record, o, &err) != 0)
        fail_msg("ddbk_loop_submit: %s: %s", err.code, err.message);
}

/* Steps until nothing is in flight; each step waits on I/O or a timer. */
static void run(void)
{
    ddbk_error err;
    double start = ddbk__mono_us();
    int n;
    while ((n = ddbk_loop_step(g_loop, 100, &err)) > 0)
        if (ddbk__mono_us() - start > 15e6)
            fail_msg("%d calls still in flight after 15 s", n);
    if (n < 0)
        fail_msg("ddbk_loop_step: %s: %s", err.code, err.message);
}

/* ----------------------------------------------------------------- tests */

/* MANY calls in flight at once from two clients, each answered with its own
 * body; stats kept per client. */
static void test_many_in_flight(void **state)
{
    static char bodies[MANY][96];
    char notes[4 * MANY];
    ddbk_stats st;

    (void)state;
    int port = serve(ECHO, 1);
    g_client = client_for(port, 3, 1);
    g_client2 = client_for(port, 3, 1);
    g_loop = new_loop();
    size_t out_bytes[2] = { 0, 0 };
    for (int i = 0; i < MANY; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"TableName\":\"t\",\"Key\":{\"id\":{\"N\":\"%d\"}}}", i);
        submit_ok(i % 2 ? g_client2 : g_client, "GetItem", bodies[i], &g_out[i]);
        out_bytes[i % 2] += strlen(bodies[i]);
    }
    assert_int_equal(ddbk_loop_pending(g_loop), MANY);
    run();
    assert_int_equal(ddbk_loop_pending(g_loop), 0);

    for (int i = 0; i < MANY; i++) {
        char want[160];
        snprintf(want, sizeof want, "{\"Echo\":%s}", bodies[i]);
        assert_int_equal(g_out[i].runs, 1);
        if (!g_out[i].ok)
            fail_msg("call %d: %s: %s", i, g_out[i].err.code, g_out[i].err.message);
        assert_int_equal(g_out[i].status, 200);
        assert_int_equal(g_out[i].attempts, 1);
        assert_string_equal(g_out[i].body, want);
        assert_true(g_out[i].request_id[0] == 'R');
    }
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, 'G'), MANY);
    /* Truly concurrent: more than one connection. */
    assert_true(count(notes, 'A') > 1);

    for (int k = 0; k < 2; k++) {
        ddbk_stats_get(k ? g_client2 : g_client, &st);
        assert_int_equal(st.requests, MANY / 2);
        assert_int_equal(st.retries, 0);
        assert_int_equal(st.errors, 0);
        assert_int_equal(st.latency_count, MANY / 2);
        assert_int_equal(st.bytes_out, out_bytes[k]);
        assert_true(st.bytes_in > st.bytes_out);
        const ddbk_op_stats *g = find_op(&st, "GetItem");
        assert_non_null(g);
        assert_int_equal(g->calls, MANY / 2);
        assert_int_equal(g->requests, MANY / 2);
    }
    /* Each success refunded a token to a full quota. */
    assert_int_equal(g_client->quota, 500);
}

/* A callback submits the next call; the chain runs on one kept-alive
 * connection. */
#define CHAIN 5
static int g_chain_next;

static void chain(void *ud, const ddbk_response *resp, const ddbk_error *err)
{
    record(ud, resp, err);
    if (g_chain_next < CHAIN) {
        char body[64];
        int i = g_chain_next++;
        snprintf(body, sizeof body, "{\"n\":%d}", i);
        ddbk_error e;
        if (ddbk_loop_submit(g_loop, g_client, "PutItem", body, strlen(body), chain,
                             &g_out[i], &e) != 0)
            g_out[i].runs = -100; /* fails the test below */
    }
}

static void test_callback_submits(void **state)
{
    char notes[64];

    (void)state;
    int port = serve(ECHO, 1);
    g_client = client_for(port, 3, 1);
    g_loop = new_loop();
    g_chain_next = 1;
    ddbk_error err;
    assert_int_equal(ddbk_loop_submit(g_loop, g_client, "PutItem", "{\"n\":0}", 7, chain,
                                      &g_out[0], &err), 0);
    run();
    assert_int_equal(g_chain_next, CHAIN);
    for (int i = 0; i < CHAIN; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"Echo\":{\"n\":%d}}", i);
        assert_int_equal(g_out[i].runs, 1);
        assert_true(g_out[i].ok);
        assert_string_equal(g_out[i].body, want);
    }
    drain(notes, sizeof notes);
    assert_string_equal(notes, "APPPPP"); /* CHAIN requests, one connection */
    ddbk_stats st;
    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, CHAIN);
}

/* A 500, then a 200: the retry waits on a timer of the loop (during which
 * the loop has no socket to watch and says how long to wait), is signed
 * afresh, and the success refunds the quota. The jitter draw is fixed at
 * half: a 150 ms backoff. */
static void test_retry_on_timer(void **state)
{
    static const canned script[] = { { 500, ISE_BODY }, { 200, "{\"Item\":{}}" } };
    char notes[64];
    struct pollfd fds[8];
    ddbk_stats st;
    ddbk_error err;
    long t;

    (void)state;
    ddbk__test_random = draw_half;
    int port = serve(script, 2);
    g_client = client_for(port, 3, 300);
    g_loop = new_loop();
    submit_ok(g_client, "GetItem", "{}", &g_out[0]);

    /* Until the 500 is in: the call is then waiting on its backoff. */
    do {
        assert_int_equal(ddbk_loop_step(g_loop, 100, &err), 1);
        ddbk_stats_get(g_client, &st);
    } while (st.requests == 0);
    assert_int_equal(st.retries, 0); /* counted when the call ends, as ddbk_call does */
    assert_int_equal(g_out[0].runs, 0);
    assert_int_equal((long)st.retry_delay_ms_total, 150);
    assert_int_equal(g_client->quota, 495);
    assert_int_equal(ddbk_loop_fds(g_loop, fds, 8, &t), 0); /* the kept-alive connection idles */
    assert_true(t > 0 && t <= 151);
    assert_int_equal(ddbk_loop_pending(g_loop), 1);
    drain(notes, sizeof notes);
    assert_string_equal(notes, "AG"); /* no second request yet */
    run();
    assert_int_equal(g_out[0].runs, 1);
    assert_true(g_out[0].ok);
    assert_int_equal(g_out[0].attempts, 2);
    assert_string_equal(g_out[0].body, "{\"Item\":{}}");
    assert_string_equal(g_out[0].request_id, "R2");

    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.errors, 0);
    assert_int_equal((long)st.retry_delay_ms_total, 150);
    assert_int_equal(g_client->quota, 500);
    const ddbk_op_stats *g = find_op(&st, "GetItem");
    assert_int_equal(g->calls, 1);
    assert_int_equal(g->requests, 2);
}

/* A failed condition is not retried; its body reaches the callback. */
static void test_conditional_check_failed(void **state)
{
    static const canned script[] = { { 400, CCF_BODY } };
    ddbk_stats st;

    (void)state;
    int port = serve(script, 1);
    g_client = client_for(port, 3, 1);
    g_loop = new_loop();
    submit_ok(g_client, "PutItem", "{\"TableName\":\"t\"}", &g_out[0]);
    run();
    outcome *o = &g_out[0];
    assert_int_equal(o->runs, 1);
    assert_false(o->ok);
    assert_string_equal(o->err.code, "ConditionalCheckFailedException");
    assert_string_equal(o->err.message, "The conditional request failed");
    assert_int_equal(o->err.status, 400);
    assert_int_equal(o->err.retryable, 0);
    assert_string_equal(o->err.request_id, "R1");
    assert_true(o->had_resp);
    assert_int_equal(o->status, 400);
    assert_int_equal(o->attempts, 1);
    assert_string_equal(o->body, CCF_BODY);
    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.ncodes, 1);
    assert_string_equal(st.codes[0].code, "ConditionalCheckFailedException");
    assert_int_equal(g_client->quota, 500);
}

/* Attempts that time out: retried (10 tokens), then reported as ddbk_call
 * reports them, with no response. */
static void test_timeout(void **state)
{
    char notes[64];
    ddbk_config cfg;
    ddbk_stats st;
    ddbk_error err;
    char ep[64];

    (void)state;
    local_config(&cfg, ep, sizeof ep, serve(HANG, 1));
    cfg.timeout_ms = 150;
    cfg.max_attempts = 2;
    cfg.base_delay_ms = 1;
    g_client = ddbk_client_new(&cfg, &err);
    assert_non_null(g_client);
    g_loop = new_loop();
    submit_ok(g_client, "GetItem", "{}", &g_out[0]);
    run();
    outcome *o = &g_out[0];
    assert_int_equal(o->runs, 1);
    assert_false(o->ok);
    assert_false(o->had_resp);
    assert_string_equal(o->err.code, "Timeout");
    assert_int_equal(o->err.timeout, 1);
    assert_int_equal(o->err.retryable, 1);
    assert_int_equal(o->err.status, 0);
    assert_null(strstr(o->err.message, SECRET));
    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.errors, 1);
    assert_true(st.latency_min_us >= 100000); /* each attempt waited it out */
    assert_string_equal(st.codes[0].code, "Timeout");
    assert_int_equal(g_client->quota, 490);
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, 'G'), 2);
}

/* A host's own poll loop: ddbk_loop_fds, poll, ddbk_loop_step(0). */
static void test_fds_drive_a_host_poll(void **state)
{
    struct pollfd fds[16];
    ddbk_error err;
    long t = -2;
    int saw_fd = 0, rounds = 0;

    (void)state;
    int port = serve(ECHO, 1);
    g_client = client_for(port, 3, 1);
    g_loop = new_loop();

    assert_int_equal(ddbk_loop_fds(g_loop, fds, 16, &t), 0);
    assert_int_equal(t, -1); /* nothing in flight */
    for (int i = 0; i < 3; i++)
        submit_ok(g_client, "GetItem", "{\"i\":1}", &g_out[i]);
    assert_int_equal(ddbk_loop_fds(g_loop, fds, 16, &t), 0);
    assert_int_equal(t, 0); /* curl wants to start them now */

    while (ddbk_loop_pending(g_loop) > 0) {
        int n = ddbk_loop_fds(g_loop, fds, 16, &t);
        assert_true(n >= 0 && n <= 16);
        assert_true(n > 0 || t >= 0); /* something must wake the host */
        if (n > 0) {
            saw_fd = 1;
            assert_int_equal(ddbk_loop_fds(g_loop, NULL, 0, NULL), n); /* count only */
            if (n > 1) {
                struct pollfd one[1];
                assert_int_equal(ddbk_loop_fds(g_loop, one, 1, NULL), n);
                assert_int_equal(one[0].fd, fds[0].fd);
            }
        }
        for (int i = 0; i < n; i++)
            assert_true(fds[i].events & (POLLIN | POLLOUT));
        assert_true(t <= 5000);
        assert_true(poll(fds, (nfds_t)n, t < 0 ? 15000 : (int)t) >= 0);
        assert_true(ddbk_loop_step(g_loop, 0, &err) >= 0);
        /* No busy loop: each round waited for something. */
        assert_true(++rounds < 100);
    }
    assert_true(saw_fd);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g_out[i].runs, 1);
        assert_true(g_out[i].ok);
        assert_string_equal(g_out[i].body, "{\"Echo\":{\"i\":1}}");
    }
    assert_int_equal(ddbk_loop_fds(g_loop, fds, 16, &t), 0);
    assert_int_equal(t, -1);
    assert_int_equal(ddbk_loop_fds(g_loop, NULL, 4, &t), -1);
    assert_int_equal(ddbk_loop_fds(NULL, fds, 4, &t), -1);
}

/* Freeing the loop calls back every call in flight once, with "Cancelled":
 * calls on the wire, one in a backoff, one never stepped. A cancelled
 * call's callback cannot submit. */
static int g_resubmit_rc = 1;

static void cancelled(void *ud, const ddbk_response *resp, const ddbk_error *err)
{
    ddbk_error e;
    record(ud, resp, err);
    g_resubmit_rc = ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, record,
                                     &g_out[MANY - 1], &e);
}

static void test_free_cancels_in_flight(void **state)
{
    static const canned script[] = { { 500, ISE_BODY }, { 0, NULL } };
    ddbk_stats st;
    ddbk_error err;

    (void)state;
    ddbk__test_random = draw_top; /* a backoff of ~20 s outlives the test */
    int port = serve(script, 2);
    g_client = client_for(port, 3, 100000);
    g_loop = new_loop();
    for (int i = 0; i < 3; i++)
        submit_ok(g_client, "GetItem", "{}", &g_out[i]);
    /* Until the responder has all three requests (the first answered 500)
     * and the loop has read that answer. */
    int seen = 0;
    do {
        assert_int_equal(ddbk_loop_step(g_loop, 100, &err), 3);
        seen += new_notes('G');
        ddbk_stats_get(g_client, &st);
    } while (seen < 3 || st.requests < 1);
    /* One more, never stepped. */
    assert_int_equal(ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, cancelled,
                                      &g_out[3], &err), 0);
    assert_int_equal(ddbk_loop_pending(g_loop), 4);

    ddbk_loop_free(g_loop);
    g_loop = NULL;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(g_out[i].runs, 1);
        assert_false(g_out[i].ok);
        assert_false(g_out[i].had_resp);
        assert_string_equal(g_out[i].err.code, "Cancelled");
    }
    assert_int_equal(g_resubmit_rc, -1);
    assert_int_equal(g_out[MANY - 1].runs, 0);
    /* The one never stepped sent nothing; the two cut on the wire may have
     * been carried out, and so may the call in its backoff, whose answer
     * was a 500. */
    int cut = 0;
    for (int i = 0; i < 4; i++)
        cut += g_out[i].err.ambiguous;
    assert_int_equal(cut, 3);
    assert_int_equal(g_out[3].err.ambiguous, 0);
    ddbk_stats_get(g_client, &st);
    const ddbk_op_stats *g = find_op(&st, "GetItem");
    assert_int_equal(g->calls, 4);
    assert_int_equal(g->errors, 4);
    assert_int_equal(st.requests, 3); /* every request the responder read */
}

/* A callback may free its loop (the rest is cancelled when the step ends)
 * but not step it. */
static int g_step_rc = 1;

static void free_from_callback(void *ud, const ddbk_response *resp, const ddbk_error *err)
{
    ddbk_error e;
    record(ud, resp, err);
    g_step_rc = ddbk_loop_step(g_loop, 0, &e);
    ddbk_loop_free(g_loop);
    g_loop = NULL;
}

static void test_free_from_callback(void **state)
{
    static const canned script[] = { { 0, NULL }, { 200, "{}" } };
    ddbk_error err;

    (void)state;
    int port = serve(script, 2);
    g_client = client_for(port, 1, 1);
    ddbk_loop *l = g_loop = new_loop();
    /* The first call hangs; once it is on the wire, the second is answered. */
    submit_ok(g_client, "GetItem", "{}", &g_out[1]);
    do
        assert_int_equal(ddbk_loop_step(l, 100, &err), 1);
    while (new_notes('G') == 0);
    assert_int_equal(ddbk_loop_submit(l, g_client, "GetItem", "{}", 2, free_from_callback,
                                      &g_out[0], &err), 0);
    int n;
    while ((n = ddbk_loop_step(l, 100, &err)) > 0)
        ;
    assert_int_equal(n, 0);
    assert_null(g_loop); /* l is gone */
    assert_int_equal(g_step_rc, -1);
    assert_int_equal(g_out[0].runs, 1);
    assert_true(g_out[0].ok);
    assert_int_equal(g_out[1].runs, 1);
    assert_string_equal(g_out[1].err.code, "Cancelled");
}

/* Cancelling: a call on the wire and a call in a backoff are called back
 * once, there, with "Cancelled" (resp NULL), and only the call with that
 * ud; the others go on, and the connection of the one cut is not reused.
 * A cancelled call's callback may submit. */
static void cancelled_resubmits(void *ud, const ddbk_response *resp, const ddbk_error *err)
{
    record(ud, resp, err);
    submit_ok(g_client, "PutItem", "{}", &g_out[5]);
}

static void test_cancel(void **state)
{
    /* A's first attempt: 500; B and C hang; D and E: 200. */
    static const canned script[] = {
        { 500, ISE_BODY }, { 0, NULL }, { 0, NULL }, { 200, "{\"D\":1}" }, { 200, "{}" },
    };
    char notes[64];
    ddbk_stats st;
    ddbk_error err;

    (void)state;
    ddbk__test_random = draw_top; /* A's backoff, ~20 s, outlives the test */
    int port = serve(script, 5);
    g_client = client_for(port, 3, 100000);
    g_loop = new_loop();
    submit_ok(g_client, "GetItem", "{}", &g_out[0]); /* A */
    do {
        assert_int_equal(ddbk_loop_step(g_loop, 100, &err), 1);
        ddbk_stats_get(g_client, &st);
    } while (st.requests == 0);
    /* B and C on the wire, A's kept-alive connection idle: the one of B and
     * C that took it is cut by its cancel, so D needs a fresh one only if
     * B took it. */
    submit_ok(g_client, "GetItem", "{}", &g_out[1]);
    assert_int_equal(ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, cancelled_resubmits,
                                      &g_out[2], &err), 0);
    int seen = 0;
    do {
        assert_int_equal(ddbk_loop_step(g_loop, 100, &err), 3);
        seen += new_notes('G');
    } while (seen < 3); /* A's, B's and C's requests */

    assert_int_equal(ddbk_loop_cancel(g_loop, &g_out[1]), 1);
    assert_int_equal(g_out[1].runs, 1);
    assert_false(g_out[1].ok);
    assert_false(g_out[1].had_resp);
    assert_string_equal(g_out[1].err.code, "Cancelled");
    assert_int_equal(g_out[1].err.ambiguous, 1); /* its request was sent */
    assert_int_equal(ddbk_loop_pending(g_loop), 2);
    assert_int_equal(ddbk_loop_cancel(g_loop, &g_out[1]), 0); /* already over */
    assert_int_equal(ddbk_loop_cancel(g_loop, &g_out[9]), 0); /* never submitted */
    assert_int_equal(g_out[0].runs + g_out[2].runs, 0);

    submit_ok(g_client, "GetItem", "{}", &g_out[3]); /* D */
    while (g_out[3].runs == 0)
        assert_true(ddbk_loop_step(g_loop, 100, &err) >= 2);
    assert_true(g_out[3].ok);
    assert_string_equal(g_out[3].body, "{\"D\":1}");

    /* A, in its backoff: out of the timer heap, so nothing is due. */
    assert_int_equal(ddbk_loop_cancel(g_loop, &g_out[0]), 1);
    assert_string_equal(g_out[0].err.code, "Cancelled");
    /* its one request was answered, with a 500: it may have been applied */
    assert_int_equal(g_out[0].err.ambiguous, 1);
    assert_int_equal(g_out[0].attempts, 0); /* no response kept */
    /* C: its callback submits E. */
    assert_int_equal(ddbk_loop_cancel(g_loop, &g_out[2]), 1);
    assert_string_equal(g_out[2].err.code, "Cancelled");
    assert_int_equal(ddbk_loop_pending(g_loop), 1);
    run();
    assert_true(g_out[5].ok);
    for (int i = 0; i < 6; i++)
        assert_int_equal(g_out[i].runs, i == 4 ? 0 : 1);

    drain(notes, sizeof notes);
    assert_int_equal(count(notes, 'G'), 1); /* D (A, B and C were read before) */
    assert_int_equal(count(notes, 'P'), 1); /* E */
    ddbk_stats_get(g_client, &st);
    const ddbk_op_stats *g = find_op(&st, "GetItem");
    assert_int_equal(g->calls, 4);
    assert_int_equal(g->errors, 3);
    assert_int_equal(st.requests, 5); /* A's 500, B and C (sent, then cut), D, E */
    assert_int_equal(ddbk_loop_cancel(NULL, &g_out[0]), 0);
}

/* A callback cancels a call that finished in the same step, its callback
 * still to come: that one is called back once, with "Cancelled", inside the
 * cancel, so its ud may go at once. Both answers are made to land in one
 * step: the responder sends them together, and the loop's sockets are
 * polled (without stepping) until both are readable. */
static int g_cancel_rc = -1;

static void cancel_other(void *ud, const ddbk_response *resp, const ddbk_error *err)
{
    record(ud, resp, err);
    outcome *other = (outcome *)ud == &g_out[0] ? &g_out[1] : &g_out[0];
    g_cancel_rc = ddbk_loop_cancel(g_loop, other);
}

static void test_cancel_finished_in_same_step(void **state)
{
    static const canned script[] = { { -200, "{}" }, { 200, "{}" } };
    struct pollfd fds[8];
    ddbk_error err;
    ddbk_stats st;
    long t;

    (void)state;
    int port = serve(script, 2); /* the first answer waits for the second */
    g_client = client_for(port, 1, 1);
    g_loop = new_loop();
    for (int i = 0; i < 2; i++)
        assert_int_equal(ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, cancel_other,
                                          &g_out[i], &err), 0);
    /* Steps, polling the loop's sockets in between as a host would, until
     * both requests are written: each socket then waits only to read. No
     * answer can come before: the responder holds the first until the
     * second is in. */
    double start = ddbk__mono_us();
    int n, written;
    do {
        assert_int_equal(ddbk_loop_step(g_loop, 0, &err), 2);
        n = ddbk_loop_fds(g_loop, fds, 8, &t);
        written = 0;
        for (int i = 0; i < n; i++)
            written += fds[i].events == POLLIN;
        if (written < 2)
            assert_true(poll(fds, (nfds_t)n, t < 0 || t > 100 ? 100 : (int)t) >= 0);
        if (ddbk__mono_us() - start > 15e6)
            fail_msg("the requests were not written in 15 s");
    } while (written < 2);
    int readable;
    do {
        n = ddbk_loop_fds(g_loop, fds, 8, &t);
        assert_int_equal(n, 2);
        assert_true(poll(fds, (nfds_t)n, 100) >= 0);
        readable = 0;
        for (int i = 0; i < n; i++)
            readable += (fds[i].revents & POLLIN) != 0;
        if (ddbk__mono_us() - start > 15e6)
            fail_msg("the answers did not arrive in 15 s");
    } while (readable < 2);
    assert_int_equal(ddbk_loop_step(g_loop, 0, &err), 0);

    /* The first callback cancelled the second, which had finished. */
    assert_int_equal(g_cancel_rc + 0, 1);
    int first = g_out[0].ok ? 0 : 1;
    assert_true(g_out[first].ok);
    assert_string_equal(g_out[1 - first].err.code, "Cancelled");
    assert_false(g_out[1 - first].had_resp);
    assert_int_equal(g_out[0].runs, 1);
    assert_int_equal(g_out[1].runs, 1);
    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.errors, 0); /* the second's stats keep its real end */
}

/* Callbacks of a cancel may free the loop (freed when the cancel ends: the
 * next callback's submit fails, nothing touches freed memory) but not step
 * it. */
static int g_submit_rc = 1;

static void free_in_cancel(void *ud, const ddbk_response *resp, const ddbk_error *err)
{
    ddbk_error e;
    record(ud, resp, err);
    if (ud == &g_out[0]) {
        g_step_rc = ddbk_loop_step(g_loop, 0, &e);
        ddbk_loop_free(g_loop);
    } else {
        g_submit_rc = ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, record,
                                       &g_out[2], &e);
    }
}

static void test_free_from_cancel_callback(void **state)
{
    ddbk_error err;

    (void)state;
    int port = serve(HANG, 1);
    g_client = client_for(port, 1, 1);
    g_loop = new_loop();
    /* Two calls with one ud each way round: 0 then 1 in the list. */
    assert_int_equal(ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, free_in_cancel,
                                      &g_out[1], &err), 0);
    assert_int_equal(ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, free_in_cancel,
                                      &g_out[0], &err), 0);
    assert_int_equal(ddbk_loop_cancel(g_loop, &g_out[0]), 1);
    /* freed when that cancel ended; the other call went with it */
    g_loop = NULL;
    assert_int_equal(g_step_rc, -1);
    assert_int_equal(g_out[0].runs, 1);
    assert_int_equal(g_out[1].runs, 1);
    assert_string_equal(g_out[1].err.code, "Cancelled");
    assert_int_equal(g_submit_rc, -1);
    assert_int_equal(g_out[2].runs, 0);
}

/* Cancelling calls in the middle of the timer heap keeps it a heap. With
 * every slot on the wire taken by a hanging call, 12 more wait in the heap;
 * every third of those is cancelled, then every hanging one (their sockets
 * leave the set the host watches), and the 8 left start in their turn and
 * succeed. */
static void test_cancel_queued(void **state)
{
    enum { WIRE = 48, QUEUED = 12 }; /* WIRE: loop.c's ACTIVE_MAX */
    static canned script[WIRE + 1];
    struct pollfd fds[WIRE + 8];
    ddbk_stats st;
    ddbk_error err;
    long t;

    (void)state;
    for (int i = 0; i < WIRE; i++)
        script[i] = HANG[0];
    script[WIRE] = (canned){ 200, "{}" };
    int port = serve(script, WIRE + 1);
    g_client = client_for(port, 1, 1);
    g_loop = new_loop();
    for (int i = 0; i < WIRE; i++)
        submit_ok(g_client, "GetItem", "{}", &g_out[i]);
    int seen = 0;
    do {
        assert_int_equal(ddbk_loop_step(g_loop, 100, &err), WIRE);
        seen += new_notes('G');
    } while (seen < WIRE);
    for (int i = WIRE; i < WIRE + QUEUED; i++)
        submit_ok(g_client, "GetItem", "{}", &g_out[i]);
    assert_int_equal(ddbk_loop_step(g_loop, 0, &err), WIRE + QUEUED);
    assert_int_equal(new_notes('G'), 0); /* the queued wait for a slot */

    for (int i = WIRE; i < WIRE + QUEUED; i += 3)
        assert_int_equal(ddbk_loop_cancel(g_loop, &g_out[i]), 1);
    for (int i = 0; i < WIRE; i++)
        assert_int_equal(ddbk_loop_cancel(g_loop, &g_out[i]), 1);
    assert_int_equal(ddbk_loop_pending(g_loop), QUEUED - QUEUED / 3);
    assert_int_equal(ddbk_loop_fds(g_loop, fds, WIRE + 8, &t), 0);
    assert_int_equal(t, 0); /* the queued are due */
    run();
    for (int i = 0; i < WIRE + QUEUED; i++) {
        assert_int_equal(g_out[i].runs, 1);
        if (i < WIRE || (i - WIRE) % 3 == 0) {
            assert_string_equal(g_out[i].err.code, "Cancelled");
            /* sent and cut, or never sent */
            assert_int_equal(g_out[i].err.ambiguous, i < WIRE);
        } else {
            assert_true(g_out[i].ok);
        }
    }
    ddbk_stats_get(g_client, &st);
    /* Every request sent: the cut ones too, the queued cancelled not. */
    assert_int_equal(st.requests, WIRE + QUEUED - QUEUED / 3);
    assert_int_equal(new_notes('G'), QUEUED - QUEUED / 3);
}

/* Bad arguments: nothing submitted, no callback; a bad op is counted as
 * ddbk_call counts it. Steps with nothing in flight return at once or
 * after their timeout. */
static void test_bad_arguments(void **state)
{
    ddbk_error err;
    ddbk_stats st;

    (void)state;
    g_client = client_for(9, 1, 1);
    g_loop = new_loop();
    assert_int_equal(ddbk_loop_submit(g_loop, g_client, "Get Item", "{}", 2, record,
                                      &g_out[0], &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(strstr(err.message, SECRET));
    assert_int_equal(ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, NULL, NULL, &err),
                     -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_int_equal(ddbk_loop_submit(g_loop, NULL, "GetItem", "{}", 2, record, &g_out[0], &err),
                     -1);
    assert_int_equal(ddbk_loop_submit(NULL, g_client, "GetItem", "{}", 2, record, &g_out[0], &err),
                     -1);
    assert_int_equal(ddbk_loop_pending(g_loop), 0);
    assert_int_equal(ddbk_loop_pending(NULL), 0);
    assert_int_equal(g_out[0].runs, 0);
    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.errors, 1);
    assert_non_null(find_op(&st, "Get Item"));

    assert_int_equal(ddbk_loop_step(NULL, 0, &err), -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_int_equal(ddbk_loop_step(g_loop, 0, &err), 0);
    assert_int_equal(ddbk_loop_step(g_loop, -1, &err), 0); /* would never wake */
    double t0 = ddbk__mono_us();
    assert_int_equal(ddbk_loop_step(g_loop, 30, &err), 0);
    assert_true(ddbk__mono_us() - t0 >= 25000); /* a host's timer can sleep here */
    ddbk_loop_free(NULL);
}

/* A refused connection: ConnectionError, retried, no response. */
static void test_connection_refused(void **state)
{
    ddbk_stats st;

    (void)state;
    g_client = client_for(9, 2, 1);
    g_loop = new_loop();
    submit_ok(g_client, "GetItem", NULL, &g_out[0]);
    run();
    assert_int_equal(g_out[0].runs, 1);
    assert_false(g_out[0].had_resp);
    assert_string_equal(g_out[0].err.code, "ConnectionError");
    assert_int_equal(g_out[0].err.retryable, 1);
    assert_null(strstr(g_out[0].err.message, SECRET));
    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.bytes_out, 4); /* NULL sent as "{}" twice */
    assert_int_equal(g_client->quota, 495);
}

/* A kept-alive connection closed unanswered after the server read the
 * request: curl would resend it on its own, unseen. In the loop too, every
 * send is an attempt under max_attempts and the quota, counted, and the
 * failure is marked ambiguous. */
static void test_lost_answer_is_an_attempt(void **state)
{
    static const canned script[] = { { 200, "{}" }, { DROP, NULL } };
    char notes[256];
    ddbk_stats st;

    (void)state;
    int port = serve(script, 2);
    g_client = client_for(port, 3, 1);
    g_loop = new_loop();
    submit_ok(g_client, "GetItem", "{}", &g_out[0]);
    run(); /* its connection stays in the pool */
    assert_true(g_out[0].ok);
    submit_ok(g_client, "UpdateItem", "{}", &g_out[1]);
    run();
    assert_int_equal(g_out[1].runs, 1);
    assert_false(g_out[1].had_resp);
    assert_string_equal(g_out[1].err.code, "ConnectionError");
    assert_int_equal(g_out[1].err.ambiguous, 1);
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, 'U'), 3);
    ddbk_stats_get(g_client, &st);
    assert_int_equal(find_op(&st, "UpdateItem")->requests, 3);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.retries, 2);
    assert_int_equal(g_client->quota, 500 - 2 * 5);

    /* max_attempts = 1: one send. */
    ddbk_client_free(g_client);
    g_client = client_for(port, 1, 1);
    submit_ok(g_client, "UpdateItem", "{}", &g_out[2]);
    run();
    assert_int_equal(g_out[2].err.ambiguous, 1);
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, 'U'), 1);
    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, 1);
}

/* A call that succeeds after a lost answer says so in its response. */
static void test_success_after_lost_answer(void **state)
{
    static const canned script[] = { { 200, "{}" }, { DROP, NULL }, { 200, "{}" } };

    (void)state;
    g_client = client_for(serve(script, 3), 3, 1);
    g_loop = new_loop();
    submit_ok(g_client, "GetItem", "{}", &g_out[0]);
    run();
    assert_true(g_out[0].ok);
    assert_int_equal(g_out[0].ambiguous, 0);
    submit_ok(g_client, "UpdateItem", "{}", &g_out[1]);
    run();
    assert_true(g_out[1].ok);
    assert_int_equal(g_out[1].attempts, 2);
    assert_int_equal(g_out[1].ambiguous, 1);
}

/* ------------------------------------------------------------ credentials */

static void creds_json(char *out, size_t cap, int n, int64_t exp_s)
{
    char iso[32];
    time_t t = (time_t)exp_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(out, cap,
             "{\"AccessKeyId\":\"AKIDROT%d\",\"SecretAccessKey\":\"SECRETROT%d\","
             "\"Token\":\"TOKENROT%d\",\"Expiration\":\"%s\"}", n, n, n, iso);
}

static double zero(void) { return 0.0; }

#define ROT 20

static void submit_batch(int from, int n)
{
    for (int i = from; i < from + n; i++)
        submit_ok(g_client, "GetItem", "{}", &g_out[i]);
}

static void all_ok(int from, int n)
{
    for (int i = from; i < from + n; i++) {
        assert_int_equal(g_out[i].runs, 1);
        if (!g_out[i].ok)
            fail_msg("call %d: %s: %s", i, g_out[i].err.code, g_out[i].err.message);
    }
}

/* The loop fetches container credentials on its own multi handle: calls
 * with none wait for one fetch (one for all of them), calls in the refresh
 * window go on with the old set while the fetch runs, calls past the
 * expiry guard wait for the new set, and when the fetch fails the waiting
 * calls fail with the cell's error, none of them sent. */
static void test_refresh_on_the_loop(void **state)
{
    static char c1[256], c2[256], c3[256];
    char notes[256], uri[96], ep[64];
    ddbk_config cfg;
    ddbk_credentials_info info;

    (void)state;
    ddbk__test_random = zero; /* refresh at expiry - 300 s */
    int64_t now_s = ddbk__wall_ms() / 1000;
    creds_json(c1, sizeof c1, 1, now_s + 3600);
    creds_json(c2, sizeof c2, 2, now_s + 7200);
    creds_json(c3, sizeof c3, 3, now_s + 10800);
    g_creds[0] = c1;
    g_creds[1] = c2;
    g_creds[2] = c3;
    g_ncreds = 3;
    int port = serve(ECHO, 1);
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/creds", port);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    ddbk_config_init(&cfg);
    cfg.region = "eu-west-1";
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
    cfg.endpoint = ep;
    cfg.max_attempts = 1;
    g_client = new_client(&cfg, NULL);
    g_loop = new_loop();

    /* None yet: every call waits for the one fetch. */
    submit_batch(0, ROT);
    assert_int_equal(ddbk_loop_pending(g_loop), ROT + 1); /* the refresh counts */
    run();
    all_ok(0, ROT);
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, '?'), 1);
    assert_int_equal(count(notes, '1'), ROT);

    /* In the refresh window: the calls go on at once with set 1 while the
     * one fetch runs; the next call signs with set 2. */
    ddbk__test_wall_offset_ms = 3400 * 1000;
    submit_batch(ROT, ROT);
    run();
    all_ok(ROT, ROT);
    submit_batch(2 * ROT, 1);
    run();
    all_ok(2 * ROT, 1);
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, '?'), 1);
    assert_int_equal(count(notes, '1'), ROT);
    assert_int_equal(count(notes, '2'), 1);

    /* Past set 2's expiry guard: nothing is signed with it; all wait. */
    ddbk__test_wall_offset_ms = (7200 - 30) * 1000;
    submit_batch(2 * ROT + 1, ROT);
    run();
    all_ok(2 * ROT + 1, ROT);
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, '?'), 1);
    assert_int_equal(count(notes, '2'), 0);
    assert_int_equal(count(notes, '3'), ROT);

    /* Past set 3's, the endpoint failing: the waiting calls fail with the
     * cell's error, and none reached DynamoDB. */
    ddbk__test_wall_offset_ms = (10800 - 30) * 1000;
    submit_batch(3 * ROT + 1, 5);
    run();
    for (int i = 3 * ROT + 1; i < 3 * ROT + 6; i++) {
        assert_int_equal(g_out[i].runs, 1);
        assert_int_equal(g_out[i].ok, 0);
        assert_string_equal(g_out[i].err.code, "CredentialsError");
        assert_null(strstr(g_out[i].err.message, "SECRETROT"));
        assert_null(strstr(g_out[i].err.message, "TOKENROT"));
    }
    drain(notes, sizeof notes);
    assert_true(count(notes, '?') >= 1);
    assert_int_equal(count(notes, 'G'), 0);
    ddbk_client_credentials(g_client, &info);
    assert_int_equal(info.fetches, 3);
    assert_int_equal(info.failures, 1);
    ddbk_stats st;
    ddbk_stats_get(g_client, &st);
    assert_int_equal(st.requests, 3 * ROT + 1);
    assert_int_equal(st.errors, 5);

    /* In the backoff: a submit fails at once with the same error. */
    ddbk_error err;
    assert_int_equal(ddbk_loop_submit(g_loop, g_client, "GetItem", "{}", 2, record,
                                      &g_out[3 * ROT + 7], &err), -1);
    assert_string_equal(err.code, "CredentialsError");
    assert_int_equal(ddbk_loop_pending(g_loop), 0);
}

/* Freed while a refresh runs: its claim is given up, so the next caller
 * (here ddbk_call on the same client) fetches instead of waiting forever. */
static void test_free_during_refresh(void **state)
{
    static char c1[256];
    char uri[96], ep[64];
    ddbk_config cfg;
    ddbk_error err;

    (void)state;
    creds_json(c1, sizeof c1, 1, ddbk__wall_ms() / 1000 + 3600);
    g_creds[0] = c1;
    g_ncreds = 1;
    /* The DynamoDB side hangs; the credentials side never gets the first
     * fetch (the loop is freed before a step sends it). */
    int port = serve(ECHO, 1);
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/creds", port);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    ddbk_config_init(&cfg);
    cfg.region = "eu-west-1";
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
    cfg.endpoint = ep;
    cfg.max_attempts = 1;
    g_client = new_client(&cfg, NULL);
    g_loop = new_loop();
    submit_ok(g_client, "GetItem", "{}", &g_out[0]);
    ddbk_loop_free(g_loop);
    g_loop = NULL;
    assert_int_equal(g_out[0].runs, 1);
    assert_string_equal(g_out[0].err.code, "Cancelled");

    ddbk_response resp;
    ddbk_response_init(&resp);
    int rc = ddbk_call(g_client, "GetItem", "{}", 2, &resp, &err);
    ddbk_response_free(&resp);
    if (rc != 0)
        fail_msg("ddbk_call: %s: %s", err.code, err.message);
}

/* Another driver (a thread, another loop) holds the cell's fetch: the call
 * waits, re-checking on its 50 ms timer, sends nothing meanwhile, and goes
 * on with what that fetch installed. */
static void test_wait_for_another_fetch(void **state)
{
    static char c1[256];
    char uri[96], ep[64], notes[64];
    ddbk_config cfg;
    ddbk_error err;
    ddbk__fetch *f = NULL;
    ddbk__action a;

    (void)state;
    int port = serve(ECHO, 1);
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d/creds", port);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    ddbk_config_init(&cfg);
    cfg.region = "eu-west-1";
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
    cfg.endpoint = ep;
    g_client = new_client(&cfg, NULL);
    g_loop = new_loop();

    assert_int_equal(ddbk__cell_begin(g_client->cell, ddbk__wall_ms(), &f, &err), 1);
    submit_ok(g_client, "GetItem", "{}", &g_out[0]);
    for (int i = 0; i < 3; i++) /* a few rounds of its timer: still waiting */
        assert_int_equal(ddbk_loop_step(g_loop, 60, &err), 1);
    assert_int_equal(g_out[0].runs, 0);
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, 'G'), 0);

    /* The other driver ends its fetch (the test feeds it). */
    creds_json(c1, sizeof c1, 5, ddbk__wall_ms() / 1000 + 3600);
    for (int i = 0; i < 20; i++) {
        ddbk__fetch_next(f, ddbk__wall_ms() / 1000, &a);
        if (a.kind == DDBK__ACT_DONE || a.kind == DDBK__ACT_FAILED)
            break;
        if (a.kind == DDBK__ACT_HTTP)
            ddbk__fetch_feed_http(f, 200, 0, NULL, c1, strlen(c1));
    }
    assert_int_equal(a.kind, DDBK__ACT_DONE);
    ddbk__cell_end(g_client->cell, f, ddbk__wall_ms());
    run();
    all_ok(0, 1);
    drain(notes, sizeof notes);
    assert_int_equal(count(notes, '?'), 0); /* the loop fetched nothing */
    assert_int_equal(count(notes, '5'), 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_many_in_flight),
        T(test_callback_submits),
        T(test_retry_on_timer),
        T(test_conditional_check_failed),
        T(test_timeout),
        T(test_fds_drive_a_host_poll),
        T(test_free_cancels_in_flight),
        T(test_free_from_callback),
        T(test_cancel),
        T(test_cancel_finished_in_same_step),
        T(test_free_from_cancel_callback),
        T(test_cancel_queued),
        T(test_bad_arguments),
        T(test_connection_refused),
        T(test_lost_answer_is_an_attempt),
        T(test_success_after_lost_answer),
        T(test_refresh_on_the_loop),
        T(test_free_during_refresh),
        T(test_wait_for_another_fetch),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
