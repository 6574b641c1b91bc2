/*
 * ddbkit.lineedit — libedit's readline layer (BSD-licensed, not GNU
 * readline) as a Lua module, for the `ddbkit` REPL.
 *
 * Ctrl-C at the prompt. SIGINT stays blocked for the whole of readline()
 * except while our getc (le_getc) waits for a key in ppoll(), which unblocks
 * it atomically. So the handler can only ever run there: it sets a flag,
 * ppoll fails with EINTR, le_getc reports end of input, libedit drops the
 * half-typed line, puts the terminal back itself and returns, and
 * le.readline turns the flag into `false`. Nothing jumps out of libedit, so
 * neither its state nor malloc's can be caught half-updated. libedit's own
 * signal handling (rl_catch_signals) stays on for what it does well: Ctrl-Z
 * and fg (terminal modes, redisplay), window resizes. Only its SIGINT
 * handler is replaced by ours, at the first key of each line, since it
 * would cancel nothing and re-send the signal to the whole process group.
 *
 * Ctrl-C in le.interruptible(fn): lua.c's technique, a handler that sets a
 * count hook on the running state; the hook raises "interrupted".
 *
 * libedit's readline layer is process-global, and so is this module's state
 * (the completer's state, the candidates): one lua_State at a time.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lua.h>

#include "lineedit.h"

/* Words break at these only: not at '.' or ':', so "client:ge" and
 * "ddbkit.lo" reach the completer whole. */
static char word_break[] = " \t\n()[]{},;=+-*/%^~<>\"'#&";

static int initialized;
static int in_readline;               /* the completer may not re-enter */
static volatile sig_atomic_t got_sigint;
static sigset_t wait_mask;            /* readline's mask, SIGINT unblocked */
static struct sigaction prompt_sa;    /* SIGINT during readline */
static int sigint_ours;               /* prompt_sa is back for this line */
static lua_State *complete_L;         /* the state inside readline() */
static char completer_key;            /* registry key of the completer */

/* The completer's answer, handed to libedit one string at a time. */
static char **cands;
static size_t ncands, next_cand;

static void on_sigint_prompt(int sig)
{
    (void)sig;
    got_sigint = 1;
}

/* One byte from fd: 0, or -1 on end of input, error or Ctrl-C. SIGINT is
 * blocked here (see the top of the file) except inside ppoll, so checking
 * the flag and then waiting cannot miss a signal in between. */
static int wait_byte(int fd, unsigned char *byte)
{
    for (;;) {
        if (got_sigint)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (ppoll(&p, 1, NULL, &wait_mask) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        ssize_t n = read(fd, byte, 1);
        if (n == 1)
            return 0;
        if (n == 0 || (errno != EINTR && errno != EAGAIN))
            return -1;
    }
}

/* rl_getc_function: one character, or EOF. libedit stores what this returns
 * as a wchar_t as it is, so a multibyte character is decoded here (as
 * libedit's own reader does) rather than returned byte by byte. */
static int le_getc(FILE *in)
{
    /* libedit installed its handlers when this line started (el_gets);
     * SIGINT has been blocked since before, so none of its SIGINT has run. */
    if (!sigint_ours) {
        sigaction(SIGINT, &prompt_sa, NULL);
        sigint_ours = 1;
    }
    mbstate_t st;
    memset(&st, 0, sizeof st);
    for (;;) {
        unsigned char byte;
        if (wait_byte(fileno(in), &byte) < 0)
            return EOF;
        char c = (char)byte;
        wchar_t wc;
        size_t n = mbrtowc(&wc, &c, 1, &st);
        if (n == (size_t)-2)
            continue;                 /* incomplete: read on */
        if (n == (size_t)-1) {        /* invalid: dropped, as libedit does */
            memset(&st, 0, sizeof st);
            continue;
        }
        return (int)wc;
    }
}

static void free_candidates(void)
{
    for (size_t i = 0; i < ncands; i++)
        free(cands[i]);
    free(cands);
    cands = NULL;
    ncands = next_cand = 0;
}

/* rl_completion_matches' generator: the next candidate, whose ownership
 * passes to libedit. */
static char *next_candidate(const char *text, int state)
{
    (void)text;
    if (state == 0)
        next_cand = 0;
    if (next_cand >= ncands)
        return NULL;
    char *s = cands[next_cand];
    cands[next_cand++] = NULL;
    return s;
}

struct complete_req {
    const char *word;
    const char *line;
    size_t line_len;
};

/* Run under lua_pcall: calls the completer and copies the strings of its
 * answer into cands. Nothing after the call can raise. */
static int collect_candidates(lua_State *L)
{
    const struct complete_req *rq = lua_touserdata(L, 1);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &completer_key) != LUA_TFUNCTION)
        return 0;
    lua_pushstring(L, rq->word);
    lua_pushlstring(L, rq->line, rq->line_len);
    lua_call(L, 2, 1);
    if (!lua_istable(L, -1))
        return 0;
    size_t n = (size_t)lua_rawlen(L, -1);
    if (n == 0 || (cands = calloc(n, sizeof *cands)) == NULL)
        return 0;
    for (size_t i = 1; i <= n; i++) {
        if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING) {
            char *s = strdup(lua_tostring(L, -1));
            if (s != NULL)
                cands[ncands++] = s;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* rl_attempted_completion_function: the Lua completer's candidates for the
 * word under the cursor, or NULL (nothing happens). */
static char **le_complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    /* No file-name completion when the completer has nothing. */
    rl_attempted_completion_over = 1;
    free_candidates();
    lua_State *L = complete_L;
    if (L == NULL || !lua_checkstack(L, 8))
        return NULL;
    /* rl_point is in bytes, like rl_line_buffer; `end` counts characters. */
    size_t len = rl_line_buffer != NULL ? strlen(rl_line_buffer) : 0;
    size_t point = rl_point < 0 ? 0 : (size_t)rl_point;
    struct complete_req rq = { text, rl_line_buffer != NULL ? rl_line_buffer : "",
                               point < len ? point : len };
    /* Everything that may raise runs protected: an error must not unwind
     * through libedit. The completer's errors mean no candidates. */
    int top = lua_gettop(L);
    lua_pushcfunction(L, collect_candidates);
    lua_pushlightuserdata(L, &rq);
    (void)lua_pcall(L, 1, 0, 0);
    lua_settop(L, top);
    if (ncands == 0) {
        free_candidates();
        return NULL;
    }
    char **matches = rl_completion_matches(text, next_candidate);
    free_candidates();
    return matches;
}

/* libedit reads its settings once, in rl_initialize, which every history
 * function would otherwise run lazily with the defaults. */
static void ensure_init(void)
{
    if (initialized)
        return;
    rl_readline_name = "ddbkit";      /* "ddbkit:" lines in ~/.editrc */
    rl_getc_function = le_getc;
    rl_attempted_completion_function = le_complete;
    rl_initialize();
    /* Candidates are full replacements: nothing is appended to a lone one
     * (a space after "client:get_item" or "ddbkit.lock" would be wrong). */
    rl_completion_append_character = '\0';
    rl_basic_word_break_characters = word_break;
    rl_completer_word_break_characters = word_break;
    initialized = 1;
}

/* Run under lua_pcall: pushes the C string at the light userdata 1. */
static int push_line(lua_State *L)
{
    lua_pushstring(L, lua_touserdata(L, 1));
    return 1;
}

/* le.readline(prompt?) -> line | nil (Ctrl-D on an empty line) | false
 * (Ctrl-C: the line is dropped and the cursor is on a fresh line). */
static int le_readline(lua_State *L)
{
    const char *prompt = luaL_optstring(L, 1, "");
    if (in_readline)
        return luaL_error(L, "readline: already reading a line");
    ensure_init();

    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    struct sigaction old_sa;
    memset(&prompt_sa, 0, sizeof prompt_sa);
    prompt_sa.sa_handler = on_sigint_prompt;
    sigemptyset(&prompt_sa.sa_mask);

    sigprocmask(SIG_BLOCK, &block, &old_mask);
    sigaction(SIGINT, &prompt_sa, &old_sa);
    wait_mask = old_mask;
    sigdelset(&wait_mask, SIGINT);
    got_sigint = 0;
    sigint_ours = 0;
    in_readline = 1;
    complete_L = L;

    char *line = readline(prompt);

    in_readline = 0;
    complete_L = NULL;
    /* A Ctrl-C that came while libedit was busy (not waiting for a key) is
     * still pending: take it here, not in the handler restored below. */
    struct timespec zero = { 0, 0 };
    int interrupted = got_sigint || sigtimedwait(&block, NULL, &zero) == SIGINT;
    got_sigint = 0;
    sigaction(SIGINT, &old_sa, NULL);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);

    if (interrupted) {
        free(line);
        FILE *out = rl_outstream != NULL ? rl_outstream : stdout;
        fputs("^C\n", out);
        fflush(out);
        lua_pushboolean(L, 0);
        return 1;
    }
    if (line == NULL) {
        lua_pushnil(L);
        return 1;
    }
    /* Pushing the line may raise (out of memory): protected, so that line
     * is freed either way, then the error goes on. */
    lua_pushcfunction(L, push_line);
    lua_pushlightuserdata(L, line);
    int rc = lua_pcall(L, 1, 1, 0);
    free(line);
    if (rc != LUA_OK)
        return lua_error(L);
    return 1;
}

static int le_add_history(lua_State *L)
{
    const char *line = luaL_checkstring(L, 1);
    ensure_init();
    add_history(line);
    return 0;
}

static int history_result(lua_State *L, const char *path, int err)
{
    if (err == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err));
    return 2;
}

/* le.read_history(path) -> true | nil, msg. An empty file is an empty
 * history (libedit calls it EINVAL: it lacks libedit's header line). */
static int le_read_history(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0)
        return history_result(L, path, 0);
    ensure_init();
    int err = read_history(path);
    if (err == EINVAL) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: not a history file (no libedit header)", path);
        return 2;
    }
    return history_result(L, path, err);
}

/* le.write_history(path) -> true | nil, msg */
static int le_write_history(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    ensure_init();
    return history_result(L, path, write_history(path));
}

/* le.stifle_history(n): keep at most n entries (the oldest go first). */
static int le_stifle_history(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= INT_MAX, 1, "out of range");
    ensure_init();
    stifle_history((int)n);
    return 0;
}

/* le.set_completer(fn | nil): fn(word, line_before_cursor) -> { candidate, ... } */
static int le_set_completer(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &completer_key);
    return 0;
}

/* le.isatty(fd) -> boolean */
static int le_isatty(lua_State *L)
{
    lua_Integer fd = luaL_checkinteger(L, 1);
    luaL_argcheck(L, fd >= 0 && fd <= INT_MAX, 1, "not a file descriptor");
    lua_pushboolean(L, isatty((int)fd));
    return 1;
}

static lua_State *volatile intr_L;    /* the state le.interruptible runs */

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    lua_pushliteral(L, "interrupted");
    lua_error(L);
}

/* lua_sethook is the one Lua call that is safe in a signal handler; the hook
 * fires at the next call, return or instruction of that state. (A coroutine
 * is a state of its own: it is stopped when it returns or yields.) */
static void on_sigint_run(int sig)
{
    (void)sig;
    lua_State *L = intr_L;
    if (L != NULL)
        lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* le.interruptible(fn, ...) -> pcall(fn, ...), where Ctrl-C raises
 * "interrupted" in fn. Any debug hook set on this state is cleared. */
static int le_interruptible(lua_State *L)
{
    luaL_checkany(L, 1);
    int nargs = lua_gettop(L) - 1;

    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint_run;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigset_t unblock, old_mask;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGINT);

    lua_State *prev = intr_L;
    intr_L = L;
    sigaction(SIGINT, &sa, &old_sa);
    sigprocmask(SIG_UNBLOCK, &unblock, &old_mask);
    int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGINT, &old_sa, NULL);
    intr_L = prev;
    lua_sethook(L, NULL, 0, 0);       /* a Ctrl-C that came too late to fire */

    lua_pushboolean(L, status == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

static const luaL_Reg funcs[] = {
    { "readline", le_readline },
    { "add_history", le_add_history },
    { "read_history", le_read_history },
    { "write_history", le_write_history },
    { "stifle_history", le_stifle_history },
    { "set_completer", le_set_completer },
    { "isatty", le_isatty },
    { "interruptible", le_interruptible },
    { NULL, NULL },
};

int luaopen_ddbkit_lineedit(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
