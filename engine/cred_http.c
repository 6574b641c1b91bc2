/*
 * The blocking driver of the credential fetch machine (cred_fetch.c), and
 * the setup of one HTTP action on a libcurl easy handle, which the event
 * loop (loop.c) shares: both send an action's request the same way and read
 * its end the same way.
 *
 * The machine says what to send (method, URL, headers, body, timeouts, a
 * size cap); this file only carries it out. Header lines and the body are
 * copied into memory wiped after use, never into curl's own lists: they may
 * hold a container authorization token, an SSO bearer token, an STS
 * signature or a web identity token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "creds.h"

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    ddbk__cred_xfer *x = ud;
    size_t len = size * n;
    if (ddbk_buf_append(&x->resp, p, len) != 0) {
        x->overflow = 1;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    return len;
}

static void wipe_free(char **p, size_t n)
{
    if (*p)
        OPENSSL_cleanse(*p, n);
    free(*p);
    *p = NULL;
}

/* The host[:port] of url, for messages (never a path or a query: an SSO
 * URL's query names an account, harmless, but a URL is the machine's). */
static void url_host(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* The instance's own endpoints (IMDS, the ECS and EKS agents) and loopback:
 * what a proxy from http_proxy must not carry (it would answer with its
 * own host's credentials, or not at all). host is host[:port]. */
static int link_local(const char *host)
{
    static const char *const local[] = { "169.254.", "127.", "localhost", "[::1]",
                                         "[fd00:ec2::", NULL };
    for (int i = 0; local[i]; i++)
        if (strncmp(host, local[i], strlen(local[i])) == 0)
            return 1;
    return 0;
}

int ddbk__cred_xfer_setup(CURL *h, const ddbk__action *a, const char *ca_file, int verify_tls,
                          ddbk__cred_xfer *x, ddbk_error *err)
{
    size_t need = 1;
    int n = a->nheaders < DDBK__ACT_MAX_HEADERS ? a->nheaders : DDBK__ACT_MAX_HEADERS;

    wipe_free(&x->lines, x->lines_cap);
    wipe_free(&x->body, x->body_len);
    x->lines_cap = x->body_len = 0;
    for (int i = 0; i < n; i++)
        need += strlen(a->header_name[i]) + 2 + strlen(a->header_value[i]) + 1;
    need += sizeof "Expect:";
    if (!(x->lines = malloc(need)))
        goto oom;
    x->lines_cap = need;
    size_t len = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        x->nodes[k++].data = x->lines + len;
        ddbk__cats(x->lines, need, &len, a->header_name[i]);
        ddbk__cat(x->lines, need, &len, ": ", 2);
        ddbk__cats(x->lines, need, &len, a->header_value[i]);
        len++; /* past the terminator */
    }
    x->nodes[k++].data = x->lines + len;
    memcpy(x->lines + len, "Expect:", sizeof "Expect:");
    for (int i = 0; i < k; i++)
        x->nodes[i].next = i + 1 < k ? &x->nodes[i + 1] : NULL;

    if (a->body && a->body_len) {
        if (!(x->body = malloc(a->body_len)))
            goto oom;
        memcpy(x->body, a->body, a->body_len);
        x->body_len = a->body_len;
    }
    ddbk_buf_free(&x->resp);
    ddbk_buf_init(&x->resp, a->max_response_bytes ? a->max_response_bytes : 1024 * 1024);
    x->overflow = 0;
    x->errbuf[0] = '\0';
    url_host(a->url, x->host, sizeof x->host);

    curl_easy_reset(h); /* keeps its connections */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_URL, a->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, a->connect_timeout_ms > 0
                                                       ? a->connect_timeout_ms : 1000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, a->timeout_ms > 0 ? a->timeout_ms : 5000L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, verify_tls ? 2L : 0L);
    if (ca_file && *ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    if (link_local(x->host))
        curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never through a proxy */
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, &x->nodes[0]);
    if (strcmp(a->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        /* PUT and POST both send their body (maybe empty) as fields. */
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, x->body ? x->body : "");
        if (strcmp(a->method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, a->method);
    }
    return 0;

oom:
    wipe_free(&x->lines, x->lines_cap);
    x->lines_cap = 0;
    ddbk_error_set(err, "OutOfMemory", 0, "out of memory sending a credentials request");
    return -1;
}

void ddbk__cred_xfer_feed(ddbk__fetch *f, CURL *h, CURLcode rc, ddbk__cred_xfer *x,
                          const char *ca_file)
{
    long status = 0;
    char what[CURL_ERROR_SIZE + 400];

    wipe_free(&x->lines, x->lines_cap);
    wipe_free(&x->body, x->body_len);
    x->lines_cap = x->body_len = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        ddbk__fetch_feed_http(f, status, 0, NULL, x->resp.data ? x->resp.data : "",
                              x->resp.len);
    } else {
        if (x->overflow)
            snprintf(what, sizeof what, "the answer of %s is larger than %zu bytes", x->host,
                     x->resp.max);
        else if (!ddbk__tls_what(rc, x->host, ca_file, x->errbuf, what, sizeof what))
            snprintf(what, sizeof what, "%s: %s%s%s", x->host, curl_easy_strerror(rc),
                     x->errbuf[0] ? ": " : "", x->errbuf);
        ddbk__fetch_feed_http(f, 0, rc == CURLE_OPERATION_TIMEDOUT, what, "", 0);
    }
    /* The answer held credentials: wiped before the memory is reused. */
    if (x->resp.data)
        OPENSSL_cleanse(x->resp.data, x->resp.len);
    ddbk_buf_reset(&x->resp);
}

void ddbk__cred_xfer_free(ddbk__cred_xfer *x)
{
    wipe_free(&x->lines, x->lines_cap);
    wipe_free(&x->body, x->body_len);
    x->lines_cap = x->body_len = 0;
    if (x->resp.data)
        OPENSSL_cleanse(x->resp.data, x->resp.len);
    ddbk_buf_free(&x->resp);
}

void ddbk__cred_exec(ddbk__fetch *f, const ddbk__action *a)
{
    ddbk_buf out;
    const char *what = NULL;

    ddbk_buf_init(&out, a->max_output_bytes ? a->max_output_bytes : 64 * 1024);
    int st = ddbk__process_run(a->argv, a->exec_timeout_ms, out.max, &out, &what);
    ddbk__fetch_feed_exec(f, st, what, out.data ? out.data : "", out.len);
    if (out.data)
        OPENSSL_cleanse(out.data, out.len);
    ddbk_buf_free(&out);
}

/* Bounded even if a machine misbehaved: a real fetch takes a dozen actions
 * (three attempts of three IMDS steps, with their sleeps). */
#define MAX_ACTIONS 256

void ddbk__cred_drive(ddbk__fetch *f, const char *ca_file, int verify_tls)
{
    ddbk__cred_xfer x;
    ddbk__action a;
    ddbk_error e;
    CURL *h = NULL;

    memset(&x, 0, sizeof x);
    ddbk_buf_init(&x.resp, 0);
    for (int i = 0; i < MAX_ACTIONS; i++) {
        ddbk__fetch_next(f, ddbk__wall_ms() / 1000, &a);
        if (a.kind == DDBK__ACT_DONE || a.kind == DDBK__ACT_FAILED)
            break;
        if (a.kind == DDBK__ACT_SLEEP) {
            ddbk__sleep_ms(a.sleep_ms);
        } else if (a.kind == DDBK__ACT_EXEC) {
            ddbk__cred_exec(f, &a);
        } else {
            if (!h && !(h = curl_easy_init())) {
                ddbk__fetch_feed_http(f, 0, 0, "could not create a libcurl handle", "", 0);
                continue;
            }
            if (ddbk__cred_xfer_setup(h, &a, ca_file, verify_tls, &x, &e) != 0) {
                ddbk__fetch_feed_http(f, 0, 0, e.message, "", 0);
                continue;
            }
            ddbk__cred_xfer_feed(f, h, curl_easy_perform(h), &x, ca_file);
        }
    }
    if (h)
        curl_easy_cleanup(h);
    ddbk__cred_xfer_free(&x);
}
