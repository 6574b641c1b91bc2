-- Conditional locks (ddbkit.lock) in `make bench`, against DynamoDB Local
-- only. Runs on Lua 5.4 and on LuaJIT (run.sh sets LUA_PATH/LUA_CPATH to the
-- matching core.so). Four modes:
--
--   bench_lock.lua pairs  ENDPOINT TABLE KEY CLIENT N WARMUP
--       Uncontended: WARMUP unmeasured, then N measured pairs of
--       acquire{ lease_ms = 5000 } + release on the lock item { pk = KEY }.
--       Prints one line:
--         RESULT target=ddblocal client=CLIENT bench=lock-pair n=N
--                requests_per_pair=X cpu_us_per_pair=Y pairs_per_s=Z
--       requests are client:stats().requests (every HTTP request sent,
--       retries included), CPU is os.clock() (user+sys of the process), wall
--       time is ddbkit.core.mono_ms(), all over the measured loop only.
--
--   bench_lock.lua worker ENDPOINT TABLE KEY ID COUNT START_MS DURATION_MS OUT
--       One of the contending processes: sleeps until the wall clock reaches
--       START_MS (epoch ms, so that all workers start together), then does
--       acquire{ lease_ms = 5000, wait_ms = 30000 } + release until it has
--       COUNT grants or DURATION_MS have passed. A wait that runs out
--       (err.code == "busy") is contention and is counted; any other error
--       ends the worker with exit status 1 and the error on stderr. Writes
--       its holding intervals (monotonic ms: acquire returned .. release
--       called) to OUT and prints one line:
--         WORKER id=ID grants=G busy=B requests=R cpu_us=C t0=T0 t1=T1
--       t0/t1: ddbkit.core.mono_ms() (CLOCK_MONOTONIC, the same clock in
--       every process) at the start and the end of its loop.
--
--   bench_lock.lua fence ENDPOINT TABLE KEY
--       Prints "FENCE n": the lock item's fence (0 when there is no item);
--       every acquire adds one, so the difference over a run is the number
--       of grants DynamoDB actually made.
--
--   bench_lock.lua check OUT...
--       Reads the workers' interval files and prints
--         CHECK intervals=N overlaps=K
--       Two processes' intervals must never overlap: a grant is certain
--       from when acquire returns until release is called.
local ddbkit = require "ddbkit"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local core = require "ddbkit.core"

local mode = arg[1]
local LEASE_MS, WAIT_MS = 5000, 30000

local die = common.die_for("bench_lock")

local function usage()
  io.stderr:write([[
usage: bench_lock.lua pairs  ENDPOINT TABLE KEY CLIENT N WARMUP
       bench_lock.lua worker ENDPOINT TABLE KEY ID COUNT START_MS DURATION_MS OUT
       bench_lock.lua fence  ENDPOINT TABLE KEY
       bench_lock.lua check  OUT...
]])
  os.exit(2)
end

local whole = common.whole

-- ------------------------------------------------------------ pairs

local function run_pairs(endpoint, tbl, key, name, n, warmup)
  local c = common.client(endpoint)
  local locks = ddbkit.lock.new{ client = c, table_name = tbl, key = { pk = key } }
  local opts = { lease_ms = LEASE_MS }
  local last_fence

  local function loop(count, phase)
    for i = 1, count do
      local h, err = locks:acquire(opts)
      if not h then
        die("%s %s pair %d: acquire of an uncontended lock failed: %s", name, phase, i, tostring(err))
      end
      -- Nobody else touches this item: the fence grows by exactly one.
      if last_fence and h.fence ~= last_fence + 1 then
        die("%s %s pair %d: fence %s after %s (expected +1)", name, phase, i,
            tostring(h.fence), tostring(last_fence))
      end
      last_fence = h.fence
      local ok, rerr = h:release()
      if not ok then
        die("%s %s pair %d: release failed: %s", name, phase, i, tostring(rerr))
      end
    end
  end

  loop(warmup, "warm-up")
  local cpu_us, per_s, requests = common.measure(c, n, loop, n, "measured")

  print(("RESULT target=ddblocal client=%s bench=lock-pair n=%d requests_per_pair=%.3f cpu_us_per_pair=%.2f pairs_per_s=%.0f")
    :format(name, n, requests / n, cpu_us, per_s))
  c:close()
end

-- ----------------------------------------------------------- worker

local function run_worker(endpoint, tbl, key, id, count, start_ms, duration_ms, out)
  local c = common.client(endpoint)
  local locks = ddbkit.lock.new{ client = c, table_name = tbl, key = { pk = key } }
  local opts = { lease_ms = LEASE_MS, wait_ms = WAIT_MS }
  local f, ferr = io.open(out, "w")
  if not f then die("worker %s: %s", id, tostring(ferr)) end

  local wait = start_ms - core.now_ms()
  if wait > 0 then core.sleep_ms(wait) end

  local grants, busy, last_fence = 0, 0, nil
  local holds = {}
  local r0 = c:stats().requests
  local c0, t0 = os.clock(), core.mono_ms()
  local stop_at = t0 + duration_ms
  while grants < count and core.mono_ms() < stop_at do
    local h, err = locks:acquire(opts)
    if h then
      local got = core.mono_ms()
      -- Fences are global: another process's grants come in between, but
      -- ours must still only grow.
      if last_fence and not (h.fence > last_fence) then
        die("worker %s grant %d: fence %s did not grow past %s", id, grants + 1,
            tostring(h.fence), tostring(last_fence))
      end
      last_fence = h.fence
      local before = core.mono_ms()
      local ok, rerr = h:release()
      if not ok then
        die("worker %s grant %d: release failed: %s", id, grants + 1, tostring(rerr))
      end
      grants = grants + 1
      holds[#holds + 1] = ("%.3f %.3f %d\n"):format(got, before, h.fence)
    elseif err and err.code == "busy" then
      busy = busy + 1 -- waited wait_ms without getting it: contention
    else
      die("worker %s: acquire failed (not contention): %s (code %s, status %s)", id,
          tostring(err), tostring(err and err.code), tostring(err and err.status))
    end
  end
  local c1, t1 = os.clock(), core.mono_ms()
  local r1 = c:stats().requests

  f:write(table.concat(holds))
  f:close()
  print(("WORKER id=%s grants=%d busy=%d requests=%d cpu_us=%.0f t0=%.3f t1=%.3f")
    :format(id, grants, busy, r1 - r0, (c1 - c0) * 1e6, t0, t1))
  c:close()
end

-- ------------------------------------------------------------ fence

local function run_fence(endpoint, tbl, key)
  local c = common.client(endpoint)
  local res, err = c:get_item{ TableName = tbl, Key = { pk = key }, ConsistentRead = true }
  if not res then die("fence: %s", tostring(err)) end
  local fence = res.Item and res.Item.fence or 0
  print(("FENCE %d"):format(fence))
  c:close()
end

-- ------------------------------------------------------------ check

local function run_check(files)
  local all = {}
  for w, path in ipairs(files) do
    local f, err = io.open(path, "r")
    if not f then die("check: %s", tostring(err)) end
    for line in f:lines() do
      local a, b, fence = line:match("^(%S+) (%S+) (%S+)$")
      if not a then die("check: %s: bad line %q", path, line) end
      all[#all + 1] = { tonumber(a), tonumber(b), w, tonumber(fence) }
    end
    f:close()
  end
  table.sort(all, function(x, y) return x[1] < y[1] end)
  local overlaps, fences = 0, {}
  local reach, reach_w = -math.huge, nil -- the furthest end so far, and whose
  for _, iv in ipairs(all) do
    if iv[1] < reach and iv[3] ~= reach_w then
      overlaps = overlaps + 1
      if overlaps <= 5 then
        io.stderr:write(("bench_lock: check: worker %d held from %.3f while worker %d held until %.3f\n")
          :format(iv[3], iv[1], reach_w, reach))
      end
    end
    if iv[2] > reach then reach, reach_w = iv[2], iv[3] end
    if fences[iv[4]] then
      overlaps = overlaps + 1
      io.stderr:write(("bench_lock: check: fence %d granted twice\n"):format(iv[4]))
    end
    fences[iv[4]] = true
  end
  print(("CHECK intervals=%d overlaps=%d"):format(#all, overlaps))
end

-- ------------------------------------------------------------- main

if mode == "pairs" then
  local n, warmup = whole(arg[6]), whole(arg[7])
  if not (arg[2] and arg[3] and arg[4] and arg[5] and n and warmup) or n < 1 then usage() end
  run_pairs(arg[2], arg[3], arg[4], arg[5], n, warmup)
elseif mode == "worker" then
  local count, start_ms, duration_ms = whole(arg[6]), whole(arg[7]), whole(arg[8])
  if not (arg[2] and arg[3] and arg[4] and arg[5] and count and start_ms and duration_ms
          and arg[9]) then
    usage()
  end
  run_worker(arg[2], arg[3], arg[4], arg[5], count, start_ms, duration_ms, arg[9])
elseif mode == "fence" then
  if not (arg[2] and arg[3] and arg[4]) then usage() end
  run_fence(arg[2], arg[3], arg[4])
elseif mode == "check" then
  if #arg < 2 then usage() end
  local files = {}
  for i = 2, #arg do files[#files + 1] = arg[i] end
  run_check(files)
else
  usage()
end
