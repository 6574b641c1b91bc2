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
 * so a host with its own event loop can do the network I/O itself; or it
 * lets the engine's event loop (ddbk_loop_*) run many calls at once.
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
 *   "UnknownError" (any other non-2xx without a __type), "Cancelled" (a call
 *   of an event loop freed before the call ended, or a lock keeper's renewal
 *   cut by ddbk_lock_keep_stop).
 * `message` never contains credentials. */
typedef struct ddbk_error {
    char code[96];
    char message[512];
    long status;        /* HTTP status, 0 when no response arrived */
    int retryable;      /* 1 when the standard retry mode would retry it */
    int throttling;     /* 1 for throttling errors (affects backoff only) */
    int timeout;        /* 1 for a transport timeout (retry quota costs 10) */
    char request_id[96];
    /* 1 when the call may have been carried out though no answer said so:
     * a request of one of its attempts was sent and its answer was lost (a
     * connection closed or reset before the whole response, a timeout
     * after sending, an oversized response), or was answered with a 5xx
     * (the service failed; a write may still have been applied). On a
     * failure the engine retried, it stays set on the final error, so a
     * ConditionalCheckFailedException then may have failed on the call's
     * own earlier write. 0 when no request was sent or every attempt got
     * a 2xx or 4xx. The owner of the item resolves it (a read-back, a
     * token of its own in the item); the engine never guesses. */
    int ambiguous;
} ddbk_error;

void ddbk_error_clear(ddbk_error *e);
void ddbk_error_set(ddbk_error *e, const char *code, long status,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------ error codes */

/* The codes a caller compares, by name: err.code is a string (the Lua
 * binding hands the same text to Lua), so these are its exact spellings,
 * never renamed once published. ddbk_error_is(&err, DDBK_ERR_LOST) reads as
 * strcmp(err.code, "lost") == 0. */
#define DDBK_ERR_TIMEOUT "Timeout"
#define DDBK_ERR_CONNECTION "ConnectionError"
#define DDBK_ERR_INVALID_ARGUMENT "InvalidArgument"
#define DDBK_ERR_MISSING_CREDENTIALS "MissingCredentials"
#define DDBK_ERR_CREDENTIALS "CredentialsError" /* a provider failed and nothing usable is left */
#define DDBK_ERR_MISSING_REGION "MissingRegion"
#define DDBK_ERR_RESPONSE_TOO_LARGE "ResponseTooLarge"
#define DDBK_ERR_MALFORMED_RESPONSE "MalformedResponse"
#define DDBK_ERR_OUT_OF_MEMORY "OutOfMemory"
#define DDBK_ERR_ENTITY_TOO_LARGE "RequestEntityTooLarge"
#define DDBK_ERR_UNKNOWN "UnknownError"
#define DDBK_ERR_CANCELLED "Cancelled"
/* DynamoDB's own, as the engine reports it (namespace stripped). */
#define DDBK_ERR_CONDITION_FAILED "ConditionalCheckFailedException"
/* Locks (below). */
#define DDBK_ERR_BUSY "busy"
#define DDBK_ERR_LOST "lost"
#define DDBK_ERR_NOT_OWNER "not_owner"

/* 1 when e's code is `code` (one of the above, or any DynamoDB name). */
int ddbk_error_is(const ddbk_error *e, const char *code);

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
    const char *ca_file;           /* CA bundle (PEM); else AWS_CA_BUNDLE, else the
                                      system's; for DynamoDB and the credential
                                      services. Checked readable at creation
                                      ("InvalidArgument" naming the path) */
    int use_fips;                  /* default endpoint: dynamodb-fips.<region>...;
                                      -1 (default) = AWS_USE_FIPS_ENDPOINT */
    int use_dualstack;             /* default endpoint: ....api.aws (IPv4 and IPv6);
                                      -1 (default) = AWS_USE_DUALSTACK_ENDPOINT;
                                      the environment's counts when "true" in any
                                      case. An explicit endpoint wins over both */
    int credentials_from_host;     /* 1: the host sets credentials itself
                                      (ddbk_client_set_credentials), no chain */
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

/* -------------------------------------------------------------- credentials */

/*
 * Where a client's credentials come from is decided when it is made, in the
 * AWS SDKs' order: the config's keys; the environment (AWS_ACCESS_KEY_ID,
 * ...); web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, via STS);
 * the profile of the shared files (static keys, role_arn with source_profile
 * or credential_source, web_identity_token_file, credential_process, SSO);
 * the container endpoint (ECS, EKS Pod Identity); EC2 instance metadata
 * (IMDSv2). Temporary credentials are fetched when first needed and
 * refreshed before they expire: ddbk_call fetches in the caller's thread
 * (blocking), the event loop on its own sockets; a request is never signed
 * with expired credentials. A failed refresh keeps the old ones while they
 * last and tries again with backoff.
 */
typedef struct ddbk_credentials_info {
    char provider[32];      /* "config", "environment", "web-identity", "profile",
                               "assume-role", "process", "sso", "container",
                               "imds", "host" */
    char profile[64];       /* the profile they came from, "" when none */
    int64_t expires_at;     /* epoch seconds; 0 when they do not expire or none yet */
    int64_t refresh_at;     /* epoch seconds of the next refresh; 0 when none */
    uint64_t fetches;       /* fetches that gave credentials */
    uint64_t failures;      /* fetches that failed */
    char last_error[256];   /* the last failure's code and message, "" when none */
} ddbk_credentials_info;

/* Fills out; never the secret. 0, or -1 when c or out is NULL. Shared with
 * the client's clones: the counts are theirs too. */
int ddbk_client_credentials(const ddbk_client *c, ddbk_credentials_info *out);

/* For a client made with credentials_from_host: installs credentials the
 * host fetched (token may be NULL; expires_at epoch seconds, 0 = never),
 * for the client and its clones. -1 with err ("InvalidArgument") on an
 * empty or control-character value, on credentials that have expired, or on
 * a client whose credentials come from the chain (its next refresh would
 * replace them without a word). Thread-safe against the client's clones
 * signing meanwhile. */
int ddbk_client_set_credentials(ddbk_client *c, const char *access_key_id,
                                const char *secret_access_key, const char *session_token,
                                int64_t expires_at, ddbk_error *err);

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
 * cached per day, region, service and access key id). Signs with the
 * credentials the client's cell holds (copied when they changed); never with
 * expired ones: then -1 with "CredentialsError" (the provider and its last
 * failure) or "MissingCredentials" (nothing fetched or set yet). It does not
 * fetch: ddbk_call and the event loop do, before they prepare. */
int ddbk_prepare(ddbk_client *c, const char *op, const char *body,
                 size_t body_len, int64_t time_s, ddbk_request *out,
                 ddbk_error *err);

/* -------------------------------------------------------------------- parse */

/* Classifies a response. Returns 0 for a 2xx status; otherwise -1 with err
 * filled: code from __type (namespace stripped) and message from "message" or
 * "Message"; a 413 or a body without __type gets an engine code; a 5xx is
 * ambiguous (err->ambiguous), since a write may have landed. The caller
 * keeps the body for the extra fields (Item, CancellationReasons). */
int ddbk_parse(long status, const char *request_id, const char *body,
               size_t body_len, ddbk_error *err);

/* Fills err for a transport failure (what curl or a socket reported):
 * retryable, and ambiguous 0; a host doing its own I/O sets err->ambiguous
 * when the request had been sent. */
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
    /* 1 when an earlier attempt of the call was sent and its answer lost
     * (err->ambiguous's case) though the call then succeeded: a write that
     * is not idempotent (ADD, a list append) may have been applied more
     * than once. */
    int ambiguous;
} ddbk_response;

void ddbk_response_init(ddbk_response *r);
void ddbk_response_free(ddbk_response *r);

/* Does the whole call: prepare, send (libcurl, keep-alive), parse, and retry
 * with backoff (blocking sleep). Returns 0 on success with resp->body holding
 * the result; -1 with err filled, resp->body holding the error body if any. */
int ddbk_call(ddbk_client *c, const char *op, const char *body,
              size_t body_len, ddbk_response *resp, ddbk_error *err);

/* ---------------------------------------------------------- the event loop */

/*
 * Many calls in flight at once on one thread, for a host with its own event
 * loop (a game server, a coroutine scheduler). Each call is ddbk_call's
 * call: the same request, the same retries (standard mode, the client's
 * quota), the same errors and the same stats; only the waiting differs. A
 * transfer is a socket of the loop's curl multi handle, whose connection
 * cache is the keep-alive pool of all its calls; a backoff is a timer of the
 * loop, never a sleep; each attempt is signed afresh when it starts.
 *
 * A loop is single-threaded: every function below, and every client a call
 * uses, belongs to the thread that drives the loop. Nothing happens between
 * steps: the host calls ddbk_loop_step, either with its own timeout or, from
 * its own poll/epoll, with 0 whenever a descriptor of ddbk_loop_fds is ready
 * or its timeout has run out.
 */
typedef struct ddbk_loop ddbk_loop;
struct pollfd; /* <poll.h> */

/* A loop with nothing in flight. NULL with err ("OutOfMemory",
 * "ConnectionError" when libcurl cannot start) on failure. */
ddbk_loop *ddbk_loop_new(ddbk_error *err);

/* Cancels every call in flight, then frees the loop: each of their callbacks
 * runs once, here, with resp NULL and err code "Cancelled" (counted in the
 * client's stats as a failed call). Such a callback may not use the loop
 * (a submit fails). Called from a callback of ddbk_loop_step or
 * ddbk_loop_cancel, the loop is freed when that step or cancel ends. NULL is
 * a no-op. */
void ddbk_loop_free(ddbk_loop *loop);

/* How a call ends; runs exactly once per submitted call.
 *   err: NULL on success (a 2xx); else the failure exactly as ddbk_call
 *        would report it (code, message, status, retryable, timeout, ambiguous,
 *        request_id), or code "Cancelled" from ddbk_loop_cancel or
 *        ddbk_loop_free.
 *   resp: the last attempt's response (status, body, request_id, attempts,
 *        ambiguous),
 *        valid during the callback only; NULL when that attempt got no whole
 *        response (a transport error, "ResponseTooLarge", a cancel). The body
 *        of an error response is there: ConditionalCheckFailedException's
 *        ALL_OLD Item, a transaction's CancellationReasons.
 * A callback may submit new calls on its loop (sent from the next step on)
 * and may free its loop; it must not call ddbk_loop_step. */
typedef void (*ddbk_done_fn)(void *ud, const ddbk_response *resp, const ddbk_error *err);

/* Submits one call of operation op (as ddbk_call: "GetItem") with the JSON
 * body (len bytes, copied; NULL means "{}") for client c. The first attempt
 * is signed now and handed to curl; it is sent during the next step. cb(ud,
 * ...) runs exactly once, from inside ddbk_loop_step, ddbk_loop_cancel or
 * ddbk_loop_free.
 * Returns 0; or -1 with err when nothing was submitted (cb will not run):
 * "InvalidArgument" (a bad op, counted in the stats as ddbk_call counts it,
 * or a missing argument), "OutOfMemory", or the credentials' error when c
 * has none usable and none are being fetched (a failed fetch's backoff). c
 * must outlive its calls in flight; a client may have calls in several
 * loops, not in several threads.
 * Credentials: a call whose client's credentials are due for a refresh
 * starts it on the loop (one per client and its clones) and goes on with the
 * old ones; a call whose credentials are expired or not fetched yet waits
 * (submitted, not sent) for the refresh, then goes on or fails with its
 * error. A credential_process runs blocking (in the submit or step that
 * starts it), up to its timeout. */
int ddbk_loop_submit(ddbk_loop *loop, ddbk_client *c, const char *op, const char *body,
                     size_t len, ddbk_done_fn cb, void *ud, ddbk_error *err);

/* Waits at most timeout_ms (0: not at all; < 0: until something happens,
 * but not at all when nothing is in flight) for a socket or a timer of the
 * loop, then does everything ready: reads and writes, retries whose backoff
 * ran out, and the callbacks of the calls that finished, in the order they
 * finished. Waits even with nothing in flight, so a host's timers can sleep
 * here. Returns the number of calls still in flight (backoffs included, and
 * a credentials refresh the loop runs, counted as one), or
 * -1 with err ("UnknownError", "OutOfMemory": the loop itself failed; the
 * callbacks of calls that finished have still run), or -1 with
 * "InvalidArgument" when called from one of the loop's callbacks. */
int ddbk_loop_step(ddbk_loop *loop, long timeout_ms, ddbk_error *err);

/* For a host that polls itself: fills fds[0..max) with the sockets the loop
 * waits on (fd and events POLLIN / POLLOUT; revents 0) and *timeout_ms
 * (may be NULL) with how long the host may wait before calling
 * ddbk_loop_step(loop, 0) even if no socket is ready: -1 when nothing is in
 * flight, 0 when now; retry backoffs and curl's own timeouts included.
 * Returns the number of sockets (when it is more than max, only max were
 * written: call again with more room), or -1 (bad arguments, or the loop
 * failed to track a socket). The set changes at every step and cancel: ask
 * again after each. Costs a copy of the set, no system call. */
int ddbk_loop_fds(ddbk_loop *loop, struct pollfd *fds, int max, long *timeout_ms);

/* Calls in flight: submitted and not yet called back, plus the credentials
 * refreshes the loop runs (0 for NULL). */
int ddbk_loop_pending(const ddbk_loop *loop);

/* Cancels the calls submitted with ud whose callbacks have not run: a
 * transfer on the wire is stopped (its connection closed), a backoff or a
 * queued call is dropped, and a call that finished in the step now running
 * loses its turn. Each callback runs once, here, with resp NULL and err code
 * "Cancelled", so ud may be freed once this returns. The stats count a
 * stopped call as a failed call, and the attempt it cut as a request when
 * that request had been sent; a call that had finished keeps its real
 * outcome there. A callback may
 * submit, cancel or free the loop (freed when the cancel ends), not step it.
 * A request already sent may still have been carried out by DynamoDB:
 * cancelling stops the waiting, not the write, and err->ambiguous says so
 * (set when a request of the call was sent and not answered, or the call
 * had already succeeded). Returns the number cancelled
 * (0: none had ud, or loop is NULL). The set of sockets changes: ask
 * ddbk_loop_fds again. */
int ddbk_loop_cancel(ddbk_loop *loop, void *ud);

/* -------------------------------------------------------------------- stats */

/* Counts kept per client, for every call made through it (and for the
 * attempts a host reports with ddbk_stats_record when it does its own I/O). */
#define DDBK_STATS_MAX_OPS 32
#define DDBK_STATS_MAX_CODES 32

typedef struct ddbk_op_stats {
    char op[40];
    uint64_t calls;      /* logical calls */
    uint64_t requests;   /* HTTP attempts: each sends the request at most once
                          * (curl's own resend is refused, the retry policy
                          * decides), so every request DynamoDB may have got
                          * is counted; an attempt whose connection failed
                          * counts too, one a cancel cut before sending not */
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
 * record version, never by guessing. When the read-back is lost too, the
 * renewal fails and the handle keeps its old version, but remembers the one
 * that renewal sent (the last 4 such): a later renew or release that finds
 * our owner with one of them adopts it as our own write and goes on from
 * it, instead of reporting the lock taken over by ourselves. The item stays readable by the Node
 * idempotency adapter: expiresAt is epoch seconds, and a released lock has
 * an expiresAt a second or more in the past (the release's wall clock less
 * the skew margin), so its `expiresAt < :nowSec` sees it free at once and
 * DynamoDB's TTL on expiresAt deletes it later. A fresh item's fence starts
 * from the wall clock (ms x 1000), so the fences of an item created after
 * the previous one was deleted are above all the old ones.
 *
 * Failures carry ddbk_error codes DDBK_ERR_BUSY (held by someone else when
 * the wait ran out), DDBK_ERR_LOST (renew found another holder),
 * DDBK_ERR_NOT_OWNER (the item is not ours to renew or release),
 * DDBK_ERR_MALFORMED_RESPONSE (an answer that proved nothing, and a read-back
 * that could not settle it), or the engine's own codes. These calls block
 * (waits use nanosleep): one lock per thread of a blocking host, or a keeper
 * (below) to renew it from a thread of its own. A host with an event loop
 * runs the same protocol without blocking through ddbk_lock_op (below).
 *
 * A lock is an opaque handle: a keeper's thread writes it while the caller
 * may read it, so every read goes through a function below that takes the
 * handle's own mutex.
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
    /* An item no ddbkit lock ever held (no lockOwner and no releasedRvn:
     * the Node idempotency adapter's lock, which nobody renews or fences)
     * is taken only once it expired more than this many ms (plus the skew
     * margin) ago; 0 takes it as the Node adapter does. */
    long foreign_grace_ms;
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

typedef struct ddbk_lock ddbk_lock;

/* A lock's state at one instant, copied out whole (never torn by a renewal
 * in flight on a keeper's thread). */
typedef struct ddbk_lock_info {
    char owner[96];            /* unique per process and handle */
    char rvn[40];              /* record version of the current lease */
    int64_t fence;             /* the fencing token of this acquire */
    int64_t expires_at;        /* epoch seconds */
    long lease_ms;
    int held;                  /* 0 once released, lost or marked released */
    long valid_ms;             /* ddbk_lock_valid_ms at that instant */
} ddbk_lock_info;

/* On success (0) *out is a new handle holding the lease, the caller's to
 * free with ddbk_lock_free; on failure (-1 with err) *out is NULL. */
int ddbk_lock_acquire(ddbk_client *c, const ddbk_lock_key *key,
                      const ddbk_lock_opts *opts, ddbk_lock **out,
                      ddbk_lock_holder *holder, ddbk_error *err);
/* lease_ms 0 keeps the current lease length. */
int ddbk_lock_renew(ddbk_client *c, ddbk_lock *l, long lease_ms, ddbk_error *err);
int ddbk_lock_release(ddbk_client *c, ddbk_lock *l, ddbk_error *err);
/* How long the lease is safely ours: its length, minus the time since its
 * request was sent (monotonic clock), minus the skew margin; 0 when not held. */
long ddbk_lock_valid_ms(const ddbk_lock *l);
/* The handle's state now (see ddbk_lock_info). Safe from any thread while a
 * keeper renews the handle; the others are too. */
void ddbk_lock_info_get(const ddbk_lock *l, ddbk_lock_info *out);
/* 1 while the handle claims its lease, 0 after a release, a renewal that
 * found it lost, or ddbk_lock_mark_released. */
int ddbk_lock_held(const ddbk_lock *l);
/* The fencing token of this acquire (fixed for the handle's life). */
int64_t ddbk_lock_fence(const ddbk_lock *l);
/* The owner string written into the item (fixed for the handle's life; the
 * pointer lives as long as the handle). */
const char *ddbk_lock_owner(const ddbk_lock *l);
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

/* Frees the handle (NULL is a no-op); does not release the lock. Not while
 * a keeper or an operation still uses it. */
void ddbk_lock_free(ddbk_lock *l);

/*
 * The same operations without I/O, for a host with its own event loop: an
 * operation says what to do next (send one request, sleep, or stop) and is
 * fed each request's outcome. The three calls above are drivers over it
 * (ddbk_call and nanosleep), so both ways behave alike, request for request.
 * An operation reads the wall and monotonic clocks and draws random record
 * versions itself. Its requests go to the client's own retry loop (ddbk_call
 * or an event loop's equivalent): the machine only adds the read-back after
 * an ambiguous failure and, for acquire, the waits between contended tries.
 *
 *   ddbk_lock *lock;
 *   ddbk_lock_op *op = ddbk_lock_op_acquire(&key, &opts, &lock, &err);
 *   if (!op) return -1;
 *   int what = ddbk_lock_op_next(op, NULL, 0, NULL, &nx);
 *   while (what != DDBK_LOCK_DONE) {
 *       if (what == DDBK_LOCK_SEND) {      (an event loop: submit, return, resume here)
 *           int r = ddbk_call(c, nx.op, nx.body, nx.body_len, &resp, &cerr);
 *           what = ddbk_lock_op_next(op, resp.body.data, resp.body.len, r ? &cerr : NULL, &nx);
 *       } else {                           (an event loop: a timer of nx.sleep_ms)
 *           nap(nx.sleep_ms);
 *           what = ddbk_lock_op_next(op, NULL, 0, NULL, &nx);
 *       }
 *   }
 *   int rc = ddbk_lock_op_result(op, &holder, &err);
 *   ddbk_lock_op_free(op);
 */
typedef struct ddbk_lock_op ddbk_lock_op;

enum { DDBK_LOCK_SEND = 1, DDBK_LOCK_SLEEP, DDBK_LOCK_DONE };

typedef struct ddbk_lock_next {
    int what;                  /* DDBK_LOCK_SEND, DDBK_LOCK_SLEEP or DDBK_LOCK_DONE */
    const char *op;            /* SEND: "UpdateItem" or "GetItem" */
    const char *body;          /* SEND: the JSON body, the op's own until its next step */
    size_t body_len;
    long sleep_ms;             /* SLEEP: how long (>= 0, rounded up to whole ms) */
} ddbk_lock_next;

/* Each returns a new operation, or NULL with err when it is decided before
 * any request: a bad option or key ("InvalidArgument"), a handle no longer
 * held (renew: DDBK_ERR_LOST, release: DDBK_ERR_NOT_OWNER), "OutOfMemory".
 * Acquire makes a new handle at once into *out (NULL when the operation is
 * NULL): the caller's to free with ddbk_lock_free, after the operation;
 * it holds the lease once the operation succeeded, and nothing otherwise.
 * l and opts->busy_item are borrowed and written by the operation (both
 * must outlive it); opts itself is copied. lease_ms 0 keeps the current
 * lease length. */
ddbk_lock_op *ddbk_lock_op_acquire(const ddbk_lock_key *key, const ddbk_lock_opts *opts,
                                   ddbk_lock **out, ddbk_error *err);
ddbk_lock_op *ddbk_lock_op_renew(ddbk_lock *l, long lease_ms, ddbk_error *err);
ddbk_lock_op *ddbk_lock_op_release(ddbk_lock *l, ddbk_error *err);

/* The next step, also returned as next->what. Call it first with body NULL
 * and call_err NULL; after a SEND with that request's outcome exactly as
 * ddbk_call reports it: call_err NULL and the success body, or call_err and
 * the error response's body (NULL / 0 when no response arrived); after a
 * SLEEP with both NULL once the time has passed. After DONE it answers DONE
 * again. Costs a JSON parse of a response at most; no I/O, no waiting. */
int ddbk_lock_op_next(ddbk_lock_op *op, const char *body, size_t body_len,
                      const ddbk_error *call_err, ddbk_lock_next *next);

/* After DONE: 0, or -1 with err as the blocking calls report it; holder
 * (may be NULL) as the item last showed it (acquire; zeroed otherwise).
 * Before DONE: -1, "InvalidArgument". */
int ddbk_lock_op_result(const ddbk_lock_op *op, ddbk_lock_holder *holder, ddbk_error *err);

/* Frees the operation (NULL is a no-op). One abandoned before DONE leaves
 * its lock as it was (renew, release: l keeps the lease it had, though the
 * write in flight may have landed, so the lease's state is then unknown; an
 * abandoned renewal's version is remembered as above) or
 * empty (acquire: *out holds nothing, and is still the caller's to free; a
 * lease the write may have taken runs out by itself). */
void ddbk_lock_op_free(ddbk_lock_op *op);

/*
 * A keeper renews a lock from a thread of its own, so a lease outlives a slow
 * piece of work in a host that blocks (the work cannot stop to renew). The
 * thread renews on a clone of the client (ddbk_client_clone): the caller
 * keeps using its own client meanwhile, and ddbk_lock_keep_stop adds the
 * clone's requests to the caller's client's stats (so they show in
 * ddbk_stats_get once the keeper is stopped, not while it runs: the caller's
 * client is not locked, and the thread must not write it).
 */
typedef struct ddbk_lock_keeper ddbk_lock_keeper;

/* Starts a thread that renews l (ddbk_lock_renew with lease_ms 0) every
 * period_ms on a clone of c, so a lease outlives a slow piece of work in a
 * host that blocks. Until ddbk_lock_keep_stop returns, the lock belongs to
 * the keeper: the caller may read it (ddbk_lock_info_get, ...), must not
 * renew, release or free it; c must outlive the keeper. period_ms must be
 * > 0 and shorter than l's lease (a renewal due at or after the lease ends
 * comes too late), and l held, else NULL with err code "InvalidArgument"
 * naming what was wrong. Choose a period well inside the lease (a third of
 * it, say), so that a failed renewal can be tried again before it runs out.
 *
 * The keeper's requests differ from c's in two limits, which bound how long
 * a stop can take: each attempt is cut at min(c's timeout_ms, max(period_ms,
 * 1000 ms)), and a request makes at most 3 attempts (fewer when c allows
 * fewer). */
ddbk_lock_keeper *ddbk_lock_keep(ddbk_client *c, ddbk_lock *l, long period_ms,
                                 ddbk_error *err);
/* Stops the thread, joins it, adds its requests to the stats of the client
 * the keeper was started with (call it on the thread that uses that client)
 * and frees the keeper. Prompt: the thread waits on a condition variable,
 * not a sleep, and checks for a stop between the attempts of a renewal, so
 * a stop waits at most for the one attempt on the wire (the limit above:
 * with the defaults, 1 s for periods up to 1 s, the period up to 3 s, then
 * 3 s), never for a whole retry chain or read-back. A renewal cut that way
 * is abandoned: l keeps the lease it had (and remembers the cut renewal's
 * record version, should its write have landed), and the return is -1 with
 * code "Cancelled". Otherwise returns 0 when the last renewal it tried
 * succeeded (or none was due), else -1 with err = that renewal's failure:
 * "lost" and "not_owner" end the keeping at once; transient failures
 * (timeouts, 5xx, connection errors) are retried at the next period, and
 * if a later renewal succeeds the return is 0 again. *renewals (may be
 * NULL) = successful renewals. DDBK_ERR_LOST and DDBK_ERR_NOT_OWNER are the
 * final ones. */
int ddbk_lock_keep_stop(ddbk_lock_keeper *k, long *renewals, ddbk_error *err);

#ifdef __cplusplus
}
#endif
#endif
