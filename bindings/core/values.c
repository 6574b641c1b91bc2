/*
 * The Lua side of DynamoDB's value types: ddbkit.null, array, binary, set
 * and decimal, and their predicates.
 *
 * Every value type is a plain table carrying one of five metatables kept in
 * the registry, so user code can inspect them with ordinary Lua and the C
 * side recognises them by metatable identity (one pointer compare).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "marshal.h"
#include "numtext.h"
#include "values.h"

/* Upvalues of the module functions: the objects ddbk__lua_push_refs pushes. */
#define UV_NULL    lua_upvalueindex(1)
#define UV_ARRAY   lua_upvalueindex(2)
#define UV_BINARY  lua_upvalueindex(3)
#define UV_SET     lua_upvalueindex(4)
#define UV_DECIMAL lua_upvalueindex(5)

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
    ddbk__push_decimal(L, s, n, 2);
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
                ddbk__push_num_canon(L, buf, len);
                break;
            }
#endif
            if (!isfinite((double)lua_tonumber(L, el)))
                return set_error(L, src, i, "is not a finite number");
            len = ddbk__fmt_double((double)lua_tonumber(L, el), buf);
            ddbk__push_num_canon(L, buf, len);
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
                ddbk__push_num_canon(L, s, len);
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
