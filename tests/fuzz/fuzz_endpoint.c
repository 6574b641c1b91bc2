/*
 * libFuzzer target for the endpoint URL parser (engine/client.c
 * set_endpoint, reached through the DDBK_UNITTEST build). The input is the
 * endpoint string.
 *
 * What must hold: it is accepted or refused, never crashes; an accepted one
 * gives a Host with no control character, space, '@', '/', '?' or '#' (it
 * is signed and sent as a header), an endpoint of scheme://Host and a URL
 * of endpoint + "/", and parsing that endpoint again gives the same; a
 * refusal's message holds no control character.
 *
 *   make build/fuzz/fuzz_endpoint
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int set_endpoint(ddbk_client *c, const char *ep, ddbk_error *err);

static ddbk_client a, b;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ddbk_error err;
    char *ep = malloc(size + 1);

    if (ep == NULL)
        return 0;
    memcpy(ep, data, size);
    ep[size] = '\0';
    memset(&a, 0, sizeof a);
    ddbk_error_clear(&err);
    if (set_endpoint(&a, ep, &err) != 0) {
        if (strcmp(err.code, "InvalidArgument") != 0)
            abort();
        for (const char *p = err.message; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                abort();
        free(ep);
        return 0;
    }
    if (a.host[0] == '\0' || strpbrk(a.host, " @/?#") != NULL)
        abort();
    for (const char *p = a.host; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f)
            abort();
    const char *rest = strncmp(a.endpoint, "https://", 8) == 0  ? a.endpoint + 8
                       : strncmp(a.endpoint, "http://", 7) == 0 ? a.endpoint + 7
                                                                : NULL;
    if (rest == NULL || strcmp(rest, a.host) != 0)
        abort();
    if (strncmp(a.url, a.endpoint, strlen(a.endpoint)) != 0 ||
        strcmp(a.url + strlen(a.endpoint), "/") != 0)
        abort();
    memset(&b, 0, sizeof b);
    if (set_endpoint(&b, a.endpoint, &err) != 0 || strcmp(a.host, b.host) != 0 ||
        strcmp(a.endpoint, b.endpoint) != 0)
        abort();
    free(ep);
    return 0;
}
