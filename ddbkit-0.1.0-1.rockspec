-- ddbkit's rockspec: `luarocks --lua-version=5.4 make` from the checkout,
-- or --lua-version=5.1 for LuaJIT / OpenResty (the module then built is
-- LuaJIT's: PUC Lua 5.1 lacks luaL_setfuncs). The version is the one in
-- engine/ddbkit.h (DDBK_VERSION); tests/spec/packaging_spec.lua checks that
-- this file's name and `version` agree with it.
rockspec_format = "3.0"
package = "ddbkit"
version = "0.1.0-1"
source = {
  url = "git+https://github.com/ddbkit/ddbkit.git",
  tag = "v0.1.0",
}
description = {
  summary = "DynamoDB for Lua and OpenResty: a C engine with caches, rate limits, locks and idempotency",
  detailed = [[
A C engine (SigV4, credentials, libcurl transport, retries, conditional
locks, an event loop) with a Lua face: the ddbkit.core C module for Lua 5.4
and LuaJIT, the stores (cache, dedupe, rate limit, adaptive limit, lock,
idempotency) and blocking, coroutine and OpenResty runtimes.
  ]],
  license = "MIT",
  homepage = "https://github.com/ddbkit/ddbkit",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson",
}
-- The C libraries (libcurl, OpenSSL, yajl, expat) are not listed as
-- external_dependencies: Debian keeps curl/curl.h under a multiarch directory
-- luarocks does not search, and the Makefile's own link fails naming them.
build = {
  -- The "make" type, not "builtin": ddbkit.core is the engine (engine/*.c)
  -- and the binding built with the Makefile's flags and checks (-Werror,
  -- hidden symbols, the engine linked in statically), and the Makefile picks
  -- LuaJIT's headers for a 5.1 build. Run from the checkout, it builds in
  -- build/ as `make` does, so objects already there are reused.
  type = "make",
  build_target = "rock",
  build_variables = {
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_target = "rock-install",
  install_variables = {
    LUA_INCDIR = "$(LUA_INCDIR)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
}
