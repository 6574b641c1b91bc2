/*
 * Conditional locks: a lease on one item, taken, renewed and released with
 * one conditional UpdateItem each.
 *
 * The item holds lockOwner (unique per process and handle), lockRvn (a
 * record version, fresh on every acquire and renew), leaseMs, expiresAt
 * (epoch seconds, as DynamoDB TTL and the Node adapter read it), acquiredAt
 * (ms) and fence, which `if_not_exists(fence, 0) + 1` grows on every acquire.
 * Release keeps the fence, sets expiresAt = 0 and records releasedRvn.
 *
 * Why each condition is safe:
 * - acquire succeeds only when the item is missing, released or expired by
 *   the wall clock with the caller's skew margin, or when its record version
 *   is one the caller has watched stay unchanged for a whole lease on its own
 *   monotonic clock (a holder that renews changes it; one that does not has
 *   lost its lease by then, whatever the clocks say).
 * - renew and release require both our owner and our record version.
 * - every attempt of one operation sends the same new record version, so when
 *   a response is lost and the engine's retry meets a failed condition, the
 *   old item it returns (ALL_OLD) says whether the first attempt took effect.
 *   A failure with no item to look at is settled by reading the item back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "internal.h"

#define A_OWNER "lockOwner"
#define A_RVN "lockRvn"
#define A_LEASE "leaseMs"
#define A_EXPIRES "expiresAt"
#define A_ACQUIRED "acquiredAt"
#define A_FENCE "fence"
#define A_RELEASED "releasedRvn"

/* Backoff between contended attempts: full jitter over a ceiling that
 * doubles from 25 ms to 500 ms. */
#define WAIT_BASE_MS 25
#define WAIT_CAP_MS 500

/* ------------------------------------------------------------- helpers */

static double mono_ms(void) { return ddbk__mono_us() / 1000.0; }

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(double ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
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

/* JSON string, refusing what DynamoDB would (invalid UTF-8) instead of
 * sending it: a key is user data. */
UNITTEST int put_str(ddbk_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    if (ddbk_buf_putc(b, '"'))
        return -1;
    while (*p) {
        unsigned char ch = *p;
        int n = ch < 0x80 ? 1 : (ch & 0xe0) == 0xc0 ? 2 : (ch & 0xf0) == 0xe0 ? 3 : (ch & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0 || (n == 2 && ch < 0xc2))
            return -2;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return -2;
        if (ch == '"' || ch == '\\') {
            if (ddbk_buf_putc(b, '\\') || ddbk_buf_putc(b, (char)ch))
                return -1;
        } else if (ch < 0x20) {
            if (ddbk_buf_printf(b, "\\u%04x", ch))
                return -1;
        } else if (ddbk_buf_append(b, p, (size_t)n)) {
            return -1;
        }
        p += n;
    }
    return ddbk_buf_putc(b, '"');
}

/* ----------------------------------------------------- reading an item */

typedef struct seen {
    int exists;
    char owner[96], rvn[40], released[40];
    int64_t fence, expires_at;
    long lease_ms;
} seen;

static const char *tree_str(yajl_val item, const char *attr, const char *type)
{
    const char *path[] = { attr, type, NULL };
    yajl_val v = yajl_tree_get(item, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

/* Reads the lock attributes of the item under `field` ("Attributes" of a
 * success, "Item" of a failed condition or of GetItem) from a response. */
static void read_item(const ddbk_buf *body, const char *field, seen *out)
{
    char errbuf[128];
    const char *top[] = { field, NULL };

    memset(out, 0, sizeof *out);
    if (!body->data || !body->len)
        return;
    yajl_val root = yajl_tree_parse(body->data, errbuf, sizeof errbuf);
    if (!root)
        return;
    yajl_val item = yajl_tree_get(root, top, yajl_t_object);
    if (item) {
        const char *n;
        out->exists = 1;
        ddbk__copy(out->owner, sizeof out->owner, tree_str(item, A_OWNER, "S"));
        ddbk__copy(out->rvn, sizeof out->rvn, tree_str(item, A_RVN, "S"));
        ddbk__copy(out->released, sizeof out->released, tree_str(item, A_RELEASED, "S"));
        if ((n = tree_str(item, A_FENCE, "N")))
            out->fence = strtoll(n, NULL, 10);
        if ((n = tree_str(item, A_EXPIRES, "N")))
            out->expires_at = strtoll(n, NULL, 10);
        if ((n = tree_str(item, A_LEASE, "N")))
            out->lease_ms = strtol(n, NULL, 10);
    }
    yajl_tree_free(root);
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

/* ------------------------------------------------------ the requests */

static int is_ccf(const ddbk_error *e)
{
    return strcmp(e->code, "ConditionalCheckFailedException") == 0;
}

/* One UpdateItem on the lock item. `names` and `values` are the inner text
 * of ExpressionAttributeNames / Values, without braces. */
static int update(ddbk_client *c, ddbk_lock *l, ddbk_buf *body, ddbk_response *resp,
                  const char *update_expr, const char *condition,
                  const char *names, const char *values, int return_new,
                  ddbk_error *err)
{
    ddbk_buf_reset(body);
    if (ddbk_buf_putc(body, '{') || ddbk_buf_append(body, l->target.data, l->target.len) ||
        ddbk_buf_printf(body,
                        ",\"UpdateExpression\":\"%s\",\"ConditionExpression\":\"%s\","
                        "\"ExpressionAttributeNames\":{%s},\"ExpressionAttributeValues\":{%s},"
                        "\"ReturnValues\":\"%s\",\"ReturnValuesOnConditionCheckFailure\":\"ALL_OLD\"}",
                        update_expr, condition, names, values,
                        return_new ? "ALL_NEW" : "NONE")) {
        ddbk_error_set(err, "OutOfMemory", 0, "lock: out of memory building a request");
        return -1;
    }
    return ddbk_call(c, "UpdateItem", body->data, body->len, resp, err);
}

/* The item as it is now (a strongly consistent read). */
static int read_back(ddbk_client *c, ddbk_lock *l, ddbk_buf *body, ddbk_response *resp,
                     seen *out, ddbk_error *err)
{
    ddbk_buf_reset(body);
    if (ddbk_buf_putc(body, '{') || ddbk_buf_append(body, l->target.data, l->target.len) ||
        ddbk_buf_puts(body, ",\"ConsistentRead\":true}")) {
        ddbk_error_set(err, "OutOfMemory", 0, "lock: out of memory building a request");
        return -1;
    }
    if (ddbk_call(c, "GetItem", body->data, body->len, resp, err) != 0)
        return -1;
    read_item(&resp->body, "Item", out);
    return 0;
}

/* The engine gave up on a retryable failure (a timeout, a reset): the write
 * may or may not have happened. */
static int ambiguous(const ddbk_error *e)
{
    return e->retryable || e->timeout;
}

/* After an operation failed: what the item says now. A failed condition
 * brought the old item with it (ALL_OLD); a retryable failure may or may not
 * have taken effect, so the item is read back. err keeps the operation's own
 * error either way. Returns 0 with s filled, or -1 when nothing can be known
 * (any other failure, or the read-back failed too). */
static int settle(ddbk_client *c, ddbk_lock *l, ddbk_buf *body, ddbk_response *resp,
                  ddbk_error *err, seen *s)
{
    if (is_ccf(err)) {
        read_item(&resp->body, "Item", s);
        return 0;
    }
    if (!ambiguous(err))
        return -1;
    ddbk_error first = *err;
    int rc = read_back(c, l, body, resp, s, err);
    *err = first;
    return rc;
}

/* ------------------------------------------------------------ the key */

UNITTEST int build_target(ddbk_lock *l, const ddbk_lock_key *k, ddbk_error *err)
{
    ddbk_buf *t = &l->target;
    int rc = 0;

    if (!k || !k->table || !*k->table || !k->pk_name || !*k->pk_name || !k->pk_value ||
        !*k->pk_value || (!k->sk_name) != (!k->sk_value) || (k->sk_name && !*k->sk_name)) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "lock key needs a table, a partition key name and value, and "
                       "a sort key name with its value or neither");
        return -1;
    }
    if (strlen(k->pk_name) >= sizeof l->pk_name) {
        ddbk_error_set(err, "InvalidArgument", 0, "lock key: attribute name too long");
        return -1;
    }
    ddbk__copy(l->pk_name, sizeof l->pk_name, k->pk_name);
    ddbk_buf_reset(t);
    rc |= ddbk_buf_puts(t, "\"TableName\":");
    rc |= put_str(t, k->table);
    rc |= ddbk_buf_puts(t, ",\"Key\":{");
    rc |= put_str(t, k->pk_name);
    rc |= ddbk_buf_puts(t, ":{\"S\":");
    rc |= put_str(t, k->pk_value);
    rc |= ddbk_buf_putc(t, '}');
    if (k->sk_name) {
        rc |= ddbk_buf_putc(t, ',');
        rc |= put_str(t, k->sk_name);
        rc |= ddbk_buf_puts(t, ":{\"S\":");
        rc |= put_str(t, k->sk_value);
        rc |= ddbk_buf_putc(t, '}');
    }
    rc |= ddbk_buf_putc(t, '}');
    if (rc) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "lock key: a name or value is not valid UTF-8 (or memory ran out)");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ acquire */

/* Keeps the body the item was last seen in for a caller that asked for it
 * (opts->busy_item), or empties it when this look found no item. A body over
 * the caller's cap is dropped whole: half a JSON text is no item. */
static void keep_seen(ddbk_buf *out, const ddbk_response *resp, const seen *s)
{
    if (!out)
        return;
    ddbk_buf_reset(out);
    if (s->exists && ddbk_buf_append(out, resp->body.data, resp->body.len) != 0)
        ddbk_buf_reset(out);
}

static int took(ddbk_lock *l, const seen *s, const char *rvn, int64_t expires_at, long lease_ms,
                double sent)
{
    ddbk__copy(l->rvn, sizeof l->rvn, rvn);
    l->fence = s->fence;
    l->expires_at = expires_at;
    l->lease_ms = lease_ms;
    l->lease_start_mono_ms = sent;
    l->held = 1;
    return 0;
}

int ddbk_lock_acquire(ddbk_client *c, const ddbk_lock_key *key,
                      const ddbk_lock_opts *opts, ddbk_lock *l,
                      ddbk_lock_holder *holder, ddbk_error *err)
{
    static unsigned long handles;
    char host[64] = "host", rvn[40], values[1024];
    char watched_rvn[40] = "";
    double watched_since = 0, watched_lease = 0;
    ddbk_buf body, names;
    ddbk_response resp;
    seen s;
    int rc = -1;

    ddbk_error_clear(err);
    memset(l, 0, sizeof *l);
    ddbk_buf_init(&l->target, 0);
    if (holder)
        memset(holder, 0, sizeof *holder);
    if (opts && opts->busy_item)
        ddbk_buf_reset(opts->busy_item);
    if (!opts || opts->lease_ms <= 0 || opts->wait_ms < 0 || opts->max_clock_skew_ms < 0) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "lock: lease_ms must be > 0, wait_ms and max_clock_skew_ms >= 0");
        return -1;
    }
    if (build_target(l, key, err) != 0)
        return -1;
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *h = host; *h; h++) /* the owner goes into JSON text as is */
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
              (*h >= '0' && *h <= '9') || *h == '.' || *h == '-'))
            *h = '_';
    char tag[17];
    random_hex(tag, 8);
    snprintf(l->owner, sizeof l->owner, "%.40s:%ld:%s:%lu", host, (long)getpid(), tag,
             __atomic_add_fetch(&handles, 1, __ATOMIC_RELAXED));
    l->skew_ms = opts->max_clock_skew_ms;

    ddbk_buf_init(&body, 0);
    ddbk_buf_init(&names, 0);
    ddbk_response_init(&resp);
    if (ddbk_buf_puts(&names, "\"#o\":\"" A_OWNER "\",\"#r\":\"" A_RVN "\",\"#l\":\"" A_LEASE
                              "\",\"#e\":\"" A_EXPIRES "\",\"#a\":\"" A_ACQUIRED "\",\"#f\":\""
                              A_FENCE "\",\"#k\":") ||
        put_str(&names, l->pk_name)) {
        ddbk_error_set(err, "OutOfMemory", 0, "lock: out of memory building a request");
        goto done;
    }

    double deadline = mono_ms() + (double)opts->wait_ms;
    for (int attempt = 0;; attempt++) {
        int64_t now = wall_ms();
        int64_t expires_at = (now + opts->lease_ms + 999) / 1000;
        int64_t cutoff = (now - opts->max_clock_skew_ms) / 1000;
        double t = mono_ms();
        /* The clock-free takeover: this record version has stood still for
         * a whole lease of its holder, as we measured it ourselves. */
        int takeover = watched_rvn[0] && watched_lease > 0 && t - watched_since >= watched_lease;

        random_hex(rvn, 16);
        snprintf(values, sizeof values,
                 "\":o\":{\"S\":\"%s\"},\":r\":{\"S\":\"%s\"},\":l\":{\"N\":\"%ld\"},"
                 "\":e\":{\"N\":\"%lld\"},\":a\":{\"N\":\"%lld\"},\":zero\":{\"N\":\"0\"},"
                 "\":one\":{\"N\":\"1\"},\":cut\":{\"N\":\"%lld\"}%s%s%s",
                 l->owner, rvn, opts->lease_ms, (long long)expires_at, (long long)now,
                 (long long)cutoff, takeover ? ",\":seen\":{\"S\":\"" : "",
                 takeover ? watched_rvn : "", takeover ? "\"}" : "");
        double sent = mono_ms();
        int r = update(c, l, &body, &resp,
                       /* releasedRvn stays: a release whose answer was lost
                        * can still recognise itself after the next acquire. */
                       "SET #o = :o, #r = :r, #l = :l, #e = :e, #a = :a, "
                       "#f = if_not_exists(#f, :zero) + :one",
                       takeover ? "attribute_not_exists(#k) OR #e < :cut OR #r = :seen"
                                : "attribute_not_exists(#k) OR #e < :cut",
                       names.data, values, 1, err);
        if (r == 0) {
            read_item(&resp.body, "Attributes", &s);
            rc = took(l, &s, rvn, expires_at, opts->lease_ms, sent);
            break;
        }
        if (settle(c, l, &body, &resp, err, &s) != 0)
            break; /* unknowable, or a failure retrying cannot help */
        if (strcmp(s.owner, l->owner) == 0 && strcmp(s.rvn, rvn) == 0) {
            /* Our own attempt took effect; its response was what got lost. */
            rc = took(l, &s, rvn, expires_at, opts->lease_ms, sent);
            ddbk_error_clear(err);
            break;
        }
        to_holder(&s, holder);
        keep_seen(opts->busy_item, &resp, &s);
        if (s.rvn[0] && strcmp(s.rvn, watched_rvn) != 0) {
            ddbk__copy(watched_rvn, sizeof watched_rvn, s.rvn);
            watched_since = mono_ms();
            watched_lease = (double)s.lease_ms;
        }
        double left = deadline - mono_ms();
        if (left <= 0) {
            if (is_ccf(err))
                ddbk_error_set(err, "busy", 0, "lock is held by %s until %lld (epoch s)",
                               s.owner[0] ? s.owner : "another process",
                               (long long)s.expires_at);
            break;
        }
        double ceiling = WAIT_BASE_MS * (double)(1 << (attempt < 5 ? attempt : 5));
        double pause = ddbk_random() * (ceiling < WAIT_CAP_MS ? ceiling : WAIT_CAP_MS);
        if (watched_rvn[0] && watched_lease > 0) {
            double due = watched_since + watched_lease - mono_ms();
            if (due > 0 && due < pause)
                pause = due; /* be there when the takeover rule allows it */
        }
        sleep_ms(pause < left ? pause : left);
    }
done:
    ddbk_buf_free(&body);
    ddbk_buf_free(&names);
    ddbk_response_free(&resp);
    if (rc != 0)
        ddbk_lock_free(l);
    else if (opts->busy_item) /* an earlier look may have seen another holder */
        ddbk_buf_reset(opts->busy_item);
    return rc;
}

/* ----------------------------------------------------- renew / release */

static int owner_values(const ddbk_lock *l, char *out, size_t cap, const char *extra)
{
    return snprintf(out, cap, "\":o\":{\"S\":\"%s\"},\":r\":{\"S\":\"%s\"}%s", l->owner, l->rvn,
                    extra) >= (int)cap ? -1 : 0;
}

int ddbk_lock_renew(ddbk_client *c, ddbk_lock *l, long lease_ms, ddbk_error *err)
{
    char rvn[40], extra[256], values[512];
    ddbk_buf body;
    ddbk_response resp;
    seen s;
    int rc = -1;

    ddbk_error_clear(err);
    if (!l->held) { /* an earlier renew or release found it gone */
        ddbk_error_set(err, "lost", 0, "lock is no longer held by this handle");
        return -1;
    }
    if (lease_ms <= 0)
        lease_ms = l->lease_ms;
    int64_t expires_at = (wall_ms() + lease_ms + 999) / 1000;
    random_hex(rvn, 16);
    snprintf(extra, sizeof extra,
             ",\":new\":{\"S\":\"%s\"},\":l\":{\"N\":\"%ld\"},\":e\":{\"N\":\"%lld\"}", rvn,
             lease_ms, (long long)expires_at);
    owner_values(l, values, sizeof values, extra);

    ddbk_buf_init(&body, 0);
    ddbk_response_init(&resp);
    double sent = mono_ms();
    if (update(c, l, &body, &resp, "SET #r = :new, #l = :l, #e = :e", "#o = :o AND #r = :r",
               "\"#o\":\"" A_OWNER "\",\"#r\":\"" A_RVN "\",\"#l\":\"" A_LEASE
               "\",\"#e\":\"" A_EXPIRES "\"",
               values, 0, err) == 0) {
        rc = 0;
    } else if (settle(c, l, &body, &resp, err, &s) == 0) {
        if (strcmp(s.owner, l->owner) == 0 && strcmp(s.rvn, rvn) == 0) {
            rc = 0; /* our renewal landed; only its answer was lost */
            ddbk_error_clear(err);
        } else if (strcmp(s.owner, l->owner) == 0 && strcmp(s.rvn, l->rvn) == 0) {
            /* Nothing changed: the request failed; the old lease stands. */
        } else if (s.owner[0]) {
            l->held = 0;
            ddbk_error_set(err, "lost", 0, "lock was taken over by %s", s.owner);
        } else {
            l->held = 0;
            ddbk_error_set(err, "not_owner", 0, "lock is no longer held by this handle");
        }
    }
    if (rc == 0) {
        ddbk__copy(l->rvn, sizeof l->rvn, rvn);
        l->lease_ms = lease_ms;
        l->expires_at = expires_at;
        l->lease_start_mono_ms = sent;
    }
    ddbk_buf_free(&body);
    ddbk_response_free(&resp);
    return rc;
}

int ddbk_lock_release(ddbk_client *c, ddbk_lock *l, ddbk_error *err)
{
    char values[512];
    ddbk_buf body;
    ddbk_response resp;
    seen s;
    int rc = -1;

    ddbk_error_clear(err);
    if (!l->held) {
        ddbk_error_set(err, "not_owner", 0, "lock is not held by this handle");
        return -1;
    }
    owner_values(l, values, sizeof values, ",\":zero\":{\"N\":\"0\"}");
    ddbk_buf_init(&body, 0);
    ddbk_response_init(&resp);
    if (update(c, l, &body, &resp, "SET #e = :zero, #x = :r REMOVE #o, #r",
               "#o = :o AND #r = :r",
               "\"#o\":\"" A_OWNER "\",\"#r\":\"" A_RVN "\",\"#e\":\"" A_EXPIRES
               "\",\"#x\":\"" A_RELEASED "\"",
               values, 0, err) == 0) {
        rc = 0;
    } else if (settle(c, l, &body, &resp, err, &s) == 0) {
        if (strcmp(s.released, l->rvn) == 0) {
            rc = 0; /* our release landed; only its answer was lost */
            ddbk_error_clear(err);
        } else if (strcmp(s.owner, l->owner) == 0 && strcmp(s.rvn, l->rvn) == 0) {
            /* Nothing changed: the request failed; we still hold it. */
        } else {
            l->held = 0;
            ddbk_error_set(err, "not_owner", 0, "lock is not held by this handle");
        }
    }
    if (rc == 0)
        l->held = 0;
    ddbk_buf_free(&body);
    ddbk_response_free(&resp);
    return rc;
}

long ddbk_lock_valid_ms(const ddbk_lock *l)
{
    if (!l->held)
        return 0;
    double left = (double)l->lease_ms - (mono_ms() - l->lease_start_mono_ms) - (double)l->skew_ms;
    return left > 0 ? (long)left : 0;
}

int ddbk_lock_fence_condition(const ddbk_lock *l, const char *attr, ddbk_buf *out)
{
    size_t len = out->len;
    if (ddbk_buf_puts(out, "\"ConditionExpression\":\"attribute_not_exists(#ddbkit_fence) OR "
                           "#ddbkit_fence <= :ddbkit_fence\",\"ExpressionAttributeNames\":"
                           "{\"#ddbkit_fence\":") ||
        put_str(out, attr) ||
        ddbk_buf_printf(out, "},\"ExpressionAttributeValues\":{\":ddbkit_fence\":{\"N\":"
                             "\"%lld\"}}", (long long)l->fence)) {
        out->len = len;
        if (out->data)
            out->data[len] = '\0';
        return -1;
    }
    return 0;
}

/* Nothing to send: the write that ended the lease was the caller's own, and
 * its outcome is known to the caller, not to us. */
void ddbk_lock_mark_released(ddbk_lock *l) { l->held = 0; }

void ddbk_lock_free(ddbk_lock *l)
{
    ddbk_buf_free(&l->target);
    l->held = 0;
}
