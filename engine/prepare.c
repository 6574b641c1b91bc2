/*
 * prepare: a DynamoDB operation and its JSON body become a signed HTTP
 * request. Pure computation, no I/O, so hosts with their own sockets
 * (OpenResty cosockets, a game loop) can send the result themselves.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define TARGET_PREFIX "DynamoDB_20120810."
#define CONTENT_TYPE "application/x-amz-json-1.0"

/* Operation names are CamelCase letters; anything else would let a caller
 * smuggle text into the signed X-Amz-Target header. */
static int valid_op(const char *op)
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

static void add_header(ddbk_request *out, const char *name, const char *value)
{
    ddbk_header *h = &out->headers[out->nheaders++];
    snprintf(h->name, sizeof h->name, "%s", name);
    snprintf(h->value, sizeof h->value, "%s", value);
}

int ddbk_prepare(ddbk_client *c, const char *op, const char *body,
                 size_t body_len, int64_t time_s, ddbk_request *out,
                 ddbk_error *err)
{
    char amz_date[17], target[96];
    ddbk_sigv4_out sig;
    ddbk_kv kv[DDBK_MAX_HEADERS];

    if (!valid_op(op)) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "operation name must be letters only, like \"GetItem\"");
        return -1;
    }
    if (!body) {
        body = "{}";
        body_len = 2;
    }
    ddbk__amz_date(time_s ? time_s : (int64_t)time(NULL), amz_date);
    snprintf(target, sizeof target, TARGET_PREFIX "%s", op);

    out->method = "POST";
    snprintf(out->url, sizeof out->url, "%s", c->url);
    snprintf(out->host, sizeof out->host, "%s", c->host);
    out->body = body;
    out->body_len = body_len;
    out->nheaders = 0;
    add_header(out, "Host", c->host);
    add_header(out, "Content-Type", CONTENT_TYPE);
    add_header(out, "X-Amz-Date", amz_date);
    add_header(out, "X-Amz-Target", target);
    if (c->creds.session_token) {
        if (strlen(c->creds.session_token) >= sizeof out->headers[0].value) {
            ddbk_error_set(err, "InvalidArgument", 0,
                           "session token is longer than %zu bytes",
                           sizeof out->headers[0].value - 1);
            return -1;
        }
        add_header(out, "X-Amz-Security-Token", c->creds.session_token);
    }

    for (int i = 0; i < out->nheaders; i++) {
        kv[i].name = out->headers[i].name;
        kv[i].value = out->headers[i].value;
    }
    ddbk_sigv4_request sreq = {
        .method = "POST", .path = "/", .query = NULL,
        .headers = kv, .nheaders = out->nheaders,
        .body = body, .body_len = body_len, .normalize_path = 1,
    };
    if (ddbk__sigv4_sign(&sreq, c->creds.access_key_id,
                         c->creds.secret_access_key, c->region, "dynamodb",
                         amz_date, &c->key, NULL, NULL, &sig, err) != 0)
        return -1;
    add_header(out, "Authorization", sig.authorization);
    return 0;
}
