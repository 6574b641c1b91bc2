/*
 * ddbkit.core — the engine's Lua face. A client userdata owns the engine
 * client and the scratch buffers of its requests and responses, so a Lua
 * error raised mid-call can never leak them (they are freed by __gc).
 *
 * Misuse (wrong argument types) raises; failures of the world return
 * nil, err where err is a table {code, message, status, retryable,
 * ambiguous?, request_id, item?, cancellation_reasons?} whose tostring is
 * "code: message".
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>
#include <sys/random.h>

#include "client.h"
#include "compat.h"
#include "ddbkit.h"
#include "jsparse.h"
#include "lock.h"
#include "loop.h"
#include "marshal.h"
#include "opts.h"

#define CLIENT_MT "ddbkit.client"
#define ERROR_MT "ddbkit.error"
#define SCRATCH_MT "ddbkit.scratch"
#define PAIR_MT "ddbkit.scratchpair"

/* A call's scratch: the request JSON and the response. */
typedef struct scratch {
    ddbk_buf req;
    ddbk_response resp;
} scratch;

/* The engine client stays until the userdata is closed (or collected) and
 * no call in flight holds it (ddbk_lua_client_try_hold). */
struct ddbk_lua_client {
    ddbk_client *c;        /* NULL once freed */
    int closed;            /* closed by Lua: every use raises */
    int holds;             /* calls in flight on an event loop */
    /* Reused between calls; freed by __gc only, never by close: a finalizer
     * may close the client while its own call is still decoding resp. */
    scratch s;
    int busy;              /* a call is using s (see take_scratch) */
    uintptr_t owner;       /* that call's frame address */
};
typedef struct ddbk_lua_client lclient;

static const char MISSING_TABLE_FMT[] =
    "DynamoDB table \"%s\" was not found. Create the table using your "
    "infrastructure before using DynamoDB stores.";

/* ------------------------------------------------------------- helpers */

static lclient *check_client_at(lua_State *L, int idx)
{
    lclient *lc = luaL_checkudata(L, idx, CLIENT_MT);
    if (lc->closed)
        luaL_error(L, "client is closed");
    return lc;
}

static lclient *check_client(lua_State *L)
{
    return check_client_at(L, 1);
}

/* The engine client, checked again right before a call uses it: anything
 * that may run Lua code since check_client (a finalizer run by an
 * allocation, an __index function, a number converted to a string) may
 * have closed the client. Raises "client is closed" then. */
static ddbk_client *engine_of(lua_State *L, lclient *lc)
{
    if (lc->closed || !lc->c)
        luaL_error(L, "client is closed");
    return lc->c;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* Pushes an error value built from e (and returns 2 with nil below it when
 * used as `return push_error(...)`). */
static void push_error_table(lua_State *L, const ddbk_error *e)
{
    lua_createtable(L, 0, 8);
    set_str(L, "code", e->code);
    set_str(L, "message", e->message);
    set_int(L, "status", e->status);
    lua_pushboolean(L, e->retryable);
    lua_setfield(L, -2, "retryable");
    if (e->ambiguous) { /* a request was sent and its answer lost */
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "ambiguous");
    }
    if (e->request_id[0])
        set_str(L, "request_id", e->request_id);
    luaL_getmetatable(L, ERROR_MT);
    lua_setmetatable(L, -2);
}

void ddbk_lua_push_error(lua_State *L, const ddbk_error *e)
{
    push_error_table(L, e);
}

ddbk_client *ddbk_lua_check_client(lua_State *L, int idx)
{
    return check_client_at(L, idx)->c;
}

ddbk_lua_client *ddbk_lua_client_try_hold(lua_State *L, int idx)
{
    lclient *lc = luaL_checkudata(L, idx, CLIENT_MT);
    if (lc->closed || !lc->c)
        return NULL;
    lc->holds++;
    return lc;
}

ddbk_client *ddbk_lua_client_engine(ddbk_lua_client *lc)
{
    return lc->c;
}

void ddbk_lua_client_release(ddbk_lua_client *lc)
{
    if (--lc->holds == 0 && lc->closed && lc->c) {
        ddbk_client_free(lc->c);
        lc->c = NULL;
    }
}

int ddbk_lua_return_error(lua_State *L, const ddbk_error *e)
{
    lua_pushnil(L);
    push_error_table(L, e);
    return 2;
}

void ddbk_lua_new_metatable(lua_State *L, const char *name, const luaL_Reg *methods,
                            lua_CFunction gc, lua_CFunction tostring)
{
    int n = 0;
    while (methods[n].name)
        n++;
    luaL_newmetatable(L, name);
    lua_createtable(L, 0, n);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    if (tostring) {
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}

static int return_simple_error(lua_State *L, const char *code, const char *msg)
{
    ddbk_error e;
    ddbk_error_set(&e, code, 0, "%s", msg);
    return ddbk_lua_return_error(L, &e);
}

/* The extra fields DynamoDB sends with some errors: the old item of a failed
 * condition (ReturnValuesOnConditionCheckFailure = ALL_OLD) and the reasons
 * of a cancelled transaction. Expects the error table on top. */
static void add_error_details(lua_State *L, const ddbk_buf *body)
{
    char msg[256];
    if (body->len == 0)
        return;
    if (ddbk_lua_decode_response(L, body->data, body->len, msg, sizeof msg) != 0)
        return;
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "Item");
        lua_setfield(L, -3, "item");
        lua_getfield(L, -1, "CancellationReasons");
        lua_setfield(L, -3, "cancellation_reasons");
    }
    lua_pop(L, 1);
}

void ddbk_lua_missing_table(ddbk_error *e, const char *table)
{
    if (table && table[0] && strcmp(e->code, "ResourceNotFoundException") == 0)
        snprintf(e->message, sizeof e->message, MISSING_TABLE_FMT, table);
}

/* Replaces DynamoDB's message for a missing table with the exact text the
 * Node stores give, so both kinds of service log the same line. */
static void missing_table_message(lua_State *L, int params, ddbk_error *e)
{
    lua_getfield(L, params, "TableName");
    if (lua_type(L, -1) == LUA_TSTRING)
        ddbk_lua_missing_table(e, lua_tostring(L, -1));
    lua_pop(L, 1);
}

int ddbk_lua_encode_params(lua_State *L, int idx, ddbk_buf *out)
{
    char msg[320];
    ddbk_buf_reset(out);
    if (ddbk_lua_encode_request(L, idx, out, msg, sizeof msg) != 0) {
        ddbk_error e;
        ddbk_error_set(&e, "ValidationException", 0, "%s", msg);
        return ddbk_lua_return_error(L, &e);
    }
    return 0;
}

/* The scratch of a call on lc, made from the frame at address here: the
 * client's own, marked busy until give_back; or, when a call on the same
 * client is using it (this call runs from a finalizer or an __index inside
 * that one, deeper on the C stack), a pair owned by a new userdata pushed
 * on the stack, so that neither call writes the buffers the other reads.
 * A call finding the client busy at a frame not below the owner's knows
 * that call was unwound by an error (it never gave the scratch back). */
static scratch *take_scratch(lua_State *L, lclient *lc, uintptr_t here)
{
    if (lc->busy && here >= lc->owner)
        lc->busy = 0;
    if (!lc->busy) {
        lc->busy = 1;
        lc->owner = here;
        return &lc->s;
    }
    scratch *s = lua_newuserdata(L, sizeof *s);
    ddbk_buf_init(&s->req, 0);
    ddbk_response_init(&s->resp);
    luaL_getmetatable(L, PAIR_MT);
    lua_setmetatable(L, -2);
    return s;
}

static void give_back(lclient *lc, const scratch *s)
{
    if (s == &lc->s)
        lc->busy = 0;
}

static int pair_gc(lua_State *L)
{
    scratch *s = luaL_checkudata(L, 1, PAIR_MT);
    ddbk_buf_free(&s->req);
    ddbk_response_free(&s->resp);
    return 0;
}

#define HERE() ((uintptr_t)__builtin_frame_address(0))

int ddbk_lua_push_result(lua_State *L, const ddbk_buf *body)
{
    char msg[256];
    if (ddbk_lua_decode_result(L, body->len ? body->data : "{}",
                               body->len ? body->len : 2, msg, sizeof msg) != 0)
        return return_simple_error(L, "MalformedResponse", msg);
    return 1;
}

static int decode_result(lua_State *L, const ddbk_buf *body)
{
    return ddbk_lua_push_result(L, body);
}

void ddbk_lua_push_call_error(lua_State *L, const ddbk_error *e, const ddbk_buf *body)
{
    push_error_table(L, e);
    add_error_details(L, body);
}

/* ------------------------------------------------------------- methods */

/* Pushes the option k of the table at t and leaves it on the stack: the
 * pointer returned (NULL when it is not a string or a number) is valid only
 * while the value stays there, since a number is converted in place and a
 * value an __index function made has no other owner. */
static const char *opt_string(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    return lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
}

/* The upper bound of the millisecond and count options: a day and more of
 * waiting, and what an int holds. */
#define OPT_MAX INT_MAX
/* max_response_bytes: 4 GiB, far above any DynamoDB answer (16 MB). */
#define OPT_MAX_RESPONSE ((long)1 << 32)

/* core.new_client(opts): the Lua wrapper has already checked every option's
 * type; this checks the numbers' range and copies them. The strings stay on
 * the stack until the engine has copied them (ddbk_client_new). */
static int l_new_client(lua_State *L)
{
    ddbk_config cfg;
    ddbk_error err;
    long v;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_checkstack(L, 16, "new_client");
    ddbk_config_init(&cfg);
    ddbk_lua_opt_number(L, 1, "client", "timeout_ms", 1, OPT_MAX, 0, &cfg.timeout_ms);
    ddbk_lua_opt_number(L, 1, "client", "connect_timeout_ms", 1, OPT_MAX, 0, &cfg.connect_timeout_ms);
    v = cfg.max_attempts;
    ddbk_lua_opt_number(L, 1, "client", "max_attempts", 1, OPT_MAX, 1, &v);
    cfg.max_attempts = (int)v;
    ddbk_lua_opt_number(L, 1, "client", "base_delay_ms", 0, OPT_MAX, 0, &cfg.base_delay_ms);
    ddbk_lua_opt_number(L, 1, "client", "max_backoff_ms", 0, OPT_MAX, 0, &cfg.max_backoff_ms);
    v = cfg.retry_quota;
    ddbk_lua_opt_number(L, 1, "client", "retry_quota", 0, OPT_MAX, 1, &v);
    cfg.retry_quota = (int)v;
    v = (long)cfg.max_response_bytes;
    ddbk_lua_opt_number(L, 1, "client", "max_response_bytes", 1, OPT_MAX_RESPONSE, 1, &v);
    cfg.max_response_bytes = (size_t)v;
    lua_getfield(L, 1, "verify_tls");
    if (!lua_isnil(L, -1))
        cfg.verify_tls = lua_toboolean(L, -1);
    lua_pop(L, 1);

    /* From here the option values stay on the stack (slots 2..12). */
    cfg.region = opt_string(L, 1, "region");
    cfg.endpoint = opt_string(L, 1, "endpoint");
    cfg.profile = opt_string(L, 1, "profile");
    cfg.ca_file = opt_string(L, 1, "ca_file");
    lua_getfield(L, 1, "use_fips_endpoint");
    if (!lua_isnil(L, -1))
        cfg.use_fips = lua_toboolean(L, -1);
    lua_getfield(L, 1, "use_dualstack_endpoint");
    if (!lua_isnil(L, -1))
        cfg.use_dualstack = lua_toboolean(L, -1);
    lua_getfield(L, 1, "credentials");
    /* A function: the host fetches (ddbkit.credentials calls it and sets
     * what it gives with core.cred_set); the engine runs no chain. */
    if (lua_isfunction(L, -1))
        cfg.credentials_from_host = 1;
    if (lua_istable(L, -1)) {
        int ct = lua_gettop(L);
        cfg.access_key_id = opt_string(L, ct, "access_key_id");
        cfg.secret_access_key = opt_string(L, ct, "secret_access_key");
        cfg.session_token = opt_string(L, ct, "session_token");
    }

    lclient *lc = lua_newuserdata(L, sizeof *lc);
    memset(lc, 0, sizeof *lc);
    ddbk_buf_init(&lc->s.req, 0);
    ddbk_response_init(&lc->s.resp);
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    lc->c = ddbk_client_new(&cfg, &err);
    if (!lc->c) {
        lc->closed = 1;
        return ddbk_lua_return_error(L, &err);
    }
    return 1;
}

/* client:call(op, params) -> result | nil, err. Blocking; retries inside. */
static int l_call(lua_State *L)
{
    lclient *lc = check_client(L);
    const char *op = luaL_checkstring(L, 2);
    ddbk_error err;
    int n;

    luaL_checktype(L, 3, LUA_TTABLE);
    scratch *s = take_scratch(L, lc, HERE());
    if ((n = ddbk_lua_encode_params(L, 3, &s->req)) != 0) {
        give_back(lc, s);
        return n;
    }
    if (ddbk_call(engine_of(L, lc), op, s->req.data, s->req.len, &s->resp, &err) != 0) {
        missing_table_message(L, 3, &err);
        lua_pushnil(L);
        ddbk_lua_push_call_error(L, &err, &s->resp.body);
        n = 2;
    } else {
        n = decode_result(L, &s->resp.body);
    }
    give_back(lc, s);
    return n;
}

/* core.call_raw(client, op, json) -> body | nil, err, err_body: ddbk_call
 * with a JSON body sent as is and the response body returned as is, for
 * callers that write and read DynamoDB JSON themselves (the lock machine).
 * err is core.call's error table without what decoding the body adds
 * (item, cancellation_reasons, the compat missing-table message); err_body
 * is the error response's body, nil when no response arrived. */
static int l_call_raw(lua_State *L)
{
    lclient *lc = check_client(L);
    const char *op = luaL_checkstring(L, 2);
    size_t len;
    const char *body = luaL_checklstring(L, 3, &len);
    ddbk_error err;

    lua_settop(L, 3);
    scratch *s = take_scratch(L, lc, HERE());
    const ddbk_buf *rb = &s->resp.body;
    if (ddbk_call(engine_of(L, lc), op, body, len, &s->resp, &err) != 0) {
        lua_pushnil(L);
        ddbk_lua_push_error(L, &err);
        /* Only an error response's body: a truncated success body
         * (ResponseTooLarge) is not one. */
        if (err.status != 0 && rb->len)
            lua_pushlstring(L, rb->data, rb->len);
        else
            lua_pushnil(L);
        give_back(lc, s);
        return 3;
    }
    lua_pushlstring(L, rb->len ? rb->data : "", rb->len);
    give_back(lc, s);
    return 1;
}

/* client:prepare(op, params, time_s?) -> {method, url, headers, body}
 * params is the request as a Lua table, or its JSON text as is (what a
 * runtime's call_raw sends for the lock machine). */
static int l_prepare(lua_State *L)
{
    lclient *lc = check_client(L);
    const char *op = luaL_checkstring(L, 2);
    lua_Number t = luaL_optnumber(L, 4, 0);
    ddbk_request req;
    /* a signing time in epoch seconds: casting NaN or inf would be undefined */
    luaL_argcheck(L, t >= 0 && t < 1e12, 4, "time in seconds since the epoch expected");
    ddbk_error err;
    const char *body;
    size_t len;
    int n;

    scratch *s = NULL;
    if (lua_type(L, 3) == LUA_TSTRING) {
        body = lua_tolstring(L, 3, &len);
    } else {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_settop(L, 4);
        s = take_scratch(L, lc, HERE());
        if ((n = ddbk_lua_encode_params(L, 3, &s->req)) != 0) {
            give_back(lc, s);
            return n;
        }
        body = s->req.data;
        len = s->req.len;
    }
    int rc = ddbk_prepare(engine_of(L, lc), op, body, len, (int64_t)t, &req, &err);
    /* req.body borrows the request scratch: copied first, before anything
     * allocates (and may run a finalizer that uses this client again) */
    if (rc == 0)
        lua_pushlstring(L, req.body, req.body_len);
    if (s)
        give_back(lc, s);
    if (rc != 0)
        return ddbk_lua_return_error(L, &err);
    lua_createtable(L, 0, 5);
    lua_insert(L, -2);
    lua_setfield(L, -2, "body");
    set_str(L, "method", req.method);
    set_str(L, "url", req.url);
    lua_createtable(L, 0, req.nheaders);
    for (int i = 0; i < req.nheaders; i++)
        set_str(L, req.headers[i].name, req.headers[i].value);
    lua_setfield(L, -2, "headers");
    return 1;
}

/* client:parse(status, body, request_id?, params?) -> result | nil, err.
 * For hosts that send prepared requests themselves. */
static int l_parse(lua_State *L)
{
    lclient *lc = check_client(L);
    lua_Number st = luaL_checknumber(L, 2);
    /* casting NaN or inf to long would be undefined */
    luaL_argcheck(L, st >= 0 && st < 1000, 2, "HTTP status expected");
    long status = (long)st;
    size_t len;
    const char *body = luaL_optlstring(L, 3, "", &len);
    const char *rid = luaL_optstring(L, 4, NULL);
    ddbk_error err;
    int n;

    lua_settop(L, 5);
    scratch *s = take_scratch(L, lc, HERE());
    ddbk_buf_reset(&s->resp.body);
    if (ddbk_buf_append(&s->resp.body, body, len) != 0) {
        give_back(lc, s);
        return return_simple_error(L, "ResponseTooLarge", "response body too large");
    }
    if (ddbk_parse(status, rid, body, len, &err) != 0) {
        if (lua_istable(L, 5))
            missing_table_message(L, 5, &err);
        lua_pushnil(L);
        ddbk_lua_push_call_error(L, &err, &s->resp.body);
        n = 2;
    } else {
        n = decode_result(L, &s->resp.body);
    }
    give_back(lc, s);
    return n;
}

/* client:retry_success(retried, last_was_timeout): a call that succeeded
 * gives back to the retry quota what standard mode says (for hosts that run
 * the retry loop themselves: OpenResty). */
static int l_retry_success(lua_State *L)
{
    lclient *lc = check_client(L);
    ddbk_retry_success(lc->c, lua_toboolean(L, 2), lua_toboolean(L, 3));
    return 0;
}

/* client:retry_delay(err, attempt) -> ms | nil: the standard-mode decision
 * (takes from the retry quota when it says retry). */
static int l_retry_delay(lua_State *L)
{
    lclient *lc = check_client(L);
    ddbk_error e;

    luaL_checktype(L, 2, LUA_TTABLE);
    int attempt = (int)luaL_checkinteger(L, 3);
    ddbk_error_clear(&e);
    lua_getfield(L, 2, "code");
    snprintf(e.code, sizeof e.code, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_getfield(L, 2, "retryable");
    e.retryable = lua_toboolean(L, -1);
    e.timeout = strcmp(e.code, "Timeout") == 0;
    lua_pop(L, 2);
    /* err's fields may have run Lua code (__index) that closed the client */
    long d = ddbk_retry_decide(engine_of(L, lc), &e, attempt, ddbk_random());
    if (d < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, d);
    return 1;
}

static int l_stats(lua_State *L)
{
    lclient *lc = check_client(L);
    ddbk_stats s;

    ddbk_stats_get(lc->c, &s);
    lua_createtable(L, 0, 12);
    set_int(L, "requests", (lua_Integer)s.requests);
    set_int(L, "retries", (lua_Integer)s.retries);
    set_int(L, "errors", (lua_Integer)s.errors);
    set_int(L, "bytes_out", (lua_Integer)s.bytes_out);
    set_int(L, "bytes_in", (lua_Integer)s.bytes_in);
    set_int(L, "retry_delay_ms_total", (lua_Integer)s.retry_delay_ms_total);
    set_int(L, "quota_exhausted", (lua_Integer)s.quota_exhausted);

    lua_createtable(L, 0, s.nops);
    for (int i = 0; i < s.nops; i++) {
        lua_createtable(L, 0, 4);
        set_int(L, "calls", (lua_Integer)s.ops[i].calls);
        set_int(L, "requests", (lua_Integer)s.ops[i].requests);
        set_int(L, "retries", (lua_Integer)s.ops[i].retries);
        set_int(L, "errors", (lua_Integer)s.ops[i].errors);
        lua_setfield(L, -2, s.ops[i].op);
    }
    lua_setfield(L, -2, "operations");

    lua_createtable(L, 0, s.ncodes);
    for (int i = 0; i < s.ncodes; i++)
        set_int(L, s.codes[i].code, (lua_Integer)s.codes[i].count);
    lua_setfield(L, -2, "error_codes");

    lua_createtable(L, 0, 7);
    set_int(L, "count", (lua_Integer)s.latency_count);
    set_num(L, "min", s.latency_min_us);
    set_num(L, "max", s.latency_max_us);
    set_num(L, "mean", s.latency_mean_us);
    set_num(L, "p50", s.latency_p50_us);
    set_num(L, "p90", s.latency_p90_us);
    set_num(L, "p99", s.latency_p99_us);
    lua_setfield(L, -2, "latency_us");
    return 1;
}

static int l_reset_stats(lua_State *L)
{
    ddbk_stats_reset(check_client(L)->c);
    return 0;
}

/* client:record(op, out_bytes, in_bytes, latency_us) and
 * client:record_call(op, retries, err?): stats for hosts doing their own I/O. */
static int l_record(lua_State *L)
{
    lclient *lc = check_client(L);
    const char *op = luaL_checkstring(L, 2);
    size_t out = (size_t)luaL_checkinteger(L, 3);
    size_t in = (size_t)luaL_checkinteger(L, 4);
    lua_Number us = luaL_checknumber(L, 5);
    ddbk_stats_record_attempt(engine_of(L, lc), op, out, in, us);
    return 0;
}

static int l_record_call(lua_State *L)
{
    lclient *lc = check_client(L);
    const char *op = luaL_checkstring(L, 2);
    int retries = (int)luaL_checkinteger(L, 3);
    ddbk_error e;
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "code");
        ddbk_error_set(&e, lua_isstring(L, -1) ? lua_tostring(L, -1) : "UnknownError", 0, "-");
        lua_pop(L, 1);
    }
    ddbk_stats_record_call(engine_of(L, lc), op, retries, lua_istable(L, 4) ? &e : NULL);
    return 0;
}

static int l_region(lua_State *L)
{
    lua_pushstring(L, ddbk_client_region(check_client(L)->c));
    return 1;
}

static int l_endpoint(lua_State *L)
{
    lua_pushstring(L, ddbk_client_endpoint(check_client(L)->c));
    return 1;
}

/* client:close(): every later use raises. The engine client (and its
 * connections) goes now, or with the last call in flight on an event loop.
 * The scratch buffers stay until __gc: close may run from a finalizer in
 * the middle of a call on this client that is still decoding them. The
 * engine client is no longer used by then (see engine_of). */
static int l_close(lua_State *L)
{
    lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    lc->closed = 1;
    if (lc->c && lc->holds == 0) {
        ddbk_client_free(lc->c);
        lc->c = NULL;
    }
    return 0;
}

/* __gc: nothing can be using the buffers any more. */
static int l_client_gc(lua_State *L)
{
    lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    l_close(L);
    ddbk_buf_free(&lc->s.req);
    ddbk_response_free(&lc->s.resp);
    return 0;
}

static int l_client_tostring(lua_State *L)
{
    lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    if (!lc->closed)
        lua_pushfstring(L, "ddbkit.client(%s)", ddbk_client_endpoint(lc->c));
    else
        lua_pushliteral(L, "ddbkit.client(closed)");
    return 1;
}

/* ------------------------------------------------- module-level functions */

/* A buffer owned by a userdata (on the stack top), so that a memory error
 * raised while it holds memory frees it in __gc instead of leaking it. */
static ddbk_buf *push_scratch(lua_State *L)
{
    ddbk_buf *b = lua_newuserdata(L, sizeof *b);
    ddbk_buf_init(b, 0);
    luaL_getmetatable(L, SCRATCH_MT);
    lua_setmetatable(L, -2);
    return b;
}

static int scratch_gc(lua_State *L)
{
    ddbk_buf_free(luaL_checkudata(L, 1, SCRATCH_MT));
    return 0;
}

/* core.encode(params) -> json | nil, msg: a test and debugging entry point. */
static int l_encode(lua_State *L)
{
    char msg[320];

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    ddbk_buf *b = push_scratch(L);
    if (ddbk_lua_encode_request(L, 1, b, msg, sizeof msg) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, msg);
        return 2;
    }
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    ddbk_buf_free(b); /* now rather than at the next collection */
    return 1;
}

static int l_decode(lua_State *L)
{
    char msg[256];
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (ddbk_lua_decode_response(L, s, len, msg, sizeof msg) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, msg);
        return 2;
    }
    return 1;
}

static int l_now_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000 + (lua_Number)(ts.tv_nsec / 1000000));
    return 1;
}

static int l_mono_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000 + (lua_Number)ts.tv_nsec / 1e6);
    return 1;
}

static int l_sleep_ms(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    /* casting NaN or inf to time_t would be undefined */
    luaL_argcheck(L, ms == ms && ms < 1e15, 1, "finite milliseconds expected");
    if (ms <= 0)
        return 0;
    struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (lua_Number)(time_t)(ms / 1000) * 1000) * 1e6) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

/* core.sha256_hex(s): request hashing (ddbkit.hash) and idempotency keys. */
static int l_sha256_hex(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[65];
    static const char digits[] = "0123456789abcdef";
    if (!EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return luaL_error(L, "sha256: libcrypto failed");
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    lua_pushlstring(L, hex, 64);
    return 1;
}

/* core.uuid(): a random (version 4) UUID from the kernel's generator, for
 * job ids and log item keys that many processes mint at once. */
static int l_uuid(lua_State *L)
{
    unsigned char r[16];
    char out[37];
    static const char digits[] = "0123456789abcdef";
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return luaL_error(L, "uuid: no randomness available");
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    for (int i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = digits[r[i] >> 4];
        out[o++] = digits[r[i] & 15];
    }
    lua_pushlstring(L, out, 36);
    return 1;
}

static int l_error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "code");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s: %s", luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, ""));
    return 1;
}

static const luaL_Reg client_methods[] = {
    { "call", l_call },
    { "prepare", l_prepare },
    { "parse", l_parse },
    { "retry_delay", l_retry_delay },
    { "retry_success", l_retry_success },
    { "stats", l_stats },
    { "reset_stats", l_reset_stats },
    { "record", l_record },
    { "record_call", l_record_call },
    { "region", l_region },
    { "endpoint", l_endpoint },
    { "close", l_close },
    { NULL, NULL },
};

static const luaL_Reg module_funcs[] = {
    { "new_client", l_new_client },
    /* core.call(client, op, params): the method as a plain function, so the
     * blocking runtime's send is this C function itself, one frame fewer on
     * every request. */
    { "call", l_call },
    { "call_raw", l_call_raw },
    { "encode", l_encode },
    { "decode", l_decode },
    { "now_ms", l_now_ms },
    { "mono_ms", l_mono_ms },
    { "sleep_ms", l_sleep_ms },
    { "sha256_hex", l_sha256_hex },
    { "uuid", l_uuid },
    { NULL, NULL },
};

/* The one exported symbol (the rest is built with -fvisibility=hidden). */
__attribute__((visibility("default"))) int luaopen_ddbkit_core(lua_State *L);
int luaopen_ddbkit_core(lua_State *L)
{
    ddbk_lua_new_metatable(L, CLIENT_MT, client_methods, l_client_gc, l_client_tostring);

    luaL_newmetatable(L, ERROR_MT);
    lua_pushcfunction(L, l_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, SCRATCH_MT);
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newmetatable(L, PAIR_MT);
    lua_pushcfunction(L, pair_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_createtable(L, 0, 24);
    luaL_setfuncs(L, module_funcs, 0);
    luaL_getmetatable(L, ERROR_MT);
    lua_setfield(L, -2, "error_mt");
    set_str(L, "version", DDBK_VERSION);
    ddbk_lua_values_open(L, lua_gettop(L));
    ddbk_lua_lock_open(L, lua_gettop(L));
    ddbk_lua_loop_open(L, lua_gettop(L));
    ddbk_lua_creds_open(L, lua_gettop(L));
    ddbk_lua_jsparse_open(L, lua_gettop(L));
    return 1;
}
