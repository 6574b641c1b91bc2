/*
 * transport: one HTTP attempt over libcurl. The client keeps one easy handle
 * for its life; curl's per-handle connection cache is the keep-alive pool, so
 * sequential calls reuse a warm TCP (and TLS) connection.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

typedef struct sink {
    ddbk_response *resp;
    int overflow;
} sink;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    size_t len = size * n;
    if (ddbk_buf_append(&s->resp->body, p, len) != 0) {
        s->overflow = 1;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    size_t len = size * n;
    static const char name[] = "x-amzn-requestid:";
    if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        const char *v = p + sizeof name - 1;
        const char *end = p + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        size_t vl = (size_t)(end - v);
        if (vl >= sizeof s->resp->request_id)
            vl = sizeof s->resp->request_id - 1;
        memcpy(s->resp->request_id, v, vl);
        s->resp->request_id[vl] = '\0';
    }
    return len;
}

int ddbk__transport_open(ddbk_client *c, ddbk_error *err)
{
    c->curl = curl_easy_init();
    if (!c->curl) {
        ddbk_error_set(err, "OutOfMemory", 0, "could not create a libcurl handle");
        return -1;
    }
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM in a host's process */
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->verify_tls ? 2L : 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_MAXCONNECTS, 4L);
    return 0;
}

void ddbk__transport_close(ddbk_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

/* Links the prepared headers into the client's own curl_slist nodes: curl
 * only reads the list, so no per-request allocation is needed. The Expect
 * line keeps curl from waiting for "100 Continue" on large bodies. */
static struct curl_slist *link_headers(ddbk_client *c, const ddbk_request *req)
{
    int n = 0;
    for (int i = 0; i < req->nheaders && n < DDBK_HDR_LINES - 1; i++) {
        if (strcasecmp(req->headers[i].name, "Host") == 0)
            continue; /* curl sends Host from the URL; same value */
        /* A line holds any header ddbk_prepare makes (name 32 + value 2048). */
        size_t len = 0;
        c->hdr_lines[n][0] = '\0';
        ddbk__cats(c->hdr_lines[n], DDBK_HDR_LINE_MAX, &len, req->headers[i].name);
        ddbk__cat(c->hdr_lines[n], DDBK_HDR_LINE_MAX, &len, ": ", 2);
        ddbk__cats(c->hdr_lines[n], DDBK_HDR_LINE_MAX, &len, req->headers[i].value);
        n++;
    }
    memcpy(c->hdr_lines[n++], "Expect:", sizeof "Expect:");
    for (int i = 0; i < n; i++) {
        c->hdr_nodes[i].data = c->hdr_lines[i];
        c->hdr_nodes[i].next = i + 1 < n ? &c->hdr_nodes[i + 1] : NULL;
    }
    return &c->hdr_nodes[0];
}

/* A pooled connection the server closed is not our problem to retry:
 * curl checks a connection before reusing it, and when a reused one dies
 * before any byte of the response arrives it resends the request once on a
 * fresh connection inside the same perform (Curl_retry_request). So a stale
 * pool costs neither a retry nor an error; the stats count one request, as
 * DynamoDB saw one. */
int ddbk__transport_send(ddbk_client *c, const char *op,
                         const ddbk_request *req, ddbk_response *resp,
                         ddbk_error *err)
{
    CURL *h = c->curl;
    sink s = { resp, 0 };
    CURLcode rc;

    if (strcmp(req->url, c->url) != 0)
        curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, link_headers(c, req));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &s);

    ddbk_buf_reset(&resp->body);
    resp->status = 0;
    resp->request_id[0] = '\0';
    c->curl_errbuf[0] = '\0';
    double t0 = ddbk__mono_us();
    rc = curl_easy_perform(h);
    double t1 = ddbk__mono_us();
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    ddbk_stats_record_attempt(c, op, req->body_len, resp->body.len, t1 - t0);

    if (strcmp(req->url, c->url) != 0)
        curl_easy_setopt(h, CURLOPT_URL, c->url);

    if (rc == CURLE_OK)
        return 0;
    if (s.overflow) {
        ddbk_error_set(err, "ResponseTooLarge", 0,
                       "response exceeds max_response_bytes (%zu)",
                       resp->body.max);
        return -1;
    }
    char what[CURL_ERROR_SIZE + 64];
    snprintf(what, sizeof what, "%s%s%s", curl_easy_strerror(rc),
             c->curl_errbuf[0] ? ": " : "", c->curl_errbuf);
    ddbk_error_transport(err, rc == CURLE_OPERATION_TIMEDOUT, what);
    return -1;
}
