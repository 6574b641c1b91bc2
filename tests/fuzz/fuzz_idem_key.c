/*
 * libFuzzer target: arbitrary bytes as what a client sends to the
 * idempotency web helper, keyed as the Node middleware's Express
 * integration keys it (lua/ddbkit/idempotency/cache_key.lua: request and
 * check). The input is split at NUL bytes into the Idempotency-Key value,
 * the Content-Type, a vary header's value and the body; its first byte
 * picks json_bodies and include_body. Both options' answers must be a
 * 64-hex cache key, nil (no key), or nil and KEY_REQUIRED / BODY_NOT_JSON
 * with status 400; check(key) must answer nil or KEY_REQUIRED. A raise, any
 * other answer, or a crash is a finding (abort).
 *
 *   make build/fuzz/fuzz_idem_key     (see the Makefile for the flags)
 */
#include <stddef.h>
#include <stdint.h>

#include "lua_host.h"

static const char HARNESS[] =
    "local ROOT = ...\n"
    "package.path = ROOT .. '/lua/?.lua;' .. ROOT .. '/lua/?/init.lua;' .. package.path\n"
    "local keys = require 'ddbkit.idempotency.cache_key'\n"
    "local vary = keys.vary({ 'X-Tenant', 'accept-language' })\n"
    "local function refused(err, codes)\n"
    "  if type(err) ~= 'table' or not codes[err.code] or err.status ~= 400 then\n"
    "    return 'refused without a 400 of ' .. tostring(err and err.code)\n"
    "  end\n"
    "end\n"
    "local REQUEST = { KEY_REQUIRED = true, BODY_NOT_JSON = true }\n"
    "local CHECK = { KEY_REQUIRED = true }\n"
    "return function(input)\n"
    "  local flags = input:byte(1) or 0\n"
    "  local f = {}\n"
    "  for part in (input:sub(2) .. '\\0'):gmatch('([^\\0]*)\\0') do f[#f + 1] = part end\n"
    "  local req = { method = 'POST', path = '/p', body = f[4],\n"
    "    headers = { ['idempotency-key'] = f[1], ['content-type'] = f[2], ['x-tenant'] = f[3] } }\n"
    "  local opts = { header_name = 'idempotency-key', max_key_length = 16, vary = vary,\n"
    "    json_bodies = flags % 2 == 1, include_body = flags % 4 >= 2 }\n"
    "  local ok, ck, err = pcall(keys.request, req, opts)\n"
    "  if not ok then return 'request raised: ' .. tostring(ck) end\n"
    "  if ck ~= nil then\n"
    "    if type(ck) ~= 'string' or not ck:find('^%x+$') or #ck ~= 64 then return 'bad key' end\n"
    "  elseif err ~= nil then\n"
    "    local why = refused(err, REQUEST)\n"
    "    if why then return why end\n"
    "  end\n"
    "  if f[1] and f[1] ~= '' then\n"
    "    local ok2, cerr = pcall(keys.check, f[1], 16)\n"
    "    if not ok2 then return 'check raised: ' .. tostring(cerr) end\n"
    "    if cerr ~= nil then return refused(cerr, CHECK) end\n"
    "  end\n"
    "  return nil\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_host_run_string("fuzz_idem_key", HARNESS, sizeof HARNESS - 1, data, size);
    return 0;
}
