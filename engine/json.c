/*
 * The engine's JSON string writer: one place that decides what may go
 * between the quotes of a request body. A string that is not valid UTF-8 is
 * refused (DynamoDB would refuse the whole request, and a byte that breaks
 * a sequence could break the JSON around it); quotes, backslashes and
 * control bytes are escaped. The engine does not depend on bindings/, so
 * this is its own copy of the rule bindings/core/encode.c applies to Lua
 * strings (that one is tuned for large values; this one writes keys and
 * names of a few bytes).
 */
#include <string.h>

#include "json.h"

size_t ddbk__utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c < 0xC2) /* a continuation byte, or an overlong 2-byte lead */
        return 0;
    if (c < 0xE0)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (c == 0xE0)
            lo = 0xA0; /* overlong below U+0800 */
        else if (c == 0xED)
            hi = 0x9F; /* the surrogates */
        return n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c < 0xF5) {
        if (c == 0xF0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
        return n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 &&
                       (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

int ddbk__utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = ddbk__utf8_seq(p + i, n - i);
        if (!len)
            return 0;
        i += len;
    }
    return 1;
}

/* The escape of one byte that cannot go into a JSON string as is, into
 * out (room for 6); its length. */
static size_t escape(unsigned char c, char *out)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '\\';
    switch (c) {
    case '"': out[1] = '"'; return 2;
    case '\\': out[1] = '\\'; return 2;
    case '\b': out[1] = 'b'; return 2;
    case '\f': out[1] = 'f'; return 2;
    case '\n': out[1] = 'n'; return 2;
    case '\r': out[1] = 'r'; return 2;
    case '\t': out[1] = 't'; return 2;
    default:
        out[1] = 'u';
        out[2] = '0';
        out[3] = '0';
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        return 6;
    }
}

int ddbk__json_str(ddbk_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t start = b->len, i = 0, run = 0;
    int rc = -1;

    /* Checked whole first, so a refused string writes nothing. */
    if (!ddbk__utf8_valid(str, n))
        return -2;
    if (ddbk_buf_putc(b, '"'))
        goto fail;
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++; /* copied with its run; a UTF-8 sequence is all >= 0x80 */
            continue;
        }
        char esc[6];
        size_t elen = escape(c, esc);
        if (ddbk_buf_append(b, s + run, i - run) || ddbk_buf_append(b, esc, elen))
            goto fail;
        run = ++i;
    }
    if (ddbk_buf_append(b, s + run, n - run) || ddbk_buf_putc(b, '"'))
        goto fail;
    return 0;

fail:
    b->len = start;
    if (b->data)
        b->data[start] = '\0';
    return rc;
}

int ddbk__json_cstr(ddbk_buf *b, const char *s)
{
    return ddbk__json_str(b, s, strlen(s));
}
