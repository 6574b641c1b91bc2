/*
 * The `ddbkit` command: Lua 5.4 with ddbkit.core and ddbkit.lineedit built
 * in, running require("ddbkit.cli").main(args). Everything a user sees is
 * Lua (lua/ddbkit/cli.lua); this file only sets the stage:
 *
 *   package.preload   ddbkit.core, ddbkit.lineedit (linked in, no .so)
 *   package.loaded["ddbkit.cli.env"] = { exe, version, share_dir, lua_dir }
 *   package.path      LUA_PATH_5_4 / LUA_PATH if set, then ddbkit's Lua
 *                     files (the source tree's when run from one, else the
 *                     installed ones), then Lua's default
 *
 * Exit status: what main returns (nil: 0). If it raises: "ddbkit: <msg>"
 * on stderr (with a traceback when DDBKIT_DEBUG=1) and 1.
 */
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "ddbkit.h"
#include "lineedit.h"

/* Both compiled in by the Makefile from PREFIX. */
#ifndef DDBKIT_SHARE_DIR
#define DDBKIT_SHARE_DIR "/usr/local/share/ddbkit"
#endif
#ifndef DDBKIT_LUA_DIR
#define DDBKIT_LUA_DIR "/usr/local/share/lua/5.4"
#endif

int luaopen_ddbkit_core(lua_State *L);

static int debug_traces;              /* DDBKIT_DEBUG=1 */

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The absolute path of this executable into buf: /proc/self/exe, else
 * argv[0] resolved (enough when run by a path, as from a checkout). */
static void find_exe(const char *argv0, char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n > 0) {
        buf[n] = '\0';
        return;
    }
    char resolved[PATH_MAX];
    if (argv0 != NULL && strchr(argv0, '/') != NULL && realpath(argv0, resolved) != NULL)
        snprintf(buf, size, "%s", resolved);
    else
        snprintf(buf, size, "%s", argv0 != NULL ? argv0 : "ddbkit");
}

/* Everything but the last path component ("/a/b/c" -> "/a/b"). */
static void dir_of(const char *path, char *buf, size_t size)
{
    snprintf(buf, size, "%s", path);
    char *slash = strrchr(buf, '/');
    if (slash == NULL)
        snprintf(buf, size, ".");
    else if (slash == buf)
        buf[1] = '\0';               /* "/x" -> "/" */
    else
        *slash = '\0';
}

/* Message handler: the error as a string, plus a traceback when asked. */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    if (debug_traces)
        luaL_traceback(L, L, msg, 1);
    else
        lua_pushstring(L, msg);
    return 1;
}

/* package.path: the environment's (already in package.path, set by
 * luaL_openlibs as lua.c would) before ours; else ours before the default. */
static void set_path(lua_State *L, const char *ours)
{
    int from_env = getenv("LUA_PATH_5_4") != NULL || getenv("LUA_PATH") != NULL;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *cur = lua_tostring(L, -1);
    if (from_env)
        lua_pushfstring(L, "%s;%s", cur, ours);
    else
        lua_pushfstring(L, "%s;%s", ours, cur);
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

static void set_preload(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* Runs protected: sets the stage and calls cli.main; leaves the exit
 * status on the stack. */
static int pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = lua_touserdata(L, 2);

    luaL_openlibs(L);
    set_preload(L, "ddbkit.core", luaopen_ddbkit_core);
    set_preload(L, "ddbkit.lineedit", luaopen_ddbkit_lineedit);

    char exe[PATH_MAX], bindir[PATH_MAX], root[PATH_MAX], probe[PATH_MAX + 32];
    find_exe(argv[0], exe, sizeof exe);
    dir_of(exe, bindir, sizeof bindir);
    dir_of(bindir, root, sizeof root);
    /* build/ddbkit in a checkout runs the checkout's Lua files. */
    snprintf(probe, sizeof probe, "%s/lua/ddbkit/init.lua", root);
    const char *lua_dir;
    if (file_exists(probe)) {
        lua_dir = lua_pushfstring(L, "%s/lua", root);
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/scripts/?.lua", lua_dir, lua_dir, root);
    } else {
        lua_dir = DDBKIT_LUA_DIR;
        lua_pushliteral(L, DDBKIT_LUA_DIR "/?.lua;" DDBKIT_LUA_DIR "/?/init.lua");
    }
    set_path(L, lua_tostring(L, -1));
    lua_pop(L, 1);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, exe);
    lua_setfield(L, -2, "exe");
    lua_pushliteral(L, DDBK_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushliteral(L, DDBKIT_SHARE_DIR);
    lua_setfield(L, -2, "share_dir");
    lua_pushstring(L, lua_dir);
    lua_setfield(L, -2, "lua_dir");
    lua_setfield(L, -2, "ddbkit.cli.env");
    lua_pop(L, 1);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "ddbkit.cli");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc > 1 ? argc - 1 : 0, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_call(L, 1, 1);
    int isnum;
    (void)lua_tointegerx(L, -1, &isnum);
    if (isnum || lua_isnil(L, -1))
        return 1;
    return luaL_error(L, "ddbkit.cli.main returned a %s, not an exit status",
                      luaL_typename(L, -1));
}

int main(int argc, char **argv)
{
    /* libedit decodes and shows the terminal's multibyte characters only
     * under the user's LC_CTYPE. Lua's lexer and number formatting do not
     * depend on it (LC_NUMERIC stays "C"). */
    setlocale(LC_CTYPE, "");
    const char *dbg = getenv("DDBKIT_DEBUG");
    debug_traces = dbg != NULL && strcmp(dbg, "1") == 0;

    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fputs("ddbkit: cannot create the Lua state: not enough memory\n", stderr);
        return 1;
    }
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status;
    if (lua_pcall(L, 2, 1, 1) == LUA_OK) {
        lua_Integer rc = lua_tointeger(L, -1);   /* nil: 0 */
        status = rc < 0 || rc > 255 ? 1 : (int)rc;
    } else {
        const char *msg = lua_tostring(L, -1); /* NULL: not a string (LUA_ERRMEM) */
        fprintf(stderr, "ddbkit: %s\n", msg ? msg : "error object is not a string");
        status = 1;
    }
    lua_close(L);
    return status;
}
