/*
 * parse: an HTTP status and body become success or a classified error.
 * Error bodies are small; we stream them through yajl and keep only the
 * top-level __type and message, never building a tree.
 *
 * The code is the error name inside __type: before the first ':' (some
 * services append a URL) and after the '#' that ends the namespace, as
 * the AWS JSON protocols define it. An empty, absent, non-string
 * or odd one (anything but letters, digits, '.', '_', '-') is no name: the
 * status decides the code then, so a caller never compares against "" or
 * against a server's control characters.
 */
#include <stdio.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "internal.h"

typedef struct scan {
    int depth;
    int want;          /* 0 none, 1 __type, 2 message, 3 a reason's Code */
    int reasons_next;  /* the last top-level key was CancellationReasons */
    int in_reasons;    /* inside that array (at depth 2) */
    char type[128];    /* the error name, namespace and suffix already cut */
    char message[512];
    int have_type, have_message;
    /* A cancelled transaction's reasons, by kind: see classify(). */
    int reasons, throttled_reasons, other_reasons;
} scan;

/* A cancelled transaction is a throttled one, as retryable as any other,
 * when every item it names was throttled or not at fault: nothing of it
 * applied. DynamoDB sends the per-item codes in CancellationReasons (the
 * exception's own name says only "cancelled"). */
static const char *const throttled_reason_codes[] = {
    "ThrottlingError", "ProvisionedThroughputExceeded", NULL,
};
#define TX_CANCELED "TransactionCanceledException"

/* Nesting past the decoder's limit ends the scan (returning 0 stops yajl,
 * whose own stack would otherwise grow with the body): __type and message
 * live at depth 1, and an error body nested a million deep is no error
 * body, however valid its JSON. */
static int enter(scan *s)
{
    s->want = 0;
    s->reasons_next = 0;
    return ++s->depth <= DDBK__MAX_JSON_DEPTH;
}

static int leave(scan *s)
{
    s->want = 0;
    s->reasons_next = 0;
    if (s->depth == 2)
        s->in_reasons = 0;
    s->depth--;
    return 1;
}

static int on_start_map(void *ctx) { return enter(ctx); }
static int on_end_map(void *ctx) { return leave(ctx); }
static int on_start_array(void *ctx)
{
    scan *s = ctx;
    int reasons = s->reasons_next && s->depth == 1;
    int ok = enter(s);
    s->in_reasons = reasons;
    return ok;
}
static int on_end_array(void *ctx) { return leave(ctx); }

static int on_key(void *ctx, const unsigned char *k, size_t n)
{
    scan *s = ctx;
    s->want = 0;
    s->reasons_next = 0;
    /* A reason is a map in the array: {"Code": ..., "Message": ..., "Item": ...} */
    if (s->depth == 3 && s->in_reasons) {
        if (n == 4 && memcmp(k, "Code", 4) == 0)
            s->want = 3;
        return 1;
    }
    if (s->depth != 1)
        return 1;
    if (n == 19 && memcmp(k, "CancellationReasons", 19) == 0) {
        s->reasons_next = 1;
        return 1;
    }
    if (n == 6 && memcmp(k, "__type", 6) == 0)
        s->want = 1;
    /* DynamoDB says "message"; some errors (and other AWS services) say
     * "Message". Accept both, first one wins. */
    else if (n == 7 && (memcmp(k, "message", 7) == 0 || memcmp(k, "Message", 7) == 0))
        s->want = 2;
    return 1;
}

/* Codes the standard retry mode treats as throttling or transient. */
static const char *const throttling_codes[] = {
    "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottledException", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException",
    "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException", NULL,
};
static const char *const transient_codes[] = {
    "RequestTimeout", "RequestTimeoutException", "InternalServerError",
    "InternalFailure", "ServiceUnavailable", NULL,
};

static int in_list(const char *const *list, const char *code)
{
    for (; *list; list++)
        if (strcmp(*list, code) == 0)
            return 1;
    return 0;
}

static void copy_text(char *dst, size_t cap, const unsigned char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int on_string(void *ctx, const unsigned char *v, size_t n)
{
    scan *s = ctx;
    if (s->want == 1 && !s->have_type) {
        /* Cut here, on the whole value, so that a long namespace cannot
         * push the name out of the buffer. */
        const unsigned char *name = v, *end = memchr(v, ':', n);
        if (!end)
            end = v + n;
        for (const unsigned char *p = v; p < end; p++)
            if (*p == '#')
                name = p + 1;
        copy_text(s->type, sizeof s->type, name, (size_t)(end - name));
        s->have_type = 1;
    } else if (s->want == 2 && !s->have_message) {
        copy_text(s->message, sizeof s->message, v, n);
        s->have_message = 1;
    } else if (s->want == 3) {
        char code[64];
        copy_text(code, sizeof code, v, n);
        s->reasons++;
        if (in_list(throttled_reason_codes, code))
            s->throttled_reasons++;
        else if (strcmp(code, "None") != 0)
            s->other_reasons++;
    }
    s->want = 0;
    /* Both found: the rest (a failed condition's item, say) is not ours,
     * unless the reasons of a cancelled transaction are still to come. */
    return !(s->have_type && s->have_message && strcmp(s->type, TX_CANCELED) != 0);
}

static int on_other(void *ctx)
{
    ((scan *)ctx)->want = 0;
    ((scan *)ctx)->reasons_next = 0;
    return 1;
}
static int on_bool(void *ctx, int b) { (void)b; return on_other(ctx); }
static int on_number(void *ctx, const char *v, size_t n) { (void)v; (void)n; return on_other(ctx); }

static const yajl_callbacks scan_callbacks = {
    .yajl_null = on_other,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

static void classify(ddbk_error *err, const scan *s)
{
    err->throttling = in_list(throttling_codes, err->code) ||
                      (strcmp(err->code, TX_CANCELED) == 0 && s->throttled_reasons > 0 &&
                       s->other_reasons == 0);
    err->retryable = err->throttling || in_list(transient_codes, err->code) ||
                     err->status == 500 || err->status == 502 ||
                     err->status == 503 || err->status == 504;
}

/* Whether the cut __type is an error name (see the head comment). */
static int usable_name(const char *t)
{
    if (!*t)
        return 0;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              *t == '.' || *t == '_' || *t == '-'))
            return 0;
    return 1;
}

int ddbk_parse(long status, const char *request_id, const char *body,
               size_t body_len, ddbk_error *err)
{
    scan s;

    if (status >= 200 && status < 300)
        return 0;

    ddbk_error_clear(err);
    err->status = status;
    if (request_id)
        snprintf(err->request_id, sizeof err->request_id, "%s", request_id);

    memset(&s, 0, sizeof s);
    if (body && body_len) {
        yajl_handle h = yajl_alloc(&scan_callbacks, NULL, &s);
        if (h) {
            /* A parse error, or a scan the callbacks ended, just leaves
             * what was found so far. */
            if (yajl_parse(h, (const unsigned char *)body, body_len) == yajl_status_ok)
                yajl_complete_parse(h);
            yajl_free(h);
        }
    }

    if (s.have_type && usable_name(s.type)) {
        snprintf(err->code, sizeof err->code, "%.95s", s.type);
        snprintf(err->message, sizeof err->message, "%s",
                 s.have_message ? s.message : err->code);
    } else if (status == 413) {
        snprintf(err->code, sizeof err->code, "%s", DDBK_ERR_ENTITY_TOO_LARGE);
        snprintf(err->message, sizeof err->message,
                 "request is too large for DynamoDB (HTTP 413)");
    } else {
        snprintf(err->code, sizeof err->code, "%s", DDBK_ERR_UNKNOWN);
        snprintf(err->message, sizeof err->message, "HTTP %ld%s%s%.440s", status,
                 s.have_type ? " (its __type names no error)" : "",
                 s.have_message ? ": " : "", s.have_message ? s.message : "");
    }
    classify(err, &s);
    /* A 5xx says the service failed, not that it did nothing: DynamoDB
     * answers InternalServerError for writes that may have been applied. */
    err->ambiguous = status >= 500;
    return -1;
}
