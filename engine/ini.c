/*
 * A reader for the AWS shared config and credentials files, enough to find
 * one key in one section. It follows the rules of the parser the AWS CLI uses
 * (Python's configparser), where they matter here:
 *
 *   - a comment is a line whose first non-blank character is # or ;
 *     (no inline comments: "key = a # b" has the value "a # b");
 *   - "key = value", "key=value" and "key: value" all work; keys compare
 *     case-insensitively, values are trimmed;
 *   - a line indented deeper than the key line before it continues that key
 *     (that is how nested sub-sections such as "s3 =" are written), so it is
 *     never read as a key of its own;
 *   - when a key (or section) repeats, the last one wins.
 *
 * Nothing is allocated and nothing past text[len - 1] is read; text need not
 * be NUL-terminated.
 */
#include <string.h>

#include "internal.h"

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && is_blank(**s))
        (*s)++;
    while (*e > *s && is_blank((*e)[-1]))
        (*e)--;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int key_eq(const char *s, size_t n, const char *key)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (key[i] == '\0' || lower(s[i]) != lower(key[i]))
            return 0;
    return key[n] == '\0';
}

/* Also answers "does the section exist?" when key is NULL: returns 1 if a
 * header [section] appears at all, even with no keys under it (the caller
 * uses it to tell a missing profile from an empty one). */
DDBK_HIDDEN int ddbk__ini_lookup(const char *text, size_t len,
                                 const char *section, const char *key,
                                 char *out, size_t outlen)
{
    const char *p, *end;
    const char *val = NULL, *val_end = NULL;
    size_t seclen = section != NULL ? strlen(section) : 0;
    size_t indent, key_indent = 0, n;
    int in_section = 0, have_key = 0, found = 0;

    if (out != NULL && outlen > 0)
        out[0] = '\0';
    if (text == NULL || section == NULL)
        return 0;
    p = text;
    end = text + len;

    /* A UTF-8 byte order mark, as Windows editors like to write. */
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *ls = p, *le = nl != NULL ? nl : end;
        const char *s, *e, *d;

        p = nl != NULL ? nl + 1 : end;

        s = ls;
        while (s < le && (*s == ' ' || *s == '\t'))
            s++;
        indent = (size_t)(s - ls);
        e = le;
        trim(&s, &e);
        if (s == e || *s == '#' || *s == ';')
            continue;

        /* configparser decides "continuation" before anything else, so an
         * indented "[x]" or "k = v" under a key belongs to that key. */
        if (have_key && indent > key_indent)
            continue;

        if (*s == '[') {
            const char *close = e;
            while (close > s && close[-1] != ']')
                close--;
            have_key = 0;
            if (close == s) {
                /* "[broken" opens nothing; leaving the previous section
                 * keeps its keys from being taken for the ones below. */
                in_section = 0;
                continue;
            }
            s++;
            e = close - 1;
            trim(&s, &e);
            n = (size_t)(e - s);
            in_section = n == seclen && memcmp(s, section, n) == 0;
            if (in_section && key == NULL)
                found = 1;
            continue;
        }

        for (d = s; d < e && *d != '=' && *d != ':'; d++)
            ;
        if (d == e) {
            have_key = 0; /* not a key line; configparser would reject it */
            continue;
        }
        have_key = 1;
        key_indent = indent;
        if (!in_section || key == NULL)
            continue;
        {
            const char *ks = s, *ke = d, *vs = d + 1, *ve = e;
            trim(&ks, &ke);
            trim(&vs, &ve);
            if (ke > ks && key_eq(ks, (size_t)(ke - ks), key)) {
                val = vs;
                val_end = ve;
                found = 1;
            }
        }
    }

    if (found && val != NULL && out != NULL && outlen > 0) {
        n = (size_t)(val_end - val);
        if (n > outlen - 1)
            n = outlen - 1;
        memcpy(out, val, n);
        out[n] = '\0';
    }
    return found;
}
