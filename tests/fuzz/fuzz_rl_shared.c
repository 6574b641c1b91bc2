/*
 * libFuzzer target: arbitrary bytes as the values of a lua_shared_dict
 * where the native rate limit keeps one lease per machine
 * (lua/ddbkit/ratelimit/shared.lua). The first byte picks which key the
 * rest is read as: the lease ("id:n:until:take_now:take_mono:e"), the
 * item ("v\0w\0b"), a pending give-back, the known-full time. Reading it
 * must never raise: a lease comes back as nil or as an id and five
 * numbers, an item as nil or a version and buckets native.lua's decode
 * accepts; the machine's unspent count is a number >= 0. Anything else is
 * a finding (abort): the dict is shared memory other code may write.
 *
 *   make build/fuzz/fuzz_rl_shared     (see the Makefile for the flags)
 */
#include <stddef.h>
#include <stdint.h>

#include "lua_host.h"

static const char HARNESS[] =
    "local ROOT = ...\n"
    "package.path = ROOT .. '/lua/?.lua;' .. ROOT .. '/lua/?/init.lua;' .. ROOT .. '/scripts/?.lua;' .. package.path\n"
    "local native = require 'ddbkit.ratelimit.native'\n"
    "local shared = require 'ddbkit.ratelimit.shared'\n"
    "local KEYS = { 'l', 'i', 'b', 'f' }\n"
    "return function(input)\n"
    "  if #input < 1 then return nil end\n"
    "  local key = KEYS[input:byte(1) % #KEYS + 1]\n"
    "  local value = input:sub(2)\n"
    "  local dict = { get = function(_, k) if k == 'P' .. key then return value end end,\n"
    "                 incr = function() return nil, 'not found' end,\n"
    "                 add = function() return true end, set = function() return true end,\n"
    "                 delete = function() end }\n"
    "  local sh = shared.new(dict, function() return false end)\n"
    "  local ok, l = pcall(sh.lease, sh, 'P')\n"
    "  if not ok then return 'lease raised: ' .. tostring(l) end\n"
    "  if l ~= nil then\n"
    "    if type(l.id) ~= 'string' or l.id == '' or l.id:find(':', 1, true) then return 'bad lease id' end\n"
    "    for _, f in ipairs({ 'n', 'until_', 'take_now', 'take_mono', 'e' }) do\n"
    "      if type(l[f]) ~= 'number' then return 'lease field ' .. f .. ' not a number' end\n"
    "    end\n"
    "  end\n"
    "  local ok2, left = pcall(sh.left, sh, 'P', 0)\n"
    "  if not ok2 then return 'left raised: ' .. tostring(left) end\n"
    "  if type(left) ~= 'number' or left < 0 then return 'left not a count' end\n"
    "  local ok3, f = pcall(sh.full_until, sh, 'P')\n"
    "  if not ok3 then return 'full_until raised: ' .. tostring(f) end\n"
    "  local ok4, it = pcall(shared.item_of, dict, 'P', native.decode)\n"
    "  if not ok4 then return 'item_of raised: ' .. tostring(it) end\n"
    "  if it ~= nil and (type(it.v) ~= 'number' or native.encode(it.ends, it.sums) == nil) then return 'bad item' end\n"
    "  local ok5, st = pcall(shared.load, sh, 'P', 0, 1000, native.decode)\n"
    "  if not ok5 then return 'load raised: ' .. tostring(st) end\n"
    "  return nil\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_host_run_string("fuzz_rl_shared", HARNESS, sizeof HARNESS - 1, data, size);
    return 0;
}
