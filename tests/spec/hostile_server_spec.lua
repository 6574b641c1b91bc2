-- A broken or hostile server gets nil, err from every store and helper,
-- never a crash, a hang or a raise (issue 11). Every store (cache, dedupe,
-- ratelimit, adaptive, lock, idempotency in both modes) and the client's
-- helpers are driven against the hostile double (tests/hostile/hostile.py,
-- started by tests/run.sh) in the blocking and the coroutine runtime: one
-- table of hostile answers x one table of operations, both in
-- tests/hostile/cases.lua. For each case the double answers every request
-- with the hostile answer (after the op's lead, if any) and counts what it
-- was sent, so a bound on the requests is asserted too: a pager that does
-- not stop is seen as a count, not as a slow test.
--
-- Cases that can overflow the C stack (1,000,000-deep bodies) run in a
-- child process under `timeout`: a crash (or a hang) fails that case, with
-- its exit status and stderr, and the run goes on. A LastEvaluatedKey that
-- never changes is answered 200 times, then refused: a pager that does not
-- stop fails on its request count instead of hanging the run.
--
-- OpenResty is driven by tests/spec/openresty_hostile_spec.lua (the same
-- cases, through nginx's /hostile route).
local H = require "test_helper"
local cjson = require "cjson.safe"

local HOSTILE_DIR = H.spec_dir() .. "/../hostile"
package.path = HOSTILE_DIR .. "/?.lua;" .. package.path
local cases = require "cases"

local CHILD_SECONDS = 10   -- a case needs under 1 s (ASan included); a hang is killed here

-- Runs one case in a child process; returns its outcome, or one with
-- .died = a description of how it died (crash, hang, no output).
local function run_isolated(a, op, rt)
  local code = string.format(
    "package.path = %q .. package.path; local r = require('cases').run(%q, %q, %q, %q); "
    .. "io.write('OUTCOME ', require('cjson.safe').encode(r), '\\n')",
    HOSTILE_DIR .. "/?.lua;", a.name, op.name, rt, H.hostile)
  local errfile = os.tmpname()
  local cmd = H.bounded(H.shell_quote(H.interpreter()) .. " -e " .. H.shell_quote(code), CHILD_SECONDS)
    .. " 2>" .. H.shell_quote(errfile) .. "; echo \"EXIT $?\""
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local stderr = H.read_file(errfile) or ""
  os.remove(errfile)
  local json = out:match("OUTCOME ([^\n]*)")
  local status = tonumber(out:match("EXIT (%d+)"))
  if json and status == 0 then return assert(cjson.decode(json)) end
  local how
  if status == 124 or status == 137 then
    -- (a yajl tree of 1,000,000 levels takes minutes under ASan: its
    -- stack grows by realloc, each one a copy)
    how = "hung (or far too slow): killed after " .. CHILD_SECONDS .. " s"
  elseif status and status > 128 then
    how = "crashed: signal " .. (status - 128)
  else
    how = "died: exit status " .. tostring(status)
  end
  return { died = how .. "\n" .. stderr:sub(-1500) }
end

local check = cases.check

describe("a hostile server", function()
  setup(function()
    assert(H.hostile and H.hostile ~= "", "the hostile double is not running (DDBKIT_TEST_HOSTILE)")
  end)

  teardown(function()
    if H.hostile and H.hostile ~= "" then H.hostile_reset() end
  end)

  for _, rt in ipairs(cases.RUNTIMES) do
    for _, op in ipairs(cases.OPS) do
      for _, a in ipairs(cases.ANSWERS) do
        local expect = cases.expect(a, op)
        it(string.format("%s | %s | %s: %s", rt, op.name, a.name,
                         expect == "bounded" and "no raise, bounded" or "nil, err (" .. expect .. ")"),
          function()
            H.hostile_script(cases.script(a, op))
            local o
            if a.isolate then
              o = run_isolated(a, op, rt)
            else
              o = cases.run(a.name, op.name, rt, H.hostile)
            end
            check(o, expect, H.hostile_stats())
          end)
      end
    end
  end
end)

describe("the hostile double", function()
  it("answers what was scripted, in order, and counts each target", function()
    H.hostile_script{
      { match = "GetItem", body = '{"Item":{"v":{"S":"one"}}}' },
      { match = "GetItem", kind = "error", status = 400, type = "com.amazonaws.dynamodb.v20120810#X",
        message = "two" },
    }
    local c = H.hostile_client{ max_attempts = 1 }
    local r1 = c:get_item{ TableName = "t", Key = { pk = "a" } }
    local r2, e2 = c:get_item{ TableName = "t", Key = { pk = "a" } }
    local r3, e3 = c:put_item{ TableName = "t", Item = { pk = "a" } }
    c:close()
    assert.same({ v = "one" }, r1.Item)
    assert.is_nil(r2)
    assert.equal("X", e2.code)
    assert.equal("two", e2.message)
    assert.is_nil(r3)
    assert.equal("ValidationException", e3.code)   -- nothing scripted for it
    local st = H.hostile_stats()
    assert.equal(3, st.requests)
    assert.equal(2, st.targets["DynamoDB_20120810.GetItem"])
    assert.equal(1, st.targets["DynamoDB_20120810.PutItem"])
    assert.equal(1, st.unscripted)
    assert.equal(0, st.pending)
  end)

  it("sends nothing a client did not ask for: a refused call leaves the count at 0", function()
    H.hostile_script{ { body = "{}", forever = true } }
    local c = H.hostile_client()
    assert.has_error(function() c:get_item("not a table") end)
    c:close()
    assert.equal(0, H.hostile_stats().requests)
  end)
end)
