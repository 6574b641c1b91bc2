/*
 * transport: one HTTP attempt over libcurl. The client keeps one easy handle
 * for its life; curl's per-handle connection cache is the keep-alive pool, so
 * sequential calls reuse a warm TCP (and TLS) connection.
 *
 * The pieces of an attempt (the handle's options, the header lines, the
 * response sink, the error mapping) are shared with the event loop (loop.c),
 * which runs many attempts at once on a curl multi handle.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#if LIBCURL_VERSION_NUM < 0x075000
#error "ddbkit needs libcurl 7.80 or later: CURLOPT_PREREQFUNCTION counts each send"
#endif

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    ddbk__sink *s = ud;
    size_t len = size * n;
    if (ddbk_buf_append(&s->resp->body, p, len) != 0) {
        s->overflow = 1;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    return len;
}

UNITTEST size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    ddbk__sink *s = ud;
    size_t len = size * n;
    static const char name[] = "x-amzn-requestid:";
    if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        const char *v = p + sizeof name - 1;
        const char *end;
        while (v < p + len && (*v == ' ' || *v == '\t'))
            v++;
        /* The id ends at the line's CR LF, or at any other control byte a
         * server put in it: it goes into errors, logs and terminals. */
        for (end = v; end < p + len && (unsigned char)*end >= 0x20 && *end != 0x7f; end++)
            ;
        while (end > v && end[-1] == ' ')
            end--;
        size_t vl = (size_t)(end - v);
        if (vl >= sizeof s->resp->request_id)
            vl = sizeof s->resp->request_id - 1;
        memcpy(s->resp->request_id, v, vl);
        s->resp->request_id[vl] = '\0';
    }
    return len;
}

/* CURLOPT_PREREQFUNCTION: curl has a connection and is about to send the
 * request. The first time in a transfer is the attempt's one send. A second
 * time is curl resending on its own (Curl_retry_request: a reused
 * connection closed before any byte of the response came back), and the
 * first request may well have been carried out: the server may read a
 * request, apply it and close without answering. So the resend is refused
 * here, the transfer fails, and the retry layer decides as for any failed
 * attempt (max_attempts, the quota, a backoff), with the failure marked
 * ambiguous. */
static int on_prereq(void *ud, char *remote_ip, char *local_ip, int remote_port,
                     int local_port)
{
    ddbk__sink *s = ud;
    (void)remote_ip;
    (void)local_ip;
    (void)remote_port;
    (void)local_port;
    if (s->sends > 0) {
        s->resend_refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    s->sends++;
    return CURL_PREREQFUNC_OK;
}

void ddbk__easy_config(CURL *h, const ddbk_client *c, char *errbuf)
{
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM in a host's process */
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->verify_tls ? 2L : 0L);
    if (c->ca_file[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_MAXCONNECTS, 4L); /* a multi handle ignores it */
}

int ddbk__tls_what(CURLcode rc, const char *host, const char *ca_file, const char *errbuf,
                   char *out, size_t cap)
{
    const char *ca = ca_file && *ca_file ? ca_file : NULL;
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        snprintf(out, cap, "TLS: certificate verification failed for %s (%s%s)%s%s", host,
                 ca ? "ca_file " : "the system's CA bundle", ca ? ca : "",
                 errbuf && *errbuf ? ": " : "", errbuf ? errbuf : "");
        return 1;
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CRL_BADFILE:
        snprintf(out, cap, "TLS: the CA bundle could not be used for %s (%s%s)%s%s", host,
                 ca ? "ca_file " : "the system's", ca ? ca : "",
                 errbuf && *errbuf ? ": " : "", errbuf ? errbuf : "");
        return 1;
    case CURLE_SSL_CONNECT_ERROR:
        snprintf(out, cap, "TLS: the handshake with %s failed (%s%s)%s%s", host,
                 ca ? "ca_file " : "the system's CA bundle", ca ? ca : "",
                 errbuf && *errbuf ? ": " : "", errbuf ? errbuf : "");
        return 2;
    default:
        return 0;
    }
}

int ddbk__transport_open(ddbk_client *c, ddbk_error *err)
{
    c->curl = curl_easy_init();
    if (!c->curl) {
        ddbk_error_set(err, "OutOfMemory", 0, "could not create a libcurl handle");
        return -1;
    }
    ddbk__easy_config(c->curl, c, c->curl_errbuf);
    return 0;
}

void ddbk__transport_close(ddbk_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

/* curl only reads the list, so its nodes and lines can live in the caller's
 * memory and sending costs no allocation. The Expect line keeps curl from
 * waiting for "100 Continue" on large bodies. */
size_t ddbk__link_headers(const ddbk_request *req, char *lines, size_t cap,
                          struct curl_slist nodes[DDBK_HDR_LINES])
{
    static const char expect[] = "Expect:";
    size_t need = sizeof expect, len = 0;
    int n = 0;

    for (int i = 0; i < req->nheaders && n < DDBK_HDR_LINES - 1; i++) {
        if (strcasecmp(req->headers[i].name, "Host") == 0)
            continue; /* curl sends Host from the URL; same value */
        need += strlen(req->headers[i].name) + 2 + strlen(req->headers[i].value) + 1;
        n++;
    }
    if (need > cap)
        return need;

    n = 0;
    for (int i = 0; i < req->nheaders && n < DDBK_HDR_LINES - 1; i++) {
        if (strcasecmp(req->headers[i].name, "Host") == 0)
            continue;
        nodes[n++].data = lines + len;
        /* Each fits: need counted every byte. */
        ddbk__cats(lines, cap, &len, req->headers[i].name);
        ddbk__cat(lines, cap, &len, ": ", 2);
        ddbk__cats(lines, cap, &len, req->headers[i].value);
        len++; /* past the line's terminator */
    }
    nodes[n++].data = lines + len;
    memcpy(lines + len, expect, sizeof expect);
    for (int i = 0; i < n; i++)
        nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
    return need;
}

void ddbk__easy_start(CURL *h, const ddbk_request *req, struct curl_slist *headers,
                      ddbk__sink *s, char *errbuf)
{
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, s);
    s->overflow = 0;
    s->sends = 0;
    s->resend_refused = 0;
    ddbk_buf_reset(&s->resp->body);
    s->resp->status = 0;
    s->resp->request_id[0] = '\0';
    errbuf[0] = '\0';
}

int ddbk__easy_finish(ddbk_client *c, CURL *h, const char *op, size_t out_bytes,
                      double latency_us, CURLcode rc, const ddbk__sink *s,
                      const char *errbuf, ddbk_error *err)
{
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s->resp->status);
    ddbk_stats_record_attempt(c, op, out_bytes, s->resp->body.len, latency_us);
    if (rc == CURLE_OK)
        return 0;
    if (s->overflow) {
        /* Answered, but the answer is not known: as good as lost. */
        ddbk_error_set(err, "ResponseTooLarge", 0,
                       "response exceeds max_response_bytes (%zu)",
                       s->resp->body.max);
        err->ambiguous = 1;
        return -1;
    }
    if (s->resend_refused) {
        ddbk_error_transport(err, 0, "the server closed a reused connection without "
                                     "answering; the request may have been applied");
        err->ambiguous = 1;
        return -1;
    }
    /* curl's message names the host and what failed; it never holds a
     * header, so no credential can reach it. */
    char what[CURL_ERROR_SIZE + 1500];
    int tls = ddbk__tls_what(rc, c->host, c->ca_file, errbuf, what, sizeof what);
    if (tls) {
        /* Nothing went out: a handshake comes before the request. A
         * certificate refused would be refused again; a handshake cut
         * short (a reset) may go through the next time. */
        ddbk_error_transport(err, 0, what);
        err->ambiguous = 0;
        err->retryable = tls == 2;
        return -1;
    }
    snprintf(what, sizeof what, "%s%s%s%s", curl_easy_strerror(rc),
             errbuf[0] ? ": " : "", errbuf,
             s->sends ? " (the request was sent: it may have been applied)" : "");
    ddbk_error_transport(err, rc == CURLE_OPERATION_TIMEDOUT, what);
    err->ambiguous = s->sends > 0;
    return -1;
}

/* One perform is one attempt and at most one send. curl checks a pooled
 * connection before reusing it, so one the server closed while idle costs
 * nothing; one that dies after the request went out is a failed attempt
 * like any other (on_prereq refuses curl's own resend), because whether
 * DynamoDB carried out that request cannot be known from here. */
int ddbk__transport_send(ddbk_client *c, const char *op,
                         const ddbk_request *req, ddbk_response *resp,
                         ddbk_error *err)
{
    CURL *h = c->curl;
    ddbk__sink s = { resp, 0, 0, 0 };

    if (ddbk__link_headers(req, c->hdr_lines, sizeof c->hdr_lines, c->hdr_nodes) >
        sizeof c->hdr_lines) {
        /* Cannot happen: the lines hold DDBK_HDR_LINES of the longest header. */
        ddbk_error_set(err, "InvalidArgument", 0, "request headers too long to send");
        return -1;
    }
    if (strcmp(req->url, c->url) != 0)
        curl_easy_setopt(h, CURLOPT_URL, req->url);
    ddbk__easy_start(h, req, &c->hdr_nodes[0], &s, c->curl_errbuf);
    double t0 = ddbk__mono_us();
    CURLcode rc = curl_easy_perform(h);
    double t1 = ddbk__mono_us();
    if (strcmp(req->url, c->url) != 0)
        curl_easy_setopt(h, CURLOPT_URL, c->url);
    return ddbk__easy_finish(c, h, op, req->body_len, t1 - t0, rc, &s, c->curl_errbuf, err);
}
