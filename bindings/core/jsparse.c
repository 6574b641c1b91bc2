/*
 * JSON.parse for ddbkit.jsjson: the same values, the same refusals and the
 * same key-order memory as jsjson.lua's own decoder (which stays the
 * reference, and the fallback where core lacks this function), several
 * times faster on Lua 5.4. A cache hit decodes its value here.
 *
 *   core.js_parse(text, order) -> value | nil, err
 *
 * `order` is jsjson's weak table object -> list of its keys in text order;
 * each object of two keys or more gets its list there (a duplicate key
 * keeps its first position and its last value, as in JavaScript). Arrays
 * get ddbkit.array's metatable (empty ones too), null is ddbkit.null.
 * Numbers: the double JavaScript reads (strtod, correctly rounded); on Lua
 * 5.4 an integer when that double is integral and fits. Strings: the text
 * must be UTF-8 (no surrogates, as DynamoDB reads it); a \u escape of a
 * lone surrogate becomes its three WTF-8 bytes, a \uD83D\uDE00 pair the
 * character. Nesting deeper than JS_MAX_DEPTH (1000, jsjson.MAX_DEPTH) is
 * refused.
 *
 * Hand-written, not yajl: yajl turns a lone high surrogate into "?" and
 * reads \ud800\u0041 as one garbled character, and JSON.parse's answers
 * are the contract. A recursive descent whose depth is bounded; it needs
 * no memory of its own (strings are built in a luaL_Buffer, values on the
 * Lua stack), so a memory error that unwinds it leaks nothing.
 * Fuzzed against the Lua decoder by tests/fuzz/fuzz_jsjson.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "jsparse.h"
#include "numtext.h"
#include "values.h"

#define JS_MAX_DEPTH 1000

typedef struct jp {
    lua_State *L;
    const unsigned char *s;
    size_t n, pos;
    int order;      /* stack index of the order table */
    int null_idx;   /* ddbkit.null */
    int array_mt;   /* ddbkit.array's metatable */
    char err[160];
} jp;

/* Records the first error; returns 0 so callers can `return fail(...)`. */
static int fail(jp *p, const char *what)
{
    if (p->pos >= p->n)
        snprintf(p->err, sizeof p->err, "%s at the end of the text", what);
    else if (p->s[p->pos] >= 0x20 && p->s[p->pos] < 0x7f)
        snprintf(p->err, sizeof p->err, "%s at byte %zu (\"%c\")", what, p->pos + 1,
                 p->s[p->pos]);
    else
        snprintf(p->err, sizeof p->err, "%s at byte %zu (0x%02X)", what, p->pos + 1,
                 p->s[p->pos]);
    return 0;
}

static void skip_ws(jp *p)
{
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* UTF-8 as DynamoDB reads it: no overlong forms, no surrogates, nothing
 * above U+10FFFF. Returns the offset of the first bad sequence, or n. */
static size_t utf8_bad(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return i;
        }
        if (n - i < len)
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t j = 2; j < len; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF)
                return i;
        i += len;
    }
    return n;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* Code point cp (surrogates too: WTF-8) as UTF-8 into b; returns length. */
static size_t put_utf8(unsigned cp, char b[4])
{
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (char)(0xF0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The string whose '"' is at pos: pushes its bytes. */
static int parse_string(jp *p)
{
    size_t start = ++p->pos, i = start;
    const unsigned char *s = p->s;
    while (i < p->n && s[i] != '"' && s[i] != '\\' && s[i] >= 0x20)
        i++;
    if (i < p->n && s[i] == '"') { /* no escapes: the span itself */
        lua_pushlstring(p->L, (const char *)s + start, i - start);
        p->pos = i + 1;
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(p->L, &b); /* nothing else is pushed until luaL_pushresult */
    luaL_addlstring(&b, (const char *)s + start, i - start);
    for (;;) {
        if (i >= p->n) {
            p->pos = start - 1;
            luaL_pushresult(&b);
            lua_pop(p->L, 1);
            return fail(p, "unterminated string starting");
        }
        unsigned char c = s[i];
        if (c == '"') {
            luaL_pushresult(&b);
            p->pos = i + 1;
            return 1;
        }
        if (c < 0x20) {
            p->pos = i;
            luaL_pushresult(&b);
            lua_pop(p->L, 1);
            return fail(p, "control character in a string");
        }
        if (c != '\\') {
            size_t j = i;
            while (j < p->n && s[j] != '"' && s[j] != '\\' && s[j] >= 0x20)
                j++;
            luaL_addlstring(&b, (const char *)s + i, j - i);
            i = j;
            continue;
        }
        unsigned char e = i + 1 < p->n ? s[i + 1] : 0;
        char out;
        switch (e) {
        case '"': out = '"'; break;
        case '\\': out = '\\'; break;
        case '/': out = '/'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'u': {
            unsigned u, u2;
            char enc[4];
            if (p->n - i < 6 || !hex4(s + i + 2, &u)) {
                p->pos = i;
                luaL_pushresult(&b);
                lua_pop(p->L, 1);
                return fail(p, "bad \\u escape");
            }
            i += 6;
            if (u >= 0xD800 && u <= 0xDBFF && p->n - i >= 6 && s[i] == '\\' && s[i + 1] == 'u'
                && hex4(s + i + 2, &u2) && u2 >= 0xDC00 && u2 <= 0xDFFF) {
                u = 0x10000 + ((u - 0xD800) << 10) + (u2 - 0xDC00);
                i += 6;
            }
            luaL_addlstring(&b, enc, put_utf8(u, enc));
            continue;
        }
        default:
            p->pos = i + 1;
            luaL_pushresult(&b);
            lua_pop(p->L, 1);
            return fail(p, "bad escape");
        }
        luaL_addchar(&b, out);
        i += 2;
    }
}

static int parse_number(jp *p)
{
    const unsigned char *s = p->s;
    size_t i = p->pos, start = p->pos;
    if (i < p->n && s[i] == '-')
        i++;
    size_t d = i;
    while (i < p->n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == d)
        return fail(p, "unexpected character");
    if (i - d > 1 && s[d] == '0') {
        p->pos = d;
        return fail(p, "leading zero in a number");
    }
    if (i < p->n && s[i] == '.') {
        size_t f = ++i;
        while (i < p->n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f) {
            p->pos = f;
            return fail(p, "bad number");
        }
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t x = i;
        while (i < p->n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == x) {
            p->pos = e;
            return fail(p, "bad exponent");
        }
    }
    int ok;
    double v = ddbk__strtod(p->L, (const char *)s + start, i - start, &ok);
#if DDBK_HAS_INTEGERS
    /* integral doubles that fit are integers, as math.tointeger says */
    if (v >= -9223372036854775808.0 && v < 9223372036854775808.0 && v == (double)(int64_t)v) {
        lua_pushinteger(p->L, (lua_Integer)(int64_t)v);
        p->pos = i;
        return 1;
    }
#endif
    lua_pushnumber(p->L, (lua_Number)v);
    p->pos = i;
    return 1;
}

static int parse_value(jp *p, int depth);

/* Which values a container needs on the stack: the table, its key list, a
 * key and a value being built, and what a value needs (a luaL_Buffer). */
#define SLOTS_PER_LEVEL 6

static int parse_object(jp *p, int depth)
{
    lua_State *L = p->L;
    lua_newtable(L);
    int t = lua_gettop(L);
    int keys = 0, n = 0;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') {
        p->pos++;
        return 1;
    }
    for (;;) {
        if (p->pos >= p->n || p->s[p->pos] != '"')
            return fail(p, "expected a string key");
        if (!parse_string(p))
            return 0;
        skip_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ':')
            return fail(p, "expected ':'");
        p->pos++;
        skip_ws(p);
        if (!parse_value(p, depth))
            return 0;
        /* stack: ... t [keys] key value */
        lua_pushvalue(L, -2);
        lua_rawget(L, t);
        int fresh = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (fresh) {
            n++;
            if (n == 2) {
                /* the list starts with the first key, read back from t */
                lua_createtable(L, 4, 0);
                lua_pushnil(L);
                if (lua_next(L, t)) { /* t holds just that first key */
                    lua_pop(L, 1);
                    lua_rawseti(L, -2, 1);
                }
                lua_insert(L, t + 1);
                keys = t + 1;
            }
            if (keys) {
                lua_pushvalue(L, -2);
                lua_rawseti(L, keys, n);
            }
        }
        lua_rawset(L, t);
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            skip_ws(p);
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == '}') {
            p->pos++;
            if (keys) {
                lua_pushvalue(L, t);
                lua_pushvalue(L, keys);
                lua_rawset(L, p->order);
                lua_remove(L, keys);
            }
            return 1;
        }
        return fail(p, "expected ',' or '}'");
    }
}

static int parse_array(jp *p, int depth)
{
    lua_State *L = p->L;
    lua_newtable(L);
    lua_pushvalue(L, p->array_mt);
    lua_setmetatable(L, -2);
    int n = 0;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') {
        p->pos++;
        return 1;
    }
    for (;;) {
        if (!parse_value(p, depth))
            return 0;
        lua_rawseti(L, -2, ++n);
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            skip_ws(p);
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == ']') {
            p->pos++;
            return 1;
        }
        return fail(p, "expected ',' or ']'");
    }
}

static int literal(jp *p, const char *word, size_t len)
{
    if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0)
        return fail(p, "unexpected character");
    p->pos += len;
    return 1;
}

/* Parses one value at pos and pushes it; 0 (with err set) on failure,
 * having left any partial values on the stack (the caller resets it). */
static int parse_value(jp *p, int depth)
{
    if (p->pos >= p->n)
        return fail(p, "unexpected end of text");
    switch (p->s[p->pos]) {
    case '"':
        return parse_string(p);
    case '{':
    case '[':
        if (depth >= JS_MAX_DEPTH) {
            snprintf(p->err, sizeof p->err, "nested deeper than %d levels", JS_MAX_DEPTH);
            return 0;
        }
        if (!lua_checkstack(p->L, SLOTS_PER_LEVEL)) {
            snprintf(p->err, sizeof p->err, "Lua stack exhausted");
            return 0;
        }
        return p->s[p->pos] == '{' ? parse_object(p, depth + 1) : parse_array(p, depth + 1);
    case 't':
        if (!literal(p, "true", 4))
            return 0;
        lua_pushboolean(p->L, 1);
        return 1;
    case 'f':
        if (!literal(p, "false", 5))
            return 0;
        lua_pushboolean(p->L, 0);
        return 1;
    case 'n':
        if (!literal(p, "null", 4))
            return 0;
        lua_pushvalue(p->L, p->null_idx);
        return 1;
    default:
        return parse_number(p);
    }
}

/* core.js_parse(text, order) -> value | nil, err */
static int l_js_parse(lua_State *L)
{
    jp p;
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    p.L = L;
    p.s = (const unsigned char *)s;
    p.n = n;
    p.pos = 0;
    p.order = 2;
    p.err[0] = '\0';
    /* upvalues, not registry lookups: five of those were a third of a
     * small value's decode */
    p.null_idx = lua_upvalueindex(1);
    p.array_mt = lua_upvalueindex(2);
    int base = lua_gettop(L);

    size_t bad = utf8_bad(p.s, n);
    if (bad < n) {
        lua_pushnil(L);
        lua_pushfstring(L, "text is not valid UTF-8 (byte %d)", (int)(bad + 1));
        return 2;
    }
    skip_ws(&p);
    if (parse_value(&p, 0)) {
        skip_ws(&p);
        if (p.pos >= p.n)
            return 1;
        fail(&p, "unexpected text after the value");
    }
    lua_settop(L, base);
    lua_pushnil(L);
    lua_pushstring(L, p.err);
    return 2;
}

void ddbk_lua_jsparse_open(lua_State *L, int module_idx)
{
    ddbk__lua_push_refs(L); /* null, then the array, binary, set, decimal mts */
    lua_pop(L, 3);
    lua_pushcclosure(L, l_js_parse, 2);
    lua_setfield(L, module_idx, "js_parse");
}
