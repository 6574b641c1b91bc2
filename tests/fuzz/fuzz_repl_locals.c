/*
 * libFuzzer target: arbitrary bytes as a REPL input given to
 * ddbkit.repl.locals.rewrite (lua/ddbkit/repl/locals.lua), the small lexer
 * that turns an input's top-level `local` statements into assignments so
 * they last for the next input. rewrite must never raise; it keeps every
 * line (error positions stay the input's); an input without the word
 * "local" comes back unchanged; and an input that compiled still compiles
 * after the rewrite (unless it has an attribute: assigning a <const> is a
 * compile error that the rewrite lifts). Anything else is a finding.
 *
 *   make build/fuzz/fuzz_repl_locals     (see the Makefile for the flags)
 */
#include <stddef.h>
#include <stdint.h>

#include "lua_host.h"

static const char HARNESS[] =
    "local ROOT = ...\n"
    "package.path = ROOT .. '/lua/?.lua;' .. ROOT .. '/lua/?/init.lua;' .. package.path\n"
    "local locals = require 'ddbkit.repl.locals'\n"
    "local function lines(s) return select(2, s:gsub('\\n', '')) end\n"
    "return function(input)\n"
    "  local ok, out = pcall(locals.rewrite, input)\n"
    "  if not ok then return 'rewrite raised: ' .. tostring(out) end\n"
    "  if type(out) ~= 'string' then return 'rewrite returned a ' .. type(out) end\n"
    "  if lines(out) ~= lines(input) then return 'the lines changed' end\n"
    "  if not input:find('local', 1, true) and out ~= input then return 'changed without local' end\n"
    "  if not input:find('<', 1, true) and load(input, '=in', 't', {}) and not load(out, '=out', 't', {}) then\n"
    "    return 'compiled before the rewrite, not after: ' .. out\n"
    "  end\n"
    "  return nil\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_host_run_string("fuzz_repl_locals", HARNESS, sizeof HARNESS - 1, data, size);
    return 0;
}
