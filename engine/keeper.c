/*
 * Lock keepers: a thread that renews one lease every period, so the lease
 * outlives work that cannot stop to renew it (a blocking host is busy in the
 * work itself).
 *
 * The thread renews on a clone of the caller's client, because a client (a
 * curl easy handle above all) must not be used by two threads at once. The
 * clone's settings are copied when the keeper starts; its connection and
 * digest context are made by the thread at its first renewal, since most
 * kept work ends before one falls due (and they are most of a keeper's
 * cost). Its requests count in the caller's stats: stop adds the clone's
 * counts to the caller's client, on the caller's thread (the caller's
 * client is not locked, so the thread cannot write it as it goes).
 *
 * It waits on a condition variable against the monotonic clock rather than
 * sleeping, so a stop is answered at once and a wall clock step neither
 * hurries nor stalls the renewals. A stop must also be answered during a
 * renewal: stop may run inside a garbage collector's step (a Lua __gc), and a
 * renewal is a retry chain (attempts, backoffs, a read-back). So the thread
 * drives the renewal itself: each attempt is one request with a timeout
 * capped for the keeper (attempt_timeout), and the thread checks for a stop
 * between attempts and waits out backoffs on the condition variable. A stop
 * lets the attempt on the wire finish and abandons the rest: the handle keeps
 * the lease it had, and the lock machine remembers the abandoned renewal's
 * record version as its own should the write have landed (engine/lock.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* The keeper's own attempts: cut at the period (a renewal that answers after
 * the next beat is due is late anyway), but at no less than this, so that a
 * short period does not make a slow network look like a failure; and never
 * longer than the client's own timeout_ms. */
#define KEEP_ATTEMPT_FLOOR_MS 1000
/* Attempts per request of a renewal: a renewal that failed is tried again at
 * the next beat, which is a retry too. */
#define KEEP_MAX_ATTEMPTS 3

/* The renewal's request was given up because of a stop. */
#define STOPPED 1

struct ddbk_lock_keeper {
    ddbk_client *parent;     /* the caller's: it gets the clone's stats at stop */
    ddbk_client *c;          /* the clone, the thread's own */
    ddbk_lock *l;
    long period_ms;
    pthread_t thread;
    /* Guards stop, renewals, failed and err. Not held while a request is
     * on the wire, so a stop never waits for the mutex behind one. */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* signalled by stop; clocked by CLOCK_MONOTONIC */
    int stop;
    long renewals;
    int failed;              /* the last renewal tried failed; err says how */
    ddbk_error err;
};

static void add_ms(struct timespec *t, long ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static int before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* The lease is the item's, not ours, once someone else holds it or it is
 * gone: renewing again cannot bring it back. */
static int final(const ddbk_error *e)
{
    return ddbk_error_is(e, DDBK_ERR_LOST) || ddbk_error_is(e, DDBK_ERR_NOT_OWNER);
}

/* Waits ms (0: not at all) or until a stop, whichever comes first; 1 when
 * stopped. Called without the mutex. */
static int nap(ddbk_lock_keeper *k, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    add_ms(&until, ms > 0 ? ms : 0);
    pthread_mutex_lock(&k->mu);
    while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &until) != ETIMEDOUT)
        ;
    int stopped = k->stop;
    pthread_mutex_unlock(&k->mu);
    return stopped;
}

/* ddbk_call on the clone, with the stop checked before each attempt and
 * the backoffs waited out by nap: the same requests, retries, errors and
 * stats, except that a stop between attempts ends the call with
 * "Cancelled" (recorded as a failed call). Returns 0, -1 (err filled, as
 * ddbk_call) or STOPPED. */
static int call(ddbk_lock_keeper *k, const char *op, const char *body, size_t len,
                ddbk_response *resp, ddbk_error *err)
{
    ddbk_client *c = k->c;
    ddbk_request req;
    ddbk__retries r = { 0, 0, 0 };

    ddbk_error_clear(err);
    resp->body.max = c->max_response_bytes;
    resp->attempts = 0;
    resp->ambiguous = 0;
    for (int attempt = 1;; attempt++) {
        if (nap(k, 0)) {
            if (attempt == 1)
                return STOPPED; /* nothing sent, nothing to count */
            ddbk_error_set(err, DDBK_ERR_CANCELLED, 0,
                           "lock keeper: stopped between the attempts of a renewal");
            err->ambiguous = r.ambiguous;
            ddbk_stats_record_call(c, op, r.retries, err);
            return STOPPED;
        }
        if (ddbk_prepare(c, op, body, len, 0, &req, err) != 0) {
            err->ambiguous = r.ambiguous;
            ddbk_stats_record_call(c, op, r.retries, err);
            return -1;
        }
        resp->attempts = attempt;
        int responded = ddbk__transport_send(c, op, &req, resp, err) == 0;
        long delay = ddbk__attempt_settle(c, op, attempt, responded, resp, &r, err);
        if (delay == DDBK__CALL_SUCCEEDED) {
            resp->ambiguous = r.ambiguous;
            return 0;
        }
        if (delay == DDBK__CALL_FAILED) {
            if (!responded)
                ddbk_buf_reset(&resp->body); /* what a cut transfer left is no error body */
            return -1;
        }
        /* A stop during the backoff is seen at the top of the loop, and
         * makes this a cancelled call (the retry was counted by settle). */
        (void)nap(k, delay);
    }
}

/* One renewal through the lock machine, driven by call. Returns 0, -1 with
 * e, or STOPPED with e ("Cancelled"): the operation was abandoned, so the
 * handle keeps its lease and remembers the renewal's record version. */
static int renew_once(ddbk_lock_keeper *k, ddbk_error *e)
{
    ddbk_response resp;
    ddbk_lock_next nx;
    ddbk_error ce;
    int rc = -1;

    if (ddbk__client_open_io(k->c, e) != 0)
        return -1; /* tried again at the next beat */
    ddbk_lock_op *op = ddbk_lock_op_renew(k->l, 0, e);
    if (!op)
        return -1;
    ddbk_response_init(&resp);
    int what = ddbk_lock_op_next(op, NULL, 0, NULL, &nx);
    while (what != DDBK_LOCK_DONE) {
        int r = STOPPED;
        if (what == DDBK_LOCK_SEND)
            r = call(k, nx.op, nx.body, nx.body_len, &resp, &ce);
        else if (!nap(k, nx.sleep_ms)) /* a renewal does not wait; an acquire would */
            r = 0;
        if (r == STOPPED) {
            ddbk_lock_op_free(op);
            ddbk_error_set(e, DDBK_ERR_CANCELLED, 0,
                           "lock keeper: stopped during a renewal; the lease is the one it "
                           "had before, unless the renewal's write landed");
            e->ambiguous = 1;
            rc = STOPPED;
            goto out;
        }
        if (what == DDBK_LOCK_SEND)
            what = ddbk_lock_op_next(op, resp.body.data, resp.body.len, r == 0 ? NULL : &ce, &nx);
        else
            what = ddbk_lock_op_next(op, NULL, 0, NULL, &nx);
    }
    rc = ddbk_lock_op_result(op, NULL, e) == 0 ? 0 : -1;
    ddbk_lock_op_free(op);
out:
    ddbk_response_free(&resp);
    return rc;
}

static void *run(void *arg)
{
    ddbk_lock_keeper *k = arg;
    struct timespec due, now;

    pthread_mutex_lock(&k->mu);
    clock_gettime(CLOCK_MONOTONIC, &due);
    add_ms(&due, k->period_ms);
    while (!k->stop) {
        int rc = pthread_cond_timedwait(&k->cv, &k->mu, &due);
        if (k->stop)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (rc != ETIMEDOUT && before(&now, &due))
            continue; /* a spurious wakeup */
        pthread_mutex_unlock(&k->mu);
        ddbk_error e;
        int renewed = renew_once(k, &e);
        pthread_mutex_lock(&k->mu);
        if (renewed == 0) {
            k->renewals++;
            k->failed = 0;
        } else {
            k->failed = 1;
            k->err = e;
            if (renewed == STOPPED || final(&e))
                break;
        }
        /* Next beat on the same grid; beats a slow renewal overran are
         * skipped rather than fired back to back at a struggling service. */
        clock_gettime(CLOCK_MONOTONIC, &now);
        do
            add_ms(&due, k->period_ms);
        while (!before(&now, &due));
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* The clone's limits for the keeper (see KEEP_ATTEMPT_FLOOR_MS): they bound
 * how long a stop can wait, to one attempt. */
static void limit_attempts(ddbk_client *c, long period_ms)
{
    long cut = period_ms > KEEP_ATTEMPT_FLOOR_MS ? period_ms : KEEP_ATTEMPT_FLOOR_MS;
    if (c->timeout_ms <= 0 || c->timeout_ms > cut)
        c->timeout_ms = cut;
    if (c->connect_timeout_ms <= 0 || c->connect_timeout_ms > c->timeout_ms)
        c->connect_timeout_ms = c->timeout_ms;
    if (c->max_attempts > KEEP_MAX_ATTEMPTS)
        c->max_attempts = KEEP_MAX_ATTEMPTS;
}

ddbk_lock_keeper *ddbk_lock_keep(ddbk_client *c, ddbk_lock *l, long period_ms, ddbk_error *err)
{
    pthread_condattr_t ca;
    ddbk_lock_info in;

    ddbk_error_clear(err);
    if (!c || !l || period_ms <= 0 || !ddbk_lock_held(l)) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0,
                       "lock keeper: needs a client, a held lock and period_ms > 0");
        return NULL;
    }
    ddbk_lock_info_get(l, &in);
    if (period_ms >= in.lease_ms) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0,
                       "lock keeper: period_ms (%ld) must be shorter than the lease (%ld ms): "
                       "its renewals would come after the lease ran out",
                       period_ms, in.lease_ms);
        return NULL;
    }
    ddbk_lock_keeper *k = calloc(1, sizeof *k);
    if (!k) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock keeper: out of memory");
        return NULL;
    }
    k->parent = c;
    k->l = l;
    k->period_ms = period_ms;
    k->c = ddbk__client_copy_settings(c, err);
    if (!k->c) {
        free(k);
        return NULL;
    }
    limit_attempts(k->c, period_ms);
    if (pthread_condattr_init(&ca) != 0) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock keeper: out of memory");
        goto fail_client;
    }
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&k->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock keeper: no condition variable (%d)", rc);
        goto fail_client;
    }
    if ((rc = pthread_mutex_init(&k->mu, NULL)) != 0) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock keeper: no mutex (%d)", rc);
        goto fail_cv;
    }
    if ((rc = pthread_create(&k->thread, NULL, run, k)) != 0) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock keeper: could not start a thread (%d)", rc);
        pthread_mutex_destroy(&k->mu);
        goto fail_cv;
    }
    return k;

fail_cv:
    pthread_cond_destroy(&k->cv);
fail_client:
    ddbk_client_free(k->c);
    free(k);
    return NULL;
}

int ddbk_lock_keep_stop(ddbk_lock_keeper *k, long *renewals, ddbk_error *err)
{
    ddbk_error_clear(err);
    if (renewals)
        *renewals = 0;
    if (!k)
        return 0;
    pthread_mutex_lock(&k->mu);
    k->stop = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);

    int rc = k->failed ? -1 : 0;
    if (k->failed)
        *err = k->err;
    if (renewals)
        *renewals = k->renewals;
    ddbk__stats_add(k->parent, k->c); /* the thread is gone: the clone is still */
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    ddbk_client_free(k->c);
    free(k);
    return rc;
}
