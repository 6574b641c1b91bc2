/*
 * Engine-private: where credentials come from, how they are fetched and
 * when they are refreshed. Nothing here is public API (ddbk__ prefix,
 * hidden visibility); ddbkit.h has the few public entry points.
 *
 * The pieces, one file each:
 *   credentials.c  the chain: from the config, the environment and the
 *                  shared files, decides which provider applies (no I/O
 *                  but reading files) and what it needs: a plan
 *   cred_fetch.c   a sans-I/O machine that runs a plan: says HTTP (a
 *                  request to send), EXEC (a credential_process to run),
 *                  SLEEP (a retry's backoff), DONE or FAILED, and is fed
 *                  each answer; the same machine under every runtime
 *   cred_process.c runs a credential_process command (argv split here,
 *                  never a shell), bounded in time and output
 *   cred_parse.c   what the services answer: STS XML (expat), the JSON of
 *                  IMDS, the container endpoint, credential_process, the
 *                  SSO portal and the SSO token cache (yajl, streaming)
 *   cred_cell.c    the credentials a client signs with, shared by the
 *                  client and its clones (a lock keeper's thread): the
 *                  refresh policy (when, jitter, backoff after a failure,
 *                  never sign with expired ones), single-flight
 *   cred_http.c    the blocking driver of the machine (libcurl easy), used
 *                  by ddbk_call; the event loop drives it on its multi
 *                  handle (loop.c); the OpenResty runtime drives it from
 *                  Lua with cosockets (bindings/core/creds.c)
 */
#ifndef DDBKIT_CREDS_H
#define DDBKIT_CREDS_H

#include <stdint.h>

#include "internal.h"

/* ------------------------------------------------------------ providers */

/* Provider names, as errors, stats and client:credentials() show them. */
#define DDBK__PROV_CONFIG "config"
#define DDBK__PROV_HOST "host"                 /* a function of the host (Lua) */
#define DDBK__PROV_ENV "environment"
#define DDBK__PROV_WEB_IDENTITY "web-identity"
#define DDBK__PROV_PROFILE "profile"           /* static keys of a profile */
#define DDBK__PROV_ASSUME_ROLE "assume-role"
#define DDBK__PROV_PROCESS "process"
#define DDBK__PROV_SSO "sso"
#define DDBK__PROV_CONTAINER "container"
#define DDBK__PROV_IMDS "imds"

/* ------------------------------------------------------------ cred_parse.c */

/* Credentials as a service handed them out. Strings are heap copies, wiped
 * by ddbk__fetched_wipe. expires_at: epoch seconds, 0 when they do not
 * expire (static keys, a credential_process without Expiration). */
typedef struct ddbk__fetched {
    char *access_key_id;
    char *secret_access_key;
    char *session_token;        /* NULL when none */
    int64_t expires_at;
} ddbk__fetched;

DDBK_HIDDEN void ddbk__fetched_wipe(ddbk__fetched *f);

/* "2026-12-04T12:00:00Z" (also with fractional seconds, or a +hh:mm / -hh:mm
 * offset) -> epoch seconds. 0, or -1 when it is not such a time. */
DDBK_HIDDEN int ddbk__iso8601_parse(const char *s, size_t len, int64_t *out);

/* What kind of answer a JSON body is. */
enum ddbk__json_kind {
    DDBK__JSON_CONTAINER,   /* ECS/EKS: AccessKeyId, SecretAccessKey, Token, Expiration */
    DDBK__JSON_IMDS,        /* as CONTAINER, plus Code ("Success" or why not) */
    DDBK__JSON_PROCESS,     /* Version 1, AccessKeyId, SecretAccessKey, SessionToken?,
                               Expiration? */
    DDBK__JSON_SSO          /* {"roleCredentials":{accessKeyId, secretAccessKey,
                               sessionToken, expiration (epoch ms)}} */
};

/* Reads credentials from a JSON answer of `kind` (len bytes, no terminator
 * needed), streaming, depth-limited, every field's type checked. 0 with out
 * filled; -1 with err: "MalformedResponse" naming the field that was
 * missing or wrong (never its value), or for IMDS a Code other than
 * "Success" as "CredentialsError". A value with a control character is
 * refused (it would go into a header). */
DDBK_HIDDEN int ddbk__cred_json_parse(enum ddbk__json_kind kind, const char *body,
                                      size_t len, ddbk__fetched *out, ddbk_error *err);

/* The SSO token cache file (~/.aws/sso/cache/<sha1>.json): accessToken and
 * expiresAt. 0 with *token (heap, caller wipes) and *expires_at; -1 with
 * err ("MalformedResponse" naming the field). */
DDBK_HIDDEN int ddbk__sso_cache_parse(const char *body, size_t len, char **token,
                                      int64_t *expires_at, ddbk_error *err);

/* An STS answer (AssumeRole, AssumeRoleWithWebIdentity), parsed with expat.
 * A 2xx body: 0 with out filled from Credentials (Expiration read).
 * An <ErrorResponse>: -1 with err code from <Code> (as DynamoDB errors are
 * reported: "AccessDenied", "ExpiredTokenException", "Throttling", ...),
 * message from <Message>, status given; retryable for throttling and
 * 5xx. Anything else: -1 with "MalformedResponse". Bounded: depth, text
 * length, entity expansion refused (no DTD). */
DDBK_HIDDEN int ddbk__sts_parse(long status, const char *body, size_t len,
                                ddbk__fetched *out, ddbk_error *err);

/* application/x-www-form-urlencoded body of an STS call: Action, Version
 * 2011-06-15, then the pairs given (name, value, ..., NULL), values
 * percent-encoded (RFC 3986 unreserved kept). -1 when memory runs out. */
DDBK_HIDDEN int ddbk__sts_form(ddbk_buf *out, const char *action, ...);

/* ------------------------------------------------------------ credentials.c */

/* One step of a plan. A plan is a source step (steps[0]) and then zero or
 * more assume-role hops, each signed with what the step before gave. */
enum ddbk__step_kind {
    DDBK__STEP_STATIC,        /* keys known now (config, env, profile) */
    DDBK__STEP_HOST,          /* the host sets them (ddbk__cell_set) */
    DDBK__STEP_WEB_IDENTITY,  /* token_file + role_arn -> STS, unsigned */
    DDBK__STEP_ASSUME_ROLE,   /* role_arn (+ external_id) -> STS, signed */
    DDBK__STEP_PROCESS,       /* command -> JSON on stdout */
    DDBK__STEP_SSO,           /* cached token -> portal GetRoleCredentials */
    DDBK__STEP_CONTAINER,     /* url (+ auth token or token file) */
    DDBK__STEP_IMDS           /* endpoint: PUT token, GET role, GET creds */
};

#define DDBK__PLAN_MAX_STEPS 6

typedef struct ddbk__step {
    enum ddbk__step_kind kind;
    char profile[256];        /* the profile it came from, "" when none */
    /* STATIC */
    ddbk__fetched keys;
    /* WEB_IDENTITY, ASSUME_ROLE */
    char role_arn[2048];
    char session_name[128];   /* default "ddbkit-<epoch ms>" chosen at fetch */
    char external_id[1300];
    long duration_s;          /* 0: the service's default */
    char token_file[1024];    /* WEB_IDENTITY: re-read at each fetch */
    char sts_url[512];        /* https://sts.<region>.amazonaws.com/ or
                                 AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL */
    char sts_region[64];      /* the region AssumeRole is signed for */
    /* PROCESS */
    char command[4096];       /* as written in the profile; split at fetch */
    /* SSO */
    char sso_start_url[1024];
    char sso_session[256];    /* sso_session name, "" for the legacy form */
    char sso_region[64];
    char sso_account_id[64];
    char sso_role_name[256];
    char sso_url[512];        /* https://portal.sso.<region>.amazonaws.com
                                 or AWS_ENDPOINT_URL_SSO */
    char sso_cache_dir[1024]; /* ~/.aws/sso/cache */
    /* CONTAINER */
    char url[1024];
    char auth_token_file[1024];  /* re-read at each fetch */
    char *auth_token;            /* heap, wiped; NULL when none */
    /* IMDS */
    char imds_endpoint[256];  /* http://169.254.169.254 or
                                 AWS_EC2_METADATA_SERVICE_ENDPOINT */
} ddbk__step;

typedef struct ddbk__plan {
    ddbk__step steps[DDBK__PLAN_MAX_STEPS];
    int nsteps;
    char provider[32];        /* DDBK__PROV_*: what the last step is */
    /* Why each provider before the chosen one had nothing, one clause each
     * ("environment: AWS_ACCESS_KEY_ID not set; web-identity: ..."), for
     * the error when the chosen one fails too. Never holds a value. */
    char skipped[1024];
    /* A stable name of the plan without secrets (provider, profile, role
     * ARN, URL): the OpenResty runtime keys its shared dict with it. */
    char id[256];
} ddbk__plan;

/* Resolves the chain (the AWS SDKs' order):
 *   1 explicit config keys       -> STATIC "config"
 *     cfg->credentials_host set  -> HOST "host"
 *   2 AWS_ACCESS_KEY_ID/...      -> STATIC "environment"
 *   3 AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN -> WEB_IDENTITY
 *   4 the profile: static keys, role_arn (source_profile chains, loops
 *     refused; credential_source Environment / Ec2InstanceMetadata /
 *     EcsContainer), web_identity_token_file, credential_process, sso_*
 *   5 AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI -> CONTAINER
 *   6 IMDS unless AWS_EC2_METADATA_DISABLED=true -> IMDS
 * No network I/O. 0 with *plan filled; -1 with err: "MissingCredentials"
 * (nothing applies; the message lists each provider and why),
 * "InvalidArgument" (a bad value: a control character, a FULL_URI host
 * that is not allowed, a loop of source_profile), "OutOfMemory". */
DDBK_HIDDEN int ddbk__plan_resolve(const ddbk_config *cfg, ddbk__plan *plan,
                                   ddbk_error *err);
DDBK_HIDDEN void ddbk__plan_wipe(ddbk__plan *plan);
DDBK_HIDDEN int ddbk__plan_copy(const ddbk__plan *src, ddbk__plan *dst);

/* ------------------------------------------------------------ cred_fetch.c */

enum ddbk__action_kind {
    DDBK__ACT_HTTP,     /* send the request, then ddbk__fetch_feed_http */
    DDBK__ACT_EXEC,     /* run argv, then ddbk__fetch_feed_exec */
    DDBK__ACT_SLEEP,    /* wait ms, then ddbk__fetch_next again */
    DDBK__ACT_DONE,     /* ddbk__fetch_result has the credentials */
    DDBK__ACT_FAILED    /* ddbk__fetch_result has the error */
};

#define DDBK__ACT_MAX_HEADERS 6

/* What the machine asks for. Every pointer is into the machine, valid until
 * the next call on it. */
typedef struct ddbk__action {
    enum ddbk__action_kind kind;
    /* HTTP */
    const char *method;                 /* "GET", "PUT", "POST" */
    const char *url;
    int nheaders;
    const char *header_name[DDBK__ACT_MAX_HEADERS];
    const char *header_value[DDBK__ACT_MAX_HEADERS];
    const char *body;                   /* NULL for none */
    size_t body_len;
    long connect_timeout_ms, timeout_ms;
    size_t max_response_bytes;
    /* EXEC */
    char *const *argv;
    long exec_timeout_ms;
    size_t max_output_bytes;
    /* SLEEP */
    long sleep_ms;
} ddbk__action;

typedef struct ddbk__fetch ddbk__fetch;

/* A machine running `plan` (copied). now_s: wall clock, epoch seconds (the
 * signing time of assume-role). NULL on OOM (err set). */
DDBK_HIDDEN ddbk__fetch *ddbk__fetch_new(const ddbk__plan *plan, int64_t now_s,
                                         ddbk_error *err);
DDBK_HIDDEN void ddbk__fetch_free(ddbk__fetch *f);
/* The next thing to do. */
DDBK_HIDDEN void ddbk__fetch_next(ddbk__fetch *f, int64_t now_s, ddbk__action *a);
/* The answer to the last HTTP action: status 0 when none arrived (timed_out
 * says whether it was a timeout; `what` what the transport said). The
 * machine retries what the SDKs retry (no answer, 5xx, throttling; 3
 * attempts, backoff with jitter) and moves on. */
DDBK_HIDDEN void ddbk__fetch_feed_http(ddbk__fetch *f, long status, int timed_out,
                                       const char *what, const char *body, size_t len);
/* The end of the last EXEC action: exit_status as waitpid's WEXITSTATUS,
 * -1 when it was killed (timeout) or could not start (what says why). */
DDBK_HIDDEN void ddbk__fetch_feed_exec(ddbk__fetch *f, int exit_status, const char *what,
                                       const char *out, size_t len);
/* After DONE: 0 with *out (moved: the machine keeps no copy). After
 * FAILED: -1 with err, code "CredentialsError" (or the service's own
 * code), the message naming the provider, the step and the cause. */
DDBK_HIDDEN int ddbk__fetch_result(ddbk__fetch *f, ddbk__fetched *out, ddbk_error *err);
/* The provider name of the plan it runs. */
DDBK_HIDDEN const char *ddbk__fetch_provider(const ddbk__fetch *f);

/* ------------------------------------------------------------ cred_process.c */

/* Splits a credential_process command line as the AWS CLI does (spaces
 * separate; "double" and 'single' quotes group; backslash escapes in and
 * outside double quotes). argv is NULL-terminated, heap. -1 on an
 * unterminated quote or an empty command (err names which). */
DDBK_HIDDEN int ddbk__process_split(const char *command, char ***argv, ddbk_error *err);
DDBK_HIDDEN void ddbk__process_argv_free(char **argv);
/* Runs argv (execvp, no shell, stdin /dev/null, stderr inherited), reads
 * stdout up to max_out bytes, kills it (SIGKILL, process group) after
 * timeout_ms. Returns the exit status, or -1 with *what set when it could
 * not start, timed out or wrote too much. out is a ddbk_buf the caller
 * frees (wiped). Blocks: the blocking driver and the event loop's thread
 * call it; the OpenResty runtime runs the command with ngx.pipe. */
DDBK_HIDDEN int ddbk__process_run(char *const *argv, long timeout_ms, size_t max_out,
                                  ddbk_buf *out, const char **what);

/* ------------------------------------------------------------ cred_cell.c */

/* What a client signs with, shared by a client and its clones. */
typedef struct ddbk__cell ddbk__cell;

/* A cell for plan (copied). STATIC plans are ready at once; others hold
 * nothing until the first fetch. NULL on OOM. */
DDBK_HIDDEN ddbk__cell *ddbk__cell_new(const ddbk__plan *plan, ddbk_error *err);
DDBK_HIDDEN ddbk__cell *ddbk__cell_ref(ddbk__cell *c);
DDBK_HIDDEN void ddbk__cell_unref(ddbk__cell *c);

enum ddbk__cell_state {
    DDBK__CELL_FRESH,    /* sign with them */
    DDBK__CELL_REFRESH,  /* sign with them, and refresh now (one caller) */
    DDBK__CELL_EXPIRED   /* must not be signed with: refresh first */
};

/* The state at now_ms (wall clock, epoch ms). REFRESH is returned to one
 * caller at a time (the one that then calls ddbk__cell_begin): the others
 * get FRESH while a fetch runs, or EXPIRED. */
DDBK_HIDDEN enum ddbk__cell_state ddbk__cell_state(ddbk__cell *c, int64_t now_ms);
/* Claims the refresh: 1 when this caller is to fetch (and gets a machine in
 * *f), 0 when another fetch is running, a failed one's backoff has not run
 * out, nothing is due (another's fetch just ended), or the cell never
 * fetches (STATIC, HOST); -1 with err when the machine could not be made. */
DDBK_HIDDEN int ddbk__cell_begin(ddbk__cell *c, int64_t now_ms, ddbk__fetch **f,
                                 ddbk_error *err);
/* Ends a claimed refresh with what the machine gave (its result), frees f.
 * On success installs the credentials (generation + 1) and picks the next
 * refresh time (before expiry, with jitter); on failure keeps the old ones
 * while they last and sets a backoff. */
DDBK_HIDDEN void ddbk__cell_end(ddbk__cell *c, ddbk__fetch *f, int64_t now_ms);
/* Installs credentials the host fetched (HOST plans, or the OpenResty
 * runtime sharing one fetch among its workers). -1 with err on a bad value. */
DDBK_HIDDEN int ddbk__cell_set(ddbk__cell *c, const ddbk__fetched *creds,
                               const char *provider, ddbk_error *err);
/* Copies the current credentials into *out when their generation differs
 * from *gen (then updates *gen): the signer keeps its own copy and re-derives
 * its key only on a change. 1 copied, 0 unchanged, -1 none usable (err:
 * "CredentialsError" naming the provider and the last failure, or
 * "MissingCredentials"). */
DDBK_HIDDEN int ddbk__cell_take(ddbk__cell *c, int64_t now_ms, ddbk__fetched *out,
                                uint64_t *gen, ddbk_error *err);
/* Whether a fetch runs (claimed by ddbk__cell_begin, not yet ended): a
 * caller that finds the cell EXPIRED and begin refused waits for it then,
 * and fails at once otherwise (a backoff, or a HOST cell nobody set). */
DDBK_HIDDEN int ddbk__cell_fetching(ddbk__cell *c);
/* Blocks until no fetch runs, at most max_ms (ddbk_call, when another
 * thread's fetch is the one to wait for). */
DDBK_HIDDEN void ddbk__cell_wait(ddbk__cell *c, long max_ms);
/* Gives up a claimed refresh without a result (its driver went away: a
 * loop freed mid-fetch, a Lua coroutine that died): frees f, lets the next
 * caller claim; counts no failure and sets no backoff. */
DDBK_HIDDEN void ddbk__cell_abandon(ddbk__cell *c, ddbk__fetch *f);
/* What ddbk_client_credentials shows: provider, profile, expiry, the next
 * refresh, the counts and the last failure; never a secret. */
DDBK_HIDDEN void ddbk__cell_info(ddbk__cell *c, ddbk_credentials_info *out);
/* Whether the cell holds a HOST plan (only the host sets its credentials). */
DDBK_HIDDEN int ddbk__cell_is_host(const ddbk__cell *c);
/* The plan's id (ddbk__plan.id: no secret), fixed at creation: the
 * OpenResty runtime keys its shared dict with it. */
DDBK_HIDDEN const char *ddbk__cell_id(const ddbk__cell *c);
/* The wall clock in epoch ms, the clock the cell's now_ms is read on. */
DDBK_HIDDEN int64_t ddbk__wall_ms(void);
#ifdef DDBK_UNITTEST
/* Added to ddbk__wall_ms: a test moves the clock of ddbk_call and the loop
 * past a refresh time or an expiry instead of waiting an hour. */
extern int64_t ddbk__test_wall_offset_ms;
#endif

/* ------------------------------------------------------------ cred_http.c */

/* One HTTP action on a libcurl easy handle: the blocking driver and the
 * event loop (loop.c) set a handle up and read its end the same way. The
 * header lines and the body are copies of the machine's (it may move on),
 * wiped when freed: they may hold a bearer token or a signature. */
typedef struct ddbk__cred_xfer {
    ddbk_buf resp;                       /* the answer's body, capped */
    char *lines;                         /* the header lines, heap, wiped */
    size_t lines_cap;
    struct curl_slist nodes[DDBK__ACT_MAX_HEADERS + 1];
    char *body;                          /* the request body, heap, wiped */
    size_t body_len;
    char host[256];                      /* for a TLS error's message */
    char errbuf[CURL_ERROR_SIZE];
    int overflow;
} ddbk__cred_xfer;

/* Resets h (its connections kept) and sets it up for HTTP action a: method,
 * URL, headers, body, the action's timeouts and size cap, http(s) only, no
 * redirects, TLS verification with ca_file (NULL or "": the system's).
 * -1 with err on OOM. */
DDBK_HIDDEN int ddbk__cred_xfer_setup(CURL *h, const ddbk__action *a, const char *ca_file,
                                      int verify_tls, ddbk__cred_xfer *x, ddbk_error *err);
/* After h's transfer ended with rc: feeds the machine (status, timed out,
 * what curl said, TLS errors named as such) and empties x's request copies. */
DDBK_HIDDEN void ddbk__cred_xfer_feed(ddbk__fetch *f, CURL *h, CURLcode rc,
                                      ddbk__cred_xfer *x, const char *ca_file);
DDBK_HIDDEN void ddbk__cred_xfer_free(ddbk__cred_xfer *x);
/* Runs an EXEC action with ddbk__process_run and feeds the machine. Blocks
 * up to the action's timeout. */
DDBK_HIDDEN void ddbk__cred_exec(ddbk__fetch *f, const ddbk__action *a);
/* The blocking driver: runs f to DONE or FAILED in the caller's thread, with
 * an easy handle of its own (SLEEP actions sleep). Then ddbk__cell_end. */
DDBK_HIDDEN void ddbk__cred_drive(ddbk__fetch *f, const char *ca_file, int verify_tls);

#endif
