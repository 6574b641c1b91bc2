/*
 * libFuzzer target for ddbk__sts_parse, the reader of STS's XML answers
 * (engine/cred_parse.c, expat). The first input byte picks the HTTP status
 * from a table of those STS and proxies give; the rest is the body, in a
 * buffer of exactly its size with no terminator, so AddressSanitizer sees
 * any read past len. What must hold: an answer is either credentials
 * (every string there, non-empty, free of control characters, within its
 * cap, an expiry after 1970) or an error (nothing kept, a code and message
 * free of control characters, the status carried, a 5xx retryable); a
 * failure status never gives credentials; the same body reads the same
 * twice.
 *
 *   make build/fuzz/fuzz_sts
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "creds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n >= cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            abort();
}

static void check_value(const char *s, size_t cap)
{
    if (s == NULL || s[0] == '\0')
        abort();
    check_text(s, cap + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 200, 400, 403, 429, 500, 503, 404};
    ddbk__fetched f, g;
    ddbk_error err, err2;

    if (size < 1)
        return 0;
    long status = statuses[data[0] % 8];
    size_t len = size - 1;
    char *body = malloc(len != 0 ? len : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data + 1, len);

    memset(&f, 0x55, sizeof f);
    int r = ddbk__sts_parse(status, body, len, &f, &err);
    if (r == 0) {
        if (status < 200 || status > 299)
            abort();
        check_value(f.access_key_id, 4096);
        check_value(f.secret_access_key, 4096);
        check_value(f.session_token, 8192);
        if (f.expires_at <= 0)
            abort();
    } else if (r == -1) {
        if (f.access_key_id || f.secret_access_key || f.session_token || f.expires_at)
            abort(); /* nothing kept from a refused body */
        if (err.code[0] == '\0' || err.status != status)
            abort();
        check_text(err.code, sizeof err.code);
        check_text(err.message, sizeof err.message);
        if (status >= 500 && !err.retryable)
            abort();
        if (err.throttling && !err.retryable)
            abort();
    } else {
        abort();
    }

    /* No state between calls. */
    int r2 = ddbk__sts_parse(status, body, len, &g, &err2);
    if (r2 != r)
        abort();
    if (r == 0) {
        if (strcmp(f.access_key_id, g.access_key_id) != 0 ||
            strcmp(f.secret_access_key, g.secret_access_key) != 0 ||
            strcmp(f.session_token, g.session_token) != 0 || f.expires_at != g.expires_at)
            abort();
    } else if (strcmp(err.code, err2.code) != 0 || strcmp(err.message, err2.message) != 0 ||
               err.retryable != err2.retryable) {
        abort();
    }
    ddbk__fetched_wipe(&f);
    ddbk__fetched_wipe(&g);
    free(body);
    return 0;
}
