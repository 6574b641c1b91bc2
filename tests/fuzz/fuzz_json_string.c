/*
 * libFuzzer target for ddbk__json_str, the engine's JSON string writer
 * (engine/json.c). The input is the string, in a buffer of exactly its size.
 * Checks what every request body relies on: the writer refuses exactly the
 * strings that are not valid UTF-8 (by its own validator), a refusal
 * leaves the buffer as it was, and what it writes is one JSON string that
 * yajl reads back to the very bytes (up to a NUL, where yajl's C strings
 * end).
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -Iengine \
 *       engine/json.c engine/buf.c tests/fuzz/fuzz_json_string.c -lyajl -o fuzz_json_string
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ddbk_buf b;
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    ddbk_buf_init(&b, 0);
    if (ddbk_buf_putc(&b, '[')) {
        free(s);
        return 0;
    }
    int r = ddbk__json_str(&b, s, size);
    if (r != 0 && r != -1 && r != -2)
        abort();
    if ((r == -2) != !ddbk__utf8_valid(s, size))
        abort();
    if (r != 0 && (b.len != 1 || b.data[0] != '['))
        abort(); /* never half a string */
    if (r == 0 && ddbk_buf_putc(&b, ']') == 0) {
        yajl_val v = yajl_tree_parse(b.data, NULL, 0);
        if (!v || !YAJL_IS_ARRAY(v) || v->u.array.len != 1 || !YAJL_IS_STRING(v->u.array.values[0]))
            abort();
        const char *back = YAJL_GET_STRING(v->u.array.values[0]);
        size_t upto = strnlen(s, size);
        if (strlen(back) != upto || memcmp(back, s, upto) != 0)
            abort();
        yajl_tree_free(v);
    }
    ddbk_buf_free(&b);
    free(s);
    return 0;
}
