/*
 * The credential cell: what a client and its clones (a lock keeper's thread)
 * sign with, and the refresh policy around it.
 *
 * Policy (the lifetime L = expires_at - fetched_at):
 *   refresh at  expires_at - m * (1 + 0.5 r),  m = min(300 s, L / 4),
 *               r uniform in [0, 1): a fleet that fetched at once does not
 *               refresh at once;
 *   EXPIRED at  expires_at - g,  g = min(60 s, L / 10): from then on the
 *               credentials are never signed with (a request signed a
 *               moment before expiry may reach AWS after it).
 * A failed refresh keeps the old credentials while they are not EXPIRED and
 * sets a backoff of 1 s doubling to 60 s (equal jitter: [b/2, b)); during
 * it ddbk__cell_begin says no, so calls with nothing usable fail at once
 * with the last error instead of each spending the fetch's timeouts (a
 * host that is not on EC2 learns it once a backoff, not once a call).
 * Single flight: one fetch at a time per cell (the `fetching` claim).
 *
 * Every field is under mu: the cell is shared between threads (a client
 * and its keeper's clone). The signer keeps its own copy of the strings
 * (ddbk__cell_take copies only when the generation changed), so the lock is
 * held for a few compares per request, never across a signature or I/O.
 *
 * What this file does not do: I/O. The drivers (cred_http.c, loop.c, the
 * Lua binding) run the machine ddbk__cell_begin hands out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "creds.h"

#define REFRESH_MARGIN_MAX_MS 300000 /* m's ceiling */
#define EXPIRY_GUARD_MAX_MS 60000    /* g's ceiling */
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 60000

struct ddbk__cell {
    pthread_mutex_t mu;
    pthread_cond_t idle;          /* signalled when a fetch ends */
    int refs;                     /* under mu */
    ddbk__plan plan;
    int host;                     /* HOST plan: only ddbk__cell_set fills it */
    int can_fetch;                /* a plan the machine runs (not STATIC/HOST) */

    ddbk__fetched creds;          /* access_key_id NULL: none */
    uint64_t gen;                 /* + 1 at each install; 0: never had any */
    int64_t expires_ms;           /* 0: they do not expire */
    int64_t refresh_ms;           /* 0: no refresh due ever */
    int64_t expired_ms;           /* from then on: EXPIRED */

    int fetching;
    int64_t retry_ms;             /* a failed fetch's backoff ends then */
    long backoff_ms;              /* the last backoff's base; 0 after success */

    uint64_t fetches, failures;
    ddbk_error last;              /* the last failure; code "" when none */
    char provider[32];
    char profile[64];
};

#ifdef DDBK_UNITTEST
int64_t ddbk__test_wall_offset_ms;
#endif

int64_t ddbk__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#ifdef DDBK_UNITTEST
    ms += ddbk__test_wall_offset_ms;
#endif
    return ms;
}

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* dst = a heap copy of src; -1 when memory runs out (dst then empty). */
static int copy_fetched(const ddbk__fetched *src, ddbk__fetched *dst)
{
    memset(dst, 0, sizeof *dst);
    dst->access_key_id = dup_str(src->access_key_id);
    dst->secret_access_key = dup_str(src->secret_access_key);
    dst->session_token = dup_str(src->session_token);
    dst->expires_at = src->expires_at;
    if (!dst->access_key_id || !dst->secret_access_key ||
        (src->session_token && !dst->session_token)) {
        ddbk__fetched_wipe(dst);
        return -1;
    }
    return 0;
}

ddbk__cell *ddbk__cell_new(const ddbk__plan *plan, ddbk_error *err)
{
    ddbk__cell *c = calloc(1, sizeof *c);
    if (!c)
        goto oom;
    if (ddbk__plan_copy(plan, &c->plan) != 0) {
        free(c);
        goto oom;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->idle, NULL);
    c->refs = 1;
    ddbk__copy(c->provider, sizeof c->provider, plan->provider);
    if (plan->nsteps > 0) {
        const ddbk__step *last = &plan->steps[plan->nsteps - 1];
        ddbk__copy(c->profile, sizeof c->profile,
                   last->profile[0] ? last->profile : plan->steps[0].profile);
    }
    const ddbk__step *s0 = &plan->steps[0];
    /* A HOST cell is told REFRESH when due too (the host's function is
     * then called), but begin never claims it: the host fetches. */
    c->host = plan->nsteps > 0 && s0->kind == DDBK__STEP_HOST;
    c->can_fetch = plan->nsteps > 0 && !c->host &&
                   !(plan->nsteps == 1 && s0->kind == DDBK__STEP_STATIC);
    if (plan->nsteps == 1 && s0->kind == DDBK__STEP_STATIC) {
        /* Ready at once: static keys never expire, and the cell never fetches. */
        if (copy_fetched(&s0->keys, &c->creds) != 0) {
            ddbk__cell_unref(c);
            goto oom;
        }
        c->creds.expires_at = 0;
        c->gen = 1;
    }
    return c;

oom:
    ddbk_error_set(err, "OutOfMemory", 0, "out of memory creating the credentials");
    return NULL;
}

ddbk__cell *ddbk__cell_ref(ddbk__cell *c)
{
    pthread_mutex_lock(&c->mu);
    c->refs++;
    pthread_mutex_unlock(&c->mu);
    return c;
}

void ddbk__cell_unref(ddbk__cell *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left > 0)
        return;
    ddbk__fetched_wipe(&c->creds);
    ddbk__plan_wipe(&c->plan);
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->mu);
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}

/* Whether the credentials held can be signed with at now_ms. Under mu. */
static int usable(const ddbk__cell *c, int64_t now_ms)
{
    return c->creds.access_key_id && (c->expires_ms == 0 || now_ms < c->expired_ms);
}

enum ddbk__cell_state ddbk__cell_state(ddbk__cell *c, int64_t now_ms)
{
    enum ddbk__cell_state st;
    pthread_mutex_lock(&c->mu);
    if (!usable(c, now_ms))
        st = DDBK__CELL_EXPIRED;
    else if ((c->can_fetch || c->host) && c->refresh_ms && now_ms >= c->refresh_ms &&
             !c->fetching &&
             now_ms >= c->retry_ms)
        st = DDBK__CELL_REFRESH;
    else
        st = DDBK__CELL_FRESH;
    pthread_mutex_unlock(&c->mu);
    return st;
}

int ddbk__cell_begin(ddbk__cell *c, int64_t now_ms, ddbk__fetch **f, ddbk_error *err)
{
    *f = NULL;
    pthread_mutex_lock(&c->mu);
    /* Not due (any more): a caller that saw REFRESH or EXPIRED just before
     * another's fetch ended must not fetch the same rotation again. */
    int due = !usable(c, now_ms) || (c->refresh_ms && now_ms >= c->refresh_ms);
    if (!c->can_fetch || c->fetching || now_ms < c->retry_ms || !due) {
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    c->fetching = 1;
    pthread_mutex_unlock(&c->mu);
    /* The machine copies the plan, which no one changes after creation:
     * made outside the lock, the claim keeps others out meanwhile. */
    ddbk__fetch *m = ddbk__fetch_new(&c->plan, now_ms / 1000, err);
    if (!m) {
        ddbk__cell_abandon(c, NULL);
        return -1;
    }
    *f = m;
    return 1;
}

/* Equal jitter over the current base: [b/2, b). */
static long backoff_next(ddbk__cell *c)
{
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (c->backoff_ms > BACKOFF_MAX_MS)
        c->backoff_ms = BACKOFF_MAX_MS;
    return c->backoff_ms / 2 + (long)((double)(c->backoff_ms / 2) * ddbk_random());
}

/* Records a failed fetch: the error (it names the provider, the step and the
 * cause, never a secret: the machine and the parsers make sure) and the
 * backoff. Under mu. */
static void record_failure(ddbk__cell *c, const ddbk_error *e, int64_t now_ms)
{
    c->failures++;
    c->last = *e;
    if (!c->last.code[0])
        ddbk__copy(c->last.code, sizeof c->last.code, DDBK_ERR_CREDENTIALS);
    c->retry_ms = now_ms + backoff_next(c);
}

/* Installs creds (moved in) fetched at now_ms. Under mu. 0, or -1 when they
 * are expired already (then nothing changes and e says why). */
static int install(ddbk__cell *c, ddbk__fetched *creds, int64_t now_ms, ddbk_error *e)
{
    int64_t exp = creds->expires_at > 0 ? creds->expires_at * 1000 : 0;
    int64_t life = exp ? exp - now_ms : 0;
    int64_t guard = life / 10 < EXPIRY_GUARD_MAX_MS ? life / 10 : EXPIRY_GUARD_MAX_MS;

    if (exp && life - guard <= 0) {
        ddbk_error_set(e, DDBK_ERR_CREDENTIALS, 0,
                       "%s: the credentials given expire at %lld (epoch s), too soon to sign "
                       "with", c->provider, (long long)creds->expires_at);
        ddbk__fetched_wipe(creds);
        return -1;
    }
    ddbk__fetched_wipe(&c->creds);
    c->creds = *creds;
    memset(creds, 0, sizeof *creds);
    c->gen++;
    c->expires_ms = exp;
    c->expired_ms = exp ? exp - guard : 0;
    if (exp) {
        int64_t margin = life / 4 < REFRESH_MARGIN_MAX_MS ? life / 4 : REFRESH_MARGIN_MAX_MS;
        c->refresh_ms = exp - (int64_t)((double)margin * (1.0 + 0.5 * ddbk_random()));
        if (c->refresh_ms < now_ms)
            c->refresh_ms = now_ms;
    } else {
        c->refresh_ms = 0;
    }
    c->backoff_ms = 0;
    c->retry_ms = 0;
    c->fetches++;
    return 0;
}

void ddbk__cell_end(ddbk__cell *c, ddbk__fetch *f, int64_t now_ms)
{
    ddbk__fetched got;
    ddbk_error e;

    memset(&got, 0, sizeof got);
    ddbk_error_clear(&e);
    int rc = ddbk__fetch_result(f, &got, &e);
    ddbk__fetch_free(f);
    pthread_mutex_lock(&c->mu);
    c->fetching = 0;
    if (rc != 0 || install(c, &got, now_ms, &e) != 0)
        record_failure(c, &e, now_ms);
    pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->mu);
    ddbk__fetched_wipe(&got);
}

void ddbk__cell_abandon(ddbk__cell *c, ddbk__fetch *f)
{
    if (f)
        ddbk__fetch_free(f);
    pthread_mutex_lock(&c->mu);
    c->fetching = 0;
    pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->mu);
}

int ddbk__cell_fetching(ddbk__cell *c)
{
    pthread_mutex_lock(&c->mu);
    int f = c->fetching;
    pthread_mutex_unlock(&c->mu);
    return f;
}

void ddbk__cell_wait(ddbk__cell *c, long max_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += max_ms / 1000;
    until.tv_nsec += (max_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (c->fetching)
        if (pthread_cond_timedwait(&c->idle, &c->mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&c->mu);
}

int ddbk__cell_is_host(const ddbk__cell *c)
{
    return c->host; /* set at creation, never changed */
}

const char *ddbk__cell_id(const ddbk__cell *c)
{
    return c->plan.id; /* set at creation, never changed */
}

/* A value that goes into a header: not empty (but the token, which may be
 * NULL), no control byte, and short enough for a request's header field. */
static int bad_value(const char *s, int optional)
{
    if (!s)
        return !optional;
    if (!*s)
        return !optional;
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
            return 1;
    return n >= DDBK_HDR_LINE_MAX - 64;
}

int ddbk__cell_set(ddbk__cell *c, const ddbk__fetched *creds, const char *provider,
                   ddbk_error *err)
{
    ddbk__fetched copy;

    if (bad_value(creds->access_key_id, 0) || bad_value(creds->secret_access_key, 0) ||
        bad_value(creds->session_token, 1) || creds->expires_at < 0) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0,
                       "credentials: access_key_id and secret_access_key must be non-empty, "
                       "the session token too when given, none with a control character or "
                       "longer than %d bytes, and expiration >= 0",
                       DDBK_HDR_LINE_MAX - 65);
        return -1;
    }
    if (copy_fetched(creds, &copy) != 0) {
        ddbk_error_set(err, "OutOfMemory", 0, "out of memory setting the credentials");
        return -1;
    }
    if (copy.session_token && !*copy.session_token) {
        free(copy.session_token);
        copy.session_token = NULL;
    }
    int64_t now = ddbk__wall_ms();
    pthread_mutex_lock(&c->mu);
    if (provider && *provider)
        ddbk__copy(c->provider, sizeof c->provider, provider);
    int rc = install(c, &copy, now, err);
    pthread_mutex_unlock(&c->mu);
    ddbk__fetched_wipe(&copy);
    return rc;
}

/* The error of a cell with nothing to sign with. Under mu. */
static void none_usable(const ddbk__cell *c, ddbk_error *err)
{
    if (c->last.code[0]) {
        /* The last failure, said as what it is for the call: no usable
         * credentials. A service's own code (AccessDenied) stays in the
         * message; MissingCredentials stays what it is. */
        int keep = strcmp(c->last.code, DDBK_ERR_CREDENTIALS) == 0 ||
                   strcmp(c->last.code, DDBK_ERR_MISSING_CREDENTIALS) == 0;
        ddbk_error_set(err, keep ? c->last.code : DDBK_ERR_CREDENTIALS, 0, "%s%s%s%s",
                       keep ? "" : c->last.code, keep ? "" : ": ", c->last.message,
                       c->creds.access_key_id ? " (the credentials held have expired)" : "");
    } else if (c->host && !c->creds.access_key_id) {
        ddbk_error_set(err, DDBK_ERR_MISSING_CREDENTIALS, 0,
                       "host: the client takes its credentials from the host, which has not "
                       "set any yet (ddbk_client_set_credentials)");
    } else if (!c->creds.access_key_id) {
        ddbk_error_set(err, DDBK_ERR_CREDENTIALS, 0, "%s: no credentials fetched yet",
                       c->provider);
    } else {
        ddbk_error_set(err, DDBK_ERR_CREDENTIALS, 0,
                       "%s: the credentials expired (epoch s %lld) and were not refreshed",
                       c->provider, (long long)c->creds.expires_at);
    }
}

int ddbk__cell_take(ddbk__cell *c, int64_t now_ms, ddbk__fetched *out, uint64_t *gen,
                    ddbk_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (!usable(c, now_ms)) {
        none_usable(c, err);
        rc = -1;
    } else if (c->gen != *gen) {
        ddbk__fetched_wipe(out);
        if (copy_fetched(&c->creds, out) != 0) {
            ddbk_error_set(err, "OutOfMemory", 0, "out of memory taking the credentials");
            rc = -1;
        } else {
            *gen = c->gen;
            rc = 1;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void ddbk__cell_info(ddbk__cell *c, ddbk_credentials_info *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    ddbk__copy(out->provider, sizeof out->provider, c->provider);
    ddbk__copy(out->profile, sizeof out->profile, c->profile);
    out->expires_at = c->creds.access_key_id ? c->creds.expires_at : 0;
    out->refresh_at = c->refresh_ms / 1000;
    out->fetches = c->fetches;
    out->failures = c->failures;
    if (c->last.code[0]) {
        /* Cut to fit, as the field says ("code: message"). */
        size_t n = 0;
        ddbk__cats(out->last_error, sizeof out->last_error, &n, c->last.code);
        ddbk__cats(out->last_error, sizeof out->last_error, &n, ": ");
        ddbk__cat(out->last_error, sizeof out->last_error, &n, c->last.message,
                  strnlen(c->last.message, sizeof out->last_error - 1 - n));
    }
    pthread_mutex_unlock(&c->mu);
}
