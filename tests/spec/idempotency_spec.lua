-- ddbkit.idempotency against DynamoDB Local, in one process: both modes'
-- flows and request budgets, replays of results and errors, items written
-- in the Node adapter's layout, owners, renewal and lost leases, cache keys,
-- bad input, the web helper and the StorageAdapter. The many-process runs
-- are in idempotency_contention_spec.lua.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local idempotency = require "ddbkit.idempotency"
local schema = require "ddbkit.schema"

local sha = core.sha256_hex

local function idem_table(client)
  local name = H.unique("idem")
  assert(client:create_table(schema.create_table_params(schema.IDEMPOTENCY_TABLE_SCHEMA, name)))
  assert(client:wait_for_table(name, 30000))
  return name
end

describe("ddbkit.idempotency", function()
  local admin, T

  setup(function()
    admin = H.client()
    T = idem_table(admin)
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
  end)

  local function new(opts, client)
    local o = { client = client or admin, table_name = T }
    for k, v in pairs(opts or {}) do o[k] = v end
    return idempotency.new(o)
  end

  local function raw(ck)
    local res = assert(admin:get_item{ TableName = T, Key = { cacheKey = ck }, ConsistentRead = true })
    return res.Item
  end

  -- A counting handler: how often it ran, and what it returns.
  local function counter(result)
    local h = { runs = 0 }
    h.fn = function()
      h.runs = h.runs + 1
      return result
    end
    return h
  end

  for _, mode in ipairs{ "compat", "fast" } do
    describe(mode .. " mode", function()
      local first_budget = mode == "compat" and 4 or 2

      it("runs the handler once and replays its result, within the request budget", function()
        local idem = new{ mode = mode }
        local key = H.unique("k")
        local ctx = { method = "POST", path = "/orders", body = '{"sku":"abc"}' }
        local h = counter({ id = 7, status = "created", items = { "a", "b" } })
        local n1, r1, e1 = H.requests(admin, function() return idem:execute(key, ctx, h.fn) end)
        assert.is_nil(e1)
        assert.are.same({ id = 7, status = "created", items = { "a", "b" } }, r1)
        assert.are.equal(first_budget, n1)
        local n2, r2 = H.requests(admin, function() return idem:execute(key, ctx, h.fn) end)
        assert.are.same(r1, r2)
        assert.are.equal(1, n2)
        assert.are.equal(1, h.runs)
      end)

      it("stores the record in the Node layout", function()
        local idem = new{ mode = mode, ttl_ms = 3600000 }
        local key = H.unique("k")
        local before = core.now_ms()
        assert(idem:execute(key, nil, function() return "done" end))
        local item = raw(idem:cache_key(key))
        assert.are.equal("done", item.response)
        assert.are.equal(3600000, item.ttl)
        assert.is_true(item.createdAt >= before and item.createdAt <= core.now_ms())
        assert.are.equal(math.ceil((item.createdAt + item.ttl) / 1000), item.expiresAt)
        assert.is_nil(item.lockOwner)
      end)

      it("stores a raised error and replays it to every later caller", function()
        local idem = new{ mode = mode }
        local key = H.unique("k")
        local runs = 0
        local function boom()
          runs = runs + 1
          error({ name = "PaymentDeclined", message = "card declined", status = 402 })
        end
        local r1, e1 = idem:execute(key, nil, boom)
        local r2, e2 = idem:execute(key, nil, boom)
        assert.is_nil(r1)
        assert.is_nil(r2)
        assert.are.equal(1, runs)
        for _, e in ipairs{ e1, e2 } do
          assert.are.equal("PaymentDeclined", e.name)
          assert.are.equal("PaymentDeclined", e.code)
          assert.are.equal("card declined", e.message)
          assert.are.equal(402, e.status)
        end
        local item = raw(idem:cache_key(key))
        assert.is_true(item.response["@@idempotency/error"])
        assert.are.equal("PaymentDeclined", item.response.name)
        -- errors are kept for min(lock_ttl, ttl)
        assert.are.equal(30000, item.ttl)
      end)

      it("stores a returned nil, err the same way, a string error as name Error", function()
        local idem = new{ mode = mode }
        local key = H.unique("k")
        local _, e1 = idem:execute(key, nil, function() return nil, "out of stock" end)
        local _, e2 = idem:execute(key, nil, function() return "never" end)
        assert.are.equal("Error", e1.name)
        assert.are.equal("out of stock", e1.message)
        assert.are.equal(500, e1.status)
        assert.are.same({ e1.name, e1.message }, { e2.name, e2.message })
      end)

      it("should_cache = false runs the handler every time and leaves the key free", function()
        local idem = new{ mode = mode, should_cache = function(r) return r ~= "transient" end }
        local key = H.unique("k")
        local h = counter("transient")
        assert.are.equal("transient", idem:execute(key, nil, h.fn))
        assert.are.equal("transient", idem:execute(key, nil, h.fn))
        assert.are.equal(2, h.runs)
      end)

      it("renews the lease while a slow handler runs, so nobody else gets in", function()
        local idem = new{ mode = mode, lock_ttl_ms = 600, max_clock_skew_ms = 0 }
        local other_client = H.client()
        local other = new({ mode = mode, lock_timeout_ms = 0, max_clock_skew_ms = 0 }, other_client)
        local key = H.unique("k")
        local inner_runs, inner_err = 0, nil
        local result = assert(idem:execute(key, nil, function()
          core.sleep_ms(1500)   -- the slow handler: 2.5 leases
          local _, err = other:execute(key, nil, function()
            inner_runs = inner_runs + 1
            return "second"
          end)
          inner_err = err
          return "first"
        end))
        assert.are.equal("first", result)
        assert.are.equal(0, inner_runs)
        assert.are.equal("LOCK_TIMEOUT", inner_err.code)
        assert.are.equal(409, inner_err.status)
        assert.are.equal("first", (other:execute(key, nil, function() return "second" end)))
        other_client:close()
      end)

      it("reports LOST and stores nothing when renewals cannot reach DynamoDB", function()
        if not H.proxy then pending("the fault proxy is not running") return end
        local pc = H.proxied_client{ max_attempts = 1, timeout_ms = 2000 }
        local idem = new({ mode = mode, lock_ttl_ms = 600, max_clock_skew_ms = 0 }, pc)
        local key = H.unique("k")
        local r, err = idem:execute(key, nil, function()
          -- every renewal (an UpdateItem) fails from now on, until execute
          -- has returned: a renewal let through between the handler's end
          -- and the keeper's stop would rightly take the lease back (nobody
          -- else took it), and the result would be stored
          H.faults{ { kind = "status", status = 503, match = "UpdateItem", count = 1000 } }
          core.sleep_ms(1200)
          return "late"
        end)
        H.clear_faults()
        assert.is_nil(r)
        assert.are.equal("LOST", err.code)
        assert.are.equal("late", err.result)
        local item = raw(idem:cache_key(key))
        assert.is_true(item == nil or item.response == nil, "a lost lease stored a result")
        pc:close()
      end)

      for _, lost in ipairs{
          -- count 2: one per attempt (every send is an attempt: the
          -- engine refuses libcurl's hidden resend)
          { name = "the answer lost", kind = "drop_response", count = 2 },
          { name = "a 5xx for an answer", kind = "status", status = 500, forward = true, count = 2 } } do
        it("the final write applied, every attempt's answer " .. lost.name
           .. ": the caller gets its result, stored once, a replay runs nothing", function()
          if not H.proxy then pending("the fault proxy is not running") return end
          local pc = H.proxied_client{ max_attempts = 2, base_delay_ms = 1 }
          local idem = new({ mode = mode }, pc)
          local key = H.unique("k")
          local ck = idem:cache_key(key)
          local final = mode == "compat" and "TransactWriteItems" or "UpdateItem"
          local runs = 0
          local r, err = idem:execute(key, nil, function()
            runs = runs + 1
            -- from here on (the lease is taken), both attempts of the final
            -- write reach DynamoDB and neither answer comes back
            H.faults{ { kind = lost.kind, status = lost.status, forward = lost.forward,
                        match = final, count = lost.count } }
            return "once"
          end)
          H.clear_faults()
          assert.are.equal("once", r, tostring(err))
          local rec = raw(ck)
          assert.are.equal("once", rec.response)
          assert.is_nil(rec.lockOwner)
          if mode == "compat" then
            -- released: nobody waits on it, and TTL collects it
            local lk = raw("lock:" .. ck)
            assert.is_number(lk.releasedAt)
            assert.is_true(lk.expiresAt < math.floor(core.now_ms() / 1000))
          end
          local other = new{ mode = mode, lock_timeout_ms = 0 }
          assert.are.equal("once", (other:execute(key, nil, function() runs = runs + 1 return "twice" end)))
          assert.are.equal(1, runs)
          pc:close()
        end)
      end

      it("the final write failed (5xx, not applied) on every attempt: STORAGE_ERROR and the key is free at once", function()
        if not H.proxy then pending("the fault proxy is not running") return end
        local pc = H.proxied_client{ max_attempts = 2, base_delay_ms = 1 }
        local idem = new({ mode = mode }, pc)
        local key = H.unique("k")
        local final = mode == "compat" and "TransactWriteItems" or "UpdateItem"
        local r, err = idem:execute(key, nil, function()
          H.faults{ { kind = "status", status = 500, match = final, count = 2 } }   -- both attempts
          return "lost"
        end)
        H.clear_faults()
        assert.is_nil(r)
        assert.are.equal("STORAGE_ERROR", err.code)
        assert.are.equal("lost", err.result)
        -- the lease was given back: a retry runs now instead of waiting out LOCK_TIMEOUT
        local other = new{ mode = mode, lock_timeout_ms = 0 }
        assert.are.equal("again", (other:execute(key, nil, function() return "again" end)))
        pc:close()
      end)

      it("refuses bad keys with KEY_REQUIRED and writes nothing", function()
        local idem = new{ mode = mode, max_key_length = 8 }
        local h = counter("x")
        for _, key in ipairs{ "", "123456789" } do
          local n, r, err = H.requests(admin, function() return idem:execute(key, nil, h.fn) end)
          assert.is_nil(r)
          assert.are.equal("KEY_REQUIRED", err.code)
          assert.are.equal(400, err.status)
          assert.are.equal(0, n)
        end
        local _, err = idem:execute(nil, nil, h.fn)
        assert.are.equal("KEY_REQUIRED", err.code)
        assert.are.equal(0, h.runs)
        assert.has_error(function() idem:execute(42, nil, h.fn) end)
        assert.has_error(function() idem:execute("k", nil, "not a function") end)
      end)

      it("a result DynamoDB cannot hold is a SERIALIZATION_ERROR that keeps the result and the key free", function()
        local idem = new{ mode = mode }
        local key = H.unique("k")
        local bad = { f = function() end }
        local r, err = idem:execute(key, nil, function() return bad end)
        assert.is_nil(r)
        assert.are.equal("SERIALIZATION_ERROR", err.code)
        assert.are.equal(500, err.status)
        assert.are.equal(bad, err.result)
        -- nothing half-written: the key runs again, and stores this time
        assert.are.equal("ok", idem:execute(key, nil, function() return "ok" end))
        assert.are.equal("ok", raw(idem:cache_key(key)).response)
      end)

      it("a result larger than an item is refused the same way", function()
        local idem = new{ mode = mode }
        local key = H.unique("k")
        local big = string.rep("x", 410 * 1024)
        local r, err = idem:execute(key, nil, function() return big end)
        assert.is_nil(r)
        assert.are.equal("SERIALIZATION_ERROR", err.code)
        assert.are.equal(big, err.result)
        assert.are.equal("small", idem:execute(key, nil, function() return "small" end))
      end)

      it("a handler returning nothing is an error, nothing stored", function()
        local idem = new{ mode = mode }
        local key = H.unique("k")
        local r, err = idem:execute(key, nil, function() end)
        assert.is_nil(r)
        assert.are.equal("SERIALIZATION_ERROR", err.code)
        assert.matches("returned nothing", err.message)
        local item = raw(idem:cache_key(key))
        assert.is_true(item == nil or item.response == nil)
        assert.are.equal(1, idem:execute(key, nil, function() return 1 end))
      end)

      it("a key held past its lease by a dead holder runs again", function()
        local idem = new{ mode = mode, lock_ttl_ms = 300, max_clock_skew_ms = 0, lock_poll_interval_ms = 50 }
        local key = H.unique("k")
        local ck = idem:cache_key(key)
        -- a holder that took the lease and vanished
        local lk = ddbkit.lock.new{ client = admin, table_name = T,
                                    key = { cacheKey = mode == "compat" and "lock:" .. ck or ck },
                                    max_clock_skew_ms = 0 }
        assert(lk:acquire{ lease_ms = 300 })
        local h = counter("after")
        assert.are.equal("after", idem:execute(key, nil, h.fn))
        assert.are.equal(1, h.runs)
      end)

      it("a caller whose lease was taken over cannot store or release", function()
        local idem = new{ mode = mode, lock_ttl_ms = 300, max_clock_skew_ms = 0 }
        local key = H.unique("k")
        local ck = idem:cache_key(key)
        local target = { cacheKey = mode == "compat" and "lock:" .. ck or ck }
        local r, err = idem:execute(key, nil, function()
          -- Simulate a stalled holder: while "we" run, another owner takes the item.
          local item = raw(target.cacheKey)
          assert(admin:put_item{ TableName = T, Item = { cacheKey = target.cacheKey, lockOwner = "intruder",
                                                         lockRvn = "r1", leaseMs = 60000,
                                                         expiresAt = item.expiresAt + 60,
                                                         acquiredAt = core.now_ms() } })
          return "mine"
        end)
        assert.is_nil(r)
        assert.are.equal("LOST", err.code)
        local after = raw(target.cacheKey)
        assert.are.equal("intruder", after.lockOwner)
        if mode == "compat" then assert.is_nil(raw(ck)) end
      end)
    end)
  end

  describe("compat mode and the Node adapter's items", function()
    -- Requests exactly as the Node adapter sends them (compat.md B).
    local function node_set(ck, response, ttl, created)
      created = created or core.now_ms()
      assert(admin:put_item{ TableName = T, Item = { cacheKey = ck, response = response, createdAt = created,
                                                     ttl = ttl, expiresAt = math.ceil((created + ttl) / 1000) } })
    end
    local function node_lock(ck, ttl)
      local now = core.now_ms()
      return admin:put_item{
        TableName = T, Item = { cacheKey = "lock:" .. ck, acquiredAt = now,
                                expiresAt = math.ceil((now + ttl) / 1000) },
        ConditionExpression = "attribute_not_exists(cacheKey) OR expiresAt < :nowSec",
        ExpressionAttributeValues = { [":nowSec"] = math.ceil(now / 1000) },
      }
    end

    it("replays a record written by Node in one request", function()
      local idem = new()
      local key = H.unique("k")
      local ck = idem:cache_key(key, { path = "/orders" })
      node_set(ck, { id = 1, status = "created" }, 3600000)
      local h = counter("ddbkit")
      local n, r = H.requests(admin, function() return idem:execute(key, { path = "/orders" }, h.fn) end)
      assert.are.same({ id = 1, status = "created" }, r)
      assert.are.equal(1, n)
      assert.are.equal(0, h.runs)
    end)

    it("replays a Node-stored error with its name and message", function()
      local idem = new()
      local key = H.unique("k")
      node_set(idem:cache_key(key), { ["@@idempotency/error"] = true, name = "TypeError",
                                      message = "x is undefined", stack = "TypeError: ..." }, 30000)
      local r, err = idem:execute(key, nil, function() return "no" end)
      assert.is_nil(r)
      assert.are.equal("TypeError", err.name)
      assert.are.equal("x is undefined", err.message)
    end)

    it("treats an expired Node record as missing", function()
      local idem = new()
      local key = H.unique("k")
      node_set(idem:cache_key(key), "old", 1000, core.now_ms() - 5000)
      assert.are.equal("new", idem:execute(key, nil, function() return "new" end))
      assert.are.equal("new", raw(idem:cache_key(key)).response)
    end)

    it("waits on a Node-held lock, then replays what Node stored", function()
      local key = H.unique("k")
      local polls = 0
      local idem
      local rt = {
        now_ms = core.now_ms, mono_ms = core.mono_ms, keep_lease = core.lock_keep,
        send = core.call,
        sleep = function(ms)
          -- Node finishes while we wait: stores the record, deletes its lock
          polls = polls + 1
          if polls == 2 then
            local ck = idem:cache_key(key)
            node_set(ck, "from node", 60000)
            assert(admin:delete_item{ TableName = T, Key = { cacheKey = "lock:" .. ck } })
          end
        end,
      }
      local c = H.client{ runtime = rt }
      idem = new({ lock_poll_interval_ms = 10 }, c)
      assert(node_lock(idem:cache_key(key), 30000))
      local h = counter("ddbkit")
      assert.are.equal("from node", idem:execute(key, nil, h.fn))
      assert.are.equal(0, h.runs)
      assert.is_true(polls >= 2)
      c:close()
    end)

    it("answers CONFLICT when a Node holder released without storing", function()
      local key = H.unique("k")
      local idem
      local rt = {
        now_ms = core.now_ms, mono_ms = core.mono_ms, keep_lease = core.lock_keep, send = core.call,
        sleep = function()
          admin:delete_item{ TableName = T, Key = { cacheKey = "lock:" .. idem:cache_key(key) } }
        end,
      }
      local c = H.client{ runtime = rt }
      idem = new({}, c)
      assert(node_lock(idem:cache_key(key), 30000))
      local r, err = idem:execute(key, nil, function() return "x" end)
      assert.is_nil(r)
      assert.are.equal("CONFLICT", err.code)
      assert.are.equal(409, err.status)
      c:close()
    end)

    it("times out with LOCK_TIMEOUT behind a live Node lock", function()
      local idem = new{ lock_timeout_ms = 0 }
      local key = H.unique("k")
      assert(node_lock(idem:cache_key(key), 30000))
      local _, err = idem:execute(key, nil, function() return "x" end)
      assert.are.equal("LOCK_TIMEOUT", err.code)
    end)

    it("runs once a Node lock expired more than a lock TTL ago", function()
      -- within a lock TTL of its expiry the Node holder may still run:
      -- idempotency_node_lock_spec.lua
      local idem = new{ max_clock_skew_ms = 0, lock_ttl_ms = 5000 }
      local key = H.unique("k")
      local ck = idem:cache_key(key)
      local past = core.now_ms() - 10000
      assert(admin:put_item{ TableName = T, Item = { cacheKey = "lock:" .. ck, acquiredAt = past,
                                                     expiresAt = math.ceil(past / 1000) } })
      assert.are.equal("ran", idem:execute(key, nil, function() return "ran" end))
    end)

    it("a ddbkit-held lock makes the Node adapter's conditional Put fail", function()
      local idem = new()
      local key = H.unique("k")
      local ck = idem:cache_key(key)
      local node_res, node_err
      assert(idem:execute(key, nil, function()
        node_res, node_err = node_lock(ck, 30000)
        return "ddbkit"
      end))
      assert.is_nil(node_res)
      assert.are.equal("ConditionalCheckFailedException", node_err.code)
      -- and once released, the Node adapter sees the lock free
      assert(node_lock(ck, 30000))
    end)
  end)

  describe("fast mode's in-process LRU", function()
    it("serves a replay without a request, and forgets expired records", function()
      local idem = new{ mode = "fast", lru_size = 2, ttl_ms = 60000 }
      local key = H.unique("k")
      local h = counter("v")
      assert.are.equal(2, (H.requests(admin, function() return idem:execute(key, nil, h.fn) end)))
      local n, r = H.requests(admin, function() return idem:execute(key, nil, h.fn) end)
      assert.are.equal(0, n)
      assert.are.equal("v", r)
      -- a bounded map: the least recently used goes first
      local lru = idempotency.lru(2)
      lru:put("a", { createdAt = 0, ttl = 100 })
      lru:put("b", { createdAt = 0, ttl = 100 })
      assert.is_truthy(lru:get("a", 50))
      lru:put("c", { createdAt = 0, ttl = 100 })
      assert.is_nil(lru:get("b", 50))
      assert.is_truthy(lru:get("a", 50))
      assert.is_nil(lru:get("a", 101))
    end)

    it("is refused in compat mode", function()
      assert.has_error(function() new{ lru_size = 10 } end)
    end)
  end)

  describe("cache keys", function()
    local idem = idempotency.new{ client = H.client(), vary_headers = { "X-Tenant", "Accept-Language" } }
    local base = { method = "POST", path = "/orders", body = '{"a":1}',
                   headers = { ["x-tenant"] = "t1", ["accept-language"] = "en" } }
    local function with(field, value)
      local c = {}
      for k, v in pairs(base) do c[k] = v end
      c[field] = value
      return c
    end

    it("follows the formula of compat.md B (fixed vectors, computed with node)", function()
      -- sha256("POST:/orders:order-1:" .. sha256('{"a":1}') .. ":Accept-Language=en&X-Tenant=t1"):
      -- the names as configured, sorted by localeCompare (the cases Node
      -- and ddbkit compare at run time: idempotency_node_key_spec.lua)
      assert.are.equal("3486e08a5b6e93089f6a1e6bdedde85090f5a0b7dd6ebd3b4b5fbace24325fc1",
                       idem:cache_key("order-1", base))
      local plain = idempotency.new{ client = H.client() }
      -- no body, no vary headers: method POST and path / by default
      assert.are.equal("0a1b763bdd7cf47dba38788369c8d957d5ee7d0f84687ef2d0af3898cca1ef52",
                       plain:cache_key("abc"))
      -- a UTF-8 key and a form body
      assert.are.equal("1ed37677f0a77d6fc235f61752705f66aa50b690dea13f66822ad91212b795eb",
                       plain:cache_key("key-\195\169", { method = "PUT", path = "/v1/pay",
                                                         body = "amount=10&currency=EUR" }))
    end)

    it("changes with method, path, body and each vary header (lowercase names), not with other headers", function()
      local k = idem:cache_key("key", base)
      assert.are_not.equal(k, idem:cache_key("key", with("method", "PUT")))
      assert.are_not.equal(k, idem:cache_key("key", with("path", "/orders/2")))
      assert.are_not.equal(k, idem:cache_key("key", with("body", '{"a":2}')))
      assert.are_not.equal(k, idem:cache_key("key", with("headers", { ["x-tenant"] = "t2", ["accept-language"] = "en" })))
      assert.are_not.equal(k, idem:cache_key("key", with("headers", { ["x-tenant"] = "t1", ["accept-language"] = "de" })))
      assert.are.equal(k, idem:cache_key("key", with("headers", { ["x-tenant"] = "t1", ["accept-language"] = "en",
                                                                  ["user-agent"] = "curl" })))
      -- as Node's execute: only the lowercase name is looked up
      assert.are_not.equal(k, idem:cache_key("key", with("headers", { ["X-TENANT"] = "t1", ["accept-language"] = "en" })))
      assert.are_not.equal(k, idem:cache_key("key2", base))
    end)

    it("hashes a Lua-built table body with its keys sorted, and ignores the body when told to", function()
      local a = idem:cache_key("k", { body = { b = 1, a = { 1, 2, "x" } } })
      assert.are.equal(a, idem:cache_key("k", { body = { a = { 1, 2, "x" }, b = 1 } }))
      -- no headers: the vary headers are left out, not written empty
      assert.are.equal(sha("POST:/:k:" .. sha('{"a":[1,2,"x"],"b":1}') .. ":"), a)
      -- a table that is not a plain list keeps all its keys; text collisions refuse
      assert.are_not.equal(idem:cache_key("k", { body = { 1, 2, x = 1 } }),
                           idem:cache_key("k", { body = { 1, 2, x = 2 } }))
      assert.has_error(function() idem:cache_key("k", { body = { [1] = "a", ["1"] = "b" } }) end)
      local nobody = idempotency.new{ client = H.client(), include_body_in_key = false }
      assert.are.equal(nobody:cache_key("k", { body = "one" }), nobody:cache_key("k", { body = "two" }))
    end)
  end)

  describe("the web helper", function()
    local function request(key, body, method)
      return { method = method or "POST", path = "/orders",
               headers = { ["content-type"] = "application/json", ["idempotency-key"] = key }, body = body }
    end

    it("runs a POST once and replays status, headers and body", function()
      local idem = new()
      local runs = 0
      local function handler()
        runs = runs + 1
        return { status = 201, headers = { Location = "/orders/9" }, body = '{"id":9}' }
      end
      local key = H.unique("k")
      local r1 = idem:handle(request(key, '{"sku":1}'), handler)
      local r2 = idem:handle(request(key, '{"sku":1}'), handler)
      assert.are.equal(1, runs)
      assert.are.equal(201, r1.status)
      assert.are.same({ 201, "/orders/9", '{"id":9}' }, { r2.status, r2.headers.Location, r2.body })
      assert.are.equal("true", r2.headers["Idempotent-Replayed"])
      assert.is_nil(r1.headers["Idempotent-Replayed"])
      local item = raw(idem:cache_key(key, { method = "POST", path = "/orders", body = '{"sku":1}' }))
      assert.are.same({ '{"id":9}', 201 }, { item.response, item.statusCode })
    end)

    it("replays a response without a body (a 204) instead of running again", function()
      local idem = new()
      local runs = 0
      local function handler() runs = runs + 1 return { status = 204 } end
      local key = H.unique("k")
      idem:handle(request(key, "b"), handler)
      local r2 = idem:handle(request(key, "b"), handler)
      assert.are.equal(1, runs)
      assert.are.same({ 204, "" }, { r2.status, r2.body })
    end)

    it("answers 500 for a handler error whose status is not an HTTP error status", function()
      local idem = new()
      local r = idem:handle(request(H.unique("k"), "b"), function()
        return nil, { code = "Timeout", message = "upstream", status = 0 }
      end)
      assert.are.equal(500, r.status)
      assert.matches("Timeout", r.body)
    end)

    it("finds the header in any case, passes GET and keyless requests through", function()
      local idem = new()
      local runs = 0
      local function handler() runs = runs + 1 return { status = 200, body = "ok" } end
      local key = H.unique("k")
      local req = request(nil, "b")
      req.headers["IDEMPOTENCY-KEY"] = key
      idem:handle(req, handler)
      idem:handle(req, handler)
      assert.are.equal(1, runs)
      idem:handle(request(key, "b", "GET"), handler)
      idem:handle(request(key, "b", "GET"), handler)
      idem:handle(request(nil, "b"), handler)
      assert.are.equal(4, runs)
    end)

    it("answers 400 for a too long key and 409 while the key is in use", function()
      local idem = new{ max_key_length = 4, lock_timeout_ms = 0 }
      local r = idem:handle(request("12345", "b"), function() return { status = 200, body = "" } end)
      assert.are.equal(400, r.status)
      assert.matches("KEY_REQUIRED", r.body)
      local key = "abcd"
      local inner
      idem:handle(request(key, "b"), function()
        inner = idem:handle(request(key, "b"), function() return { status = 200, body = "" } end)
        return { status = 200, body = "outer" }
      end)
      assert.are.equal(409, inner.status)
      assert.matches("LOCK_TIMEOUT", inner.body)
    end)
  end)

  describe("the StorageAdapter", function()
    it("gets, sets and deletes records in the Node layout", function()
      local a = new():adapter()
      local key = H.unique("ck")
      assert.is_nil(a:get(key))
      assert(a:set(key, { response = { ok = true }, statusCode = 200, headers = { ["x-a"] = "1" },
                          createdAt = core.now_ms(), ttl = 60000 }))
      local rec = a:get(key)
      assert.are.same({ ok = true }, rec.response)
      assert.are.equal(200, rec.statusCode)
      assert.are.equal(math.ceil((rec.createdAt + 60000) / 1000), raw(key).expiresAt)
      assert(a:delete(key))
      assert.is_nil(a:get(key))
      -- expired: missing, and deleted
      assert(a:set(key, { response = "old", createdAt = core.now_ms() - 10000, ttl = 1000 }))
      assert.is_nil(a:get(key))
      assert.is_nil(raw(key))
    end)

    it("locks: only the holder releases; another adapter can neither take nor release it", function()
      local mine, theirs = new():adapter(), new():adapter()
      local key = H.unique("ck")
      assert.is_true(mine:acquire_lock(key, 30000))
      assert.is_false(theirs:acquire_lock(key, 30000))
      local ok, err = theirs:release_lock(key)
      assert.is_nil(ok)
      assert.are.equal("not_owner", err.code)
      assert.is_truthy(raw("lock:" .. key).lockOwner)
      local _, werr = theirs:wait_for_lock(key, 0, 10)
      assert.are.equal("LOCK_TIMEOUT", werr.code)
      assert.is_true(mine:release_lock(key))
      assert.is_true(theirs:wait_for_lock(key, 0, 10))
      assert.is_true(theirs:acquire_lock(key, 30000))
      assert.is_true(theirs:release_lock(key))
    end)
  end)

  it("checks its options", function()
    assert.has_error(function() idempotency.new{ client = admin, mode = "turbo" } end)
    assert.has_error(function() idempotency.new{ client = admin, ttl_ms = 0 } end)
    assert.has_error(function() idempotency.new{ client = admin, bogus = 1 } end)
    -- a lease no longer than the skew margin would never be trusted
    assert.has_error(function() idempotency.new{ client = admin, lock_ttl_ms = 1000 } end)
    assert.has_error(function() idempotency.new{ client = admin, lock_timeout_ms = 500 } end)
    -- renewed every third of the lease: a lease of 1 or 2 ms has no third
    -- inside it (the keeper refuses a period that is not shorter)
    assert.has_error(function()
      idempotency.new{ client = admin, lock_ttl_ms = 2, max_clock_skew_ms = 0 }
    end, "ddbkit.idempotency.new: opts.lock_ttl_ms must be an integer >= 3")
    assert.is_table(idempotency.new{ client = admin, lock_ttl_ms = 3, max_clock_skew_ms = 0 })
    assert.has_error(function() idempotency.new{ table_name = T } end)
  end)

  it("names a missing table with the Node message, as STORAGE_ERROR", function()
    local idem = idempotency.new{ client = admin, table_name = H.unique("missing") }
    local _, err = idem:execute("k", nil, function() return 1 end)
    assert.are.equal("STORAGE_ERROR", err.code)
    assert.are.equal(503, err.status)
    assert.are.equal("ResourceNotFoundException", err.cause.code)
  end)
end)
