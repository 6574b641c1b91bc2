-- The native layout's lease shared by the workers of one machine
-- (shared_dict; lua/ddbkit/ratelimit/shared.lua), against DynamoDB Local.
-- Here the "workers" are stores in one process sharing tests/spec/fake_dict
-- on one clock the spec moves (H.clock_client: request counts and answers,
-- never timings); openresty_spec runs the same in a real nginx with two
-- workers and a real lua_shared_dict.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local fake_dict = require "fake_dict"
local native = require "ddbkit.ratelimit.native"

local admin, T

setup(function()
  admin = H.client()
  T = H.store_table(admin, "rls")
end)

teardown(function()
  admin:delete_table{ TableName = T }
  admin:close()
end)

local function item_of(resource)
  local pk = "RLN#" .. resource
  local res = assert(admin:get_item{ TableName = T, ConsistentRead = true, Key = { pk = pk, sk = pk } })
  return res.Item
end

-- The live leases' total in the item (what counts against the limit).
local function counted(resource)
  local ends, sums = native.decode(item_of(resource).b)
  local n = 0
  for i = 1, #ends do n = n + sums[i] end
  return n, ends
end

-- k stores ("workers") on one dict and one clock; each with its own client.
local function workers(k, state, opts)
  local dict = fake_dict.new(state)
  local out = {}
  for i = 1, k do
    local c = H.clock_client(state)
    local o = { client = c, table_name = T, layout = "native", shared_dict = dict }
    for key, v in pairs(opts or {}) do o[key] = v end
    out[i] = { rl = ddbkit.ratelimit.new(o), c = c }
  end
  return out, dict
end

-- Worker w's first lease (1 grant: no demand seen yet), then, 10 ms later,
-- a second one sized by the demand, from which it spends `more` grants.
local function two_leases(w, state, resource, more)
  assert.is_true(w.rl:acquire(resource))
  state.T = state.T + 10
  for _ = 1, more do assert.is_true(w.rl:acquire(resource)) end
end

local function close(ws) for _, w in ipairs(ws) do w.c:close() end end
local function requests(ws)
  local n = 0
  for _, w in ipairs(ws) do n = n + w.c:stats().requests end
  return n
end

describe("the native layout with a shared dict (one lease per machine)", function()
  it("checks opts.shared_dict: a dict object, or a lua_shared_dict's name where ngx has one", function()
    local c = H.client()
    assert.has_error(function()
      ddbkit.ratelimit.new{ client = c, layout = "native", shared_dict = {} }
    end, "ddbkit.ratelimit.new: opts.shared_dict must be the name of a lua_shared_dict, or a dict (an ngx.shared.DICT)")
    assert.has_error(function()
      ddbkit.ratelimit.new{ client = c, layout = "native", shared_dict = "rl" }
    end, "ddbkit.ratelimit.new: opts.shared_dict: no lua_shared_dict named rl (nginx.conf needs `lua_shared_dict rl 1m;`)")
    assert.has_error(function()
      ddbkit.adaptive.new{ client = c, layout = "native", shared_dict = "rl" }
    end, "ddbkit.adaptive.new: opts.shared_dict: no lua_shared_dict named rl (nginx.conf needs `lua_shared_dict rl 1m;`)")
    -- the Node layout has no leases to share
    assert.has_error(function()
      ddbkit.ratelimit.new{ client = c, shared_dict = "rl" }
    end)
    c:close()
  end)

  it("one lease serves every worker: the second worker spends it with no request", function()
    local state = { T = 1700001000000 }
    local ws = workers(2, state, { default_config = { limit = 100, window_ms = 60000 }, lease_ms = 60000 })
    local a, b = ws[1], ws[2]
    two_leases(a, state, "one", 1)               -- the second lease: the rest of the limit
    assert.equals(2, a.c:stats().requests)
    assert.equals(100, (counted("one")))
    local grants = 2
    for _ = 1, 98 do if b.rl:acquire("one") then grants = grants + 1 end end
    assert.equals(100, grants)
    assert.equals(0, b.c:stats().requests)       -- all from a's lease
    -- the machine's lease is spent: the next decision takes (and finds the
    -- window full) once, for everyone
    assert.is_false(b.rl:acquire("one"))
    local before = requests(ws)
    for _ = 1, 50 do assert.is_false(a.rl:acquire("one")); assert.is_false(b.rl:acquire("one")) end
    assert.equals(before, requests(ws))
    assert.is_true(b.rl:get_wait_time("one") > 0)
    assert.is_false(a.rl:can_proceed("one"))
    assert.equals(before, requests(ws))
    close(ws)
  end)

  it("grants exactly the limit across four workers taking turns, in a handful of writes", function()
    local state = { T = 1700002000000 }
    local ws = workers(4, state, { default_config = { limit = 1000, window_ms = 1000 } })
    local grants = 0
    for step = 1, 400 do                         -- 400 steps of 1 ms, 3 calls per worker
      state.T = state.T + 1
      for i = 1, 4 do
        for _ = 1, 3 do
          local ok = ws[(step + i) % 4 + 1].rl:acquire("turns")
          assert(ok ~= nil)
          if ok then grants = grants + 1 end
        end
      end
    end
    -- 4,800 calls in 0.4 s over a limit of 1000 per second: exactly 1000
    assert.equals(1000, grants)
    assert.is_true(counted("turns") <= 1000)
    local writes = tonumber(item_of("turns").v)
    print(string.format("\n# 4 workers, 4800 calls: %d grants, %d writes, %d requests", grants, writes, requests(ws)))
    assert.is_true(writes <= 20, writes .. " writes")
    close(ws)
  end)

  it("gives an expired lease's unspent grants back once, whichever worker takes next", function()
    local state = { T = 1700003000000 }
    local ws = workers(2, state, { default_config = { limit = 100, window_ms = 10000 }, lease_ms = 1000 })
    local a, b = ws[1], ws[2]
    two_leases(a, state, "back", 9)
    local held = counted("back")
    assert.is_true(held > 10, "leased " .. held)
    state.T = state.T + 1001                     -- both leases past their end, 10 grants spent
    assert.is_true(b.rl:acquire("back"))         -- b takes: the give-back rides on its write
    assert.equals(1, b.c:stats().requests)
    local now_counted = counted("back")
    -- 10 spent stay counted, plus b's new lease; the unspent ones left
    local new_lease = now_counted - 10
    assert.is_true(new_lease >= 1 and now_counted < held + new_lease,
      string.format("before %d, after %d", held, now_counted))
    close(ws)
  end)

  it("never spends a lease whose counter the dict lost; its grants stay counted", function()
    local state = { T = 1700004000000 }
    local ws, dict = workers(2, state, { default_config = { limit = 50, window_ms = 60000 }, lease_ms = 60000 })
    local a, b = ws[1], ws[2]
    two_leases(a, state, "lost", 1)              -- the rest of the limit in one lease
    for _, k in ipairs(dict:keys("lost%z0c")) do dict:delete(k) end   -- the LRU took the counter
    local grants = 0
    for _ = 1, 100 do if b.rl:acquire("lost") then grants = grants + 1 end end
    assert.equals(0, grants)                     -- 2 granted in all: never 50 + more
    assert.equals(50, (counted("lost")))
    close(ws)
  end)

  it("a worker that waits past the taker's flag takes itself, and the give-back is made once", function()
    local state = { T = 1700005000000 }
    local ws = workers(2, state, { default_config = { limit = 1000, window_ms = 10000 }, lease_ms = 1000 })
    local a, b = ws[1], ws[2]
    two_leases(a, state, "flag", 4)
    state.T = state.T + 1001                     -- the lease ended: 5 spent of what it held
    local held, before = counted("flag")
    local old_end = before[#before]
    -- b's call comes while a's take is writing (the PutItem hook): b waits
    -- for a's flag (its sleeps), past the flag's life, then takes itself
    local inner
    state.slept = {}
    state.hooks = { PutItem = function()
      if inner == nil then
        inner = false
        inner = b.rl:acquire("flag")
      end
    end }
    assert.is_true(a.rl:acquire("flag"))
    state.hooks = nil
    assert.is_true(inner)
    assert.is_true(#state.slept > 0)             -- b waited before taking
    local waited = 0
    for _, ms in ipairs(state.slept) do waited = waited + ms end
    assert.is_true(waited >= 5000, "waited " .. waited)
    -- the old leases' buckets now hold exactly the 5 spent grants: the
    -- unspent ones were given back (by one of the two takes)
    local ends, sums = native.decode(item_of("flag").b)
    local old = 0
    for i = 1, #ends do if ends[i] <= old_end then old = old + sums[i] end end
    assert.equals(5, old)
    assert.is_true(held > 5)
    close(ws)
  end)
  it("keeps a lease's keys a minute after its end, not a window of an hour", function()
    local state = { T = 1700007000000 }
    local ws, dict = workers(1, state, { default_config = { limit = 100, window_ms = 3600000 },
                                         lease_ms = 1000 })
    two_leases(ws[1], state, "ttl", 1)
    local P = "%z0"                               -- the keys of priority tag 0
    assert.is_true(#dict:keys("ttl" .. P .. "c") >= 1)
    state.T = state.T + 1000 + 60000              -- both leases ended a minute ago
    assert.is_true(#dict:keys("ttl" .. P .. "c") >= 1)   -- still within the minute (+1 s)
    state.T = state.T + 1001
    assert.same({}, dict:keys("ttl" .. P .. "[lcz]"))
    assert.equals(1, #dict:keys("ttl" .. P .. "i"))  -- the item stays for the window
    close(ws)
  end)

  it("serves the adaptive store's priorities from one lease each per machine", function()
    local state = { T = 1700006000000 }
    local dict = fake_dict.new(state)
    local ws = {}
    for i = 1, 2 do
      local c = H.clock_client(state)
      ws[i] = { c = c, rl = ddbkit.adaptive.new{ client = c, table_name = T, layout = "native",
        shared_dict = dict, default_config = { limit = 100, window_ms = 60000 }, lease_ms = 60000,
        strategy = { compute = function() return { user_reserved = 70, background_max = 30,
                                                   background_paused = false, reason = "fixed" } end } } }
    end
    local a, b = ws[1], ws[2]
    local function drain(w, priority, n)
      local g = 0
      for _ = 1, n do if w.rl:acquire("ad", priority) then g = g + 1 end end
      return g
    end
    assert.equals(1, drain(a, "user", 1))
    state.T = state.T + 10
    assert.equals(1, drain(a, "user", 1))          -- user's lease: the rest of its share
    assert.equals(68, drain(b, "user", 68))        -- b spends it with no request: 70 in all
    assert.equals(0, b.c:stats().requests)
    assert.equals(0, drain(b, "user", 100))        -- the share is full (one take learns it)
    assert.equals(1, drain(b, "background", 1))
    state.T = state.T + 10
    assert.equals(29, drain(b, "background", 200)) -- b's background lease; 30 in all
    assert.equals(0, drain(a, "background", 50))   -- a finds it spent: refused, the total exact
    local pk = "ARLN#ad"
    local ends, sums = native.decode(assert(admin:get_item{ TableName = T, ConsistentRead = true,
                                                            Key = { pk = pk, sk = pk } }).Item.b)
    local total = 0
    for i = 1, #ends do total = total + sums[i] end
    assert.equals(100, total)
    close(ws)
  end)
end)
