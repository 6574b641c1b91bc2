/*
 * The Lua side of DynamoDB's value types: ddbkit.null, array, binary, set
 * and decimal, their predicates, and the number-text rules the encoder and
 * decoder share (how an N becomes a Lua number or a decimal, and back).
 *
 * Every value type is a plain table carrying one of five metatables kept in
 * the registry, so user code can inspect them with ordinary Lua and the C
 * side recognises them by metatable identity (one pointer compare).
 */
#include <locale.h>
#include <stdarg.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "marshal.h"
#include "values.h"

/* Upvalues of the module functions: the objects ddbk__lua_push_refs pushes. */
#define UV_NULL    lua_upvalueindex(1)
#define UV_ARRAY   lua_upvalueindex(2)
#define UV_BINARY  lua_upvalueindex(3)
#define UV_SET     lua_upvalueindex(4)
#define UV_DECIMAL lua_upvalueindex(5)

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

/* ------------------------------------------------------ error paths */

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

/* -------------------------------------------------------- number text */

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

/* Pushes the canonical text of a valid number ("-123e5": sign, significant
 * digits, exponent), so equal values give equal strings (set duplicates). */
static void push_canon(lua_State *L, const char *s, size_t n)
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

static void push_decimal(lua_State *L, const char *s, size_t n, int dec_mt)
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
    push_decimal(L, s, n, dec_mt);
}

/* ----------------------------------------------------------- base64 */

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int ddbk__b64_valid(const unsigned char *s, size_t n, int *pad)
{
    int p = 0;
    if (n % 4)
        return 0;
    if (n && s[n - 1] == '=') {
        p++;
        if (s[n - 2] == '=')
            p++;
    }
    for (size_t i = 0; i < n - (size_t)p; i++)
        if (!b64_char(s[i]))
            return 0;
    *pad = p;
    return 1;
}

/* Each byte's 6-bit value in the base64 alphabet; 0xff: not in it. */
static const unsigned char b64_val[256] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3e, 0xff, 0xff, 0xff, 0x3f,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

long ddbk__b64_decode(const unsigned char *s, size_t n, unsigned char *out)
{
    if (n % 4)
        return -1;
    if (n == 0)
        return 0;
    unsigned char *o = out;
    const unsigned char *end = s + n - 4; /* the last quad may be padded */
    for (; s < end; s += 4, o += 3) {
        unsigned a = b64_val[s[0]], b = b64_val[s[1]];
        unsigned c = b64_val[s[2]], d = b64_val[s[3]];
        if ((a | b | c | d) & 0x80)
            return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
    }
    /* "xx==", "xxx=" or "xxxx"; bits under the padding are ignored, as
     * EVP_DecodeBlock does */
    int pad = s[3] == '=' ? (s[2] == '=' ? 2 : 1) : 0;
    unsigned a = b64_val[s[0]], b = b64_val[s[1]];
    unsigned c = pad == 2 ? 0 : b64_val[s[2]], d = pad ? 0 : b64_val[s[3]];
    if ((a | b | c | d) & 0x80)
        return -1;
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
    o[0] = (unsigned char)(v >> 16);
    if (pad < 2)
        o[1] = (unsigned char)(v >> 8);
    if (pad < 1)
        o[2] = (unsigned char)v;
    return (long)(o - out) + 3 - pad;
}

/* ------------------------------------------------------- field names */

#define FIELD_IS(lit) (memcmp(k, lit, sizeof(lit) - 1) == 0)

enum ddbk_field_rule ddbk__field_rule(const char *k, size_t n)
{
    /* By length first: most API fields (TableName, ReturnValues, ...) are
     * ruled out without touching their bytes. */
    switch (n) {
    case 3:
        if (FIELD_IS("Key")) return DDBK_FIELD_AVMAP;
        break;
    case 4:
        if (FIELD_IS("Item")) return DDBK_FIELD_AVMAP;
        if (FIELD_IS("Keys")) return DDBK_FIELD_AVMAP_LIST;
        if (FIELD_IS("Tags")) return DDBK_FIELD_RAW;
        break;
    case 5:
        if (FIELD_IS("Items")) return DDBK_FIELD_AVMAP_LIST;
        break;
    case 8:
        if (FIELD_IS("Expected")) return DDBK_FIELD_BY_ATTR_VALUE;
        if (FIELD_IS("NewImage") || FIELD_IS("OldImage")) return DDBK_FIELD_AVMAP;
        break;
    case 9:
        if (FIELD_IS("Responses")) return DDBK_FIELD_BY_TABLE_ITEMS;
        break;
    case 10:
        if (FIELD_IS("Attributes")) return DDBK_FIELD_AVMAP;
        if (FIELD_IS("Parameters")) return DDBK_FIELD_AV_LIST;
        if (FIELD_IS("ScanFilter")) return DDBK_FIELD_BY_ATTR;
        break;
    case 11:
        if (FIELD_IS("QueryFilter")) return DDBK_FIELD_BY_ATTR;
        break;
    case 12:
        if (FIELD_IS("RequestItems")) return DDBK_FIELD_BY_TABLE;
        break;
    case 13:
        if (FIELD_IS("KeyConditions")) return DDBK_FIELD_BY_ATTR;
        break;
    case 15:
        if (FIELD_IS("UnprocessedKeys")) return DDBK_FIELD_BY_TABLE;
        break;
    case 16:
        if (FIELD_IS("LastEvaluatedKey")) return DDBK_FIELD_AVMAP;
        if (FIELD_IS("UnprocessedItems")) return DDBK_FIELD_BY_TABLE;
        if (FIELD_IS("AttributeUpdates")) return DDBK_FIELD_BY_ATTR_VALUE;
        break;
    case 17:
        if (FIELD_IS("ExclusiveStartKey") || FIELD_IS("ItemCollectionKey"))
            return DDBK_FIELD_AVMAP;
        break;
    case 18:
        if (FIELD_IS("AttributeValueList")) return DDBK_FIELD_AV_LIST;
        break;
    case 25:
        if (FIELD_IS("ExpressionAttributeValues")) return DDBK_FIELD_AVMAP;
        break;
    default:
        break;
    }
    return DDBK_FIELD_PLAIN;
}

/* ------------------------------------------------- the value objects */

static int has_mt(lua_State *L, int idx, int mt)
{
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
        return 0;
    int r = lua_rawequal(L, -1, mt);
    lua_pop(L, 1);
    return r;
}

/* Copies s into out as a quoted, escaped, truncated string for messages.
 * outlen must be at least 10. */
static const char *quote(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        /* room for the longest escape, or for "...", the quote and the NUL */
        if (o + 9 >= outlen) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static int null_tostring(lua_State *L)
{
    lua_pushliteral(L, "ddbkit.null");
    return 1;
}

static int null_newindex(lua_State *L)
{
    return luaL_error(L, "ddbkit.null is read-only");
}

static int binary_tostring(lua_State *L)
{
    char buf[64];
    lua_settop(L, 1);
    lua_pushliteral(L, "value");
    lua_rawget(L, 1);
    snprintf(buf, sizeof buf, "ddbkit.binary(%zu bytes)",
             lua_type(L, -1) == LUA_TSTRING ? (size_t)ddbk_rawlen(L, -1) : (size_t)0);
    lua_pushstring(L, buf);
    return 1;
}

static int binary_len(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushliteral(L, "value");
    lua_rawget(L, 1);
    lua_pushinteger(L, lua_type(L, -1) == LUA_TSTRING ? (lua_Integer)ddbk_rawlen(L, -1) : 0);
    return 1;
}

static int binary_eq(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_type(L, 1) != LUA_TTABLE || lua_type(L, 2) != LUA_TTABLE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushliteral(L, "value");
    lua_rawget(L, 1);
    lua_pushliteral(L, "value");
    lua_rawget(L, 2);
    lua_pushboolean(L, lua_type(L, 3) == LUA_TSTRING && lua_rawequal(L, 3, 4));
    return 1;
}

static int set_tostring(lua_State *L)
{
    char buf[64];
    snprintf(buf, sizeof buf, "ddbkit.set(%zu)",
             lua_type(L, 1) == LUA_TTABLE ? (size_t)ddbk_rawlen(L, 1) : (size_t)0);
    lua_pushstring(L, buf);
    return 1;
}

static int decimal_tostring(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushliteral(L, "text");
    lua_rawget(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
        lua_pushliteral(L, "ddbkit.decimal(?)");
    return 1;
}

static int decimal_eq(lua_State *L)
{
    size_t an = 0, bn = 0;
    lua_settop(L, 2);
    if (lua_type(L, 1) != LUA_TTABLE || lua_type(L, 2) != LUA_TTABLE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushliteral(L, "text");
    lua_rawget(L, 1);
    lua_pushliteral(L, "text");
    lua_rawget(L, 2);
    const char *a = lua_type(L, 3) == LUA_TSTRING ? lua_tolstring(L, 3, &an) : NULL;
    const char *b = lua_type(L, 4) == LUA_TSTRING ? lua_tolstring(L, 4, &bn) : NULL;
    if (a && b && ddbk__num_valid(a, an, NULL) && ddbk__num_valid(b, bn, NULL))
        lua_pushboolean(L, ddbk__num_text_equal(a, an, b, bn));
    else /* someone replaced .text: fall back to identity of the texts */
        lua_pushboolean(L, a && b && lua_rawequal(L, 3, 4));
    return 1;
}

/* Creates a metatable named `name` in the registry with the given
 * metamethods, leaving nothing on the stack. */
static void new_mt(lua_State *L, const char *name, const luaL_Reg *mm)
{
    lua_newtable(L);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    for (; mm && mm->name; mm++) {
        lua_pushcfunction(L, mm->func);
        lua_setfield(L, -2, mm->name);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, name);
}

static void create_refs(lua_State *L)
{
    static const luaL_Reg null_mm[] = {
        {"__tostring", null_tostring}, {"__newindex", null_newindex}, {NULL, NULL}};
    static const luaL_Reg binary_mm[] = {
        {"__tostring", binary_tostring}, {"__len", binary_len},
        {"__eq", binary_eq}, {NULL, NULL}};
    static const luaL_Reg set_mm[] = {{"__tostring", set_tostring}, {NULL, NULL}};
    static const luaL_Reg decimal_mm[] = {
        {"__tostring", decimal_tostring}, {"__eq", decimal_eq}, {NULL, NULL}};

    luaL_checkstack(L, 4, NULL);
    /* null: an empty table nobody can fill or re-metatable, so `v == null`
     * is the whole test and it can never become something else. */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "ddbkit.null");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "ddbkit.null");
    lua_setfield(L, -2, "__metatable");
    for (const luaL_Reg *mm = null_mm; mm->name; mm++) {
        lua_pushcfunction(L, mm->func);
        lua_setfield(L, -2, mm->name);
    }
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, DDBK_LUA_NULL_KEY);

    new_mt(L, DDBK_LUA_ARRAY_MT, NULL);
    new_mt(L, DDBK_LUA_BINARY_MT, binary_mm);
    new_mt(L, DDBK_LUA_SET_MT, set_mm);
    new_mt(L, DDBK_LUA_DECIMAL_MT, decimal_mm);
}

void ddbk__lua_push_refs(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, DDBK_LUA_NULL_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        create_refs(L);
        lua_getfield(L, LUA_REGISTRYINDEX, DDBK_LUA_NULL_KEY);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, DDBK_LUA_ARRAY_MT);
    lua_getfield(L, LUA_REGISTRYINDEX, DDBK_LUA_BINARY_MT);
    lua_getfield(L, LUA_REGISTRYINDEX, DDBK_LUA_SET_MT);
    lua_getfield(L, LUA_REGISTRYINDEX, DDBK_LUA_DECIMAL_MT);
}

/* array(t?): marks t (or a new table) so it encodes as a list, even empty. */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        if (lua_getmetatable(L, 1)) {
            if (lua_rawequal(L, -1, UV_ARRAY)) {
                lua_pop(L, 1);
                return 1;
            }
            /* silently replacing someone's metatable would break their
             * object; marking a set/binary would change what it is */
            return luaL_argerror(L, 1, "table already has a metatable");
        }
    }
    lua_pushvalue(L, UV_ARRAY);
    lua_setmetatable(L, -2);
    return 1;
}

/* binary(s): bytes that encode as B. */
static int l_binary(lua_State *L)
{
    if (has_mt(L, 1, UV_BINARY)) {
        lua_settop(L, 1);
        return 1;
    }
    /* strictly a string: a number would silently become its decimal text */
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, lua_pushfstring(L, "string expected, got %s",
                                                   luaL_typename(L, 1)));
    lua_settop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "value");
    lua_pushvalue(L, UV_BINARY);
    lua_setmetatable(L, -2);
    return 1;
}

/* decimal(text | number): a number kept as its decimal text. */
static int l_decimal(lua_State *L)
{
    char buf[DDBK_NUMBUF];
    char q[64];
    size_t n;
    const char *s;

    if (has_mt(L, 1, UV_DECIMAL)) {
        lua_settop(L, 1);
        return 1;
    }
    switch (lua_type(L, 1)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, 1, &n);
        if (!ddbk__num_valid(s, n, NULL))
            return luaL_argerror(L, 1, lua_pushfstring(L, "not a number: %s",
                                                       quote(s, n, q, sizeof q)));
        break;
    case LUA_TNUMBER: {
#if DDBK_HAS_INTEGERS
        if (lua_isinteger(L, 1)) {
            n = ddbk__fmt_int((int64_t)lua_tointeger(L, 1), buf);
            s = buf;
            break;
        }
#endif
        double d = (double)lua_tonumber(L, 1);
        if (!isfinite(d))
            return luaL_argerror(L, 1, "number is not finite");
        n = ddbk__fmt_double(d, buf);
        s = buf;
        break;
    }
    default:
        return luaL_argerror(L, 1, lua_pushfstring(L, "string or number expected, got %s",
                                                   luaL_typename(L, 1)));
    }
    lua_settop(L, 1);
    lua_pushvalue(L, UV_DECIMAL);
    push_decimal(L, s, n, 2);
    return 1;
}

enum { EK_BAD, EK_STRING, EK_NUMBER, EK_BINARY };

static const char *const ek_plural[] = {"?", "strings", "numbers", "binaries"};

/* Raises for element i of a set being built from a table (src != 0) or from
 * the arguments. */
static int set_error(lua_State *L, int src, int i, const char *msg)
{
    if (src)
        return luaL_argerror(L, src, lua_pushfstring(L, "element %d %s", i, msg));
    return luaL_argerror(L, i, msg);
}

/* set(...) or set({...}): strings (SS), numbers/decimals (NS) or binaries
 * (BS), no duplicates, not empty. Costs one temporary table for the
 * duplicate check. */
static int l_set(lua_State *L)
{
    int nargs = lua_gettop(L);
    int src = 0, n;
    char q[64], buf[DDBK_NUMBUF];

    if (nargs == 1 && lua_type(L, 1) == LUA_TTABLE && !has_mt(L, 1, UV_BINARY) &&
        !has_mt(L, 1, UV_DECIMAL) && !lua_rawequal(L, 1, UV_NULL)) {
        src = 1;
        n = (int)ddbk_rawlen(L, 1);
    } else {
        n = nargs;
    }
    if (n == 0)
        return luaL_argerror(L, 1, "a set cannot be empty (DynamoDB has no empty sets)");

    luaL_checkstack(L, 12, NULL);
    lua_createtable(L, n, 0);
    int res = lua_gettop(L);
    lua_createtable(L, 0, n);
    int seen = res + 1;
    int kind = EK_BAD;
    for (int i = 1; i <= n; i++) {
        if (src)
            lua_rawgeti(L, src, i);
        else
            lua_pushvalue(L, i);
        int el = lua_gettop(L), ek = EK_BAD;
        size_t len;
        const char *s;

        /* the key for the duplicate check: equal elements, equal keys */
        switch (lua_type(L, el)) {
        case LUA_TSTRING:
            ek = EK_STRING;
            lua_pushvalue(L, el);
            break;
        case LUA_TNUMBER:
            ek = EK_NUMBER;
#if DDBK_HAS_INTEGERS
            if (lua_isinteger(L, el)) {
                len = ddbk__fmt_int((int64_t)lua_tointeger(L, el), buf);
                push_canon(L, buf, len);
                break;
            }
#endif
            if (!isfinite((double)lua_tonumber(L, el)))
                return set_error(L, src, i, "is not a finite number");
            len = ddbk__fmt_double((double)lua_tonumber(L, el), buf);
            push_canon(L, buf, len);
            break;
        case LUA_TTABLE:
            if (has_mt(L, el, UV_BINARY)) {
                ek = EK_BINARY;
                lua_pushliteral(L, "value");
                lua_rawget(L, el);
                if (lua_type(L, -1) != LUA_TSTRING)
                    return set_error(L, src, i, "is a broken binary (value is not a string)");
            } else if (has_mt(L, el, UV_DECIMAL)) {
                ek = EK_NUMBER;
                lua_pushliteral(L, "text");
                lua_rawget(L, el);
                s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
                if (!s || !ddbk__num_valid(s, len, NULL))
                    return set_error(L, src, i, "is a broken decimal (text is not a number)");
                push_canon(L, s, len);
                lua_remove(L, -2);
            }
            break;
        default:
            break;
        }
        if (ek == EK_BAD)
            return set_error(L, src, i, lua_pushfstring(L,
                "is a %s; a set holds strings, numbers or binaries",
                luaL_typename(L, el)));
        if (kind == EK_BAD)
            kind = ek;
        else if (ek != kind)
            return set_error(L, src, i, lua_pushfstring(L,
                "makes the set mix %s and %s", ek_plural[kind], ek_plural[ek]));
        lua_pushvalue(L, -1);
        lua_rawget(L, seen);
        if (!lua_isnil(L, -1)) {
            if (ek != EK_STRING)
                return set_error(L, src, i, "is a duplicate (DynamoDB rejects those)");
            s = lua_tolstring(L, el, &len);
            return set_error(L, src, i, lua_pushfstring(L,
                "is a duplicate (%s; DynamoDB rejects those)", quote(s, len, q, sizeof q)));
        }
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
        lua_rawset(L, seen);
        lua_rawseti(L, res, i);
    }
    lua_settop(L, res);
    lua_pushvalue(L, UV_SET);
    lua_setmetatable(L, res);
    return 1;
}

static int l_is_binary(lua_State *L)
{
    lua_pushboolean(L, has_mt(L, 1, UV_BINARY));
    return 1;
}

static int l_is_set(lua_State *L)
{
    lua_pushboolean(L, has_mt(L, 1, UV_SET));
    return 1;
}

static int l_is_decimal(lua_State *L)
{
    lua_pushboolean(L, has_mt(L, 1, UV_DECIMAL));
    return 1;
}

static int l_is_array(lua_State *L)
{
    lua_pushboolean(L, has_mt(L, 1, UV_ARRAY));
    return 1;
}

static const luaL_Reg value_funcs[] = {
    {"array", l_array},         {"binary", l_binary},
    {"set", l_set},             {"decimal", l_decimal},
    {"is_binary", l_is_binary}, {"is_set", l_is_set},
    {"is_decimal", l_is_decimal}, {"is_array", l_is_array},
    {NULL, NULL}};

void ddbk_lua_values_open(lua_State *L, int module_idx)
{
    module_idx = ddbk__lua_absindex(L, module_idx);
    luaL_checkstack(L, DDBK_LUA_NREFS + 2, NULL);
    lua_pushvalue(L, module_idx);
    ddbk__lua_push_refs(L);
    luaL_setfuncs(L, value_funcs, DDBK_LUA_NREFS);
    lua_getfield(L, LUA_REGISTRYINDEX, DDBK_LUA_NULL_KEY);
    lua_setfield(L, -2, "null");
    lua_pop(L, 1);
}
