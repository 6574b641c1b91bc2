-- ddbkit.adaptive's native layout (lua/ddbkit/adaptive/native.lua): the
-- leases of ddbkit.ratelimit's native layout, a bucket's priority in its
-- end's residue on the grid.
--
-- Single-process cases run on clients whose wall and monotonic clocks are
-- one number the spec moves (H.clock_client): they assert request counts
-- and answers, never timings. The multi-process cases run workers
-- (adaptive_native_worker.lua) that split the limit differently (fixed
-- 9/1, fixed 5/5, the default strategy under different configs), record
-- the wall time and priority of every grant, and check every sliding
-- window: the total against the limit, each process's own grants of a
-- priority against its own share.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local native = require "ddbkit.ratelimit.native"

local shell_quote, spec_dir, interpreter, bounded, mktemp_dir =
  H.shell_quote, H.spec_dir, H.interpreter, H.bounded, H.mktemp_dir

local admin, T, dir

setup(function()
  admin = H.client()
  T = H.store_table(admin, "arln")
  dir = mktemp_dir()
end)

teardown(function()
  admin:delete_table{ TableName = T }
  admin:close()
  if dir then os.execute("env -u LD_PRELOAD rm -rf " .. shell_quote(dir)) end
end)

local function item_of(resource)
  local res = assert(admin:get_item{ TableName = T, ConsistentRead = true,
                                     Key = { pk = "ARLN#" .. resource, sk = "ARLN#" .. resource } })
  return res.Item
end

local function fixed(u, paused)
  return { name = "fixed " .. u, compute = function(_, l)
    return { user_reserved = u, background_max = l - u, background_paused = paused or false, reason = "fixed" }
  end }
end

local function clocked(state, opts)
  local c = H.clock_client(state)
  local o = { client = c, table_name = T, layout = "native" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return ddbkit.adaptive.new(o), c
end

-- The item's live sums per priority (residue 0: user, 1: background), g
-- computed as the store does (14 grid points per priority).
local function sums_of(resource, window_ms, lease_ms)
  local ends, sums = native.decode(item_of(resource).b)
  local g = math.max(2, math.ceil((window_ms + lease_ms) / 14))
  local u, b = 0, 0
  for i = 1, #ends do
    local r = ends[i] % g
    assert(r == 0 or r == 1, "a bucket end off the grid: " .. ends[i])
    if r == 0 then u = u + sums[i] else b = b + sums[i] end
  end
  return u, b
end

describe("ddbkit.adaptive native layout, one process", function()
  it("is chosen by layout = \"native\"; the default stays the Node layout; record is not supported", function()
    local c = H.client()
    assert.is_nil(ddbkit.adaptive.new{ client = c, table_name = T }.layout)
    local a = ddbkit.adaptive.new{ client = c, table_name = T, layout = "native" }
    assert.equals("native", a.layout)
    assert.has_error(function() ddbkit.adaptive.new{ client = c, layout = "fast" } end,
      'ddbkit.adaptive.new: opts.layout must be "node" or "native", got fast')
    assert.has_error(function() ddbkit.adaptive.new{ client = c, layout = "native", lease_ms = 0 } end)
    assert.has_error(function() a:record("r", "user") end,
      "ddbkit.adaptive:record is not supported by the native layout (it has no log items; "
      .. "acquire tracks this process's activity)")
    assert.has_error(function() a:acquire("r", "admin") end)
    c:close()
  end)

  it("grants each priority its share (7 / 3 of 10), then refuses with 0 requests; the item's sums per priority agree", function()
    local state = { T = 1700001000000 }
    local a, c = clocked(state, { strategy = fixed(7), default_config = { limit = 10, window_ms = 60000 } })
    local u, b = 0, 0
    for _ = 1, 40 do
      local ok = a:acquire("share2", "user"); assert(ok ~= nil); if ok then u = u + 1 end
      ok = a:acquire("share2", "background"); assert(ok ~= nil); if ok then b = b + 1 end
    end
    assert.equals(7, u); assert.equals(3, b)
    local iu, ib = sums_of("share2", 60000, 1000)
    assert.equals(7, iu); assert.equals(3, ib)
    local n, ok = H.requests(c, function() return a:acquire("share2", "user") end)
    assert.equals(0, n); assert.is_false(ok)
    n, ok = H.requests(c, function() return a:acquire("share2", "background") end)
    assert.equals(0, n); assert.is_false(ok)
    local wait
    n, wait = H.requests(c, function() return a:get_wait_time("share2", "user") end)
    assert.equals(0, n); assert.is_true(wait > 60000, "wait " .. wait)
    n, ok = H.requests(c, function() return a:can_proceed("share2", "background") end)
    assert.equals(0, n); assert.is_false(ok)
    c:close()
  end)

  it("a full user share leaves background its own; the refusal for the share ends when its first bucket leaves", function()
    local state = { T = 1700001100000 }
    local opts = { strategy = fixed(2), default_config = { limit = 10, window_ms = 1000 }, lease_ms = 10 }
    local a, c = clocked(state, opts)
    assert.is_true(a:acquire("sh", "user")); state.T = state.T + 20
    assert.is_true(a:acquire("sh", "user")); state.T = state.T + 20
    assert.is_false(a:acquire("sh", "user"))
    assert.is_true(a:acquire("sh", "background"))
    assert.is_false(a:can_proceed("sh", "user"))
    assert.is_true(a:can_proceed("sh", "background"))
    local wait = a:get_wait_time("sh", "user")
    assert.is_true(wait > 900 and wait <= 1000 + 10 + 80, "wait " .. wait)
    state.T = state.T + wait
    assert.is_true(a:acquire("sh", "user"))
    c:close()
  end)

  it("two views on one resource (9/1 and 5/5): the total stays at the limit, each keeps its own shares", function()
    local state = { T = 1700001200000 }
    local cfg = { limit = 10, window_ms = 60000 }
    local a, ca = clocked(state, { strategy = fixed(9), default_config = cfg })
    local b, cb = clocked(state, { strategy = fixed(5), default_config = cfg })
    local au, bu, bb = 0, 0, 0
    for _ = 1, 30 do if a:acquire("views", "user") then au = au + 1 end end
    assert.equals(9, au)
    -- b's user share (5) is over with a's 9 user grants in the item; its
    -- background share (5) is cut by the total: 1 left
    for _ = 1, 30 do
      if b:acquire("views", "user") then bu = bu + 1 end
      if b:acquire("views", "background") then bb = bb + 1 end
    end
    assert.equals(0, bu); assert.equals(1, bb)
    assert.is_false(a:acquire("views", "background"))
    local iu, ib = sums_of("views", 60000, 1000)
    assert.equals(9, iu); assert.equals(1, ib)
    ca:close(); cb:close()
  end)

  it("a paused background gets nothing, with 0 requests; its wait is recalculation_interval_ms", function()
    local state = { T = 1700001300000 }
    local a, c = clocked(state, { strategy = fixed(3, true), default_config = { limit = 10, window_ms = 60000 },
                                  adaptive_config = { recalculation_interval_ms = 5000 } })
    local n, ok = H.requests(c, function() return a:acquire("paused", "background") end)
    assert.equals(0, n); assert.is_false(ok)
    assert.is_false(a:acquire("paused"))                 -- the default priority: background
    assert.is_false(a:can_proceed("paused", "background"))
    assert.equals(5000, a:get_wait_time("paused", "background"))
    assert.is_true(a:acquire("paused", "user"))
    assert.is_nil(item_of("paused").b:find("%d+1:"))    -- (no background bucket: ends at residue 1)
    local _, ib = sums_of("paused", 60000, 1000)
    assert.equals(0, ib)
    assert.is_true(a:get_status("paused").adaptive.background_paused)
    c:close()
  end)

  it("get_status: the Node layout's fields, used counts from the item, shares and activity from this process's view", function()
    local state = { T = 1700001400000 }
    local cfg = { limit = 10, window_ms = 60000 }
    local ac = { recalculation_interval_ms = 0 }
    local a, ca = clocked(state, { default_config = cfg, adaptive_config = ac, lease_ms = 10 })
    local b, cb = clocked(state, { default_config = cfg, adaptive_config = ac, lease_ms = 10 })
    local s0 = assert(a:get_status("st"))
    assert.same({ user_reserved = 5, background_max = 5, background_paused = false, recent_user_activity = 0,
                  reason = "no activity yet (default split)" }, s0.adaptive)
    assert.equals(10, s0.remaining); assert.equals(10, s0.available); assert.equals(10, s0.limit)
    assert.equals(state.T + 60000, s0.reset_time)
    -- leases of 1 (100 ms apart, lease_ms 10): the item counts exactly the grants
    for _ = 1, 3 do assert.is_true(a:acquire("st", "user")); state.T = state.T + 100 end
    for _ = 1, 2 do assert.is_true(a:acquire("st", "background")); state.T = state.T + 100 end
    local sa = assert(a:get_status("st"))
    -- 3 recent user grants, increasing: moderate, user = min(7, 4 * 1.56) -> 6
    assert.equals(6, sa.adaptive.user_reserved); assert.equals(4, sa.adaptive.background_max)
    assert.equals(3, sa.adaptive.recent_user_activity)
    assert.matches("^moderate activity", sa.adaptive.reason)
    assert.equals(6 - 3 + 4 - 2, sa.remaining); assert.equals(5, sa.available)
    -- b made no grant: its own view is the default split, the counts the same item's
    local n, sb = H.requests(cb, function() return b:get_status("st") end)
    assert.equals(1, n)
    assert.equals(5, sb.adaptive.user_reserved); assert.equals(0, sb.adaptive.recent_user_activity)
    assert.equals(5 - 3 + 5 - 2, sb.remaining); assert.equals(5, sb.available)
    ca:close(); cb:close()
  end)

  it("costs: a first acquire 1 request, then 0 from its lease; can_proceed and get_wait_time 0 with a lease, 1 without", function()
    local state = { T = 1700001600000 }
    local a, c = clocked(state, { strategy = fixed(50), default_config = { limit = 100, window_ms = 60000 } })
    local b, cb = clocked(state, { strategy = fixed(50), default_config = { limit = 100, window_ms = 60000 } })
    local n, ok = H.requests(c, function() return a:acquire("cost", "user") end)
    assert.equals(1, n); assert.is_true(ok)
    n, ok = H.requests(c, function() return a:acquire("cost", "user") end)
    assert.equals(1, n); assert.is_true(ok)                 -- a lease sized by the demand (2 calls at once)
    n, ok = H.requests(c, function() return a:acquire("cost", "user") end)
    assert.equals(0, n); assert.is_true(ok)                 -- spent from it
    n, ok = H.requests(c, function() return a:can_proceed("cost", "user") end)
    assert.equals(0, n); assert.is_true(ok)
    n, ok = H.requests(c, function() return a:get_wait_time("cost", "user") end)
    assert.equals(0, n); assert.equals(0, ok)
    n, ok = H.requests(cb, function() return b:can_proceed("cost", "background") end)
    assert.equals(1, n); assert.is_true(ok)
    n, ok = H.requests(cb, function() return b:get_wait_time("cost", "background") end)
    assert.equals(1, n); assert.equals(0, ok)
    -- a's second lease took the rest of the user share (1 + 49 of 50): leased
    -- grants count, so for b the user share is full until that bucket leaves
    n, ok = H.requests(cb, function() return b:get_wait_time("cost", "user") end)
    assert.equals(1, n); assert.is_true(ok > 60000, "wait " .. tostring(ok))
    assert.is_false(b:can_proceed("cost", "user"))
    c:close(); cb:close()
  end)

  it("the default strategy pauses background on increasing high activity: background then costs nothing", function()
    local state = { T = 1700001700000 }
    local a, c = clocked(state, { default_config = { limit = 10, window_ms = 60000 }, lease_ms = 10,
      adaptive_config = { high_activity_threshold = 2, moderate_activity_threshold = 1, recalculation_interval_ms = 0 } })
    assert.is_true(a:acquire("hi", "background"))
    for _ = 1, 2 do state.T = state.T + 100; assert.is_true(a:acquire("hi", "user")) end
    local st = assert(a:get_status("hi"))
    assert.is_true(st.adaptive.background_paused)
    assert.matches("^high activity", st.adaptive.reason)
    assert.equals(9, st.adaptive.user_reserved)
    local n, ok = H.requests(c, function() return a:acquire("hi", "background") end)
    assert.equals(0, n); assert.is_false(ok)
    c:close()
  end)

  it("runs on the coroutine runtime: two tasks sharing a store get exactly the shares (20 / 10 of 30)", function()
    local c = H.client{ runtime = require "ddbkit.runtime.coroutine" }
    local a = ddbkit.adaptive.new{ client = c, table_name = T, layout = "native", strategy = fixed(20),
                                   default_config = { limit = 30, window_ms = 60000 } }
    local got, errs = { user = 0, background = 0 }, 0
    for _ = 1, 2 do
      ddbkit.spawn(function()
        for i = 1, 100 do
          local p = i % 2 == 0 and "user" or "background"
          local ok = a:acquire("co", p)
          if ok then got[p] = got[p] + 1 elseif ok == nil then errs = errs + 1 end
        end
      end)
    end
    local steps = 0
    while ddbkit.step(100) > 0 and steps < 10000 do steps = steps + 1 end
    assert.equals(0, errs)
    assert.equals(20, got.user); assert.equals(10, got.background)
    c:close()
  end)

  it("reset deletes the item and this process's memory; clear deletes the items", function()
    local state = { T = 1700001500000 }
    local a, c = clocked(state, { strategy = fixed(1), default_config = { limit = 2, window_ms = 60000 } })
    assert.is_true(a:acquire("rs", "user")); assert.is_false(a:acquire("rs", "user"))
    assert.is_true(a:reset("rs"))
    assert.is_nil(item_of("rs"))
    assert.is_true(a:acquire("rs", "user"))
    assert.is_true(a:clear())
    assert.is_nil(item_of("rs"))
    assert.is_true(a:acquire("rs", "user"))
    c:close()
  end)
end)

describe("ddbkit.adaptive native layout across processes of different views", function()
  -- Runs one worker per view; returns all grants (sorted times), each
  -- worker's own grants per priority, and its summary.
  local function run(resource, views, limit, window_ms, run_ms, pace_us)
    local worker = spec_dir() .. "/adaptive_native_worker.lua"
    local procs = {}
    for i, view in ipairs(views) do
      local out = string.format("%s/%s-%d.txt", dir, resource, i)
      local cmd = bounded(table.concat({ interpreter(), shell_quote(worker), shell_quote(H.endpoint), shell_quote(T),
        shell_quote(resource), shell_quote(out), tostring(run_ms), tostring(limit), tostring(window_ms),
        shell_quote(view), tostring(pace_us) }, " "), 120)
      procs[i] = { out = out, view = view, pipe = assert(io.popen(cmd .. " 2>&1; echo \"EXIT:$?\"", "r")) }
    end
    local r = { all = {}, workers = {}, granted = 0, calls = 0, requests = 0 }
    for i, w in ipairs(procs) do
      local log = w.pipe:read("*a")
      w.pipe:close()
      assert.are.equal("0", log:match("EXIT:(%d+)%s*$"), "worker " .. i .. " failed:\n" .. log)
      local mine = { view = w.view, u = {}, b = {} }
      for line in io.lines(w.out) do
        local g, p = line:match("^G (%d+) ([ub])$")
        if g then
          r.all[#r.all + 1] = tonumber(g)
          table.insert(mine[p], tonumber(g))
        else
          local s = { line:match("^S (%d+) (%d+) (%d+) (%d+) (%d+)$") }
          assert(#s == 5, "bad line from worker " .. i .. ": " .. line)
          for k = 1, 5 do s[k] = tonumber(s[k]) end
          mine.summary = s
        end
      end
      assert(mine.summary, "worker " .. i .. " wrote no summary")
      assert.equals(mine.summary[2], #mine.u + #mine.b)
      r.calls, r.granted, r.requests = r.calls + mine.summary[1], r.granted + mine.summary[2],
                                       r.requests + mine.summary[3]
      table.sort(mine.u); table.sort(mine.b)
      r.workers[i] = mine
    end
    table.sort(r.all)
    return r
  end

  local assert_within = H.assert_at_most_per_window

  local function check(r, limit, window_ms, shares)
    assert.equals(r.granted, #r.all)
    assert.is_true(r.granted > 0 and r.calls > r.granted)
    assert_within(r.all, limit, window_ms, "total")
    for i, w in ipairs(r.workers) do
      local u = shares[w.view]
      if u then   -- a fixed view: this process's own grants within its own shares
        assert_within(w.u, u, window_ms, "worker " .. i .. " user")
        assert_within(w.b, limit - u, window_ms, "worker " .. i .. " background")
      end
    end
    local seen = {}
    for _, w in ipairs(r.workers) do seen[#seen + 1] = w.view .. "=" .. w.summary[4] .. "/" .. w.summary[5] end
    print(string.format("\n# %d grants, %d decisions, %.4f requests per decision; views at the end: %s",
      r.granted, r.calls, r.requests / r.calls, table.concat(seen, " ")))
    return seen
  end

  it("limit 10 per 500 ms, views fixed 9/1, fixed 5/5, busy (9/1 after its own user grant), calm (5/5): total exact", function()
    local views = { "fixed:9", "fixed:5", "busy", "calm" }
    local r = run("small", views, 10, 500, 3000, 2000)
    check(r, 10, 500, { ["fixed:9"] = 9, ["fixed:5"] = 5 })
    -- the views did differ: 9/1 and 5/5 (fixed); the default strategy's
    -- depend on each process's own grants (busy: 9/1 after a user grant of
    -- its own, 5/5 when the others' left it none)
    assert.equals(9, r.workers[1].summary[4]); assert.equals(5, r.workers[2].summary[4])
    local busy = r.workers[3].summary[4]
    assert.is_true(busy == 9 or busy == 5, "busy's user share " .. busy)
    assert.equals(5, r.workers[4].summary[4])
  end)

  it("limit 1000 per 1000 ms, views 900/100, 500/500, busy (900/100 after its own user grant), calm (300/700, or 5/995 without a user grant of its own): total exact", function()
    local views = { "fixed:900", "fixed:500", "busy", "calm" }
    local r = run("large", views, 1000, 1000, 4000, 500)
    check(r, 1000, 1000, { ["fixed:900"] = 900, ["fixed:500"] = 500 })
    -- calm's view: 300 after a user grant of its own ("low activity"), 5 when
    -- the others' user grants left it none ("no user activity ever")
    assert.equals(900, r.workers[1].summary[4]); assert.equals(500, r.workers[2].summary[4])
    local busy = r.workers[3].summary[4]
    assert.is_true(busy == 900 or busy == 5, "busy's user share " .. busy)
    -- the item stayed within the native bound (32 buckets of both priorities)
    local ends = native.decode(item_of("large").b)
    assert.is_not_nil(ends)
    assert.is_true(#ends <= native.BUCKETS)
    local calm = r.workers[4].summary[4]
    assert.is_true(calm == 300 or calm == 5, "calm's user share " .. calm)
  end)
end)
