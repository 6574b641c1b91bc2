/*
 * JSON.parse for ddbkit.jsjson (jsparse.c): core.js_parse(text, order).
 */
#ifndef DDBKIT_JSPARSE_H
#define DDBKIT_JSPARSE_H

#include <lua.h>

/* Registers js_parse in the table at module_idx. */
void ddbk_lua_jsparse_open(lua_State *L, int module_idx);

#endif
