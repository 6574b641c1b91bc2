/*
 * ddbkit — a small, fast DynamoDB engine.
 *
 * Public C API. Everything here is prefixed ddbk_. A client is not
 * thread-safe: use one per thread (they are cheap), or guard it.
 *
 * Requests and responses are DynamoDB's own JSON wire format (AttributeValues
 * included): the engine signs, sends, retries and classifies; it does not
 * reinterpret your items. The Lua binding marshals Lua values to and from that
 * format in C.
 *
 * Every step of a call is also available on its own (the "sans-I/O" split):
 *   ddbk_prepare()       build and sign a request
 *   ddbk_parse()         classify a status + body into success or an error
 *   ddbk_retry_decide()  given an error and the attempt number, wait or give up
 * so a host with its own event loop can do the network I/O itself.
 */
#ifndef DDBKIT_H
#define DDBKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DDBK_VERSION "0.1.0"

/* ---------------------------------------------------------------- buffers */

/* A growable byte buffer with a hard size cap. Always NUL-terminated when
 * data != NULL, so text can be used as a C string. */
typedef struct ddbk_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 = DDBK_BUF_DEFAULT_MAX */
} ddbk_buf;

#define DDBK_BUF_DEFAULT_MAX ((size_t)64 << 20) /* 64 MiB */

void ddbk_buf_init(ddbk_buf *b, size_t max);
void ddbk_buf_free(ddbk_buf *b);
void ddbk_buf_reset(ddbk_buf *b); /* len = 0, keeps memory */
/* Each returns 0, or -1 (nothing appended) when memory or the cap runs out. */
int ddbk_buf_reserve(ddbk_buf *b, size_t extra);
int ddbk_buf_append(ddbk_buf *b, const void *p, size_t n);
int ddbk_buf_putc(ddbk_buf *b, char c);
int ddbk_buf_puts(ddbk_buf *b, const char *s);
int ddbk_buf_printf(ddbk_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ----------------------------------------------------------------- errors */

/* What went wrong, as a value. `code` is DynamoDB's error name without its
 * namespace ("ConditionalCheckFailedException"), or one of the engine's own:
 *   "Timeout", "ConnectionError", "InvalidArgument", "MissingCredentials",
 *   "ResponseTooLarge", "MalformedResponse", "RetryQuotaExceeded",
 *   "OutOfMemory", "RequestEntityTooLarge" (HTTP 413 without a __type),
 *   "UnknownError" (any other non-2xx without a __type).
 * `message` never contains credentials. */
typedef struct ddbk_error {
    char code[96];
    char message[512];
    long status;        /* HTTP status, 0 when no response arrived */
    int retryable;      /* 1 when the standard retry mode would retry it */
    int throttling;     /* 1 for throttling errors (affects backoff only) */
    int timeout;        /* 1 for a transport timeout (retry quota costs 10) */
    char request_id[96];
} ddbk_error;

void ddbk_error_clear(ddbk_error *e);
void ddbk_error_set(ddbk_error *e, const char *code, long status,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ----------------------------------------------------------------- config */

typedef struct ddbk_config {
    const char *region;            /* else AWS_REGION, AWS_DEFAULT_REGION, profile */
    const char *endpoint;          /* else AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL,
                                      https://dynamodb.<region>.amazonaws.com */
    const char *profile;           /* else AWS_PROFILE, "default" */
    const char *access_key_id;     /* explicit credentials win over the chain */
    const char *secret_access_key;
    const char *session_token;
    long connect_timeout_ms;       /* default 1000 */
    long timeout_ms;               /* whole attempt, default 3000 */
    int max_attempts;              /* default 3 (1 = no retries) */
    long base_delay_ms;            /* backoff base, default 50 */
    long max_backoff_ms;           /* default 20000 */
    int retry_quota;               /* default 500 tokens; 0 disables the quota */
    int verify_tls;                /* default 1 */
    size_t max_response_bytes;     /* default 64 MiB */
} ddbk_config;

void ddbk_config_init(ddbk_config *cfg);

/* --------------------------------------------------------------- the client */

typedef struct ddbk_client ddbk_client;

/* Resolves region, endpoint and credentials now; the secret is copied and
 * wiped on free. Returns NULL and fills err on failure. */
ddbk_client *ddbk_client_new(const ddbk_config *cfg, ddbk_error *err);
/* A new client with c's region, endpoint, credentials (copied), timeouts,
 * retry settings, TLS verification and response cap, but its own connection
 * pool and signing state, fresh stats and a full retry quota: what a second
 * thread uses while the first keeps c (a client is not thread-safe). c must
 * not be in use by another thread during the call. Free with
 * ddbk_client_free. Returns NULL and fills err on failure. */
ddbk_client *ddbk_client_clone(const ddbk_client *c, ddbk_error *err);
void ddbk_client_free(ddbk_client *c);
const char *ddbk_client_region(const ddbk_client *c);
const char *ddbk_client_endpoint(const ddbk_client *c);

/* ------------------------------------------------------------------ prepare */

#define DDBK_MAX_HEADERS 8

typedef struct ddbk_header {
    char name[32];
    char value[2048];               /* STS session tokens run past 1 KB */
} ddbk_header;

typedef struct ddbk_request {
    const char *method;            /* "POST" */
    char url[512];
    char host[256];
    ddbk_header headers[DDBK_MAX_HEADERS];
    int nheaders;
    const char *body;              /* borrowed: the caller's body */
    size_t body_len;
} ddbk_request;

/* Builds and signs a DynamoDB request for operation `op` ("GetItem") with the
 * JSON `body`. `time_s` is the signing time in epoch seconds, or 0 for now.
 * Does no I/O; costs one SHA-256 of the body and one HMAC (the signing key is
 * cached per day, region and service). */
int ddbk_prepare(ddbk_client *c, const char *op, const char *body,
                 size_t body_len, int64_t time_s, ddbk_request *out,
                 ddbk_error *err);

/* -------------------------------------------------------------------- parse */

/* Classifies a response. Returns 0 for a 2xx status; otherwise -1 with err
 * filled: code from __type (namespace stripped) and message from "message" or
 * "Message"; a 413 or a body without __type gets an engine code. The caller
 * keeps the body for the extra fields (Item, CancellationReasons). */
int ddbk_parse(long status, const char *request_id, const char *body,
               size_t body_len, ddbk_error *err);

/* Fills err for a transport failure (what curl or a socket reported). */
void ddbk_error_transport(ddbk_error *err, int timed_out, const char *what);

/* ---------------------------------------------------------------- retries */

/* AWS "standard" retry mode. attempt is 1 for the first try. Returns the
 * delay in ms before the next attempt, or -1 to give up (not retryable,
 * attempts spent, or the client's retry quota is empty). On a retry it takes
 * tokens from the quota (5, or 10 for a timeout). `rnd` in [0, 1) draws the
 * full jitter; pass ddbk_random() outside tests. */
long ddbk_retry_decide(ddbk_client *c, const ddbk_error *err, int attempt,
                       double rnd);
/* Report a successful attempt: refunds the quota (1 token, or what the
 * retry of this call took). */
void ddbk_retry_success(ddbk_client *c, int retried, int last_was_timeout);
double ddbk_random(void);

/* ------------------------------------------------------------------ a call */

typedef struct ddbk_response {
    long status;
    ddbk_buf body;                 /* the response JSON (success or error) */
    char request_id[96];
    int attempts;
} ddbk_response;

void ddbk_response_init(ddbk_response *r);
void ddbk_response_free(ddbk_response *r);

/* Does the whole call: prepare, send (libcurl, keep-alive), parse, and retry
 * with backoff (blocking sleep). Returns 0 on success with resp->body holding
 * the result; -1 with err filled, resp->body holding the error body if any. */
int ddbk_call(ddbk_client *c, const char *op, const char *body,
              size_t body_len, ddbk_response *resp, ddbk_error *err);

/* -------------------------------------------------------------------- stats */

/* Counts kept per client, for every call made through it (and for the
 * attempts a host reports with ddbk_stats_record when it does its own I/O). */
#define DDBK_STATS_MAX_OPS 32
#define DDBK_STATS_MAX_CODES 32

typedef struct ddbk_op_stats {
    char op[40];
    uint64_t calls;      /* logical calls */
    uint64_t requests;   /* HTTP attempts sent */
    uint64_t retries;
    uint64_t errors;     /* calls that ended in an error */
} ddbk_op_stats;

typedef struct ddbk_code_stats {
    char code[96];
    uint64_t count;
} ddbk_code_stats;

typedef struct ddbk_stats {
    ddbk_op_stats ops[DDBK_STATS_MAX_OPS];
    int nops;
    ddbk_code_stats codes[DDBK_STATS_MAX_CODES];
    int ncodes;
    uint64_t requests, retries, errors, bytes_out, bytes_in;
    uint64_t retry_delay_ms_total; /* sum of backoff delays chosen */
    uint64_t quota_exhausted;
    /* latency of every HTTP attempt, microseconds */
    uint64_t latency_count;
    double latency_min_us, latency_max_us, latency_mean_us;
    double latency_p50_us, latency_p90_us, latency_p99_us;
} ddbk_stats;

void ddbk_stats_get(const ddbk_client *c, ddbk_stats *out);
void ddbk_stats_reset(ddbk_client *c);
/* For hosts doing their own I/O: record one attempt of `op`. */
void ddbk_stats_record_attempt(ddbk_client *c, const char *op, size_t out_bytes,
                               size_t in_bytes, double latency_us);
void ddbk_stats_record_call(ddbk_client *c, const char *op, int retries,
                            const ddbk_error *final_err);

/* ------------------------------------------------------------------ locks */

/*
 * Leases on one DynamoDB item that only their owner can renew or release,
 * with a fencing token that grows on every acquire. Every operation is one
 * conditional UpdateItem; an outcome the network hid (a timeout, a lost
 * response) is resolved by reading the item back and looking for our own
 * record version, never by guessing. The item stays readable by the Node
 * idempotency adapter: expiresAt is epoch seconds, and a released lock has
 * expiresAt = 0, so its `expiresAt < :nowSec` sees it free.
 *
 * Failures carry ddbk_error codes "busy" (held by someone else when the wait
 * ran out), "lost" (renew found another holder), "not_owner" (the item is not
 * ours to renew or release), or the engine's own codes. These calls block
 * (waits use nanosleep): one lock per thread of a blocking host, or a keeper
 * (below) to renew it from a thread of its own.
 */
typedef struct ddbk_lock_key {
    const char *table;
    const char *pk_name, *pk_value;  /* string-valued partition key */
    const char *sk_name, *sk_value;  /* sort key, or both NULL */
} ddbk_lock_key;

typedef struct ddbk_lock_opts {
    long lease_ms;             /* > 0 */
    long wait_ms;              /* 0: a single try */
    long max_clock_skew_ms;    /* margin when judging expiry by wall clock */
    /* NULL, or a buffer that a failed acquire fills with the raw response
     * body (DynamoDB JSON with an "Item" object) in which it last saw the
     * item: the failed condition's old item, or the read-back after an
     * ambiguous failure. Reset on entry; left empty when the item was not
     * seen (or did not fit under the buffer's cap) and on success. Last, so
     * that {lease, wait, skew} initialisers leave it NULL. */
    ddbk_buf *busy_item;
} ddbk_lock_opts;

/* The holder of a lock as the item last showed it. */
typedef struct ddbk_lock_holder {
    int known;
    char owner[96];
    char rvn[40];
    int64_t fence;
    int64_t expires_at;        /* epoch seconds */
    long lease_ms;
} ddbk_lock_holder;

typedef struct ddbk_lock {
    ddbk_buf target;           /* "TableName":...,"Key":{...} as JSON, reused by each call */
    char pk_name[256];
    char owner[96];            /* unique per process and handle */
    char rvn[40];              /* record version of the current lease */
    int64_t fence;
    int64_t expires_at;        /* epoch seconds */
    long lease_ms, skew_ms;
    double lease_start_mono_ms;  /* when the current lease's request was sent */
    int held;
} ddbk_lock;

int ddbk_lock_acquire(ddbk_client *c, const ddbk_lock_key *key,
                      const ddbk_lock_opts *opts, ddbk_lock *out,
                      ddbk_lock_holder *holder, ddbk_error *err);
/* lease_ms 0 keeps the current lease length. */
int ddbk_lock_renew(ddbk_client *c, ddbk_lock *l, long lease_ms, ddbk_error *err);
int ddbk_lock_release(ddbk_client *c, ddbk_lock *l, ddbk_error *err);
/* How long the lease is safely ours: its length, minus the time since its
 * request was sent (monotonic clock), minus the skew margin; 0 when not held. */
long ddbk_lock_valid_ms(const ddbk_lock *l);
/* Appends to out the members a write on a guarded item adds to its request
 * so that holders older than this one are rejected:
 *   "ConditionExpression":"attribute_not_exists(#ddbkit_fence) OR
 *   #ddbkit_fence <= :ddbkit_fence","ExpressionAttributeNames":{...},
 *   "ExpressionAttributeValues":{...}
 * with attr (e.g. "fence") as the guarded attribute. The write should also
 * SET attr = :ddbkit_fence. Returns 0, or -1 when attr is not valid UTF-8
 * or memory runs out (out is then unchanged). */
int ddbk_lock_fence_condition(const ddbk_lock *l, const char *attr, ddbk_buf *out);

/* The caller's own write ended the lease (for example a TransactWriteItems
 * that released the lock item together with other writes): the handle stops
 * claiming it, so renew and release answer without a request. */
void ddbk_lock_mark_released(ddbk_lock *l);

/* Frees the handle's memory; does not release the lock. */
void ddbk_lock_free(ddbk_lock *l);

/*
 * A keeper renews a lock from a thread of its own, so a lease outlives a slow
 * piece of work in a host that blocks (the work cannot stop to renew). The
 * thread renews on a clone of the client (ddbk_client_clone): the caller
 * keeps using its own client meanwhile.
 */
typedef struct ddbk_lock_keeper ddbk_lock_keeper;

/* Starts a thread that renews l (ddbk_lock_renew with lease_ms 0) every
 * period_ms on a clone of c, so a lease outlives a slow piece of work in a
 * host that blocks. Until ddbk_lock_keep_stop returns, the lock belongs to
 * the keeper: the caller must not touch l. period_ms must be > 0 and l held,
 * else NULL with err code "InvalidArgument". Choose a period well inside the
 * lease, so that a failed renewal can be retried before it runs out. */
ddbk_lock_keeper *ddbk_lock_keep(const ddbk_client *c, ddbk_lock *l, long period_ms,
                                 ddbk_error *err);
/* Stops the thread (promptly: it waits on a condition variable, not a sleep;
 * a renewal already in flight is let finish, so l is whole again), joins it
 * and frees the keeper. Returns 0 when the last renewal it tried succeeded
 * (or none was due), else -1 with err = that renewal's failure: "lost" and
 * "not_owner" end the keeping at once; transient failures (timeouts, 5xx,
 * connection errors) are retried at the next period, and if a later renewal
 * succeeds the return is 0 again. *renewals (may be NULL) = successful
 * renewals. */
int ddbk_lock_keep_stop(ddbk_lock_keeper *k, long *renewals, ddbk_error *err);

#ifdef __cplusplus
}
#endif
#endif
