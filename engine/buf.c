/*
 * Growable byte buffer with a hard cap (after curl's dynbuf): every append
 * either fits or fails whole, so a caller never sees half a value.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddbkit.h"

void ddbk_buf_init(ddbk_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : DDBK_BUF_DEFAULT_MAX;
}

void ddbk_buf_free(ddbk_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ddbk_buf_reset(ddbk_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int ddbk_buf_reserve(ddbk_buf *b, size_t extra)
{
    size_t max = b->max ? b->max : DDBK_BUF_DEFAULT_MAX;
    if (extra > max || b->len > max - extra)
        return -1;
    size_t need = b->len + extra + 1; /* +1 keeps room for the terminator */
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > max + 1)
        cap = max + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ddbk_buf_append(ddbk_buf *b, const void *p, size_t n)
{
    if (ddbk_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ddbk_buf_putc(ddbk_buf *b, char c)
{
    /* The common case, no call; the cap is checked too, since a caller may
     * lower max on a buffer that already grew. */
    if (b->len + 1 < b->cap && b->len < b->max) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return 0;
    }
    return ddbk_buf_append(b, &c, 1);
}

int ddbk_buf_puts(ddbk_buf *b, const char *s)
{
    return ddbk_buf_append(b, s, strlen(s));
}

int ddbk_buf_printf(ddbk_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof small)
        return ddbk_buf_append(b, small, (size_t)n);

    if (ddbk_buf_reserve(b, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}
