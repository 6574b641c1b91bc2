/*
 * libFuzzer target: decode arbitrary bytes; when that gives a value the
 * encoder accepts, its JSON must decode again, and one more encode/decode
 * round must give the same Lua value (the marshalling is stable: what we
 * read we write back the same).
 *
 *   make build/fuzz/fuzz_encode_roundtrip   (clang's libFuzzer, with the
 *       marshalling sources the Makefile lists in MARSHAL_SRC)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "ddbkit.h"
#include "marshal.h"

static lua_State *L;

struct input {
    const char *data;
    size_t size;
    ddbk_buf b1, b2;
};

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "roundtrip: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* Raw structural equality of two decoded values: same types, same
 * metatables (array/set/binary/decimal markers), same keys and values. */
static int same(lua_State *L, int a, int b, int depth)
{
    if (lua_type(L, a) != lua_type(L, b))
        return 0;
    if (lua_type(L, a) != LUA_TTABLE)
        return lua_rawequal(L, a, b);
    if (lua_rawequal(L, a, b))
        return 1;
    if (depth > 80 || !lua_checkstack(L, 6))
        die("too deep to compare", NULL);
    int ma = lua_getmetatable(L, a);
    int mb = lua_getmetatable(L, b);
    if (ma != mb || (ma && !lua_rawequal(L, -1, -2))) {
        lua_pop(L, ma + mb);
        return 0;
    }
    lua_pop(L, ma + mb);
    size_t na = 0, nb = 0;
    lua_pushnil(L);
    while (lua_next(L, a)) {
        na++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        int ok = same(L, lua_gettop(L) - 1, lua_gettop(L), depth + 1);
        lua_pop(L, 2);
        if (!ok) {
            lua_pop(L, 1);
            return 0;
        }
    }
    lua_pushnil(L);
    while (lua_next(L, b)) {
        nb++;
        lua_pop(L, 1);
    }
    return na == nb;
}

static int run(lua_State *L)
{
    struct input *in = lua_touserdata(L, 1);
    char err[256];

    /* v1 = decode(input); j1 = encode(v1) */
    if (ddbk_lua_decode_response(L, in->data, in->size, err, sizeof err) != 0)
        return 0;
    if (lua_type(L, -1) != LUA_TTABLE ||
        ddbk_lua_encode_request(L, -1, &in->b1, err, sizeof err) != 0)
        return 0; /* not every response is a request (an empty SS, 1e999) */
    /* v2 = decode(j1): the encoder's JSON is always readable */
    if (ddbk_lua_decode_response(L, in->b1.data, in->b1.len, err, sizeof err) != 0)
        die("encoder output does not decode", err);
    int v2 = lua_gettop(L);
    /* j2 = encode(v2); v3 = decode(j2); v3 must equal v2 */
    if (ddbk_lua_encode_request(L, v2, &in->b2, err, sizeof err) != 0)
        die("decoded encoder output does not encode", err);
    if (ddbk_lua_decode_response(L, in->b2.data, in->b2.len, err, sizeof err) != 0)
        die("second round does not decode", err);
    if (!same(L, v2, v2 + 1, 0))
        die("second round changed the value", in->b2.data);
    if (in->b1.len != in->b2.len)
        die("second round changed the JSON length", in->b2.data);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        L = luaL_newstate();
        if (!L)
            abort();
        lua_newtable(L);
        ddbk_lua_values_open(L, -1);
        lua_pop(L, 1);
    }
    struct input in = {(const char *)data, size, {0}, {0}};
    ddbk_buf_init(&in.b1, 0);
    ddbk_buf_init(&in.b2, 0);
    int top = lua_gettop(L);
    lua_pushcfunction(L, run);
    lua_pushlightuserdata(L, &in);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
        die("raised", lua_tostring(L, -1));
    ddbk_buf_free(&in.b1);
    ddbk_buf_free(&in.b2);
    if (lua_gettop(L) != top)
        abort();
    lua_gc(L, LUA_GCCOLLECT, 0); /* so libFuzzer's leak check stays on */
    return 0;
}
