/*
 * libFuzzer target: arbitrary text as the `ddbkit` command's config file
 * (lua/ddbkit/cli/config.lua, read through config.resolve with
 * DDBKIT_CONFIG naming the file). resolve must return a configuration whose
 * values and sources are strings, or raise the command's documented
 * failure (ddbkit.cli.errors.fail: a table with the Failure metatable, a
 * string code and message). Any other raise, a value of another type, or a
 * crash is a finding (abort).
 *
 * Lua 5.4 is embedded with ddbkit.core linked in; the Lua library is read
 * from this tree (FUZZ_ROOT). The variables that would override the file
 * are unset once, so every key comes from the file or its default.
 *
 *   make build/fuzz/fuzz_cli_config     (see the Makefile for the flags)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "lua_host.h"

/* The harness, in Lua: returns function() -> nil | finding text, reading the
 * file DDBKIT_CONFIG names. */
static const char HARNESS[] =
    "local ROOT = ...\n"
    "package.path = ROOT .. '/lua/?.lua;' .. ROOT .. '/lua/?/init.lua;' .. ROOT\n"
    "  .. '/scripts/?.lua;' .. package.path\n"
    "local config = require 'ddbkit.cli.config'\n"
    "local errors = require 'ddbkit.cli.errors'\n"
    "return function()\n"
    "  local ok, cfg = pcall(config.resolve, {})\n"
    "  if not ok then\n"
    "    local e = cfg\n"
    "    if type(e) == 'table' and getmetatable(e) == errors.Failure\n"
    "       and type(e.code) == 'string' and e.code ~= '' and type(e.message) == 'string' then\n"
    "      return nil\n"
    "    end\n"
    "    return 'config.resolve raised: ' .. errors.text(e)\n"
    "  end\n"
    "  for _, k in ipairs(config.KEYS) do\n"
    "    local v, src = cfg.value[k.key], cfg.source[k.key]\n"
    "    if v ~= nil and type(v) ~= 'string' then return k.key .. ' is a ' .. type(v) end\n"
    "    if v ~= nil and type(src) ~= 'string' then return k.key .. ' has no source' end\n"
    "  end\n"
    "  return nil\n"
    "end\n";

/* Everything config.lua reads from the environment that is not the file. */
static const char *const OVERRIDES[] = {
    "DDBKIT_ENDPOINT", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL", "DDBKIT_REGION",
    "AWS_REGION", "AWS_DEFAULT_REGION", "DDBKIT_PROFILE", "AWS_PROFILE", "DDBKIT_TABLE",
    "DDBKIT_IDEMPOTENCY_TABLE", "DDBKIT_POLICY", "DDBKIT_STRATEGY", "DDBKIT_HISTORY_SIZE",
};

static lua_State *L;
static int harness_ref = LUA_NOREF;
static char path[] = "/tmp/fuzz_cli_config.XXXXXX";

static void remove_file(void) { unlink(path); }

static void init(void)
{
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("fuzz_cli_config: mkstemp");
        abort();
    }
    close(fd);
    atexit(remove_file);
    for (size_t i = 0; i < sizeof OVERRIDES / sizeof OVERRIDES[0]; i++)
        unsetenv(OVERRIDES[i]);
    setenv("DDBKIT_CONFIG", path, 1);

    L = lua_host_open("fuzz_cli_config", HARNESS, sizeof HARNESS - 1, &harness_ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        init();
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror("fuzz_cli_config: writing the config file");
        abort();
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, harness_ref);
    lua_host_check(L, "fuzz_cli_config", 0);
    return 0;
}
