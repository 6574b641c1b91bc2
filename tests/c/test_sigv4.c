/*
 * engine/sigv4.c against the aws-c-auth SigV4 test suite (one folder per
 * case under $SIGV4_DIR, default tests/vectors/sigv4/v4, the
 * repository's copy of aws-c-auth's suite: see its NOTICE), plus the parts the
 * suite does not reach: the signing-key cache, dates, and the edges of path,
 * query and header canonicalisation.
 *
 * Each case's request.txt is a raw HTTP request. The signer adds no headers
 * of its own, so the test adds what a caller would: X-Amz-Date always,
 * X-Amz-Security-Token when the context has a token (unless the case says
 * the token goes on after signing), X-Amz-Content-Sha256 when sign_body.
 * Only the header-* expectations are checked; query-* (presigned URLs) is
 * not something this signer does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <yajl/yajl_tree.h>

#include "sigv4_canon.h"

/* Cases this signer cannot pass, each with why. A name here that is not a
 * folder fails the run, so the list cannot rot. */
static const char *const skipped[][2] = {
    {NULL, NULL},
};

static const char *vectors_dir(void)
{
    const char *d = getenv("SIGV4_DIR");
    return d != NULL && *d != '\0' ? d : "tests/vectors/sigv4/v4";
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    FILE *f;
    char *buf;
    long n;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

/* ------------------------------------------------------ request.txt */

#define MAX_H 40

typedef struct parsed {
    char *method, *path, *query; /* query NULL when the target has no '?' */
    char *names[MAX_H], *values[MAX_H];
    int n;
    char *body;
    size_t body_len;
    char *text;
} parsed;

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Next line of text at *p (without its CR LF), advancing *p past it. */
static size_t next_line(const char **p, const char *end, const char **line)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *le = nl != NULL ? nl : end;

    *line = *p;
    *p = nl != NULL ? nl + 1 : end;
    if (le > *line && le[-1] == '\r')
        le--;
    return (size_t)(le - *line);
}

/* The request line's target may hold spaces ("GET /example space/ HTTP/1.1"),
 * so it runs from the first space to the last. A header line starting with
 * blanks continues the previous value; it is kept with its line break so the
 * signer's folding is what gets tested. */
static void parse_request(const char *dir, parsed *r)
{
    size_t len, n;
    const char *p, *end, *line, *sp1, *sp2, *q, *colon;

    memset(r, 0, sizeof *r);
    r->text = slurp(dir, "request.txt", &len);
    assert_non_null(r->text);
    p = r->text;
    end = r->text + len;

    n = next_line(&p, end, &line);
    sp1 = memchr(line, ' ', n);
    assert_non_null(sp1);
    for (sp2 = line + n - 1; sp2 > sp1 && *sp2 != ' '; sp2--)
        ;
    assert_true(sp2 > sp1);
    r->method = dupn(line, (size_t)(sp1 - line));
    q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    if (q != NULL) {
        r->path = dupn(sp1 + 1, (size_t)(q - sp1 - 1));
        r->query = dupn(q + 1, (size_t)(sp2 - q - 1));
    } else {
        r->path = dupn(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    }

    while (p < end) {
        n = next_line(&p, end, &line);
        if (n == 0)
            break;
        if (line[0] == ' ' || line[0] == '\t') {
            char *prev;
            size_t pl;
            assert_true(r->n > 0);
            prev = r->values[r->n - 1];
            pl = strlen(prev);
            prev = realloc(prev, pl + 1 + n + 1);
            assert_non_null(prev);
            prev[pl] = '\n';
            memcpy(prev + pl + 1, line, n);
            prev[pl + 1 + n] = '\0';
            r->values[r->n - 1] = prev;
            continue;
        }
        colon = memchr(line, ':', n);
        assert_non_null(colon);
        assert_true(r->n < MAX_H);
        r->names[r->n] = dupn(line, (size_t)(colon - line));
        r->values[r->n] = dupn(colon + 1, (size_t)(line + n - colon - 1));
        r->n++;
    }
    r->body = dupn(p, (size_t)(end - p));
    r->body_len = (size_t)(end - p);
}

static void free_request(parsed *r)
{
    int i;

    for (i = 0; i < r->n; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
    free(r->method);
    free(r->path);
    free(r->query);
    free(r->body);
    free(r->text);
}

/* ------------------------------------------------------ context.json */

typedef struct context {
    char akid[128], secret[128], token[2048];
    char region[64], service[64];
    char timestamp[32]; /* "2015-08-30T12:36:00Z" */
    char amz_date[17];  /* "20150830T123600Z" */
    int normalize, sign_body, omit_token;
} context;

static void json_str(yajl_val root, const char **path, char *out, size_t size)
{
    yajl_val v = yajl_tree_get(root, path, yajl_t_string);

    out[0] = '\0';
    if (v != NULL)
        snprintf(out, size, "%s", YAJL_GET_STRING(v));
}

static int json_bool(yajl_val root, const char **path, int dflt)
{
    yajl_val v = yajl_tree_get(root, path, yajl_t_any);

    if (v == NULL)
        return dflt;
    return YAJL_IS_TRUE(v);
}

static void parse_context(const char *dir, context *c)
{
    static const char *akid[] = {"credentials", "access_key_id", NULL};
    static const char *secret[] = {"credentials", "secret_access_key", NULL};
    static const char *token[] = {"credentials", "token", NULL};
    static const char *region[] = {"region", NULL};
    static const char *service[] = {"service", NULL};
    static const char *ts[] = {"timestamp", NULL};
    static const char *norm[] = {"normalize", NULL};
    static const char *body[] = {"sign_body", NULL};
    static const char *omit[] = {"omit_session_token", NULL};
    char errbuf[256], *text, *o;
    const char *s;
    yajl_val root;

    text = slurp(dir, "context.json", NULL);
    assert_non_null(text);
    root = yajl_tree_parse(text, errbuf, sizeof errbuf);
    free(text);
    assert_non_null(root);

    memset(c, 0, sizeof *c);
    json_str(root, akid, c->akid, sizeof c->akid);
    json_str(root, secret, c->secret, sizeof c->secret);
    json_str(root, token, c->token, sizeof c->token);
    json_str(root, region, c->region, sizeof c->region);
    json_str(root, service, c->service, sizeof c->service);
    json_str(root, ts, c->timestamp, sizeof c->timestamp);
    c->normalize = json_bool(root, norm, 1);
    c->sign_body = json_bool(root, body, 0);
    c->omit_token = json_bool(root, omit, 0);
    yajl_tree_free(root);

    for (s = c->timestamp, o = c->amz_date; *s != '\0'; s++)
        if (*s != '-' && *s != ':' && o < c->amz_date + 16)
            *o++ = *s;
    *o = '\0';
    assert_int_equal(strlen(c->amz_date), 16);
}

/* ------------------------------------------------------- one case */

static char *expected(const char *dir, const char *name)
{
    char *s = slurp(dir, name, NULL);

    if (s == NULL)
        fail_msg("%s/%s is missing", dir, name);
    return s;
}

/* The Authorization value from header-signed-request.txt. */
static char *expected_authorization(const char *dir)
{
    char *text = expected(dir, "header-signed-request.txt"), *a, *e, *r;

    a = strstr(text, "\nAuthorization:");
    assert_non_null(a);
    a += strlen("\nAuthorization:");
    e = strchr(a, '\n');
    r = dupn(a, e != NULL ? (size_t)(e - a) : strlen(a));
    free(text);
    return r;
}

static void test_vector(void **state)
{
    const char *name = *state;
    char dir[1024], body_hash[65], date[17];
    char *want_cr, *want_sts, *want_sig, *want_auth;
    parsed r;
    context c;
    ddbk_kv kv[MAX_H + 3];
    ddbk_sigv4_request req;
    ddbk_sigv4_key key;
    ddbk_sigv4_out out;
    ddbk_buf cr, sts;
    ddbk_error err;
    struct tm tm;
    int i, n = 0;

    snprintf(dir, sizeof dir, "%s/%s", vectors_dir(), name);
    parse_request(dir, &r);
    parse_context(dir, &c);

    /* The fixture's timestamp through ddbk__amz_date agrees with it. */
    memset(&tm, 0, sizeof tm);
    assert_non_null(strptime(c.timestamp, "%Y-%m-%dT%H:%M:%SZ", &tm));
    ddbk__amz_date((int64_t)timegm(&tm), date);
    assert_string_equal(date, c.amz_date);

    for (i = 0; i < r.n; i++) {
        kv[n].name = r.names[i];
        kv[n++].value = r.values[i];
    }
    kv[n].name = "X-Amz-Date";
    kv[n++].value = c.amz_date;
    if (c.token[0] != '\0' && !c.omit_token) {
        kv[n].name = "X-Amz-Security-Token";
        kv[n++].value = c.token;
    }
    if (c.sign_body) {
        ddbk__sha256_hex(NULL, r.body, r.body_len, body_hash);
        kv[n].name = "x-amz-content-sha256";
        kv[n++].value = body_hash;
    }

    memset(&req, 0, sizeof req);
    req.method = r.method;
    req.path = r.path;
    req.query = r.query;
    req.headers = kv;
    req.nheaders = n;
    req.body = r.body;
    req.body_len = r.body_len;
    req.normalize_path = c.normalize;

    memset(&key, 0, sizeof key);
    ddbk_buf_init(&cr, 0);
    ddbk_buf_init(&sts, 0);
    ddbk_error_clear(&err);
    assert_int_equal(ddbk__sigv4_sign(&req, c.akid, c.secret, c.region,
                                      c.service, c.amz_date, &key, &cr, &sts,
                                      &out, &err),
                     0);

    want_cr = expected(dir, "header-canonical-request.txt");
    want_sts = expected(dir, "header-string-to-sign.txt");
    want_sig = expected(dir, "header-signature.txt");
    want_auth = expected_authorization(dir);
    assert_string_equal(cr.data, want_cr);
    assert_string_equal(sts.data, want_sts);
    assert_string_equal(out.signature, want_sig);
    assert_string_equal(out.authorization, want_auth);

    free(want_cr);
    free(want_sts);
    free(want_sig);
    free(want_auth);
    ddbk_buf_free(&cr);
    ddbk_buf_free(&sts);
    ddbk__sigv4_key_wipe(&key);
    free_request(&r);
}

/* ------------------------------------------------------ unit tests */

static const char *SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
#define VANILLA_SIG "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"

/* get-vanilla, built by hand. */
static int sign_vanilla(const char *amz_date, const char *region,
                        const char *service, ddbk_sigv4_key *key,
                        ddbk_sigv4_out *out)
{
    ddbk_kv kv[2] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", amz_date}};
    ddbk_sigv4_request req = {"GET", "/", NULL, kv, 2, "", 0, 1};
    ddbk_error err;

    return ddbk__sigv4_sign(&req, "AKIDEXAMPLE", SECRET, region, service,
                            amz_date, key, NULL, NULL, out, &err);
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char b)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != b)
            return 0;
    return 1;
}

static void test_key_cache(void **state)
{
    ddbk_sigv4_key key;
    ddbk_sigv4_out out;
    unsigned char first[32];

    (void)state;
    memset(&key, 0, sizeof key);
    assert_int_equal(sign_vanilla("20150830T123600Z", "us-east-1", "service", &key, &out), 0);
    assert_string_equal(out.signature, VANILLA_SIG);
    assert_true(key.valid);
    assert_string_equal(key.date, "20150830");
    assert_string_equal(key.region, "us-east-1");
    assert_string_equal(key.service, "service");
    memcpy(first, key.key, 32);

    /* Poison the cached key: a second signing the same day must use it
     * as is (and so come out wrong), proving it did not derive again. */
    memset(key.key, 0xAA, sizeof key.key);
    assert_int_equal(sign_vanilla("20150830T235959Z", "us-east-1", "service", &key, &out), 0);
    assert_true(all_bytes(key.key, 32, 0xAA));

    /* Another day derives afresh... */
    assert_int_equal(sign_vanilla("20150831T000000Z", "us-east-1", "service", &key, &out), 0);
    assert_string_equal(key.date, "20150831");
    assert_false(all_bytes(key.key, 32, 0xAA));
    assert_memory_not_equal(key.key, first, 32);
    /* ...and back to the first day gives the vector's signature again. */
    assert_int_equal(sign_vanilla("20150830T123600Z", "us-east-1", "service", &key, &out), 0);
    assert_string_equal(out.signature, VANILLA_SIG);
    assert_memory_equal(key.key, first, 32);

    /* Region and service are part of the key too. */
    memset(key.key, 0xAA, sizeof key.key);
    assert_int_equal(sign_vanilla("20150830T123600Z", "eu-west-1", "service", &key, &out), 0);
    assert_string_equal(key.region, "eu-west-1");
    assert_false(all_bytes(key.key, 32, 0xAA));
    memset(key.key, 0xAA, sizeof key.key);
    assert_int_equal(sign_vanilla("20150830T123600Z", "eu-west-1", "dynamodb", &key, &out), 0);
    assert_string_equal(key.service, "dynamodb");
    assert_false(all_bytes(key.key, 32, 0xAA));

    /* valid = 0 forces a derivation whatever the fields say. */
    assert_int_equal(sign_vanilla("20150830T123600Z", "us-east-1", "service", &key, &out), 0);
    memset(key.key, 0xAA, sizeof key.key);
    key.valid = 0;
    assert_int_equal(sign_vanilla("20150830T123600Z", "us-east-1", "service", &key, &out), 0);
    assert_string_equal(out.signature, VANILLA_SIG);
    assert_true(key.valid);

    ddbk__sigv4_key_wipe(&key);
    assert_false(key.valid);
    assert_true(all_bytes(key.key, 32, 0));
    assert_true(all_bytes((const unsigned char *)&key, sizeof key, 0));

    /* No cache at all still signs. */
    assert_int_equal(sign_vanilla("20150830T123600Z", "us-east-1", "service", NULL, &out), 0);
    assert_string_equal(out.signature, VANILLA_SIG);
}

static void test_amz_date(void **state)
{
    char d[17];

    (void)state;
    ddbk__amz_date(0, d);
    assert_string_equal(d, "19700101T000000Z");
    ddbk__amz_date(1440938160, d);
    assert_string_equal(d, "20150830T123600Z");
    ddbk__amz_date(951782400, d); /* a leap day */
    assert_string_equal(d, "20000229T000000Z");
    ddbk__amz_date(951868799, d);
    assert_string_equal(d, "20000229T235959Z");
    ddbk__amz_date(4107542399LL, d);
    assert_string_equal(d, "21000228T235959Z");
    ddbk__amz_date(4107542400LL, d); /* 2100 is not a leap year */
    assert_string_equal(d, "21000301T000000Z");
    ddbk__amz_date(-1, d);
    assert_string_equal(d, "19700101T000000Z");
    ddbk__amz_date(INT64_MAX, d);
    assert_string_equal(d, "99991231T235959Z");
}

static void test_sha256_hex(void **state)
{
    char h[65];

    (void)state;
    ddbk__sha256_hex(NULL, "", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ddbk__sha256_hex(NULL, NULL, 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ddbk__sha256_hex(NULL, "abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* The canonical request for a bare request with one header. */
static void canon(const char *method, const char *path, const char *query,
                  int normalize, const ddbk_kv *kv, int n, ddbk_buf *cr)
{
    ddbk_sigv4_request req = {method, path, query, kv, n, NULL, 0, normalize};
    ddbk_sigv4_out out;
    ddbk_error err;

    ddbk_error_clear(&err);
    if (ddbk__sigv4_sign(&req, "AKID", "secret", "us-east-1", "dynamodb",
                         "20240101T000000Z", NULL, cr, NULL, &out, &err) != 0)
        fail_msg("sign failed: %s: %s", err.code, err.message);
}

/* Line `line` (0-based) of the canonical request. */
static void assert_line(const ddbk_buf *cr, int line, const char *want)
{
    const char *p = cr->data, *e;
    int i;

    for (i = 0; i < line; i++) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    e = strchr(p, '\n');
    if (e == NULL)
        e = p + strlen(p);
    if (strlen(want) != (size_t)(e - p) || memcmp(p, want, (size_t)(e - p)) != 0)
        fail_msg("line %d: got \"%.*s\", want \"%s\"", line, (int)(e - p), p, want);
}

static void test_paths(void **state)
{
    static const struct {
        const char *in;
        int normalize;
        const char *want;
    } cases[] = {
        {"", 1, "/"},
        {NULL, 1, "/"},
        {"/", 1, "/"},
        {"/a/b/../c/./d/", 1, "/a/c/d/"},
        {"/a/b/..", 1, "/a/"},
        {"/a/b/.", 1, "/a/b/"},
        {"/../../a", 1, "/a"},
        {"/..", 1, "/"},
        {"/a//b///c", 1, "/a/b/c"},
        {"/.../a", 1, "/.../a"},
        {"/%20", 1, "/%2520"}, /* non-S3 paths are encoded twice */
        {"/a:b@c", 1, "/a%3Ab%40c"},
        {"/a b/../c", 0, "/a%20b/../c"},
        {"/tables/Music", 1, "/tables/Music"},
    };
    ddbk_kv kv[1] = {{"host", "h"}};
    ddbk_buf cr;
    size_t i;

    (void)state;
    ddbk_buf_init(&cr, 0);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        canon("GET", cases[i].in, NULL, cases[i].normalize, kv, 1, &cr);
        assert_line(&cr, 1, cases[i].want);
    }
    ddbk_buf_free(&cr);
}

static void test_queries(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {NULL, ""},
        {"", ""},
        {"b=2&a=1&a=0", "a=0&a=1&b=2"},
        {"x", "x="},
        {"x=", "x="},
        {"&&a=1&&", "a=1"},
        {"=v", "=v"},
        {"k=a=b", "k=a%3Db"},
        {"%zz=%4", "%25zz=%254"},
        {"sp%20ace=a+b", "sp%20ace=a%2Bb"},
        {"%7e=%41", "~=A"},
        {"Ab=1&aB=2&AB=3", "AB=3&Ab=1&aB=2"},
    };
    ddbk_kv kv[1] = {{"host", "h"}};
    ddbk_buf cr;
    size_t i;

    (void)state;
    ddbk_buf_init(&cr, 0);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        canon("GET", "/", cases[i].in, 1, kv, 1, &cr);
        assert_line(&cr, 2, cases[i].want);
    }
    ddbk_buf_free(&cr);
}

static void test_header_values(void **state)
{
    ddbk_kv kv[] = {
        {"  X-Tabs\t", "\t a \t\t b \r\n c  "},
        {"Empty", ""},
        {"Null", NULL},
        {"HOST", "h"},
        {"x-tabs", "second"},
    };
    ddbk_buf cr;

    (void)state;
    ddbk_buf_init(&cr, 0);
    canon("POST", "/", NULL, 1, kv, 5, &cr);
    assert_line(&cr, 3, "empty:");
    assert_line(&cr, 4, "host:h");
    assert_line(&cr, 5, "null:");
    assert_line(&cr, 6, "x-tabs:a b c,second");
    assert_line(&cr, 7, "");
    assert_line(&cr, 8, "empty;host;null;x-tabs");
    ddbk_buf_free(&cr);
}

/* Past the stack arrays: 40 headers (names short enough that the signed
 * header list still fits the Authorization value), 100 query parameters and
 * a 20 KB header value. */
static void test_large(void **state)
{
    enum { NH = 40, NQ = 100 };
    char names[NH][8], *big, *query, want[64];
    ddbk_kv kv[NH + 1];
    ddbk_buf cr;
    size_t off = 0;
    const char *p;
    int i;

    (void)state;
    big = malloc(20001);
    query = malloc(NQ * 16);
    assert_non_null(big);
    assert_non_null(query);
    memset(big, 'v', 20000);
    big[20000] = '\0';
    /* Given in reverse so the sorts have work to do. */
    for (i = 0; i < NH; i++) {
        snprintf(names[i], sizeof names[i], "h%02d", NH - 1 - i);
        kv[i].name = names[i];
        kv[i].value = "v";
    }
    kv[NH].name = "big";
    kv[NH].value = big;
    for (i = 0; i < NQ; i++)
        off += (size_t)sprintf(query + off, "%sq%03d=%d", i ? "&" : "", NQ - 1 - i, i);

    ddbk_buf_init(&cr, 0);
    canon("GET", "/", query, 1, kv, NH + 1, &cr);
    snprintf(want, sizeof want, "q000=%d&q001=%d&", NQ - 1, NQ - 2);
    assert_memory_equal(cr.data + strlen("GET\n/\n"), want, strlen(want));
    /* Whole lines would be 20 KB; check the shape instead. */
    p = strstr(cr.data, "\nbig:");
    assert_non_null(p);
    assert_int_equal(strspn(p + 5, "v"), 20000);
    assert_memory_equal(p + 5 + 20000, "\nh00:v\nh01:v\n", 13);
    assert_non_null(strstr(cr.data, "\nbig;h00;h01;h02;"));
    assert_non_null(strstr(cr.data, ";h38;h39\n"));
    ddbk_buf_free(&cr);
    free(big);
    free(query);
}

static void test_errors(void **state)
{
    ddbk_kv kv[2] = {{"Host", "h"}, {"X-Amz-Date", "20150830T123600Z"}};
    ddbk_sigv4_request req = {"GET", "/", NULL, kv, 2, NULL, 0, 1};
    ddbk_sigv4_out out;
    ddbk_error err;
    char longid[600];

    (void)state;
    assert_int_equal(ddbk__sigv4_sign(&req, "AKID", NULL, "r", "s",
                                      "20150830T123600Z", NULL, NULL, NULL, &out, &err),
                     -1);
    assert_string_equal(err.code, "MissingCredentials");

    assert_int_equal(ddbk__sigv4_sign(&req, "AKID", SECRET, "r", "s",
                                      "2015-08-30", NULL, NULL, NULL, &out, &err),
                     -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(strstr(err.message, SECRET));

    assert_int_equal(ddbk__sigv4_sign(&req, "AKID", SECRET, "", "s",
                                      "20150830T123600Z", NULL, NULL, NULL, &out, &err),
                     -1);
    assert_string_equal(err.code, "InvalidArgument");

    memset(longid, 'A', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(ddbk__sigv4_sign(&req, longid, SECRET, "r", "s",
                                      "20150830T123600Z", NULL, NULL, NULL, &out, &err),
                     -1);
    assert_string_equal(err.code, "InvalidArgument");
    assert_null(strstr(err.message, SECRET));

    req.body_len = 3; /* with a NULL body */
    assert_int_equal(ddbk__sigv4_sign(&req, "AKID", SECRET, "r", "s",
                                      "20150830T123600Z", NULL, NULL, NULL, &out, &err),
                     -1);
    assert_string_equal(err.code, "InvalidArgument");
}

/* The signing key and signature computed with libcrypto's own HMAC(), for
 * secrets around the 64-byte HMAC block (where "AWS4" + secret starts being
 * hashed first) and far past it. */
static void test_hmac_against_libcrypto(void **state)
{
    static const size_t lens[] = {1, 40, 59, 60, 61, 64, 65, 400};
    ddbk_kv kv[1] = {{"host", "h"}};
    ddbk_sigv4_request req = {"GET", "/", NULL, kv, 1, NULL, 0, 1};
    unsigned char k0[512], a[32], b[32];
    char secret[500], want[65];
    ddbk_sigv4_out out;
    ddbk_buf sts;
    ddbk_error err;
    unsigned int n;
    size_t i, j;

    (void)state;
    ddbk_buf_init(&sts, 0);
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (j = 0; j < lens[i]; j++)
            secret[j] = (char)('a' + (j * 7 + i) % 26);
        secret[lens[i]] = '\0';
        assert_int_equal(ddbk__sigv4_sign(&req, "AKID", secret, "us-west-2", "dynamodb",
                                          "20150830T123600Z", NULL, NULL, &sts, &out, &err), 0);

        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, secret, lens[i]);
        assert_non_null(HMAC(EVP_sha256(), k0, (int)lens[i] + 4,
                             (const unsigned char *)"20150830", 8, a, &n));
        assert_non_null(HMAC(EVP_sha256(), a, 32, (const unsigned char *)"us-west-2", 9, b, &n));
        assert_non_null(HMAC(EVP_sha256(), b, 32, (const unsigned char *)"dynamodb", 8, a, &n));
        assert_non_null(HMAC(EVP_sha256(), a, 32, (const unsigned char *)"aws4_request", 12, b, &n));
        assert_non_null(HMAC(EVP_sha256(), b, 32, (const unsigned char *)sts.data, sts.len, a, &n));
        for (j = 0; j < 32; j++)
            snprintf(want + 2 * j, 3, "%02x", a[j]);
        assert_string_equal(out.signature, want);
    }
    ddbk_buf_free(&sts);
}

/* ------------------------------------------------------------ main */

static int is_case_dir(const char *root, const char *name)
{
    char path[1024];
    struct stat st;

    if (name[0] == '.')
        return 0;
    snprintf(path, sizeof path, "%s/%s/request.txt", root, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *skip_reason(const char *name)
{
    size_t i;

    for (i = 0; skipped[i][0] != NULL; i++)
        if (strcmp(skipped[i][0], name) == 0)
            return skipped[i][1];
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_key_cache),
        cmocka_unit_test(test_amz_date),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_header_values),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_hmac_against_libcrypto),
    };
    const size_t nfixed = sizeof fixed / sizeof fixed[0];
    const char *root = vectors_dir();
    struct CMUnitTest *tests;
    char **names = NULL;
    size_t n = 0, cap = 0, i, ntests;
    struct dirent *de;
    DIR *d;
    int rc, bad = 0;

    d = opendir(root);
    if (d == NULL) {
        fprintf(stderr, "test_sigv4: cannot open SIGV4_DIR %s\n", root);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        if (!is_case_dir(root, de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof *names);
            if (names == NULL)
                return 1;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    if (n == 0) {
        fprintf(stderr, "test_sigv4: no cases in %s\n", root);
        return 1;
    }

    for (i = 0; skipped[i][0] != NULL; i++) {
        size_t j;
        for (j = 0; j < n && strcmp(names[j], skipped[i][0]) != 0; j++)
            ;
        if (j == n) {
            fprintf(stderr, "test_sigv4: skip list names %s, which is not a case\n",
                    skipped[i][0]);
            bad = 1;
        }
    }

    tests = calloc(nfixed + n, sizeof *tests);
    if (tests == NULL)
        return 1;
    memcpy(tests, fixed, sizeof fixed);
    ntests = nfixed;
    for (i = 0; i < n; i++) {
        const char *why = skip_reason(names[i]);
        if (why != NULL) {
            printf("[ SKIPPED  ] %s: %s\n", names[i], why);
            continue;
        }
        tests[ntests].name = names[i];
        tests[ntests].test_func = test_vector;
        tests[ntests].initial_state = names[i];
        ntests++;
    }

    rc = _cmocka_run_group_tests("sigv4", tests, ntests, NULL, NULL);

    free(tests);
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc != 0 || bad ? 1 : 0;
}
