/*
 * The generic SigV4 canonicaliser (test support, see sigv4_canon.h): the
 * canonical URI (normalised and encoded once more, except for S3), the
 * canonical query (sorted, encoded), the canonical headers (names lowercased
 * and sorted, values trimmed, runs of spaces folded), then the library's
 * ddbk__sigv4_finish.
 *
 * The canonical request is assembled in a stack buffer that only moves to
 * the heap for unusually large requests.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sigv4_canon.h"

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

/* ---------------------------------------------------------------- sign */

static int copy_out(ddbk_buf *dst, const char *p, size_t n)
{
    if (dst == NULL)
        return 0;
    ddbk_buf_reset(dst);
    return ddbk_buf_append(dst, p, n);
}

int ddbk__sigv4_sign(const ddbk_sigv4_request *req,
                                 const char *access_key_id,
                                 const char *secret_access_key,
                                 const char *region, const char *service,
                                 const char *amz_date, ddbk_sigv4_key *cache,
                                 ddbk_buf *canonical, ddbk_buf *sts,
                                 ddbk_sigv4_out *out, ddbk_error *err)
{
    sb cr;
    EVP_MD_CTX *md = NULL;
    char payload_hash[65], sts_text[DDBK_SIGV4_STS_MAX];
    size_t sh_off = 0, sh_len = 0;
    int i, n, rc = -1;

    sb_init(&cr);

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
    ddbk__sha256_hex(md, req->body, req->body_len, payload_hash);
    sb_add(&cr, payload_hash, 64);
    if (cr.failed)
        goto oom;
    if (ddbk__sigv4_finish(md, cr.p, cr.len, cr.p + sh_off, sh_len, access_key_id,
                           secret_access_key, region, service, amz_date, cache, sts_text,
                           out, err) != 0)
        goto done;
    n = (int)strlen(sts_text);

    if (copy_out(canonical, cr.p, cr.len) != 0 ||
        copy_out(sts, sts_text, (size_t)n) != 0)
        goto oom;
    rc = 0;
    goto done;

oom:
    ddbk_error_set(err, "OutOfMemory", 0, "sigv4: out of memory building the "
                                          "canonical request");
done:
    EVP_MD_CTX_free(md);
    sb_free(&cr);
    return rc;
}
