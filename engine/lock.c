/*
 * Conditional locks: a lease on one item, taken, renewed and released with
 * one conditional UpdateItem each.
 *
 * The item holds lockOwner (unique per process and handle), lockRvn (a
 * record version, fresh on every acquire and renew), leaseMs, expiresAt
 * (epoch seconds, as DynamoDB TTL and the Node adapter read it), acquiredAt
 * (ms) and fence, which `if_not_exists(fence, :base) + 1` grows on every
 * acquire (:base = the acquirer's wall clock in ms x 1000). Release keeps the
 * fence, removes lockOwner and lockRvn, records releasedRvn and releasedAt
 * (ms, the "released" mark; the next acquire removes it) and sets expiresAt
 * to a second already past (released_expires_at), never 0.
 *
 * Why each condition is safe:
 * - acquire takes an item that is
 *   . missing;
 *   . released (releasedAt and no lockOwner): nobody holds it. lockOwner is
 *     in the test because an older ddbkit, which does not remove releasedAt,
 *     may have taken it since;
 *   . ddbkit's (lockOwner or releasedRvn: a lease, an older release with
 *     expiresAt = 0, or an idempotency record ended by one) and expired by
 *     the wall clock with the caller's skew margin;
 *   . foreign (neither attribute: the Node adapter's lock, or one a Node
 *     acquire replaced with its Put) and expired more than opts.foreign_grace_ms
 *     plus the skew margin ago. Nobody renews a Node lock, and its holder
 *     writes its record unconditionally, so a holder whose handler outlives
 *     the lease would overwrite the answer of whoever took over; the grace is
 *     how long such a holder is given (the Node adapter itself uses none);
 *   . or one whose record version the caller has watched stay unchanged for
 *     a whole lease on its own monotonic clock (a holder that renews changes
 *     it; one that does not has lost its lease by then, whatever the clocks
 *     say).
 * - renew and release require both our owner and our record version.
 * - every attempt of one operation sends the same new record version, so when
 *   a response is lost and the engine's retry meets a failed condition, the
 *   old item it returns (ALL_OLD) says whether the first attempt took effect.
 *   A failure with no item to look at is settled by reading the item back.
 *
 * Released items are collected. DynamoDB's TTL ignores expiresAt values more
 * than five years in the past (0 among them), so a release writes the
 * release time less the skew margin, less a second: past for every clock
 * within the margin (the Node adapter's `expiresAt < :nowSec` passes at once;
 * ddbkit goes by the released mark and ignores it) and recent, so TTL deletes
 * the item some time later. The Node adapter deletes its lock items on
 * release, and its acquire (a Put) replaces a ddbkit item whole, fence
 * included. TTL deletes an item only once its expiresAt has passed, and a
 * lease's expiresAt is in the future while anyone may act on it.
 *
 * Fences stay strictly increasing across a deletion, for every holder that
 * could still act. An item's first fence is B0 + 1 with B0 = 1000 x c0, c0
 * the creator's clock (ms); each later acquire adds 1. DynamoDB applies the
 * writes to one item one at a time, and each acquire is a conditional write
 * over the network: far fewer than 1000 per ms. So a holder P that acquired
 * at real time tP got a fence fP <= B0 + 1000 x (tP - t0 + 1), t0 the
 * creation. P could still act only if it never released: then the item went
 * to anyone else only after P's expiresAt, which P wrote as at least
 * (tP - s + lease)/1000 (s: the skew margin every acquirer already assumes),
 * and was deleted no sooner: TTL deletes after it, a Node acquire
 * (`expiresAt < ceil(now/1000)`, so expiresAt x 1000 < its clock) takes it
 * after it by a clock at most s off. The next item is created at
 * t1 > tP + lease - 2s by a clock c1 >= t1 - s, while c0 <= t0 + s: so
 * c1 - c0 > tP - t0 + lease - 4s, and its first fence 1000 x c1 + 1 > fP
 * whenever lease > 4s (30 s against 1 s, the idempotency defaults, leave
 * room; a shorter lease counts on clocks closer than the margin). A holder
 * that released acts no more, so an item deleted at once after a release
 * changes nothing. An item that exists keeps growing by 1 from wherever it
 * is (an item from before this rule included: no migration), and 1000 x ms
 * stays below 2^53, exact as a Lua double (LuaJIT), until the year 2255.
 *
 * The protocol is a machine without I/O (ddbk_lock_op): it says what to do
 * next (send this request, sleep this long, stop) and is fed each request's
 * outcome, so an event loop or a Lua runtime can run it; it reads the clocks
 * and the random generator itself. ddbk_lock_acquire, _renew and _release
 * drive it with ddbk_call and nanosleep.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "json.h"

#define A_OWNER "lockOwner"
#define A_RVN "lockRvn"
#define A_LEASE "leaseMs"
#define A_EXPIRES "expiresAt"
#define A_ACQUIRED "acquiredAt"
#define A_FENCE "fence"
#define A_RELEASED "releasedRvn"
#define A_FREED "releasedAt"

/* Backoff between contended attempts: full jitter over a ceiling that
 * doubles from 25 ms to 500 ms. */
#define WAIT_BASE_MS 25
#define WAIT_CAP_MS 500

/* ------------------------------------------------------------- helpers */

/* The handle's mutex, for a write by its operation or a read by an
 * accessor (a const handle's mutex still changes: it is not its state). */
static void hold(const ddbk_lock *l) { pthread_mutex_lock((pthread_mutex_t *)&l->mu); }
static void let_go(const ddbk_lock *l) { pthread_mutex_unlock((pthread_mutex_t *)&l->mu); }

static double mono_ms(void) { return ddbk__mono_us() / 1000.0; }

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A fresh item's fence starts at the wall clock in ms times this (see the
 * top of this file): room for that many acquires per ms, and still below
 * 2^53 (exact in a Lua double) until the year 2255. */
#define FENCE_PER_MS 1000

/* The expiresAt a release writes: a second already past by every clock
 * within the skew margin of ours, so the Node adapter's `expiresAt <
 * :nowSec` sees the item free at once, and recent, so DynamoDB's TTL
 * (which skips values more than five years old) deletes it. */
UNITTEST int64_t released_expires_at(int64_t now_ms, long skew_ms)
{
    return (now_ms - skew_ms) / 1000 - 1;
}

static void random_hex(char *out, size_t bytes)
{
    unsigned char r[32];
    static const char hex[] = "0123456789abcdef";
    if (bytes > sizeof r)
        bytes = sizeof r;
    if (getrandom(r, bytes, 0) != (ssize_t)bytes) {
        /* No entropy source: uniqueness still holds through time and pid. */
        uint64_t x = (uint64_t)wall_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(ddbk_random() * 1e18);
        for (size_t i = 0; i < bytes; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
            r[i] = (unsigned char)(x >> 56);
    }
    for (size_t i = 0; i < bytes; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[2 * bytes] = '\0';
}

/* One member of ExpressionAttributeValues into b: "name":{"S":<s>}, s
 * through the engine's JSON string writer (a record version may be a
 * stranger's). Returns 0, -1 (memory) or -2 (s is not valid UTF-8). */
static int sval(ddbk_buf *b, const char *name, const char *s)
{
    if (ddbk_buf_printf(b, "%s\"%s\":{\"S\":", b->len ? "," : "", name))
        return -1;
    int r = ddbk__json_cstr(b, s);
    return r ? r : ddbk_buf_putc(b, '}');
}

/* "name":{"N":"v"} into b. */
static int nval(ddbk_buf *b, const char *name, long long v)
{
    return ddbk_buf_printf(b, "%s\"%s\":{\"N\":\"%lld\"}", b->len ? "," : "", name, v);
}

/* ----------------------------------------------------- reading an item */

/* The item as a response showed it (engine/lock_item.c reads it). */
typedef ddbk__lock_item seen;

/* Whether a string of the item is `want` (never when it was cut, or when
 * there is nothing to compare). */
static int is(const seen *s, int cut_bit, const char *have, const char *want)
{
    return want[0] && !(s->cut & cut_bit) && strcmp(have, want) == 0;
}

static int is_owner(const seen *s, const char *owner)
{
    return is(s, DDBK__LOCK_CUT_OWNER, s->owner, owner);
}

static int is_rvn(const seen *s, const char *rvn)
{
    return is(s, DDBK__LOCK_CUT_RVN, s->rvn, rvn);
}

static void to_holder(const seen *s, ddbk_lock_holder *h)
{
    if (!h)
        return;
    memset(h, 0, sizeof *h);
    h->known = s->exists;
    ddbk__copy(h->owner, sizeof h->owner, s->owner);
    ddbk__copy(h->rvn, sizeof h->rvn, s->rvn);
    h->fence = s->fence;
    h->expires_at = s->expires_at;
    h->lease_ms = s->lease_ms;
}

/* ------------------------------------------------------------ the key */

/* One string of the key into t; a refusal names the field (the value is
 * the caller's data: not repeated, it may be anything). */
static int key_str(ddbk_buf *t, const char *field, const char *s, ddbk_error *err)
{
    int r = ddbk__json_cstr(t, s);
    if (r == -2)
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0,
                       "lock key: %s is not valid UTF-8 (overlong, surrogate, past U+10FFFF "
                       "or cut short)", field);
    return r ? -1 : 0;
}

UNITTEST int build_target(ddbk_lock *l, const ddbk_lock_key *k, ddbk_error *err)
{
    ddbk_buf *t = &l->target;

    if (!k || !k->table || !*k->table || !k->pk_name || !*k->pk_name || !k->pk_value ||
        !*k->pk_value || (!k->sk_name) != (!k->sk_value) || (k->sk_name && !*k->sk_name)) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0,
                       "lock key needs a table, a partition key name and value, and "
                       "a sort key name with its value or neither");
        return -1;
    }
    if (strlen(k->pk_name) >= sizeof l->pk_name) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0, "lock key: attribute name too long");
        return -1;
    }
    ddbk__copy(l->pk_name, sizeof l->pk_name, k->pk_name);
    ddbk_buf_reset(t);
    ddbk_error_clear(err); /* fail tells a refusal (set) from memory (not) */
    if (ddbk_buf_puts(t, "\"TableName\":") || key_str(t, "table", k->table, err) ||
        ddbk_buf_puts(t, ",\"Key\":{") || key_str(t, "pk_name", k->pk_name, err) ||
        ddbk_buf_puts(t, ":{\"S\":") || key_str(t, "pk_value", k->pk_value, err) ||
        ddbk_buf_putc(t, '}'))
        goto fail;
    if (k->sk_name && (ddbk_buf_putc(t, ',') || key_str(t, "sk_name", k->sk_name, err) ||
                       ddbk_buf_puts(t, ":{\"S\":") || key_str(t, "sk_value", k->sk_value, err) ||
                       ddbk_buf_putc(t, '}')))
        goto fail;
    if (ddbk_buf_putc(t, '}'))
        goto fail;
    return 0;

fail:
    if (!err->code[0])
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock: out of memory building the key");
    ddbk_buf_free(t);
    return -1;
}

/* ------------------------------------------------------ the machine */

enum { OP_ACQUIRE, OP_RENEW, OP_RELEASE };

/* What an operation waits for. */
enum {
    ST_START,  /* its first step */
    ST_WRITE,  /* the outcome of its UpdateItem */
    ST_READ,   /* the outcome of the read-back after an ambiguous write */
    ST_SLEEP,  /* the end of a wait between contended attempts (acquire) */
    ST_DONE
};

struct ddbk_lock_op {
    int kind, state, rc;
    ddbk_lock *l;              /* the caller's, borrowed */
    ddbk_buf body;             /* the request of the current step */
    ddbk_buf resp;             /* the response body judged last, NUL-terminated */
    ddbk_buf values;           /* ExpressionAttributeValues of the current write */
    ddbk_error err;            /* the outcome; over a read-back, the write's own failure */
    char rvn[40];              /* the record version the current write sends */
    int64_t expires_at;
    long lease_ms;
    double sent;               /* monotonic ms when the current write was built */
    int unknown;               /* the current write may have landed unseen */
    /* acquire only */
    ddbk_lock_opts opts;       /* busy_item borrowed */
    ddbk_lock_holder holder;   /* as the item last showed it */
    ddbk_buf names;            /* ExpressionAttributeNames, the same for every attempt */
    char watched_rvn[40];
    double watched_since, watched_lease, deadline;
    int attempt;
    int sent_takeover;         /* the attempt in flight carried :seen */
};

static int is_ccf(const ddbk_error *e)
{
    return ddbk_error_is(e, DDBK_ERR_CONDITION_FAILED);
}

/* The engine gave up on a retryable failure (a timeout, a reset): the write
 * may or may not have happened. */
static int ambiguous(const ddbk_error *e)
{
    return e->retryable || e->timeout || e->ambiguous;
}

static ddbk_lock_op *new_op(int kind, ddbk_lock *l, ddbk_error *err)
{
    ddbk_lock_op *op = calloc(1, sizeof *op);
    if (!op) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock: out of memory");
        return NULL;
    }
    op->kind = kind;
    op->l = l;
    ddbk_buf_init(&op->body, 0);
    ddbk_buf_init(&op->resp, 0);
    ddbk_buf_init(&op->names, 0);
    ddbk_buf_init(&op->values, 0);
    (void)ddbk_buf_reserve(&op->body, 1024); /* room for any write at once; failing is fine */
    return op;
}

/* Keeps the response body an acquire judges by, for keep_seen (the
 * caller's buffer is gone by the time the caller reads busy_item); one that
 * does not fit is not kept. */
static void take_body(ddbk_lock_op *op, const char *body, size_t len)
{
    ddbk_buf_reset(&op->resp);
    if (body && len && ddbk_buf_append(&op->resp, body, len) != 0)
        ddbk_buf_reset(&op->resp);
}

static int step_send(ddbk_lock_op *op, const char *name, int state, ddbk_lock_next *next)
{
    op->state = state;
    next->what = DDBK_LOCK_SEND;
    next->op = name;
    next->body = op->body.data;
    next->body_len = op->body.len;
    next->sleep_ms = 0;
    return DDBK_LOCK_SEND;
}

static int step_sleep(ddbk_lock_op *op, double ms, ddbk_lock_next *next)
{
    /* Rounded up: waking early would find the takeover rule not yet met. */
    long whole = ms > 0 ? (long)ms : 0;
    if ((double)whole < ms)
        whole++;
    op->state = ST_SLEEP;
    memset(next, 0, sizeof *next);
    next->what = DDBK_LOCK_SLEEP;
    next->sleep_ms = whole;
    return DDBK_LOCK_SLEEP;
}

static void set_held(ddbk_lock *l, int held)
{
    hold(l);
    l->held = held;
    let_go(l);
}

/* Empties a handle whose acquire failed or was abandoned: it holds
 * nothing, and its memory is what the caller frees. */
static void clear(ddbk_lock *l)
{
    hold(l);
    ddbk_buf_free(&l->target);
    l->held = 0;
    l->fence = 0;
    l->rvn[0] = '\0';
    let_go(l);
}

/* The renewal's write may have landed though nobody saw it: keep its
 * record version, so the handle knows the item when it shows it. */
static void remember(const ddbk_lock_op *op)
{
    ddbk_lock *l = op->l;
    hold(l);
    if (l->npending == DDBK__LOCK_PENDING) { /* the oldest goes */
        memmove(&l->pending[0], &l->pending[1], sizeof l->pending[0] * (DDBK__LOCK_PENDING - 1));
        l->npending--;
    }
    struct ddbk__lock_pending *p = &l->pending[l->npending++];
    ddbk__copy(p->rvn, sizeof p->rvn, op->rvn);
    p->expires_at = op->expires_at;
    p->lease_ms = op->lease_ms;
    p->sent = op->sent;
    let_go(l);
}

/* The item shows our owner with a record version one of our own renewals
 * sent, whose outcome we never learned: it did land, so the lease it wrote
 * is the handle's (from when that request was sent, the safe side). Only
 * this handle writes its owner, and its versions are fresh random bits, so
 * the pair cannot be anyone else's. Returns 1 when adopted. */
static int adopt(ddbk_lock_op *op, const seen *s)
{
    ddbk_lock *l = op->l;
    if (!is_owner(s, l->owner))
        return 0;
    for (int i = 0; i < l->npending; i++) {
        const struct ddbk__lock_pending *p = &l->pending[i];
        if (!is_rvn(s, p->rvn))
            continue;
        hold(l);
        ddbk__copy(l->rvn, sizeof l->rvn, p->rvn);
        l->expires_at = p->expires_at;
        l->lease_ms = p->lease_ms;
        l->lease_start_mono_ms = p->sent;
        l->npending = 0; /* the older ones were conditioned on versions now gone */
        let_go(l);
        return 1;
    }
    return 0;
}

/* The end: what each kind leaves in the caller's lock. */
static int step_done(ddbk_lock_op *op, int rc, ddbk_lock_next *next)
{
    ddbk_lock *l = op->l;

    op->state = ST_DONE;
    op->rc = rc;
    if (rc == 0)
        ddbk_error_clear(&op->err); /* an earlier attempt's failure is history */
    switch (op->kind) {
    case OP_ACQUIRE:
        if (rc != 0)
            clear(l);
        else if (op->opts.busy_item) /* an earlier look may have seen another holder */
            ddbk_buf_reset(op->opts.busy_item);
        break;
    case OP_RENEW:
        if (rc == 0) {
            hold(l);
            ddbk__copy(l->rvn, sizeof l->rvn, op->rvn);
            l->lease_ms = op->lease_ms;
            l->expires_at = op->expires_at;
            l->lease_start_mono_ms = op->sent;
            l->npending = 0; /* each was conditioned on a version now gone */
            let_go(l);
        } else if (op->unknown) {
            remember(op);
        }
        break;
    case OP_RELEASE:
        if (rc == 0)
            set_held(l, 0);
        break;
    }
    memset(next, 0, sizeof *next);
    next->what = DDBK_LOCK_DONE;
    return DDBK_LOCK_DONE;
}

/* One UpdateItem on the lock item into op->body. `names` is the inner text
 * of ExpressionAttributeNames, without braces; the values are op->values,
 * built by the caller with sval and nval. return_values asks for what proves the write was ours (see proven). */
static int build_update(ddbk_lock_op *op, const char *update_expr, const char *condition,
                        const char *names, const char *return_values)
{
    ddbk_buf *body = &op->body;
    const char *values = op->values.data;
    ddbk_buf_reset(body);
    if (ddbk_buf_putc(body, '{') || ddbk_buf_append(body, op->l->target.data, op->l->target.len) ||
        ddbk_buf_printf(body,
                        ",\"UpdateExpression\":\"%s\",\"ConditionExpression\":\"%s\","
                        "\"ExpressionAttributeNames\":{%s},\"ExpressionAttributeValues\":{%s},"
                        "\"ReturnValues\":\"%s\",\"ReturnValuesOnConditionCheckFailure\":\"ALL_OLD\"}",
                        update_expr, condition, names, values, return_values)) {
        ddbk_error_set(&op->err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock: out of memory building a request");
        return -1;
    }
    return 0;
}

/* The values did not fit (memory, or the buffer's cap): nothing is sent.
 * A string there was valid UTF-8 when it was chosen (ours, or a watched
 * version checked before watching), so the writer's refusal is not
 * expected; it would end the operation the same way. */
static int values_failed(ddbk_lock_op *op, ddbk_lock_next *next)
{
    ddbk_error_set(&op->err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock: out of memory building a request");
    return step_done(op, -1, next);
}

/* ---------------------------------------------------------- acquire */

/* Keeps the body the item was last seen in for a caller that asked for it
 * (opts.busy_item), or empties it when this look found no item. A body over
 * the caller's cap is dropped whole: half a JSON text is no item. */
static void keep_seen(ddbk_buf *out, const ddbk_buf *resp, const seen *s)
{
    if (!out)
        return;
    ddbk_buf_reset(out);
    if (s->exists && ddbk_buf_append(out, resp->data, resp->len) != 0)
        ddbk_buf_reset(out);
}

static void took(ddbk_lock_op *op, const seen *s)
{
    ddbk_lock *l = op->l;
    hold(l);
    ddbk__copy(l->rvn, sizeof l->rvn, op->rvn);
    l->fence = s->fence;
    l->expires_at = op->expires_at;
    l->lease_ms = op->lease_ms;
    l->lease_start_mono_ms = op->sent;
    l->held = 1;
    let_go(l);
}

/* The acquire's condition: which items are free to take (see the top of
 * this file for why each clause is safe). */
#define ACQUIRE_FREE                                                                  \
    "attribute_not_exists(#k)"                                                        \
    " OR (attribute_exists(#m) AND attribute_not_exists(#o))"                         \
    " OR ((attribute_exists(#o) OR attribute_exists(#x)) AND #e < :cut)"              \
    " OR (attribute_not_exists(#o) AND attribute_not_exists(#x) AND #e < :fcut)"

static int acquire_write(ddbk_lock_op *op, ddbk_lock_next *next)
{
    ddbk_lock *l = op->l;
    ddbk_buf *v = &op->values;
    int64_t now = wall_ms();
    int64_t cutoff = (now - op->opts.max_clock_skew_ms) / 1000;
    int64_t foreign_cutoff = (now - op->opts.max_clock_skew_ms - op->opts.foreign_grace_ms) / 1000;
    double t = mono_ms();
    /* The clock-free takeover: this record version has stood still for a
     * whole lease of its holder, as we measured it ourselves. */
    int takeover = op->watched_rvn[0] && op->watched_lease > 0 &&
                   t - op->watched_since >= op->watched_lease;

    op->sent_takeover = takeover;
    op->lease_ms = op->opts.lease_ms;
    op->expires_at = (now + op->lease_ms + 999) / 1000;
    random_hex(op->rvn, 16);
    ddbk_buf_reset(v);
    if (sval(v, ":o", l->owner) || sval(v, ":r", op->rvn) || nval(v, ":l", op->lease_ms) ||
        nval(v, ":e", op->expires_at) || nval(v, ":a", now) ||
        nval(v, ":base", now * FENCE_PER_MS) || nval(v, ":one", 1) || nval(v, ":cut", cutoff) ||
        nval(v, ":fcut", foreign_cutoff) || (takeover && sval(v, ":seen", op->watched_rvn)))
        return values_failed(op, next);
    op->sent = mono_ms();
    if (build_update(op,
                     /* releasedRvn stays: a release whose answer was lost can
                      * still recognise itself after the next acquire. */
                     "SET #o = :o, #r = :r, #l = :l, #e = :e, #a = :a, "
                     "#f = if_not_exists(#f, :base) + :one REMOVE #m",
                     takeover ? ACQUIRE_FREE " OR #r = :seen" : ACQUIRE_FREE,
                     op->names.data, "ALL_NEW") != 0)
        return step_done(op, -1, next);
    return step_send(op, "UpdateItem", ST_WRITE, next);
}

/* After a look at the item (the failed condition's old item, or the
 * read-back): ours, or wait and try again, or give up. */
static int acquire_judge(ddbk_lock_op *op, const seen *s, ddbk_lock_next *next)
{
    if (is_owner(s, op->l->owner) && is_rvn(s, op->rvn)) {
        /* Our own attempt took effect; its response was what got lost. */
        took(op, s);
        return step_done(op, 0, next);
    }
    to_holder(s, &op->holder);
    keep_seen(op->opts.busy_item, &op->resp, s);
    /* A stranger's record version goes back to DynamoDB through the JSON
     * string writer (quotes and all); one that is not valid UTF-8 could not
     * be sent, so it is left to the wall clock. */
    if (s->rvn[0] && !(s->cut & DDBK__LOCK_CUT_RVN) && ddbk__utf8_valid(s->rvn, strlen(s->rvn)) &&
        strcmp(s->rvn, op->watched_rvn) != 0) {
        ddbk__copy(op->watched_rvn, sizeof op->watched_rvn, s->rvn);
        op->watched_since = mono_ms();
        op->watched_lease = (double)s->lease_ms;
    }
    double left = op->deadline - mono_ms();
    if (left <= 0) {
        if (is_ccf(&op->err))
            ddbk_error_set(&op->err, DDBK_ERR_BUSY, 0, "lock is held by %s until %lld (epoch s)",
                           s->owner[0] ? s->owner : "another process",
                           (long long)s->expires_at);
        return step_done(op, -1, next);
    }
    int a = op->attempt++;
    double ceiling = WAIT_BASE_MS * (double)(1 << (a < 5 ? a : 5));
    double pause = ddbk_random() * (ceiling < WAIT_CAP_MS ? ceiling : WAIT_CAP_MS);
    if (op->watched_rvn[0] && op->watched_lease > 0) {
        double due = op->watched_since + op->watched_lease - mono_ms();
        if (due > 0 && due < pause)
            pause = due; /* be there when the takeover rule allows it */
        else if (due <= 0 && !op->sent_takeover &&
                 strcmp(s->rvn, op->watched_rvn) == 0)
            pause = 0;   /* it allowed it while this attempt was on its way */
    }
    return step_sleep(op, pause < left ? pause : left, next);
}

ddbk_lock *ddbk__lock_new(void)
{
    ddbk_lock *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        free(l);
        return NULL;
    }
    ddbk_buf_init(&l->target, 0);
    return l;
}

ddbk_lock_op *ddbk_lock_op_acquire(const ddbk_lock_key *key, const ddbk_lock_opts *opts,
                                   ddbk_lock **out, ddbk_error *err)
{
    static unsigned long handles;
    char host[64] = "host", tag[17];
    ddbk_lock_op *op = NULL;
    ddbk_lock *l = NULL;

    ddbk_error_clear(err);
    *out = NULL;
    if (opts && opts->busy_item)
        ddbk_buf_reset(opts->busy_item);
    if (!opts || opts->lease_ms <= 0 || opts->wait_ms < 0 || opts->max_clock_skew_ms < 0 ||
        opts->foreign_grace_ms < 0) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0,
                       "lock: lease_ms must be > 0, wait_ms, max_clock_skew_ms and "
                       "foreign_grace_ms >= 0");
        return NULL;
    }
    if (!(l = ddbk__lock_new())) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock: out of memory");
        return NULL;
    }
    if (build_target(l, key, err) != 0 || !(op = new_op(OP_ACQUIRE, l, err))) {
        ddbk_lock_free(l);
        return NULL;
    }
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    /* Kept to plain ASCII: the owner must pass the JSON string writer in
     * every request, whatever bytes the host name holds. */
    for (char *h = host; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
              (*h >= '0' && *h <= '9') || *h == '.' || *h == '-'))
            *h = '_';
    random_hex(tag, 8);
    snprintf(l->owner, sizeof l->owner, "%.40s:%ld:%s:%lu", host, (long)getpid(), tag,
             __atomic_add_fetch(&handles, 1, __ATOMIC_RELAXED));
    l->skew_ms = opts->max_clock_skew_ms;
    op->opts = *opts;
    if (ddbk_buf_puts(&op->names, "\"#o\":\"" A_OWNER "\",\"#r\":\"" A_RVN "\",\"#l\":\"" A_LEASE
                                  "\",\"#e\":\"" A_EXPIRES "\",\"#a\":\"" A_ACQUIRED "\",\"#f\":\""
                                  A_FENCE "\",\"#x\":\"" A_RELEASED "\",\"#m\":\"" A_FREED
                                  "\",\"#k\":") ||
        ddbk__json_cstr(&op->names, l->pk_name)) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "lock: out of memory building a request");
        ddbk_lock_op_free(op);
        ddbk_lock_free(l);
        return NULL;
    }
    op->deadline = mono_ms() + (double)opts->wait_ms;
    *out = l;
    return op;
}

/* ----------------------------------------------------- renew / release */

/* :o and :r, the owner and record version renew and release require. */
static int owner_values(ddbk_lock_op *op)
{
    ddbk_buf_reset(&op->values);
    return sval(&op->values, ":o", op->l->owner) || sval(&op->values, ":r", op->l->rvn);
}

static int renew_write(ddbk_lock_op *op, ddbk_lock_next *next)
{
    ddbk_buf *v = &op->values;

    op->expires_at = (wall_ms() + op->lease_ms + 999) / 1000;
    random_hex(op->rvn, 16);
    if (owner_values(op) || sval(v, ":new", op->rvn) || nval(v, ":l", op->lease_ms) ||
        nval(v, ":e", op->expires_at))
        return values_failed(op, next);
    op->sent = mono_ms();
    if (build_update(op, "SET #r = :new, #l = :l, #e = :e", "#o = :o AND #r = :r",
                     "\"#o\":\"" A_OWNER "\",\"#r\":\"" A_RVN "\",\"#l\":\"" A_LEASE
                     "\",\"#e\":\"" A_EXPIRES "\"",
                     "UPDATED_NEW") != 0)
        return step_done(op, -1, next);
    return step_send(op, "UpdateItem", ST_WRITE, next);
}

static int renew_judge(ddbk_lock_op *op, const seen *s, ddbk_lock_next *next)
{
    ddbk_lock *l = op->l;
    if (is_owner(s, l->owner) && is_rvn(s, op->rvn))
        return step_done(op, 0, next); /* our renewal landed; only its answer was lost */
    if (is_owner(s, l->owner) && is_rvn(s, l->rvn))
        return step_done(op, -1, next); /* nothing changed: the old lease stands */
    if (adopt(op, s))
        return renew_write(op, next); /* an earlier renewal of ours did land: go on from it */
    set_held(l, 0);
    if (s->owner[0])
        ddbk_error_set(&op->err, DDBK_ERR_LOST, 0, "lock was taken over by %s", s->owner);
    else
        ddbk_error_set(&op->err, DDBK_ERR_NOT_OWNER, 0, "lock is no longer held by this handle");
    return step_done(op, -1, next);
}

static int release_write(ddbk_lock_op *op, ddbk_lock_next *next)
{
    int64_t now = wall_ms();
    if (owner_values(op) || nval(&op->values, ":past", released_expires_at(now, op->l->skew_ms)) ||
        nval(&op->values, ":now", now))
        return values_failed(op, next);
    if (build_update(op, "SET #e = :past, #x = :r, #m = :now REMOVE #o, #r", "#o = :o AND #r = :r",
                     "\"#o\":\"" A_OWNER "\",\"#r\":\"" A_RVN "\",\"#e\":\"" A_EXPIRES
                     "\",\"#x\":\"" A_RELEASED "\",\"#m\":\"" A_FREED "\"",
                     "UPDATED_NEW") != 0)
        return step_done(op, -1, next);
    return step_send(op, "UpdateItem", ST_WRITE, next);
}

static int release_judge(ddbk_lock_op *op, const seen *s, ddbk_lock_next *next)
{
    ddbk_lock *l = op->l;
    if (is(s, DDBK__LOCK_CUT_RELEASED, s->released, l->rvn))
        return step_done(op, 0, next); /* our release landed; only its answer was lost */
    if (is_owner(s, l->owner) && is_rvn(s, l->rvn))
        return step_done(op, -1, next); /* nothing changed: we still hold it */
    if (adopt(op, s))
        return release_write(op, next); /* a renewal of ours did land: release that */
    set_held(l, 0);
    ddbk_error_set(&op->err, DDBK_ERR_NOT_OWNER, 0, "lock is not held by this handle");
    return step_done(op, -1, next);
}

ddbk_lock_op *ddbk_lock_op_renew(ddbk_lock *l, long lease_ms, ddbk_error *err)
{
    ddbk_error_clear(err);
    if (!l->held) { /* an earlier renew or release found it gone */
        ddbk_error_set(err, DDBK_ERR_LOST, 0, "lock is no longer held by this handle");
        return NULL;
    }
    ddbk_lock_op *op = new_op(OP_RENEW, l, err);
    if (op)
        op->lease_ms = lease_ms > 0 ? lease_ms : l->lease_ms;
    return op;
}

ddbk_lock_op *ddbk_lock_op_release(ddbk_lock *l, ddbk_error *err)
{
    ddbk_error_clear(err);
    if (!l->held) {
        ddbk_error_set(err, DDBK_ERR_NOT_OWNER, 0, "lock is not held by this handle");
        return NULL;
    }
    return new_op(OP_RELEASE, l, err);
}

/* ----------------------------------------------------- the steps */

static int write_step(ddbk_lock_op *op, ddbk_lock_next *next)
{
    switch (op->kind) {
    case OP_ACQUIRE:
        return acquire_write(op, next);
    case OP_RENEW:
        return renew_write(op, next);
    default:
        return release_write(op, next);
    }
}

static int judge(ddbk_lock_op *op, const seen *s, ddbk_lock_next *next)
{
    op->unknown = 0; /* the item has been seen */
    switch (op->kind) {
    case OP_ACQUIRE:
        return acquire_judge(op, s, next);
    case OP_RENEW:
        return renew_judge(op, s, next);
    default:
        return release_judge(op, s, next);
    }
}

/* Whether a write's answer proves the write was ours: the attributes it
 * returned hold the record version only this write sent (fresh random
 * bits), under our owner for an acquire (ALL_NEW) with the fence it grew;
 * a renew and a release return what they set (UPDATED_NEW), which their
 * condition on our owner guarded. A 2xx without that ({}, an error body
 * under a success status, a body cut short) proves nothing. */
static int proven(const ddbk_lock_op *op, const seen *s)
{
    switch (op->kind) {
    case OP_ACQUIRE:
        return is_owner(s, op->l->owner) && is_rvn(s, op->rvn) && s->have_fence && s->fence > 0;
    case OP_RENEW:
        return is_rvn(s, op->rvn);
    default:
        return is(s, DDBK__LOCK_CUT_RELEASED, s->released, op->l->rvn);
    }
}

/* The write's outcome is not known: read the item back (strongly
 * consistent) and judge by it. */
static int read_back(ddbk_lock_op *op, ddbk_lock_next *next)
{
    op->unknown = 1;
    ddbk_buf_reset(&op->body);
    if (ddbk_buf_putc(&op->body, '{') ||
        ddbk_buf_append(&op->body, op->l->target.data, op->l->target.len) ||
        ddbk_buf_puts(&op->body, ",\"ConsistentRead\":true}"))
        return step_done(op, -1, next); /* unknowable: err stays the write's */
    return step_send(op, "GetItem", ST_READ, next);
}

/* The outcome of the write. A success must prove itself (proven); a failed
 * condition brought the old item with it (ALL_OLD); a retryable failure may
 * or may not have taken effect; any other failure ends the operation with
 * it. Whatever leaves the outcome unknown (an unproven success, an old item
 * that cannot be read, a retryable failure) is settled by reading the item
 * back, as a lost response is: a 2xx did take effect on a real service, and
 * an acquire that took the lease must end holding it, not leave it to run
 * out. */
static int on_write(ddbk_lock_op *op, const char *body, size_t len, const ddbk_error *call_err,
                    ddbk_lock_next *next)
{
    seen s;

    if (!call_err) {
        if (ddbk__lock_item_read(body, len, "Attributes", &s) == 1 &&
            proven(op, &s)) {
            if (op->kind == OP_ACQUIRE)
                took(op, &s);
            return step_done(op, 0, next);
        }
        ddbk_error_set(&op->err, DDBK_ERR_MALFORMED_RESPONSE, 0,
                       "lock: the UpdateItem answered success without the lock attributes "
                       "that prove it (%zu-byte body)", len);
        return read_back(op, next);
    }
    op->err = *call_err;
    if (is_ccf(&op->err)) {
        if (ddbk__lock_item_read(body, len, "Item", &s) >= 0) {
            take_body(op, body, len);
            return judge(op, &s, next);
        }
        ddbk_error_set(&op->err, DDBK_ERR_MALFORMED_RESPONSE, call_err->status,
                       "lock: the failed condition's old item is not readable JSON "
                       "(%zu-byte body)", len);
        return read_back(op, next);
    }
    if (!ambiguous(&op->err))
        return step_done(op, -1, next); /* a failure retrying cannot help */
    return read_back(op, next);
}

/* The outcome of the read-back. When it fails too, or its body cannot be
 * read, nothing can be known: the operation ends with the write's own
 * failure. */
static int on_read(ddbk_lock_op *op, const char *body, size_t len, const ddbk_error *call_err,
                   ddbk_lock_next *next)
{
    seen s;

    if (call_err)
        return step_done(op, -1, next);
    if (ddbk__lock_item_read(body, len, "Item", &s) < 0)
        return step_done(op, -1, next);
    take_body(op, body, len);
    return judge(op, &s, next);
}

int ddbk_lock_op_next(ddbk_lock_op *op, const char *body, size_t body_len,
                      const ddbk_error *call_err, ddbk_lock_next *next)
{
    switch (op->state) {
    case ST_START:
    case ST_SLEEP:
        return write_step(op, next);
    case ST_WRITE:
        return on_write(op, body, body_len, call_err, next);
    case ST_READ:
        return on_read(op, body, body_len, call_err, next);
    default:
        memset(next, 0, sizeof *next);
        next->what = DDBK_LOCK_DONE;
        return DDBK_LOCK_DONE;
    }
}

int ddbk_lock_op_result(const ddbk_lock_op *op, ddbk_lock_holder *holder, ddbk_error *err)
{
    if (holder)
        *holder = op->holder;
    if (op->state != ST_DONE) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0, "lock: the operation has not finished");
        return -1;
    }
    *err = op->err;
    return op->rc;
}

void ddbk_lock_op_free(ddbk_lock_op *op)
{
    if (!op)
        return;
    if (op->kind == OP_ACQUIRE && op->state != ST_DONE)
        clear(op->l); /* abandoned: the handle never held anything */
    if (op->kind == OP_RENEW && (op->state == ST_WRITE || op->state == ST_READ))
        remember(op); /* abandoned in flight: its write may land */
    ddbk_buf_free(&op->body);
    ddbk_buf_free(&op->resp);
    ddbk_buf_free(&op->names);
    ddbk_buf_free(&op->values);
    free(op);
}

/* ------------------------------------------------- the blocking drivers */

/* Runs op to its end: each SEND through ddbk_call (which retries on its
 * own), each SLEEP as nanosleep. */
static void drive(ddbk_client *c, ddbk_lock_op *op)
{
    ddbk_response resp;
    ddbk_error call_err;
    ddbk_lock_next next;

    ddbk_response_init(&resp);
    int what = ddbk_lock_op_next(op, NULL, 0, NULL, &next);
    while (what != DDBK_LOCK_DONE) {
        if (what == DDBK_LOCK_SEND) {
            int r = ddbk_call(c, next.op, next.body, next.body_len, &resp, &call_err);
            what = ddbk_lock_op_next(op, resp.body.data, resp.body.len, r == 0 ? NULL : &call_err,
                                     &next);
        } else {
            ddbk__sleep_ms(next.sleep_ms);
            what = ddbk_lock_op_next(op, NULL, 0, NULL, &next);
        }
    }
    ddbk_response_free(&resp);
}

static int run(ddbk_client *c, ddbk_lock_op *op, ddbk_lock_holder *holder, ddbk_error *err)
{
    if (!op)
        return -1;
    drive(c, op);
    int rc = ddbk_lock_op_result(op, holder, err);
    ddbk_lock_op_free(op);
    return rc;
}

int ddbk_lock_acquire(ddbk_client *c, const ddbk_lock_key *key,
                      const ddbk_lock_opts *opts, ddbk_lock **out,
                      ddbk_lock_holder *holder, ddbk_error *err)
{
    if (holder)
        memset(holder, 0, sizeof *holder);
    int rc = run(c, ddbk_lock_op_acquire(key, opts, out, err), holder, err);
    if (rc != 0) {
        ddbk_lock_free(*out);
        *out = NULL;
    }
    return rc;
}

int ddbk_lock_renew(ddbk_client *c, ddbk_lock *l, long lease_ms, ddbk_error *err)
{
    return run(c, ddbk_lock_op_renew(l, lease_ms, err), NULL, err);
}

int ddbk_lock_release(ddbk_client *c, ddbk_lock *l, ddbk_error *err)
{
    return run(c, ddbk_lock_op_release(l, err), NULL, err);
}

/* valid_ms with the mutex held. */
static long valid_ms(const ddbk_lock *l)
{
    if (!l->held)
        return 0;
    double left = (double)l->lease_ms - (mono_ms() - l->lease_start_mono_ms) - (double)l->skew_ms;
    return left > 0 ? (long)left : 0;
}

long ddbk_lock_valid_ms(const ddbk_lock *l)
{
    hold(l);
    long v = valid_ms(l);
    let_go(l);
    return v;
}

void ddbk_lock_info_get(const ddbk_lock *l, ddbk_lock_info *out)
{
    memset(out, 0, sizeof *out);
    hold(l);
    ddbk__copy(out->owner, sizeof out->owner, l->owner);
    ddbk__copy(out->rvn, sizeof out->rvn, l->rvn);
    out->fence = l->fence;
    out->expires_at = l->expires_at;
    out->lease_ms = l->lease_ms;
    out->held = l->held;
    out->valid_ms = valid_ms(l);
    let_go(l);
}

int ddbk_lock_held(const ddbk_lock *l)
{
    hold(l);
    int held = l->held;
    let_go(l);
    return held;
}

int64_t ddbk_lock_fence(const ddbk_lock *l)
{
    hold(l);
    int64_t fence = l->fence;
    let_go(l);
    return fence;
}

const char *ddbk_lock_owner(const ddbk_lock *l) { return l->owner; }

int ddbk_lock_fence_condition(const ddbk_lock *l, const char *attr, ddbk_buf *out)
{
    size_t len = out->len;
    if (ddbk_buf_puts(out, "\"ConditionExpression\":\"attribute_not_exists(#ddbkit_fence) OR "
                           "#ddbkit_fence <= :ddbkit_fence\",\"ExpressionAttributeNames\":"
                           "{\"#ddbkit_fence\":") ||
        ddbk__json_cstr(out, attr) ||
        ddbk_buf_printf(out, "},\"ExpressionAttributeValues\":{\":ddbkit_fence\":{\"N\":"
                             "\"%lld\"}}", (long long)ddbk_lock_fence(l))) {
        out->len = len;
        if (out->data)
            out->data[len] = '\0';
        return -1;
    }
    return 0;
}

/* Nothing to send: the write that ended the lease was the caller's own, and
 * its outcome is known to the caller, not to us. */
void ddbk_lock_mark_released(ddbk_lock *l) { set_held(l, 0); }

void ddbk_lock_free(ddbk_lock *l)
{
    if (!l)
        return;
    ddbk_buf_free(&l->target);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
