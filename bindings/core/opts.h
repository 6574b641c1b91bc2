/*
 * Option tables: reading a number a caller put in one, checked before the
 * engine sees it.
 */
#ifndef DDBKIT_LUA_OPTS_H
#define DDBKIT_LUA_OPTS_H

#include <lua.h>

/* Reads the numeric option k of the table at t into *out when it is set
 * (leaves *out alone when it is nil). Raises, naming the option and the
 * function fn, unless it is a number, finite, an integer when whole is set,
 * and within [min, max]: casting anything else to long would be undefined
 * (NaN, infinities) or would silently change it. A fraction (whole = 0) is
 * dropped. */
void ddbk_lua_opt_number(lua_State *L, int t, const char *fn, const char *k, long min,
                         long max, int whole, long *out);

#endif
