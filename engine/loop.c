/*
 * The event loop: many calls in flight on one thread, over one curl multi
 * handle whose connection cache is the keep-alive pool of every call.
 *
 * A call runs the same attempts as ddbk_call (ddbk_prepare, the transport's
 * easy-handle setup, ddbk__attempt_settle for the parse, the retry decision,
 * the quota and the stats); only the waits differ: a transfer is a socket
 * curl reports, a backoff is a timer in a min-heap on the monotonic clock.
 *
 * curl is driven with curl_multi_socket_action only. The installed libcurl
 * may predate curl_multi_waitfds (8.8), so the sockets a host must watch are
 * tracked through CURLMOPT_SOCKETFUNCTION; and curl_multi_perform does not
 * report socket changes through that callback, so mixing it in would leave
 * the tracked set stale. One driver keeps ddbk_loop_step and ddbk_loop_fds
 * consistent, and each step costs O(sockets ready), not O(calls).
 *
 * Credentials: before each attempt a call looks at its client's cell
 * (cred_cell.c). FRESH goes on; REFRESH goes on and starts a refresh;
 * EXPIRED starts one and waits, parked in the timer heap, until the
 * refresh ends (it wakes them) or, when another thread or loop is the one
 * fetching, re-checks every CRED_POLL_MS. One refresh per cell per loop,
 * and one per cell in all (the cell's claim). A refresh runs the fetch
 * machine (cred_fetch.c) here: its HTTP actions are transfers of this
 * multi handle (set up by cred_http.c, as the blocking driver does), its
 * SLEEP actions timers; an EXEC action (credential_process) runs blocking,
 * the loop's thread waiting for it up to its timeout (30 s by default).
 * A refresh counts as pending work (ddbk_loop_step's answer) until it ends,
 * so a host stepping until nothing is pending lets it finish.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "creds.h"

#define SPARE_EASY_MAX 64 /* idle easy handles kept for reuse */
/* Attempts on the wire at once. Past this, a call waits in the timer heap,
 * due now, until a transfer ends: 200 connects at once overflow a server's
 * listen backlog (DynamoDB Local's is 50) and the dropped ones would spend
 * their connect timeout. Waiting here costs no attempt time, since an
 * attempt's timeout starts when it is handed to curl. */
#define ACTIVE_MAX 48
/* How often a call waiting for credentials another thread or loop fetches
 * looks again (it has no other way to learn that fetch ended). */
#define CRED_POLL_MS 50
/* Bounds a refresh's run of actions, in case a machine misbehaved. */
#define REFRESH_ACTIONS_MAX 256

/* What CURLOPT_PRIVATE points at: a call, or a credentials refresh; both
 * begin with their kind. */
enum { KIND_CALL = 1, KIND_REFRESH = 2 };

typedef struct call call;
struct call {
    int kind;                     /* KIND_CALL */
    call *prev, *next;            /* the loop's calls in flight */
    call *done_next;              /* finished, waiting for its callback */
    ddbk_client *c;
    ddbk_done_fn cb;
    void *ud;
    char op[64];                  /* checked by ddbk_prepare: < 64 letters */
    char *body;                   /* our copy of the request body */
    size_t body_len;
    int attempt;                  /* the latest attempt, 1 for the first */
    ddbk__retries retries;
    CURL *h;                      /* the attempt in flight, or NULL */
    double sent_us;               /* handed to curl (latency: until a step sees it end) */
    int timer;                    /* index in the timer heap, or -1 */
    double due_us;                /* when the next attempt is due */
    int responded;                /* the last attempt got a whole response */
    int succeeded;
    int cred_wait;                /* parked until its credentials come */
    ddbk__sink sink;
    ddbk_response resp;
    ddbk_error err;
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist hdr_nodes[DDBK_HDR_LINES];
    char *hdr;                    /* the header lines; signed, maybe a token: wiped */
    size_t hdr_cap;
};

/* A credentials refresh the loop drives (one per cell). */
typedef struct refresh refresh;
struct refresh {
    int kind;                     /* KIND_REFRESH */
    refresh *next;
    ddbk__cell *cell;             /* a reference of its own */
    ddbk__fetch *f;               /* claimed with ddbk__cell_begin */
    CURL *h;                      /* its handle, reused action after action */
    int in_multi;                 /* an HTTP action is in flight */
    double due_us;                /* a SLEEP action ends then; 0 when none */
    int actions;
    ddbk__cred_xfer x;
    char ca_file[1024];
    int verify_tls;
};

struct ddbk_loop {
    CURLM *multi;
    refresh *refreshes;
    int nrefresh;
    call *calls;                  /* in flight: a transfer or a backoff */
    int pending;
    call *done, **done_tail;      /* finished during this step */
    call **heap;                  /* backoff timers, a min-heap on due_us */
    int nheap, heap_cap;          /* heap_cap >= pending, kept by submit */
    struct pollfd *socks;         /* what curl asked us to watch */
    struct pollfd *ready;         /* scratch for one poll's results */
    int nsocks, socks_cap;
    int socks_oom;                /* a socket could not be tracked */
    CURL *spare[SPARE_EASY_MAX];
    int nspare;
    ddbk_request req;             /* scratch for ddbk_prepare */
    int in_step, closing, free_deferred;
    int in_cancel;                /* depth of cancel callbacks running */
    int active;                   /* attempts handed to curl, <= ACTIVE_MAX */
};

static void set_err(ddbk_error *err, const char *code, const char *what)
{
    if (err)
        ddbk_error_set(err, code, 0, "%s", what);
}

/* ------------------------------------------------------------- timers */

static void heap_place(ddbk_loop *l, int i, call *k)
{
    l->heap[i] = k;
    k->timer = i;
}

static void heap_up(ddbk_loop *l, int i)
{
    call *k = l->heap[i];
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (l->heap[parent]->due_us <= k->due_us)
            break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, k);
}

static void heap_down(ddbk_loop *l, int i)
{
    call *k = l->heap[i];
    for (;;) {
        int child = 2 * i + 1;
        if (child >= l->nheap)
            break;
        if (child + 1 < l->nheap && l->heap[child + 1]->due_us < l->heap[child]->due_us)
            child++;
        if (k->due_us <= l->heap[child]->due_us)
            break;
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, k);
}

/* Never fails: submit keeps room for every call in flight. */
static void timer_add(ddbk_loop *l, call *k)
{
    l->heap[l->nheap] = k;
    heap_up(l, l->nheap++);
}

static call *timer_pop(ddbk_loop *l)
{
    call *k = l->heap[0];
    k->timer = -1;
    if (--l->nheap > 0) {
        l->heap[0] = l->heap[l->nheap];
        heap_down(l, 0);
    }
    return k;
}

/* Takes k out of the heap wherever it sits. */
static void timer_remove(ddbk_loop *l, call *k)
{
    int i = k->timer;
    k->timer = -1;
    if (--l->nheap == i)
        return;
    call *moved = l->heap[l->nheap];
    heap_place(l, i, moved);
    heap_up(l, i);
    heap_down(l, moved->timer);
}

/* Milliseconds until curl or a backoff needs the loop (rounded up, so a
 * wait never ends just before its deadline), or -1 when nothing does. */
static long next_deadline_ms(ddbk_loop *l)
{
    long t = -1;
    if (curl_multi_timeout(l->multi, &t) != CURLM_OK)
        t = 0;
    /* With every slot taken, a due timer waits for a transfer to end: the
     * sockets wake us then, and waking for the timer would only spin. */
    if (l->nheap > 0 && l->active < ACTIVE_MAX) {
        double d = (l->heap[0]->due_us - ddbk__mono_us()) / 1000.0;
        long ms = d <= 0 ? 0 : d >= (double)INT_MAX ? INT_MAX : (long)d + 1;
        if (t < 0 || ms < t)
            t = ms;
    }
    for (refresh *r = l->refreshes; r; r = r->next) {
        if (r->due_us <= 0)
            continue;
        double d = (r->due_us - ddbk__mono_us()) / 1000.0;
        long ms = d <= 0 ? 0 : d >= (double)INT_MAX ? INT_MAX : (long)d + 1;
        if (t < 0 || ms < t)
            t = ms;
    }
    return t;
}

/* ------------------------------------------------------------ sockets */

static int sock_find(const ddbk_loop *l, curl_socket_t s)
{
    for (int i = 0; i < l->nsocks; i++)
        if (l->socks[i].fd == s)
            return i;
    return -1;
}

static int socks_grow(ddbk_loop *l)
{
    int cap = l->socks_cap ? l->socks_cap * 2 : 16;
    struct pollfd *socks = realloc(l->socks, (size_t)cap * sizeof *socks);
    if (!socks)
        return -1;
    l->socks = socks;
    struct pollfd *ready = realloc(l->ready, (size_t)cap * sizeof *ready);
    if (!ready)
        return -1;
    l->ready = ready;
    l->socks_cap = cap;
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: curl says which of its sockets to watch for what.
 * Linear search: a loop holds about one socket per call in flight. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    ddbk_loop *l = userp;
    int i = sock_find(l, s);

    (void)easy;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        if (i >= 0)
            l->socks[i] = l->socks[--l->nsocks];
        return 0;
    }
    if (i < 0) {
        if (l->nsocks == l->socks_cap && socks_grow(l) != 0) {
            l->socks_oom = 1; /* the next step reports it */
            return 0;
        }
        i = l->nsocks++;
        l->socks[i].fd = s;
    }
    l->socks[i].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) |
                                 ((what & CURL_POLL_OUT) ? POLLOUT : 0));
    l->socks[i].revents = 0;
    return 0;
}

/* -------------------------------------------------------- easy handles */

static CURL *easy_get(ddbk_loop *l)
{
    return l->nspare > 0 ? l->spare[--l->nspare] : curl_easy_init();
}

/* Back to the spares, pointing at nothing of the call that used it. */
static void easy_put(ddbk_loop *l, CURL *h)
{
    if (l->nspare == SPARE_EASY_MAX) {
        curl_easy_cleanup(h);
        return;
    }
    curl_easy_setopt(h, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, NULL);
    l->spare[l->nspare++] = h;
}

/* ------------------------------------------------------------- calls */

static void call_free(call *k)
{
    if (k->hdr)
        OPENSSL_cleanse(k->hdr, k->hdr_cap);
    free(k->hdr);
    free(k->body);
    ddbk_response_free(&k->resp);
    free(k);
}

/* Out of the set in flight. */
static void call_unlink(ddbk_loop *l, call *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        l->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    l->pending--;
}

/* The call is over: out of the set in flight, onto this step's list of
 * callbacks to run. */
static void call_done(ddbk_loop *l, call *k)
{
    call_unlink(l, k);
    k->done_next = NULL;
    *l->done_tail = k;
    l->done_tail = &k->done_next;
}

/* ------------------------------------------------------ credentials */

static refresh *refresh_find(const ddbk_loop *l, const ddbk__cell *cell)
{
    for (refresh *r = l->refreshes; r; r = r->next)
        if (r->cell == cell)
            return r;
    return NULL;
}

/* The calls parked for cell's credentials are due now: the refresh ended,
 * and each looks at the cell again (to go on, or fail with its error). */
static void refresh_wake(ddbk_loop *l, const ddbk__cell *cell)
{
    double now = ddbk__mono_us();
    int woke = 0;
    for (int i = 0; i < l->nheap; i++) {
        call *k = l->heap[i];
        if (k->cred_wait && k->c->cell == cell && k->due_us > now) {
            k->due_us = now;
            woke = 1;
        }
    }
    if (woke) /* due times only fell: rebuilt whole, O(calls) once a refresh */
        for (int i = l->nheap / 2 - 1; i >= 0; i--)
            heap_down(l, i);
}

/* Out of the loop's list; its handle out of the multi; freed. With the
 * machine still running (the loop freed mid-fetch) the claim is given up,
 * else the cell has the result already. */
static void refresh_free(ddbk_loop *l, refresh *r)
{
    for (refresh **pr = &l->refreshes; *pr; pr = &(*pr)->next)
        if (*pr == r) {
            *pr = r->next;
            l->nrefresh--;
            break;
        }
    if (r->in_multi)
        curl_multi_remove_handle(l->multi, r->h);
    if (r->h)
        curl_easy_cleanup(r->h);
    if (r->f)
        ddbk__cell_abandon(r->cell, r->f);
    ddbk__cred_xfer_free(&r->x);
    ddbk__cell_unref(r->cell);
    free(r);
}

/* Runs r's machine until it waits (a transfer, a sleep) or ends. An end
 * installs the result in the cell, wakes the calls parked on it and frees r. */
static void refresh_advance(ddbk_loop *l, refresh *r)
{
    ddbk__action a;
    ddbk_error e;

    for (;;) {
        if (++r->actions > REFRESH_ACTIONS_MAX) {
            /* A machine that never ends: given up, counted as no attempt. */
            ddbk__cell_abandon(r->cell, r->f);
            r->f = NULL;
            break;
        }
        ddbk__fetch_next(r->f, ddbk__wall_ms() / 1000, &a);
        if (a.kind == DDBK__ACT_DONE || a.kind == DDBK__ACT_FAILED) {
            ddbk__cell_end(r->cell, r->f, ddbk__wall_ms());
            r->f = NULL;
            break;
        }
        if (a.kind == DDBK__ACT_SLEEP) {
            r->due_us = ddbk__mono_us() + (double)(a.sleep_ms > 0 ? a.sleep_ms : 0) * 1000.0;
            return;
        }
        if (a.kind == DDBK__ACT_EXEC) {
            ddbk__cred_exec(r->f, &a); /* blocks: see the head comment */
            continue;
        }
        if (!r->h && !(r->h = curl_easy_init())) {
            ddbk__fetch_feed_http(r->f, 0, 0, "could not create a libcurl handle", "", 0);
            continue;
        }
        if (ddbk__cred_xfer_setup(r->h, &a, r->ca_file, r->verify_tls, &r->x, &e) != 0) {
            ddbk__fetch_feed_http(r->f, 0, 0, e.message, "", 0);
            continue;
        }
        curl_easy_setopt(r->h, CURLOPT_PRIVATE, (void *)r);
        if (curl_multi_add_handle(l->multi, r->h) != CURLM_OK) {
            ddbk__fetch_feed_http(r->f, 0, 0, "could not add a transfer to the loop", "", 0);
            continue;
        }
        r->in_multi = 1;
        return;
    }
    const ddbk__cell *cell = r->cell;
    refresh_free(l, r); /* the cell lives on: the calls' clients hold it */
    refresh_wake(l, cell);
}

static void refresh_transfer_done(ddbk_loop *l, refresh *r, CURL *h, CURLcode rc)
{
    curl_multi_remove_handle(l->multi, h);
    r->in_multi = 0;
    ddbk__cred_xfer_feed(r->f, h, rc, &r->x, r->ca_file);
    refresh_advance(l, r);
}

/* Claimed fetch f of c's cell becomes a refresh of this loop. On OOM the
 * claim is given up (the calls then fail with the cell's error, or wait for
 * another's fetch). */
static void refresh_start(ddbk_loop *l, const ddbk_client *c, ddbk__fetch *f)
{
    refresh *r = calloc(1, sizeof *r);
    if (!r) {
        ddbk__cell_abandon(c->cell, f);
        return;
    }
    r->kind = KIND_REFRESH;
    r->cell = ddbk__cell_ref(c->cell);
    r->f = f;
    memcpy(r->ca_file, c->ca_file, sizeof r->ca_file);
    r->verify_tls = c->verify_tls;
    ddbk_buf_init(&r->x.resp, 0);
    r->next = l->refreshes;
    l->refreshes = r;
    l->nrefresh++;
    refresh_advance(l, r);
}

/* SLEEP actions that ran out. */
static void refresh_timers(ddbk_loop *l)
{
    double now = ddbk__mono_us();
    for (refresh *r = l->refreshes, *next; r; r = next) {
        next = r->next;
        if (r->due_us > 0 && r->due_us <= now) {
            r->due_us = 0;
            refresh_advance(l, r); /* may free r, never another */
        }
    }
}

/* Before an attempt of k: 0 when it may go on (its credentials are usable,
 * or nothing is coming and ddbk_prepare will refuse with the cell's error),
 * 1 when it was parked in the timer heap to wait for a refresh. Starts the
 * refresh when one is due and nobody runs it. */
static int creds_gate(ddbk_loop *l, call *k)
{
    ddbk__cell *cell = k->c->cell;
    int64_t now = ddbk__wall_ms();
    enum ddbk__cell_state st = ddbk__cell_state(cell, now);
    ddbk__fetch *f;
    ddbk_error e;

    if (st == DDBK__CELL_FRESH)
        return 0;
    if (!refresh_find(l, cell) && ddbk__cell_begin(cell, now, &f, &e) == 1)
        refresh_start(l, k->c, f);
    if (st == DDBK__CELL_REFRESH)
        return 0;
    if (!refresh_find(l, cell) && !ddbk__cell_fetching(cell))
        return 0; /* it ended already, or there is nothing to wait for */
    k->cred_wait = 1;
    k->due_us = ddbk__mono_us() + CRED_POLL_MS * 1000.0;
    timer_add(l, k);
    return 1;
}

/* Starts the call's next attempt, signed afresh with op (the caller's
 * string on the first attempt: it is copied only once ddbk_prepare has
 * checked it). Returns 0; -1 with err when ddbk_prepare refused, -2 with err
 * when memory or curl failed; nothing is in flight then. */
static int start_attempt(ddbk_loop *l, call *k, const char *op, ddbk_error *err)
{
    ddbk_request *req = &l->req;

    if (ddbk_prepare(k->c, op, k->body, k->body_len, 0, req, err) != 0)
        return -1;
    if (op != k->op)
        ddbk__copy(k->op, sizeof k->op, op);
    size_t need = ddbk__link_headers(req, k->hdr, k->hdr_cap, k->hdr_nodes);
    if (need > k->hdr_cap) {
        char *hdr = malloc(need);
        if (!hdr) {
            set_err(err, "OutOfMemory", "out of memory starting a call");
            return -2;
        }
        if (k->hdr)
            OPENSSL_cleanse(k->hdr, k->hdr_cap);
        free(k->hdr);
        k->hdr = hdr;
        k->hdr_cap = need;
        ddbk__link_headers(req, k->hdr, k->hdr_cap, k->hdr_nodes);
    }
    CURL *h = easy_get(l);
    if (!h) {
        set_err(err, "OutOfMemory", "could not create a libcurl handle");
        return -2;
    }
    ddbk__easy_config(h, k->c, k->errbuf);
    if (strcmp(req->url, k->c->url) != 0)
        curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_PRIVATE, (void *)k);
    ddbk__easy_start(h, req, &k->hdr_nodes[0], &k->sink, k->errbuf);
    k->sent_us = ddbk__mono_us();
    if (curl_multi_add_handle(l->multi, h) != CURLM_OK) {
        easy_put(l, h);
        set_err(err, "OutOfMemory", "could not add a transfer to the loop");
        return -2;
    }
    k->h = h;
    k->resp.attempts = ++k->attempt;
    l->active++;
    return 0;
}

/* A transfer curl finished: settle the attempt like ddbk_call does, then end
 * the call or set its backoff timer. */
static void transfer_done(ddbk_loop *l, CURL *h, CURLcode rc)
{
    char *priv = NULL;
    curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
    if (priv && *(int *)(void *)priv == KIND_REFRESH) {
        refresh_transfer_done(l, (refresh *)(void *)priv, h, rc);
        return;
    }
    call *k = (call *)(void *)priv;
    double t1 = ddbk__mono_us();

    curl_multi_remove_handle(l->multi, h);
    l->active--;
    if (!k) { /* not ours: cannot happen */
        easy_put(l, h);
        return;
    }
    k->responded = ddbk__easy_finish(k->c, h, k->op, k->body_len, t1 - k->sent_us, rc,
                                     &k->sink, k->errbuf, &k->err) == 0;
    easy_put(l, h);
    k->h = NULL;
    long delay = ddbk__attempt_settle(k->c, k->op, k->attempt, k->responded, &k->resp,
                                      &k->retries, &k->err);
    if (delay >= 0) {
        k->due_us = t1 + (double)delay * 1000.0;
        timer_add(l, k);
        return;
    }
    k->succeeded = delay == DDBK__CALL_SUCCEEDED;
    k->resp.ambiguous = k->succeeded && k->retries.ambiguous;
    call_done(l, k);
}

static void drain_messages(ddbk_loop *l)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(l->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE)
            transfer_done(l, m->easy_handle, m->data.result);
}

/* Backoffs that ran out start their next attempt; one that cannot start
 * (ddbk_prepare refused, out of memory) ends its call as ddbk_call would. */
static void fire_timers(ddbk_loop *l)
{
    double now = ddbk__mono_us();
    refresh_timers(l);
    while (l->nheap > 0 && l->heap[0]->due_us <= now && l->active < ACTIVE_MAX) {
        call *k = timer_pop(l);
        k->cred_wait = 0;
        if (creds_gate(l, k))
            continue; /* parked again, due later: the loop ends */
        if (start_attempt(l, k, k->op, &k->err) != 0) {
            k->err.ambiguous = k->retries.ambiguous; /* as ddbk_call says it */
            ddbk_stats_record_call(k->c, k->op, k->retries.retries, &k->err);
            k->responded = 0;
            call_done(l, k);
        }
    }
}

/* ---------------------------------------------------------------- API */

ddbk_loop *ddbk_loop_new(ddbk_error *err)
{
    if (err)
        ddbk_error_clear(err);
    ddbk_error scratch;
    if (ddbk__curl_init(err ? err : &scratch) != 0)
        return NULL;
    ddbk_loop *l = calloc(1, sizeof *l);
    if (!l) {
        set_err(err, "OutOfMemory", "out of memory creating the loop");
        return NULL;
    }
    l->done_tail = &l->done;
    l->multi = curl_multi_init();
    if (!l->multi) {
        free(l);
        set_err(err, "OutOfMemory", "could not create a libcurl multi handle");
        return NULL;
    }
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, (void *)l);
    return l;
}

int ddbk_loop_submit(ddbk_loop *l, ddbk_client *c, const char *op, const char *body,
                     size_t len, ddbk_done_fn cb, void *ud, ddbk_error *err)
{
    if (err)
        ddbk_error_clear(err);
    if (!l || !c || !cb) {
        set_err(err, "InvalidArgument", "ddbk_loop_submit needs a loop, a client and a callback");
        return -1;
    }
    if (l->closing || l->free_deferred) {
        set_err(err, "InvalidArgument", "ddbk_loop_submit: the loop is being freed");
        return -1;
    }
    if (!body) {
        body = "{}";
        len = 2;
    }
    if (len == SIZE_MAX) {
        set_err(err, "InvalidArgument", "ddbk_loop_submit: body length out of range");
        return -1;
    }
    /* Room in the heap for every call in flight, so that setting a backoff
     * timer later can never fail. */
    if (l->heap_cap <= l->pending) {
        int cap = l->heap_cap ? l->heap_cap * 2 : 16;
        call **heap = realloc(l->heap, (size_t)cap * sizeof *heap);
        if (!heap) {
            set_err(err, "OutOfMemory", "out of memory submitting a call");
            return -1;
        }
        l->heap = heap;
        l->heap_cap = cap;
    }
    call *k = calloc(1, sizeof *k);
    if (!k || !(k->body = malloc(len + 1))) {
        free(k);
        set_err(err, "OutOfMemory", "out of memory submitting a call");
        return -1;
    }
    memcpy(k->body, body, len);
    k->body[len] = '\0';
    k->body_len = len;
    k->kind = KIND_CALL;
    k->c = c;
    k->cb = cb;
    k->ud = ud;
    k->timer = -1;
    ddbk_response_init(&k->resp);
    k->resp.body.max = c->max_response_bytes;
    k->sink.resp = &k->resp;

    ddbk_error scratch;
    ddbk_error *e = err ? err : &scratch;
    int started;
    if (l->active >= ACTIVE_MAX && ddbk__valid_op(op)) {
        /* Queued, due now: signed when it starts. (An invalid op goes the
         * other way, for ddbk_prepare to refuse now with its message.) */
        ddbk__copy(k->op, sizeof k->op, op);
        k->due_us = ddbk__mono_us();
        timer_add(l, k);
        started = 0;
    } else if (ddbk__valid_op(op) && (ddbk__copy(k->op, sizeof k->op, op), creds_gate(l, k))) {
        started = 0; /* parked until its credentials come */
    } else {
        started = start_attempt(l, k, op, e);
    }
    if (started != 0) {
        /* Counted as ddbk_call counts a call ddbk_prepare refused. */
        if (started == -1)
            ddbk_stats_record_call(c, op, 0, e);
        call_free(k);
        return -1;
    }
    k->next = l->calls;
    if (l->calls)
        l->calls->prev = k;
    l->calls = k;
    l->pending++;
    return 0;
}

/* Runs the callbacks of the calls that finished. A callback may submit
 * (that only adds to the set in flight, never to this list) or cancel. */
static void run_callbacks(ddbk_loop *l)
{
    /* One at a time off the list, so that a callback's cancel can still
     * reach the calls whose callbacks come after it. */
    call *k;
    while ((k = l->done) != NULL) {
        l->done = k->done_next;
        if (!l->done)
            l->done_tail = &l->done;
        k->cb(k->ud, k->succeeded || k->responded ? &k->resp : NULL,
              k->succeeded ? NULL : &k->err);
        call_free(k);
    }
}

/* Tells curl what happened (sockets ready, its timer run out), collects the
 * transfers that finished and starts the attempts whose backoff ran out.
 * Returns 0, or -1 with err; whatever finished is on l->done either way. */
static int work(ddbk_loop *l, long timeout_ms, ddbk_error *err)
{
    long wait = timeout_ms;
    long next = next_deadline_ms(l);
    int rc = 0;

    if (next >= 0 && (wait < 0 || next < wait))
        wait = next;
    if (wait < 0 && l->pending == 0 && l->nrefresh == 0)
        wait = 0; /* nothing could ever wake us */
    int n = poll(l->socks, (nfds_t)l->nsocks, wait > INT_MAX ? INT_MAX : (int)wait);
    if (n < 0 && errno != EINTR) {
        set_err(err, errno == ENOMEM ? "OutOfMemory" : "UnknownError", "poll failed");
        rc = -1;
    }

    /* Copied out first: curl's socket callback reorders l->socks. */
    int nready = 0;
    for (int i = 0; n > 0 && i < l->nsocks; i++)
        if (l->socks[i].revents)
            l->ready[nready++] = l->socks[i];
    for (int i = 0; i < nready; i++) {
        short re = l->ready[i].revents;
        int mask = ((re & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0) |
                   ((re & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                   ((re & (POLLERR | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
        int running;
        CURLMcode mc = curl_multi_socket_action(l->multi, l->ready[i].fd, mask, &running);
        if (mc != CURLM_OK && mc != CURLM_BAD_SOCKET && rc == 0) {
            set_err(err, "UnknownError", curl_multi_strerror(mc));
            rc = -1;
        }
    }

    /* Twice: backoffs that ran out add transfers, which curl starts at once
     * rather than a step later. */
    for (int round = 0; round < 2; round++) {
        long t;
        int running;
        if (curl_multi_timeout(l->multi, &t) == CURLM_OK && t == 0) {
            CURLMcode mc = curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            if (mc != CURLM_OK && rc == 0) {
                set_err(err, "UnknownError", curl_multi_strerror(mc));
                rc = -1;
            }
        }
        drain_messages(l);
        if (round == 0)
            fire_timers(l);
    }
    if (l->socks_oom && rc == 0) {
        /* Reported once: the socket that could not be tracked ends by its
         * transfer's timeout, and the loop goes on with the others. */
        set_err(err, "OutOfMemory", "out of memory tracking the loop's sockets");
        l->socks_oom = 0;
        rc = -1;
    }
    return rc;
}

static void loop_destroy(ddbk_loop *l);

int ddbk_loop_step(ddbk_loop *l, long timeout_ms, ddbk_error *err)
{
    if (err)
        ddbk_error_clear(err);
    if (!l) {
        set_err(err, "InvalidArgument", "ddbk_loop_step needs a loop");
        return -1;
    }
    if (l->in_step || l->in_cancel || l->closing) {
        set_err(err, "InvalidArgument", "ddbk_loop_step called from one of the loop's callbacks");
        return -1;
    }
    l->in_step = 1;
    int rc = work(l, timeout_ms, err);
    run_callbacks(l);
    l->in_step = 0;
    if (l->free_deferred) {
        loop_destroy(l);
        return rc < 0 ? -1 : 0;
    }
    return rc < 0 ? -1 : l->pending + l->nrefresh;
}

int ddbk_loop_fds(ddbk_loop *l, struct pollfd *fds, int max, long *timeout_ms)
{
    if (!l || max < 0 || (max > 0 && !fds))
        return -1;
    for (int i = 0; i < l->nsocks && i < max; i++) {
        fds[i].fd = l->socks[i].fd;
        fds[i].events = l->socks[i].events;
        fds[i].revents = 0;
    }
    if (timeout_ms)
        *timeout_ms = l->pending + l->nrefresh > 0 ? next_deadline_ms(l) : -1;
    return l->nsocks;
}

int ddbk_loop_pending(const ddbk_loop *l)
{
    return l ? l->pending + l->nrefresh : 0;
}

/* Stops what k has going (a transfer, which closes its connection, or a
 * timer) and counts its end as ddbk_call counts a failure. The attempt cut
 * counts as a request when its request went out (the sink saw the send):
 * DynamoDB may be carrying it out, so the Cancelled error is ambiguous
 * then, as it is after an earlier attempt's lost answer. */
static void call_stop(ddbk_loop *l, call *k, const char *why)
{
    int sent = 0;
    if (k->h) {
        sent = k->sink.sends > 0;
        if (sent)
            ddbk_stats_record_attempt(k->c, k->op, k->body_len, k->resp.body.len,
                                      ddbk__mono_us() - k->sent_us);
        curl_multi_remove_handle(l->multi, k->h);
        curl_easy_cleanup(k->h); /* not a spare: it was cut mid-transfer */
        k->h = NULL;
        l->active--;
    }
    if (k->timer >= 0)
        timer_remove(l, k);
    ddbk_error_set(&k->err, "Cancelled", 0, "%s%s", why,
                   sent ? " (its request was sent: it may have been applied)" : "");
    k->err.ambiguous = sent || k->retries.ambiguous;
    ddbk_stats_record_call(k->c, k->op, k->retries.retries, &k->err);
}

/* Runs the callbacks of a list of stopped calls (linked by next) and frees
 * them. Touches no loop: a callback may free it. */
static void call_back_cancelled(call *list)
{
    while (list) {
        call *next = list->next;
        list->cb(list->ud, NULL, &list->err);
        call_free(list);
        list = next;
    }
}

int ddbk_loop_cancel(ddbk_loop *l, void *ud)
{
    if (!l || l->closing)
        return 0;
    /* Every match is detached before any callback runs, as in loop_destroy. */
    call *list = NULL, **tail = &list;
    int n = 0;
    for (call *k = l->calls, *next; k; k = next) {
        next = k->next;
        if (k->ud != ud)
            continue;
        call_stop(l, k, "the call was cancelled");
        call_unlink(l, k);
        *tail = k;
        tail = &k->next;
        n++;
    }
    /* Calls that finished in the step now running, their callbacks still to
     * come: the caller may free ud once this returns, so they are called
     * back here too. Their stats keep how they really ended. */
    for (call **pk = &l->done; *pk;) {
        call *k = *pk;
        if (k->ud != ud) {
            pk = &k->done_next;
            continue;
        }
        *pk = k->done_next;
        if (l->done_tail == &k->done_next)
            l->done_tail = pk;
        /* What the caller is no longer told may include a write that
         * landed (a success) or may have (a lost answer). */
        int landed = k->succeeded || k->err.ambiguous;
        ddbk_error_set(&k->err, "Cancelled", 0, "the call was cancelled");
        k->err.ambiguous = landed;
        *tail = k;
        tail = &k->next;
        n++;
    }
    /* Until the callbacks are done, a free waits and a step is refused, as
     * from a step's callbacks. */
    l->in_cancel++;
    call_back_cancelled(list);
    l->in_cancel--;
    if (l->free_deferred && !l->in_step && !l->in_cancel)
        loop_destroy(l);
    return n;
}

/* Every call in flight is detached (its transfer stopped, its end counted in
 * the stats as ddbk_call counts a failure) before any callback runs: a
 * callback may free a client that another cancelled call used. */
static void loop_destroy(ddbk_loop *l)
{
    call *list = l->calls;

    l->closing = 1;
    for (call *k = list; k; k = k->next)
        call_stop(l, k, "the loop was freed with the call in flight");
    l->calls = NULL;
    l->pending = 0;
    call_back_cancelled(list);
    while (l->refreshes) /* their claims given up: another may fetch */
        refresh_free(l, l->refreshes);
    for (int i = 0; i < l->nspare; i++)
        curl_easy_cleanup(l->spare[i]);
    curl_multi_cleanup(l->multi);
    free(l->heap);
    free(l->socks);
    free(l->ready);
    /* The last request signed: its Authorization, maybe a session token. */
    OPENSSL_cleanse(&l->req, sizeof l->req);
    free(l);
}

void ddbk_loop_free(ddbk_loop *l)
{
    if (!l || l->closing)
        return;
    if (l->in_step || l->in_cancel) {
        l->free_deferred = 1; /* from a callback: once the step or cancel ends */
        return;
    }
    loop_destroy(l);
}
