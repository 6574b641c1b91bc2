-- ddbkit.ratelimit's native layout (lua/ddbkit/ratelimit/native.lua):
-- leases taken with one conditional write, decisions in memory.
--
-- Single-process cases run on a client whose wall and monotonic clocks are
-- one number the spec moves (H.clock_client): they assert request counts
-- and answers, never timings. The multi-process case runs 8 OS processes
-- (ratelimit_native_worker.lua) against DynamoDB Local, records the wall
-- time of every grant and checks every sliding window. The hot-key case
-- runs through the fault proxy's partition simulator.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local cjson = require "cjson.safe"
local native = require "ddbkit.ratelimit.native"

local shell_quote, spec_dir, interpreter, bounded, mktemp_dir =
  H.shell_quote, H.spec_dir, H.interpreter, H.bounded, H.mktemp_dir

local admin, T, dir

setup(function()
  admin = H.client()
  T = H.store_table(admin, "rln")
  dir = mktemp_dir()
end)

teardown(function()
  admin:delete_table{ TableName = T }
  admin:close()
  if dir then os.execute("env -u LD_PRELOAD rm -rf " .. shell_quote(dir)) end
end)

local function item_of(resource)
  local res = assert(admin:get_item{ TableName = T, ConsistentRead = true,
                                     Key = { pk = "RLN#" .. resource, sk = "RLN#" .. resource } })
  return res.Item
end

-- The bytes DynamoDB counts for an item: attribute names + values.
local function item_bytes(item)
  local n = 0
  for k, v in pairs(item) do n = n + #k + #tostring(v) end
  return n
end

local function clocked(state, opts)
  local c = H.clock_client(state)
  local o = { client = c, table_name = T, layout = "native" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return ddbkit.ratelimit.new(o), c
end

describe("ddbkit.ratelimit native layout, one process", function()
  it("is chosen by layout = \"native\"; the default stays the Node layout; a bad layout raises", function()
    local c = H.client()
    local node = ddbkit.ratelimit.new{ client = c, table_name = T }
    assert.is_nil(node.layout)
    local n = ddbkit.ratelimit.new{ client = c, table_name = T, layout = "native" }
    assert.equals("native", n.layout)
    assert.has_error(function() ddbkit.ratelimit.new{ client = c, layout = "fast" } end,
      'ddbkit.ratelimit.new: opts.layout must be "node" or "native", got fast')
    assert.has_error(function() ddbkit.ratelimit.new{ client = c, layout = "native", lease_ms = -1 } end)
    assert.has_error(function() n:record("r") end,
      "ddbkit.ratelimit:record is not supported by the native layout (it has no log items; acquire records the grant)")
    c:close()
  end)

  it("grants exactly the limit, then refuses with 0 requests until the first bucket is due, with that wait", function()
    local state = { T = 1700000000000 }
    local rl, c = clocked(state, { default_config = { limit = 50, window_ms = 1000 } })
    local grants = 0
    c:reset_stats()
    for _ = 1, 200 do
      local ok = rl:acquire("full")
      assert(ok ~= nil)
      if ok then grants = grants + 1 end
    end
    assert.equals(50, grants)
    local taken = c:stats().requests
    assert.is_true(taken <= 8, taken .. " writes for 50 grants")   -- leases grow with demand
    -- known full: refusals, waits and can_proceed cost nothing
    local n, ok = H.requests(c, function() return rl:acquire("full") end)
    assert.equals(0, n); assert.is_false(ok)
    local wait
    n, wait = H.requests(c, function() return rl:get_wait_time("full") end)
    assert.equals(0, n)
    -- the first bucket's end is at most now + 1 + L + g (L = 250, g = 42)
    assert.is_true(wait > 1000 and wait <= 1000 + 1 + 250 + 42 + 1, "wait " .. wait)
    n, ok = H.requests(c, function() return rl:can_proceed("full") end)
    assert.equals(0, n); assert.is_false(ok)
    -- one ms before it is due: still refused for free; when due: granted
    state.T = state.T + wait - 1
    n, ok = H.requests(c, function() return rl:acquire("full") end)
    assert.equals(0, n); assert.is_false(ok)
    state.T = state.T + 1
    assert.is_true(rl:acquire("full"))
    c:close()
  end)

  it("another process sees the window full from the item (1 request), then refuses for free", function()
    local state = { T = 1700000100000 }
    local a, ca = clocked(state, { default_config = { limit = 20, window_ms = 1000 } })
    local b, cb = clocked(state, { default_config = { limit = 20, window_ms = 1000 } })
    local grants = 0
    for _ = 1, 100 do if a:acquire("shared") then grants = grants + 1 end end
    assert.equals(20, grants)
    local n, ok = H.requests(cb, function() return b:acquire("shared") end)
    assert.equals(1, n); assert.is_false(ok)           -- its first write lost the race: ALL_OLD says full
    n, ok = H.requests(cb, function() return b:acquire("shared") end)
    assert.equals(0, n); assert.is_false(ok)
    assert.equals(0, assert(b:get_status("shared")).remaining)
    ca:close(); cb:close()
  end)

  -- Races lost to other processes: a PutItem hook bumps the item's version
  -- (another process's write, through another client) before each of the
  -- first `losses` writes of the store under test.
  local function racing(state, resource, losses)
    local other = H.client()
    local pk = "RLN#" .. resource
    local writes = 0
    state.slept = {}
    state.hooks = { PutItem = function(params)
      if params.Item.pk ~= pk then return end
      writes = writes + 1
      if writes <= losses then
        assert(other:update_item{ TableName = T, Key = { pk = pk, sk = pk },
          UpdateExpression = "SET v = v + :one", ConditionExpression = "attribute_exists(pk)",
          ExpressionAttributeValues = { [":one"] = 1 } })
      end
    end }
    return function() return writes end, other
  end

  for _, losses in ipairs({ 5, 9 }) do
    it(string.format("a take that loses %d races in a row with capacity free backs off and is granted", losses), function()
      local state = { T = 1700000200000 }
      local a = clocked(state, { default_config = { limit = 1000000, window_ms = 1000 } })
      local res = "race" .. losses
      assert.is_true(a:acquire(res))            -- the item exists: later writes are conditioned on v
      local b, cb = clocked(state, { default_config = { limit = 1000000, window_ms = 1000 } })
      local writes, other = racing(state, res, losses)
      local n, ok = H.requests(cb, function() return b:acquire(res) end)
      assert.is_true(ok)                        -- not false: the window was never full
      assert.equals(losses + 1, n); assert.equals(losses + 1, writes())
      -- a backoff after every loss, within the cap for its place in the row
      -- (the clock stands still here: a round trip counts as its floor, 1 ms)
      assert.equals(losses, #state.slept)
      for k, ms in ipairs(state.slept) do
        assert.is_true(ms >= 0 and ms <= math.min(1000 / 8, 2 ^ (k - 1)), "sleep " .. k .. ": " .. ms)
      end
      other:close(); cb:close()
    end)
  end

  it("a take that loses every race refuses, learns nothing, and the next call takes again", function()
    local state = { T = 1700000300000 }
    local a = clocked(state, { default_config = { limit = 1000000, window_ms = 1000 } })
    assert.is_true(a:acquire("race-all"))
    local b, cb = clocked(state, { default_config = { limit = 1000000, window_ms = 1000 } })
    local writes, other = racing(state, "race-all", 1000)
    assert.is_false(b:acquire("race-all"))
    assert.equals(native.MAX_WRITES, writes())
    assert.equals(native.MAX_WRITES - 1, #state.slept)    -- a backoff after every loss but the last
    -- not learnt as full: the next call writes again and, the race over, is granted
    state.hooks = nil
    local n, ok = H.requests(cb, function() return b:acquire("race-all") end)
    assert.equals(1, n); assert.is_true(ok)
    other:close(); cb:close()
  end)

  it("a limit of 1,000,000 works with an item of the same bounded size as a limit of 10", function()
    for _, limit in ipairs({ 10, 1000000 }) do
      local state = { T = 1700000200000 }
      local rl, c = clocked(state, { default_config = { limit = limit, window_ms = 1000 } })
      local res = "big" .. limit
      local grants, biggest = 0, 0
      c:reset_stats()
      for _ = 1, 200 do                     -- 200 steps of 5 ms: 1 s, 40 leases' time
        state.T = state.T + 5
        for _ = 1, 2000 do if rl:acquire(res) then grants = grants + 1 end end
        local item = item_of(res)
        biggest = math.max(biggest, item_bytes(item))
        assert.is_true(#native.decode(item.b) <= native.BUCKETS)
      end
      print(string.format("\n# limit %d: %d grants, %d requests, largest item %d bytes", limit, grants,
                          c:stats().requests, biggest))
      assert.is_true(biggest < 1024, "item of " .. biggest .. " bytes")
      if limit == 10 then assert.equals(10, grants) else assert.equals(400000, grants) end
      assert.is_true(c:stats().requests <= 200, c:stats().requests .. " requests")
      c:close()
    end
  end)

  it("reads only buckets it wrote: decode(b) is nil or encodes back to b (random inputs, bounded)", function()
    assert.same({ { 5, 9 }, { 1, 2 } }, { native.decode("5:1,9:2") })
    for _, bad in ipairs({ "5:1,5:2", "9:1,5:2", "05:1", "5:1,", " 5:1", "5:1;9:2", "5:-1", "5", 7,
                           "99999999999999999999:1", string.rep("1:1,", 40) .. "1:1" }) do
      assert.is_nil(native.decode(bad), tostring(bad))
    end
    local alphabet = { "0", "1", "9", ":", ",", "-", " ", "e", "." }
    local seed = 12345
    local function rnd(n) seed = (seed * 16807) % 2147483647; return seed % n + 1 end
    for _ = 1, 20000 do
      local t = {}
      for i = 1, rnd(24) - 1 do t[i] = alphabet[rnd(#alphabet)] end
      local b = table.concat(t)
      local ok, ends, sums = pcall(native.decode, b)
      assert.is_true(ok, b)
      if ends then assert.equals(b, native.encode(ends, sums)) end
    end
  end)

  -- Two processes whose wall clocks differ by D = 40 ms (B ahead); all of
  -- A's 10 grants at real time R0. B asks every real ms from R0 + 900: its
  -- first grant is when A's grants stop counting for it. With
  -- max_clock_skew_ms >= D it is at R0 + W or later (exact in real time);
  -- with 0 it may come up to D early, never more (the bound the header
  -- states: no interval of W - (D - S) holds more than the limit).
  for _, case in ipairs({ { skew = 40, earliest = 1000 }, { skew = 0, earliest = 1000 - 40 } }) do
    it(string.format("clocks 40 ms apart, max_clock_skew_ms = %d: the first grant of the other process is at R0 + %d or later",
                     case.skew, case.earliest), function()
      local real = { T = 1700000800000 }
      local R0 = real.T
      local ahead = setmetatable({}, { __index = function(_, k) if k == "T" then return real.T + 40 end end })
      local opts = { default_config = { limit = 10, window_ms = 1000 }, lease_ms = 100, max_clock_skew_ms = case.skew }
      local a, ca = clocked(real, opts)
      local b, cb = clocked(ahead, opts)
      local res = "skew" .. case.skew
      local grants = 0
      for _ = 1, 20 do if a:acquire(res) then grants = grants + 1 end end
      assert.equals(10, grants)
      local first
      for t = 900, 1200 do
        real.T = R0 + t
        local ok = b:acquire(res)
        assert.is_not_nil(ok)
        if ok then first = t; break end
      end
      print(string.format("\n# max_clock_skew_ms %d: the other process's first grant at R0 + %s", case.skew, tostring(first)))
      assert.is_not_nil(first)
      assert.is_true(first >= case.earliest, "first grant at R0 + " .. tostring(first))
      if case.skew == 0 then assert.is_true(first < 1000, "the skew was not felt: " .. first) end
      ca:close(); cb:close()
    end)
  end

  it("keeps per-resource configs", function()
    local state = { T = 1700000300000 }
    local rl, c = clocked(state, { default_config = { limit = 100, window_ms = 1000 },
                                   resource_configs = { slow = { limit = 3, window_ms = 60000 } } })
    local slow, fast = 0, 0
    for _ = 1, 50 do
      if rl:acquire("slow") then slow = slow + 1 end
      if rl:acquire("fastres") then fast = fast + 1 end
    end
    assert.equals(3, slow); assert.equals(50, fast)
    assert.same({ limit = 3, window_ms = 60000 }, rl:get_resource_config("slow"))
    assert.is_true(rl:set_resource_config("slow", { limit = 5, window_ms = 60000 }))
    for _ = 1, 50 do if rl:acquire("slow") then slow = slow + 1 end end
    assert.equals(5, slow)
    local n, wait = H.requests(c, function() return rl:get_wait_time("slow") end)
    assert.equals(0, n); assert.is_true(wait > 60000, "wait " .. wait)
    local zero = clocked(state, { default_config = { limit = 0, window_ms = 500 } })
    assert.is_false(zero:acquire("z")); assert.equals(500, zero:get_wait_time("z"))
    c:close()
  end)

  it("has the Node layout's cooldowns (same items), reset and clear", function()
    local state = { T = 1700000400000 }
    local rl, c = clocked(state, { default_config = { limit = 2, window_ms = 60000 } })
    assert.is_true(rl:set_cooldown("origin-n", state.T + 5000))
    assert.equals(state.T + 5000, rl:get_cooldown("origin-n"))
    local raw = admin:get_item{ TableName = T, Key = { pk = "COOLDOWN#origin-n", sk = "COOLDOWN#origin-n" } }.Item
    assert.equals(state.T + 5000, raw.cooldownUntil)
    assert.is_true(rl:clear_cooldown("origin-n"))
    assert.is_nil(rl:get_cooldown("origin-n"))
    assert.is_true(rl:acquire("rs")); assert.is_true(rl:acquire("rs")); assert.is_false(rl:acquire("rs"))
    assert.is_true(rl:reset("rs"))
    assert.is_nil(item_of("rs"))
    assert.is_true(rl:acquire("rs"))
    assert.is_true(rl:clear())
    assert.is_nil(item_of("rs"))
    assert.is_true(rl:acquire("rs"))
    c:close()
  end)

  it("runs on the coroutine runtime, two tasks sharing a store never over the limit", function()
    local c = H.client{ runtime = require "ddbkit.runtime.coroutine" }
    local rl = ddbkit.ratelimit.new{ client = c, table_name = T, layout = "native",
                                     default_config = { limit = 30, window_ms = 60000 } }
    local grants, errs = 0, 0
    for _ = 1, 2 do
      ddbkit.spawn(function()
        for _ = 1, 100 do
          local ok = rl:acquire("co")
          if ok then grants = grants + 1 elseif ok == nil then errs = errs + 1 end
        end
      end)
    end
    local steps = 0
    while ddbkit.step(100) > 0 and steps < 10000 do steps = steps + 1 end
    assert.equals(0, errs)
    assert.equals(30, grants)
    c:close()
  end)
end)

describe("ddbkit.ratelimit native layout, lost answers (fault proxy)", function()
  local function proxied(state, opts)
    local blocking = require "ddbkit.runtime.blocking"
    local c = H.proxied_client{ max_attempts = opts.max_attempts, base_delay_ms = 0, runtime = {
      send = blocking.send, sleep = function() end,
      now_ms = function() return state.T end, mono_ms = function() return state.T end } }
    return ddbkit.ratelimit.new{ client = c, table_name = T, layout = "native",
                                 default_config = { limit = 100, window_ms = 1000 } }, c
  end

  local function total(resource)
    local _, sums = native.decode(item_of(resource).b)
    local n = 0
    for _, v in ipairs(sums) do n = n + v end
    return n
  end

  after_each(function() if H.proxy then H.clear_faults() end end)

  it("a take whose answer is lost and is sent again counts once (its token comes back with ALL_OLD)", function()
    assert(H.proxy, "the fault proxy is not running")
    local state = { T = 1700000600000 }
    local rl, c = proxied(state, { max_attempts = 3 })
    assert.is_true(rl:acquire("lost"))                       -- lease of 1
    assert.equals(1, total("lost"))
    H.reset_proxy_stats()
    H.faults{ { kind = "drop_response", match = "PutItem" } }
    -- the next take gives the first lease back and takes 99: applied, the
    -- answer lost, sent again: its version condition fails on our own write
    assert.is_true(rl:acquire("lost"))
    assert.equals(1, H.proxy_stats().faults_applied.drop_response)
    assert.equals(2, item_of("lost").v)
    assert.equals(100, total("lost"))
    local grants = 2
    for _ = 1, 200 do if rl:acquire("lost") then grants = grants + 1 end end
    assert.equals(100, grants)
    c:close()
  end)

  it("a take whose outcome stays unknown is not spent: the capacity it may hold is lost, never granted", function()
    assert(H.proxy, "the fault proxy is not running")
    local state = { T = 1700000700000 }
    local rl, c = proxied(state, { max_attempts = 1 })
    assert.is_true(rl:acquire("unknown"))
    H.reset_proxy_stats()
    H.faults{ { kind = "status", status = 500, forward = true, match = "PutItem" } }
    local ok, err = rl:acquire("unknown")                   -- applied, reported as failed
    assert.is_nil(ok); assert.is_table(err)
    assert.equals(1, H.proxy_stats().faults_applied.status)
    assert.equals(2, item_of("unknown").v)
    assert.equals(100, total("unknown"))                    -- 1 spent + 99 leased, unused
    local n
    n, ok = H.requests(c, function() return rl:acquire("unknown") end)
    assert.is_false(ok); assert.equals(1, n)                -- learns the full item, gives nothing back
    assert.equals(100, total("unknown"))
    n, ok = H.requests(c, function() return rl:acquire("unknown") end)
    assert.is_false(ok); assert.equals(0, n)
    c:close()
  end)
end)

describe("ddbkit.ratelimit native layout across processes", function()
  -- Runs n workers; returns sorted grant times and the summed stats.
  local function run(resource, n, limit, window_ms, run_ms, pace_us)
    local worker = spec_dir() .. "/ratelimit_native_worker.lua"
    local procs = {}
    for i = 1, n do
      local out = string.format("%s/%s-%d.txt", dir, resource, i)
      local cmd = bounded(table.concat({ interpreter(), shell_quote(worker), shell_quote(H.endpoint), shell_quote(T),
        shell_quote(resource), shell_quote(out), tostring(run_ms), tostring(limit), tostring(window_ms),
        tostring(pace_us) }, " "), 120)
      procs[i] = { out = out, pipe = assert(io.popen(cmd .. " 2>&1; echo \"EXIT:$?\"", "r")) }
    end
    local r = { grants = {}, calls = 0, granted = 0, quiet = 0, requests = 0, throttled = 0, cpu_us = 0,
                first = math.huge, last = -math.huge }
    for i, w in ipairs(procs) do
      local log = w.pipe:read("*a")
      w.pipe:close()
      assert.are.equal("0", log:match("EXIT:(%d+)%s*$"), "worker " .. i .. " failed:\n" .. log)
      local mine, summary = 0, nil
      for line in io.lines(w.out) do
        local g = line:match("^G (%d+)$")
        if g then
          r.grants[#r.grants + 1] = tonumber(g); mine = mine + 1
        else
          summary = { line:match("^S (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$") }
          assert(#summary == 9, "bad line from worker " .. i .. ": " .. line)
        end
      end
      for k = 1, 9 do summary[k] = tonumber(summary[k]) end
      r.latency_us = math.max(r.latency_us or 0, summary[9])
      assert.equals(summary[2], mine)               -- every grant has its timestamp line
      r.calls, r.granted, r.quiet = r.calls + summary[1], r.granted + summary[2], r.quiet + summary[3]
      r.requests, r.throttled, r.cpu_us = r.requests + summary[4], r.throttled + summary[5], r.cpu_us + summary[6]
      r.first, r.last = math.min(r.first, summary[7]), math.max(r.last, summary[8])
    end
    table.sort(r.grants)
    return r
  end

  -- No window of window_ms holds more than limit grants (times floored to
  -- ms: two grants window_ms apart in real time are >= window_ms apart
  -- floored, see the native layout's +1 ms).
  local function assert_exact(grants, limit, window_ms)
    H.assert_at_most_per_window(grants, limit, window_ms, "all processes")
  end

  local function report(what, r, limit, window_ms)
    local span = r.last - r.first
    -- what a steady stream could get: limit per window over the span
    local possible = limit * span / window_ms
    print(string.format("\n# %s: %d grants of %.0f possible (utilisation %.1f%%) over %d ms; %d decisions, "
      .. "%.1f%% with no request, %.4f requests per decision, %d throttled, %.2f CPU us per decision, "
      .. "mean request latency up to %.1f ms", what, r.granted, possible, 100 * r.granted / possible, span, r.calls, 100 * r.quiet / r.calls,
      r.requests / r.calls, r.throttled, r.cpu_us / r.calls, (r.latency_us or 0) / 1000))
  end

  it("8 processes, demand 4x the limit of 2000 per 1000 ms for 5 s: no sliding window over the limit", function()
    local r = run("mp", 8, 2000, 1000, 5000, 1000)
    report("8 processes, limit 2000/1000 ms", r, 2000, 1000)
    assert.equals(r.granted, #r.grants)
    assert.is_true(r.granted > 0 and r.calls > r.granted)
    assert_exact(r.grants, 2000, 1000)
  end)

  it("4 processes, a small limit (10 per 500 ms): no sliding window over the limit", function()
    local r = run("small", 4, 10, 500, 3000, 2000)
    report("4 processes, limit 10/500 ms", r, 10, 500)
    assert.is_true(r.granted > 0)
    assert_exact(r.grants, 10, 500)
  end)
end)

describe("ddbkit.ratelimit native layout on a hot partition", function()
  local function sim(method, path, body)
    local st, out = H.http(method, H.proxy .. "/__proxy/partitions" .. (path or ""),
      { body = body and cjson.encode(body) or nil })
    assert(st == 200, "the simulator's control answered " .. tostring(st) .. ": " .. tostring(out))
    return assert(cjson.decode(out))
  end

  after_each(function() if H.proxy then sim("DELETE") end end)

  it("serves 20,000 decisions on one resource with a partition that can take 20 writes, none throttled", function()
    assert(H.proxy, "the fault proxy is not running")
    -- frozen buckets: the partition gets 20 WCU in all (refill only by /advance)
    sim("POST", "", { wcu = 20, rcu = 60, refill = false })
    local state = { T = 1700000500000 }
    local blocking = require "ddbkit.runtime.blocking"
    local c = H.proxied_client{ max_attempts = 1, runtime = {
      send = blocking.send, sleep = function() end,
      now_ms = function() return state.T end, mono_ms = function() return state.T end } }
    local rl = ddbkit.ratelimit.new{ client = c, table_name = T, layout = "native", lease_ms = 10000,
                                     default_config = { limit = 1000000, window_ms = 60000 } }
    local grants = 0
    for _ = 1, 20000 do if assert(rl:acquire("hot")) then grants = grants + 1 end end
    local p = sim("GET").partitions[T]["S:RLN#hot"]
    print(string.format("\n# hot key: %d decisions granted with %d requests (%s WCU) on the partition, %d throttled",
                        grants, p.requests, tostring(p.wcu), p.throttled))
    assert.equals(20000, grants)
    assert.equals(0, p.throttled)
    assert.is_true(p.requests <= 20)
    assert.equals(0, c:stats().errors)
    c:close()
  end)
end)
