/*
 * What the binding's files share about the client userdata, error values
 * and call results (all defined in core.c), so that every way of making a
 * call (core.call, an event loop's completions) encodes and decodes alike.
 */
#ifndef DDBKIT_LUA_CLIENT_H
#define DDBKIT_LUA_CLIENT_H

#include <lauxlib.h>
#include <lua.h>
#include "ddbkit.h"

/* The engine client of the ddbkit.client userdata at idx; raises when idx is
 * not one or it was closed. */
ddbk_client *ddbk_lua_check_client(lua_State *L, int idx);

/* A call in flight keeps its client: ddbk_lua_client_try_hold counts a hold
 * on the client userdata at idx (raises only when idx is not one), or
 * returns NULL when it is closed. It never raises for a closed client, so
 * a caller can take its hold last, after everything that can raise (or run
 * Lua code that closes the client). While a hold is out, closing or
 * collecting the userdata only marks it closed; the last
 * ddbk_lua_client_release frees the engine client. The holder must also
 * keep the userdata itself reachable (a reference) until it releases. */
typedef struct ddbk_lua_client ddbk_lua_client;
ddbk_lua_client *ddbk_lua_client_try_hold(lua_State *L, int idx);
ddbk_client *ddbk_lua_client_engine(ddbk_lua_client *lc);
void ddbk_lua_client_release(ddbk_lua_client *lc);

/* Pushes an error value (a table with the ddbkit.error metatable). */
void ddbk_lua_push_error(lua_State *L, const ddbk_error *e);

/* Pushes nil and the error value of e; returns 2 (a function's failure). */
int ddbk_lua_return_error(lua_State *L, const ddbk_error *e);

/* Registers the metatable name of a userdata: methods as its __index, gc as
 * its __gc and tostring (may be NULL) as its __tostring. Leaves the stack
 * as it was. */
void ddbk_lua_new_metatable(lua_State *L, const char *name, const luaL_Reg *methods,
                            lua_CFunction gc, lua_CFunction tostring);

/* Encodes the request table at idx into out (reset first). Returns 0; or
 * pushes nil and a ValidationException error naming the path and returns 2. */
int ddbk_lua_encode_params(lua_State *L, int idx, ddbk_buf *out);

/* Pushes the result decoded from a success body (an empty body is {}) and
 * returns 1; or pushes nil and a MalformedResponse error and returns 2. */
int ddbk_lua_push_result(lua_State *L, const ddbk_buf *body);

/* Pushes the error value of a failed call: e, plus err.item and
 * err.cancellation_reasons when the error body carries them. */
void ddbk_lua_push_call_error(lua_State *L, const ddbk_error *e, const ddbk_buf *body);

/* The compat message for a missing table: when e is a
 * ResourceNotFoundException and table is a name, e's message becomes the
 * exact text the Node stores log. */
void ddbk_lua_missing_table(ddbk_error *e, const char *table);

/* Registers the credential functions (creds.c) in the module table at
 * index module. */
void ddbk_lua_creds_open(lua_State *L, int module);

#endif
