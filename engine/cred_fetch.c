/*
 * The fetch machine: runs a plan (credentials.c) step by step without doing
 * any I/O on the network itself. It says what to do next (an HTTP request,
 * a credential_process to run, a backoff to wait out) and is fed what came
 * of it, so the blocking driver, the event loop and the OpenResty runtime
 * all fetch the same way, retries included.
 *
 * Each step ends with credentials that the next one signs with (an
 * assume-role hop) or that are the result (the last step). Within a step:
 *   - no answer, a 5xx, a 429 or an STS throttling error is retried: 3
 *     attempts, full-jitter backoff from 100 ms (SLEEP), as the SDKs do;
 *     IMDS gets 2 (its timeouts are 1 s: a host that is not on EC2 must
 *     learn it in about a second);
 *   - a 401 on an IMDS GET means the session token expired: one new token;
 *   - any other 4xx, or an answer that does not parse, ends the fetch.
 *
 * The files a step depends on (a web identity token, a container
 * authorization token file, the SSO token cache) are read at each fetch:
 * they are rotated under us. That is the only I/O here, and it is local.
 *
 * Errors say "<provider>: <step>: <cause>"; a fetch from IMDS, the last
 * resort, also lists why every earlier provider had nothing, so a host with
 * no credentials at all gets one message with the whole story. Never a
 * secret or a token in them: causes name files, statuses and fields.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "creds.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 2000
#define ATTEMPTS 3
#define IMDS_ATTEMPTS 2
#define IMDS_TIMEOUT_MS 1000
#define HTTP_CONNECT_MS 2000
#define HTTP_TIMEOUT_MS 10000
#define MAX_ANSWER ((size_t)64 << 10)
#define MAX_TOKEN_FILE ((size_t)16 << 10)
#define PROCESS_TIMEOUT_MS 30000
#define PROCESS_MAX_OUT ((size_t)64 << 10)
#define STS_CONTENT_TYPE "application/x-www-form-urlencoded; charset=utf-8"

enum state { S_READY, S_WAIT_HTTP, S_WAIT_EXEC, S_SLEEP, S_DONE, S_FAILED };

/* IMDS phases. */
enum { IMDS_TOKEN, IMDS_ROLE, IMDS_CREDS };

struct ddbk__fetch {
    ddbk__plan plan;
    int step;                 /* index of the running step */
    int phase;                /* IMDS_*, 0 for the others */
    int attempt;              /* 1-based, of the current request */
    enum state st;
    long sleep_ms;
    int64_t now_s;
    int64_t started_ms;       /* for the default session name */
    ddbk__fetched cur;        /* what the last finished step gave */
    ddbk_error err;           /* FAILED: why */
    char last_cause[200];     /* the last retried failure, for the final error */

    /* the request in flight (what the action points into) */
    const char *method;
    char url[2400];
    int nh;
    const char *hname[DDBK__ACT_MAX_HEADERS];
    char *hval[DDBK__ACT_MAX_HEADERS];  /* heap: a token may be long; wiped */
    ddbk_buf body;                      /* wiped: a web identity token */
    char **argv;

    /* IMDS */
    char *imds_token;
    char imds_role[256];
    int imds_token_renewed;

    /* signing */
    EVP_MD_CTX *md;
};

/* ------------------------------------------------------------ small helpers */

static void wipe_free(char **s)
{
    if (*s != NULL) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

static void request_clear(ddbk__fetch *f)
{
    for (int i = 0; i < DDBK__ACT_MAX_HEADERS; i++) {
        wipe_free(&f->hval[i]);
        f->hname[i] = NULL;
    }
    f->nh = 0;
    if (f->body.data != NULL)
        OPENSSL_cleanse(f->body.data, f->body.len);
    ddbk_buf_reset(&f->body);
    ddbk__process_argv_free(f->argv);
    f->argv = NULL;
    f->method = NULL;
    f->url[0] = '\0';
}

static int header(ddbk__fetch *f, const char *name, const char *value)
{
    if (f->nh >= DDBK__ACT_MAX_HEADERS)
        return -1;
    f->hval[f->nh] = strdup(value);
    if (f->hval[f->nh] == NULL)
        return -1;
    f->hname[f->nh++] = name;
    return 0;
}

static const ddbk__step *step_of(const ddbk__fetch *f)
{
    return &f->plan.steps[f->step];
}

static const char *provider_of(const ddbk__step *s)
{
    switch (s->kind) {
    case DDBK__STEP_STATIC: return "static keys";
    case DDBK__STEP_HOST: return DDBK__PROV_HOST;
    case DDBK__STEP_WEB_IDENTITY: return DDBK__PROV_WEB_IDENTITY;
    case DDBK__STEP_ASSUME_ROLE: return DDBK__PROV_ASSUME_ROLE;
    case DDBK__STEP_PROCESS: return DDBK__PROV_PROCESS;
    case DDBK__STEP_SSO: return DDBK__PROV_SSO;
    case DDBK__STEP_CONTAINER: return DDBK__PROV_CONTAINER;
    case DDBK__STEP_IMDS: return DDBK__PROV_IMDS;
    }
    return "";
}

static const char *step_name(const ddbk__fetch *f)
{
    switch (step_of(f)->kind) {
    case DDBK__STEP_WEB_IDENTITY: return "AssumeRoleWithWebIdentity";
    case DDBK__STEP_ASSUME_ROLE: return "AssumeRole";
    case DDBK__STEP_PROCESS: return "credential_process";
    case DDBK__STEP_SSO: return "GetRoleCredentials";
    case DDBK__STEP_CONTAINER: return "GET credentials";
    case DDBK__STEP_IMDS:
        return f->phase == IMDS_TOKEN  ? "PUT token"
               : f->phase == IMDS_ROLE ? "GET role name"
                                       : "GET credentials";
    default: return "keys";
    }
}

/* Ends the fetch: code (CredentialsError, or the service's), the message
 * "<provider>[ (profile "p")]: <step>: <cause>" and, when the plan ends in
 * IMDS, why the providers before it had nothing. */
static void fail(ddbk__fetch *f, const char *code, long status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(ddbk__fetch *f, const char *code, long status, const char *fmt, ...)
{
    const ddbk__step *s = step_of(f);
    char cause[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cause, sizeof cause, fmt, ap);
    va_end(ap);
    ddbk_error_set(&f->err, code, status, "%s%s%s%s: %s: %s%s%s", provider_of(s),
                   s->profile[0] ? " (profile \"" : "", s->profile,
                   s->profile[0] ? "\")" : "", step_name(f), cause,
                   strcmp(f->plan.provider, DDBK__PROV_IMDS) == 0 && f->plan.skipped[0]
                       ? "; before it: "
                       : "",
                   strcmp(f->plan.provider, DDBK__PROV_IMDS) == 0 ? f->plan.skipped : "");
    request_clear(f);
    f->st = S_FAILED;
}

/* A retryable failure of the current request: another attempt after a
 * backoff, or the end when the attempts are spent. */
static void retry(ddbk__fetch *f, long status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void retry(ddbk__fetch *f, long status, const char *fmt, ...)
{
    int max = step_of(f)->kind == DDBK__STEP_IMDS ? IMDS_ATTEMPTS : ATTEMPTS;
    va_list ap;
    double ceiling;

    va_start(ap, fmt);
    vsnprintf(f->last_cause, sizeof f->last_cause, fmt, ap);
    va_end(ap);
    if (f->attempt >= max) {
        /* IMDS as the chain's last resort that never answered: no EC2 here,
         * so nothing was found (as the SDKs say), not a provider failing. */
        int nothing = status == 0 && f->plan.nsteps == 1 &&
                      step_of(f)->kind == DDBK__STEP_IMDS;
        fail(f, nothing ? DDBK_ERR_MISSING_CREDENTIALS : DDBK_ERR_CREDENTIALS, status,
             "%s (after %d attempts)", f->last_cause, f->attempt);
        return;
    }
    ceiling = (double)BACKOFF_BASE_MS * (double)(1 << (f->attempt - 1));
    if (ceiling > BACKOFF_CAP_MS)
        ceiling = BACKOFF_CAP_MS;
    f->attempt++;
    f->sleep_ms = (long)(ddbk_random() * ceiling);
    f->st = f->sleep_ms > 0 ? S_SLEEP : S_READY;
    request_clear(f);
}

/* Reads a small local file whole: 0 with buf filled, -1 missing or
 * unreadable or not a regular file, -2 larger than max. */
static int read_small(const char *path, size_t max, ddbk_buf *buf)
{
    struct stat st;
    char chunk[4096];
    int fd, rc = -1;

    if (path[0] == '\0')
        return -1;
    /* O_NONBLOCK: a FIFO planted at the path must not hang the fetch. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto out;
        if (r == 0)
            break;
        if (buf->len + (size_t)r > max) {
            rc = -2;
            goto out;
        }
        if (ddbk_buf_append(buf, chunk, (size_t)r) != 0)
            goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(chunk, sizeof chunk);
    close(fd);
    return rc;
}

/* Trims blanks and line ends at both ends, in place (a token file written
 * by `echo` ends with a newline). */
static void trim(ddbk_buf *b)
{
    size_t start = 0;

    while (b->len > 0 && strchr(" \t\r\n", b->data[b->len - 1]) != NULL)
        b->data[--b->len] = '\0';
    while (start < b->len && strchr(" \t\r\n", b->data[start]) != NULL)
        start++;
    if (start > 0) {
        memmove(b->data, b->data + start, b->len - start + 1);
        b->len -= start;
    }
}

static int has_control_n(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/* Percent-encodes v (RFC 3986 unreserved kept) onto out at *len. */
static int pct(char *out, size_t cap, size_t *len, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *v; v++) {
        unsigned char ch = (unsigned char)*v;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            if (ddbk__cat(out, cap, len, (const char *)&ch, 1) != 0)
                return -1;
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            if (ddbk__cat(out, cap, len, e, 3) != 0)
                return -1;
        }
    }
    return 0;
}

/* Moves the credentials a step gave into cur: the next hop signs with
 * them, or they are the result. */
static void step_done(ddbk__fetch *f, ddbk__fetched *got)
{
    ddbk__fetched_wipe(&f->cur);
    f->cur = *got;
    memset(got, 0, sizeof *got);
    request_clear(f);
    wipe_free(&f->imds_token);
    f->step++;
    f->phase = 0;
    f->attempt = 1;
    f->imds_token_renewed = 0;
    f->st = f->step >= f->plan.nsteps ? S_DONE : S_READY;
}

/* ------------------------------------------------------------ requests */

static void http_action(ddbk__fetch *f, ddbk__action *a, long connect_ms, long total_ms)
{
    a->kind = DDBK__ACT_HTTP;
    a->method = f->method;
    a->url = f->url;
    a->nheaders = f->nh;
    for (int i = 0; i < f->nh; i++) {
        a->header_name[i] = f->hname[i];
        a->header_value[i] = f->hval[i];
    }
    a->body = f->body.len > 0 ? f->body.data : NULL;
    a->body_len = f->body.len;
    a->connect_timeout_ms = connect_ms;
    a->timeout_ms = total_ms;
    a->max_response_bytes = MAX_ANSWER;
    f->st = S_WAIT_HTTP;
}

static int set_url(ddbk__fetch *f, const char *a, const char *b)
{
    size_t len = 0;
    f->url[0] = '\0';
    return ddbk__cats(f->url, sizeof f->url, &len, a) | ddbk__cats(f->url, sizeof f->url, &len, b);
}

static void imds_request(ddbk__fetch *f, ddbk__action *a)
{
    const ddbk__step *s = step_of(f);
    int bad = 0;

    if (f->phase == IMDS_TOKEN) {
        f->method = "PUT";
        bad |= set_url(f, s->imds_endpoint, "/latest/api/token");
        bad |= header(f, "X-aws-ec2-metadata-token-ttl-seconds", "21600");
    } else {
        f->method = "GET";
        bad |= set_url(f, s->imds_endpoint, "/latest/meta-data/iam/security-credentials/");
        if (f->phase == IMDS_CREDS) {
            size_t len = strlen(f->url);
            bad |= ddbk__cats(f->url, sizeof f->url, &len, f->imds_role);
        }
        bad |= header(f, "X-aws-ec2-metadata-token", f->imds_token);
    }
    if (bad) {
        fail(f, "OutOfMemory", 0, "out of memory or URL too long");
        return;
    }
    http_action(f, a, IMDS_TIMEOUT_MS, IMDS_TIMEOUT_MS);
}

static void container_request(ddbk__fetch *f, ddbk__action *a)
{
    const ddbk__step *s = step_of(f);
    ddbk_buf tok;

    f->method = "GET";
    if (set_url(f, s->url, "") != 0)
        goto oom;
    if (s->auth_token_file[0] != '\0') {
        /* Re-read each time: EKS Pod Identity rotates it. */
        ddbk_buf_init(&tok, MAX_TOKEN_FILE + 1);
        int rc = read_small(s->auth_token_file, MAX_TOKEN_FILE, &tok);
        if (rc == 0)
            trim(&tok);
        if (rc != 0 || tok.len == 0 || has_control_n(tok.data, tok.len)) {
            fail(f, DDBK_ERR_CREDENTIALS, 0,
                 "the authorization token file %s is %s", s->auth_token_file,
                 rc == -1   ? "missing or unreadable"
                 : rc == -2 ? "larger than 16 KB"
                 : tok.len == 0 ? "empty"
                                : "not one line (refused: it goes into a header)");
            if (tok.data != NULL)
                OPENSSL_cleanse(tok.data, tok.len);
            ddbk_buf_free(&tok);
            return;
        }
        int bad = header(f, "Authorization", tok.data);
        OPENSSL_cleanse(tok.data, tok.len);
        ddbk_buf_free(&tok);
        if (bad)
            goto oom;
    } else if (s->auth_token != NULL && header(f, "Authorization", s->auth_token) != 0) {
        goto oom;
    }
    http_action(f, a, HTTP_CONNECT_MS, HTTP_CONNECT_MS);
    return;
oom:
    fail(f, "OutOfMemory", 0, "out of memory or URL too long");
}

/* host[:port] and path of an http(s) URL (the STS URL was checked by the
 * chain: a scheme, a host, no query). Default ports are dropped, as curl
 * drops them from the Host it sends. */
static int url_parts(const char *url, char *host, size_t hcap, char *path, size_t pcap)
{
    int https = strncmp(url, "https://", 8) == 0;
    const char *h = url + (https ? 8 : 7), *slash = strchr(h, '/');
    size_t hn = slash ? (size_t)(slash - h) : strlen(h);

    if (hn == 0 || hn >= hcap)
        return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    if (https && hn > 4 && strcmp(host + hn - 4, ":443") == 0)
        host[hn - 4] = '\0';
    if (!https && hn > 3 && strcmp(host + hn - 3, ":80") == 0)
        host[hn - 3] = '\0';
    if (snprintf(path, pcap, "%s", slash ? slash : "/") >= (int)pcap)
        return -1;
    return 0;
}

/* AssumeRole, signed (SigV4, service "sts") with what the step before gave. */
static int sign_sts(ddbk__fetch *f, const ddbk__step *s)
{
    char host[512], path[512], amz_date[17], payload[65];
    const char *token = f->cur.session_token;
    const char *signed_headers = token ? "content-type;host;x-amz-date;x-amz-security-token"
                                       : "content-type;host;x-amz-date";
    ddbk_sigv4_key key;
    ddbk_sigv4_out sig;
    ddbk_error serr;
    ddbk_buf cr;
    int rc = -1;

    if (url_parts(s->sts_url, host, sizeof host, path, sizeof path) != 0)
        return -1;
    ddbk__amz_date(f->now_s, amz_date);
    ddbk__sha256_hex(f->md, f->body.data, f->body.len, payload);
    ddbk_buf_init(&cr, 0);
    if (ddbk_buf_printf(&cr, "POST\n%s\n\ncontent-type:" STS_CONTENT_TYPE "\nhost:%s\nx-amz-date:%s\n",
                        path, host, amz_date) != 0 ||
        (token && ddbk_buf_printf(&cr, "x-amz-security-token:%s\n", token) != 0) ||
        ddbk_buf_printf(&cr, "\n%s\n%s", signed_headers, payload) != 0)
        goto out;
    /* A key of our own each time: the cache is keyed by date, region and
     * service only, and each hop signs with other credentials. */
    memset(&key, 0, sizeof key);
    rc = ddbk__sigv4_sign_canonical(f->md, cr.data, cr.len, signed_headers,
                                    f->cur.access_key_id, f->cur.secret_access_key,
                                    s->sts_region, "sts", amz_date, &key, &sig, &serr);
    ddbk__sigv4_key_wipe(&key);
    if (rc != 0)
        goto out;
    rc = header(f, "Host", host) | header(f, "X-Amz-Date", amz_date) |
         (token ? header(f, "X-Amz-Security-Token", token) : 0) |
         header(f, "Authorization", sig.authorization);
    OPENSSL_cleanse(&sig, sizeof sig);
out:
    if (cr.data != NULL)
        OPENSSL_cleanse(cr.data, cr.len);
    ddbk_buf_free(&cr);
    return rc;
}

static void sts_request(ddbk__fetch *f, ddbk__action *a)
{
    const ddbk__step *s = step_of(f);
    char session[128], dur[24];
    int web = s->kind == DDBK__STEP_WEB_IDENTITY, rc;
    ddbk_buf tok;

    if (s->session_name[0] != '\0')
        snprintf(session, sizeof session, "%s", s->session_name);
    else
        snprintf(session, sizeof session, "ddbkit-%lld", (long long)f->started_ms);
    dur[0] = '\0';
    if (s->duration_s > 0)
        snprintf(dur, sizeof dur, "%ld", s->duration_s);
    f->method = "POST";
    if (set_url(f, s->sts_url, "") != 0 || header(f, "Content-Type", STS_CONTENT_TYPE) != 0)
        goto oom;
    if (web) {
        /* Re-read each time: the kubelet rotates it. */
        ddbk_buf_init(&tok, MAX_TOKEN_FILE + 1);
        rc = read_small(s->token_file, MAX_TOKEN_FILE, &tok);
        if (rc == 0)
            trim(&tok);
        if (rc != 0 || tok.len == 0) {
            fail(f, DDBK_ERR_CREDENTIALS, 0, "the web identity token file %s is %s",
                 s->token_file[0] ? s->token_file : "(unset)",
                 rc == -1 ? "missing or unreadable" : rc == -2 ? "larger than 16 KB" : "empty");
            if (tok.data != NULL)
                OPENSSL_cleanse(tok.data, tok.len);
            ddbk_buf_free(&tok);
            return;
        }
        rc = ddbk__sts_form(&f->body, "AssumeRoleWithWebIdentity", "RoleArn", s->role_arn,
                            "RoleSessionName", session, "WebIdentityToken", tok.data,
                            "DurationSeconds", dur, (const char *)NULL);
        OPENSSL_cleanse(tok.data, tok.len);
        ddbk_buf_free(&tok);
        if (rc != 0)
            goto oom;
    } else {
        if (ddbk__sts_form(&f->body, "AssumeRole", "RoleArn", s->role_arn, "RoleSessionName",
                           session, "ExternalId", s->external_id, "DurationSeconds", dur,
                           (const char *)NULL) != 0)
            goto oom;
        if (f->cur.access_key_id == NULL) {
            fail(f, DDBK_ERR_CREDENTIALS, 0, "no source credentials to sign with");
            return;
        }
        if (sign_sts(f, s) != 0) {
            fail(f, DDBK_ERR_CREDENTIALS, 0, "could not sign the request");
            return;
        }
    }
    http_action(f, a, HTTP_CONNECT_MS, HTTP_TIMEOUT_MS);
    return;
oom:
    fail(f, "OutOfMemory", 0, "out of memory or URL too long");
}

/* The SSO cache file is named by the SHA-1 (hex) of the sso_session's name,
 * or of the start URL in the legacy form, as the AWS CLI names it. */
static int sso_cache_path(const ddbk__step *s, char *out, size_t cap)
{
    const char *key = s->sso_session[0] ? s->sso_session : s->sso_start_url;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];

    if (s->sso_cache_dir[0] == '\0' ||
        EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha1(), NULL) != 1)
        return -1;
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return snprintf(out, cap, "%s/%s.json", s->sso_cache_dir, hex) >= (int)cap ? -1 : 0;
}

static void sso_request(ddbk__fetch *f, ddbk__action *a)
{
    const ddbk__step *s = step_of(f);
    char path[1200];
    ddbk_buf file;
    ddbk_error perr;
    char *token = NULL;
    int64_t expires_at = 0;
    size_t len;
    int rc;

    if (sso_cache_path(s, path, sizeof path) != 0) {
        fail(f, DDBK_ERR_CREDENTIALS, 0, "no SSO cache folder (HOME not set?)");
        return;
    }
    ddbk_buf_init(&file, MAX_ANSWER + 1);
    rc = read_small(path, MAX_ANSWER, &file);
    if (rc != 0) {
        fail(f, DDBK_ERR_CREDENTIALS, 0,
             "no SSO token in %s (%s): run `aws sso login`", path,
             rc == -1 ? "missing or unreadable" : "larger than 64 KB");
        goto out;
    }
    if (ddbk__sso_cache_parse(file.data, file.len, &token, &expires_at, &perr) != 0) {
        fail(f, DDBK_ERR_CREDENTIALS, 0, "the SSO token cache %s: %s", path, perr.message);
        goto out;
    }
    if (expires_at <= f->now_s) {
        /* The profile is named in the message's head. */
        fail(f, DDBK_ERR_CREDENTIALS, 0, "the SSO session has expired: run `aws sso login`");
        goto out;
    }
    f->method = "GET";
    len = 0;
    f->url[0] = '\0';
    if ((ddbk__cats(f->url, sizeof f->url, &len, s->sso_url) |
         ddbk__cats(f->url, sizeof f->url, &len, "/federation/credentials?account_id=") |
         pct(f->url, sizeof f->url, &len, s->sso_account_id) |
         ddbk__cats(f->url, sizeof f->url, &len, "&role_name=") |
         pct(f->url, sizeof f->url, &len, s->sso_role_name)) != 0 ||
        header(f, "x-amz-sso_bearer_token", token) != 0) {
        fail(f, "OutOfMemory", 0, "out of memory or URL too long");
        goto out;
    }
    http_action(f, a, HTTP_CONNECT_MS, HTTP_TIMEOUT_MS);
out:
    wipe_free(&token);
    if (file.data != NULL)
        OPENSSL_cleanse(file.data, file.len);
    ddbk_buf_free(&file);
}

static void process_request(ddbk__fetch *f, ddbk__action *a)
{
    const ddbk__step *s = step_of(f);
    const char *t = getenv("DDBKIT_CREDENTIAL_PROCESS_TIMEOUT_MS");
    long timeout = PROCESS_TIMEOUT_MS;
    ddbk_error perr;

    if (t != NULL && *t != '\0') {
        char *end;
        long v = strtol(t, &end, 10);
        if (*end == '\0' && v > 0 && v <= 3600000)
            timeout = v;
    }
    if (ddbk__process_split(s->command, &f->argv, &perr) != 0) {
        fail(f, DDBK_ERR_CREDENTIALS, 0, "%s", perr.message);
        return;
    }
    a->kind = DDBK__ACT_EXEC;
    a->argv = f->argv;
    a->exec_timeout_ms = timeout;
    a->max_output_bytes = PROCESS_MAX_OUT;
    f->st = S_WAIT_EXEC;
}

/* ------------------------------------------------------------ the machine */

ddbk__fetch *ddbk__fetch_new(const ddbk__plan *plan, int64_t now_s, ddbk_error *err)
{
    ddbk__fetch *f = calloc(1, sizeof *f);

    if (f == NULL)
        goto oom;
    if (ddbk__plan_copy(plan, &f->plan) != 0) {
        free(f);
        goto oom;
    }
    f->md = EVP_MD_CTX_new();
    if (f->md == NULL) {
        ddbk__plan_wipe(&f->plan);
        free(f);
        goto oom;
    }
    ddbk_buf_init(&f->body, MAX_ANSWER);
    f->now_s = now_s;
    f->started_ms = now_s * 1000;
    f->attempt = 1;
    f->st = f->plan.nsteps > 0 ? S_READY : S_FAILED;
    if (f->plan.nsteps == 0)
        ddbk_error_set(&f->err, DDBK_ERR_CREDENTIALS, 0, "an empty plan");
    return f;
oom:
    ddbk_error_set(err, "OutOfMemory", 0, "out of memory starting a credentials fetch");
    return NULL;
}

void ddbk__fetch_free(ddbk__fetch *f)
{
    if (f == NULL)
        return;
    request_clear(f);
    ddbk_buf_free(&f->body);
    wipe_free(&f->imds_token);
    ddbk__fetched_wipe(&f->cur);
    EVP_MD_CTX_free(f->md);
    ddbk__plan_wipe(&f->plan);
    OPENSSL_cleanse(f, sizeof *f);
    free(f);
}

const char *ddbk__fetch_provider(const ddbk__fetch *f)
{
    return f->plan.provider;
}

void ddbk__fetch_next(ddbk__fetch *f, int64_t now_s, ddbk__action *a)
{
    memset(a, 0, sizeof *a);
    f->now_s = now_s;
    for (;;) {
        switch (f->st) {
        case S_DONE:
            a->kind = DDBK__ACT_DONE;
            return;
        case S_FAILED:
            a->kind = DDBK__ACT_FAILED;
            return;
        case S_SLEEP:
            a->kind = DDBK__ACT_SLEEP;
            a->sleep_ms = f->sleep_ms;
            f->st = S_READY;
            return;
        case S_WAIT_HTTP:
        case S_WAIT_EXEC:
            /* Asked again without an answer: the driver lost it. Ask
             * again for the same thing rather than stall. */
            f->st = S_READY;
            request_clear(f);
            continue;
        case S_READY:
            break;
        }
        const ddbk__step *s = step_of(f);
        request_clear(f);
        switch (s->kind) {
        case DDBK__STEP_STATIC: {
            ddbk__fetched k = {0};
            if (s->keys.access_key_id == NULL ||
                (k.access_key_id = strdup(s->keys.access_key_id)) == NULL ||
                (k.secret_access_key = strdup(s->keys.secret_access_key)) == NULL ||
                (s->keys.session_token != NULL &&
                 (k.session_token = strdup(s->keys.session_token)) == NULL)) {
                ddbk__fetched_wipe(&k);
                fail(f, "OutOfMemory", 0, "out of memory");
                continue;
            }
            k.expires_at = s->keys.expires_at;
            step_done(f, &k);
            continue;
        }
        case DDBK__STEP_HOST:
            fail(f, DDBK_ERR_CREDENTIALS, 0,
                 "the host sets these credentials (ddbk_client_set_credentials)");
            continue;
        case DDBK__STEP_IMDS: imds_request(f, a); break;
        case DDBK__STEP_CONTAINER: container_request(f, a); break;
        case DDBK__STEP_WEB_IDENTITY:
        case DDBK__STEP_ASSUME_ROLE: sts_request(f, a); break;
        case DDBK__STEP_SSO: sso_request(f, a); break;
        case DDBK__STEP_PROCESS: process_request(f, a); break;
        }
        if (f->st == S_FAILED) {
            memset(a, 0, sizeof *a);
            a->kind = DDBK__ACT_FAILED;
        }
        return;
    }
}

/* Credentials from a JSON answer, with the cause named on failure. */
static void take_json(ddbk__fetch *f, enum ddbk__json_kind kind, long status, const char *body,
                      size_t len)
{
    ddbk__fetched got = {0};
    ddbk_error perr;

    if (ddbk__cred_json_parse(kind, body ? body : "", len, &got, &perr) != 0) {
        fail(f, strcmp(perr.code, "MalformedResponse") == 0 ? DDBK_ERR_CREDENTIALS : perr.code,
             status, "%s: %s", perr.code, perr.message);
        return;
    }
    step_done(f, &got);
}

static void feed_imds(ddbk__fetch *f, long status, const char *body, size_t len)
{
    if (status == 401 && f->phase != IMDS_TOKEN && !f->imds_token_renewed) {
        /* The session token expired between our calls: a new one, once. */
        f->imds_token_renewed = 1;
        wipe_free(&f->imds_token);
        f->phase = IMDS_TOKEN;
        f->attempt = 1;
        request_clear(f);
        f->st = S_READY;
        return;
    }
    if (status == 404 && f->phase != IMDS_TOKEN) {
        fail(f, DDBK_ERR_CREDENTIALS, status,
             f->phase == IMDS_ROLE ? "no IAM role is attached to this instance (HTTP 404)"
                                   : "the instance's role is gone (HTTP 404)");
        return;
    }
    if (status < 200 || status > 299) {
        fail(f, DDBK_ERR_CREDENTIALS, status, "HTTP %ld", status);
        return;
    }
    if (f->phase == IMDS_TOKEN) {
        if (len == 0 || len > 1024 || has_control_n(body, len)) {
            fail(f, DDBK_ERR_CREDENTIALS, status, "the session token is empty, too long or "
                                                   "not one line");
            return;
        }
        f->imds_token = malloc(len + 1);
        if (f->imds_token == NULL) {
            fail(f, "OutOfMemory", 0, "out of memory");
            return;
        }
        memcpy(f->imds_token, body, len);
        f->imds_token[len] = '\0';
        f->phase = f->imds_role[0] ? IMDS_CREDS : IMDS_ROLE;
    } else if (f->phase == IMDS_ROLE) {
        size_t n = 0;
        while (n < len && body[n] != '\n' && body[n] != '\r')
            n++;
        /* The role name goes into a URL path. */
        for (size_t i = 0; i < n; i++) {
            char ch = body[i];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || strchr("+=,.@_-", ch) != NULL))
                n = 0;
        }
        if (n == 0 || n >= sizeof f->imds_role) {
            fail(f, DDBK_ERR_CREDENTIALS, status, "the role name is empty or not a role name");
            return;
        }
        memcpy(f->imds_role, body, n);
        f->imds_role[n] = '\0';
        f->phase = IMDS_CREDS;
    } else {
        take_json(f, DDBK__JSON_IMDS, status, body, len);
        return;
    }
    f->attempt = 1;
    request_clear(f);
    f->st = S_READY;
}

void ddbk__fetch_feed_http(ddbk__fetch *f, long status, int timed_out, const char *what,
                           const char *body, size_t len)
{
    const ddbk__step *s;

    if (f->st != S_WAIT_HTTP)
        return;
    s = step_of(f);
    if (body == NULL)
        len = 0;
    if (status == 0) {
        retry(f, 0, "%s%s%s", timed_out ? "timed out" : "no answer",
              what && *what ? ": " : "", what && *what ? what : "");
        return;
    }
    if (s->kind == DDBK__STEP_WEB_IDENTITY || s->kind == DDBK__STEP_ASSUME_ROLE) {
        ddbk__fetched got = {0};
        ddbk_error perr;
        if (ddbk__sts_parse(status, body ? body : "", len, &got, &perr) == 0) {
            step_done(f, &got);
            return;
        }
        if (perr.retryable) {
            retry(f, status, "%s (HTTP %ld)", perr.code, status);
            return;
        }
        fail(f, strcmp(perr.code, "MalformedResponse") == 0 ? DDBK_ERR_CREDENTIALS : perr.code,
             status, "%s: %s", perr.code, perr.message);
        return;
    }
    if (status >= 500 || status == 429) {
        retry(f, status, "HTTP %ld", status);
        return;
    }
    switch (s->kind) {
    case DDBK__STEP_IMDS: feed_imds(f, status, body, len); return;
    case DDBK__STEP_CONTAINER:
        if (status < 200 || status > 299)
            fail(f, DDBK_ERR_CREDENTIALS, status, "HTTP %ld", status);
        else
            take_json(f, DDBK__JSON_CONTAINER, status, body, len);
        return;
    case DDBK__STEP_SSO:
        if (status == 401 || status == 403)
            fail(f, DDBK_ERR_CREDENTIALS, status,
                 "the SSO token was refused (HTTP %ld): run `aws sso login`", status);
        else if (status < 200 || status > 299)
            fail(f, DDBK_ERR_CREDENTIALS, status, "HTTP %ld", status);
        else
            take_json(f, DDBK__JSON_SSO, status, body, len);
        return;
    default:
        fail(f, DDBK_ERR_CREDENTIALS, status, "an HTTP answer where none was asked");
        return;
    }
}

void ddbk__fetch_feed_exec(ddbk__fetch *f, int exit_status, const char *what, const char *out,
                           size_t len)
{
    if (f->st != S_WAIT_EXEC)
        return;
    if (exit_status < 0) {
        fail(f, DDBK_ERR_CREDENTIALS, 0, "%s", what && *what ? what : "did not run");
        return;
    }
    if (exit_status != 0) {
        fail(f, DDBK_ERR_CREDENTIALS, 0, "exited with status %d", exit_status);
        return;
    }
    take_json(f, DDBK__JSON_PROCESS, 0, out, out ? len : 0);
}

int ddbk__fetch_result(ddbk__fetch *f, ddbk__fetched *out, ddbk_error *err)
{
    memset(out, 0, sizeof *out);
    if (f->st == S_DONE && f->cur.access_key_id != NULL) {
        *out = f->cur;
        memset(&f->cur, 0, sizeof f->cur);
        return 0;
    }
    if (f->st == S_FAILED)
        *err = f->err;
    else
        ddbk_error_set(err, DDBK_ERR_CREDENTIALS, 0, "%s: the fetch has not ended",
                       f->plan.provider);
    return -1;
}
