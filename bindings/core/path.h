/*
 * Error paths in Lua terms (Item.a["b c"][3]), shared by the encoder and the
 * decoder so that both name a bad value the same way.
 */
#ifndef DDBKIT_LUA_PATH_H
#define DDBKIT_LUA_PATH_H

#include <stddef.h>

/* Each appends to dst (bounded by cap, always terminated) and returns the
 * new length. A key that is an identifier is written .key (no dot when
 * first), any other as ["key"], escaped and cut at 40 bytes. */
size_t ddbk__path_add(char *dst, size_t len, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
size_t ddbk__path_key(char *dst, size_t len, size_t cap, const char *k, size_t kl,
                      int first);

#endif
