/*
 * The few Lua C API differences between Lua 5.4 and LuaJIT 2.1 (5.1 API),
 * in one place.
 */
#ifndef DDBKIT_COMPAT_H
#define DDBKIT_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
#define ddbk_rawlen(L, i) lua_objlen((L), (i))
#else
#define ddbk_rawlen(L, i) lua_rawlen((L), (i))
#endif

#if LUA_VERSION_NUM >= 503
#define DDBK_HAS_INTEGERS 1
#else
#define DDBK_HAS_INTEGERS 0
#endif

#endif
