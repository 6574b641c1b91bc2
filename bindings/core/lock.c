/*
 * The Lua face of the engine's conditional locks. A lock handle is a
 * userdata owning a ddbk_lock (freed by __gc; collecting a handle does not
 * release the lock: a lease ends by release or by expiry, never by the
 * garbage collector's timing). The Lua module ddbkit.lock checks options and
 * shapes the API; these functions only carry values across.
 *
 * A keeper userdata owns a running ddbk_lock_keeper. While it runs, its
 * thread writes the lock, so the handle refuses every other use (reading it
 * too would race), the keeper holds a registry reference to the handle so the
 * collector cannot free the lock under the thread, and whichever of the two
 * is finalized first stops the thread: none outlives its Lua state.
 */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "client.h"
#include "compat.h"
#include "ddbkit.h"
#include "lock.h"
#include "marshal.h"

#define LOCK_MT "ddbkit.lockhandle"
#define KEEPER_MT "ddbkit.lockkeeper"

struct lkeeper;

typedef struct lhandle {
    ddbk_lock lk;
    /* The busy holder's item of a failed acquire (with_item). Owned here,
     * so a Lua error raised while it is decoded cannot leak it. */
    ddbk_buf busy;
    struct lkeeper *keeper;    /* the running keeper, or NULL */
} lhandle;

typedef struct lkeeper {
    ddbk_lock_keeper *k;       /* NULL once stopped (or never started) */
    lhandle *lh;
    int ref;                   /* registry reference to the handle, or LUA_NOREF */
    /* The first stop's result, answered again by later stops. */
    int rc;
    long renewals;
    ddbk_error err;
} lkeeper;

static lhandle *check_handle(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, LOCK_MT);
}

/* The lock of a handle that is the caller's to use (not kept). */
static ddbk_lock *check_lock(lua_State *L, int idx)
{
    lhandle *lh = check_handle(L, idx);
    if (lh->keeper)
        luaL_error(L, "ddbkit.lock: the handle is being kept by a keeper; stop it first");
    return &lh->lk;
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

/* Sets err.item (err on top) to the "Item" of the raw response body. */
static void set_err_item(lua_State *L, const ddbk_buf *body)
{
    char msg[256];
    if (ddbk_lua_decode_response(L, body->data, body->len, msg, sizeof msg) != 0)
        return; /* not JSON after all: no item rather than a failed call */
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "Item");
        lua_setfield(L, -3, "item");
    }
    lua_pop(L, 1);
}

/* core.lock_acquire(client, key, opts) -> handle | nil, err
 * key = { table, pk_name, pk_value, sk_name?, sk_value? }
 * opts = { lease_ms, wait_ms, max_clock_skew_ms, with_item? }
 * With opts.with_item, a failure that saw the item carries it as err.item
 * (plain Lua values, as core.call's errors carry theirs). */
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
    lua_getfield(L, 3, "with_item");
    int with_item = lua_toboolean(L, -1);
    lua_pop(L, 1);

    lhandle *lh = lua_newuserdata(L, sizeof *lh);
    memset(lh, 0, sizeof *lh);
    ddbk_buf_init(&lh->busy, 0);
    luaL_getmetatable(L, LOCK_MT);
    lua_setmetatable(L, -2);
    opts.busy_item = with_item ? &lh->busy : NULL;
    if (ddbk_lock_acquire(c, &key, &opts, &lh->lk, &holder, &err) != 0) {
        fail(L, &err);
        if (holder.known) {
            push_holder(L, &holder);
            lua_setfield(L, -2, "holder");
        }
        if (lh->busy.len)
            set_err_item(L, &lh->busy);
        ddbk_buf_free(&lh->busy);
        return 2;
    }
    ddbk_buf_free(&lh->busy);
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

/* core.lock_mark_released(handle): the caller's own write (a transaction,
 * say) released the lock item; the handle stops claiming it. */
static int l_mark_released(lua_State *L)
{
    ddbk_lock_mark_released(check_lock(L, 1));
    return 0;
}

/* ------------------------------------------------------------ keepers */

/* Stops a running keeper and records its result; a no-op once stopped.
 * Joining may wait for a renewal in flight: the lock must be whole again
 * before Lua (or the handle's __gc) touches it. */
static void keeper_stop(lua_State *L, lkeeper *kp)
{
    if (!kp->k)
        return;
    kp->rc = ddbk_lock_keep_stop(kp->k, &kp->renewals, &kp->err);
    kp->k = NULL;
    kp->lh->keeper = NULL;
    kp->lh = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, kp->ref);
    kp->ref = LUA_NOREF;
}

/* core.lock_keep(client, handle, period_ms) -> keeper | nil, err
 * Renews the handle's lease every period_ms from a thread of its own (on a
 * clone of the client) until keeper:stop(). */
static int l_keep(lua_State *L)
{
    ddbk_client *c = ddbk_lua_check_client(L, 1);
    ddbk_lock *lk = check_lock(L, 2);
    lua_Number period = luaL_checknumber(L, 3);
    ddbk_error err;

    /* Everything that can raise comes before the thread starts, so that a
     * memory error leaves nothing running. */
    lkeeper *kp = lua_newuserdata(L, sizeof *kp);
    memset(kp, 0, sizeof *kp);
    kp->ref = LUA_NOREF;
    luaL_getmetatable(L, KEEPER_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 2);
    kp->ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* Out of range (or NaN) becomes 0, which the engine refuses: casting
     * it to long would be undefined. */
    long period_ms = period >= 1 && period < 1e15 ? (long)period : 0;
    ddbk_lock_keeper *k = ddbk_lock_keep(c, lk, period_ms, &err);
    if (!k) {
        luaL_unref(L, LUA_REGISTRYINDEX, kp->ref);
        kp->ref = LUA_NOREF;
        return fail(L, &err);
    }
    kp->k = k;
    kp->lh = check_handle(L, 2);
    kp->lh->keeper = kp;
    return 1;
}

/* keeper:stop() -> true, renewals | nil, err, renewals
 * Again after the first: the first answer. */
static int l_keeper_stop(lua_State *L)
{
    lkeeper *kp = luaL_checkudata(L, 1, KEEPER_MT);
    keeper_stop(L, kp);
    if (kp->rc == 0) {
        lua_pushboolean(L, 1);
        lua_pushinteger(L, (lua_Integer)kp->renewals);
        return 2;
    }
    lua_pushnil(L);
    ddbk_lua_push_error(L, &kp->err);
    lua_pushinteger(L, (lua_Integer)kp->renewals);
    return 3;
}

static int l_keeper_gc(lua_State *L)
{
    keeper_stop(L, luaL_checkudata(L, 1, KEEPER_MT));
    return 0;
}

static int l_gc(lua_State *L)
{
    lhandle *lh = check_handle(L, 1);
    /* Only at lua_close can the handle go first (its keeper references
     * it); the thread must still be stopped before the lock is freed. */
    if (lh->keeper)
        keeper_stop(L, lh->keeper);
    ddbk_lock_free(&lh->lk);
    ddbk_buf_free(&lh->busy);
    return 0;
}

static const luaL_Reg handle_methods[] = {
    { "info", l_info },
    { "valid_ms", l_valid_ms },
    { NULL, NULL },
};

static const luaL_Reg keeper_methods[] = {
    { "stop", l_keeper_stop },
    { NULL, NULL },
};

static const luaL_Reg module_funcs[] = {
    { "lock_acquire", l_acquire },
    { "lock_renew", l_renew },
    { "lock_release", l_release },
    { "lock_keep", l_keep },
    { "lock_mark_released", l_mark_released },
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
    luaL_newmetatable(L, KEEPER_MT);
    lua_createtable(L, 0, 1);
    luaL_setfuncs(L, keeper_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_keeper_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, module_funcs, 0);
    lua_pop(L, 1);
}
