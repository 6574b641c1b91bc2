/*
 * libFuzzer target: arbitrary bytes as JSON text for ddbkit.jsjson's C
 * decoder (core.js_parse, bindings/core/jsparse.c), checked against the
 * module's Lua decoder, its reference: both refuse the same texts, and
 * where they decode, the values are the same (types, integer or float,
 * array marks, key order lists, recursively). A decoded value must then
 * stringify, and that text must decode and stringify to itself
 * (JSON.stringify(JSON.parse(s)) is a fixed point). A raise, a difference
 * or a crash is a finding (abort).
 *
 * Lua 5.4 is embedded with ddbkit.core linked in; the Lua library is read
 * from this tree (FUZZ_ROOT).
 *
 *   make build/fuzz/fuzz_jsjson     (see the Makefile for the flags)
 */
#include <stddef.h>
#include <stdint.h>

#include "lua_host.h"

static const char HARNESS[] =
    "local ROOT = ...\n"
    "package.path = ROOT .. '/lua/?.lua;' .. ROOT .. '/lua/?/init.lua;' .. package.path\n"
    "local jsjson = require 'ddbkit.jsjson'\n"
    "local core = require 'ddbkit.core'\n"
    "assert(core.js_parse, 'core has no js_parse')\n"
    "local function differ(a, b, path)\n"
    "  if type(a) ~= type(b) then return path .. ': ' .. type(a) .. ' vs ' .. type(b) end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return path .. ': number types' end\n"
    "    if a ~= b then return path .. ': numbers' end\n"
    "    return nil\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a ~= b and (path .. ': values') or nil end\n"
    "  if (a == core.null) ~= (b == core.null) then return path .. ': null' end\n"
    "  if core.is_array(a) ~= core.is_array(b) then return path .. ': array mark' end\n"
    "  if core.is_array(a) then\n"
    "    if #a ~= #b then return path .. ': lengths' end\n"
    "    for i = 1, #a do\n"
    "      local d = differ(a[i], b[i], path .. '[' .. i .. ']')\n"
    "      if d then return d end\n"
    "    end\n"
    "    return nil\n"
    "  end\n"
    "  local ka, kb = jsjson.keys(a), jsjson.keys(b)\n"
    "  if table.concat(ka, '\\0') ~= table.concat(kb, '\\0') then return path .. ': key order' end\n"
    "  for _, k in ipairs(ka) do\n"
    "    local d = differ(a[k], b[k], path .. '.' .. k)\n"
    "    if d then return d end\n"
    "  end\n"
    "end\n"
    "return function(text)\n"
    "  local a, aerr = jsjson.decode(text)\n"
    "  local b, berr = jsjson._decode_lua(text)\n"
    "  if (a == nil) ~= (b == nil) then\n"
    "    return 'C and Lua disagree: ' .. tostring(aerr or 'ok') .. ' / ' .. tostring(berr or 'ok')\n"
    "  end\n"
    "  if a == nil then\n"
    "    if type(aerr) ~= 'string' or type(berr) ~= 'string' then return 'no error text' end\n"
    "    return nil\n"
    "  end\n"
    "  local d = differ(a, b, '$')\n"
    "  if d then return 'C and Lua decode differently at ' .. d end\n"
    "  local s, serr = jsjson.stringify(a)\n"
    "  if not s then return 'a decoded value does not stringify: ' .. tostring(serr) end\n"
    "  local s2, err2 = jsjson.restringify(s)\n"
    "  if s2 ~= s then return 'stringify is not a fixed point: ' .. tostring(err2) end\n"
    "  return nil\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_host_run_string("fuzz_jsjson", HARNESS, sizeof HARNESS - 1, data, size);
    return 0;
}
