/*
 * Error paths: where in a request or a response a bad value sits, written
 * so that a hostile key cannot make the message unreadable or long.
 */
#include <stdarg.h>
#include <stdio.h>

#include "path.h"

size_t ddbk__path_add(char *dst, size_t len, size_t cap, const char *fmt, ...)
{
    if (len + 1 >= cap)
        return len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst + len, cap - len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return len;
    return len + (size_t)n >= cap ? cap - 1 : len + (size_t)n;
}

static int is_ident(const char *k, size_t n)
{
    if (n == 0 || n > 64 || (k[0] >= '0' && k[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

size_t ddbk__path_key(char *dst, size_t len, size_t cap, const char *k, size_t kl,
                      int first)
{
    if (is_ident(k, kl))
        return ddbk__path_add(dst, len, cap, "%s%.*s", first ? "" : ".", (int)kl, k);
    /* Any other key is quoted, escaped and cut, so a hostile key cannot
     * make the message unreadable or long. */
    len = ddbk__path_add(dst, len, cap, "[\"");
    size_t shown = kl > 40 ? 40 : kl;
    for (size_t j = 0; j < shown; j++) {
        unsigned char c = (unsigned char)k[j];
        if (c == '"' || c == '\\')
            len = ddbk__path_add(dst, len, cap, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            len = ddbk__path_add(dst, len, cap, "\\x%02x", c);
        else
            len = ddbk__path_add(dst, len, cap, "%c", c);
    }
    return ddbk__path_add(dst, len, cap, "%s\"]", shown < kl ? "..." : "");
}
