/*
 * What the binding's files share about the client userdata and error
 * values (both defined in core.c).
 */
#ifndef DDBKIT_LUA_CLIENT_H
#define DDBKIT_LUA_CLIENT_H

#include <lua.h>
#include "ddbkit.h"

/* The engine client of the ddbkit.client userdata at idx; raises when idx is
 * not one or it was closed. */
ddbk_client *ddbk_lua_check_client(lua_State *L, int idx);

/* Pushes an error value (a table with the ddbkit.error metatable). */
void ddbk_lua_push_error(lua_State *L, const ddbk_error *e);

#endif
