/*
 * What credential services answer: the JSON of IMDS, the container
 * endpoint, a credential_process and the SSO portal, the SSO token cache
 * file, and STS's XML; plus the form body of an STS call and the ISO 8601
 * times all of them carry.
 *
 * Every parser here reads a hostile body: it streams (yajl callbacks,
 * expat handlers; no tree), keeps only the fields it wants, bounds the
 * nesting and every value it keeps, checks each value's type, and refuses
 * control characters (the values go into request headers). On any failure
 * nothing is kept: partial copies are wiped before the error returns.
 *
 * Duplicates: a wanted field given twice is refused ("duplicate field"),
 * rather than picking the first or the last: two readers of one body
 * (a proxy, a logger, this engine) must never disagree on which key signs.
 *
 * Errors name the field that was missing or wrong, never its value; the
 * IMDS Code and STS's error Code and Message are not secrets and are shown.
 * STS: a 2xx that is not whole credentials is "MalformedResponse"; an
 * ErrorResponse is its own Code; any other body with a failure status is
 * "UnknownError" carrying that status (retryable for 5xx and 429).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>
#include <openssl/crypto.h>
#include <yajl/yajl_parse.h>

#include "creds.h"

/* The largest values kept. Real ones are far smaller (an access key id is
 * 16 to 128 characters, a secret 40, a session token 1 to 3 KB, an SSO
 * access token about 1 KB): these caps only bound what a hostile server can
 * make the engine hold and put in a header. */
#define CRED_KEY_MAX 4096       /* access key id, secret access key */
#define CRED_TOKEN_MAX 8192     /* session token, SSO access token */
#define CRED_TIME_MAX 64        /* an ISO 8601 time, epoch ms */
#define CRED_CODE_MAX 128       /* IMDS Code, STS error Code */
#define STS_MESSAGE_MAX 400     /* STS error Message (cut, not refused) */
/* Credentials answers are flat (two levels for SSO): 32 leaves room for
 * fields a service may add while keeping a hostile body shallow. */
#define CRED_JSON_MAX_DEPTH 32
/* STS answers are four elements deep. */
#define STS_MAX_DEPTH 16

/* ------------------------------------------------------------ wiping */

static void wipe_str(char **s)
{
    if (*s != NULL) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

DDBK_HIDDEN void ddbk__fetched_wipe(ddbk__fetched *f)
{
    if (f == NULL)
        return;
    wipe_str(&f->access_key_id);
    wipe_str(&f->secret_access_key);
    wipe_str(&f->session_token);
    f->expires_at = 0;
}

/* A heap copy of n bytes, terminated. NULL when memory runs out. */
static char *dup_n(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s != NULL) {
        if (n != 0)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* A control character (C0, DEL) anywhere: such a value would split or
 * corrupt a header line. A NUL counts too (it would cut the value). */
static int has_control(const unsigned char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] == 0x7f)
            return 1;
    return 0;
}

/* ------------------------------------------------------------ ISO 8601 */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil): plain arithmetic, so no timegm, no TZ, no locks. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

/* n decimal digits at s[*i] into *out, advancing *i. 0, or -1. */
static int digits(const char *s, size_t len, size_t *i, int n, int *out)
{
    int v = 0;
    if (len - *i < (size_t)n)
        return -1;
    for (int k = 0; k < n; k++) {
        char c = s[*i + (size_t)k];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *i += (size_t)n;
    *out = v;
    return 0;
}

static int expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return -1;
    (*i)++;
    return 0;
}

DDBK_HIDDEN int ddbk__iso8601_parse(const char *s, size_t len, int64_t *out)
{
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    size_t i = 0;

    if (s == NULL || out == NULL)
        return -1;
    if (digits(s, len, &i, 4, &y) || expect(s, len, &i, '-') ||
        digits(s, len, &i, 2, &mo) || expect(s, len, &i, '-') ||
        digits(s, len, &i, 2, &d))
        return -1;
    if (i >= len || (s[i] != 'T' && s[i] != 't'))
        return -1;
    i++;
    if (digits(s, len, &i, 2, &h) || expect(s, len, &i, ':') ||
        digits(s, len, &i, 2, &mi) || expect(s, len, &i, ':') ||
        digits(s, len, &i, 2, &sec))
        return -1;
    if (i < len && s[i] == '.') {
        /* Fractional seconds: at least one digit, dropped (the engine
         * counts whole seconds, and rounds an expiry down, never up). */
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return -1;
    }
    if (i >= len)
        return -1;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        sign = s[i] == '+' ? 1 : -1;
        i++;
        if (digits(s, len, &i, 2, &oh) || expect(s, len, &i, ':') ||
            digits(s, len, &i, 2, &om))
            return -1;
        if (oh > 23 || om > 59)
            return -1;
    } else {
        return -1;
    }
    if (i != len)
        return -1; /* trailing junk */
    /* Leap seconds (60) are refused: no service hands them out, and
     * accepting one would name the same instant twice. */
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 59)
        return -1;
    int64_t t = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec;
    /* +hh:mm is ahead of UTC: the same instant is earlier in UTC. */
    t -= (int64_t)sign * ((int64_t)oh * 3600 + (int64_t)om * 60);
    *out = t;
    return 0;
}

/* ------------------------------------------------------------ JSON */

/* What a kept JSON value must be. */
enum jtype { J_STRING, J_NUMBER };

/* The fields a kind reads, each into its own slot. */
enum slot { S_ID, S_SECRET, S_TOKEN, S_EXPIRATION, S_CODE, S_VERSION, S_COUNT };

typedef struct jfield {
    const char *name;     /* as the service spells it */
    enum slot slot;
    enum jtype type;
    size_t cap;           /* longest value kept, in bytes */
    int required;
} jfield;

/* The SSO token cache file has the same shape as an answer: a kind of its
 * own here, not in creds.h (it is no answer). */
#define KIND_SSO_CACHE 4
#define KIND_COUNT 5
#define MAX_FIELDS 5

static const struct jkind {
    const char *what;        /* names the answer in messages */
    const char *scope;       /* the object holding the fields, NULL: the top */
    int nfields;
    jfield fields[MAX_FIELDS];
} kinds[KIND_COUNT] = {
    [DDBK__JSON_CONTAINER] = {"container answer", NULL, 4, {
        {"AccessKeyId", S_ID, J_STRING, CRED_KEY_MAX, 1},
        {"SecretAccessKey", S_SECRET, J_STRING, CRED_KEY_MAX, 1},
        {"Token", S_TOKEN, J_STRING, CRED_TOKEN_MAX, 1},
        {"Expiration", S_EXPIRATION, J_STRING, CRED_TIME_MAX, 1},
    }},
    [DDBK__JSON_IMDS] = {"IMDS answer", NULL, 5, {
        {"Code", S_CODE, J_STRING, CRED_CODE_MAX, 1},
        {"AccessKeyId", S_ID, J_STRING, CRED_KEY_MAX, 1},
        {"SecretAccessKey", S_SECRET, J_STRING, CRED_KEY_MAX, 1},
        {"Token", S_TOKEN, J_STRING, CRED_TOKEN_MAX, 1},
        {"Expiration", S_EXPIRATION, J_STRING, CRED_TIME_MAX, 1},
    }},
    [DDBK__JSON_PROCESS] = {"credential_process output", NULL, 5, {
        {"Version", S_VERSION, J_NUMBER, CRED_TIME_MAX, 1},
        {"AccessKeyId", S_ID, J_STRING, CRED_KEY_MAX, 1},
        {"SecretAccessKey", S_SECRET, J_STRING, CRED_KEY_MAX, 1},
        {"SessionToken", S_TOKEN, J_STRING, CRED_TOKEN_MAX, 0},
        {"Expiration", S_EXPIRATION, J_STRING, CRED_TIME_MAX, 0},
    }},
    [DDBK__JSON_SSO] = {"SSO answer", "roleCredentials", 4, {
        {"accessKeyId", S_ID, J_STRING, CRED_KEY_MAX, 1},
        {"secretAccessKey", S_SECRET, J_STRING, CRED_KEY_MAX, 1},
        {"sessionToken", S_TOKEN, J_STRING, CRED_TOKEN_MAX, 1},
        {"expiration", S_EXPIRATION, J_NUMBER, CRED_TIME_MAX, 1},
    }},
    [KIND_SSO_CACHE] = {"SSO token cache", NULL, 2, {
        {"accessToken", S_TOKEN, J_STRING, CRED_TOKEN_MAX, 1},
        {"expiresAt", S_EXPIRATION, J_STRING, CRED_TIME_MAX, 1},
    }},
};

typedef struct jreader {
    const struct jkind *k;
    int depth;            /* containers open */
    int field_depth;      /* where the fields are: 1, or 2 inside scope */
    int key_is_scope;     /* depth 1: the last key was the scope's name */
    int in_scope;         /* depth 2 is the scope object */
    int scope_seen;
    int pending;          /* index into k->fields the last key named, or -1 */
    char *val[S_COUNT];   /* heap, wiped */
    size_t len[S_COUNT];
    ddbk_error *err;
    int failed;           /* err holds why */
} jreader;

static void jfail(jreader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jfail(jreader *r, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    if (r->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ddbk_error_set(r->err, DDBK_ERR_MALFORMED_RESPONSE, 0, "%s: %s", r->k->what, msg);
    r->failed = 1;
}

static void jreader_wipe(jreader *r)
{
    for (int i = 0; i < S_COUNT; i++)
        wipe_str(&r->val[i]);
}

/* The field's name as messages show it: "roleCredentials.accessKeyId". */
static void field_name(const jreader *r, const jfield *f, char *out, size_t cap)
{
    if (r->k->scope != NULL)
        snprintf(out, cap, "%s.%s", r->k->scope, f->name);
    else
        snprintf(out, cap, "%s", f->name);
}

/* A value of a wanted field: its type, size and bytes checked, then kept. */
static int keep(jreader *r, enum jtype type, const unsigned char *v, size_t n)
{
    const jfield *f = &r->k->fields[r->pending];
    char name[96];

    r->pending = -1;
    field_name(r, f, name, sizeof name);
    if (type != f->type) {
        jfail(r, "%s is not a %s", name, f->type == J_STRING ? "string" : "number");
        return 0;
    }
    if (r->val[f->slot] != NULL) {
        jfail(r, "duplicate field %s", name);
        return 0;
    }
    if (n > f->cap) {
        jfail(r, "%s is longer than %zu bytes", name, f->cap);
        return 0;
    }
    if (has_control(v, n)) {
        jfail(r, "%s holds a control character", name);
        return 0;
    }
    r->val[f->slot] = dup_n(v, n);
    if (r->val[f->slot] == NULL) {
        ddbk_error_set(r->err, DDBK_ERR_OUT_OF_MEMORY, 0, "%s: out of memory", r->k->what);
        r->failed = 1;
        return 0;
    }
    r->len[f->slot] = n;
    return 1;
}

/* Every value (a scalar, or a container before it counts itself) at the
 * current depth. 0 stops the parse. */
static int jvalue(jreader *r, int is_map, int is_scalar, enum jtype type,
                  const unsigned char *v, size_t n)
{
    if (r->depth == 0) {
        if (!is_map) {
            jfail(r, "not a JSON object");
            return 0;
        }
        return 1;
    }
    if (r->depth == 1 && r->key_is_scope) {
        r->key_is_scope = 0;
        if (r->scope_seen) {
            jfail(r, "duplicate field %s", r->k->scope);
            return 0;
        }
        if (!is_map) {
            jfail(r, "%s is not an object", r->k->scope);
            return 0;
        }
        r->scope_seen = 1;
        r->in_scope = 1;
        return 1;
    }
    if (r->pending >= 0) {
        if (!is_scalar) {
            const jfield *f = &r->k->fields[r->pending];
            char name[96];
            field_name(r, f, name, sizeof name);
            jfail(r, "%s is not a %s", name, f->type == J_STRING ? "string" : "number");
            return 0;
        }
        return keep(r, type, v, n);
    }
    return 1;
}

static int j_start(jreader *r, int is_map)
{
    if (!jvalue(r, is_map, 0, J_STRING, NULL, 0))
        return 0;
    if (++r->depth > CRED_JSON_MAX_DEPTH) {
        jfail(r, "nested deeper than %d levels", CRED_JSON_MAX_DEPTH);
        return 0;
    }
    return 1;
}

static int j_start_map(void *ctx) { return j_start(ctx, 1); }
static int j_start_array(void *ctx) { return j_start(ctx, 0); }

static int j_end(void *ctx)
{
    jreader *r = ctx;
    if (r->depth == 2)
        r->in_scope = 0; /* the container open at depth 2 closes */
    r->depth--;
    return 1;
}

static int j_key(void *ctx, const unsigned char *k, size_t n)
{
    jreader *r = ctx;
    r->pending = -1;
    r->key_is_scope = 0;
    if (r->depth == 1 && r->k->scope != NULL) {
        r->key_is_scope = strlen(r->k->scope) == n && memcmp(k, r->k->scope, n) == 0;
        return 1;
    }
    if (r->depth != r->field_depth || (r->field_depth == 2 && !r->in_scope))
        return 1;
    for (int i = 0; i < r->k->nfields; i++) {
        const char *name = r->k->fields[i].name;
        if (strlen(name) == n && memcmp(k, name, n) == 0)
            r->pending = i;
    }
    return 1;
}

static int j_string(void *ctx, const unsigned char *v, size_t n)
{
    return jvalue(ctx, 0, 1, J_STRING, v, n);
}
static int j_number(void *ctx, const char *v, size_t n)
{
    return jvalue(ctx, 0, 1, J_NUMBER, (const unsigned char *)v, n);
}
/* null and booleans are neither type: a wanted field holding one fails
 * here; anywhere else they are only a value (a top-level null is no
 * object, jvalue says so). */
static int j_other(jreader *r)
{
    if (r->pending >= 0) {
        const jfield *f = &r->k->fields[r->pending];
        char name[96];
        field_name(r, f, name, sizeof name);
        jfail(r, "%s is not a %s", name, f->type == J_STRING ? "string" : "number");
        return 0;
    }
    return jvalue(r, 0, 1, J_STRING, NULL, 0);
}
static int j_null(void *ctx) { return j_other(ctx); }
static int j_bool(void *ctx, int b)
{
    (void)b;
    return j_other(ctx);
}

static const yajl_callbacks jcallbacks = {
    .yajl_null = j_null,
    .yajl_boolean = j_bool,
    .yajl_number = j_number,
    .yajl_string = j_string,
    .yajl_start_map = j_start_map,
    .yajl_map_key = j_key,
    .yajl_end_map = j_end,
    .yajl_start_array = j_start_array,
    .yajl_end_array = j_end,
};

/* Runs the reader over body. 0 with r->val filled (required ones present
 * or not: the caller checks, in its own order); -1 with r->err. */
static int jparse(jreader *r, int kind, const char *body, size_t len, ddbk_error *err)
{
    memset(r, 0, sizeof *r);
    r->k = &kinds[kind];
    r->field_depth = r->k->scope != NULL ? 2 : 1;
    r->pending = -1;
    r->err = err;
    if (body == NULL || len == 0) {
        jfail(r, "empty");
        return -1;
    }
    yajl_handle h = yajl_alloc(&jcallbacks, NULL, r);
    if (h == NULL) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, 0, "%s: out of memory", r->k->what);
        return -1;
    }
    yajl_status st = yajl_parse(h, (const unsigned char *)body, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    yajl_free(h);
    if (st != yajl_status_ok && !r->failed)
        jfail(r, "not valid JSON"); /* yajl's own text quotes the body: not shown */
    if (r->failed) {
        jreader_wipe(r);
        return -1;
    }
    return 0;
}

/* The first required field missing, named; 0 when none is. */
static int jmissing(jreader *r)
{
    for (int i = 0; i < r->k->nfields; i++) {
        const jfield *f = &r->k->fields[i];
        if (f->required && r->val[f->slot] == NULL) {
            char name[96];
            field_name(r, f, name, sizeof name);
            jfail(r, "%s missing", name);
            return -1;
        }
    }
    return 0;
}

/* A required string that is there but empty is as good as missing. */
static int jempty(jreader *r, enum slot s)
{
    if (r->val[s] == NULL || r->len[s] != 0)
        return 0;
    for (int i = 0; i < r->k->nfields; i++) {
        if (r->k->fields[i].slot == s) {
            char name[96];
            field_name(r, &r->k->fields[i], name, sizeof name);
            jfail(r, "%s is empty", name);
        }
    }
    return -1;
}

/* Epoch milliseconds as the SSO portal writes them: a non-negative integer
 * (no fraction, no exponent), to epoch seconds, rounded down. */
static int parse_epoch_ms(const char *v, size_t n, int64_t *out)
{
    int64_t ms = 0;
    if (n == 0 || n > 15) /* 15 digits of ms: beyond the year 30000 */
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        ms = ms * 10 + (v[i] - '0');
    }
    *out = ms / 1000;
    return 0;
}

DDBK_HIDDEN int ddbk__cred_json_parse(enum ddbk__json_kind kind, const char *body,
                                      size_t len, ddbk__fetched *out, ddbk_error *err)
{
    jreader r;

    memset(out, 0, sizeof *out);
    ddbk_error_clear(err);
    if ((int)kind < 0 || (int)kind >= KIND_SSO_CACHE) {
        ddbk_error_set(err, DDBK_ERR_INVALID_ARGUMENT, 0, "unknown credentials answer kind");
        return -1;
    }
    if (jparse(&r, (int)kind, body, len, err) != 0)
        return -1;
    /* IMDS says why it has no credentials in Code, before anything else:
     * "Failed" with the keys absent is the service's answer, not a
     * malformed one. The code is the service's word, no secret. */
    if (kind == DDBK__JSON_IMDS && r.val[S_CODE] != NULL && strcmp(r.val[S_CODE], "Success") != 0) {
        ddbk_error_set(err, DDBK_ERR_CREDENTIALS, 0, "IMDS answered Code \"%.64s\", not Success",
                       r.val[S_CODE]);
        goto fail;
    }
    if (jmissing(&r) != 0)
        goto fail;
    if (jempty(&r, S_ID) != 0 || jempty(&r, S_SECRET) != 0 ||
        (kind != DDBK__JSON_PROCESS && jempty(&r, S_TOKEN) != 0))
        goto fail;
    if (kind == DDBK__JSON_PROCESS && strcmp(r.val[S_VERSION], "1") != 0) {
        jfail(&r, "Version is not 1");
        goto fail;
    }
    if (kind == DDBK__JSON_SSO) {
        if (parse_epoch_ms(r.val[S_EXPIRATION], r.len[S_EXPIRATION], &out->expires_at) != 0) {
            jfail(&r, "roleCredentials.expiration is not epoch milliseconds");
            goto fail;
        }
    } else if (r.val[S_EXPIRATION] != NULL) {
        if (ddbk__iso8601_parse(r.val[S_EXPIRATION], r.len[S_EXPIRATION], &out->expires_at) != 0) {
            jfail(&r, "Expiration is not an ISO 8601 time");
            goto fail;
        }
    }
    if (r.val[S_EXPIRATION] != NULL && out->expires_at <= 0) {
        jfail(&r, "%s is not after 1970", kind == DDBK__JSON_SSO ? "roleCredentials.expiration"
                                                                 : "Expiration");
        goto fail;
    }
    out->access_key_id = r.val[S_ID];
    out->secret_access_key = r.val[S_SECRET];
    r.val[S_ID] = r.val[S_SECRET] = NULL;
    /* An empty token is no token (a credential_process may print ""; the
     * others must give one, refused above). */
    if (r.val[S_TOKEN] != NULL && r.len[S_TOKEN] != 0) {
        out->session_token = r.val[S_TOKEN];
        r.val[S_TOKEN] = NULL;
    }
    jreader_wipe(&r);
    return 0;
fail:
    jreader_wipe(&r);
    memset(out, 0, sizeof *out);
    return -1;
}

DDBK_HIDDEN int ddbk__sso_cache_parse(const char *body, size_t len, char **token,
                                      int64_t *expires_at, ddbk_error *err)
{
    jreader r;

    *token = NULL;
    *expires_at = 0;
    ddbk_error_clear(err);
    if (jparse(&r, KIND_SSO_CACHE, body, len, err) != 0)
        return -1;
    if (jmissing(&r) != 0 || jempty(&r, S_TOKEN) != 0)
        goto fail;
    /* Older AWS CLIs wrote "2019-11-14T04:05:45UTC": read as Z. */
    char when[CRED_TIME_MAX + 2];
    size_t n = r.len[S_EXPIRATION];
    memcpy(when, r.val[S_EXPIRATION], n + 1);
    if (n > 3 && strcmp(when + n - 3, "UTC") == 0 && when[n - 4] >= '0' && when[n - 4] <= '9') {
        when[n - 3] = 'Z';
        n -= 2;
        when[n] = '\0';
    }
    if (ddbk__iso8601_parse(when, n, expires_at) != 0 || *expires_at <= 0) {
        *expires_at = 0;
        jfail(&r, "expiresAt is not an ISO 8601 time");
        goto fail;
    }
    *token = r.val[S_TOKEN];
    r.val[S_TOKEN] = NULL;
    jreader_wipe(&r);
    return 0;
fail:
    jreader_wipe(&r);
    return -1;
}

/* ------------------------------------------------------------ STS XML */

enum elem {
    E_OTHER,
    E_ASSUME_RESPONSE, E_WEB_RESPONSE, E_ASSUME_RESULT, E_WEB_RESULT,
    E_CREDENTIALS, E_ACCESS_KEY_ID, E_SECRET, E_SESSION_TOKEN, E_EXPIRATION,
    E_ERROR_RESPONSE, E_ERROR, E_CODE, E_MESSAGE,
    E_COUNT
};

static const char *const elem_names[E_COUNT] = {
    [E_OTHER] = "",
    [E_ASSUME_RESPONSE] = "AssumeRoleResponse",
    [E_WEB_RESPONSE] = "AssumeRoleWithWebIdentityResponse",
    [E_ASSUME_RESULT] = "AssumeRoleResult",
    [E_WEB_RESULT] = "AssumeRoleWithWebIdentityResult",
    [E_CREDENTIALS] = "Credentials",
    [E_ACCESS_KEY_ID] = "AccessKeyId",
    [E_SECRET] = "SecretAccessKey",
    [E_SESSION_TOKEN] = "SessionToken",
    [E_EXPIRATION] = "Expiration",
    [E_ERROR_RESPONSE] = "ErrorResponse",
    [E_ERROR] = "Error",
    [E_CODE] = "Code",
    [E_MESSAGE] = "Message",
};

/* The leaves kept, each with its cap; Message is cut to fit, not refused. */
enum leaf { L_ID, L_SECRET, L_TOKEN, L_EXPIRATION, L_CODE, L_MESSAGE, L_COUNT };
static const struct {
    enum elem e;
    size_t cap;
} leaves[L_COUNT] = {
    [L_ID] = {E_ACCESS_KEY_ID, CRED_KEY_MAX},
    [L_SECRET] = {E_SECRET, CRED_KEY_MAX},
    [L_TOKEN] = {E_SESSION_TOKEN, CRED_TOKEN_MAX},
    [L_EXPIRATION] = {E_EXPIRATION, CRED_TIME_MAX},
    [L_CODE] = {E_CODE, CRED_CODE_MAX},
    [L_MESSAGE] = {E_MESSAGE, STS_MESSAGE_MAX},
};

typedef struct xreader {
    XML_Parser p;
    int depth;
    enum elem path[STS_MAX_DEPTH + 1];  /* path[1] is the root */
    int leaf;             /* the leaf being read (innermost element), or -1 */
    ddbk_buf text[L_COUNT];
    int seen[L_COUNT];
    const char *why;      /* set when a handler stopped the parser */
    char why_buf[96];
} xreader;

/* The local name of an element: a prefix ("sts:") is dropped, and without
 * namespace processing a default xmlns leaves the name as it is. */
static enum elem elem_of(const XML_Char *name)
{
    const char *colon = strrchr(name, ':');
    const char *local = colon != NULL ? colon + 1 : name;
    for (int i = 1; i < E_COUNT; i++)
        if (strcmp(local, elem_names[i]) == 0)
            return (enum elem)i;
    return E_OTHER;
}

static void xstop(xreader *r, const char *why)
{
    if (r->why == NULL)
        r->why = why;
    XML_StopParser(r->p, XML_FALSE);
}

/* Which leaf an element at the current depth is, by its whole path:
 * root/Result/Credentials/X for a success, ErrorResponse/Error/X for an
 * error. -1 for any other element. */
static int leaf_at(const xreader *r)
{
    const enum elem *p = r->path;
    enum elem e = p[r->depth];
    if (r->depth == 4 && p[3] == E_CREDENTIALS &&
        ((p[1] == E_ASSUME_RESPONSE && p[2] == E_ASSUME_RESULT) ||
         (p[1] == E_WEB_RESPONSE && p[2] == E_WEB_RESULT))) {
        for (int l = L_ID; l <= L_EXPIRATION; l++)
            if (leaves[l].e == e)
                return l;
    }
    if (r->depth == 3 && p[1] == E_ERROR_RESPONSE && p[2] == E_ERROR) {
        if (e == E_CODE)
            return L_CODE;
        if (e == E_MESSAGE)
            return L_MESSAGE;
    }
    return -1;
}

static void XMLCALL x_start(void *ctx, const XML_Char *name, const XML_Char **atts)
{
    xreader *r = ctx;
    (void)atts;
    if (r->leaf >= 0) {
        snprintf(r->why_buf, sizeof r->why_buf, "%s holds an element",
                 elem_names[leaves[r->leaf].e]);
        xstop(r, r->why_buf);
        return;
    }
    if (r->depth >= STS_MAX_DEPTH) {
        xstop(r, "nested too deep");
        return;
    }
    r->path[++r->depth] = elem_of(name);
    r->leaf = leaf_at(r);
    if (r->leaf >= 0) {
        if (r->seen[r->leaf]) {
            snprintf(r->why_buf, sizeof r->why_buf, "duplicate element %s",
                     elem_names[leaves[r->leaf].e]);
            xstop(r, r->why_buf);
            return;
        }
        r->seen[r->leaf] = 1;
    }
}

static void XMLCALL x_end(void *ctx, const XML_Char *name)
{
    xreader *r = ctx;
    (void)name;
    r->leaf = -1;
    if (r->depth > 0)
        r->depth--;
}

static void XMLCALL x_text(void *ctx, const XML_Char *s, int n)
{
    xreader *r = ctx;
    if (r->leaf < 0 || n <= 0)
        return;
    ddbk_buf *b = &r->text[r->leaf];
    /* Surrounding whitespace is trimmed later: allow some beyond the cap
     * so a pretty-printed value is not refused for its indentation. */
    size_t room = leaves[r->leaf].cap + 256;
    if (b->len + (size_t)n > room) {
        if (r->leaf == L_MESSAGE) { /* cut: a message is for people */
            if (b->len < room && ddbk_buf_append(b, s, room - b->len) != 0)
                xstop(r, "out of memory");
            return;
        }
        snprintf(r->why_buf, sizeof r->why_buf, "%s is longer than %zu bytes",
                 elem_names[leaves[r->leaf].e], leaves[r->leaf].cap);
        xstop(r, r->why_buf);
        return;
    }
    if (ddbk_buf_append(b, s, (size_t)n) != 0)
        xstop(r, "out of memory");
}

/* A DTD is where entities are declared (billion laughs, external
 * entities): STS never sends one, so any is refused at its start. */
static void XMLCALL x_doctype(void *ctx, const XML_Char *name, const XML_Char *sysid,
                              const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    xstop(ctx, "a DTD is refused");
}

static void XMLCALL x_entity(void *ctx, const XML_Char *name, int is_param,
                             const XML_Char *value, int value_len, const XML_Char *base,
                             const XML_Char *sysid, const XML_Char *pubid,
                             const XML_Char *notation)
{
    (void)name;
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    xstop(ctx, "an entity declaration is refused");
}

static int xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The trimmed text of a leaf: *p and *n. */
static void trimmed(const ddbk_buf *b, const char **p, size_t *n)
{
    const char *s = b->data != NULL ? b->data : "";
    size_t len = b->len;
    while (len > 0 && xml_space(*s))
        s++, len--;
    while (len > 0 && xml_space(s[len - 1]))
        len--;
    *p = s;
    *n = len;
}

static void xreader_free(xreader *r)
{
    for (int i = 0; i < L_COUNT; i++) {
        if (r->text[i].data != NULL)
            OPENSSL_cleanse(r->text[i].data, r->text[i].cap);
        ddbk_buf_free(&r->text[i]);
    }
}

static int throttling_code(const char *code)
{
    return strcmp(code, "Throttling") == 0 || strcmp(code, "ThrottlingException") == 0 ||
           strcmp(code, "RequestLimitExceeded") == 0;
}

/* STS's error: code from <Code> (cut to fit, a control character made '?'),
 * message from <Message> (likewise, cut). */
static void sts_error(xreader *r, long status, ddbk_error *err)
{
    const char *code, *msg;
    size_t code_n, msg_n;
    char c[sizeof err->code], m[STS_MESSAGE_MAX + 1];

    trimmed(&r->text[L_CODE], &code, &code_n);
    trimmed(&r->text[L_MESSAGE], &msg, &msg_n);
    if (code_n >= sizeof c)
        code_n = sizeof c - 1;
    if (msg_n >= sizeof m)
        msg_n = sizeof m - 1;
    for (size_t i = 0; i < code_n; i++)
        c[i] = has_control((const unsigned char *)code + i, 1) ? '?' : code[i];
    c[code_n] = '\0';
    for (size_t i = 0; i < msg_n; i++)
        m[i] = has_control((const unsigned char *)msg + i, 1) ? ' ' : msg[i];
    m[msg_n] = '\0';
    if (msg_n != 0)
        ddbk_error_set(err, c, status, "%s", m);
    else
        ddbk_error_set(err, c, status, "STS answered %s (HTTP %ld)", c, status);
    err->throttling = throttling_code(c) || status == 429;
    err->retryable = err->throttling || status >= 500 ||
                     strcmp(c, "IDPCommunicationError") == 0;
}

DDBK_HIDDEN int ddbk__sts_parse(long status, const char *body, size_t len,
                                ddbk__fetched *out, ddbk_error *err)
{
    xreader r;
    int ok2xx = status >= 200 && status < 300;
    const char *what = NULL;
    char missing[96];

    memset(out, 0, sizeof *out);
    ddbk_error_clear(err);
    memset(&r, 0, sizeof r);
    r.leaf = -1;
    for (int i = 0; i < L_COUNT; i++)
        ddbk_buf_init(&r.text[i], leaves[i].cap + 512);
    if (body == NULL || len == 0 || len > (size_t)INT32_MAX) {
        what = "an empty body";
        goto fail;
    }
    r.p = XML_ParserCreate(NULL);
    if (r.p == NULL) {
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, status, "STS answer: out of memory");
        goto out_fail;
    }
    XML_SetUserData(r.p, &r);
    XML_SetElementHandler(r.p, x_start, x_end);
    XML_SetCharacterDataHandler(r.p, x_text);
    XML_SetStartDoctypeDeclHandler(r.p, x_doctype);
    XML_SetEntityDeclHandler(r.p, x_entity);
    XML_SetParamEntityParsing(r.p, XML_PARAM_ENTITY_PARSING_NEVER);
    enum XML_Status st = XML_Parse(r.p, body, (int)len, XML_TRUE);
    if (r.why != NULL) {
        what = r.why;
        goto fail;
    }
    if (st != XML_STATUS_OK) {
        snprintf(r.why_buf, sizeof r.why_buf, "not XML (%s)",
                 XML_ErrorString(XML_GetErrorCode(r.p)));
        what = r.why_buf;
        goto fail;
    }
    enum elem root = r.path[1];
    if (root == E_ERROR_RESPONSE) {
        const char *code;
        size_t code_n;
        trimmed(&r.text[L_CODE], &code, &code_n);
        if (code_n == 0) { /* absent, or blank: no code to report */
            what = "an ErrorResponse without a Code";
            goto fail;
        }
        sts_error(&r, status, err);
        goto out_fail;
    }
    if (!ok2xx) {
        what = "no ErrorResponse";
        goto fail;
    }
    if (root != E_ASSUME_RESPONSE && root != E_WEB_RESPONSE) {
        what = "not an AssumeRole answer";
        goto fail;
    }
    static const int need[] = {L_ID, L_SECRET, L_TOKEN, L_EXPIRATION};
    const char *v[4];
    size_t n[4];
    for (int i = 0; i < 4; i++) {
        const char *name = elem_names[leaves[need[i]].e];
        trimmed(&r.text[need[i]], &v[i], &n[i]);
        if (!r.seen[need[i]] || n[i] == 0) {
            snprintf(missing, sizeof missing, "Credentials/%s missing", name);
            what = missing;
            goto fail;
        }
        if (n[i] > leaves[need[i]].cap) {
            snprintf(missing, sizeof missing, "%s is longer than %zu bytes", name,
                     leaves[need[i]].cap);
            what = missing;
            goto fail;
        }
        if (has_control((const unsigned char *)v[i], n[i])) {
            snprintf(missing, sizeof missing, "%s holds a control character", name);
            what = missing;
            goto fail;
        }
    }
    if (ddbk__iso8601_parse(v[3], n[3], &out->expires_at) != 0 || out->expires_at <= 0) {
        out->expires_at = 0;
        what = "Expiration is not an ISO 8601 time";
        goto fail;
    }
    out->access_key_id = dup_n(v[0], n[0]);
    out->secret_access_key = dup_n(v[1], n[1]);
    out->session_token = dup_n(v[2], n[2]);
    if (out->access_key_id == NULL || out->secret_access_key == NULL ||
        out->session_token == NULL) {
        ddbk__fetched_wipe(out);
        ddbk_error_set(err, DDBK_ERR_OUT_OF_MEMORY, status, "STS answer: out of memory");
        goto out_fail;
    }
    XML_ParserFree(r.p);
    xreader_free(&r);
    return 0;
fail:
    /* A 2xx that is not what it should be is malformed; any other status
     * without STS's own error is the status itself, retried on 5xx. */
    if (ok2xx) {
        ddbk_error_set(err, DDBK_ERR_MALFORMED_RESPONSE, status, "STS answer: %s", what);
    } else {
        ddbk_error_set(err, DDBK_ERR_UNKNOWN, status, "STS answered HTTP %ld: %s", status,
                       what);
        err->throttling = status == 429;
        err->retryable = status >= 500 || status == 429;
    }
out_fail:
    if (r.p != NULL)
        XML_ParserFree(r.p);
    xreader_free(&r);
    memset(out, 0, sizeof *out);
    return -1;
}

/* ------------------------------------------------------------ STS form */

static size_t pct_len(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '~';
        n += keep ? 1 : 3;
    }
    return n;
}

/* Appends s percent-encoded; room was reserved. */
static void pct_put(ddbk_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '~';
        if (keep) {
            b->data[b->len++] = (char)c;
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = hex[c >> 4];
            b->data[b->len++] = hex[c & 15];
        }
    }
    b->data[b->len] = '\0';
}

/* Two passes: the length first, one reservation, then the bytes. A body
 * may hold a web identity token: growing the buffer while writing would
 * leave copies of it in freed memory. */
DDBK_HIDDEN int ddbk__sts_form(ddbk_buf *out, const char *action, ...)
{
    va_list ap;
    size_t total = strlen("Action=") + pct_len(action) + strlen("&Version=2011-06-15");

    va_start(ap, action);
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (name == NULL)
            break;
        const char *value = va_arg(ap, const char *);
        if (value == NULL || value[0] == '\0')
            continue;
        total += 2 + pct_len(name) + pct_len(value);
    }
    va_end(ap);
    if (ddbk_buf_reserve(out, total) != 0)
        return -1;

    ddbk_buf_append(out, "Action=", 7);
    pct_put(out, action);
    ddbk_buf_append(out, "&Version=2011-06-15", 19);
    va_start(ap, action);
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (name == NULL)
            break;
        const char *value = va_arg(ap, const char *);
        if (value == NULL || value[0] == '\0')
            continue;
        out->data[out->len++] = '&';
        pct_put(out, name);
        out->data[out->len++] = '=';
        pct_put(out, value);
    }
    va_end(ap);
    return 0;
}
