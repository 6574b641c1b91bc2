/*
 * Embedded Lua 5.4 for libFuzzer targets whose code under test is Lua
 * (fuzz_response, fuzz_cli_config): a state with the standard libraries and
 * ddbkit.core (linked into the target) preloaded, a harness chunk loaded
 * once, and one call of what it returned per input.
 *
 * The harness is Lua source that gets this tree's root folder (FUZZ_ROOT)
 * as its argument and returns a function: called per input, it returns nil
 * or the text of a finding. Coverage of the Lua lines (lua_cov.h) counts
 * from after the load: the inputs' paths, not the set-up's.
 *
 * Every failure here aborts: in a fuzz target that is the report.
 * Header-only: include it in the one file of a fuzz target.
 */
#ifndef DDBK_FUZZ_LUA_HOST_H
#define DDBK_FUZZ_LUA_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua_cov.h"

#ifndef FUZZ_ROOT
#error "FUZZ_ROOT (the repository's root folder) must be defined"
#endif

int luaopen_ddbkit_core(lua_State *L);

/* lua_host_open(name, harness, len, &ref): a new state with the harness
 * loaded; *ref is the registry reference of the function it returned.
 * name (the target's) names the chunk and prefixes the messages. */
static lua_State *lua_host_open(const char *name, const char *harness, size_t len, int *ref)
{
    char chunk[64];
    lua_State *L = luaL_newstate();
    if (!L)
        abort();
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_ddbkit_core);
    lua_setfield(L, -2, "ddbkit.core");
    lua_pop(L, 1);
    snprintf(chunk, sizeof chunk, "=%s", name);
    if (luaL_loadbuffer(L, harness, len, chunk) != LUA_OK)
        goto fail;
    lua_pushstring(L, FUZZ_ROOT);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        goto fail;
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_cov_start(L); /* after loading: coverage of the inputs, not of the set-up */
    return L;
fail:
    fprintf(stderr, "%s: the harness did not load: %s\n", name, lua_tostring(L, -1));
    abort();
}

/* lua_host_check(L, name, nargs): call the harness function, pushed below
 * its nargs arguments; abort if it raised or returned a finding. */
static void lua_host_check(lua_State *L, const char *name, int nargs)
{
    if (lua_pcall(L, nargs, 1, 0) != LUA_OK) {
        fprintf(stderr, "%s: harness error: %s\n", name, lua_tostring(L, -1));
        abort();
    }
    if (!lua_isnil(L, -1)) {
        fprintf(stderr, "%s: finding: %s\n", name, lua_tostring(L, -1));
        abort();
    }
    lua_pop(L, 1);
}

/* lua_host_run_string(name, harness, len, data, size): the whole libFuzzer
 * entry of a target whose harness takes the input as one Lua string: the
 * host is opened on the first input and kept (one target per binary). */
static inline void lua_host_run_string(const char *name, const char *harness, size_t len,
                                       const uint8_t *data, size_t size)
{
    static lua_State *L;
    static int ref = LUA_NOREF;
    if (!L)
        L = lua_host_open(name, harness, len, &ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, (const char *)data, size);
    lua_host_check(L, name, 1);
}

#endif
