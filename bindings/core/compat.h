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

/* One Lua value attached to a userdata (5.4: user value 1; 5.1: the
 * environment table, so the value must be a table). */
#if LUA_VERSION_NUM >= 504
#define ddbk_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 1)
#define ddbk_setuservalue(L, i) lua_setiuservalue((L), (i), 1)
#define ddbk_getuservalue(L, i) ((void)lua_getiuservalue((L), (i), 1))
#elif LUA_VERSION_NUM >= 502
#define ddbk_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define ddbk_setuservalue(L, i) lua_setuservalue((L), (i))
#define ddbk_getuservalue(L, i) ((void)lua_getuservalue((L), (i)))
#else
#define ddbk_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define ddbk_setuservalue(L, i) ((void)lua_setfenv((L), (i)))
#define ddbk_getuservalue(L, i) lua_getfenv((L), (i))
#endif

#if LUA_VERSION_NUM >= 503
#define DDBK_HAS_INTEGERS 1
#else
#define DDBK_HAS_INTEGERS 0
#endif

#endif
