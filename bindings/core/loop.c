/*
 * The Lua face of the engine's event loop (ddbk_loop): core.loop_new() and
 * the loop's methods submit, submit_raw, step, fds, cancel and pending. The
 * coroutine scheduler (lua/ddbkit/scheduler.lua) is its one user: it submits
 * a task's call with the task as token, steps, and resumes each token's
 * coroutine from Lua with the completion's values. No coroutine is ever
 * resumed from here, so nothing yields across a C call (LuaJIT included).
 *
 * The engine's callback runs inside ddbk_loop_step, under curl: it only
 * copies the outcome into a C record. Lua values are built afterwards, back
 * in l_step, so a Lua memory error can never unwind through the engine, and
 * a record stays on the loop's done list until its completion is built (a
 * raise while building one delivers it at the next step instead of losing
 * it). Records are owned by the loop userdata and reused, as are the
 * request scratch buffer and the pollfd array, so nothing leaks on a raise.
 *
 * Each call in flight anchors its token and its client userdata in the
 * loop's anchor table (its user value) and holds the engine client
 * (ddbk_lua_client_try_hold): closing or collecting a client with calls in
 * flight, even before the loop at lua_close, frees nothing they use.
 */
#include <poll.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "client.h"
#include "compat.h"
#include "ddbkit.h"
#include "loop.h"

#define LOOP_MT "ddbkit.loop"

/* A spare record keeps a body buffer up to this size for the next call. */
#define KEEP_BODY_CAP ((size_t)64 << 10)

struct lloop;

typedef struct lcall {
    struct lloop *owner;
    struct lcall *next;        /* on the done list or the free list */
    struct lcall *lprev, *lnext; /* on the live list, while in flight */
    ddbk_lua_client *client;   /* held until the completion is built */
    int token_ref;             /* in the anchor table */
    int client_ref;            /* the client userdata, in the anchor table */
    int raw;                   /* from submit_raw: bodies stay JSON text */
    int failed;
    ddbk_error err;
    ddbk_buf body;             /* the final response's body, copied */
    char table[256];           /* params.TableName, for the missing-table text */
} lcall;

typedef struct lloop {
    ddbk_loop *loop;           /* NULL once freed */
    lcall *live;               /* in flight: submitted, not yet called back */
    lcall *done_head, *done_tail;
    lcall *spare;
    ddbk_buf req;              /* request JSON, reused between submits */
    struct pollfd *pfds;       /* for fds(), grown as needed */
    int npfds;
} lloop;

static lloop *check_loop(lua_State *L)
{
    lloop *ll = luaL_checkudata(L, 1, LOOP_MT);
    if (!ll->loop)
        luaL_error(L, "loop is closed");
    return ll;
}

/* The engine's callback: keeps the outcome for l_step. Never touches Lua. */
static void on_done(void *ud, const ddbk_response *resp, const ddbk_error *err)
{
    lcall *k = ud;
    lloop *ll = k->owner;

    if (k->lprev)
        k->lprev->lnext = k->lnext;
    else
        ll->live = k->lnext;
    if (k->lnext)
        k->lnext->lprev = k->lprev;
    k->lprev = k->lnext = NULL;
    k->failed = err != NULL;
    if (err)
        k->err = *err;
    ddbk_buf_reset(&k->body);
    if (resp && resp->body.len && ddbk_buf_append(&k->body, resp->body.data, resp->body.len) != 0) {
        if (!k->failed) {
            k->failed = 1;
            ddbk_error_set(&k->err, "OutOfMemory", resp->status,
                           "no memory to keep a %zu-byte response", resp->body.len);
        }
        ddbk_buf_reset(&k->body);
    }
    k->next = NULL;
    if (ll->done_tail)
        ll->done_tail->next = k;
    else
        ll->done_head = k;
    ll->done_tail = k;
}

/* A record on the spare list's head (allocated if none is spare), or NULL.
 * It stays on the spare list until taken, so a raise before then leaks
 * nothing. */
static lcall *spare_record(lloop *ll)
{
    if (!ll->spare) {
        lcall *k = calloc(1, sizeof *k);
        if (!k)
            return NULL;
        ddbk_buf_init(&k->body, SIZE_MAX / 2); /* the engine caps responses */
        ll->spare = k;
    }
    return ll->spare;
}

static void recycle(lloop *ll, lcall *k)
{
    if (k->body.cap > KEEP_BODY_CAP)
        ddbk_buf_free(&k->body);
    k->client = NULL;
    k->next = ll->spare;
    ll->spare = k;
}

/* Shared by submit and submit_raw: loop, client, op at 1..3, the body in
 * ll->req, the token at 5; table is params.TableName (copied) or "". */
static int submit(lua_State *L, lloop *ll, int raw, const char *table)
{
    const char *op = luaL_checkstring(L, 3);
    ddbk_error err;

    lcall *k = spare_record(ll);
    if (!k) {
        ddbk_error_set(&err, "OutOfMemory", 0, "no memory for a call");
        return ddbk_lua_return_error(L, &err);
    }
    ddbk_getuservalue(L, 1);
    lua_pushvalue(L, 5);
    int token_ref = luaL_ref(L, -2);
    lua_pushvalue(L, 2);
    int client_ref = luaL_ref(L, -2);
    /* The hold comes last: encoding, an __index on params or a finalizer
     * run by an allocation above may have closed the client since l_submit
     * checked it. Unreferencing allocates nothing. */
    ddbk_lua_client *held = ddbk_lua_client_try_hold(L, 2);
    if (!held) {
        luaL_unref(L, -1, token_ref);
        luaL_unref(L, -1, client_ref);
        return luaL_error(L, "client is closed");
    }
    lua_pop(L, 1);
    /* Nothing raises from here on. */
    ll->spare = k->next;
    k->owner = ll;
    k->next = NULL;
    k->token_ref = token_ref;
    k->client_ref = client_ref;
    k->raw = raw;
    k->failed = 0;
    snprintf(k->table, sizeof k->table, "%s", table);
    k->client = held;
    if (ddbk_loop_submit(ll->loop, ddbk_lua_client_engine(k->client), op, ll->req.data,
                         ll->req.len, on_done, k, &err) != 0) {
        ddbk_lua_client_release(k->client);
        ddbk_getuservalue(L, 1);
        luaL_unref(L, -1, token_ref);
        luaL_unref(L, -1, client_ref);
        lua_pop(L, 1);
        recycle(ll, k);
        return ddbk_lua_return_error(L, &err);
    }
    k->lprev = NULL;
    k->lnext = ll->live;
    if (ll->live)
        ll->live->lprev = k;
    ll->live = k;
    lua_pushboolean(L, 1);
    return 1;
}

/* loop:submit(client, op, params, token) -> true | nil, err
 * params is encoded like core.call's; a bad value returns nil, err and
 * submits nothing. token (any value but nil) comes back with the
 * completion. */
static int l_submit(lua_State *L)
{
    lloop *ll = check_loop(L);
    ddbk_lua_check_client(L, 2);
    luaL_checkstring(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_argcheck(L, !lua_isnoneornil(L, 5), 5, "token expected");
    lua_settop(L, 5);
    int n = ddbk_lua_encode_params(L, 4, &ll->req);
    if (n != 0)
        return n;
    /* Copied before it is popped: a name an __index function made has no
     * other owner. */
    char table[sizeof ((lcall *)0)->table] = "";
    lua_getfield(L, 4, "TableName");
    if (lua_type(L, -1) == LUA_TSTRING)
        snprintf(table, sizeof table, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return submit(L, ll, 0, table);
}

/* loop:submit_raw(client, op, json, token) -> true | nil, err
 * The body is sent as given; the completion's result is the response body
 * (a string), and on failure its raw field is the error body. */
static int l_submit_raw(lua_State *L)
{
    lloop *ll = check_loop(L);
    size_t len;
    ddbk_lua_check_client(L, 2);
    luaL_checkstring(L, 3);
    const char *json = luaL_checklstring(L, 4, &len);
    luaL_argcheck(L, !lua_isnoneornil(L, 5), 5, "token expected");
    lua_settop(L, 5);
    ddbk_buf_reset(&ll->req);
    if (ddbk_buf_append(&ll->req, json, len) != 0) {
        ddbk_error err;
        ddbk_error_set(&err, "RequestEntityTooLarge", 0, "a %zu-byte body is too large", len);
        return ddbk_lua_return_error(L, &err);
    }
    return submit(L, ll, 1, "");
}

/* Pushes the completion table of k: { token, result?, err?, raw? }. */
static void push_completion(lua_State *L, int anchors, lcall *k)
{
    lua_createtable(L, 0, 4);
    lua_rawgeti(L, anchors, k->token_ref);
    lua_setfield(L, -2, "token");
    if (!k->failed) {
        if (k->raw) {
            lua_pushlstring(L, k->body.data ? k->body.data : "", k->body.len);
            lua_setfield(L, -2, "result");
        } else if (ddbk_lua_push_result(L, &k->body) == 1) {
            lua_setfield(L, -2, "result");
        } else {
            lua_setfield(L, -3, "err");
            lua_pop(L, 1);
        }
        return;
    }
    if (k->raw) {
        ddbk_lua_push_error(L, &k->err);
        lua_setfield(L, -2, "err");
        if (k->body.len) {
            lua_pushlstring(L, k->body.data, k->body.len);
            lua_setfield(L, -2, "raw");
        }
        return;
    }
    ddbk_lua_missing_table(&k->err, k->table);
    ddbk_lua_push_call_error(L, &k->err, &k->body);
    lua_setfield(L, -2, "err");
}

/* Takes k off the done list (its completion is built): drops its anchors
 * and its hold on the client. */
static void finish(lua_State *L, int anchors, lloop *ll, lcall *k)
{
    ll->done_head = k->next;
    if (!ll->done_head)
        ll->done_tail = NULL;
    luaL_unref(L, anchors, k->token_ref);
    luaL_unref(L, anchors, k->client_ref);
    ddbk_lua_client_release(k->client);
    recycle(ll, k);
}

/* loop:step(timeout_ms?) -> pending, completions | nil, err
 * Waits at most timeout_ms (default 0) for I/O or a retry's timer, does
 * what is ready, and returns the number of calls still in flight and the
 * list of calls that finished, in completion order:
 * { token = t, result = r } or { token = t, err = e, raw = s? }, result and
 * err exactly as core.call returns them (raw calls: see submit_raw). When
 * the engine fails and nothing finished, nil, err. */
static int l_step(lua_State *L)
{
    lloop *ll = check_loop(L);
    lua_Number t = luaL_optnumber(L, 2, 0);
    ddbk_error err;
    /* NaN and negatives are 0; a huge wait is capped (a long must hold it). */
    long timeout = t > 0 ? (t < 86400000 ? (long)t : 86400000) : 0;
    if (ll->done_head)
        timeout = 0; /* cancelled calls' completions are waiting already */

    int pending = ddbk_loop_step(ll->loop, timeout, &err);
    if (pending < 0 && !ll->done_head)
        return ddbk_lua_return_error(L, &err);
    if (pending < 0) /* what finished is delivered; the failure shows next time */
        pending = ddbk_loop_pending(ll->loop);
    lua_settop(L, 1);
    ddbk_getuservalue(L, 1);                   /* 2: anchors */
    lua_pushinteger(L, pending);               /* 3 */
    lua_newtable(L);                           /* 4: completions */
    /* Every completion is built before any is released: a raise (out of
     * memory) half-way leaves them all on the done list for the next step. */
    int n = 0;
    for (lcall *k = ll->done_head; k; k = k->next) {
        push_completion(L, 2, k);
        lua_rawseti(L, 4, ++n);
    }
    while (ll->done_head)
        finish(L, 2, ll, ll->done_head);
    return 2;
}

/* loop:fds() -> { { fd = n, read = bool, write = bool }, ... }, timeout_ms
 * For a host's poll: wait for these (at most timeout_ms; -1: no deadline),
 * then call loop:step(0). */
static int l_fds(lua_State *L)
{
    lloop *ll = check_loop(L);
    long timeout = -1;
    int n;

    if (!ll->pfds) {
        ll->pfds = calloc(8, sizeof *ll->pfds);
        if (!ll->pfds)
            return luaL_error(L, "no memory for pollfds");
        ll->npfds = 8;
    }
    while ((n = ddbk_loop_fds(ll->loop, ll->pfds, ll->npfds, &timeout)) > ll->npfds) {
        struct pollfd *p = realloc(ll->pfds, (size_t)n * sizeof *p);
        if (!p)
            return luaL_error(L, "no memory for %d pollfds", n);
        ll->pfds = p;
        ll->npfds = n;
    }
    if (n < 0) {
        ddbk_error err;
        ddbk_error_set(&err, "UnknownError", 0, "the loop could not list its sockets");
        return ddbk_lua_return_error(L, &err);
    }
    if (ll->done_head)
        timeout = 0; /* cancelled calls' completions wait for the next step */
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, ll->pfds[i].fd);
        lua_setfield(L, -2, "fd");
        lua_pushboolean(L, (ll->pfds[i].events & POLLIN) != 0);
        lua_setfield(L, -2, "read");
        lua_pushboolean(L, (ll->pfds[i].events & POLLOUT) != 0);
        lua_setfield(L, -2, "write");
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, timeout);
    return 2;
}

/* loop:cancel(token) -> n
 * Cancels the calls in flight submitted with token (rawequal): each stops
 * now (a request on the wire may still have been carried out) and comes
 * back from the next step as a completion with err.code "Cancelled".
 * Returns how many were cancelled. */
static int l_cancel(lua_State *L)
{
    lloop *ll = check_loop(L);
    luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "token expected");
    lua_settop(L, 2);
    ddbk_getuservalue(L, 1);                   /* 3: anchors */
    int n = 0;
    for (lcall *k = ll->live, *next; k; k = next) {
        next = k->lnext; /* the cancel takes k, and only k, off the list */
        lua_rawgeti(L, 3, k->token_ref);
        int same = lua_rawequal(L, -1, 2);
        lua_pop(L, 1);
        if (same)
            n += ddbk_loop_cancel(ll->loop, k);
    }
    lua_pushinteger(L, n);
    return 1;
}

/* loop:pending() -> calls in flight (retry waits included) */
static int l_pending(lua_State *L)
{
    lua_pushinteger(L, ddbk_loop_pending(check_loop(L)->loop));
    return 1;
}

/* __gc: cancels the calls in flight (their completions are dropped) and
 * frees everything. The anchor table goes with the userdata. */
static int l_gc(lua_State *L)
{
    lloop *ll = luaL_checkudata(L, 1, LOOP_MT);
    if (ll->loop) {
        ddbk_loop_free(ll->loop); /* each call's on_done runs: all are done now */
        ll->loop = NULL;
    }
    while (ll->done_head) {
        lcall *k = ll->done_head;
        ll->done_head = k->next;
        ddbk_lua_client_release(k->client);
        ddbk_buf_free(&k->body);
        free(k);
    }
    ll->done_tail = NULL;
    while (ll->spare) {
        lcall *k = ll->spare;
        ll->spare = k->next;
        ddbk_buf_free(&k->body);
        free(k);
    }
    ddbk_buf_free(&ll->req);
    free(ll->pfds);
    ll->pfds = NULL;
    ll->npfds = 0;
    return 0;
}

static int l_tostring(lua_State *L)
{
    lloop *ll = luaL_checkudata(L, 1, LOOP_MT);
    if (ll->loop)
        lua_pushfstring(L, "ddbkit.loop(%d in flight)", ddbk_loop_pending(ll->loop));
    else
        lua_pushliteral(L, "ddbkit.loop(closed)");
    return 1;
}

/* core.loop_new() -> loop | nil, err */
static int l_loop_new(lua_State *L)
{
    ddbk_error err;
    lloop *ll = ddbk_newuserdata(L, sizeof *ll);
    memset(ll, 0, sizeof *ll);
    ddbk_buf_init(&ll->req, 0);
    luaL_getmetatable(L, LOOP_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L);
    ddbk_setuservalue(L, -2);
    ll->loop = ddbk_loop_new(&err);
    if (!ll->loop)
        return ddbk_lua_return_error(L, &err);
    return 1;
}

static const luaL_Reg loop_methods[] = {
    { "submit", l_submit },
    { "submit_raw", l_submit_raw },
    { "step", l_step },
    { "fds", l_fds },
    { "cancel", l_cancel },
    { "pending", l_pending },
    { NULL, NULL },
};

void ddbk_lua_loop_open(lua_State *L, int module_idx)
{
    ddbk_lua_new_metatable(L, LOOP_MT, loop_methods, l_gc, l_tostring);
    lua_pushcfunction(L, l_loop_new);
    lua_setfield(L, module_idx, "loop_new");
}
