/* ddbkit.lineedit: line editing for the `ddbkit` REPL (lineedit.c). */
#ifndef DDBKIT_LINEEDIT_H
#define DDBKIT_LINEEDIT_H

#include <lua.h>

/* The module table: readline, add_history, read_history, write_history,
 * stifle_history, set_completer, isatty, interruptible. Installed by main.c
 * in package.preload; libedit's readline layer is process-global, so one
 * lua_State at a time may use it. */
int luaopen_ddbkit_lineedit(lua_State *L);

#endif
