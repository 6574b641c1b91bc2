/*
 * Lua line coverage for libFuzzer, for targets whose code under test is Lua
 * (the interpreter is the system's, not instrumented, so libFuzzer would see
 * no coverage of it and mutate blind). A line hook hashes each (previous
 * line, this line) pair of the running chunks into a table of libFuzzer
 * "extra counters" (the __libfuzzer_extra_counters section): an input that
 * takes a new path through the Lua code counts as new coverage. The hashes
 * use the chunks' source string addresses, stable for one run (the chunks
 * live as long as the state), which is all libFuzzer needs.
 *
 * Costs a hook call per Lua line: slower inputs, far better ones.
 * Header-only: include it in the one file of a fuzz target.
 */
#ifndef DDBK_FUZZ_LUA_COV_H
#define DDBK_FUZZ_LUA_COV_H

#include <stdint.h>

#include <lua.h>

#define LUA_COV_SIZE (1u << 16)

__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t lua_cov[LUA_COV_SIZE];
static uintptr_t lua_cov_prev;

static void lua_cov_hook(lua_State *L, lua_Debug *ar)
{
    if (!lua_getinfo(L, "S", ar))
        return;
    uintptr_t cur = (uintptr_t)ar->source * 31u ^ (uintptr_t)ar->currentline * 2654435761u;
    size_t i = (size_t)((cur ^ (lua_cov_prev >> 1)) % LUA_COV_SIZE);
    if (lua_cov[i] < 255)
        lua_cov[i]++;
    lua_cov_prev = cur;
}

/* lua_cov_start(L): every line the state (and the coroutines it creates
 * from now on, which inherit the hook) runs is counted. */
static void lua_cov_start(lua_State *L)
{
    lua_sethook(L, lua_cov_hook, LUA_MASKLINE, 0);
}

#endif
