/*
 * The Lua face of the engine's conditional locks. A lock handle is a
 * userdata owning a ddbk_lock handle (freed by __gc; collecting a handle does not
 * release the lock: a lease ends by release or by expiry, never by the
 * garbage collector's timing). The Lua module ddbkit.lock checks options and
 * shapes the API; these functions only carry values across.
 *
 * Operations run as the engine's lock machine (ddbk_lock_op): a lock op
 * userdata says what to do next ("send" a request, "sleep", "done") and the
 * Lua side does it through its runtime, so the same protocol runs blocking,
 * in coroutines or in OpenResty. An op keeps a registry reference to the
 * handle it writes, so the collector cannot free the lock under it.
 *
 * A keeper userdata owns a running ddbk_lock_keeper. While it runs, its
 * thread writes the lock, so the handle refuses every other use (reading it
 * too would race), the keeper holds a registry reference to the handle so the
 * collector cannot free the lock under the thread, and whichever of the two
 * is finalized first stops the thread: none outlives its Lua state.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "client.h"
#include "compat.h"
#include "ddbkit.h"
#include "lock.h"
#include "marshal.h"
#include "opts.h"

#define LOCK_MT "ddbkit.lockhandle"
#define KEEPER_MT "ddbkit.lockkeeper"
#define OP_MT "ddbkit.lockop"

struct lkeeper;

typedef struct lhandle {
    ddbk_lock *lk;             /* the engine's handle; NULL until an acquire made it */
    /* The busy holder's item of a failed acquire (with_item). Owned here,
     * so a Lua error raised while it is decoded cannot leak it. */
    ddbk_buf busy;
    struct lkeeper *keeper;    /* the running keeper, or NULL */
    /* Op userdata that point here. An op keeps the handle alive, except at
     * lua_close, where finalizers run in an order of the VM's choosing: a
     * handle finalized first leaves its lock for the last op to free
     * (engine ops write the lock until they are freed). */
    int ops;
    int orphaned;
} lhandle;

typedef struct lkeeper {
    ddbk_lock_keeper *k;       /* NULL once stopped (or never started) */
    lhandle *lh;
    int ref;                   /* registry reference to the handle, or LUA_NOREF */
    /* The client the keeper was started with: its stats get the keeper's
     * requests at stop, so the keeper holds it (a hold, and a registry
     * reference to its userdata: closed or collected meanwhile, the engine
     * client lives until the stop). */
    ddbk_lua_client *client;
    int cref;
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
    if (!lh->lk)
        luaL_error(L, "ddbkit.lock: the handle holds no lock");
    return lh->lk;
}

/* Pushes the field k of the table at t and leaves it on the stack: the
 * pointer (NULL unless a string or a number) is valid only while the value
 * stays there (a number is converted in place; a value an __index function
 * made has no other owner). */
static const char *opt_field(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    return lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
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

/* ------------------------------------------------------- operations */

enum { K_ACQUIRE, K_RENEW, K_RELEASE };

typedef struct lop {
    ddbk_lock_op *op;          /* NULL once its result was taken */
    lhandle *lh;               /* the handle it writes */
    int ref;                   /* registry reference to that handle, or LUA_NOREF */
    int kind;
    int sent;                  /* the last step was "send": next wants its outcome */
    int done;
} lop;

static lop *check_op(lua_State *L)
{
    return luaL_checkudata(L, 1, OP_MT);
}

/* A new op userdata on the stack for the handle at idx, without an engine
 * op yet (made after everything that can raise). */
static lop *new_op(lua_State *L, int kind, int handle_idx)
{
    lop *o = lua_newuserdata(L, sizeof *o);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    o->kind = kind;
    o->lh = check_handle(L, handle_idx);
    o->lh->ops++;
    luaL_getmetatable(L, OP_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, handle_idx);
    o->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return o;
}

static void copy_field(lua_State *L, int t, const char *k, char *out, size_t cap)
{
    lua_getfield(L, t, k);
    snprintf(out, cap, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
}

/* The failure of a call as the machine wants it, from the error table at
 * idx (core.call's shape): code, message, status, retryable, request_id;
 * a timeout is told by its code. */
static void to_error(lua_State *L, int idx, ddbk_error *e)
{
    ddbk_error_clear(e);
    copy_field(L, idx, "code", e->code, sizeof e->code);
    copy_field(L, idx, "message", e->message, sizeof e->message);
    copy_field(L, idx, "request_id", e->request_id, sizeof e->request_id);
    lua_getfield(L, idx, "status");
    e->status = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : 0;
    lua_getfield(L, idx, "retryable");
    e->retryable = lua_toboolean(L, -1);
    lua_getfield(L, idx, "timeout");
    e->timeout = lua_toboolean(L, -1) || strcmp(e->code, "Timeout") == 0;
    /* A request of the call went out and its answer was lost: the write may
     * have landed whatever the final error says (the machine reads back). */
    lua_getfield(L, idx, "ambiguous");
    e->ambiguous = lua_toboolean(L, -1);
    lua_pop(L, 4);
}

/* core.lock_op(kind, ...) -> op | nil, err
 *   "acquire", key, opts: key = { table, pk_name, pk_value, sk_name?, sk_value? },
 *       opts = { lease_ms, wait_ms, max_clock_skew_ms, foreign_grace_ms?, with_item? }
 *   "renew", handle, lease_ms?
 *   "release", handle
 * nil, err when the outcome is known before any request (a bad key, a
 * handle no longer held). */
static int l_lock_op(lua_State *L)
{
    static const char *const kinds[] = { "acquire", "renew", "release", NULL };
    int kind = luaL_checkoption(L, 1, NULL, kinds);
    ddbk_error err;
    lop *o;

    if (kind == K_ACQUIRE) {
        ddbk_lock_key key;
        ddbk_lock_opts opts;
        luaL_checktype(L, 2, LUA_TTABLE);
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_settop(L, 3);
        /* the five key fields stay on the stack (4..8) until the engine
         * has copied them (ddbk_lock_op_acquire) */
        key.table = opt_field(L, 2, "table");
        key.pk_name = opt_field(L, 2, "pk_name");
        key.pk_value = opt_field(L, 2, "pk_value");
        key.sk_name = opt_field(L, 2, "sk_name");
        key.sk_value = opt_field(L, 2, "sk_value");
        /* 0 (unset) is the engine's default; anything else is checked,
         * since a NaN or an infinity cast to long is undefined. */
        opts.lease_ms = opts.wait_ms = opts.max_clock_skew_ms = opts.foreign_grace_ms = 0;
        ddbk_lua_opt_number(L, 3, "lock_op", "lease_ms", 0, INT_MAX, 0, &opts.lease_ms);
        ddbk_lua_opt_number(L, 3, "lock_op", "wait_ms", 0, INT_MAX, 0, &opts.wait_ms);
        ddbk_lua_opt_number(L, 3, "lock_op", "max_clock_skew_ms", 0, INT_MAX, 0,
                            &opts.max_clock_skew_ms);
        ddbk_lua_opt_number(L, 3, "lock_op", "foreign_grace_ms", 0, INT_MAX, 0,
                            &opts.foreign_grace_ms);
        lua_getfield(L, 3, "with_item");
        int with_item = lua_toboolean(L, -1);
        lua_pop(L, 1);

        lhandle *lh = lua_newuserdata(L, sizeof *lh);
        memset(lh, 0, sizeof *lh);
        ddbk_buf_init(&lh->busy, 0);
        luaL_getmetatable(L, LOCK_MT);
        lua_setmetatable(L, -2);
        o = new_op(L, kind, lua_gettop(L));
        opts.busy_item = with_item ? &lh->busy : NULL;
        o->op = ddbk_lock_op_acquire(&key, &opts, &lh->lk, &err);
    } else {
        ddbk_lock *lk = check_lock(L, 2);
        lua_Number want = kind == K_RENEW ? luaL_optnumber(L, 3, 0) : 0;
        /* Out of range (or NaN) becomes 0, "keep the lease length": casting
         * it to long would be undefined. */
        long lease_ms = want >= 1 && want < 1e15 ? (long)want : 0;
        o = new_op(L, kind, 2);
        o->op = kind == K_RENEW ? ddbk_lock_op_renew(lk, lease_ms, &err)
                                : ddbk_lock_op_release(lk, &err);
    }
    if (!o->op)
        return ddbk_lua_return_error(L, &err);
    return 1;
}

/* op:next(body?, err?, err_body?) -> "send", op, json | "sleep", ms | "done"
 * First with nothing; after a send with that call's outcome (the body, or
 * nil, the error table and the error body: what call_raw returns); after a
 * sleep with nothing. After a send, anything else is a failed call. */
static int l_op_next(lua_State *L)
{
    lop *o = check_op(L);
    ddbk_lock_next nx;
    ddbk_error call_err;
    const ddbk_error *failed = NULL;
    const char *body = NULL;
    size_t len = 0;
    int what;

    if (o->done) {
        lua_pushliteral(L, "done");
        return 1;
    }
    /* The keeper's thread writes the handle while it runs: an operation
     * stepping it now would race it (and carry a stale record version). */
    if (o->lh && o->lh->keeper)
        return luaL_error(L, "ddbkit.lock: the handle is being kept by a keeper; stop it first");
    if (o->sent) {
        if (lua_type(L, 2) == LUA_TSTRING) {
            body = lua_tolstring(L, 2, &len);
        } else {
            if (lua_istable(L, 3)) {
                to_error(L, 3, &call_err);
                if (lua_type(L, 4) == LUA_TSTRING)
                    body = lua_tolstring(L, 4, &len);
            } else {
                /* Neither a body nor an error table: nothing is known of
                 * the call, and nothing is assumed (least of all success). */
                ddbk_error_set(&call_err, "UnknownError", 0,
                               "the runtime's call_raw returned no body and no error table (%s)",
                               luaL_typename(L, 3));
            }
            failed = &call_err;
        }
    }
    what = ddbk_lock_op_next(o->op, body, body ? len : 0, failed, &nx);
    o->sent = what == DDBK_LOCK_SEND;
    switch (what) {
    case DDBK_LOCK_SEND:
        lua_pushliteral(L, "send");
        lua_pushstring(L, nx.op);
        lua_pushlstring(L, nx.body, nx.body_len);
        return 3;
    case DDBK_LOCK_SLEEP:
        lua_pushliteral(L, "sleep");
        lua_pushinteger(L, (lua_Integer)nx.sleep_ms);
        return 2;
    default:
        o->done = 1;
        lua_pushliteral(L, "done");
        return 1;
    }
}

/* op:result() -> (acquire) handle | (renew, release) true; or nil, err.
 * Once, after "done". An acquire's err carries err.holder (the holder as
 * last seen) and, with opts.with_item, err.item (the whole item as last
 * seen). */
static int l_op_result(lua_State *L)
{
    lop *o = check_op(L);
    ddbk_lock_holder holder;
    ddbk_error err;

    if (!o->done)
        return luaL_error(L, "ddbkit.lock: the operation has not finished (call next until \"done\")");
    if (!o->op)
        return luaL_error(L, "ddbkit.lock: the operation's result was already taken");
    int rc = ddbk_lock_op_result(o->op, &holder, &err);
    /* The engine's memory goes back now, not whenever the collector comes by. */
    ddbk_lock_op_free(o->op);
    o->op = NULL;
    if (rc != 0) {
        ddbk_lua_return_error(L, &err);
        if (o->kind == K_ACQUIRE) {
            if (holder.known) {
                push_holder(L, &holder);
                lua_setfield(L, -2, "holder");
            }
            if (o->lh->busy.len)
                set_err_item(L, &o->lh->busy);
            ddbk_buf_free(&o->lh->busy);
        }
        return 2;
    }
    if (o->kind == K_ACQUIRE) {
        ddbk_buf_free(&o->lh->busy);
        lua_rawgeti(L, LUA_REGISTRYINDEX, o->ref);
    } else {
        lua_pushboolean(L, 1);
    }
    return 1;
}

static int l_op_gc(lua_State *L)
{
    lop *o = check_op(L);
    /* Abandoned mid-way: an acquire's handle is left empty, a renew's or a
     * release's as it was (see ddbk_lock_op_free). */
    ddbk_lock_op_free(o->op);
    o->op = NULL;
    if (o->lh && --o->lh->ops == 0 && o->lh->orphaned) {
        ddbk_lock_free(o->lh->lk);
        o->lh->lk = NULL;
    }
    o->lh = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, o->ref);
    o->ref = LUA_NOREF;
    return 0;
}

/* handle:info() -> { owner, rvn, fence, expires_at, lease_ms, held } */
static int l_info(lua_State *L)
{
    ddbk_lock_info in;
    ddbk_lock_info_get(check_lock(L, 1), &in);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, in.owner);
    lua_setfield(L, -2, "owner");
    lua_pushstring(L, in.rvn);
    lua_setfield(L, -2, "rvn");
    lua_pushinteger(L, (lua_Integer)in.fence);
    lua_setfield(L, -2, "fence");
    lua_pushinteger(L, (lua_Integer)in.expires_at);
    lua_setfield(L, -2, "expires_at");
    lua_pushinteger(L, (lua_Integer)in.lease_ms);
    lua_setfield(L, -2, "lease_ms");
    lua_pushboolean(L, in.held);
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
    ddbk_lua_client_release(kp->client); /* after the stop wrote its stats */
    kp->client = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, kp->ref);
    kp->ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, kp->cref);
    kp->cref = LUA_NOREF;
}

/* core.lock_keep(client, handle, period_ms) -> keeper | nil, err
 * Renews the handle's lease every period_ms from a thread of its own (on a
 * clone of the client) until keeper:stop(). */
static int l_keep(lua_State *L)
{
    (void)ddbk_lua_check_client(L, 1); /* misuse raises before anything */
    ddbk_lock *lk = check_lock(L, 2);
    lua_Number period = luaL_checknumber(L, 3);
    ddbk_error err;

    /* Everything that can raise comes before the thread starts, so that a
     * memory error leaves nothing running. */
    lkeeper *kp = lua_newuserdata(L, sizeof *kp);
    memset(kp, 0, sizeof *kp);
    kp->ref = kp->cref = LUA_NOREF;
    luaL_getmetatable(L, KEEPER_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 2);
    kp->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 1);
    kp->cref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* The hold last: nothing below raises. A finalizer run by the
     * allocations above may have closed the client. */
    ddbk_lua_client *lc = ddbk_lua_client_try_hold(L, 1);
    if (!lc) {
        luaL_unref(L, LUA_REGISTRYINDEX, kp->ref);
        luaL_unref(L, LUA_REGISTRYINDEX, kp->cref);
        kp->ref = kp->cref = LUA_NOREF;
        (void)ddbk_lua_check_client(L, 1); /* raises: closed */
        return 0;
    }

    /* Out of range (or NaN) becomes 0, which the engine refuses: casting
     * it to long would be undefined. */
    long period_ms = period >= 1 && period < 1e15 ? (long)period : 0;
    ddbk_lock_keeper *k = ddbk_lock_keep(ddbk_lua_client_engine(lc), lk, period_ms, &err);
    if (!k) {
        ddbk_lua_client_release(lc);
        luaL_unref(L, LUA_REGISTRYINDEX, kp->ref);
        luaL_unref(L, LUA_REGISTRYINDEX, kp->cref);
        kp->ref = kp->cref = LUA_NOREF;
        return ddbk_lua_return_error(L, &err);
    }
    kp->k = k;
    kp->client = lc;
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
    if (lh->ops) {
        lh->orphaned = 1; /* lua_close: the last op frees it (l_op_gc) */
    } else {
        ddbk_lock_free(lh->lk);
        lh->lk = NULL;
    }
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

static const luaL_Reg op_methods[] = {
    { "next", l_op_next },
    { "result", l_op_result },
    { NULL, NULL },
};

static const luaL_Reg module_funcs[] = {
    { "lock_op", l_lock_op },
    { "lock_keep", l_keep },
    { "lock_mark_released", l_mark_released },
    { NULL, NULL },
};

void ddbk_lua_lock_open(lua_State *L, int module_idx)
{
    ddbk_lua_new_metatable(L, LOCK_MT, handle_methods, l_gc, NULL);
    ddbk_lua_new_metatable(L, KEEPER_MT, keeper_methods, l_keeper_gc, NULL);
    ddbk_lua_new_metatable(L, OP_MT, op_methods, l_op_gc, NULL);
    lua_pushvalue(L, module_idx);
    luaL_setfuncs(L, module_funcs, 0);
    lua_pop(L, 1);
}
