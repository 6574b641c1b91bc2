-- One process of the rate-limit layouts benchmark (bench_ratelimit_layouts.lua,
-- `make bench`), Lua 5.4 or LuaJIT, blocking runtime:
--
--   bench_ratelimit_worker.lua ENDPOINT TABLE RESOURCE LAYOUT LIMIT WINDOW_MS START_MS RUN_MS OUTFILE
--
-- LAYOUT "node" or "native": ddbkit.ratelimit.new{ layout = LAYOUT, ... }
-- (a ddbkit.ratelimit that does not know the option yet is given none for
-- "node", its only layout, and fails for "native": exit status 3, so the
-- driver prints the row as not available).
--
-- Sleeps until the wall clock reaches START_MS (so all workers of a row start
-- together, after loading), then calls rl:acquire(RESOURCE) as fast as it
-- can until START_MS + RUN_MS: demand above the limit. After a refusal or an
-- error it waits a random 0..5 ms (through the runtime), as a polite caller
-- would, so eight refused processes do not take the two cores from
-- DynamoDB Local and the proxy.
--
-- Writes OUTFILE: one line per grant, "G <granted_ms>", then one line
--   S decisions=N grants=G refusals=R errors=E req_grants=X req_refusals=Y
--     zero_req=Z cpu_s=C first_ms=F last_ms=L requests_stats=Q err_codes=...
-- <granted_ms>: for the Node layout, the last wall-clock now_ms the acquire
-- read through the runtime (the slot's stamp: the time its window check
-- uses; the wall clock at return if it read none); for the native layout,
-- the wall clock when acquire returned (a lease's grant is spent in memory
-- during the call, after any write the call made, so this is at or after
-- the spend: the strict choice). req_*: HTTP requests sent during grants / refusals, counted by
-- wrapping the runtime's send (every attempt, retries included; checked
-- against client:stats().requests at the end, requests_stats). zero_req:
-- decisions that sent no request. req_call_ms: wall time spent inside
-- calls that sent a request (the process asks nothing else meanwhile).
-- cpu_s: os.clock() over the loop (the
-- process's user+sys), so it includes this file's own bookkeeping.
-- Exit 0 when done, 1 on a failure (why on stderr), 3 for a layout this
-- ddbkit does not have.
local ddbkit = require "ddbkit"
local blocking = require "ddbkit.runtime.blocking"

local endpoint, tname, resource, layout = arg[1], arg[2], arg[3], arg[4]
local limit, window_ms, start_ms, run_ms = tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7]), tonumber(arg[8])
local outfile = arg[9]
if not (endpoint and tname and resource and (layout == "node" or layout == "native")
        and limit and window_ms and start_ms and run_ms and outfile) then
  io.stderr:write("usage: bench_ratelimit_worker.lua ENDPOINT TABLE RESOURCE node|native LIMIT WINDOW_MS "
                  .. "START_MS RUN_MS OUTFILE\n")
  os.exit(2)
end

local function fail(fmt, ...)
  io.stderr:write("bench_ratelimit_worker: " .. fmt:format(...) .. "\n")
  os.exit(1)
end

local last_now, sent = nil, 0
local runtime = {
  sleep = blocking.sleep, mono_ms = blocking.mono_ms,
  send = function(...)
    sent = sent + 1
    return blocking.send(...)
  end,
  now_ms = function()
    last_now = blocking.now_ms()
    return last_now
  end,
}

local client, cerr = ddbkit.client{
  region = "us-east-1", endpoint = endpoint, timeout_ms = 5000, runtime = runtime,
  credentials = { access_key_id = "ddbkitbench", secret_access_key = "x" },
}
if not client then fail("client: %s", tostring(cerr)) end

local function make(with_layout)
  return pcall(ddbkit.ratelimit.new, { client = client, table_name = tname,
    layout = with_layout and layout or nil,
    default_config = { limit = limit, window_ms = window_ms } })
end
local ok, rl = make(true)
if not ok then
  if not tostring(rl):find("opts.layout", 1, true) then fail("ratelimit.new: %s", tostring(rl)) end
  if layout ~= "node" then
    io.stderr:write("bench_ratelimit_worker: this ddbkit.ratelimit has no layout option: " .. tostring(rl) .. "\n")
    os.exit(3)
  end
  ok, rl = make(false)        -- before the option existed, "node" was the only layout
  if not ok then fail("ratelimit.new: %s", tostring(rl)) end
end

-- LuaJIT starts every process on the same random sequence
math.randomseed(tonumber(require("ddbkit.core").uuid():sub(1, 8), 16))

local wait = start_ms - blocking.now_ms()
if wait > 0 then blocking.sleep(wait) end
local deadline = blocking.mono_ms() + (start_ms + run_ms - blocking.now_ms())

-- The Node layout stamps a grant's slot with the now_ms it read for the
-- winning transaction: its windows are counted on that stamp. A native
-- grant is spent in memory during the call, after any write it needed:
-- the wall clock at return is at or after the spend (strict for the check).
local stamp_of_read = layout == "node"
local grants_ts, ng = {}, 0
local decisions, refusals, errors, req_grants, req_refusals, zero_req = 0, 0, 0, 0, 0, 0
local codes = {}
local req_call_ms = 0      -- wall time inside calls that sent a request
local first_ms = blocking.now_ms()
local c0 = os.clock()
while blocking.mono_ms() < deadline do
  last_now = nil
  local s0, m0 = sent, blocking.mono_ms()
  local got, err = rl:acquire(resource)
  local n = sent - s0
  if n > 0 then req_call_ms = req_call_ms + (blocking.mono_ms() - m0) end
  if got == nil then
    errors = errors + 1
    local code = type(err) == "table" and tostring(err.code) or tostring(err)
    codes[code] = (codes[code] or 0) + 1
    blocking.sleep(math.random(0, 5))
  else
    decisions = decisions + 1
    if n == 0 then zero_req = zero_req + 1 end
    if got then
      ng = ng + 1
      grants_ts[ng] = (stamp_of_read and last_now) or blocking.now_ms()
      req_grants = req_grants + n
    else
      refusals = refusals + 1
      req_refusals = req_refusals + n
      blocking.sleep(math.random(0, 5))
    end
  end
end
local cpu_s = os.clock() - c0
local last_ms = blocking.now_ms()

local out = io.open(outfile, "w") or fail("cannot write %s", outfile)
local lines = {}
for i = 1, ng do lines[i] = ("G %.0f"):format(grants_ts[i]) end
local ct = {}
for k, v in pairs(codes) do ct[#ct + 1] = k .. ":" .. v end
table.sort(ct)
-- What the requests were: per operation, requests and retries; then the
-- error codes the client saw (retried ones included).
local st = client:stats()
local ops = {}
for op, o in pairs(st.operations or {}) do ops[#ops + 1] = ("%s:%d:%d"):format(op, o.requests, o.retries) end
table.sort(ops)
local ecs = {}
for code, n in pairs(st.error_codes or {}) do ecs[#ecs + 1] = code .. ":" .. tostring(n) end
table.sort(ecs)
lines[#lines + 1] = ("S decisions=%d grants=%d refusals=%d errors=%d req_grants=%d req_refusals=%d zero_req=%d "
  .. "cpu_s=%.6f req_call_ms=%.0f first_ms=%.0f last_ms=%.0f requests_stats=%d requests_sent=%d err_codes=%s ops=%s seen_codes=%s")
  :format(decisions, ng, refusals, errors, req_grants, req_refusals, zero_req, cpu_s, req_call_ms, first_ms, last_ms,
          st.requests, sent, #ct > 0 and table.concat(ct, ",") or "-", #ops > 0 and table.concat(ops, ",") or "-",
          #ecs > 0 and table.concat(ecs, ",") or "-")
out:write(table.concat(lines, "\n"), "\n")
out:close()
client:close()
os.exit(0)
