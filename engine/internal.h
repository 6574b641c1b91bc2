/*
 * Engine-private declarations shared between engine files. Nothing here is
 * part of the public API: symbols use the ddbk__ prefix (two underscores) and
 * hidden visibility, so they never leak out of libddbkit.so.
 */
#ifndef DDBKIT_INTERNAL_H
#define DDBKIT_INTERNAL_H

#include <pthread.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "ddbkit.h"

#define DDBK_HIDDEN __attribute__((visibility("hidden")))

/* Bounded string assembly for the per-request path, where snprintf's format
 * parsing used to cost more than the SHA-256 work itself. Each appends n
 * bytes of src to dst[*len] if they fit below cap (keeping a terminator) and
 * returns 0; otherwise it appends nothing and returns -1. Callers chain them
 * with |, so one check covers a whole line. */
static inline int ddbk__cat(char *dst, size_t cap, size_t *len, const char *src,
                            size_t n)
{
    if (n >= cap - *len)
        return -1;
    memcpy(dst + *len, src, n);
    *len += n;
    dst[*len] = '\0';
    return 0;
}

static inline int ddbk__cats(char *dst, size_t cap, size_t *len, const char *src)
{
    return ddbk__cat(dst, cap, len, src, strlen(src));
}

/* dst = src cut to what fits in cap (NULL copies as ""). */
static inline void ddbk__copy(char *dst, size_t cap, const char *src)
{
    size_t len = 0;
    dst[0] = '\0';
    if (src)
        ddbk__cat(dst, cap, &len, src, strnlen(src, cap - 1));
}

/* UNITTEST marks a function `static` in the library but visible to the C
 * unit tests, which compile the engine with -DDDBK_UNITTEST. */
#ifdef DDBK_UNITTEST
#define UNITTEST
#else
#define UNITTEST static
#endif

#ifdef DDBK_UNITTEST
/* When set, what ddbk_random returns: a test fixes a backoff's jitter draw
 * instead of working around its chance. Absent from the library. */
extern double (*ddbk__test_random)(void);
#endif

/* ------------------------------------------------------------- sigv4.c */

/* The signing key for one (date, region, service), cached so a client derives
 * it once a day instead of four HMACs per request. Wiped when replaced. */
typedef struct ddbk_sigv4_key {
    char date[9];             /* YYYYMMDD */
    char region[64];
    char service[64];
    char key_id[128];         /* the access key id it was derived for */
    unsigned char key[32];
    int valid;
} ddbk_sigv4_key;

typedef struct ddbk_sigv4_out {
    char signature[65];       /* lowercase hex */
    char authorization[512];  /* the whole Authorization header value */
} ddbk_sigv4_out;

/* Signs a canonical request the caller built itself (ddbk_prepare does, for
 * DynamoDB's fixed header set); signed_headers is its
 * "content-type;host;..." line. md is a digest context the caller keeps
 * between requests (allocating one per request showed in profiles). Checks
 * the keys, date and scope; the key cache is refreshed when the day, region
 * or service changed. Returns 0, or -1 with err. The generic canonicaliser
 * the AWS vectors test (tests/c/sigv4_canon.c) signs through the same
 * path, and test_sigv4 holds both to the same output. */
DDBK_HIDDEN int ddbk__sigv4_sign_canonical(EVP_MD_CTX *md,
                                           const char *canonical, size_t len,
                                           const char *signed_headers,
                                           const char *access_key_id,
                                           const char *secret_access_key,
                                           const char *region, const char *service,
                                           const char *amz_date,
                                           ddbk_sigv4_key *cache,
                                           ddbk_sigv4_out *out, ddbk_error *err);
/* ddbk__sigv4_sign_canonical with the signed-headers line given by length
 * (not terminated) and the string to sign written to sts_text, for the
 * generic canonicaliser. */
#define DDBK_SIGV4_STS_MAX 320
DDBK_HIDDEN int ddbk__sigv4_finish(EVP_MD_CTX *md, const char *canonical, size_t len,
                                  const char *signed_headers, size_t sh_len,
                                  const char *access_key_id, const char *secret_access_key,
                                  const char *region, const char *service,
                                  const char *amz_date, ddbk_sigv4_key *cache,
                                  char sts_text[DDBK_SIGV4_STS_MAX], ddbk_sigv4_out *out,
                                  ddbk_error *err);
/* The cache is keyed by date, region, service and access key id (a key id
 * longer than key_id is never cached): rotated credentials get a new key
 * even if a caller forgot to wipe the cache (prepare.c does, on a change). */
DDBK_HIDDEN void ddbk__sigv4_key_wipe(ddbk_sigv4_key *k);
/* "20150830T123600Z" from epoch seconds. */
DDBK_HIDDEN void ddbk__amz_date(int64_t t, char out[17]);
/* Lowercase hex SHA-256 of data, with the caller's digest context md, or a
 * one-shot one when md is NULL. */
DDBK_HIDDEN void ddbk__sha256_hex(EVP_MD_CTX *md, const void *data, size_t len,
                                  char out[65]);

/* -------------------------------------------------------- credentials.c */

typedef struct ddbk_credentials {
    char *access_key_id;      /* heap; wiped and freed by ddbk__credentials_wipe */
    char *secret_access_key;
    char *session_token;      /* NULL when none */
    char source[32];          /* "config", "environment", "profile:<name>" (truncated) */
} ddbk_credentials;

/* Resolves credentials: explicit config, then AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then the shared credentials file
 * (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials) and config file
 * (AWS_CONFIG_FILE or ~/.aws/config) for the profile (cfg->profile,
 * AWS_PROFILE, or "default"). Fails with code "MissingCredentials". */
DDBK_HIDDEN int ddbk__credentials_resolve(const ddbk_config *cfg,
                                          ddbk_credentials *out,
                                          ddbk_error *err);
DDBK_HIDDEN void ddbk__credentials_wipe(ddbk_credentials *c);
/* client.c: nanosleep, resumed after signals; nothing for ms <= 0. */
DDBK_HIDDEN void ddbk__sleep_ms(long ms);

/* prepare.c: operation names are CamelCase letters, shorter than 64. */
DDBK_HIDDEN int ddbk__valid_op(const char *op);

/* ddbk_client_clone in two steps, for a keeper thread that may never need
 * its clone's connection: the settings and a reference to the credentials
 * cell (cheap; the cell is thread-safe, and a rotation either fetches
 * reaches both; the rest is independent of src afterwards), then the
 * digest context and the curl handle. A client whose I/O is not open yet
 * may only be freed. */
DDBK_HIDDEN ddbk_client *ddbk__client_copy_settings(const ddbk_client *src, ddbk_error *err);
DDBK_HIDDEN int ddbk__client_open_io(ddbk_client *c, ddbk_error *err);

/* Deep copy of resolved credentials (for ddbk_client_clone): out holds heap
 * copies of its own. -1 when memory runs out (out then holds nothing). */
DDBK_HIDDEN int ddbk__credentials_copy(const ddbk_credentials *src,
                                       ddbk_credentials *out);

/* Resolves the region: cfg->region, AWS_REGION, AWS_DEFAULT_REGION, then the
 * profile's `region` in the config file. Returns 0; -1 when none is set (out
 * left empty; not an error by itself: the client decides); -2 when the one
 * found does not fit in outlen (cutting it would name another region). */
DDBK_HIDDEN int ddbk__region_resolve(const ddbk_config *cfg, char *out,
                                     size_t outlen);

/* ---------------------------------------------------------- lock_item.c */

/* The deepest JSON nesting the engine reads in a response: the Lua
 * decoder's limit (bindings/core/decode.c MAX_FRAMES: 64 tables, each under
 * its AttributeValue wrapper, plus two), well above DynamoDB's 32 levels of
 * M and L with the response and item objects around them. */
#define DDBK__MAX_JSON_DEPTH (2 * 64 + 2)

/* The lock attributes of one item as a response showed them. A string that
 * did not fit (or held a NUL) is kept cut, with its bit in `cut`: it must
 * never compare equal to ours. */
#define DDBK__LOCK_CUT_OWNER 1
#define DDBK__LOCK_CUT_RVN 2
#define DDBK__LOCK_CUT_RELEASED 4

typedef struct ddbk__lock_item {
    int exists;               /* the field was there, an object */
    char owner[96], rvn[40], released[40];
    int cut;
    int have_fence;           /* fence was there, an integer */
    int64_t fence, expires_at;
    long lease_ms;
} ddbk__lock_item;

/* Reads the lock attributes of the object under `field` ("Attributes",
 * "Item") of the response body (len bytes, no terminator needed), with a
 * streaming parser: no tree, depth limited to DDBK__MAX_JSON_DEPTH. Returns
 * 1 when the field is there (out filled), 0 when the body is a JSON object
 * without it, -1 when the body is not a whole JSON object within the depth
 * limit, or the field is not an object (out zeroed: part of a body is no
 * item). Costs one pass over the body and one yajl handle. */
DDBK_HIDDEN int ddbk__lock_item_read(const char *body, size_t len, const char *field,
                                     ddbk__lock_item *out);

/* -------------------------------------------------------------- lock.c */

#define DDBK__LOCK_PENDING 4

/* A lock handle (opaque in ddbkit.h). The operation that runs on it (a
 * keeper's thread, or the caller's) is its only writer; other threads only
 * read, through the accessors. So every write of the lease's state (rvn,
 * expires_at, lease_ms, lease_start_mono_ms, fence, held) happens under mu,
 * as does every read by an accessor; the writer reads without it. owner,
 * pk_name, target and skew_ms are set before the handle is shared. */
struct ddbk_lock {
    pthread_mutex_t mu;
    ddbk_buf target;           /* "TableName":...,"Key":{...} as JSON, reused by each call */
    char pk_name[256];
    char owner[96];            /* unique per process and handle */
    char rvn[40];              /* record version of the current lease */
    int64_t fence;
    int64_t expires_at;        /* epoch seconds */
    long lease_ms, skew_ms;
    double lease_start_mono_ms;  /* when the current lease's request was sent */
    int held;
    /* Renewals this handle sent whose outcome stayed unknown (answer and
     * read-back lost, or the operation abandoned in flight), newest last:
     * an item showing our owner with one of these versions is our own
     * write, adopted by the next renew or release (lock.c, adopt). Emptied
     * by a proven renewal or an adoption, which settle every older one; the
     * oldest is dropped when more than DDBK__LOCK_PENDING pile up. */
    struct ddbk__lock_pending {
        char rvn[40];
        int64_t expires_at;
        long lease_ms;
        double sent;             /* monotonic ms, as lease_start_mono_ms */
    } pending[DDBK__LOCK_PENDING];
    int npending;
};

/* A new handle holding nothing, or NULL when memory runs out. */
DDBK_HIDDEN ddbk_lock *ddbk__lock_new(void);

/* ---------------------------------------------------------------- ini.c */

/* Looks up `key` in section `section` of an AWS shared config/credentials
 * file held in memory. Section names are matched as written between the
 * brackets after trimming ("default", "profile dev"). Comments start with #
 * or ; at line start; keys and values are trimmed; a nested (indented)
 * sub-section line is skipped. Returns 1 and copies the value (NUL-terminated,
 * truncated to outlen-1) when found, 0 when not. With key == NULL it returns
 * 1 when the section exists at all. Never reads past len. */
DDBK_HIDDEN int ddbk__ini_lookup(const char *text, size_t len,
                                 const char *section, const char *key,
                                 char *out, size_t outlen);


/* ------------------------------------------------------------- client */

/* Latency histogram: 8 buckets per power of two of microseconds, so a
 * percentile read from a bucket's middle is within 6.25% of the truth, in
 * constant memory. */
#define DDBK_LAT_SUB 8
#define DDBK_LAT_BUCKETS (32 * DDBK_LAT_SUB)

typedef struct ddbk_stats_state {
    ddbk_stats pub;               /* counters; latency fields filled on read */
    uint64_t lat_hist[DDBK_LAT_BUCKETS];
    double lat_sum_us;
} ddbk_stats_state;

/* The headers of one DynamoDB request, in curl's list type but in memory the
 * client owns, so sending costs no allocation. */
#define DDBK_HDR_LINES 8
#define DDBK_HDR_LINE_MAX 2112

struct ddbk_client {
    char region[64];
    char endpoint[400];           /* scheme://host[:port], no trailing slash */
    char url[420];                /* endpoint + "/" */
    char host[256];               /* Host header value */
    /* Credentials: the cell (cred_cell.c) is shared with the clones and
     * refreshed by whoever finds it due; creds is this client's own copy
     * to sign with, taken again only when the cell's generation changed. */
    struct ddbk__cell *cell;
    struct ddbk__fetched *creds;  /* heap, wiped; its strings NULL until taken */
    uint64_t cred_gen;
    char ca_file[1024];           /* CA bundle (config, AWS_CA_BUNDLE), "" for the system's */
    ddbk_sigv4_key key;           /* cached signing key */
    EVP_MD_CTX *md;               /* reused by every signing */

    long connect_timeout_ms, timeout_ms;
    int max_attempts;
    long base_delay_ms, max_backoff_ms;
    int quota_max, quota;         /* retry quota, standard mode */
    int verify_tls;
    size_t max_response_bytes;

    CURL *curl;                   /* one easy handle: its connection cache is the pool */
    char curl_errbuf[CURL_ERROR_SIZE];
    struct curl_slist hdr_nodes[DDBK_HDR_LINES];
    char hdr_lines[DDBK_HDR_LINES * DDBK_HDR_LINE_MAX]; /* see ddbk__link_headers */

    ddbk_stats_state stats;
};

/* client.c: curl_global_init, once per process. 0, or -1 with err. */
DDBK_HIDDEN int ddbk__curl_init(ddbk_error *err);

/* client.c: how a call stands between its attempts (ddbk_call and each call
 * of the event loop keep one). */
typedef struct ddbk__retries {
    int retries;
    int last_timeout;         /* the last retried attempt had timed out */
    int ambiguous;            /* an attempt was sent and its answer lost */
} ddbk__retries;

#define DDBK__CALL_SUCCEEDED (-2)
#define DDBK__CALL_FAILED (-1)

/* client.c: the end of attempt `attempt` of a call of op, the one place that
 * decides what comes next for ddbk_call and the event loop alike. responded:
 * a response arrived (it is classified with ddbk_parse, filling err), else err
 * already holds the transport failure. Returns DDBK__CALL_SUCCEEDED (quota
 * refunded, call recorded in the stats, err cleared), DDBK__CALL_FAILED (err
 * is the call's final error, recorded; ambiguous when any attempt's answer
 * was lost, r->ambiguous), or the backoff in ms before the next
 * attempt (quota taken, r->retries counted). Does not wait. */
DDBK_HIDDEN long ddbk__attempt_settle(ddbk_client *c, const char *op, int attempt,
                                      int responded, const ddbk_response *resp,
                                      ddbk__retries *r, ddbk_error *err);

/* transport.c: one HTTP attempt of a prepared request, recorded in the
 * stats. Returns 0
 * when a response arrived (any status) with status and body filled; -1 with
 * a transport error otherwise. */
DDBK_HIDDEN int ddbk__transport_send(ddbk_client *c, const char *op,
                                     const ddbk_request *req,
                                     ddbk_response *resp, ddbk_error *err);
DDBK_HIDDEN int ddbk__transport_open(ddbk_client *c, ddbk_error *err);
DDBK_HIDDEN void ddbk__transport_close(ddbk_client *c);

/* transport.c: the pieces of one attempt, shared by ddbk__transport_send and
 * the event loop (loop.c), so both send the same request the same way. */

/* Where curl's callbacks put a response; overflow: it passed body.max.
 * sends: how many times curl began to send the request (0 or 1: a second
 * send is refused, and resend_refused set, see on_prereq). */
typedef struct ddbk__sink {
    ddbk_response *resp;
    int overflow;
    int sends;
    int resend_refused;
} ddbk__sink;

/* Sets every option a request of c needs on h: no signals, TCP options, c's
 * timeouts and TLS verification, the body and header callbacks, c's URL,
 * POST, http(s) only, and errbuf (CURL_ERROR_SIZE bytes) for curl's
 * messages. Overwrites what an earlier user of h set. */
DDBK_HIDDEN void ddbk__easy_config(CURL *h, const ddbk_client *c, char *errbuf);
/* Writes req's headers as curl header lines (Host left to curl, which sends
 * the same value; then "Expect:") one after another into lines, and links
 * them through nodes. Returns the bytes the lines take: when that is more
 * than cap, nothing was written (call again with that much room). */
DDBK_HIDDEN size_t ddbk__link_headers(const ddbk_request *req, char *lines, size_t cap,
                                      struct curl_slist nodes[DDBK_HDR_LINES]);
/* Points h at req's body (borrowed: it must outlive the transfer), the
 * linked headers and the sink, and empties the sink (its counts too), its
 * response and errbuf. */
DDBK_HIDDEN void ddbk__easy_start(CURL *h, const ddbk_request *req,
                                  struct curl_slist *headers, ddbk__sink *s,
                                  char *errbuf);
/* After h's transfer ended with rc: reads the status into the sink's
 * response, records the attempt in c's stats, and maps a failure to err
 * ("ResponseTooLarge", "Timeout", "ConnectionError"; ambiguous when the
 * request was sent). Returns 0 when a response arrived, -1 otherwise. */
DDBK_HIDDEN int ddbk__easy_finish(ddbk_client *c, CURL *h, const char *op,
                                  size_t out_bytes, double latency_us, CURLcode rc,
                                  const ddbk__sink *s, const char *errbuf,
                                  ddbk_error *err);

/* transport.c: when rc is a TLS failure, writes "TLS: ..." naming the host
 * and the CA file into out and returns 1 for a certificate refused or a CA
 * file unusable (the same again would fail again), 2 for a handshake that
 * failed otherwise (maybe cut short); 0 when rc is no TLS failure. */
DDBK_HIDDEN int ddbk__tls_what(CURLcode rc, const char *host, const char *ca_file,
                               const char *errbuf, char *out, size_t cap);

/* stats.c */
DDBK_HIDDEN void ddbk__stats_retry_delay(ddbk_client *c, long delay_ms);
DDBK_HIDDEN void ddbk__stats_quota_exhausted(ddbk_client *c);
/* Adds src's counts to dst's, operation by operation and code by code, the
 * latency histogram too (a lock keeper folds its clone's requests into the
 * caller's client). Neither may be in use by another thread. */
DDBK_HIDDEN void ddbk__stats_add(ddbk_client *dst, const ddbk_client *src);

/* Monotonic clock in microseconds. */
DDBK_HIDDEN double ddbk__mono_us(void);

#endif
