/*
 * What values.c shares with encode.c and decode.c: where the value types'
 * objects live (null and the metatables, recognised by identity). Nothing
 * here is part of the module's API (see marshal.h for that); core.so is
 * built with hidden visibility, so none of it leaks out.
 */
#ifndef DDBKIT_VALUES_H
#define DDBKIT_VALUES_H

#include <lua.h>

/* Registry keys (strings, so a second copy of the module in the same state
 * finds the same objects and `null` stays unique). */
#define DDBK_LUA_NULL_KEY    "ddbkit.null"
#define DDBK_LUA_ARRAY_MT    "ddbkit.array"
#define DDBK_LUA_BINARY_MT   "ddbkit.binary"
#define DDBK_LUA_SET_MT      "ddbkit.set"
#define DDBK_LUA_DECIMAL_MT  "ddbkit.decimal"

/* Pushes, in this order, the null sentinel and the array, binary, set and
 * decimal metatables (5 values), creating them in the registry the first
 * time. Costs five registry lookups; raises only on memory errors. */
#define DDBK_LUA_NREFS 5
void ddbk__lua_push_refs(lua_State *L);

/* lua_absindex for both Lua 5.4 and LuaJIT (which lacks it). */
static inline int ddbk__lua_absindex(lua_State *L, int idx)
{
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

#endif
