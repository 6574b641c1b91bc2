-- ddbkit.idempotency (compat mode) beside a Node holder, against DynamoDB
-- Local. A Node lock is neither renewed nor fenced, and its holder stores
-- its record unconditionally: ddbkit must never run the handler while a
-- Node holder may still run it (compat.md B, the flow, *checked*):
-- - a ddbkit waiter that sees a Node lock run out answers CONFLICT, like the
--   Node middleware's waiters, and never runs the handler;
-- - a fresh ddbkit caller that finds one already run out answers CONFLICT
--   until it has been expired for a lock TTL more, then takes it over;
-- - a Node holder that stores and releases (DeleteItem) is replayed.
-- The Node side's requests are built exactly as the Node adapter sends them.
-- No sleeps: "time passed" is made by writing the Node lock item as Node
-- would have written it that much earlier; the runtime's sleep is where the
-- Node side acts while ddbkit waits.
local H = require "test_helper"
local core = require "ddbkit.core"
local idempotency = require "ddbkit.idempotency"
local schema = require "ddbkit.schema"

local ceil = math.ceil

describe("ddbkit.idempotency and a Node lock holder", function()
  local admin, T

  setup(function()
    admin = H.client()
    T = H.unique("idemnode")
    assert(admin:create_table(schema.create_table_params(schema.IDEMPOTENCY_TABLE_SCHEMA, T)))
    assert(admin:wait_for_table(T, 30000))
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
  end)

  local function now_ms() return math.floor(core.now_ms()) end

  local function raw(key)
    local res = assert(admin:get_item{ TableName = T, Key = { cacheKey = key }, ConsistentRead = true })
    return res.Item
  end

  -- The Node adapter's requests (compat.md B), verbatim. `at` is the Node
  -- process's clock when it sent them.
  local function node_lock(ck, ttl, at)
    local now = at or now_ms()
    return admin:put_item{
      TableName = T, Item = { cacheKey = "lock:" .. ck, acquiredAt = now,
                              expiresAt = ceil((now + ttl) / 1000) },
      ConditionExpression = "attribute_not_exists(cacheKey) OR expiresAt < :nowSec",
      ExpressionAttributeValues = { [":nowSec"] = ceil(now / 1000) },
    }
  end
  local function node_store(ck, response, ttl)
    local created = now_ms()
    assert(admin:put_item{ TableName = T, Item = { cacheKey = ck, response = response,
                                                   createdAt = created, ttl = ttl,
                                                   expiresAt = ceil((created + ttl) / 1000) } })
  end
  local function node_release(ck)
    assert(admin:delete_item{ TableName = T, Key = { cacheKey = "lock:" .. ck } })
  end
  -- The same Node lock, as if it had been taken `ago` ms earlier (its lease
  -- ran out while its holder still runs): what the item looks like once
  -- that much time has passed.
  local function node_lock_aged(ck, ttl, ago)
    local now = now_ms() - ago
    assert(admin:put_item{ TableName = T, Item = { cacheKey = "lock:" .. ck, acquiredAt = now,
                                                   expiresAt = ceil((now + ttl) / 1000) } })
  end

  -- A client whose runtime runs on_sleep(n) at the n-th sleep (a waiter's poll).
  local function client_with(on_sleep)
    local n = 0
    local rt = {
      now_ms = core.now_ms, mono_ms = core.mono_ms, keep_lease = core.lock_keep, send = core.call,
      sleep = function()
        n = n + 1
        on_sleep(n)
      end,
    }
    return H.client{ runtime = rt }, function() return n end
  end

  local function counter(result)
    local h = { runs = 0 }
    h.fn = function()
      h.runs = h.runs + 1
      return result
    end
    return h
  end

  it("a waiter that sees a Node lock run out answers CONFLICT and never runs the handler; "
     .. "the record the Node holder stores later is replayed", function()
    local key = H.unique("k")
    local idem, ck
    local c, sleeps = client_with(function(n)
      -- while ddbkit waits, the Node holder's lease runs out (its handler
      -- still runs: no record yet)
      if n == 2 then node_lock_aged(ck, 30000, 31000) end
    end)
    idem = idempotency.new{ client = c, table_name = T, lock_poll_interval_ms = 10,
                            max_clock_skew_ms = 0 }
    ck = idem:cache_key(key)
    assert(node_lock(ck, 30000))
    local h = counter("from ddbkit")
    local r, err = idem:execute(key, nil, h.fn)
    assert.is_nil(r)
    assert.are.equal("CONFLICT", err.code)
    assert.are.equal(409, err.status)
    assert.are.equal(0, h.runs)
    assert.is_true(sleeps() >= 2)
    -- ddbkit left the Node lock as it was, so the Node holder's own lock stands
    local lock_item = raw("lock:" .. ck)
    assert.is_nil(lock_item.lockOwner)
    assert.is_nil(lock_item.fence)
    -- the Node holder finishes: stores its record, deletes its lock
    node_store(ck, "from node", 60000)
    node_release(ck)
    local n, r2 = H.requests(c, function() return idem:execute(key, nil, h.fn) end)
    assert.are.equal("from node", r2)
    assert.are.equal(0, h.runs)
    assert.are.equal(1, n)
    c:close()
  end)

  it("a waiter replays the record a Node holder stored before its release (DeleteItem)", function()
    local key = H.unique("k")
    local idem, ck
    local c, sleeps = client_with(function(n)
      if n == 3 then
        node_store(ck, { id = 9 }, 60000)
        node_release(ck)
      end
    end)
    idem = idempotency.new{ client = c, table_name = T, lock_poll_interval_ms = 10 }
    ck = idem:cache_key(key)
    assert(node_lock(ck, 30000))
    local h = counter("from ddbkit")
    local r, err = idem:execute(key, nil, h.fn)
    assert.is_nil(err)
    assert.are.same({ id = 9 }, r)
    assert.are.equal(0, h.runs)
    assert.is_true(sleeps() >= 3)
    c:close()
  end)

  it("a fresh caller that finds a Node lock just run out answers CONFLICT and leaves it", function()
    local idem = idempotency.new{ client = admin, table_name = T, lock_ttl_ms = 30000,
                                  lock_poll_interval_ms = 1, max_clock_skew_ms = 0 }
    local key = H.unique("k")
    local ck = idem:cache_key(key)
    -- taken by Node 40 s ago with a 30 s lock TTL: run out 10 s ago
    assert(node_lock(ck, 30000, now_ms() - 40000))
    local before = raw("lock:" .. ck)
    local h = counter("from ddbkit")
    local r, err = idem:execute(key, nil, h.fn)
    assert.is_nil(r)
    assert.are.equal("CONFLICT", err.code)
    assert.are.equal(0, h.runs)
    assert.is_true(H.same(before, raw("lock:" .. ck)), "ddbkit changed the Node lock")
    assert.is_nil(raw(ck))
  end)

  it("a fresh caller takes a Node lock run out more than a lock TTL ago, and Node is then kept out",
     function()
    local key = H.unique("k")
    local idem, ck
    local node_res, node_err
    local idem_opts = { client = admin, table_name = T, lock_ttl_ms = 30000, max_clock_skew_ms = 0 }
    idem = idempotency.new(idem_opts)
    ck = idem:cache_key(key)
    -- taken by Node 70 s ago with a 30 s lock TTL: run out 40 s ago
    assert(node_lock(ck, 30000, now_ms() - 70000))
    local h = { runs = 0 }
    local r, err = idem:execute(key, nil, function()
      h.runs = h.runs + 1
      node_res, node_err = node_lock(ck, 30000)
      return "from ddbkit"
    end)
    assert.is_nil(err)
    assert.are.equal("from ddbkit", r)
    assert.are.equal(1, h.runs)
    assert.is_nil(node_res)
    assert.are.equal("ConditionalCheckFailedException", node_err.code)
    assert.are.equal("from ddbkit", raw(ck).response)
    -- released: the Node adapter's condition passes at once, and the item's
    -- expiresAt is one DynamoDB's TTL collects (past, within five years)
    local lock_item = raw("lock:" .. ck)
    local now_s = math.floor(now_ms() / 1000)
    assert.is_true(lock_item.expiresAt < now_s)
    assert.is_true(lock_item.expiresAt > now_s - 5 * 365 * 86400)
    assert.is_nil(lock_item.lockOwner)
    assert(node_lock(ck, 30000))
  end)

  it("fences of one key's leases grow across deletions of its released lock item (TTL)", function()
    local idem = idempotency.new{ client = admin, table_name = T }
    local key = H.unique("k")
    local ck = idem:cache_key(key)
    local fences = {}
    for i = 1, 4 do
      -- the record is gone (expired), so the handler runs again
      assert(admin:delete_item{ TableName = T, Key = { cacheKey = ck } })
      -- every other round, TTL has also deleted the released lock item
      if i % 2 == 1 then
        assert(admin:delete_item{ TableName = T, Key = { cacheKey = "lock:" .. ck } })
      end
      assert.are.equal("run " .. i, idem:execute(key, nil, function()
        fences[#fences + 1] = raw("lock:" .. ck).fence
        return "run " .. i
      end))
    end
    assert.are.equal(4, #fences)
    for i = 2, #fences do
      assert.is_true(fences[i] > fences[i - 1], string.format("%.0f after %.0f", fences[i], fences[i - 1]))
    end
    assert.are.equal(fences[1] + 1, fences[2])  -- the item kept: + 1
    assert.is_true(fences[4] < 2 ^ 53)
  end)

  -- The read-back after a final write whose outcome was hidden: the lock
  -- item it reads may be gone (TTL deleted the released item) or be a Node
  -- holder's (its Put replaced the item, releasedRvn included), whether our
  -- write applied or not: that is "unknown" (ambiguous), never LOST.
  describe("lease_end's read-back of a lock item it cannot vouch for", function()
    local lease_end = require "ddbkit.idempotency.lease_end"
    local cond = { rvn = "rv1", ExpressionAttributeValues = { [":ddbkit_o"] = "me", [":ddbkit_r"] = "rv1" } }
    local lost_answer = { code = "Timeout", message = "timed out", ambiguous = true }

    local function after_read_back(item)
      local idem = { table_name = T, client = {
        get_item = function() return { Item = item } end } }
      local marked = false
      local h = { mark_released = function() marked = true end }
      local ok, err, how = lease_end.failed(idem, h, "lock:x", cond, lost_answer)
      return ok, err, marked, how
    end

    it("a missing item: unknown", function()
      local ok, err, marked = after_read_back(nil)
      assert.is_nil(ok)
      assert.are.equal("STORAGE_ERROR", err.code)
      assert.is_true(err.ambiguous)
      assert.is_false(marked)
    end)

    it("a Node lock item: unknown", function()
      local ok, err = after_read_back{ cacheKey = "lock:x", acquiredAt = 1, expiresAt = 2 }
      assert.is_nil(ok)
      assert.is_true(err.ambiguous)
    end)

    it("our release mark: applied; another ddbkit holder: LOST; still ours: not applied", function()
      assert.is_true((after_read_back{ cacheKey = "lock:x", releasedRvn = "rv1", releasedAt = 5 }))
      local ok, err = after_read_back{ cacheKey = "lock:x", lockOwner = "other", lockRvn = "z",
                                       releasedRvn = "older" }
      assert.is_nil(ok)
      assert.are.equal("LOST", err.code)
      local ok2, err2, _, how = after_read_back{ cacheKey = "lock:x", lockOwner = "me", lockRvn = "rv1" }
      assert.is_nil(ok2)
      assert.are.equal("STORAGE_ERROR", err2.code)
      assert.are.equal("not_applied", how)
    end)
  end)
end)
