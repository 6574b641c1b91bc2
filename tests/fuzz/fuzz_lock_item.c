/*
 * libFuzzer target for ddbk__lock_item_read, the streaming reader of a lock
 * item in a response (engine/lock_item.c). The first input byte picks the
 * field ("Attributes" or "Item"); the rest is the body, handed over in a
 * buffer of exactly its size with no terminator, so AddressSanitizer sees
 * any read past len. Checks what the lock machine relies on: a known
 * answer, terminated strings, nothing kept from a body that was refused,
 * and a cut mark on every string that did not fit.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -Iengine \
 *       engine/lock_item.c tests/fuzz/fuzz_lock_item.c -lyajl -o fuzz_lock_item
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Terminated; and a string kept whole holds what it says (no NUL cut it). */
static void check_string(const char *s, size_t cap)
{
    if (strnlen(s, cap) >= cap)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ddbk__lock_item it, zero;
    char *body;

    if (size < 1)
        return 0;
    const char *field = (data[0] & 1) ? "Item" : "Attributes";
    size_t len = size - 1;
    body = malloc(len != 0 ? len : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data + 1, len);
    memset(&it, 0x55, sizeof it);

    int r = ddbk__lock_item_read(body, len, field, &it);
    memset(&zero, 0, sizeof zero);
    if (r < -1 || r > 1)
        abort();
    if (r == 1) {
        if (!it.exists)
            abort();
    } else if (it.exists) {
        abort();
    }
    if (r == -1 && memcmp(&it, &zero, sizeof it) != 0)
        abort(); /* a refused body leaves nothing behind */
    if (r == 0 && (it.owner[0] || it.rvn[0] || it.released[0] || it.have_fence || it.cut))
        abort(); /* no item, no attributes */
    check_string(it.owner, sizeof it.owner);
    check_string(it.rvn, sizeof it.rvn);
    check_string(it.released, sizeof it.released);
    if (it.lease_ms < 0)
        abort();
    if (it.cut & ~(DDBK__LOCK_CUT_OWNER | DDBK__LOCK_CUT_RVN | DDBK__LOCK_CUT_RELEASED))
        abort();

    /* The same body read twice reads the same (no state between calls). */
    ddbk__lock_item again;
    if (ddbk__lock_item_read(body, len, field, &again) != r || memcmp(&again, &it, sizeof it) != 0)
        abort();
    free(body);
    return 0;
}
