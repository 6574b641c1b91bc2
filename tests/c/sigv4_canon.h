/*
 * The generic SigV4 canonicaliser, as test support: any method, path, query
 * and header set, as the AWS test vectors (tests/vectors/sigv4) need.
 * DynamoDB's requests never need it (prepare.c writes their fixed canonical
 * request itself), so it is not part of the library; it signs through the
 * library's own ddbk__sigv4_finish, so the vectors still test what ships.
 */
#ifndef DDBK_TEST_SIGV4_CANON_H
#define DDBK_TEST_SIGV4_CANON_H

#include "internal.h"

/* One header as sent (name and value not yet canonicalised). */
typedef struct ddbk_kv {
    const char *name;
    const char *value;
} ddbk_kv;

typedef struct ddbk_sigv4_request {
    const char *method;       /* "POST" */
    const char *path;         /* as in the request line, without the query */
    const char *query;        /* after '?', or NULL */
    const ddbk_kv *headers;   /* every header to sign, including host and x-amz-date */
    int nheaders;
    const char *body;
    size_t body_len;
    int normalize_path;       /* 1 except for S3 */
} ddbk_sigv4_request;

/* Signs `req` at `amz_date` ("20150830T123600Z"). When canonical or sts is
 * non-NULL they are reset and receive the canonical request and the string
 * to sign. Returns 0, or -1 with err filled. */
int ddbk__sigv4_sign(const ddbk_sigv4_request *req, const char *access_key_id,
                     const char *secret_access_key, const char *region,
                     const char *service, const char *amz_date, ddbk_sigv4_key *cache,
                     ddbk_buf *canonical, ddbk_buf *sts, ddbk_sigv4_out *out,
                     ddbk_error *err);

#endif
