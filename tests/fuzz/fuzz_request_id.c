/*
 * libFuzzer target for the response header callback (engine/transport.c
 * on_header, reached through the DDBK_UNITTEST build): the input is one
 * header line as libcurl hands it over (any bytes, a server's choice), in a
 * buffer of exactly its size so AddressSanitizer sees a read past it.
 *
 * What must hold: the whole line is consumed; the request id kept is
 * terminated inside its field and holds no control character (it reaches
 * error values, logs and terminals); a line that is not x-amzn-RequestId
 * changes nothing.
 *
 *   make build/fuzz/fuzz_request_id
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t on_header(char *p, size_t size, size_t n, void *ud);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ddbk_response resp;
    ddbk__sink sink = { &resp, 0, 0, 0 };
    char *line = malloc(size ? size : 1);

    if (line == NULL)
        return 0;
    memcpy(line, data, size);
    memset(&resp, 0, sizeof resp);
    memcpy(resp.request_id, "before", 7);
    if (on_header(line, 1, size, &sink) != size)
        abort();
    size_t n = strnlen(resp.request_id, sizeof resp.request_id);
    if (n >= sizeof resp.request_id)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)resp.request_id[i] < 0x20 || resp.request_id[i] == 0x7f)
            abort();
    if ((size < 17 || strncasecmp(line, "x-amzn-requestid:", 17) != 0) &&
        strcmp(resp.request_id, "before") != 0)
        abort();
    free(line);
    return 0;
}
