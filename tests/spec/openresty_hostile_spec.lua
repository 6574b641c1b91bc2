-- A broken or hostile server gets nil, err from every store and helper in
-- the OpenResty runtime too (issue 11): the cases of
-- tests/spec/hostile_server_spec.lua (tests/hostile/cases.lua: every hostile
-- answer x every operation, i.e. every store, lock and idempotency mode and
-- the client's helpers), run inside a real nginx (tests/nginx, through
-- tests/nginx/harness.lua: 2 workers) by the /hostile route of
-- tests/nginx/app.lua, with a client of ddbkit.runtime.openresty
-- (cosockets) against the hostile double (tests/hostile/hostile.py, started
-- by tests/run.sh; DDBKIT_TEST_HOSTILE reaches the workers by an env line
-- of nginx.conf.in).
--
-- The full product is run, every answer with every operation (21 x 23
-- cases): each case is one request to nginx; the file took 52 s on LuaJIT
-- and 58 s on Lua 5.4 on a loaded 2-core machine (the 2 MB deep answers
-- and the trickles, cut off at 300 ms, are most of it).
-- Each case asserts what the blocking spec asserts (cases.check: no raise,
-- nil, err with a non-empty code, MalformedResponse for a malformed body,
-- the double's request count bounded), and that no worker died: a worker
-- killed by a signal (the 1,000,000-deep bodies are about that) shows in
-- error.log as "worker process N exited on signal S", and the master starts
-- another, so a crash fails its case and the run goes on.
--
-- This file only drives nginx from outside (curl) and the double through a
-- blocking client, so it runs the same under Lua 5.4 and LuaJIT (nginx
-- itself always runs LuaJIT, with build/luajit's module).
local H = require "test_helper"
package.path = H.spec_dir() .. "/../nginx/?.lua;" .. H.spec_dir() .. "/../hostile/?.lua;" .. package.path
local harness = require "harness"
local cases = require "cases"
local cjson = require "cjson.safe"

describe("a hostile server, in the OpenResty runtime (nginx)", function()
  local N

  -- The "worker process N exited on signal S" lines of error.log so far.
  local function worker_deaths()
    local out = {}
    for line in (H.read_file(N.prefix .. "/logs/error.log") or ""):gmatch("[^\n]+") do
      if line:find("exited on signal", 1, true) then out[#out + 1] = line end
    end
    return out
  end

  setup(function()
    assert(H.hostile and H.hostile ~= "", "the hostile double is not running (DDBKIT_TEST_HOSTILE)")
    N = harness.start(H)
  end)

  teardown(function()
    if H.hostile and H.hostile ~= "" then H.hostile_reset() end
    if N then N.stop() end
  end)

  for oi, op in ipairs(cases.OPS) do
    for ai, a in ipairs(cases.ANSWERS) do
      local expect = cases.expect(a, op)
      it(string.format("openresty | %s | %s: %s", op.name, a.name,
                       expect == "bounded" and "no raise, bounded" or "nil, err (" .. expect .. ")"),
        function()
          H.hostile_script(cases.script(a, op))
          local deaths = #worker_deaths()
          local status, _, body = N.request(string.format("/hostile?answer=%d&op=%d", ai, oi))
          local died = worker_deaths()
          assert(#died == deaths, "a worker died: " .. tostring(died[#died]))
          assert(status ~= nil, "no answer from nginx (curl failed)\n" .. N.log_errors())
          local o = cjson.decode(body)
          assert(type(o) == "table", "status " .. tostring(status) .. ", not JSON: " .. body:sub(1, 300)
                 .. "\n" .. N.log_errors())
          -- a 500 is a raise the route caught (o.raised says what)
          assert(status == 200 or o.raised, "status " .. tostring(status) .. ": " .. body:sub(1, 300))
          cases.check(o, expect, H.hostile_stats())
        end)
    end
  end

  it("no worker died during the run", function()
    assert.are.same({}, worker_deaths())
  end)
end)
