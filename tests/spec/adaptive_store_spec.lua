-- ddbkit.adaptive against DynamoDB Local with a fake clock (both wall and
-- monotonic time are the test's T): shares computed by the default
-- strategy (scripts/strategies/adaptive.lua) and enforced per priority,
-- background pausing under a rising burst of user requests and resuming
-- when it subsides, get_status's adaptive fields, PolicyErrors, request
-- budgets, and interop with the Node package's items.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"
local adaptive = require "ddbkit.adaptive"

local fake_client = H.clock_client

local requests = H.requests

local function writes(c)
  local ops = c:stats().operations or {}
  local n = 0
  for _, op in ipairs({ "PutItem", "TransactWriteItems", "UpdateItem", "DeleteItem", "BatchWriteItem" }) do
    n = n + (ops[op] and ops[op].requests or 0)
  end
  return n
end

describe("ddbkit.adaptive", function()
  local admin, T

  setup(function()
    admin = H.client()
    T = H.unique("arl")
    assert(admin:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, T)))
    assert(admin:wait_for_table(T, 30000))
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
  end)

  it("checks its options", function()
    assert.has_error(function() adaptive.new{ client = admin, adaptive_config = { bogus = 1 } } end,
      "ddbkit.adaptive.new: unknown option opts.adaptive_config.bogus")
    assert.has_error(function()
      adaptive.new{ client = admin, adaptive_config = { moderate_activity_threshold = 10 } }
    end, "ddbkit.adaptive.new: opts.adaptive_config.moderate_activity_threshold must be below high_activity_threshold")
    assert.has_error(function() adaptive.new{ client = admin, strategy = { name = "x" } } end,
      "ddbkit.adaptive.new: adaptive strategy x has no compute function")
    local s = adaptive.new{ client = admin }
    assert.same({ limit = 200, window_ms = 3600000 }, s:get_resource_config("r"))
    assert.equals("strategies.adaptive", s:strategy_info())
  end)

  it("refuses limits out of range, naming the field", function()
    for _, l in ipairs{ math.huge, 2147483648, 1e15 } do
      local ok, msg = pcall(adaptive.new, { client = admin,
        default_config = { limit = l, window_ms = 60000 } })
      assert.is_false(ok)
      assert.matches("ddbkit.adaptive.new: opts.default_config must be a table whose limit is an "
                     .. "integer in [0, 2147483647]", msg, 1, true)
      ok, msg = pcall(adaptive.new, { client = admin,
        resource_configs = { api = { limit = l, window_ms = 60000 } } })
      assert.is_false(ok)
      assert.matches("opts.resource_configs must be a table whose [api]", msg, 1, true)
    end
  end)

  it("an acquire under the largest limit costs memory in the busy slots, not the limit", function()
    local s = adaptive.new{ client = admin, table_name = T,
      default_config = { limit = 2147483647, window_ms = 60000 } }
    local res = H.unique("huge")
    assert.is_true(s:acquire(res, "background"))   -- warm: activity, capacity, connection
    collectgarbage("collect")
    collectgarbage("stop")
    local before = collectgarbage("count")
    local ok, err = s:acquire(res, "background")
    local used_kb = collectgarbage("count") - before
    collectgarbage("restart")
    assert.is_nil(err)
    assert.is_true(ok)
    assert.is_true(used_kb < 2048, "one acquire allocated " .. used_kb .. " KB")
  end)

  it("splits the limit by the strategy and enforces each share, within budget", function()
    local state = { T = 1700100000000 }
    local c = fake_client(state)
    local s = adaptive.new{ client = c, table_name = T, default_config = { limit = 20, window_ms = 60000 } }
    local res = H.unique("shares")
    -- nothing ever: user = max(floor(0.3 * 20), 5) = 6, background 14
    local n, ok = requests(c, function() return s:acquire(res, "user") end)
    assert.is_true(ok)
    assert.is_true(n <= 2 + 2, "first acquire (with the activity load) took " .. n)
    for i = 2, 6 do
      n, ok = requests(c, function() return s:acquire(res, "user") end)
      assert.is_true(ok, "user grant " .. i)
      assert.is_true(n <= 2, "user grant took " .. n)
    end
    n, ok = requests(c, function() return s:acquire(res, "user") end)
    assert.is_false(ok)
    assert.is_true(n <= 2)
    assert.is_false(s:can_proceed(res, "user"))
    assert.is_true(s:can_proceed(res, "background"))
    for i = 1, 14 do
      n, ok = requests(c, function() return s:acquire(res, "background") end)
      assert.is_true(ok, "background grant " .. i)
      assert.is_true(n <= 2)
    end
    n, ok = requests(c, function() return s:acquire(res, "background") end)
    assert.is_false(ok)
    assert.is_true(n <= 2)
    local st = s:get_status(res)
    assert.equals(0, st.remaining)
    assert.equals(20, st.limit)
    assert.equals(6, st.adaptive.user_reserved)
    assert.equals(14, st.adaptive.background_max)
    assert.is_false(st.adaptive.background_paused)
    assert.equals(6, st.adaptive.recent_user_activity)
    assert.is_string(st.adaptive.reason)
    assert.is_true(s:get_wait_time(res, "user") > 0)
    -- the window moves on: everything is free again
    state.T = state.T + 60001
    assert.is_true(s:acquire(res, "user"))
    assert.is_true(s:acquire(res, "background"))
  end)

  it("pauses background under a rising burst of user requests and resumes when it subsides", function()
    local state = { T = 1700200000000 }
    local c = fake_client(state)
    local s = adaptive.new{ client = c, table_name = T, default_config = { limit = 100, window_ms = 60000 } }
    local res = H.unique("burst")
    assert.is_true(s:acquire(res, "background"))
    for i = 1, 12 do
      state.T = state.T + 100
      assert.is_true(s:acquire(res, "user"), "user " .. i)
    end
    -- still within the recalculation interval: the old split holds
    assert.is_true(s:can_proceed(res, "background"))
    state.T = state.T + 30000
    local n, ok = requests(c, function() return s:acquire(res, "background") end)
    assert.is_false(ok)
    assert.equals(0, n)
    assert.is_false(s:can_proceed(res, "background"))
    assert.equals(30000, s:get_wait_time(res, "background"))
    local st = s:get_status(res)
    assert.is_true(st.adaptive.background_paused)
    assert.equals(90, st.adaptive.user_reserved)      -- min(0.9L, floor(0.5L * 2))
    assert.equals(10, st.adaptive.background_max)
    assert.equals(12, st.adaptive.recent_user_activity)
    assert.is_truthy(st.adaptive.reason:find("high", 1, true))
    assert.is_true(s:acquire(res, "user"))
    -- a third of the monitoring window later the burst is the older third:
    -- the trend falls, background resumes
    state.T = state.T + 300001
    assert.is_true(s:acquire(res, "background"))
    st = s:get_status(res)
    assert.is_false(st.adaptive.background_paused)
  end)

  it("a strategy that raises or answers nonsense is a PolicyError naming it; nothing is written", function()
    local state = { T = 1700300000000 }
    local c = fake_client(state)
    local bad = {
      { name = "raises", compute = function() error("kaboom") end },
      { name = "shape", compute = function() return { user_reserved = "lots" } end },
      { name = "over", compute = function(_, limit)
          return { user_reserved = limit, background_max = 1, background_paused = false, reason = "x" } end },
    }
    for _, strategy in ipairs(bad) do
      local s = adaptive.new{ client = c, table_name = T, strategy = strategy,
                              default_config = { limit = 10, window_ms = 1000 } }
      c:reset_stats()
      local ok, err = s:acquire(H.unique("p"), "user")
      assert.is_nil(ok)
      assert.equals("PolicyError", err.code)
      assert.is_truthy(err.message:find("adaptive strategy " .. strategy.name, 1, true), err.message)
      assert.equals(0, writes(c))
      local st, serr = s:get_status(H.unique("p"))
      assert.is_nil(st)
      assert.equals("PolicyError", serr.code)
    end
  end)

  it("calls the strategy at most once per recalculation interval, with the documented metrics", function()
    local state = { T = 1700400000000 }
    local c = fake_client(state)
    local seen = {}
    local s = adaptive.new{ client = c, table_name = T, default_config = { limit = 10, window_ms = 60000 },
      adaptive_config = { recalculation_interval_ms = 1000, monitoring_window_ms = 3000 },
      strategy = { name = "spy", compute = function(resource, limit, m, cfg)
        seen[#seen + 1] = { resource = resource, limit = limit, m = m, cfg = cfg }
        return { user_reserved = 4, background_max = 6, background_paused = false, reason = "spy" }
      end } }
    local res = H.unique("spy")
    assert.is_true(s:acquire(res, "user"))
    state.T = state.T + 999
    assert.is_true(s:acquire(res, "user"))
    assert.equals(1, #seen)
    state.T = state.T + 1
    assert.is_true(s:acquire(res, "background"))
    assert.equals(2, #seen)
    local last = seen[2]
    assert.equals(res, last.resource)
    assert.equals(10, last.limit)
    assert.same({ recent_user = 2, recent3 = 1, prev3 = 1, last_user_ms = state.T - 1,
                  any_user_ever = true, any_background_ever = false, now_ms = state.T }, last.m)
    assert.equals(3000, last.cfg.monitoring_window_ms)
    assert.equals(2.0, last.cfg.max_user_scaling)
    assert.equals(5, last.cfg.min_user_reserved)
    -- set_resource_config takes effect at once
    assert.is_true(s:set_resource_config(res, { limit = 12, window_ms = 60000 }))
    assert.is_true(s:can_proceed(res, "user"))
    assert.equals(3, #seen)
    assert.equals(12, seen[3].limit)
  end)

  -- Issue 12: two processes with different views of user activity (one
  -- splitting 9/1, the other 5/5) each enforced their own split, so the
  -- total reached 9 + 5 = 14 with a limit of 10.
  it("holds the total at the limit across stores that split it differently", function()
    local state = { T = 1700700000000 }
    local c = fake_client(state)
    local function forced(u, b)
      return adaptive.new{ client = c, table_name = T, default_config = { limit = 10, window_ms = 60000 },
        strategy = { name = "forced", compute = function()
          return { user_reserved = u, background_max = b, background_paused = false, reason = "forced" }
        end } }
    end
    local a, b = forced(9, 1), forced(5, 5)       -- two processes, two views
    local res = H.unique("views")
    local granted = 0
    for _ = 1, 9 do
      if a:acquire(res, "user") then granted = granted + 1 end
    end
    assert.equals(9, granted)
    for _ = 1, 5 do
      local n, ok = requests(c, function() return b:acquire(res, "background") end)
      assert.is_true(n <= 2 + 6, n)   -- the first call loads the activity (2 Queries)
      if ok then granted = granted + 1 end
    end
    for _ = 1, 5 do
      if b:acquire(res, "user") then granted = granted + 1 end
    end
    assert.equals(10, granted)
    -- the grants hold their priority's slots (what Node honours) and the total's
    local function slots(pk)
      return #assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = pk } })
    end
    assert.equals(9, slots("RATELIMIT_SLOT#" .. res .. "#user"))
    assert.equals(1, slots("RATELIMIT_SLOT#" .. res .. "#background"))
    assert.equals(10, slots("RATELIMIT_SLOT#" .. res))
    state.T = state.T + 60001                      -- the window moves on
    assert.is_true(b:acquire(res, "background"))
  end)

  it("a slow grant stamps its priority and total slots with the time it took effect", function()
    local state = { T = 1700800000000, hooks = {} }
    local c = fake_client(state)
    local s = adaptive.new{ client = c, table_name = T, default_config = { limit = 10, window_ms = 60000 } }
    local res = H.unique("slowa")
    local t0 = state.T
    state.hooks.TransactWriteItems = function()    -- the grant's transaction takes 2 s
      state.hooks.TransactWriteItems = nil
      state.T = state.T + 2000
    end
    assert.is_true(s:acquire(res, "user"))
    for _, pk in ipairs({ "RATELIMIT_SLOT#" .. res .. "#user", "RATELIMIT_SLOT#" .. res }) do
      local slots = assert(admin:query_all{ TableName = T, ConsistentRead = true,
        KeyConditionExpression = "pk = :p", ExpressionAttributeValues = { [":p"] = pk } })
      assert.equals(1, #slots, pk)
      assert.equals(t0 + 2000, slots[1].timestamp, pk)
    end
  end)

  it("checks priorities and resources", function()
    local s = adaptive.new{ client = admin, table_name = T }
    assert.has_error(function() s:acquire("r", "urgent") end,
      "bad argument #2 to 'acquire' (\"user\" or \"background\" expected, got urgent)")
    local ok, err = s:acquire("", "user")
    assert.is_nil(ok)
    assert.equals("resource must not be empty", err.message)
  end)

  describe("interop with the Node package", function()
    it("loads Node's activity once and counts Node's log items per priority", function()
      local state = { T = 1700500000000 }
      local c = fake_client(state)
      local res = H.unique("node")
      local function node_log(priority, ts)
        local sk = "TS#" .. string.format("%.0f", ts) .. "#" .. H.unique("id")
        assert(admin:put_item{ TableName = T, Item = { pk = "RATELIMIT#" .. res, sk = sk,
          gsi1pk = "RATELIMIT#" .. res .. "#" .. priority, gsi1sk = sk,
          ttl = math.floor((ts + 60000) / 1000), timestamp = ts, priority = priority } })
      end
      for i = 1, 4 do node_log("user", state.T - 1000 * i) end
      node_log("background", state.T - 500)
      local s = adaptive.new{ client = c, table_name = T, default_config = { limit = 20, window_ms = 60000 } }
      local n, st = requests(c, function() return s:get_status(res) end)
      assert.equals(4, n)   -- the activity load (2) + a count per priority (2)
      assert.equals(4, st.adaptive.recent_user_activity)
      -- moderate (4 >= 3), all 4 in the newest third: increasing, so
      -- m = max(1, min(2, 1 + 4/10) * 1.2) = 1.68; user = floor(min(14, 8 * 1.68)) = 13
      assert.equals(13, st.adaptive.user_reserved)
      assert.equals(7, st.adaptive.background_max)
      assert.equals(13 - 4 + 7 - 1, st.remaining)
      n = requests(c, function() return s:can_proceed(res, "user") end)
      assert.equals(1, n)
    end)

    it("honours the slots Node acquirers hold in a priority's partition", function()
      local state = { T = 1700650000000 }
      local c = fake_client(state)
      local s = adaptive.new{ client = c, table_name = T, default_config = { limit = 20, window_ms = 60000 } }
      local res = H.unique("nslots")
      -- nothing ever: user share 6, all 6 taken by Node acquirers
      for n = 0, 5 do
        assert(admin:put_item{ TableName = T, Item = { pk = "RATELIMIT_SLOT#" .. res .. "#user",
          sk = "SLOT#" .. n, timestamp = state.T - 100, ttl = math.floor((state.T + 60000) / 1000) } })
      end
      assert.is_false(s:acquire(res, "user"))
      assert.is_true(s:acquire(res, "background"))
      state.T = state.T + 60000                     -- Node's grants leave the window
      assert.is_true(s:acquire(res, "user"))
    end)

    it("writes log items the Node package reads, with priority and the GSI keys", function()
      local state = { T = 1700600000000 }
      local c = fake_client(state)
      local s = adaptive.new{ client = c, table_name = T, default_config = { limit = 20, window_ms = 60000 } }
      local res = H.unique("dd")
      assert.is_true(s:acquire(res, "background"))
      assert.is_true(s:record(res, "user"))
      local items = assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT#" .. res } })
      assert.equals(2, #items)
      for _, it in ipairs(items) do
        assert.equals("RATELIMIT#" .. res .. "#" .. it.priority, it.gsi1pk)
        assert.equals(it.sk, it.gsi1sk)
        assert.equals(state.T, it.timestamp)
        assert.equals(math.ceil((state.T + 60000) / 1000), it.ttl)
      end
      -- Node's per-priority count: Query gsi1 COUNT
      local page = assert(admin:query{ TableName = T, IndexName = "gsi1", Select = "COUNT",
        KeyConditionExpression = "gsi1pk = :p AND gsi1sk >= :s",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT#" .. res .. "#background",
                                      [":s"] = "TS#" .. string.format("%.0f", state.T - 60000) } })
      assert.equals(1, page.Count)
      local slot = assert(admin:get_item{ TableName = T,
        Key = { pk = "RATELIMIT_SLOT#" .. res .. "#background", sk = "SLOT#0" } })
      local slots = assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. res .. "#background" } })
      assert.equals(1, #slots)
      assert.equals(state.T, slots[1].timestamp)
      assert.is_truthy(slot)
      assert.is_true(s:reset(res))
      assert.equals(0, #assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. res .. "#background" } }))
    end)
  end)
end)
