/*
 * Number text: DynamoDB's N <-> Lua numbers, integers and decimals (see
 * numtext.h).
 */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "numtext.h"

/* ------------------------------------------------------------ C locale */

/* The host may have called setlocale(LC_NUMERIC, "de_DE"), which would make
 * printf write "1,5" and strtod stop at '.'. DynamoDB's JSON needs '.', so
 * number text is always read and written in the C locale, switched for the
 * calling thread only (uselocale), never for the process. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static locale_t c_locale_enter(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    /* If newlocale failed, stay in the current locale: the common case is
     * the C locale anyway. uselocale(0) only queries. */
    return uselocale(c_locale ? c_locale : (locale_t)0);
}

static void c_locale_leave(locale_t old)
{
    uselocale(old);
}

size_t ddbk__fmt_int(int64_t n, char buf[DDBK_NUMBUF])
{
    char tmp[24];
    size_t i = sizeof tmp;
    /* unsigned negation: INT64_MIN has no positive int64 counterpart */
    uint64_t u = n < 0 ? 0 - (uint64_t)n : (uint64_t)n;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0)
        tmp[--i] = '-';
    size_t len = sizeof tmp - i;
    memcpy(buf, tmp + i, len);
    buf[len] = '\0';
    return len;
}

size_t ddbk__fmt_double(double d, char buf[DDBK_NUMBUF])
{
    /* Integral values in the exactly-representable range: integer text, no
     * printf. This is every number on LuaJIT (which has no integers) that
     * counts something, so it is the hot case there; "10" also reads better
     * than "1e+01" in a Limit. The range test also keeps NaN out of the cast. */
    if (d >= -9007199254740992.0 && d <= 9007199254740992.0 &&
        d == (double)(int64_t)d)
        return ddbk__fmt_int((int64_t)d, buf);

    locale_t old = c_locale_enter();
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, DDBK_NUMBUF, "%.*g", prec, d);
        if (prec == 17 || strtod(buf, NULL) == d)
            break;
    }
    c_locale_leave(old);
    return n > 0 ? (size_t)n : 0;
}

double ddbk__strtod(lua_State *L, const char *s, size_t n, int *ok)
{
    char tmp[128];
    const char *z;
    int pushed = 0;

    if (n < sizeof tmp) {
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        z = tmp;
    } else {
        /* A Lua string is NUL-terminated and collected if we unwind. */
        lua_pushlstring(L, s, n);
        z = lua_tostring(L, -1);
        pushed = 1;
    }
    char *end;
    locale_t old = c_locale_enter();
    double d = strtod(z, &end);
    c_locale_leave(old);
    *ok = n > 0 && end == z + n;
    if (pushed)
        lua_pop(L, 1);
    return d;
}

int ddbk__parse_int64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    uint64_t u = 0;

    if (i < n && s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i == n)
        return 0;
    for (; i < n; i++) {
        unsigned dgt = (unsigned char)s[i] - '0';
        if (dgt > 9)
            return 0;
        if (u > (UINT64_MAX - dgt) / 10)
            return 0;
        u = u * 10 + dgt;
    }
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1)
            return 0;
        /* -(u - 1) - 1 so that 2^63 becomes INT64_MIN without overflow */
        *out = u ? -(int64_t)(u - 1) - 1 : 0;
    } else {
        if (u > (uint64_t)INT64_MAX)
            return 0;
        *out = (int64_t)u;
    }
    return 1;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int ddbk__num_valid(const char *s, size_t n, int *is_int)
{
    size_t i = 0, digits = 0;
    int dot = 0, expo = 0;

    if (i < n && (s[i] == '-' || s[i] == '+')) /* DynamoDB takes "+5" */
        i++;
    for (; i < n; i++) {
        if (is_digit(s[i]))
            digits++;
        else if (s[i] == '.' && !dot)
            dot = 1;
        else
            break;
    }
    if (!digits)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t ed = 0;
        expo = 1;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (; i < n && is_digit(s[i]); i++)
            ed++;
        if (!ed)
            return 0;
    }
    if (i != n)
        return 0;
    if (is_int)
        *is_int = !dot && !expo;
    return 1;
}

/* A valid number text seen as 0.d1d2...dk x 10^exp with d1 and dk nonzero:
 * two texts denote the same value exactly when these agree. The digits are
 * not copied: fpos is where d1 sits in s, and '.' is skipped when walking. */
typedef struct canon {
    const char *s;
    int neg, zero;
    size_t fpos;   /* index in s of the first significant digit */
    int64_t ndig;  /* significant digits, trailing zeros excluded */
    int64_t exp;
} canon;

/* Exponents are clamped here: far beyond any double or DynamoDB number
 * (1e-130 .. 1e126), and far from int64 overflow when combined below. */
#define EXP_CLAMP ((int64_t)1 << 40)

static void canon_of(const char *s, size_t n, canon *c)
{
    size_t i = 0;
    int64_t before = 0, di = 0, fi = -1, li = -1;
    int seen_dot = 0;

    c->s = s;
    c->neg = 0;
    c->fpos = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        c->neg = s[i] == '-';
        i++;
    }
    for (; i < n && (is_digit(s[i]) || s[i] == '.'); i++) {
        if (s[i] == '.') {
            seen_dot = 1;
            continue;
        }
        if (!seen_dot)
            before++;
        if (s[i] != '0') {
            if (fi < 0) {
                fi = di;
                c->fpos = i;
            }
            li = di;
        }
        di++;
    }
    int64_t e = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        for (; i < n && is_digit(s[i]); i++)
            if (e < EXP_CLAMP)
                e = e * 10 + (s[i] - '0');
        if (e > EXP_CLAMP)
            e = EXP_CLAMP;
        if (eneg)
            e = -e;
    }
    c->zero = fi < 0;
    c->ndig = c->zero ? 0 : li - fi + 1;
    c->exp = c->zero ? 0 : before - fi + e;
}

static int canon_equal(const canon *a, const canon *b)
{
    if (a->zero || b->zero)
        return a->zero && b->zero; /* -0 == 0 */
    if (a->neg != b->neg || a->exp != b->exp || a->ndig != b->ndig)
        return 0;
    size_t i = a->fpos, j = b->fpos;
    for (int64_t k = 0; k < a->ndig; k++, i++, j++) {
        while (a->s[i] == '.')
            i++;
        while (b->s[j] == '.')
            j++;
        if (a->s[i] != b->s[j])
            return 0;
    }
    return 1;
}

int ddbk__num_text_equal(const char *a, size_t an, const char *b, size_t bn)
{
    canon ca, cb;
    canon_of(a, an, &ca);
    canon_of(b, bn, &cb);
    return canon_equal(&ca, &cb);
}

void ddbk__push_num_canon(lua_State *L, const char *s, size_t n)
{
    canon c;
    luaL_Buffer b;
    char ebuf[DDBK_NUMBUF];

    canon_of(s, n, &c);
    if (c.zero) {
        lua_pushliteral(L, "0");
        return;
    }
    luaL_buffinit(L, &b);
    if (c.neg)
        luaL_addchar(&b, '-');
    size_t i = c.fpos;
    for (int64_t k = 0; k < c.ndig; k++, i++) {
        while (s[i] == '.')
            i++;
        luaL_addchar(&b, s[i]);
    }
    luaL_addchar(&b, 'e');
    size_t en = ddbk__fmt_int(c.exp, ebuf);
    luaL_addlstring(&b, ebuf, en);
    luaL_pushresult(&b);
}

void ddbk__push_decimal(lua_State *L, const char *s, size_t n, int dec_mt)
{
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, s, n);
    lua_setfield(L, -2, "text");
    lua_pushvalue(L, dec_mt);
    lua_setmetatable(L, -2);
}

void ddbk__push_n(lua_State *L, const char *s, size_t n, int dec_mt)
{
    int is_int = 0;
    (void)ddbk__num_valid(s, n, &is_int);
    int64_t v;
#if DDBK_HAS_INTEGERS
    if (is_int && ddbk__parse_int64(s, n, &v)) {
        lua_pushinteger(L, (lua_Integer)v);
        return;
    }
#else
    /* LuaJIT: an integer within 2^53 is exact as a double, which is what the
     * rule below would conclude after a strtod and a printf */
    if (is_int && ddbk__parse_int64(s, n, &v) && v >= -9007199254740992LL &&
        v <= 9007199254740992LL) {
        lua_pushnumber(L, (lua_Number)v);
        return;
    }
#endif
    /* The double is good enough when its shortest text denotes exactly the
     * decimal DynamoDB sent: then it marshals back to the same value. */
    int ok;
    double d = ddbk__strtod(L, s, n, &ok);
    if (ok && isfinite(d)) {
        char buf[DDBK_NUMBUF];
        size_t bn = ddbk__fmt_double(d, buf);
        if (ddbk__num_text_equal(s, n, buf, bn)) {
            lua_pushnumber(L, (lua_Number)d);
            return;
        }
    }
    ddbk__push_decimal(L, s, n, dec_mt);
}
