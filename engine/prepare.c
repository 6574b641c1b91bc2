/*
 * prepare: a DynamoDB operation and its JSON body become a signed HTTP
 * request. Pure computation, no I/O, so hosts with their own sockets
 * (OpenResty cosockets, a game loop) can send the result themselves.
 */
#include <string.h>
#include <time.h>

#include "creds.h"

#define TARGET_PREFIX "DynamoDB_20120810."
#define CONTENT_TYPE "application/x-amz-json-1.0"

/* Operation names are CamelCase letters; anything else would let a caller
 * smuggle text into the signed X-Amz-Target header. */
int ddbk__valid_op(const char *op)
{
    size_t n = 0;
    if (!op || !*op)
        return 0;
    for (; op[n]; n++) {
        char ch = op[n];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')))
            return 0;
    }
    return n < 64;
}

/* Names are our own constants and values are bounded (the host by the
 * client, the date and target by construction, the token checked below), so
 * every copy fits; a failed one would only leave an empty header, which the
 * signature then covers as such. */
static void add_header(ddbk_request *out, const char *name, const char *value)
{
    ddbk_header *h = &out->headers[out->nheaders++];
    ddbk__copy(h->name, sizeof h->name, name);
    ddbk__copy(h->value, sizeof h->value, value);
}

/* The canonical request of a DynamoDB call has a fixed shape: POST to "/",
 * no query, and our own five headers, already lowercase, trimmed and in
 * sorted order once lowercased. Writing it directly skips the generic
 * canonicalisation (lowercasing, trimming, sorting), which was most of the
 * signing cost; test_prepare holds it equal to the generic signer's. */
static int canonical_request(char *cr, size_t cap, size_t *len, const ddbk_client *c,
                             const char *amz_date, const char *target,
                             const char *payload_hash, const char **signed_headers)
{
    const char *token = c->creds->session_token;
    *signed_headers = token ? "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
                            : "content-type;host;x-amz-date;x-amz-target";
    *len = 0;
    return ddbk__cats(cr, cap, len, "POST\n/\n\ncontent-type:" CONTENT_TYPE "\nhost:") |
           ddbk__cats(cr, cap, len, c->host) |
           ddbk__cats(cr, cap, len, "\nx-amz-date:") |
           ddbk__cats(cr, cap, len, amz_date) |
           (token ? ddbk__cats(cr, cap, len, "\nx-amz-security-token:") |
                    ddbk__cats(cr, cap, len, token)
                  : 0) |
           ddbk__cats(cr, cap, len, "\nx-amz-target:") |
           ddbk__cats(cr, cap, len, target) |
           ddbk__cats(cr, cap, len, "\n\n") |
           ddbk__cats(cr, cap, len, *signed_headers) |
           ddbk__cats(cr, cap, len, "\n") |
           ddbk__cat(cr, cap, len, payload_hash, 64);
}

int ddbk_prepare(ddbk_client *c, const char *op, const char *body,
                 size_t body_len, int64_t time_s, ddbk_request *out,
                 ddbk_error *err)
{
    char amz_date[17], target[96], payload_hash[65];
    char cr[DDBK_HDR_LINE_MAX + 512]; /* the token is the only long part */
    const char *signed_headers;
    size_t tl = 0, crlen;
    ddbk_sigv4_out sig;

    if (!ddbk__valid_op(op)) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "operation name must be letters only, like \"GetItem\"");
        return -1;
    }
    if (!body) {
        body = "{}";
        body_len = 2;
    }
    /* The cell's credentials, copied only when they changed (a refresh, a
     * host's set); never expired ones: the cell refuses those with its
     * error, which names the provider and the last failure. */
    int took = ddbk__cell_take(c->cell, ddbk__wall_ms(), c->creds, &c->cred_gen, err);
    if (took < 0)
        return -1;
    if (took > 0)
        ddbk__sigv4_key_wipe(&c->key); /* derived from the secret replaced */
    if (c->creds->session_token &&
        strlen(c->creds->session_token) >= sizeof out->headers[0].value) {
        /* Checked, not cut: a cut token would sign a request AWS rejects
         * with a far less helpful message. */
        ddbk_error_set(err, "InvalidArgument", 0,
                       "session token is longer than %zu bytes",
                       sizeof out->headers[0].value - 1);
        return -1;
    }
    ddbk__amz_date(time_s ? time_s : (int64_t)time(NULL), amz_date);
    target[0] = '\0';
    ddbk__cats(target, sizeof target, &tl, TARGET_PREFIX);
    ddbk__cats(target, sizeof target, &tl, op); /* op < 64 letters: fits */
    ddbk__sha256_hex(c->md, body, body_len, payload_hash);

    if (canonical_request(cr, sizeof cr, &crlen, c, amz_date, target, payload_hash,
                          &signed_headers) != 0) {
        ddbk_error_set(err, "InvalidArgument", 0, "request headers too long to sign");
        return -1;
    }
    if (ddbk__sigv4_sign_canonical(c->md, cr, crlen, signed_headers, c->creds->access_key_id,
                                   c->creds->secret_access_key, c->region, "dynamodb",
                                   amz_date, &c->key, &sig, err) != 0)
        return -1;

    out->method = "POST";
    memcpy(out->url, c->url, strlen(c->url) + 1);    /* same-sized fields */
    memcpy(out->host, c->host, strlen(c->host) + 1);
    out->body = body;
    out->body_len = body_len;
    out->nheaders = 0;
    add_header(out, "Host", c->host);
    add_header(out, "Content-Type", CONTENT_TYPE);
    add_header(out, "X-Amz-Date", amz_date);
    add_header(out, "X-Amz-Target", target);
    if (c->creds->session_token)
        add_header(out, "X-Amz-Security-Token", c->creds->session_token);
    add_header(out, "Authorization", sig.authorization);
    return 0;
}
