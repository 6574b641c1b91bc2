/* The Lua face of the engine's conditional locks (lock.c). */
#ifndef DDBKIT_LUA_LOCK_H
#define DDBKIT_LUA_LOCK_H

#include <lua.h>

/* Registers lock_op, lock_keep and lock_mark_released in the module table
 * at module_idx; the metatables of the handle, op and keeper userdata live
 * in the registry. */
void ddbk_lua_lock_open(lua_State *L, int module_idx);

#endif
