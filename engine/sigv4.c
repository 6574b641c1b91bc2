/*
 * AWS Signature Version 4, header flavour (the Authorization header; no
 * presigned URLs).
 *
 * The canonical request is assembled in a stack buffer that only moves to the
 * heap for unusually large requests, so signing a DynamoDB call (POST /, no
 * query, a handful of headers) costs two SHA-256 and one HMAC, and no heap
 * but libcrypto's digest context.
 * The signing key is derived (four HMACs) only when the day, region or service
 * changes; the caller owns that cache.
 *
 * What this file does not do: add headers. The caller passes every header it
 * wants signed (host, x-amz-date, x-amz-security-token when there is a
 * session token, x-amz-content-sha256 when the service wants it).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "internal.h"

#define ALGORITHM "AWS4-HMAC-SHA256"

/* Holds the canonical request of any DynamoDB call, session token included
 * (STS tokens run to about 1.5 KB), without going to the heap. */
#define SB_LOCAL 4096
/* No canonical request worth signing is this big; the cap keeps the size
 * arithmetic far from overflow. */
#define SB_MAX ((size_t)16 << 20)

/* Up to this many headers (or query parameters) are sorted in a stack array. */
#define SORT_LOCAL 32

/* ------------------------------------------------------- string builder */

typedef struct sb {
    char *p;
    size_t len;
    size_t cap;
    int failed; /* sticky: once an append fails the content is garbage */
    char local[SB_LOCAL];
} sb;

static void sb_init(sb *s)
{
    s->p = s->local;
    s->len = 0;
    s->cap = sizeof s->local;
    s->failed = 0;
}

static void sb_free(sb *s)
{
    if (s->p != s->local)
        free(s->p);
    s->p = s->local;
    s->len = s->cap = 0;
}

static int sb_grow(sb *s, size_t extra)
{
    size_t need, ncap;
    char *np;

    if (s->failed)
        return -1;
    if (extra > SB_MAX || s->len > SB_MAX - extra) {
        s->failed = 1;
        return -1;
    }
    need = s->len + extra;
    if (need <= s->cap)
        return 0;
    ncap = s->cap * 2;
    while (ncap < need)
        ncap *= 2;
    if (s->p == s->local) {
        np = malloc(ncap);
        if (np != NULL)
            memcpy(np, s->local, s->len);
    } else {
        np = realloc(s->p, ncap);
    }
    if (np == NULL) {
        s->failed = 1;
        return -1;
    }
    s->p = np;
    s->cap = ncap;
    return 0;
}

static void sb_add(sb *s, const void *p, size_t n)
{
    if (sb_grow(s, n) == 0) {
        memcpy(s->p + s->len, p, n);
        s->len += n;
    }
}

static void sb_putc(sb *s, char c)
{
    if (s->len < s->cap || sb_grow(s, 1) == 0)
        s->p[s->len++] = c;
}

static void sb_puts(sb *s, const char *str)
{
    sb_add(s, str, strlen(str));
}

/* -------------------------------------------------------------- encoding */

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* SigV4 URI encoding: unreserved bytes pass, everything else (UTF-8
 * included, byte by byte) becomes %XX in upper case. */
static void put_byte(sb *s, unsigned char c, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";

    if (is_unreserved(c) || (keep_slash && c == '/')) {
        sb_putc(s, (char)c);
    } else {
        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
        sb_add(s, e, 3);
    }
}

static void put_encoded(sb *s, const char *p, size_t n, int keep_slash)
{
    size_t i;

    for (i = 0; i < n; i++)
        put_byte(s, (unsigned char)p[i], keep_slash);
}

/* Query text arrives already percent-encoded (it is what goes on the wire),
 * so it is decoded before the canonical re-encoding; otherwise "%E1" would be
 * signed as "%25E1". A malformed escape is kept as literal text, and '+' is
 * a plus sign, not a space (SigV4 wants spaces as %20). */
static void put_decoded_encoded(sb *s, const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%' && n - i >= 3) {
            int hi = hexval((unsigned char)p[i + 1]);
            int lo = hexval((unsigned char)p[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (unsigned char)(hi << 4 | lo);
                i += 2;
            }
        }
        put_byte(s, c, 0);
    }
}

/* ------------------------------------------------------ canonical URI */

/* The path is encoded as given, '%' included: for every service but S3,
 * SigV4 signs the wire path (already encoded once) encoded again, while S3
 * callers pass normalize_path = 0 and a path they have not encoded.
 *
 * Normalised: dot segments removed and empty segments dropped (so "//a//"
 * is "/a/"), as RFC 3986 section 5.2.4 would on a path without empty
 * segments. A path that names a directory (ends in "/", "." or "..") keeps
 * its trailing slash. Each segment is encoded on the way out; since an
 * encoded segment never contains '/', ".." can pop by scanning back for one. */
static void put_path(sb *s, const char *path, int normalize)
{
    size_t base, n, plen;
    const char *p, *seg;
    int last_dot = 0;

    if (path == NULL || *path == '\0') {
        sb_putc(s, '/');
        return;
    }
    plen = strlen(path);
    if (!normalize) {
        put_encoded(s, path, plen, 1);
        return;
    }

    base = s->len;
    sb_putc(s, '/');
    p = path;
    while (*p != '\0') {
        while (*p == '/')
            p++;
        seg = p;
        while (*p != '\0' && *p != '/')
            p++;
        n = (size_t)(p - seg);
        if (n == 0)
            break;
        last_dot = 0;
        if (n == 1 && seg[0] == '.') {
            last_dot = 1;
        } else if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            last_dot = 1;
            if (!s->failed && s->len > base + 1) {
                size_t q = s->len - 1;
                while (q > base && s->p[q] != '/')
                    q--;
                s->len = q == base ? base + 1 : q;
            }
        } else {
            if (s->len > base + 1)
                sb_putc(s, '/');
            put_encoded(s, seg, n, 0);
        }
    }
    if ((path[plen - 1] == '/' || last_dot) && s->len > base + 1)
        sb_putc(s, '/');
}

/* ---------------------------------------------------- canonical query */

typedef struct qparam {
    size_t koff, klen, voff, vlen; /* into the scratch builder */
    const char *k, *v;             /* set once the scratch stops moving */
} qparam;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->k, y->k, n);

    if (c != 0)
        return c;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    n = x->vlen < y->vlen ? x->vlen : y->vlen;
    c = memcmp(x->v, y->v, n);
    if (c != 0)
        return c;
    if (x->vlen != y->vlen)
        return x->vlen < y->vlen ? -1 : 1;
    return 0;
}

/* Sorted by encoded key, then encoded value; a parameter without '=' is
 * signed as "k=". Returns -1 only when memory runs out. */
static int put_query(sb *s, const char *query)
{
    qparam local[SORT_LOCAL], *qp = local;
    size_t count = 0, i, maxp = 1;
    const char *p, *end, *eq;
    sb *scratch = NULL;
    int rc = -1;

    if (query == NULL || *query == '\0')
        return 0;

    for (p = query; *p != '\0'; p++)
        if (*p == '&')
            maxp++;
    if (maxp > SORT_LOCAL) {
        qp = malloc(maxp * sizeof *qp);
        if (qp == NULL)
            return -1;
    }
    /* The scratch is heap-allocated (queries are off the DynamoDB hot path)
     * to keep this frame small. */
    scratch = malloc(sizeof *scratch);
    if (scratch == NULL)
        goto done;
    sb_init(scratch);

    p = query;
    while (*p != '\0') {
        end = strchr(p, '&');
        if (end == NULL)
            end = p + strlen(p);
        if (end > p) {
            eq = memchr(p, '=', (size_t)(end - p));
            qp[count].koff = scratch->len;
            put_decoded_encoded(scratch, p, (size_t)((eq ? eq : end) - p));
            qp[count].klen = scratch->len - qp[count].koff;
            qp[count].voff = scratch->len;
            if (eq != NULL)
                put_decoded_encoded(scratch, eq + 1, (size_t)(end - eq - 1));
            qp[count].vlen = scratch->len - qp[count].voff;
            count++;
        }
        p = *end == '&' ? end + 1 : end;
    }
    if (scratch->failed)
        goto done;
    for (i = 0; i < count; i++) {
        qp[i].k = scratch->p + qp[i].koff;
        qp[i].v = scratch->p + qp[i].voff;
    }
    qsort(qp, count, sizeof *qp, qparam_cmp);
    for (i = 0; i < count; i++) {
        if (i > 0)
            sb_putc(s, '&');
        sb_add(s, qp[i].k, qp[i].klen);
        sb_putc(s, '=');
        sb_add(s, qp[i].v, qp[i].vlen);
    }
    rc = s->failed ? -1 : 0;

done:
    if (scratch != NULL) {
        sb_free(scratch);
        free(scratch);
    }
    if (qp != local)
        free(qp);
    return rc;
}

/* -------------------------------------------------- canonical headers */

static int is_lws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A header name without surrounding blanks. */
static void name_span(const char *name, const char **start, size_t *len)
{
    const char *e;

    while (is_lws(*name))
        name++;
    e = name + strlen(name);
    while (e > name && is_lws(e[-1]))
        e--;
    *start = name;
    *len = (size_t)(e - name);
}

/* Compares two header names as their lowercase forms would compare. */
static int name_cmp(const char *a, const char *b)
{
    const char *as, *bs;
    size_t al, bl, i;

    name_span(a, &as, &al);
    name_span(b, &bs, &bl);
    for (i = 0; i < al && i < bl; i++) {
        unsigned char x = (unsigned char)lower(as[i]);
        unsigned char y = (unsigned char)lower(bs[i]);
        if (x != y)
            return x < y ? -1 : 1;
    }
    if (al != bl)
        return al < bl ? -1 : 1;
    return 0;
}

static void put_lower_name(sb *s, const char *name)
{
    const char *start;
    size_t len, i;

    name_span(name, &start, &len);
    for (i = 0; i < len; i++)
        sb_putc(s, lower(start[i]));
}

/* Trimmed, with every run of blanks inside (line folds included: a
 * multi-line value arrives with its CR/LF) reduced to one space. */
static void put_value(sb *s, const char *v)
{
    int pending = 0, any = 0;

    if (v == NULL)
        return;
    for (; *v != '\0'; v++) {
        if (is_lws(*v)) {
            pending = any;
            continue;
        }
        if (pending)
            sb_putc(s, ' ');
        pending = 0;
        any = 1;
        sb_putc(s, *v);
    }
}

/* Writes the canonical header block and, into sh_off and sh_len, where the
 * signed header list starts in `s`. A stable sort keeps repeated headers in
 * the order given, which is the order their values are joined in.
 * Insertion sort: n is a handful in practice, and it is stable for free. */
static int put_headers(sb *s, const ddbk_kv *h, int n, size_t *sh_off,
                       size_t *sh_len)
{
    int local[SORT_LOCAL], *idx = local;
    int i, j;

    if (n > SORT_LOCAL) {
        idx = malloc((size_t)n * sizeof *idx);
        if (idx == NULL)
            return -1;
    }
    for (i = 0; i < n; i++) {
        int v = i;
        for (j = i; j > 0 && name_cmp(h[idx[j - 1]].name, h[v].name) > 0; j--)
            idx[j] = idx[j - 1];
        idx[j] = v;
    }

    for (i = 0; i < n; i = j) {
        put_lower_name(s, h[idx[i]].name);
        sb_putc(s, ':');
        put_value(s, h[idx[i]].value);
        for (j = i + 1; j < n && name_cmp(h[idx[i]].name, h[idx[j]].name) == 0;
             j++) {
            sb_putc(s, ',');
            put_value(s, h[idx[j]].value);
        }
        sb_putc(s, '\n');
    }
    sb_putc(s, '\n');

    *sh_off = s->len;
    for (i = 0; i < n; i = j) {
        if (i > 0)
            sb_putc(s, ';');
        put_lower_name(s, h[idx[i]].name);
        for (j = i + 1; j < n && name_cmp(h[idx[i]].name, h[idx[j]].name) == 0;
             j++)
            ;
    }
    *sh_len = s->len - *sh_off;

    if (idx != local)
        free(idx);
    return s->failed ? -1 : 0;
}

/* -------------------------------------------------------------- hashing */

/* Two hex digits per byte from one table look-up: three 32-byte hashes are
 * hexed per request, and the nibble loop showed in profiles. */
static void to_hex(const unsigned char *md, size_t n, char *out)
{
    static const char pairs[] =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

    for (size_t i = 0; i < n; i++)
        memcpy(out + 2 * i, pairs + 2 * md[i], 2);
    out[2 * n] = '\0';
}

/* libcrypto 3 looks SHA-256 up by name on every EVP_sha256() use, and its
 * one-shot HMAC() builds a MAC object per call: together about 2 of the 3 us
 * a DynamoDB signing took. Fetching the digest once and doing HMAC's two
 * hashes over one reused context brings it near 1 us. The fetched digest
 * lives for the process (it is immutable and shared between threads). */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_md(void)
{
    pthread_once(&g_sha256_once, fetch_sha256);
    return g_sha256 != NULL ? g_sha256 : EVP_sha256();
}

/* SHA-256 of a then b (b may be empty). */
static int digest2(EVP_MD_CTX *c, const void *a, size_t an, const void *b,
                   size_t bn, unsigned char out[32])
{
    unsigned int n = 0;

    if (!EVP_DigestInit_ex(c, sha256_md(), NULL) ||
        !EVP_DigestUpdate(c, a, an) || !EVP_DigestUpdate(c, b, bn) ||
        !EVP_DigestFinal_ex(c, out, &n) || n != 32)
        return -1;
    return 0;
}

DDBK_HIDDEN void ddbk__sha256_hex(EVP_MD_CTX *md, const void *data, size_t len,
                                  char out[65])
{
    unsigned char h[32];
    unsigned int hlen = 0;

    /* An empty body may come as NULL; EVP wants a valid pointer. */
    if (data == NULL)
        data = "";
    int ok = md != NULL ? digest2(md, data, len, "", 0, h) == 0
                        : EVP_Digest(data, len, h, &hlen, sha256_md(), NULL) && hlen == 32;
    if (!ok)
        memset(h, 0, sizeof h); /* cannot happen short of a broken libcrypto */
    to_hex(h, 32, out);
}

/* HMAC-SHA256 as RFC 2104 defines it, for keys of at most one block (64
 * bytes; longer keys are hashed by the caller, as HMAC itself would). The
 * test vectors check it end to end, and test_long_secret against
 * libcrypto's own HMAC(). */
static int hmac(EVP_MD_CTX *c, const unsigned char *key, size_t keylen,
                const void *data, size_t len, unsigned char out[32])
{
    unsigned char pad[64], inner[32];
    size_t i;
    int rc = -1;

    memset(pad, 0x36, sizeof pad);
    for (i = 0; i < keylen; i++)
        pad[i] ^= key[i];
    if (digest2(c, pad, sizeof pad, data, len, inner) != 0)
        goto done;
    for (i = 0; i < sizeof pad; i++)
        pad[i] ^= 0x36 ^ 0x5c;
    if (digest2(c, pad, sizeof pad, inner, sizeof inner, out) != 0)
        goto done;
    rc = 0;
done:
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(inner, sizeof inner);
    return rc;
}

DDBK_HIDDEN void ddbk__sigv4_key_wipe(ddbk_sigv4_key *k)
{
    if (k != NULL)
        OPENSSL_cleanse(k, sizeof *k);
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
 * "aws4_request"). Every intermediate is wiped. */
static int derive_key(EVP_MD_CTX *c, const char *secret, const char *date,
                      const char *region, const char *service,
                      unsigned char out[32])
{
    unsigned char k0[64], a[32], b[32];
    size_t slen = strlen(secret), k0len;
    int rc = -1;

    if (slen + 4 <= sizeof k0) {
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, secret, slen);
        k0len = slen + 4;
    } else if (digest2(c, "AWS4", 4, secret, slen, k0) == 0) {
        k0len = 32;
    } else {
        goto done;
    }

    if (hmac(c, k0, k0len, date, 8, a) == 0 &&
        hmac(c, a, 32, region, strlen(region), b) == 0 &&
        hmac(c, b, 32, service, strlen(service), a) == 0 &&
        hmac(c, a, 32, "aws4_request", 12, out) == 0)
        rc = 0;
done:
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    return rc;
}

/* ---------------------------------------------------------------- dates */

DDBK_HIDDEN void ddbk__amz_date(int64_t t, char out[17])
{
    int64_t days, secs, z, era, doe, yoe, y, doy, mp, d, m;
    int v[6], i, w;
    char *o = out;

    /* Four-digit years only: the format has no room for others. */
    if (t < 0)
        t = 0;
    if (t > INT64_C(253402300799))
        t = INT64_C(253402300799);
    days = t / 86400;
    secs = t % 86400;

    /* Days to civil date (H. Hinnant's algorithm): no gmtime, no locale, no
     * time_t width to worry about. */
    z = days + 719468;
    era = z / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;

    v[0] = (int)y;
    v[1] = (int)m;
    v[2] = (int)d;
    v[3] = (int)(secs / 3600);
    v[4] = (int)(secs / 60 % 60);
    v[5] = (int)(secs % 60);
    for (i = 0; i < 6; i++) {
        int width = i == 0 ? 4 : 2, val = v[i];
        for (w = width - 1; w >= 0; w--) {
            o[w] = (char)('0' + val % 10);
            val /= 10;
        }
        o += width;
        if (i == 2)
            *o++ = 'T';
    }
    *o++ = 'Z';
    *o = '\0';
}

static int valid_amz_date(const char *d)
{
    int i;

    if (strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return 0;
    for (i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9'))
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- sign */

static int copy_out(ddbk_buf *dst, const char *p, size_t n)
{
    if (dst == NULL)
        return 0;
    ddbk_buf_reset(dst);
    return ddbk_buf_append(dst, p, n);
}

static int crypto_failed(ddbk_error *err)
{
    /* With the default provider a digest fails only when allocation does. */
    ddbk_error_set(err, "OutOfMemory", 0, "sigv4: SHA-256 failed in libcrypto");
    return -1;
}

#define STS_MAX 320

/* From a canonical request to the Authorization value: hash it, build the
 * string to sign into sts_text (STS_MAX bytes), refresh the cached signing
 * key when the day, region or service changed, and HMAC. Inputs are
 * validated by the callers. */
static int finish(EVP_MD_CTX *md, const char *cr, size_t cr_len,
                  const char *signed_headers, size_t sh_len,
                  const char *access_key_id, const char *secret_access_key,
                  const char *region, const char *service, const char *amz_date,
                  ddbk_sigv4_key *key, char *sts_text, ddbk_sigv4_out *out,
                  ddbk_error *err)
{
    char cr_hash[65];
    unsigned char hash[32], sig[32];

    if (digest2(md, cr, cr_len, "", 0, hash) != 0)
        return crypto_failed(err);
    to_hex(hash, sizeof hash, cr_hash);

    /* The string to sign: fits easily, region and service being < 64. */
    size_t sl = 0;
    if (ddbk__cats(sts_text, STS_MAX, &sl, ALGORITHM "\n") |
        ddbk__cats(sts_text, STS_MAX, &sl, amz_date) |
        ddbk__cat(sts_text, STS_MAX, &sl, "\n", 1) |
        ddbk__cat(sts_text, STS_MAX, &sl, amz_date, 8) |
        ddbk__cat(sts_text, STS_MAX, &sl, "/", 1) |
        ddbk__cats(sts_text, STS_MAX, &sl, region) |
        ddbk__cat(sts_text, STS_MAX, &sl, "/", 1) |
        ddbk__cats(sts_text, STS_MAX, &sl, service) |
        ddbk__cats(sts_text, STS_MAX, &sl, "/aws4_request\n") |
        ddbk__cat(sts_text, STS_MAX, &sl, cr_hash, 64)) {
        ddbk_error_set(err, "InvalidArgument", 0, "sigv4: scope too long");
        return -1;
    }

    if (!key->valid || memcmp(key->date, amz_date, 8) != 0 ||
        strcmp(key->region, region) != 0 || strcmp(key->service, service) != 0) {
        ddbk__sigv4_key_wipe(key);
        if (derive_key(md, secret_access_key, amz_date, region, service,
                       key->key) != 0) {
            ddbk__sigv4_key_wipe(key);
            return crypto_failed(err);
        }
        memcpy(key->date, amz_date, 8);
        key->date[8] = '\0';
        memcpy(key->region, region, strlen(region) + 1);
        memcpy(key->service, service, strlen(service) + 1);
        key->valid = 1;
    }
    if (hmac(md, key->key, sizeof key->key, sts_text, sl, sig) != 0)
        return crypto_failed(err);
    to_hex(sig, sizeof sig, out->signature);

    char *a = out->authorization;
    size_t al = 0, acap = sizeof out->authorization;
    a[0] = '\0';
    if (ddbk__cats(a, acap, &al, ALGORITHM " Credential=") |
        ddbk__cats(a, acap, &al, access_key_id) |
        ddbk__cat(a, acap, &al, "/", 1) |
        ddbk__cat(a, acap, &al, amz_date, 8) |
        ddbk__cat(a, acap, &al, "/", 1) |
        ddbk__cats(a, acap, &al, region) |
        ddbk__cat(a, acap, &al, "/", 1) |
        ddbk__cats(a, acap, &al, service) |
        ddbk__cats(a, acap, &al, "/aws4_request, SignedHeaders=") |
        ddbk__cat(a, acap, &al, signed_headers, sh_len) |
        ddbk__cats(a, acap, &al, ", Signature=") |
        ddbk__cat(a, acap, &al, out->signature, 64)) {
        out->authorization[0] = '\0';
        ddbk_error_set(err, "InvalidArgument", 0,
                       "sigv4: Authorization header longer than %d bytes "
                       "(too many signed headers?)",
                       (int)sizeof out->authorization - 1);
        return -1;
    }
    return 0;
}

/* What both entry points require of the credentials, date and scope. */
static int check_scope(const char *access_key_id, const char *secret_access_key,
                       const char *region, const char *service,
                       const char *amz_date, ddbk_error *err)
{
    size_t rlen = region != NULL ? strlen(region) : 0;
    size_t slen = service != NULL ? strlen(service) : 0;

    if (access_key_id == NULL || *access_key_id == '\0' ||
        secret_access_key == NULL || *secret_access_key == '\0') {
        ddbk_error_set(err, "MissingCredentials", 0,
                       "sigv4: no access key id or secret access key");
        return -1;
    }
    if (amz_date == NULL || !valid_amz_date(amz_date)) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "sigv4: amz_date must look like 20150830T123600Z");
        return -1;
    }
    if (rlen == 0 || rlen >= sizeof ((ddbk_sigv4_key *)0)->region || slen == 0 ||
        slen >= sizeof ((ddbk_sigv4_key *)0)->service) {
        ddbk_error_set(err, "InvalidArgument", 0,
                       "sigv4: region and service must be 1 to %d bytes",
                       (int)sizeof ((ddbk_sigv4_key *)0)->region - 1);
        return -1;
    }
    return 0;
}

DDBK_HIDDEN int ddbk__sigv4_sign_canonical(EVP_MD_CTX *md,
                                           const char *canonical, size_t len,
                                           const char *signed_headers,
                                           const char *access_key_id,
                                           const char *secret_access_key,
                                           const char *region, const char *service,
                                           const char *amz_date,
                                           ddbk_sigv4_key *cache,
                                           ddbk_sigv4_out *out, ddbk_error *err)
{
    char sts_text[STS_MAX];
    ddbk_sigv4_key scratch_key, *key = cache != NULL ? cache : &scratch_key;
    int rc;

    scratch_key.valid = 0;
    if (check_scope(access_key_id, secret_access_key, region, service, amz_date,
                    err) != 0)
        return -1;
    rc = finish(md, canonical, len, signed_headers, strlen(signed_headers),
                access_key_id, secret_access_key, region, service, amz_date,
                key, sts_text, out, err);
    if (key == &scratch_key)
        ddbk__sigv4_key_wipe(&scratch_key);
    return rc;
}

DDBK_HIDDEN int ddbk__sigv4_sign(const ddbk_sigv4_request *req,
                                 const char *access_key_id,
                                 const char *secret_access_key,
                                 const char *region, const char *service,
                                 const char *amz_date, ddbk_sigv4_key *cache,
                                 ddbk_buf *canonical, ddbk_buf *sts,
                                 ddbk_sigv4_out *out, ddbk_error *err)
{
    sb cr;
    EVP_MD_CTX *md = NULL;
    char payload_hash[65], sts_text[STS_MAX];
    unsigned char hash[32];
    ddbk_sigv4_key scratch_key, *key = cache != NULL ? cache : &scratch_key;
    size_t sh_off = 0, sh_len = 0;
    int i, n, rc = -1;

    sb_init(&cr);
    scratch_key.valid = 0;

    if (req == NULL || out == NULL || req->method == NULL ||
        (req->nheaders > 0 && req->headers == NULL) || req->nheaders < 0 ||
        (req->body == NULL && req->body_len > 0)) {
        ddbk_error_set(err, "InvalidArgument", 0, "sigv4: incomplete request");
        goto done;
    }
    for (i = 0; i < req->nheaders; i++) {
        if (req->headers[i].name == NULL) {
            ddbk_error_set(err, "InvalidArgument", 0,
                           "sigv4: header #%d has no name", i + 1);
            goto done;
        }
    }
    if (check_scope(access_key_id, secret_access_key, region, service, amz_date,
                    err) != 0)
        goto done;

    md = EVP_MD_CTX_new();
    if (md == NULL)
        goto oom;

    /* The canonical request. */
    sb_puts(&cr, req->method);
    sb_putc(&cr, '\n');
    put_path(&cr, req->path, req->normalize_path);
    sb_putc(&cr, '\n');
    if (put_query(&cr, req->query) != 0)
        goto oom;
    sb_putc(&cr, '\n');
    if (put_headers(&cr, req->headers, req->nheaders, &sh_off, &sh_len) != 0)
        goto oom;
    sb_putc(&cr, '\n');
    if (digest2(md, req->body != NULL ? req->body : "", req->body_len, "", 0,
                hash) != 0)
        goto crypto;
    to_hex(hash, sizeof hash, payload_hash);
    sb_add(&cr, payload_hash, 64);
    if (cr.failed)
        goto oom;
    if (finish(md, cr.p, cr.len, cr.p + sh_off, sh_len, access_key_id,
               secret_access_key, region, service, amz_date, key, sts_text,
               out, err) != 0)
        goto done;
    n = (int)strlen(sts_text);

    if (copy_out(canonical, cr.p, cr.len) != 0 ||
        copy_out(sts, sts_text, (size_t)n) != 0)
        goto oom;
    rc = 0;
    goto done;

crypto:
    crypto_failed(err);
    goto done;
oom:
    ddbk_error_set(err, "OutOfMemory", 0, "sigv4: out of memory building the "
                                          "canonical request");
done:
    if (key == &scratch_key)
        ddbk__sigv4_key_wipe(&scratch_key);
    EVP_MD_CTX_free(md);
    sb_free(&cr);
    return rc;
}
