/*
 * Option tables (see opts.h).
 */
#include <math.h>
#include <stdio.h>

#include <lauxlib.h>

#include "opts.h"

/* Raises the misuse error of the numeric option k, naming it. */
static int bad_number(lua_State *L, const char *fn, const char *k, const char *want,
                      lua_Number v)
{
    char got[40];
    if (v != v)
        snprintf(got, sizeof got, "nan");
    else if (v == (lua_Number)HUGE_VAL || v == -(lua_Number)HUGE_VAL)
        snprintf(got, sizeof got, "%sinf", v < 0 ? "-" : "");
    else
        snprintf(got, sizeof got, "%.17g", (double)v);
    return luaL_error(L, "bad option '%s' to '%s' (%s expected, got %s)", k, fn, want, got);
}

void ddbk_lua_opt_number(lua_State *L, int t, const char *fn, const char *k, long min,
                         long max, int whole, long *out)
{
    char want[80];
    lua_getfield(L, t, k);
    int ty = lua_type(L, -1);
    if (ty != LUA_TNIL) {
        if (ty != LUA_TNUMBER)
            luaL_error(L, "bad option '%s' to '%s' (number expected, got %s)", k, fn,
                       luaL_typename(L, -1));
        lua_Number v = lua_tonumber(L, -1);
        snprintf(want, sizeof want, "%s from %ld to %ld", whole ? "an integer" : "a number",
                 min, max);
        if (v != v || v == (lua_Number)HUGE_VAL || v == -(lua_Number)HUGE_VAL)
            bad_number(L, fn, k, "a finite number", v);
        if (whole && v != floor(v))
            bad_number(L, fn, k, want, v);
        if (v < (lua_Number)min || v > (lua_Number)max)
            bad_number(L, fn, k, want, v);
        *out = (long)v;
    }
    lua_pop(L, 1);
}
