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
 * cost). It
 * waits on a condition variable against the monotonic clock rather than
 * sleeping, so a stop is answered at once and a wall clock step neither
 * hurries nor stalls the renewals. It holds its mutex while renewing: a stop
 * then waits for the renewal in flight to finish, and hands the caller a lock
 * whose record version is the one the item holds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct ddbk_lock_keeper {
    ddbk_client *c;          /* the clone, the thread's own */
    ddbk_lock *l;
    long period_ms;
    pthread_t thread;
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
        ddbk_error e;
        int renewed = 0;
        /* A clone that cannot open its connection counts as a failed
         * renewal: it is tried again at the next beat. */
        if (ddbk__client_open_io(k->c, &e) == 0)
            renewed = ddbk_lock_renew(k->c, k->l, 0, &e) == 0;
        if (renewed) {
            k->renewals++;
            k->failed = 0;
        } else {
            k->failed = 1;
            k->err = e;
            if (final(&e))
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

ddbk_lock_keeper *ddbk_lock_keep(const ddbk_client *c, ddbk_lock *l, long period_ms,
                                 ddbk_error *err)
{
    pthread_condattr_t ca;

    ddbk_error_clear(err);
    if (!c || !l || period_ms <= 0 || !ddbk_lock_held(l)) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0,
                       "lock keeper: needs a client, a held lock and period_ms > 0");
        return NULL;
    }
    ddbk_lock_keeper *k = calloc(1, sizeof *k);
    if (!k) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock keeper: out of memory");
        return NULL;
    }
    k->l = l;
    k->period_ms = period_ms;
    k->c = ddbk__client_copy_settings(c, err);
    if (!k->c) {
        free(k);
        return NULL;
    }
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
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    ddbk_client_free(k->c);
    free(k);
    return rc;
}
