/*
 * libFuzzer target: arbitrary bytes as a DynamoDB response body. The decoder
 * must return a value or an error, never crash, never leave the Lua stack
 * unbalanced, and (under ASan) never leak or touch freed memory. One input in
 * four also runs with a Lua allocator that fails after a few hundred
 * allocations, so the memory-error unwind out of yajl's callbacks is
 * exercised: the full GC after each input then must free the yajl handle
 * (libFuzzer's per-input leak check would report it otherwise).
 *
 *   make build/fuzz/fuzz_decode   (clang's libFuzzer, with the marshalling
 *                                  sources the Makefile lists in MARSHAL_SRC)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "marshal.h"

/* One state for the whole run, as a host would have: the decoder must not
 * depend on a fresh one. */
static lua_State *L;

/* Allocations left before the allocator fails; -1: never fails. */
static long budget = -1;

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    /* Lua requires shrinking to succeed; only growth may fail */
    if (ptr == NULL || nsize > osize) {
        if (budget == 0)
            return NULL;
        if (budget > 0)
            budget--;
    }
    return realloc(ptr, nsize);
}

struct input {
    const char *data;
    size_t size;
};

/* Runs under lua_pcall so that a Lua memory error unwinds cleanly. */
static int run(lua_State *L)
{
    const struct input *in = lua_touserdata(L, 1);
    char err[256];
    int top = lua_gettop(L);
    int rc = ddbk_lua_decode_response(L, in->data, in->size, err, sizeof err);
    if (lua_gettop(L) != top + (rc == 0 ? 1 : 0)) {
        fprintf(stderr, "stack unbalanced: rc=%d top %d -> %d\n", rc, top, lua_gettop(L));
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        L = lua_newstate(alloc, NULL);
        if (!L)
            abort();
        lua_newtable(L);
        ddbk_lua_values_open(L, -1);
        lua_pop(L, 1);
    }
    struct input in = {(const char *)data, size};
    uint32_t h = 2166136261u; /* FNV-1a: the same input, the same budget */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    int top = lua_gettop(L);
    lua_pushcfunction(L, run);
    lua_pushlightuserdata(L, &in);
    budget = (h & 3) == 0 ? (long)(h >> 2) % 400 : -1;
    int st = lua_pcall(L, 1, 0, 0);
    int limited = budget >= 0;
    budget = -1;
    if (st != LUA_OK && !(st == LUA_ERRMEM && limited)) {
        fprintf(stderr, "decode raised: %s\n", lua_tostring(L, -1));
        abort(); /* only a memory error may raise */
    }
    lua_settop(L, top);
    /* collect now, so that anything not freed by the end of the input is a
     * real leak to libFuzzer rather than garbage not yet collected */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
