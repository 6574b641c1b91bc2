/*
 * libFuzzer target for ddbk__ini_lookup. The first input byte picks the
 * section and key (so the fuzzer can steer toward sections it has written),
 * the second the output size; the rest is the file text, handed over in a
 * buffer of exactly its size with no terminator, so AddressSanitizer sees any
 * read past len.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -Iengine -DDDBK_UNITTEST \
 *       engine/ini.c tests/fuzz/fuzz_ini.c -o fuzz_ini
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const sections[] = {
    "default", "profile dev", "dev", "profile default", "a", "",
};
static const char *const keys[] = {
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
    "region", "k", "", NULL, /* NULL asks whether the section exists */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *section, *key;
    size_t outlen, len, n;
    char out[64], *text;
    int found;

    if (size < 2)
        return 0;
    section = sections[data[0] % (sizeof sections / sizeof sections[0])];
    key = keys[(data[0] >> 3) % (sizeof keys / sizeof keys[0])];
    outlen = data[1] % (sizeof out + 1); /* 0 .. sizeof out */
    len = size - 2;

    text = malloc(len != 0 ? len : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data + 2, len);
    memset(out, 0x55, sizeof out);

    found = ddbk__ini_lookup(text, len, section, key, out, outlen);
    if (found != 0 && found != 1)
        abort();
    if (outlen > 0) {
        /* Always terminated inside the buffer, and never longer than the
         * text a value could have come from. */
        n = strnlen(out, outlen);
        if (n >= outlen || n > len)
            abort();
        if (!found && n != 0)
            abort();
        /* A value ends at its line and is trimmed (at its end too, but a
         * truncated copy may stop on an inner blank). */
        if (memchr(out, '\n', n) != NULL || (n > 0 && out[0] == ' '))
            abort();
    }
    if (outlen < sizeof out && out[outlen] != 0x55)
        abort(); /* wrote past outlen */

    free(text);
    return 0;
}
