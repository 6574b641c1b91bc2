/* The Lua face of the engine's event loop (loop.c). */
#ifndef DDBKIT_LUA_LOOP_H
#define DDBKIT_LUA_LOOP_H

#include <lua.h>

/* Registers core.loop_new in the module table at module_idx; the loop
 * userdata's metatable lives in the registry. */
void ddbk_lua_loop_open(lua_State *L, int module_idx);

#endif
