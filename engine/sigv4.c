/*
 * AWS Signature Version 4, header flavour (the Authorization header; no
 * presigned URLs): from a canonical request to the Authorization value.
 *
 * The canonical request comes from the caller: prepare.c writes DynamoDB's
 * fixed one directly, so signing a call (POST /, no query, a handful of
 * headers) costs two SHA-256 and one HMAC, and no heap but libcrypto's
 * digest context. The generic canonicaliser (any method, path, query and
 * header set, as the AWS test vectors need) is test support only:
 * tests/c/sigv4_canon.c, over ddbk__sigv4_finish.
 * The signing key is derived (four HMACs) only when the day, region, service
 * or access key id changes; the caller owns that cache.
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

static int crypto_failed(ddbk_error *err)
{
    /* With the default provider a digest fails only when allocation does. */
    ddbk_error_set(err, "OutOfMemory", 0, "sigv4: SHA-256 failed in libcrypto");
    return -1;
}

#define STS_MAX DDBK_SIGV4_STS_MAX

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

    /* The key id too: rotated credentials (a refresh) derive a new key. */
    size_t kl = strlen(access_key_id);
    if (!key->valid || memcmp(key->date, amz_date, 8) != 0 ||
        strcmp(key->region, region) != 0 || strcmp(key->service, service) != 0 ||
        kl >= sizeof key->key_id || memcmp(key->key_id, access_key_id, kl + 1) != 0) {
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
        if (kl < sizeof key->key_id)
            memcpy(key->key_id, access_key_id, kl + 1);
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

DDBK_HIDDEN int ddbk__sigv4_finish(EVP_MD_CTX *md, const char *canonical, size_t len,
                                  const char *signed_headers, size_t sh_len,
                                  const char *access_key_id, const char *secret_access_key,
                                  const char *region, const char *service,
                                  const char *amz_date, ddbk_sigv4_key *cache,
                                  char sts_text[DDBK_SIGV4_STS_MAX], ddbk_sigv4_out *out,
                                  ddbk_error *err)
{
    ddbk_sigv4_key scratch_key, *key = cache != NULL ? cache : &scratch_key;
    int rc;

    scratch_key.valid = 0;
    if (check_scope(access_key_id, secret_access_key, region, service, amz_date,
                    err) != 0)
        return -1;
    rc = finish(md, canonical, len, signed_headers, sh_len, access_key_id,
                secret_access_key, region, service, amz_date, key, sts_text, out, err);
    if (key == &scratch_key)
        ddbk__sigv4_key_wipe(&scratch_key);
    return rc;
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
    return ddbk__sigv4_finish(md, canonical, len, signed_headers, strlen(signed_headers),
                              access_key_id, secret_access_key, region, service, amz_date,
                              cache, sts_text, out, err);
}
