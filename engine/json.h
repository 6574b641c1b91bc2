/*
 * The engine's one JSON string writer (engine/json.c). Everything the engine
 * puts between quotes in a request body goes through it: a lock key, an
 * owner, a record version another process wrote, an attribute name. Private
 * to the engine, like internal.h.
 */
#ifndef DDBK_JSON_H
#define DDBK_JSON_H

#include <stddef.h>

#include "internal.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0: RFC 3629,
 * so no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF. The rule of bindings/core/encode.c, which is DynamoDB's. */
DDBK_HIDDEN size_t ddbk__utf8_seq(const unsigned char *s, size_t n);

/* 1 when the n bytes at s are valid UTF-8 by that rule, else 0. */
DDBK_HIDDEN int ddbk__utf8_valid(const char *s, size_t n);

/* Appends the n bytes at s to b as one JSON string, quotes included: '"'
 * and '\\' get a backslash, the other bytes below 0x20 (NUL among them) an
 * escape (\n, \u0001), and the rest is copied once its UTF-8 is valid.
 * Returns 0; -1 when b cannot grow (its cap, or memory); -2 when s is not
 * valid UTF-8. On failure b is as it was: never half a string. Costs one
 * pass over s. */
DDBK_HIDDEN int ddbk__json_str(ddbk_buf *b, const char *s, size_t n);

/* The same for a NUL-terminated s. */
DDBK_HIDDEN int ddbk__json_cstr(ddbk_buf *b, const char *s);

#endif
