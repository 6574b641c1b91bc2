/*
 * libFuzzer target for the JSON readers of engine/cred_parse.c: the first
 * input byte picks what the rest is read as (the container endpoint's,
 * IMDS's, a credential_process's or the SSO portal's answer, the SSO
 * token cache file, or an ISO 8601 time); the rest is handed over in a
 * buffer of exactly its size with no terminator, so AddressSanitizer sees
 * any read past len. What must hold: credentials come whole (key id and
 * secret there and non-empty, no string with a control character or past
 * its cap, an expiry after 1970 where one is required) or not at all, an
 * error has a code and a message free of control characters, and the same
 * input reads the same twice. An ISO 8601 time that parses prints back to
 * the same instant.
 *
 *   make build/fuzz/fuzz_cred_json
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void check_error(const ddbk_error *err)
{
    if (err->code[0] == '\0')
        abort();
    check_text(err->code, sizeof err->code);
    check_text(err->message, sizeof err->message);
}

static void fuzz_creds(enum ddbk__json_kind kind, const char *body, size_t len)
{
    ddbk__fetched f, g;
    ddbk_error err, err2;

    memset(&f, 0x55, sizeof f);
    int r = ddbk__cred_json_parse(kind, body, len, &f, &err);
    if (r == 0) {
        check_value(f.access_key_id, 4096);
        check_value(f.secret_access_key, 4096);
        if (f.session_token != NULL)
            check_value(f.session_token, 8192);
        else if (kind != DDBK__JSON_PROCESS)
            abort(); /* a token is required but for a credential_process */
        if (f.expires_at < 0 || (f.expires_at == 0 && kind != DDBK__JSON_PROCESS))
            abort();
    } else if (r == -1) {
        if (f.access_key_id || f.secret_access_key || f.session_token || f.expires_at)
            abort();
        check_error(&err);
        if (strcmp(err.code, "MalformedResponse") != 0 &&
            !(kind == DDBK__JSON_IMDS && strcmp(err.code, "CredentialsError") == 0) &&
            strcmp(err.code, "OutOfMemory") != 0)
            abort();
    } else {
        abort();
    }
    int r2 = ddbk__cred_json_parse(kind, body, len, &g, &err2);
    if (r2 != r)
        abort();
    if (r == 0 && (strcmp(f.access_key_id, g.access_key_id) != 0 ||
                   strcmp(f.secret_access_key, g.secret_access_key) != 0 ||
                   f.expires_at != g.expires_at))
        abort();
    if (r != 0 && strcmp(err.message, err2.message) != 0)
        abort();
    ddbk__fetched_wipe(&f);
    ddbk__fetched_wipe(&g);
}

static void fuzz_cache(const char *body, size_t len)
{
    char *token = (char *)"x";
    int64_t at = 7;
    ddbk_error err;

    int r = ddbk__sso_cache_parse(body, len, &token, &at, &err);
    if (r == 0) {
        check_value(token, 8192);
        if (at <= 0)
            abort();
        free(token);
    } else if (r == -1) {
        if (token != NULL || at != 0)
            abort();
        check_error(&err);
    } else {
        abort();
    }
}

/* A time that parses is that instant: printed back by gmtime_r at UTC, it
 * parses to the same number. */
static void fuzz_iso(const char *s, size_t len)
{
    int64_t t, u;
    if (ddbk__iso8601_parse(s, len, &t) != 0)
        return;
    time_t when = (time_t)t;
    struct tm tm;
    char text[64];
    if (gmtime_r(&when, &tm) == NULL)
        abort();
    int year = tm.tm_year + 1900;
    if (year < -1 || year > 10000)
        abort(); /* four digits of year, moved a day at most by an offset */
    if (year < 0 || year > 9999)
        return; /* an offset moved it out of four digits: nothing to print */
    snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02dZ", year, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (ddbk__iso8601_parse(text, strlen(text), &u) != 0 || u != t)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int what = data[0] % 6;
    size_t len = size - 1;
    char *body = malloc(len != 0 ? len : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data + 1, len);
    switch (what) {
    case 0: fuzz_creds(DDBK__JSON_CONTAINER, body, len); break;
    case 1: fuzz_creds(DDBK__JSON_IMDS, body, len); break;
    case 2: fuzz_creds(DDBK__JSON_PROCESS, body, len); break;
    case 3: fuzz_creds(DDBK__JSON_SSO, body, len); break;
    case 4: fuzz_cache(body, len); break;
    default: fuzz_iso(body, len); break;
    }
    free(body);
    return 0;
}
