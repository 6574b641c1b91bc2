-- ddbkit.scheduler: the default scheduler of a Lua state, which the
-- coroutine runtime (ddbkit.runtime.coroutine) and ddbkit.spawn / step /
-- fds / run / register use. Tasks are coroutines; a call in a task is
-- submitted to the engine's event loop (core.loop_new) and the task yields
-- until its completion; a sleep is a timer on the monotonic clock. Every
-- resume happens here, in Lua, from step: the loop's step only returns the
-- completions (so nothing yields across a C call, LuaJIT included).
--
--   local ddbkit = require "ddbkit"
--   local client = ddbkit.client{ runtime = require "ddbkit.runtime.coroutine" }
--   local t = ddbkit.spawn(function(key) return client:get_item{ ... } end, "k")
--   while ddbkit.step(50) > 0 do end        -- or a host's poll on ddbkit.fds()
--   local ok, res, err = t:result()
--
-- Per call: one submit, one yield, one resume, no closure and no table of
-- the scheduler's own (the task is the loop's token; a task has at most one
-- call or sleep at a time). The loop is made on the first call.
--
-- Limits, named where they live: a call made from a coroutine that the task
-- itself created (a coroutine.wrap iterator, say) is outside the task and
-- raises; a registered coroutine that its host abandons while suspended stays in the
-- scheduler's table of tasks.
local core = require "ddbkit.core"

local type, error, select, pcall, tostring, setmetatable =
      type, error, select, pcall, tostring, setmetatable
local co_create, co_resume, co_yield, co_running, co_status =
      coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local ceil, huge = math.ceil, math.huge
local unpack = table.unpack or unpack   -- luacheck: ignore
local mono_ms, sleep_ms = core.mono_ms, core.sleep_ms
local traceback = debug.traceback

local _M = { _VERSION = "0.1.0" }

local OUTSIDE_CALL = "ddbkit: a call outside a ddbkit task would block; use ddbkit.spawn"
local OUTSIDE_SLEEP = "ddbkit: a sleep outside a ddbkit task would block; use ddbkit.spawn"

-- One default scheduler per Lua state: this module's upvalues.
local loop               -- core loop, made by the first call
local by_co = {}         -- coroutine -> its live task
local ready, rhead, rtail = {}, 1, 0   -- FIFO of tasks to start or continue
local heap, nheap = {}, 0              -- sleeping tasks, earliest wake first
local registered, nregistered = {}, 0  -- host coroutines not yet seen finished
local live = 0           -- tasks not done
local in_flight, max_in_flight = 0, 0
local stepping = false
local wake_seq = 0

-- Task states: "ready" (queued), "running", "call" (a call in flight),
-- "sleep" (a timer), "host" (a registered coroutine in its host's hands,
-- or suspended by a yield of its own), "done".
local Task = {}
Task.__index = Task

--- task:done() -> boolean
function Task:done()
  if self.state ~= "done" and self.registered and co_status(self.co) == "dead" then
    return true   -- finished in its host's resume; step records it
  end
  return self.state == "done"
end

--- task:result() -> true, ...returns | false, err | nil, "not done"
function Task:result()
  if not self:done() then return nil, "ddbkit: the task is not done" end
  if self.ok == nil then return true end   -- a registered coroutine its host finished
  if not self.ok then return false, self.err end
  local r = self.res
  return true, unpack(r, 1, r.n)
end

-- Marks task done: it leaves every table that finds it by its coroutine.
local function finish(task, ok, err, res)
  task.state = "done"
  task.ok, task.err, task.res = ok, err, res
  by_co[task.co] = nil
  live = live - 1
end

-- The default report of a task's error: one line on stderr with the
-- traceback. Replace _M.on_error(task, err, traceback_text) to log elsewhere.
function _M.on_error(_, _, tb)
  io.stderr:write("ddbkit: a task failed: ", tb, "\n")
end

local function report(task, err)
  local ok, why = pcall(_M.on_error, task, err, traceback(task.co, tostring(err)))
  if not ok then io.stderr:write("ddbkit: on_error failed: ", tostring(why), "\n") end
end

local function enqueue(task)
  task.state = "ready"
  rtail = rtail + 1
  ready[rtail] = task
end

--- task:cancel() -> true | false (already done)
-- A cancelled task is done with result false, "cancelled"; it is never
-- resumed again. Its call in flight is aborted (the connection is closed,
-- a retry's backoff dropped), though a request already sent may still
-- have been carried out by DynamoDB. A task that cancels itself stops at
-- its next call or sleep (or ends as cancelled if it returns first).
function Task:cancel()
  if self.state == "done" then return false end
  self.cancelled = true
  if self.state == "call" then loop:cancel(self) end   -- comes back from step
  if self.state ~= "running" then finish(self, false, "cancelled") end
  return true
end

-- What a resume of task's coroutine returned.
local function settle(task, ok, ...)
  if task.cancelled then
    if task.state ~= "done" then finish(task, false, "cancelled") end
    return
  end
  if not ok then
    local err = ...
    finish(task, false, err)
    report(task, err)
  elseif co_status(task.co) == "dead" then
    finish(task, true, nil, { n = select("#", ...), ... })
  elseif task.state == "running" then
    -- a yield not through ddbkit: a spawned task waits its next turn; a
    -- registered one goes back to its host
    if task.registered then task.state = "host" else enqueue(task) end
  end
end

local function resume(task, a, b, c)
  task.state = "running"
  return settle(task, co_resume(task.co, a, b, c))
end

local function start(task)
  local args = task.args
  task.args = nil
  task.state = "running"
  return settle(task, co_resume(task.co, unpack(args, 1, args.n)))
end

-- Timers: a binary heap of tasks keyed by (wake_at, wake_seq).
local function earlier(a, b)
  return a.wake_at < b.wake_at or (a.wake_at == b.wake_at and a.wake_seq < b.wake_seq)
end

local function heap_push(task)
  nheap = nheap + 1
  local i = nheap
  while i > 1 do
    local p = (i - i % 2) / 2
    if not earlier(task, heap[p]) then break end
    heap[i] = heap[p]
    i = p
  end
  heap[i] = task
end

local function heap_pop()
  local top, last = heap[1], heap[nheap]
  heap[nheap] = nil
  nheap = nheap - 1
  if nheap > 0 then
    local i = 1
    while true do
      local c = 2 * i
      if c > nheap then break end
      if c < nheap and earlier(heap[c + 1], heap[c]) then c = c + 1 end
      if not earlier(heap[c], last) then break end
      heap[i] = heap[c]
      i = c
    end
    heap[i] = last
  end
  return top
end

local function new_task(co)
  local task = setmetatable({ co = co, state = "ready" }, Task)
  by_co[co] = task
  live = live + 1
  return task
end

--- ddbkit.spawn(fn, ...) -> task: runs fn(...) as a task from the next step.
function _M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local task = new_task(co_create(fn))
  task.args = { n = select("#", ...), ... }
  enqueue(task)
  return task
end

--- ddbkit.register(co) -> task: adopts a coroutine its host resumes first;
-- ddbkit resumes it when a call or sleep of it finishes (the host must not
-- resume it meanwhile: task:done() and the yield tell the host nothing, so
-- a host resumes it again only once it yields for the host's own reasons).
function _M.register(co)
  if type(co) ~= "thread" then
    error("bad argument #1 to 'register' (coroutine expected, got " .. type(co) .. ")", 2)
  end
  if co_status(co) == "dead" then error("bad argument #1 to 'register' (dead coroutine)", 2) end
  local task = by_co[co]
  if task then return task end
  task = new_task(co)
  task.state, task.registered = "host", true
  nregistered = nregistered + 1
  registered[nregistered] = task
  return task
end

-- The task of the running coroutine, or nil.
local function current()
  return by_co[co_running() or false]
end

local function the_loop()
  if not loop then
    local l, err = core.loop_new()
    if not l then return nil, err end
    loop = l
  end
  return loop
end

-- Waits in task for its call's completion: returns result, err, raw.
local function wait_call(task)
  in_flight = in_flight + 1
  if in_flight > max_in_flight then max_in_flight = in_flight end
  task.state = "call"
  return co_yield()
end

--- runtime send(core_client, op, params) -> result | nil, err
function _M.send(cc, op, params)
  local task = current()
  if not task then error(OUTSIDE_CALL, 2) end
  if task.cancelled then return co_yield() end   -- never resumed
  local l, lerr = loop or the_loop()
  if not l then return nil, lerr end
  local ok, err = l:submit(cc, op, params, task)
  if not ok then return nil, err end
  return wait_call(task)
end

--- runtime call_raw(core_client, op, json) -> body | nil, err, err_body
function _M.call_raw(cc, op, json)
  local task = current()
  if not task then error(OUTSIDE_CALL, 2) end
  if task.cancelled then return co_yield() end
  local l, lerr = loop or the_loop()
  if not l then return nil, lerr end
  local ok, err = l:submit_raw(cc, op, json, task)
  if not ok then return nil, err end
  return wait_call(task)
end

--- runtime sleep(ms): a timer; other tasks run meanwhile. sleep(0) yields
-- to the tasks that are ready.
function _M.sleep(ms)
  local task = current()
  if not task then error(OUTSIDE_SLEEP, 2) end
  if task.cancelled then return co_yield() end
  if type(ms) ~= "number" or ms ~= ms then
    error("bad argument #1 to 'sleep' (number expected, got " .. tostring(ms) .. ")", 2)
  end
  if ms <= 0 then
    enqueue(task)
  else
    wake_seq = wake_seq + 1
    task.wake_at, task.wake_seq, task.state = mono_ms() + ms, wake_seq, "sleep"
    heap_push(task)
  end
  co_yield()
end

-- Runs the tasks that were ready when it started (one that yields again
-- waits for the next step).
local function run_ready()
  local last = rtail
  while rhead <= last do
    local task = ready[rhead]
    ready[rhead] = nil
    rhead = rhead + 1
    if task.state == "ready" then
      if task.args then start(task) else resume(task) end
    end
  end
  if rhead > rtail then rhead, rtail = 1, 0 end
end

local function fire_timers()
  if nheap == 0 then return false end
  local now, fired = mono_ms(), false
  while nheap > 0 and heap[1].wake_at <= now do
    local task = heap_pop()
    if task.state == "sleep" then
      fired = true
      resume(task)
    end
  end
  return fired
end

local function deliver(comps)
  local n = #comps
  for i = 1, n do
    local c = comps[i]
    local task = c.token
    in_flight = in_flight - 1
    if task.state == "call" then resume(task, c.result, c.err, c.raw) end
  end
  return n > 0
end

-- Registered coroutines that their host ran to the end are done.
local function sweep_registered()
  local j = 0
  for i = 1, nregistered do
    local task = registered[i]
    registered[i] = nil
    if task.state ~= "done" and co_status(task.co) == "dead" then finish(task, nil) end
    if task.state ~= "done" then
      j = j + 1
      registered[j] = task
    end
  end
  nregistered = j
end

-- How long a wait may last: ms until the next timer (huge without one).
local function until_timer()
  while nheap > 0 and heap[1].state ~= "sleep" do heap_pop() end   -- cancelled
  if nheap == 0 then return huge end
  local d = ceil(heap[1].wake_at - mono_ms())
  return d > 0 and d or 0
end

local function step(timeout_ms)
  if nregistered > 0 then sweep_registered() end
  run_ready()
  local forever = timeout_ms == nil
  local budget = forever and huge or timeout_ms
  local deadline = forever and huge or mono_ms() + budget
  while true do
    local wait = budget
    if rhead <= rtail then wait = 0 end
    local t = until_timer()
    if t < wait then wait = t end
    local progressed = false
    if in_flight > 0 then
      -- a wait without deadline is done in one-second slices
      local pending, comps = loop:step(wait == huge and 1000 or wait)
      if not pending then return nil, comps end
      progressed = deliver(comps)
    elseif t == huge then
      break      -- nothing in flight, nothing timed: nothing to wait for
    elseif wait > 0 then
      sleep_ms(wait)   -- only timers left: waiting is all there is to do
    end
    if fire_timers() then progressed = true end
    if not forever or progressed or rhead <= rtail then break end
    budget = deadline - mono_ms()
  end
  if nregistered > 0 then sweep_registered() end
  return live
end

--- ddbkit.step(timeout_ms?) -> live tasks | nil, err
-- Runs the ready tasks, waits at most timeout_ms (0: not at all; nil: until
-- some task can go on, or nothing is left to wait for) for I/O or the next
-- timer, and resumes the tasks whose call or sleep finished. A task's error
-- does not escape: it is the task's result and goes to on_error.
function _M.step(timeout_ms)
  if timeout_ms ~= nil and (type(timeout_ms) ~= "number" or timeout_ms ~= timeout_ms) then
    error("bad argument #1 to 'step' (number expected, got " .. type(timeout_ms) .. ")", 2)
  end
  if stepping or current() then
    error("ddbkit.step: called from inside a task (a task waits by calling the client)", 2)
  end
  stepping = true
  local ok, n, err = pcall(step, timeout_ms and (timeout_ms > 0 and timeout_ms or 0))
  stepping = false
  if not ok then error(n, 0) end
  return n, err
end

--- ddbkit.fds() -> { { fd, read, write }, ... }, timeout_ms
-- For a host's own poll: wait on these fds for at most timeout_ms (-1: no
-- deadline), then call ddbkit.step(0).
function _M.fds()
  local fds, t
  if loop and in_flight > 0 then
    fds, t = loop:fds()
    if not fds then return nil, t end
  else
    fds, t = {}, -1
  end
  if rhead <= rtail then return fds, 0 end
  local d = until_timer()
  if d ~= huge and (t < 0 or d < t) then t = d end
  return fds, t
end

--- ddbkit.run(fn, ...) -> what task:result() returns: spawns fn and steps
-- until it is done (other tasks run meanwhile).
function _M.run(fn, ...)
  if current() then error("ddbkit.run: called from inside a task; use ddbkit.spawn", 2) end
  local task = _M.spawn(fn, ...)
  while not task:done() do
    local n, err = _M.step()
    if not n then return false, err end
  end
  return task:result()
end

--- scheduler.stats() -> { live, in_flight, max_in_flight, timers, ready }
function _M.stats()
  return { live = live, in_flight = in_flight, max_in_flight = max_in_flight,
           timers = nheap, ready = rtail - rhead + 1 }
end

--- scheduler.reset_stats(): max_in_flight starts again from what is in flight.
function _M.reset_stats()
  max_in_flight = in_flight
end

return _M
