/*
 * libFuzzer target: hostile full HTTP responses (status line, headers, body)
 * fed through the client into every store. A store call must return a
 * result or nil, err with a non-empty err.code. A finding (abort) is: a Lua
 * error it raises, a nil, err whose err has no code, a client result that
 * is not a table, more requests for one call than 2 per response given plus
 * MAX_SENDS (a loop on the last answer that does not stop), or a crash.
 *
 * How: Lua 5.4 is embedded with ddbkit.core linked in and the Lua library
 * of lua/. Clients use the OpenResty runtime (lua/ddbkit/runtime/openresty.lua)
 * over a fake `ngx` whose cosocket plays the fuzzed responses: the sans-I/O
 * split (prepare, then parse what came back) with the runtime's own HTTP
 * reader, no socket, no sleep (ngx.sleep advances a fake clock). The
 * operations are the spec's (tests/hostile/cases.lua OPS): one per input,
 * chosen by the first byte.
 *
 * Input: byte 0 picks the operation; the rest is a list of responses
 * separated by "\n====\n", played in order, the last one again for every
 * further request. A response is
 *   "HTTP/..."           sent as is (framing, truncation, headers: the
 *                        fuzzer's),
 *   "NNN <body>"         status NNN with Content-Length framing,
 *   "@deep:<at>:<n>"     200 {"<at>":{"x":[[[...]]]}} nested n deep (n up
 *                        to 2,000,000: a body the input could not hold),
 *   anything else        200 with that body.
 *
 *   make build/fuzz/fuzz_response     (see the Makefile for the flags)
 */
#include <stddef.h>
#include <stdint.h>

#include "lua_host.h"

/* The harness, in Lua: returns function(input) -> nil | finding text. */
static const char HARNESS[] =
    "local ROOT = ...\n"
    "package.path = ROOT .. '/lua/?.lua;' .. ROOT .. '/lua/?/init.lua;' .. ROOT\n"
    "  .. '/scripts/?.lua;' .. ROOT .. '/tests/hostile/?.lua;' .. package.path\n"
    /* beyond what the responses account for: a pager may follow every
     * distinct page given, and retry each once */
    "local MAX_SENDS = 64\n"
    "local SEP = '\\n====\\n'\n"
    "local clock = 0\n"
    "local responses, nresp, sends, overflow = {}, 0, 0, false\n"
    /* the response for the next request: in order, then the last again */
    "local function next_response()\n"
    "  sends = sends + 1\n"
    "  if sends > 2 * nresp + MAX_SENDS then overflow = true return nil end\n"
    "  if nresp == 0 then return nil end\n"
    "  local r = responses[sends <= nresp and sends or nresp]\n"
    "  local at, n = r:match('^@deep:([%w]*):(%d+)$')\n"
    "  if at then\n"
    "    n = math.min(tonumber(n), 2000000)\n"
    "    local body = '{\"' .. at .. '\":{\"x\":' .. string.rep('[', n) .. string.rep(']', n) .. '}}'\n"
    "    return 'HTTP/1.1 200 OK\\r\\nContent-Length: ' .. #body .. '\\r\\n\\r\\n' .. body\n"
    "  end\n"
    "  if r:sub(1, 5) == 'HTTP/' then return r end\n"
    "  local status, body = r:match('^(%d%d%d) (.*)$')\n"
    "  if not status then status, body = '200', r end\n"
    "  return 'HTTP/1.1 ' .. status .. ' X\\r\\nContent-Length: ' .. #body\n"
    "    .. '\\r\\nx-amzn-RequestId: fuzz\\r\\n\\r\\n' .. body\n"
    "end\n"
    /* a cosocket that reads what next_response gave; closed after it */
    "local sock = {}\n"
    "sock.__index = sock\n"
    "local function ok() return true end\n"
    "sock.settimeouts, sock.settimeout, sock.connect, sock.sslhandshake = ok, ok, ok, ok\n"
    "sock.setkeepalive, sock.close = ok, ok\n"
    "function sock:getreusedtimes() return 0 end\n"
    "function sock:send()\n"
    "  local r = next_response()\n"
    "  if not r then return nil, 'closed' end\n"
    "  self.buf, self.pos = r, 1\n"
    "  return true\n"
    "end\n"
    "function sock:receive(p)\n"
    "  local buf, pos = self.buf or '', self.pos or 1\n"
    "  if p == '*l' then\n"
    "    local e = buf:find('\\n', pos, true)\n"
    "    if not e then self.pos = #buf + 1 return nil, 'closed', buf:sub(pos) end\n"
    "    self.pos = e + 1\n"
    "    return (buf:sub(pos, e - 1):gsub('\\r$', ''))\n"
    "  elseif p == '*a' then\n"
    "    self.pos = #buf + 1\n"
    "    return buf:sub(pos)\n"
    "  end\n"
    "  if pos + p - 1 > #buf then self.pos = #buf + 1 return nil, 'closed', buf:sub(pos) end\n"
    "  self.pos = pos + p\n"
    "  return buf:sub(pos, pos + p - 1)\n"
    "end\n"
    /* what has arrived, at most max bytes: here up to 1000, so a body
       comes in several pieces as from a real socket */
    "function sock:receiveany(max)\n"
    "  local buf, pos = self.buf or '', self.pos or 1\n"
    "  if pos > #buf then return nil, 'closed' end\n"
    "  local e = math.min(#buf, pos + math.min(max, 1000) - 1)\n"
    "  self.pos = e + 1\n"
    "  return buf:sub(pos, e)\n"
    "end\n"
    "ngx = { ERR = 4, log = function() end,\n"
    "  get_phase = function() return 'timer' end,\n"
    "  sleep = function(s) clock = clock + s * 1000 end,\n"
    "  socket = { tcp = function() return setmetatable({}, sock) end } }\n"
    "local openresty = require 'ddbkit.runtime.openresty'\n"
    "local ddbkit = require 'ddbkit'\n"
    "local cases = require 'cases'\n"
    /* tasks never run (a keeper's renewals are not what is fuzzed here) */
    "local idle_task = { done = function() return false end,\n"
    "  cancel = function() return true end, result = function() return nil, 'running' end }\n"
    "local runtime = { name = 'fuzz', send = openresty.send, call_raw = openresty.call_raw,\n"
    "  attach = openresty.attach,\n"
    "  sleep = function(ms) clock = clock + ms end,\n"
    "  now_ms = function() return 1700000000000 + clock end,\n"
    "  mono_ms = function() return clock end,\n"
    "  spawn = function() return idle_task end }\n"
    "local opts = { region = 'us-east-1', endpoint = 'http://127.0.0.1:9',\n"
    "  credentials = { access_key_id = 'fuzz', secret_access_key = 'fuzzsecret' },\n"
    "  runtime = runtime }\n"
    "for k, v in pairs(cases.CLIENT) do opts[k] = v end\n"
    "local OPS = cases.OPS\n"
    "return function(input)\n"
    "  if #input < 1 then return nil end\n"
    "  local op = OPS[input:byte(1) % #OPS + 1]\n"
    "  responses, nresp, sends, overflow = {}, 0, 0, false\n"
    "  local rest, from = input:sub(2), 1\n"
    "  while true do\n"
    "    local s, e = rest:find(SEP, from, true)\n"
    "    nresp = nresp + 1\n"
    "    responses[nresp] = rest:sub(from, (s or 0) - 1)\n"
    "    if not s then break end\n"
    "    from = e + 1\n"
    "  end\n"
    /* a client per input: no retry quota or stats carried over */
    "  local client = assert(ddbkit.client(opts))\n"
    "  local fine, r1, r2 = xpcall(op.run, debug.traceback, client)\n"
    "  client:close()\n"
    "  if not fine then return op.name .. ' raised: ' .. tostring(r1) end\n"
    "  if overflow then\n"
    "    return op.name .. ' sent more than ' .. 2 * nresp + MAX_SENDS .. ' requests for '\n"
    "      .. nresp .. ' responses'\n"
    "  end\n"
    "  if op.result and r1 ~= nil and r1 ~= false and type(r1) ~= op.result then\n"
    "    return op.name .. ' returned a ' .. type(r1) .. ' for a result'\n"
    "  end\n"
    "  if (r1 == nil or r1 == false) and r2 ~= nil then\n"
    "    if type(r2) ~= 'table' or type(r2.code) ~= 'string' or r2.code == '' then\n"
    "      return op.name .. ' returned an error without a code: ' .. tostring(r2)\n"
    "    end\n"
    "  end\n"
    "  return nil\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_host_run_string("fuzz_response", HARNESS, sizeof HARNESS - 1, data, size);
    return 0;
}
