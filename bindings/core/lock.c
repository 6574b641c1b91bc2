/*
 * The Lua face of the engine's conditional locks. A lock handle is a
 * userdata owning a ddbk_lock (freed by __gc; collecting a handle does not
 * release the lock: a lease ends by release or by expiry, never by the
 * garbage collector's timing). The Lua module ddbkit.lock checks options and
 * shapes the API; these functions only carry values across.
 */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "client.h"
#include "compat.h"
#include "ddbkit.h"
#include "lock.h"

#define LOCK_MT "ddbkit.lockhandle"

static ddbk_lock *check_lock(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, LOCK_MT);
}

static const char *opt_field(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *v = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the table keeps the string alive */
    return v;
}

static long num_field(lua_State *L, int t, const char *k, long dflt)
{
    lua_getfield(L, t, k);
    long v = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static int fail(lua_State *L, const ddbk_error *e)
{
    lua_pushnil(L);
    ddbk_lua_push_error(L, e);
    return 2;
}

static void push_holder(lua_State *L, const ddbk_lock_holder *h)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, h->owner);
    lua_setfield(L, -2, "owner");
    lua_pushstring(L, h->rvn);
    lua_setfield(L, -2, "rvn");
    lua_pushinteger(L, (lua_Integer)h->fence);
    lua_setfield(L, -2, "fence");
    lua_pushinteger(L, (lua_Integer)h->expires_at);
    lua_setfield(L, -2, "expires_at");
    lua_pushinteger(L, (lua_Integer)h->lease_ms);
    lua_setfield(L, -2, "lease_ms");
}

/* core.lock_acquire(client, key, opts) -> handle | nil, err
 * key = { table, pk_name, pk_value, sk_name?, sk_value? }
 * opts = { lease_ms, wait_ms, max_clock_skew_ms } */
static int l_acquire(lua_State *L)
{
    ddbk_client *c = ddbk_lua_check_client(L, 1);
    ddbk_lock_key key;
    ddbk_lock_opts opts;
    ddbk_lock_holder holder;
    ddbk_error err;

    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    key.table = opt_field(L, 2, "table");
    key.pk_name = opt_field(L, 2, "pk_name");
    key.pk_value = opt_field(L, 2, "pk_value");
    key.sk_name = opt_field(L, 2, "sk_name");
    key.sk_value = opt_field(L, 2, "sk_value");
    opts.lease_ms = num_field(L, 3, "lease_ms", 0);
    opts.wait_ms = num_field(L, 3, "wait_ms", 0);
    opts.max_clock_skew_ms = num_field(L, 3, "max_clock_skew_ms", 0);

    ddbk_lock *lk = lua_newuserdata(L, sizeof *lk);
    memset(lk, 0, sizeof *lk);
    luaL_getmetatable(L, LOCK_MT);
    lua_setmetatable(L, -2);
    if (ddbk_lock_acquire(c, &key, &opts, lk, &holder, &err) != 0) {
        fail(L, &err);
        if (holder.known) {
            push_holder(L, &holder);
            lua_setfield(L, -2, "holder");
        }
        return 2;
    }
    return 1;
}

static int l_renew(lua_State *L)
{
    ddbk_client *c = ddbk_lua_check_client(L, 1);
    ddbk_lock *lk = check_lock(L, 2);
    ddbk_error err;
    if (ddbk_lock_renew(c, lk, (long)luaL_optnumber(L, 3, 0), &err) != 0)
        return fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_release(lua_State *L)
{
    ddbk_client *c = ddbk_lua_check_client(L, 1);
    ddbk_lock *lk = check_lock(L, 2);
    ddbk_error err;
    if (ddbk_lock_release(c, lk, &err) != 0)
        return fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* handle:info() -> { owner, rvn, fence, expires_at, lease_ms, held } */
static int l_info(lua_State *L)
{
    ddbk_lock *lk = check_lock(L, 1);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, lk->owner);
    lua_setfield(L, -2, "owner");
    lua_pushstring(L, lk->rvn);
    lua_setfield(L, -2, "rvn");
    lua_pushinteger(L, (lua_Integer)lk->fence);
    lua_setfield(L, -2, "fence");
    lua_pushinteger(L, (lua_Integer)lk->expires_at);
    lua_setfield(L, -2, "expires_at");
    lua_pushinteger(L, (lua_Integer)lk->lease_ms);
    lua_setfield(L, -2, "lease_ms");
    lua_pushboolean(L, lk->held);
    lua_setfield(L, -2, "held");
    return 1;
}

static int l_valid_ms(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)ddbk_lock_valid_ms(check_lock(L, 1)));
    return 1;
}

static int l_gc(lua_State *L)
{
    ddbk_lock_free(check_lock(L, 1));
    return 0;
}

static const luaL_Reg handle_methods[] = {
    { "info", l_info },
    { "valid_ms", l_valid_ms },
    { NULL, NULL },
};

static const luaL_Reg module_funcs[] = {
    { "lock_acquire", l_acquire },
    { "lock_renew", l_renew },
    { "lock_release", l_release },
    { NULL, NULL },
};

void ddbk_lua_lock_open(lua_State *L, int module_idx)
{
    luaL_newmetatable(L, LOCK_MT);
    lua_createtable(L, 0, 2);
    luaL_setfuncs(L, handle_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, module_funcs, 0);
    lua_pop(L, 1);
}
