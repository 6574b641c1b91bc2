/*
 * libFuzzer target: arbitrary bytes as the "b" attribute of a native
 * rate-limit item (lua/ddbkit/ratelimit/native.lua: decode), the lease
 * buckets "E:s,E:s,..." that every take reads back from DynamoDB. decode
 * must never raise; it answers nil, or buckets that are exactly the input
 * (encode gives the input back), at most native.BUCKETS of them, ends
 * strictly increasing, integers in [0, 2^53). Anything else is a finding
 * (abort): a lenient read could count fewer leases than were granted.
 *
 *   make build/fuzz/fuzz_rln_buckets     (see the Makefile for the flags)
 */
#include <stddef.h>
#include <stdint.h>

#include "lua_host.h"

static const char HARNESS[] =
    "local ROOT = ...\n"
    "package.path = ROOT .. '/lua/?.lua;' .. ROOT .. '/lua/?/init.lua;' .. ROOT .. '/scripts/?.lua;' .. package.path\n"
    "local native = require 'ddbkit.ratelimit.native'\n"
    "local function int(v) return type(v) == 'number' and v >= 0 and v < 2^53 and v == math.floor(v) end\n"
    "return function(input)\n"
    "  local ok, ends, sums = pcall(native.decode, input)\n"
    "  if not ok then return 'decode raised: ' .. tostring(ends) end\n"
    "  if ends == nil then return nil end\n"
    "  if type(ends) ~= 'table' or type(sums) ~= 'table' or #ends ~= #sums then return 'bad shape' end\n"
    "  if #ends > native.BUCKETS then return 'too many buckets' end\n"
    "  for i = 1, #ends do\n"
    "    if not int(ends[i]) or not int(sums[i]) then return 'not an integer' end\n"
    "    if i > 1 and ends[i] <= ends[i - 1] then return 'ends not increasing' end\n"
    "  end\n"
    "  if native.encode(ends, sums) ~= input then return 'not what encode writes' end\n"
    "  return nil\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_host_run_string("fuzz_rln_buckets", HARNESS, sizeof HARNESS - 1, data, size);
    return 0;
}
