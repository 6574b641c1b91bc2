-- ddbkit.ratelimit against DynamoDB Local: every method, per-resource
-- configs, cooldowns, TTL semantics, request budgets (client:stats()), the
-- Node package's messages for bad resources, and interop both ways with
-- items written exactly as the Node package writes them.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local ratelimit = require "ddbkit.ratelimit"

local function make_table(c) return H.store_table(c, "rl") end

local fake_client = H.clock_client

local requests = H.requests

-- Node: Query COUNT of the log partition from TS#<windowStart>.
local function node_count(c, T, res, from)
  local n = 0
  for page in c:query_pages{ TableName = T, Select = "COUNT",
      KeyConditionExpression = "pk = :pk AND sk >= :s",
      ExpressionAttributeValues = { [":pk"] = "RATELIMIT#" .. res, [":s"] = "TS#" .. string.format("%.0f", from) } } do
    assert(page, "query failed")
    n = n + page.Count
  end
  return n
end

local function node_log(c, T, res, ts, id)
  assert(c:put_item{ TableName = T, Item = { pk = "RATELIMIT#" .. res,
    sk = "TS#" .. string.format("%.0f", ts) .. "#" .. (id or H.unique("node")),
    timestamp = ts, ttl = math.floor((ts + 60000) / 1000) } })
end

local function node_slot(c, T, res, n, ts)
  assert(c:put_item{ TableName = T, Item = { pk = "RATELIMIT_SLOT#" .. res, sk = "SLOT#" .. n,
    timestamp = ts, ttl = math.floor((ts + 60000) / 1000) } })
end

describe("ddbkit.ratelimit", function()
  local admin, T

  setup(function()
    admin = H.client()
    T = make_table(admin)
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
  end)

  describe("new", function()
    it("checks its options and names the field", function()
      assert.has_error(function() ratelimit.new{} end, "ddbkit.ratelimit.new: opts.client must be a ddbkit.client")
      assert.has_error(function() ratelimit.new{ client = admin, bogus = 1 } end,
        "ddbkit.ratelimit.new: unknown option opts.bogus")
      assert.has_error(function() ratelimit.new{ client = admin, default_config = { limit = -1, window_ms = 1 } } end,
        "ddbkit.ratelimit.new: opts.default_config must be a table whose limit is an integer in [0, 2147483647], got -1")
      assert.has_error(function() ratelimit.new{ client = admin, default_config = { limit = 1, window_ms = 0 } } end,
        "ddbkit.ratelimit.new: opts.default_config must be a table whose window_ms is a number in (0, 315360000000] (10 years), got 0")
      assert.has_error(function() ratelimit.new{ client = admin, resource_configs = { [""] = { limit = 1, window_ms = 1 } } } end)
      assert.has_error(function() ratelimit.new{ client = admin, table_name = "" } end,
        "ddbkit.ratelimit.new: opts.table_name must be a non-empty string")
    end)

    -- limit = math.huge used to be accepted, and one acquire then listed
    -- every free slot (out of memory); 1e7 cost 274 MB.
    it("refuses limits and windows out of range, naming the field", function()
      for _, l in ipairs{ math.huge, -math.huge, 0/0, 2147483648, 1e15, 1.5 } do
        assert.has_error(function()
          ratelimit.new{ client = admin, default_config = { limit = l, window_ms = 1000 } }
        end)
        local ok, msg = pcall(ratelimit.new, { client = admin,
          resource_configs = { api = { limit = l, window_ms = 1000 } } })
        assert.is_false(ok)
        assert.matches("opts.resource_configs must be a table whose [api] is a table whose limit",
                       msg, 1, true)
        local rl = ratelimit.new{ client = admin }
        ok, msg = pcall(rl.set_resource_config, rl, "api", { limit = l, window_ms = 1000 })
        assert.is_false(ok)
        assert.matches("set_resource_config's config must be a table whose limit", msg, 1, true)
      end
      for _, w in ipairs{ math.huge, 0/0, -1, 315360000001 } do
        local ok, msg = pcall(ratelimit.new, { client = admin,
          default_config = { limit = 1, window_ms = w } })
        assert.is_false(ok)
        assert.matches("opts.default_config must be a table whose window_ms", msg, 1, true)
      end
      assert(ratelimit.new{ client = admin, default_config = { limit = 2147483647,
                                                               window_ms = 315360000000 } })
    end)

    it("an acquire under the largest limit costs memory in the busy slots, not the limit",
      function()
        local rl = ratelimit.new{ client = admin, table_name = T,
          default_config = { limit = ratelimit.MAX_LIMIT, window_ms = 60000 } }
        local res = H.unique("huge")
        assert.is_true(rl:acquire(res))           -- warm: code paths, connection
        collectgarbage("collect")
        collectgarbage("stop")
        local before = collectgarbage("count")
        local ok, err = rl:acquire(res)
        local used_kb = collectgarbage("count") - before
        collectgarbage("restart")
        assert.is_nil(err)
        assert.is_true(ok)
        assert.is_true(used_kb < 2048, "one acquire allocated " .. used_kb .. " KB")
        -- the two grants took two different slots below the limit
        local slots = admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
          ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. res } }
        assert.equals(2, #slots)
        assert.are_not.equal(slots[1].sk, slots[2].sk)
        for _, it in ipairs(slots) do
          local n = tonumber(it.sk:match("^SLOT#(%d+)$"))
          assert.is_true(n ~= nil and n >= 0 and n < ratelimit.MAX_LIMIT, it.sk)
        end
      end)

    it("defaults to { limit = 60, window_ms = 60000 } and the Node table name", function()
      local rl = ratelimit.new{ client = admin }
      assert.same({ limit = 60, window_ms = 60000 }, rl:get_resource_config("any"))
      assert.equals("http-client-toolkit", rl.table_name)
    end)

    it("is reachable as ddbkit.ratelimit and from create_stores", function()
      assert.equals(ratelimit, ddbkit.ratelimit)
      local stores = ddbkit.create_stores{ client = admin, table_name = T,
        rate_limit = { default_config = { limit = 2, window_ms = 1000 } } }
      assert.same({ limit = 2, window_ms = 1000 }, stores.rate_limit:get_resource_config("x"))
    end)
  end)

  describe("acquire", function()
    it("grants up to the limit with 2 requests each, then answers false with 1", function()
      -- The clock stands still during a call, so no grant is slow enough
      -- for a second stamp (a loaded machine made one 3 requests: that
      -- +1 is the documented budget of a slow grant, tested on its own).
      local state = { T = 1700000000000 }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T, default_config = { limit = 5, window_ms = 60000 } }
      local res = H.unique("cap")
      for i = 1, 5 do
        local n, ok, err = requests(c, function() return rl:acquire(res) end)
        assert.is_nil(err)
        assert.is_true(ok, "grant " .. i)
        assert.is_true(n <= 2, "grant " .. i .. " took " .. n .. " requests")
        state.T = state.T + 1
      end
      for _ = 1, 3 do
        local n, ok, err = requests(c, function() return rl:acquire(res) end)
        assert.is_nil(err)
        assert.is_false(ok)
        assert.is_true(n <= 2, "a full window took " .. n .. " requests")
      end
      assert.equals(5, node_count(admin, T, res, state.T - 60000))
      c:close()
    end)

    it("takes only free slots between busy ones, and counts busy slots above the limit", function()
      local function slots_of(res)
        local got = {}
        for _, it in ipairs(assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
            ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. res } })) do
          got[#got + 1] = it.sk
        end
        table.sort(got)
        return got
      end
      local now = admin.runtime.now_ms()
      -- limit 3, slots 0 and 2 busy: only slot 1 is free
      local rl3 = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 3, window_ms = 60000 } }
      local a = H.unique("gap")
      node_slot(admin, T, a, 0, now)
      node_slot(admin, T, a, 2, now)
      assert.is_true(rl3:acquire(a))
      assert.is_false(rl3:acquire(a))
      assert.same({ "SLOT#0", "SLOT#1", "SLOT#2" }, slots_of(a))
      -- limit 4, slots 0, 2 and 5 busy (5 left by a larger limit): one grant, in 1 or 3
      local rl4 = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 4, window_ms = 60000 } }
      local b = H.unique("gaps")
      node_slot(admin, T, b, 0, now)
      node_slot(admin, T, b, 2, now)
      node_slot(admin, T, b, 5, now)
      assert.is_true(rl4:acquire(b))
      assert.is_false(rl4:acquire(b))
      local got = slots_of(b)
      assert.equals(4, #got)
      assert.is_true(got[2] == "SLOT#1" or got[3] == "SLOT#3", table.concat(got, " "))
    end)

    it("a limit of 0 never grants and sends nothing", function()
      local rl = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 0, window_ms = 1000 } }
      local n, ok = requests(admin, function() return rl:acquire(H.unique("zero")) end)
      assert.is_false(ok)
      assert.equals(0, n)
    end)

    it("frees a slot once its grant leaves the window (fake clock)", function()
      local state = { T = 1700000000000 }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T, default_config = { limit = 2, window_ms = 1000 } }
      local res = H.unique("slide")
      assert.is_true(rl:acquire(res))
      state.T = state.T + 500
      assert.is_true(rl:acquire(res))
      assert.is_false(rl:acquire(res))
      state.T = state.T + 500          -- first grant at exactly windowStart: still in
      assert.is_false(rl:acquire(res))
      -- compat's formula, oldest + window_ms - now, says 0 at this very ms
      -- (the Node package's; the slot frees 1 ms later)
      assert.equals(0, rl:get_wait_time(res))
      state.T = state.T + 1            -- now strictly older than the window
      assert.is_true(rl:acquire(res))
      assert.is_false(rl:acquire(res))
    end)

    it("takes another free slot when a concurrent acquirer wins the chosen one", function()
      local state = { T = 1700000100000, hooks = {} }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T, default_config = { limit = 3, window_ms = 60000 } }
      local res = H.unique("race")
      local stolen = 0
      state.hooks.TransactWriteItems = function(params)
        if stolen < 1 then  -- a Node acquirer takes exactly the slot we chose
          stolen = stolen + 1
          local slot = params.TransactItems[1].Put.Item
          node_slot(admin, T, res, slot.sk:match("%d+"), state.T)
        end
      end
      local n, ok, err = requests(c, function() return rl:acquire(res) end)
      assert.is_nil(err)
      assert.is_true(ok)
      assert.equals(3, n)   -- Query, lost transaction, winning transaction (no re-Query)
      state.hooks.TransactWriteItems = nil
      assert.is_true(rl:acquire(res))
      local n2, ok2 = requests(c, function() return rl:acquire(res) end)
      assert.is_false(ok2)
      assert.equals(1, n2)
    end)

    -- Issue 12: the slot's timestamp is read before the transaction; a slow
    -- or retried transaction took effect later than it says, and the slot
    -- came free early by as much.
    it("a slow grant stamps its slot with the time it took effect", function()
      local state = { T = 1700000500000, hooks = {} }
      local c = fake_client(state)
      local cfg = { limit = 1, window_ms = 10000 }
      local rl = ratelimit.new{ client = c, table_name = T, default_config = cfg }
      local res = H.unique("slow")
      local t0 = state.T
      state.hooks.TransactWriteItems = function()   -- the grant's transaction takes 5 s
        state.hooks.TransactWriteItems = nil
        state.T = state.T + 5000
      end
      local n, ok, err = requests(c, function() return rl:acquire(res) end)
      assert.is_nil(err)
      assert.is_true(ok)
      assert.equals(3, n)       -- Query, transaction, the second stamp
      local slot = assert(admin:get_item{ TableName = T, ConsistentRead = true,
        Key = { pk = "RATELIMIT_SLOT#" .. res, sk = "SLOT#0" } }).Item
      assert.equals(t0 + 5000, slot.timestamp)
      assert.equals(math.ceil((t0 + 5000 + 10000) / 1000), slot.ttl)
      -- another process, a window after the transaction was sent but not
      -- after it took effect: still full
      local other = ratelimit.new{ client = c, table_name = T, default_config = cfg }
      state.T = t0 + 10000 + 4999
      assert.is_false(other:acquire(res))
      state.T = t0 + 5000 + 10000 + 1
      assert.is_true(other:acquire(res))
    end)

    it("a grant within STAMP_SLACK_MS keeps its first stamp, with no extra request", function()
      local state = { T = 1700000600000, hooks = {} }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T, default_config = { limit = 1, window_ms = 10000 } }
      local res = H.unique("fast")
      local t0 = state.T
      state.hooks.TransactWriteItems = function() state.T = state.T + ratelimit.STAMP_SLACK_MS end
      local n, ok = requests(c, function() return rl:acquire(res) end)
      assert.is_true(ok)
      assert.equals(2, n)
      local slot = assert(admin:get_item{ TableName = T, ConsistentRead = true,
        Key = { pk = "RATELIMIT_SLOT#" .. res, sk = "SLOT#0" } }).Item
      assert.equals(t0, slot.timestamp)
    end)

    it("re-reads the slots when every known free slot was lost, and stops at 6 requests", function()
      local state = { T = 1700000200000, hooks = {} }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T, default_config = { limit = 50, window_ms = 60000 } }
      local res = H.unique("storm")
      state.hooks.TransactWriteItems = function(params)   -- every attempt loses
        node_slot(admin, T, res, params.TransactItems[1].Put.Item.sk:match("%d+"), state.T)
      end
      local n, ok, err = requests(c, function() return rl:acquire(res) end)
      assert.is_nil(err)
      assert.is_false(ok)
      assert.equals(ratelimit.MAX_REQUESTS, n)
    end)
  end)

  -- Issue 12: every acquire used to Query the whole slot partition (about
  -- 64 bytes per slot, strongly consistent); past ~6 pages (limits of
  -- 60-80k) it spent its request budget on Queries and answered false with
  -- every slot free. Above READ_MAX the store now probes slots.
  describe("acquire at large limits", function()
    local function put_slots(res, from, to, ts)
      local reqs = {}
      local function flush()
        if #reqs > 0 then
          local ok, err = admin:batch_write_item{ RequestItems = { [T] = reqs } }
          assert(ok, err and err.message)
          reqs = {}
        end
      end
      for n = from, to do
        reqs[#reqs + 1] = { PutRequest = { Item = { pk = "RATELIMIT_SLOT#" .. res, sk = "SLOT#" .. n,
          timestamp = ts, ttl = math.floor((ts + 60000) / 1000) } } }
        if #reqs == 25 then flush() end
      end
      flush()
    end

    it("reads a bounded amount per acquire, whatever the slot partition holds", function()
      local state = { T = 1700000300000 }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T,
                                default_config = { limit = 100000, window_ms = 60000 } }
      local res = H.unique("big")
      put_slots(res, 0, 999, state.T - 120000)       -- 1,000 old grants, long expired
      put_slots(res, 1000, 1049, state.T - 1000)     -- 50 in the window
      for i = 1, 20 do
        c:reset_stats()
        local ok, err = rl:acquire(res)
        local st = c:stats()
        assert.is_nil(err)
        assert.is_true(ok, "acquire " .. i)
        assert.is_nil(st.operations.Query, "acquire " .. i .. " read the slot partition")
        assert.is_true(st.requests <= 2, "acquire " .. i .. " took " .. st.requests .. " requests")
        assert.is_true(st.bytes_in < 2048, "acquire " .. i .. " read " .. st.bytes_in .. " bytes")
      end
    end)

    it("answers a full window locally until a slot is due, and never over the limit", function()
      local state = { T = 1700000400000 }
      local c = fake_client(state)
      local limit = ratelimit.READ_MAX + 20
      local rl = ratelimit.new{ client = c, table_name = T,
                                default_config = { limit = limit, window_ms = 1000 } }
      local res = H.unique("fullbig")
      local total = 0
      for i = 1, limit do
        local n, ok, err = requests(c, function() return rl:acquire(res) end)
        assert.is_nil(err)
        assert.is_true(ok, "grant " .. i)
        total = total + n
      end
      assert.equals(limit, total)                    -- 1 transaction each: no reads
      local n, ok = requests(c, function() return rl:acquire(res) end)
      assert.is_false(ok)
      assert.equals(0, n)
      -- another process (its own store) sees the same window full
      local other = ratelimit.new{ client = c, table_name = T,
                                   default_config = { limit = limit, window_ms = 1000 } }
      for _ = 1, 5 do
        local n2, ok2 = requests(c, function() return other:acquire(res) end)
        assert.is_false(ok2)
        assert.is_true(n2 <= ratelimit.MAX_REQUESTS)
      end
      state.T = state.T + 1001                       -- every grant left the window
      n, ok = requests(c, function() return rl:acquire(res) end)
      assert.is_true(ok)
      assert.equals(1, n)
      local slots = assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. res } })
      assert.equals(limit, #slots)
      for _, it in ipairs(slots) do
        local sn = tonumber(it.sk:match("^SLOT#(%d+)$"))
        assert.is_true(sn ~= nil and sn >= 0 and sn < limit, it.sk)
      end
    end)
  end)

  -- Issue 12: the slot choice was seeded when the module loaded; preloaded
  -- in init_by_lua, every nginx worker drew the same sequence (more lost
  -- races, more false refusals). ratelimit_worker.lua --first-slot loads the
  -- module with its randomness fixed, as every forked worker would have it.
  describe("the slot choice", function()
    local function first_slot(pid, entropy)
      local cmd = H.bounded(table.concat({ H.interpreter(),
        H.shell_quote(H.spec_dir() .. "/ratelimit_worker.lua"), "--first-slot", H.shell_quote(H.endpoint),
        H.shell_quote(T), H.shell_quote(H.unique("seed")), tostring(pid), entropy }, " "), 60)
      local p = assert(io.popen(cmd .. " 2>&1", "r"))
      local out = p:read("*a")
      p:close()
      local n = out:match("^(%d+)\n$")
      assert.is_truthy(n, "worker said: " .. out)
      return n
    end

    it("is seeded on first use in each process, not when the module loads", function()
      assert.are_not.equal(first_slot(4242, "real"), first_slot(4243, "real"))
    end)

    it("is seeded by the process id: same entropy, other pid, other draws", function()
      local a = first_slot(4242, "fixed")
      assert.equals(a, first_slot(4242, "fixed"))   -- the stub fixes every other input
      assert.are_not.equal(a, first_slot(4243, "fixed"))
    end)
  end)

  describe("can_proceed, record, get_status, get_wait_time", function()
    it("count log items in the window, recorded ones too, 1 request each", function()
      local state = { T = 1700001000000 }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T, default_config = { limit = 3, window_ms = 10000 } }
      local res = H.unique("count")
      local n, ok = requests(c, function() return rl:can_proceed(res) end)
      assert.is_true(ok)
      assert.equals(1, n)
      assert.equals(0, rl:get_wait_time(res))
      n = requests(c, function() return rl:record(res) end)
      assert.equals(1, n)
      state.T = state.T + 100
      assert.is_true(rl:acquire(res))
      local st
      n, st = requests(c, function() return rl:get_status(res) end)
      assert.equals(1, n)
      assert.same({ remaining = 1, reset_time = state.T + 10000, limit = 3 }, st)
      state.T = state.T + 100
      assert.is_true(rl:record(res))
      assert.is_false(rl:can_proceed(res))
      assert.equals(0, rl:get_status(res).remaining)
      local wait
      n, wait = requests(c, function() return rl:get_wait_time(res) end)
      assert.equals(1, n)
      assert.equals(10000 - 200, wait)   -- the oldest (recorded) grant leaves first
      state.T = state.T + 9801
      assert.is_true(rl:can_proceed(res))
      assert.equals(0, rl:get_wait_time(res))
    end)

    it("get_wait_time is window_ms for a limit of 0", function()
      local rl = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 0, window_ms = 4321 } }
      assert.equals(4321, rl:get_wait_time(H.unique("z")))
      assert.is_false(rl:can_proceed(H.unique("z")))
      assert.same({ remaining = 0, limit = 0 },
        (function(s) return { remaining = s.remaining, limit = s.limit } end)(rl:get_status(H.unique("z"))))
    end)
  end)

  describe("configs per resource", function()
    it("resource_configs, set_resource_config and get_resource_config", function()
      local a, b = H.unique("a"), H.unique("b")
      local rl = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 1, window_ms = 60000 },
        resource_configs = { [a] = { limit = 2, window_ms = 60000 } } }
      assert.same({ limit = 2, window_ms = 60000 }, rl:get_resource_config(a))
      assert.same({ limit = 1, window_ms = 60000 }, rl:get_resource_config(b))
      assert.is_true(rl:acquire(a))
      assert.is_true(rl:acquire(a))
      assert.is_false(rl:acquire(a))
      assert.is_true(rl:acquire(b))
      assert.is_false(rl:acquire(b))
      assert.is_true(rl:set_resource_config(b, { limit = 3, window_ms = 60000 }))
      assert.same({ limit = 3, window_ms = 60000 }, rl:get_resource_config(b))
      assert.is_true(rl:acquire(b))
      assert.is_true(rl:acquire(b))
      assert.is_false(rl:acquire(b))
      assert.has_error(function() rl:set_resource_config(b, { limit = 1 }) end)
      local got = rl:get_resource_config(b)
      got.limit = 99   -- a copy: the store's config does not change
      assert.equals(3, rl:get_resource_config(b).limit)
    end)
  end)

  describe("reset and clear", function()
    it("reset deletes the resource's log and slots only", function()
      local rl = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 1, window_ms = 60000 } }
      local a, b = H.unique("ra"), H.unique("rb")
      assert.is_true(rl:acquire(a))
      assert.is_true(rl:acquire(b))
      assert.is_true(rl:reset(a))
      assert.is_true(rl:acquire(a))
      assert.is_false(rl:acquire(b))
    end)

    it("clear removes every log, slot and cooldown item and nothing else", function()
      local T2 = make_table(admin)
      local rl = ratelimit.new{ client = admin, table_name = T2, default_config = { limit = 1, window_ms = 60000 } }
      assert.is_true(rl:acquire("x"))
      assert.is_true(rl:set_cooldown("example.com", admin.runtime.now_ms() + 60000))
      assert(admin:put_item{ TableName = T2, Item = { pk = "CACHE#k", sk = "CACHE#k", value = "1" } })
      assert.is_true(rl:clear())
      local left = assert(admin:scan_all{ TableName = T2 })
      assert.equals(1, #left)
      assert.equals("CACHE#k", left[1].pk)
      assert.is_true(rl:acquire("x"))
      admin:delete_table{ TableName = T2 }
    end)
  end)

  describe("cooldowns", function()
    it("set, get, clear; Node's item layout", function()
      local state = { T = 1700002000000 }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T }
      local origin = H.unique("api.example.com")
      assert.is_nil(rl:get_cooldown(origin))
      assert.is_true(rl:set_cooldown(origin, state.T + 5000))
      local raw = assert(admin:get_item{ TableName = T, Key = { pk = "COOLDOWN#" .. origin, sk = "COOLDOWN#" .. origin } }).Item
      assert.equals(state.T + 5000, raw.cooldownUntil)
      assert.equals(math.ceil((state.T + 5000) / 1000), raw.ttl)
      assert.equals(state.T + 5000, rl:get_cooldown(origin))
      assert.is_true(rl:clear_cooldown(origin))
      assert.is_nil(rl:get_cooldown(origin))
    end)

    it("a passed cooldown reads as none and is deleted", function()
      local state = { T = 1700003000000 }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T }
      local origin = H.unique("o")
      assert.is_true(rl:set_cooldown(origin, state.T + 1000))
      state.T = state.T + 1000
      local n, v, err = requests(c, function() return rl:get_cooldown(origin) end)
      assert.is_nil(v)
      assert.is_nil(err)
      assert.equals(2, n)
      assert.is_nil(admin:get_item{ TableName = T, Key = { pk = "COOLDOWN#" .. origin, sk = "COOLDOWN#" .. origin } }.Item)
    end)

    it("reads a cooldown the Node package wrote", function()
      local rl = ratelimit.new{ client = admin, table_name = T }
      local origin, untilms = H.unique("n"), math.floor(admin.runtime.now_ms()) + 60000
      assert(admin:put_item{ TableName = T, Item = { pk = "COOLDOWN#" .. origin, sk = "COOLDOWN#" .. origin,
        cooldownUntil = untilms, ttl = math.floor(untilms / 1000) } })
      assert.equals(untilms, rl:get_cooldown(origin))
    end)
  end)

  describe("bad input", function()
    local rl
    before_each(function() rl = ratelimit.new{ client = admin, table_name = T } end)

    it("returns the Node package's messages for invalid resources, sending nothing", function()
      local cases = {
        { "", "resource must not be empty" },
        { "a\nb", "resource contains unsupported control characters" },
        { string.rep("x", 513), "resource exceeds maximum length of 512 bytes" },
      }
      for _, case in ipairs(cases) do
        for _, m in ipairs({ "acquire", "can_proceed", "record", "get_status", "reset", "get_wait_time",
                             "get_resource_config" }) do
          local n, v, err = requests(admin, function() return rl[m](rl, case[1]) end)
          assert.is_nil(v, m)
          assert.equals(case[2], err.message, m)
          assert.equals(0, n, m)
        end
        local v, err = rl:set_resource_config(case[1], { limit = 1, window_ms = 1 })
        assert.is_nil(v)
        assert.equals(case[2], err.message)
      end
      local v, err = rl:get_cooldown("")
      assert.is_nil(v)
      assert.equals("origin must not be empty", err.message)
    end)

    it("raises on misuse", function()
      assert.has_error(function() rl:set_cooldown("o", "soon") end)
      assert.has_error(function() rl:set_resource_config("r", "x") end)
    end)

    it("a missing table gives the compat message", function()
      local missing = ratelimit.new{ client = admin, table_name = "no-such-table-rl" }
      local ok, err = missing:acquire("x")
      assert.is_nil(ok)
      assert.equals('DynamoDB table "no-such-table-rl" was not found. Create the table using your '
        .. "infrastructure before using DynamoDB stores.", err.message)
      local _, err2 = missing:can_proceed("x")
      assert.equals(err.message, err2.message)
    end)

    it("a closed store raises", function()
      rl:close()
      assert.has_error(function() rl:acquire("x") end, "ddbkit.ratelimit: the store is closed")
    end)
  end)

  describe("TTL semantics", function()
    it("log and slot items older than the window do not count, whatever their ttl", function()
      local state = { T = 1700004000000 }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T, default_config = { limit = 2, window_ms = 1000 } }
      local res = H.unique("old")
      -- expired (ttl passed) and still present, as DynamoDB's TTL lags
      for i = 0, 1 do
        node_log(admin, T, res, state.T - 5000 - i)
        node_slot(admin, T, res, i, state.T - 5000)
      end
      assert.is_true(rl:can_proceed(res))
      assert.equals(2, rl:get_status(res).remaining)
      assert.is_true(rl:acquire(res))
      assert.is_true(rl:acquire(res))
      assert.is_false(rl:acquire(res))
    end)

    it("ddbkit's items carry a ttl no earlier than the end of their window", function()
      local state = { T = 1700005000500 }
      local c = fake_client(state)
      local rl = ratelimit.new{ client = c, table_name = T, default_config = { limit = 1, window_ms = 1000 } }
      local res = H.unique("ttl")
      assert.is_true(rl:acquire(res))
      local log = assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT#" .. res } })
      local slots = assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. res } })
      assert.equals(1, #log)
      assert.equals(1, #slots)
      assert.equals(1700005002, log[1].ttl)      -- ceil(1700005001.5)
      assert.equals(1700005002, slots[1].ttl)
    end)
  end)

  describe("interop with the Node package", function()
    it("Node-style log items count for can_proceed, get_status and get_wait_time", function()
      local rl = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 3, window_ms = 60000 } }
      local res = H.unique("nlog")
      local now = math.floor(admin.runtime.now_ms())
      node_log(admin, T, res, now - 3000)
      node_log(admin, T, res, now - 2000)
      assert.equals(1, rl:get_status(res).remaining)
      assert.is_true(rl:can_proceed(res))
      node_log(admin, T, res, now - 1000)
      assert.is_false(rl:can_proceed(res))
      local wait = rl:get_wait_time(res)
      assert.is_true(wait > 50000 and wait <= 57000, "wait " .. wait)
    end)

    it("Node-style slots count for acquire", function()
      local rl = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 3, window_ms = 60000 } }
      local res = H.unique("nslot")
      local now = math.floor(admin.runtime.now_ms())
      node_slot(admin, T, res, 0, now - 100)
      node_slot(admin, T, res, 2, now - 100)
      assert.is_true(rl:acquire(res))      -- only slot 1 is free
      local slot1 = assert(admin:get_item{ TableName = T, Key = { pk = "RATELIMIT_SLOT#" .. res, sk = "SLOT#1" } }).Item
      assert.is_truthy(slot1, "ddbkit took slot 1")
      assert.is_false(rl:acquire(res))
    end)

    it("ddbkit's grants are what the Node package reads", function()
      local rl = ratelimit.new{ client = admin, table_name = T, default_config = { limit = 4, window_ms = 60000 } }
      local res = H.unique("dlog")
      local before = math.floor(admin.runtime.now_ms())
      assert.is_true(rl:acquire(res))
      assert.is_true(rl:acquire(res))
      assert.is_true(rl:record(res))
      assert.equals(3, node_count(admin, T, res, before - 60000))
      local log = assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT#" .. res } })
      for _, item in ipairs(log) do
        local ts, id = item.sk:match("^TS#(%d+)#(.+)$")
        assert.equals(item.timestamp, tonumber(ts))
        assert.is_truthy(id:match("^%x+%-%x+%-4%x+%-%x+%-%x+$"), item.sk)
        assert.is_true(item.timestamp >= before)
        assert.equals(math.ceil((item.timestamp + 60000) / 1000), item.ttl)
      end
      local slots = assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. res } })
      assert.equals(2, #slots)
      for _, s in ipairs(slots) do
        local n = tonumber(s.sk:match("^SLOT#(%d+)$"))
        assert.is_true(n >= 0 and n < 4)
        assert.is_number(s.timestamp)
        assert.is_number(s.ttl)
      end
      -- a Node acquirer's slot condition sees ddbkit's slots as busy
      for _, s in ipairs(slots) do
        local ok, err = admin:put_item{ TableName = T, Item = { pk = s.pk, sk = s.sk, timestamp = before, ttl = 1 },
          ConditionExpression = "attribute_not_exists(pk) OR #timestamp < :windowStart",
          ExpressionAttributeNames = { ["#timestamp"] = "timestamp" },
          ExpressionAttributeValues = { [":windowStart"] = before + 1 - 60000 } }
        assert.is_nil(ok)
        assert.equals("ConditionalCheckFailedException", err.code)
      end
    end)
  end)

  describe("key-prefix policy", function()
    it("a policy that raises is a PolicyError naming it; nothing is written", function()
      local rl = ratelimit.new{ client = admin, table_name = T,
        policy = { name = "broken", prefix = function() error("boom") end } }
      local n, ok, err = requests(admin, function() return rl:acquire("x") end)
      assert.is_nil(ok)
      assert.equals("PolicyError", err.code)
      assert.is_truthy(err.message:find("broken", 1, true))
      assert.equals(0, n)
    end)
  end)
end)
