/*
 * libFuzzer target for ddbk_parse, the classifier of an HTTP status and an
 * error body (engine/parse.c). The first input byte picks the status; the
 * rest is the body, handed over in a buffer of exactly its size with no
 * terminator, so AddressSanitizer sees any read past len. Checks the
 * contract a caller relies on: 2xx is success and nothing else is, an error
 * always has a code that is an error name (never empty, never a server's
 * control characters), every string is terminated, and the retry flags
 * agree with each other.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -Iengine \
 *       engine/parse.c engine/error.c tests/fuzz/fuzz_error_body.c -lyajl -o fuzz_error_body
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ddbkit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long statuses[] = { 200, 204, 400, 403, 404, 413, 500, 502, 503, 504, 0, 999 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ddbk_error err;
    char *body;

    if (size < 1)
        return 0;
    long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
    size_t len = size - 1;
    body = malloc(len != 0 ? len : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data + 1, len);
    memset(&err, 0x55, sizeof err);

    int r = ddbk_parse(status, (data[0] & 0x80) ? "req-1" : NULL, body, len, &err);
    free(body);
    if (status >= 200 && status < 300) {
        if (r != 0)
            abort();
        return 0;
    }
    if (r != -1 || err.status != status)
        abort();
    if (strnlen(err.code, sizeof err.code) >= sizeof err.code ||
        strnlen(err.message, sizeof err.message) >= sizeof err.message ||
        strnlen(err.request_id, sizeof err.request_id) >= sizeof err.request_id)
        abort(); /* not terminated */
    if (err.code[0] == '\0')
        abort();
    for (const char *c = err.code; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-'))
            abort();
    if (err.throttling && !err.retryable)
        abort();
    if (err.timeout)
        abort(); /* a response is never a transport timeout */
    return 0;
}
