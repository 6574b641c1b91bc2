-- Concurrency in `make bench` (issue 7): ddbkit's coroutine runtime with
-- CONC requests in flight. Runs on Lua 5.4 and on LuaJIT (run.sh sets
-- LUA_PATH/LUA_CPATH to the matching core.so).
--
--   lua5.4|luajit tests/bench/bench_conc.lua ENDPOINT TARGET CLIENT CONC N WARMUP
--
-- One client made with runtime = require "ddbkit.runtime.coroutine"; CONC
-- tasks (ddbkit.spawn), each looping
--   client:get_item{ TableName = "bench", Key = { pk = "p1" } }
-- (the Item decoded into a Lua table and checked) while requests are left
-- of a shared count, driven by ddbkit.step until every task is done: so
-- CONC calls are in flight at once, on the engine's event loop, until the
-- count runs out. First WARMUP requests that way (at least 4 x CONC, so
-- every connection is open), unmeasured; then N, measured. Prints one line:
--   RESULT target=TARGET client=CLIENT bench=conc conc=CONC n=N
--          cpu_us_per_req=X req_per_s=Y req_per_cpu_s=Z max_in_flight=M
--          requests=R
-- CPU is os.clock() (the process's CPU time, user+sys, every thread) over
-- the measured part, from before the tasks are spawned to after the last
-- one is done; wall time is ddbkit.core.mono_ms() over the same part.
-- max_in_flight is the scheduler's peak of calls in flight in that part
-- (scheduler.stats()), requests the client's HTTP requests in it
-- (client:stats(), retries included; it must equal N).
local ddbkit = require "ddbkit"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local scheduler = require "ddbkit.scheduler"
local corort = require "ddbkit.runtime.coroutine"

local endpoint, target, name = arg[1], arg[2], arg[3]
local conc, n, warmup = tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
if not (endpoint and target and name and conc and n and warmup) or conc < 1 or n < conc
   or warmup < 0 then
  io.stderr:write("usage: bench_conc.lua ENDPOINT TARGET CLIENT CONC N WARMUP (N >= CONC >= 1)\n")
  os.exit(2)
end
if warmup < 4 * conc then warmup = 4 * conc end

local die = common.die_for("bench_conc")

local c = common.client(endpoint, {
  runtime = corort,
  -- Up to CONC connects at once: DynamoDB Local's listen backlog is 50, and
  -- a dropped SYN is resent after 1 s (the default connect timeout).
  connect_timeout_ms = 5000,
})

local params = { TableName = "bench", Key = { pk = "p1" } }
local left = 0   -- requests not yet started, shared by the tasks

local function worker()
  local done = 0
  while left > 0 do
    left = left - 1
    local res, err = c:get_item(params)
    if not res then error(("request: %s"):format(tostring(err)), 0) end
    if not (res.Item and res.Item.pk == "p1") then
      error("no item p1 in the response", 0)
    end
    done = done + 1
  end
  return done
end

local tasks = {}

-- count requests over CONC tasks; returns when every task is done.
local function run(count)
  left = count
  for i = 1, conc do tasks[i] = ddbkit.spawn(worker) end
  while true do
    local live, err = ddbkit.step(1000)
    if not live then die("step: %s", tostring(err)) end
    if live == 0 then break end
  end
end

local function check(count, phase)
  local total = 0
  for i = 1, conc do
    local ok, done = tasks[i]:result()
    if not ok then die("%s: task %d failed: %s", phase, i, tostring(done)) end
    total = total + done
  end
  if total ~= count then die("%s: %d requests done, %d expected", phase, total, count) end
end

run(warmup)
check(warmup, "warm-up")
scheduler.reset_stats()
local cpu_us, per_s, requests = common.measure(c, n, run, n)
check(n, "measured")
local peak = scheduler.stats().max_in_flight

print(("RESULT target=%s client=%s bench=conc conc=%d n=%d cpu_us_per_req=%.2f req_per_s=%.0f req_per_cpu_s=%.0f max_in_flight=%d requests=%d")
  :format(target, name, conc, n, cpu_us, per_s, cpu_us > 0 and 1e6 / cpu_us or 0, peak,
          requests))
c:close()
