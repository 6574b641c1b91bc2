/*
 * A game server's main loop, as a host embedding ddbkit would write it: a
 * fixed tick, the game's Lua policy script called once per tick, and
 * between ticks a poll() on the file descriptors ddbkit asks for, so
 * DynamoDB responses are handled as they arrive without ever blocking the
 * loop past its next tick.
 *
 *   gamehost SCRIPT ENDPOINT TABLE [PLAYERS [ACTIONS [IN_FLIGHT [TICK_MS]]]]
 *
 * Defaults: 200 players, 2000 actions, 200 in flight, a 20 ms tick
 * (tests/spec/gamehost_spec.lua passes 50).
 *
 * It prints one line,
 *   RESULT ticks=N tick_ms=T max_late_ms=L ok=K failed=F peak_in_flight=P requests=R
 * and exits 0 only when every action finished correctly and no tick started
 * later than one tick period after its due time; 1 otherwise; 2 on bad usage.
 * LUA_PATH / LUA_CPATH must reach ddbkit (lua/, scripts/, build/lua54/).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define MAX_FDS 512
#define MAX_TICKS 100000 /* a bound: the run stops by itself whatever happens */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* Calls game.<name> with the arguments already pushed; leaves nresults. */
static int call_game(lua_State *L, const char *name, int nargs, int nresults)
{
    lua_pushcfunction(L, traceback);
    lua_getfield(L, 1, name);
    lua_rotate(L, -(nargs + 2), 2); /* handler, function, then the arguments */
    int base = lua_gettop(L) - nargs - 1;
    if (lua_pcall(L, nargs, nresults, base) != LUA_OK) {
        fprintf(stderr, "gamehost: game.%s: %s\n", name, lua_tostring(L, -1));
        return -1;
    }
    lua_remove(L, base);
    return 0;
}

/* Calls ddbkit.<name>(args...) protected; an error ends the host (exit 1):
 * a loop whose engine fails cannot keep its promises. */
static void ddbkit_call(lua_State *L, const char *name, int nargs, int nresults)
{
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, "ddbkit");
    lua_call(L, 1, 1); /* loaded already by the script: cannot fail */
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    lua_rotate(L, -(nargs + 2), 2); /* handler, function, then the arguments */
    int base = lua_gettop(L) - nargs - 1;
    if (lua_pcall(L, nargs, nresults, base) != LUA_OK) {
        fprintf(stderr, "gamehost: ddbkit.%s: %s\n", name, lua_tostring(L, -1));
        exit(1);
    }
    lua_remove(L, base);
}

/* ddbkit.fds() -> { {fd=, read=, write=}... }, timeout_ms: what to poll. */
static int engine_fds(lua_State *L, struct pollfd *fds, long *timeout_ms)
{
    ddbkit_call(L, "fds", 0, 2);
    *timeout_ms = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : -1;
    int n = 0;
    if (lua_istable(L, -2)) {
        lua_Integer len = luaL_len(L, -2);
        for (lua_Integer i = 1; i <= len && n < MAX_FDS; i++) {
            lua_geti(L, -2, i);
            lua_getfield(L, -1, "fd");
            lua_getfield(L, -2, "read");
            lua_getfield(L, -3, "write");
            fds[n].fd = (int)lua_tointeger(L, -3);
            fds[n].events = (short)((lua_toboolean(L, -2) ? POLLIN : 0) |
                                    (lua_toboolean(L, -1) ? POLLOUT : 0));
            fds[n].revents = 0;
            lua_pop(L, 4);
            n++;
        }
    }
    lua_pop(L, 2);
    return n;
}

/* ddbkit.step(0): handle whatever is ready, never wait. */
static void engine_step(lua_State *L)
{
    lua_pushinteger(L, 0);
    ddbkit_call(L, "step", 1, 0);
}

/* Until the next tick is due: poll the engine's descriptors (never longer
 * than the engine's own timeout or the tick's deadline) and step. */
static void wait_for_tick(lua_State *L, double due)
{
    struct pollfd fds[MAX_FDS];
    for (;;) {
        double left = due - mono_ms();
        if (left <= 0)
            return;
        long engine_timeout;
        int n = engine_fds(L, fds, &engine_timeout);
        long wait = (long)left + 1;
        if (engine_timeout >= 0 && engine_timeout < wait)
            wait = engine_timeout;
        if (poll(fds, (nfds_t)n, (int)wait) < 0 && errno != EINTR) {
            perror("gamehost: poll");
            return;
        }
        engine_step(L);
    }
}

static long arg_long(int argc, char **argv, int i, long dflt)
{
    if (i >= argc)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v <= 0) {
        fprintf(stderr, "gamehost: argument %d must be a positive integer, got \"%s\"\n", i, argv[i]);
        exit(2);
    }
    return v;
}

static int report_field(lua_State *L, const char *k)
{
    lua_getfield(L, -1, k);
    int v = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: gamehost SCRIPT ENDPOINT TABLE [PLAYERS [ACTIONS [IN_FLIGHT [TICK_MS]]]]\n");
        return 2;
    }
    long players = arg_long(argc, argv, 4, 200);
    long actions = arg_long(argc, argv, 5, 2000);
    long in_flight = arg_long(argc, argv, 6, 200);
    long tick_ms = arg_long(argc, argv, 7, 20);

    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, traceback);
    if (luaL_loadfile(L, argv[1]) != LUA_OK || lua_pcall(L, 0, 1, -2) != LUA_OK ||
        !lua_istable(L, -1)) {
        fprintf(stderr, "gamehost: %s: %s\n", argv[1],
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "the script must return a table");
        lua_close(L);
        return 1;
    }
    lua_replace(L, 1); /* the game table stays at index 1 */
    lua_settop(L, 1);

    lua_createtable(L, 0, 5);
    lua_pushstring(L, argv[2]);
    lua_setfield(L, -2, "endpoint");
    lua_pushstring(L, argv[3]);
    lua_setfield(L, -2, "table_name");
    lua_pushinteger(L, players);
    lua_setfield(L, -2, "players");
    lua_pushinteger(L, actions);
    lua_setfield(L, -2, "actions");
    lua_pushinteger(L, in_flight);
    lua_setfield(L, -2, "in_flight");
    int rc = 1;
    if (call_game(L, "start", 1, 0) != 0)
        goto out;

    double start = mono_ms(), max_late = 0;
    long ticks = 0;
    for (;;) {
        double due = start + (double)ticks * (double)tick_ms;
        double late = mono_ms() - due;
        if (late > max_late)
            max_late = late;
        lua_pushinteger(L, ticks);
        if (call_game(L, "tick", 1, 1) != 0)
            goto out;
        int more = lua_toboolean(L, -1);
        lua_pop(L, 1);
        ticks++;
        if (!more || ticks >= MAX_TICKS)
            break;
        wait_for_tick(L, start + (double)ticks * (double)tick_ms);
    }

    if (call_game(L, "report", 0, 1) != 0)
        goto out;
    int ok = report_field(L, "ok"), failed = report_field(L, "failed");
    int peak = report_field(L, "peak_in_flight"), requests = report_field(L, "requests");
    printf("RESULT ticks=%ld tick_ms=%ld max_late_ms=%.1f ok=%d failed=%d peak_in_flight=%d "
           "requests=%d\n", ticks, tick_ms, max_late, ok, failed, peak, requests);
    lua_getfield(L, -1, "failures");
    if (failed && lua_isstring(L, -1))
        fprintf(stderr, "gamehost: failures: %s\n", lua_tostring(L, -1));
    rc = (ok == actions && failed == 0 && max_late <= (double)tick_ms) ? 0 : 1;
out:
    lua_close(L);
    return rc;
}
