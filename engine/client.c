/*
 * The client: resolved configuration, credentials, the cached signing key,
 * the connection pool, the retry quota and the stats, and ddbk_call, which
 * strings prepare, transport, parse and the retry decision together.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "creds.h"

void ddbk_config_init(ddbk_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->connect_timeout_ms = 1000;
    cfg->timeout_ms = 3000;
    cfg->max_attempts = 3;
    cfg->base_delay_ms = 50;
    cfg->max_backoff_ms = 20000;
    cfg->retry_quota = 500;
    cfg->verify_tls = 1;
    cfg->max_response_bytes = DDBK_BUF_DEFAULT_MAX;
    cfg->use_fips = -1;
    cfg->use_dualstack = -1;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void init_curl(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int ddbk__curl_init(ddbk_error *err)
{
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK) {
        ddbk_error_set(err, "ConnectionError", 0, "libcurl failed to initialise");
        return -1;
    }
    return 0;
}

static const char *first_env(const char *a, const char *b)
{
    const char *v = getenv(a);
    if (v && *v)
        return v;
    v = b ? getenv(b) : NULL;
    return v && *v ? v : NULL;
}

/* dst = the first cap - 1 bytes of src as a message may show them: a control
 * byte becomes '?', so no value the caller or the environment gave can
 * carry a header break or a terminal escape into an error. */
static void shown(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i < cap - 1; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
    dst[i] = '\0';
}

/* Accepts scheme://host[:port][/] where host is a name, an IPv4 address or
 * a bracketed IPv6 address. The Host header must be exactly what curl sends
 * (SigV4 signs it), so the port is normalised: kept only when it is not the
 * scheme's default, without leading zeros. */
UNITTEST int set_endpoint(ddbk_client *c, const char *ep, ddbk_error *err)
{
    const char *rest, *p;
    int https;
    long port = 0;

    if (strncmp(ep, "https://", 8) == 0) {
        https = 1;
        rest = ep + 8;
    } else if (strncmp(ep, "http://", 7) == 0) {
        https = 0;
        rest = ep + 7;
    } else {
        goto bad;
    }
    size_t hl = strcspn(rest, "/?#");
    if (hl == 0 || hl >= sizeof c->host - 8 || strspn(rest + hl, "/") != strlen(rest + hl))
        goto bad;

    /* Split host and port; a bracketed IPv6 literal keeps its colons. */
    const char *host_end = rest + hl;
    if (rest[0] == '[') {
        p = memchr(rest, ']', hl);
        if (!p)
            goto bad;
        host_end = p + 1;
    } else {
        p = memchr(rest, ':', hl);
        if (p)
            host_end = p;
    }
    for (p = rest; p < host_end; p++)
        if (*p == '@' || *p == ' ' || (unsigned char)*p < 0x21 || *p == 0x7f)
            goto bad;
    if (host_end == rest || (rest[0] == '[' && host_end - rest < 3))
        goto bad;
    if (host_end < rest + hl) {
        if (*host_end != ':' || host_end + 1 == rest + hl)
            goto bad;
        for (p = host_end + 1; p < rest + hl; p++) {
            if (*p < '0' || *p > '9' || port > 65535)
                goto bad;
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535)
            goto bad;
    }
    if (port == (https ? 443 : 80))
        port = 0;
    int n = (int)(host_end - rest);
    if (port)
        snprintf(c->host, sizeof c->host, "%.*s:%ld", n, rest, port);
    else
        snprintf(c->host, sizeof c->host, "%.*s", n, rest);
    snprintf(c->endpoint, sizeof c->endpoint, "%s://%s", https ? "https" : "http", c->host);
    snprintf(c->url, sizeof c->url, "%s/", c->endpoint);
    return 0;

bad:;
    char got[65];
    shown(got, sizeof got, ep);
    ddbk_error_set(err, "InvalidArgument", 0,
                   "endpoint must be http(s)://host[:port] with a port from 1 to 65535 "
                   "and no path (got \"%s\")", got);
    return -1;
}

/* A config switch: 0 or 1 as given, or for -1 the environment variable
 * (AWS_USE_FIPS_ENDPOINT, ...) being "true" in any case, as the SDKs read it. */
static int switch_on(int v, const char *env)
{
    if (v >= 0)
        return v != 0;
    const char *e = getenv(env);
    return e && strcasecmp(e, "true") == 0;
}

/* The CA bundle: the config's, else AWS_CA_BUNDLE, else none (curl's
 * default). Checked readable now, so a wrong path is an error at creation
 * rather than a TLS failure on the first call. */
static int set_ca_file(ddbk_client *c, const ddbk_config *cfg, ddbk_error *err)
{
    const char *ca = cfg->ca_file && *cfg->ca_file ? cfg->ca_file : first_env("AWS_CA_BUNDLE", NULL);
    const char *from = cfg->ca_file && *cfg->ca_file ? "ca_file" : "AWS_CA_BUNDLE";
    char got[200];

    if (!ca)
        return 0;
    shown(got, sizeof got, ca);
    if (strlen(ca) >= sizeof c->ca_file) {
        ddbk_error_set(err, "InvalidArgument", 0, "%s is longer than %zu bytes (\"%s...\")",
                       from, sizeof c->ca_file - 1, got);
        return -1;
    }
    int fd = open(ca, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ddbk_error_set(err, "InvalidArgument", 0, "%s \"%s\" cannot be read: %s", from, got,
                       strerror(errno));
        return -1;
    }
    close(fd);
    memcpy(c->ca_file, ca, strlen(ca) + 1);
    return 0;
}

/* The credentials: the chain resolved (no network I/O: a fetch happens
 * when a call first needs them) into a cell of the client's own. */
static int make_cell(ddbk_client *c, const ddbk_config *cfg, ddbk_error *err)
{
    ddbk__plan *plan = calloc(1, sizeof *plan);
    int rc = -1;

    if (!plan || !(c->creds = calloc(1, sizeof *c->creds))) {
        ddbk_error_set(err, "OutOfMemory", 0, "out of memory creating the client");
        goto done;
    }
    if (ddbk__plan_resolve(cfg, plan, err) != 0)
        goto done;
    if ((c->cell = ddbk__cell_new(plan, err)) == NULL)
        goto done;
    rc = 0;
done:
    if (plan) {
        ddbk__plan_wipe(plan);
        free(plan);
    }
    return rc;
}

/* What a client owns for doing requests: its digest context and its curl
 * handle (the connection pool). Makes only what is missing, so a failed
 * call can simply be repeated. */
static int open_io(ddbk_client *c, ddbk_error *err)
{
    if (!c->md && !(c->md = EVP_MD_CTX_new())) {
        ddbk_error_set(err, "OutOfMemory", 0, "out of memory creating the client");
        return -1;
    }
    return c->curl ? 0 : ddbk__transport_open(c, err);
}

ddbk_client *ddbk_client_new(const ddbk_config *cfg_in, ddbk_error *err)
{
    ddbk_config defaults;
    const ddbk_config *cfg = cfg_in;
    char ep[400];

    ddbk_error_clear(err);
    if (!cfg) {
        ddbk_config_init(&defaults);
        cfg = &defaults;
    }
    if (cfg->max_attempts < 1 || cfg->timeout_ms <= 0 || cfg->connect_timeout_ms <= 0 ||
        cfg->base_delay_ms < 0 || cfg->max_backoff_ms < 0 || cfg->retry_quota < 0) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "max_attempts must be >= 1, timeouts > 0, delays and quota >= 0");
        return NULL;
    }
    if (ddbk__curl_init(err) != 0)
        return NULL;

    ddbk_client *c = calloc(1, sizeof *c);
    if (!c) {
        ddbk_error_set(err, "OutOfMemory", 0, "out of memory creating the client");
        return NULL;
    }
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    c->timeout_ms = cfg->timeout_ms;
    c->max_attempts = cfg->max_attempts;
    c->base_delay_ms = cfg->base_delay_ms;
    c->max_backoff_ms = cfg->max_backoff_ms;
    c->quota_max = c->quota = cfg->retry_quota;
    c->verify_tls = cfg->verify_tls;
    c->max_response_bytes = cfg->max_response_bytes ? cfg->max_response_bytes
                                                     : DDBK_BUF_DEFAULT_MAX;

    const char *endpoint = cfg->endpoint && *cfg->endpoint
                               ? cfg->endpoint
                               : first_env("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL");
    int rr = ddbk__region_resolve(cfg, c->region, sizeof c->region);
    if (rr == -2) {
        ddbk_error_set(err, "InvalidArgument", 0, "region is longer than %zu bytes",
                       sizeof c->region - 1);
        goto fail;
    }
    if (rr != 0) {
        if (!endpoint) {
            ddbk_error_set(err, "MissingRegion", 0,
                           "no region: set region, AWS_REGION, AWS_DEFAULT_REGION or "
                           "the profile's region");
            goto fail;
        }
        /* A custom endpoint (DynamoDB Local) still signs with some region. */
        snprintf(c->region, sizeof c->region, "us-east-1");
    }
    if (strspn(c->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(c->region)) {
        char got[33];
        shown(got, sizeof got, c->region);
        ddbk_error_set(err, "InvalidArgument", 0,
                       "region must be lowercase letters, digits and dashes (got \"%s\")", got);
        goto fail;
    }
    if (!endpoint) {
        /* The SDKs' default endpoints: FIPS and dual-stack (IPv4 and IPv6)
         * each change the name, together too. */
        int fips = switch_on(cfg->use_fips, "AWS_USE_FIPS_ENDPOINT");
        int dual = switch_on(cfg->use_dualstack, "AWS_USE_DUALSTACK_ENDPOINT");
        snprintf(ep, sizeof ep, "https://dynamodb%s.%s.%s", fips ? "-fips" : "", c->region,
                 dual ? "api.aws" : "amazonaws.com");
        endpoint = ep;
    }
    if (set_endpoint(c, endpoint, err) != 0)
        goto fail;
    if (set_ca_file(c, cfg, err) != 0)
        goto fail;
    if (make_cell(c, cfg, err) != 0)
        goto fail;
    if (open_io(c, err) != 0)
        goto fail;
    return c;

fail:
    ddbk_client_free(c);
    return NULL;
}

ddbk_client *ddbk_client_clone(const ddbk_client *src, ddbk_error *err)
{
    ddbk_client *c = ddbk__client_copy_settings(src, err);
    if (c && ddbk__client_open_io(c, err) != 0) {
        ddbk_client_free(c);
        return NULL;
    }
    return c;
}

ddbk_client *ddbk__client_copy_settings(const ddbk_client *src, ddbk_error *err)
{
    ddbk_error_clear(err);
    if (!src) {
        ddbk_error_set(err, "InvalidArgument", 0, "clone: no client given");
        return NULL;
    }
    ddbk_client *c = calloc(1, sizeof *c);
    if (!c) {
        ddbk_error_set(err, "OutOfMemory", 0, "out of memory cloning the client");
        return NULL;
    }
    /* Settings only, field by field: a struct copy would share the curl
     * handle, the digest context and the credential strings, and carry over
     * the stats, the spent quota and the last request's Authorization line. */
    memcpy(c->region, src->region, sizeof c->region);
    memcpy(c->endpoint, src->endpoint, sizeof c->endpoint);
    memcpy(c->url, src->url, sizeof c->url);
    memcpy(c->host, src->host, sizeof c->host);
    c->connect_timeout_ms = src->connect_timeout_ms;
    c->timeout_ms = src->timeout_ms;
    c->max_attempts = src->max_attempts;
    c->base_delay_ms = src->base_delay_ms;
    c->max_backoff_ms = src->max_backoff_ms;
    c->quota_max = c->quota = src->quota_max;
    c->verify_tls = src->verify_tls;
    c->max_response_bytes = src->max_response_bytes;
    memcpy(c->ca_file, src->ca_file, sizeof c->ca_file);
    /* The same cell: a rotation one of them fetches reaches the other (a
     * lock keeper's clone signs through it). Its own copy is taken at its
     * first signing. */
    if (!(c->creds = calloc(1, sizeof *c->creds))) {
        ddbk_error_set(err, "OutOfMemory", 0, "out of memory cloning the client");
        ddbk_client_free(c);
        return NULL;
    }
    c->cell = ddbk__cell_ref(src->cell);
    return c;
}

int ddbk__client_open_io(ddbk_client *c, ddbk_error *err)
{
    return open_io(c, err); /* curl_global_init already ran: a client exists */
}

void ddbk_client_free(ddbk_client *c)
{
    if (!c)
        return;
    ddbk__transport_close(c);
    if (c->creds) {
        ddbk__fetched_wipe(c->creds);
        free(c->creds);
    }
    ddbk__cell_unref(c->cell);
    ddbk__sigv4_key_wipe(&c->key);
    EVP_MD_CTX_free(c->md); /* frees its digest state, HMAC pads included */
    /* The Authorization line of the last request is in hdr_lines. */
    OPENSSL_cleanse(c->hdr_lines, sizeof c->hdr_lines);
    free(c);
}

const char *ddbk_client_region(const ddbk_client *c) { return c->region; }
const char *ddbk_client_endpoint(const ddbk_client *c) { return c->endpoint; }

int ddbk_client_credentials(const ddbk_client *c, ddbk_credentials_info *out)
{
    if (!c || !out)
        return -1;
    ddbk__cell_info(c->cell, out);
    return 0;
}

/* Only for a client made with credentials_from_host: on any other, the
 * chain's next refresh would replace what the host set without a word, so
 * setting is refused rather than half-honoured. */
int ddbk_client_set_credentials(ddbk_client *c, const char *access_key_id,
                                const char *secret_access_key, const char *session_token,
                                int64_t expires_at, ddbk_error *err)
{
    ddbk_error scratch;
    if (!err)
        err = &scratch;
    ddbk_error_clear(err);
    if (!c) {
        ddbk_error_set(err, "InvalidArgument", 0, "set_credentials: no client given");
        return -1;
    }
    if (!ddbk__cell_is_host(c->cell)) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "set_credentials: the client was not made with credentials_from_host");
        return -1;
    }
    ddbk__fetched f = { (char *)access_key_id, (char *)secret_access_key,
                        (char *)session_token, expires_at };
    return ddbk__cell_set(c->cell, &f, NULL, err);
}

/* How long a call waits for another thread's fetch of the same cell (a
 * lock keeper's clone): longer than any fetch's own bounds (three attempts
 * of a credential_process's 30 s are not waited out; the call then fails
 * with the cell's error and the next one waits again). */
#define CRED_WAIT_MS 35000

/* Before an attempt: refreshes the credentials when the cell says so, in
 * this thread (blocking: the machine's timeouts bound it). Never fails by
 * itself: ddbk_prepare then takes what the cell holds, or refuses with the
 * cell's error. */
static void refresh_creds(ddbk_client *c)
{
    int64_t now = ddbk__wall_ms();
    enum ddbk__cell_state st = ddbk__cell_state(c->cell, now);
    ddbk__fetch *f;
    ddbk_error e;

    if (st == DDBK__CELL_FRESH)
        return;
    int mine = ddbk__cell_begin(c->cell, now, &f, &e);
    if (mine == 1) {
        ddbk__cred_drive(f, c->ca_file, c->verify_tls);
        ddbk__cell_end(c->cell, f, ddbk__wall_ms());
    } else if (mine == 0 && st == DDBK__CELL_EXPIRED && ddbk__cell_fetching(c->cell)) {
        ddbk__cell_wait(c->cell, CRED_WAIT_MS);
    }
}

void ddbk_response_init(ddbk_response *r)
{
    memset(r, 0, sizeof *r);
    ddbk_buf_init(&r->body, 0);
}

void ddbk_response_free(ddbk_response *r)
{
    ddbk_buf_free(&r->body);
}

void ddbk__sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = { (time_t)(ms / 1000), (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

long ddbk__attempt_settle(ddbk_client *c, const char *op, int attempt,
                          int responded, const ddbk_response *resp,
                          ddbk__retries *r, ddbk_error *err)
{
    if (responded && ddbk_parse(resp->status, resp->request_id, resp->body.data,
                                resp->body.len, err) == 0) {
        ddbk_retry_success(c, r->retries > 0, r->last_timeout);
        ddbk_stats_record_call(c, op, r->retries, NULL);
        ddbk_error_clear(err); /* an earlier attempt's error is history */
        return DDBK__CALL_SUCCEEDED;
    }
    /* err is this attempt's failure: a lost answer may hide a write that
     * landed, and so may a 5xx answer (ddbk_parse says which). */
    r->ambiguous |= err->ambiguous;
    long delay = ddbk_retry_decide(c, err, attempt, ddbk_random());
    if (delay < 0) {
        /* A later answer does not undo an earlier lost one: a failed
         * condition may be the call's own first write. */
        err->ambiguous = r->ambiguous;
        ddbk_stats_record_call(c, op, r->retries, err);
        return DDBK__CALL_FAILED;
    }
    r->last_timeout = err->timeout;
    r->retries++;
    return delay;
}

int ddbk_call(ddbk_client *c, const char *op, const char *body,
              size_t body_len, ddbk_response *resp, ddbk_error *err)
{
    ddbk_request req;
    ddbk__retries r = { 0, 0, 0 };

    ddbk_error_clear(err);
    resp->body.max = c->max_response_bytes;
    resp->attempts = 0;
    resp->ambiguous = 0;
    for (int attempt = 1;; attempt++) {
        /* Re-signed each attempt: a long backoff must not outlive the
         * signature's five-minute validity, nor the credentials theirs. */
        refresh_creds(c);
        if (ddbk_prepare(c, op, body, body_len, 0, &req, err) != 0)
            break;
        resp->attempts = attempt;
        int responded = ddbk__transport_send(c, op, &req, resp, err) == 0;
        long delay = ddbk__attempt_settle(c, op, attempt, responded, resp, &r, err);
        if (delay == DDBK__CALL_SUCCEEDED) {
            resp->ambiguous = r.ambiguous;
            return 0;
        }
        if (delay == DDBK__CALL_FAILED) {
            /* Only a whole response has an error body: what a failed
             * transfer left (a body cut short) must not be read as one. */
            if (!responded)
                ddbk_buf_reset(&resp->body);
            return -1;
        }
        ddbk__sleep_ms(delay);
    }
    err->ambiguous = r.ambiguous; /* ddbk_prepare refused a retry */
    ddbk_stats_record_call(c, op, r.retries, err);
    return -1;
}
