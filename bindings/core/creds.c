/*
 * ddbkit.core's credential functions: what Lua needs to run the engine's
 * credential machine itself (the OpenResty runtime, whose I/O must be
 * cosockets), to install credentials a host function or another nginx
 * worker fetched, and to tell which credentials a client uses.
 *
 *   core.cred_state(cc)          -> "fresh" | "refresh" | "expired"
 *   core.cred_begin(cc)          -> fetch | false (a fetch of this client
 *                                   runs already) | nil (nothing to fetch: not
 *                                   due, a backoff, a plan that never fetches)
 *                                   | nil, err
 *   fetch:next()                 -> action table (kind = "http" | "exec" |
 *                                   "sleep" | "done" | "failed")
 *   fetch:feed_http(status, body, timed_out, what)
 *   fetch:feed_exec(code, out, what)
 *   fetch:take()                 -> { access_key_id, secret_access_key,
 *                                   session_token?, expiration? } after "done"
 *   core.cred_end(cc, fetch)     -> true | nil, err
 *   core.cred_set(cc, t, provider?) -> true | nil, err
 *   core.cred_info(cc)           -> { provider, profile?, expires_at?,
 *                                   refresh_at?, fetches, failures, last_error? }
 *   core.cred_id(cc)             -> the plan's id (no secret)
 *
 * The fetch userdata holds a reference on the client's cell, so it outlives
 * a closed client; collected before core.cred_end (its coroutine died), it
 * gives the claim back (ddbk__cell_abandon) and the next caller fetches.
 * Only fetch:take and core.cred_set see secrets; nothing here puts one in
 * an error or in cred_info.
 */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "client.h"
#include "creds.h"
#include "internal.h"

#define FETCH_MT "ddbkit.credfetch"

typedef struct lfetch {
    ddbk__cell *cell;     /* a reference; NULL once ended */
    ddbk__fetch *f;       /* NULL once ended */
    ddbk__fetched got;    /* after take: what cred_end installs */
    int taken;
    int done;             /* the machine said DONE */
} lfetch;

static ddbk__cell *cell_of(lua_State *L, int idx)
{
    ddbk_client *c = ddbk_lua_check_client(L, idx);
    if (!c) {
        luaL_error(L, "client is closed");
        __builtin_unreachable(); /* luaL_error longjmps; the analyzer cannot know */
    }
    return c->cell;
}

static lfetch *check_fetch(lua_State *L, int idx)
{
    lfetch *lf = luaL_checkudata(L, idx, FETCH_MT);
    if (!lf->f)
        luaL_error(L, "the credential fetch has ended");
    return lf;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int l_cred_state(lua_State *L)
{
    ddbk__cell *cell = cell_of(L, 1);
    switch (ddbk__cell_state(cell, ddbk__wall_ms())) {
    case DDBK__CELL_FRESH:
        lua_pushliteral(L, "fresh");
        break;
    case DDBK__CELL_REFRESH:
        lua_pushliteral(L, "refresh");
        break;
    case DDBK__CELL_EXPIRED:
        lua_pushliteral(L, "expired");
        break;
    }
    return 1;
}

static int l_cred_begin(lua_State *L)
{
    ddbk__cell *cell = cell_of(L, 1);
    ddbk__fetch *f = NULL;
    ddbk_error err;

    /* The userdata first: pushing it may raise (memory), and a claim taken
     * before would then never be given back. */
    lfetch *lf = lua_newuserdata(L, sizeof *lf);
    memset(lf, 0, sizeof *lf);
    luaL_getmetatable(L, FETCH_MT);
    lua_setmetatable(L, -2);
    int rc = ddbk__cell_begin(cell, ddbk__wall_ms(), &f, &err);
    if (rc < 0)
        return ddbk_lua_return_error(L, &err);
    if (rc == 0) {
        if (ddbk__cell_fetching(cell))
            lua_pushboolean(L, 0);
        else
            lua_pushnil(L);
        return 1;
    }
    lf->cell = ddbk__cell_ref(cell);
    lf->f = f;
    return 1;
}

/* fetch:next() -> the action as a table; the machine's strings are copied
 * (they live only until its next call). */
static int l_fetch_next(lua_State *L)
{
    lfetch *lf = check_fetch(L, 1);
    ddbk__action a;

    memset(&a, 0, sizeof a);
    ddbk__fetch_next(lf->f, ddbk__wall_ms() / 1000, &a);
    lua_createtable(L, 0, 9);
    switch (a.kind) {
    case DDBK__ACT_HTTP:
        set_str(L, "kind", "http");
        set_str(L, "method", a.method);
        set_str(L, "url", a.url);
        lua_createtable(L, 0, a.nheaders);
        for (int i = 0; i < a.nheaders; i++)
            set_str(L, a.header_name[i], a.header_value[i]);
        lua_setfield(L, -2, "headers");
        lua_pushlstring(L, a.body ? a.body : "", a.body ? a.body_len : 0);
        lua_setfield(L, -2, "body");
        set_int(L, "connect_timeout_ms", a.connect_timeout_ms);
        set_int(L, "timeout_ms", a.timeout_ms);
        set_int(L, "max_bytes", (lua_Integer)a.max_response_bytes);
        break;
    case DDBK__ACT_EXEC:
        set_str(L, "kind", "exec");
        lua_newtable(L);
        for (int i = 0; a.argv && a.argv[i]; i++) {
            lua_pushstring(L, a.argv[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "argv");
        set_int(L, "timeout_ms", a.exec_timeout_ms);
        set_int(L, "max_bytes", (lua_Integer)a.max_output_bytes);
        break;
    case DDBK__ACT_SLEEP:
        set_str(L, "kind", "sleep");
        set_int(L, "ms", a.sleep_ms);
        break;
    case DDBK__ACT_DONE:
        lf->done = 1;
        set_str(L, "kind", "done");
        break;
    case DDBK__ACT_FAILED:
        set_str(L, "kind", "failed");
        break;
    }
    return 1;
}

/* fetch:feed_http(status, body?, timed_out?, what?): status 0 when no
 * answer arrived. */
static int l_fetch_feed_http(lua_State *L)
{
    lfetch *lf = check_fetch(L, 1);
    lua_Number st = luaL_checknumber(L, 2);
    luaL_argcheck(L, st >= 0 && st < 1000, 2, "HTTP status expected (0 for none)");
    size_t len;
    const char *body = luaL_optlstring(L, 3, "", &len);
    int timed_out = lua_toboolean(L, 4);
    const char *what = luaL_optstring(L, 5, NULL);
    ddbk__fetch_feed_http(lf->f, (long)st, timed_out, what, body, len);
    return 0;
}

/* fetch:feed_exec(code, out?, what?): code as WEXITSTATUS, -1 when the
 * command was killed or could not start. */
static int l_fetch_feed_exec(lua_State *L)
{
    lfetch *lf = check_fetch(L, 1);
    lua_Integer code = luaL_checkinteger(L, 2);
    luaL_argcheck(L, code >= -1 && code <= 255, 2, "exit status expected (-1 for none)");
    size_t len;
    const char *out = luaL_optlstring(L, 3, "", &len);
    const char *what = luaL_optstring(L, 4, NULL);
    ddbk__fetch_feed_exec(lf->f, (int)code, what, out, len);
    return 0;
}

/* fetch:take() -> the credentials as a table (to share with other nginx
 * workers), kept for core.cred_end to install. Only after "done". */
static int l_fetch_take(lua_State *L)
{
    lfetch *lf = check_fetch(L, 1);
    ddbk_error err;

    if (!lf->done)
        return luaL_error(L, "fetch:take(): the fetch is not done");
    if (!lf->taken) {
        if (ddbk__fetch_result(lf->f, &lf->got, &err) != 0)
            return ddbk_lua_return_error(L, &err);
        lf->taken = 1;
    }
    lua_createtable(L, 0, 4);
    set_str(L, "access_key_id", lf->got.access_key_id);
    set_str(L, "secret_access_key", lf->got.secret_access_key);
    if (lf->got.session_token)
        set_str(L, "session_token", lf->got.session_token);
    if (lf->got.expires_at > 0)
        set_int(L, "expiration", (lua_Integer)lf->got.expires_at);
    return 1;
}

static void fetch_release(lfetch *lf)
{
    if (lf->f) {
        ddbk__cell_abandon(lf->cell, lf->f);
        lf->f = NULL;
    }
    ddbk__fetched_wipe(&lf->got);
    if (lf->cell) {
        ddbk__cell_unref(lf->cell);
        lf->cell = NULL;
    }
}

static int l_fetch_gc(lua_State *L)
{
    fetch_release(luaL_checkudata(L, 1, FETCH_MT));
    return 0;
}

/* The cell's last error as an error value ("CredentialsError" when none). */
static int return_cell_error(lua_State *L, ddbk__cell *cell)
{
    ddbk_credentials_info info;
    ddbk_error e;
    ddbk__cell_info(cell, &info);
    ddbk_error_set(&e, DDBK_ERR_CREDENTIALS, 0, "%s",
                   info.last_error[0] ? info.last_error : "the credential fetch failed");
    return ddbk_lua_return_error(L, &e);
}

/* core.cred_end(cc, fetch) -> true | nil, err: installs what the fetch
 * gave, or records its failure (the cell's backoff starts). */
static int l_cred_end(lua_State *L)
{
    ddbk__cell *cell = cell_of(L, 1);
    lfetch *lf = check_fetch(L, 2);
    ddbk_error err;
    ddbk_credentials_info before, after;

    luaL_argcheck(L, lf->cell == cell, 2, "a fetch of this client expected");
    if (lf->taken) {
        /* Installed while the claim is still held, then the claim given
         * back: nobody begins a second fetch in between. */
        int rc = ddbk__cell_set(cell, &lf->got, NULL, &err);
        fetch_release(lf);
        if (rc != 0)
            return ddbk_lua_return_error(L, &err);
        lua_pushboolean(L, 1);
        return 1;
    }
    ddbk__cell_info(cell, &before);
    ddbk__cell_end(cell, lf->f, ddbk__wall_ms());
    lf->f = NULL;
    fetch_release(lf);
    ddbk__cell_info(cell, &after);
    if (after.fetches == before.fetches)
        return return_cell_error(L, cell);
    lua_pushboolean(L, 1);
    return 1;
}

/* The string field k of the table at t, checked: a string or (optional)
 * nil. Raises naming the field: the caller validated the table already,
 * this is the binding's own guard. The pointer lives while t holds it. */
static const char *field(lua_State *L, int t, const char *k, int optional)
{
    lua_getfield(L, t, k);
    int ty = lua_type(L, -1);
    const char *s = ty == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the table keeps the string alive */
    if (!s && !(optional && ty == LUA_TNIL))
        luaL_error(L, "credentials.%s must be a string", k);
    return s;
}

/* core.cred_set(cc, { access_key_id, secret_access_key, session_token?,
 * expiration? }, provider?) -> true | nil, err ("InvalidArgument",
 * "CredentialsError" for credentials that have expired already). */
static int l_cred_set(lua_State *L)
{
    ddbk__cell *cell = cell_of(L, 1);
    ddbk__fetched f;
    ddbk_error err;

    luaL_checktype(L, 2, LUA_TTABLE);
    const char *provider = luaL_optstring(L, 3, NULL);
    memset(&f, 0, sizeof f);
    /* Borrowed pointers: ddbk__cell_set copies them. */
    f.access_key_id = (char *)field(L, 2, "access_key_id", 0);
    f.secret_access_key = (char *)field(L, 2, "secret_access_key", 0);
    f.session_token = (char *)field(L, 2, "session_token", 1);
    lua_getfield(L, 2, "expiration");
    if (!lua_isnil(L, -1)) {
        lua_Number e = lua_tonumber(L, -1);
        if (!lua_isnumber(L, -1) || !(e >= 0 && e < 1e11))
            return luaL_error(L, "credentials.expiration must be epoch seconds");
        f.expires_at = (int64_t)e;
    }
    lua_pop(L, 1);
    if (ddbk__cell_set(cell, &f, provider, &err) != 0)
        return ddbk_lua_return_error(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.cred_info(cc) -> what client:credentials() shows; never a secret. */
static int l_cred_info(lua_State *L)
{
    ddbk_credentials_info info;
    ddbk__cell_info(cell_of(L, 1), &info);
    lua_createtable(L, 0, 7);
    set_str(L, "provider", info.provider);
    if (info.profile[0])
        set_str(L, "profile", info.profile);
    if (info.expires_at > 0)
        set_int(L, "expires_at", (lua_Integer)info.expires_at);
    if (info.refresh_at > 0)
        set_int(L, "refresh_at", (lua_Integer)info.refresh_at);
    set_int(L, "fetches", (lua_Integer)info.fetches);
    set_int(L, "failures", (lua_Integer)info.failures);
    if (info.last_error[0])
        set_str(L, "last_error", info.last_error);
    return 1;
}

static int l_cred_id(lua_State *L)
{
    lua_pushstring(L, ddbk__cell_id(cell_of(L, 1)));
    return 1;
}

static const luaL_Reg fetch_methods[] = {
    { "next", l_fetch_next },
    { "feed_http", l_fetch_feed_http },
    { "feed_exec", l_fetch_feed_exec },
    { "take", l_fetch_take },
    { NULL, NULL },
};

static const luaL_Reg funcs[] = {
    { "cred_state", l_cred_state },
    { "cred_begin", l_cred_begin },
    { "cred_end", l_cred_end },
    { "cred_set", l_cred_set },
    { "cred_info", l_cred_info },
    { "cred_id", l_cred_id },
    { NULL, NULL },
};

void ddbk_lua_creds_open(lua_State *L, int module)
{
    ddbk_lua_new_metatable(L, FETCH_MT, fetch_methods, l_fetch_gc, NULL);
    lua_pushvalue(L, module);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
