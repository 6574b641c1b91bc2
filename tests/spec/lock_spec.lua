-- ddbkit.lock against DynamoDB Local: every state transition, expiry by the
-- wall clock (with and without a skew margin) and by an unchanged record
-- version on the monotonic clock, refusals of non-owners, fencing, the Node
-- idempotency adapter's lock layout both ways, and ambiguous writes through
-- the fault proxy resolving to the truth.
--
-- No sleeps: "time passed" is made by writing the lock item directly
-- (expiresAt in the past); where real time must pass, acquire's own wait_ms
-- does the waiting.
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local schema = require "ddbkit.schema"
local H = require "test_helper"

local admin, T

setup(function()
  admin = H.client()
  T = H.create_table(admin, H.unique("lock"))
end)

teardown(function()
  if H.proxy then H.clear_faults() end
  admin:delete_table{ TableName = T }
  admin:close()
end)

local function now_ms() return math.floor(core.now_ms()) end
local function ceil_div(a, b) return math.floor((a + b - 1) / b) end

local function new_key() return { pk = H.unique("lock"), sk = "L" } end

local function locks_for(key, opts, client, table_name)
  local o = { client = client or admin, table_name = table_name or T, key = key }
  for k, v in pairs(opts or {}) do o[k] = v end
  return ddbkit.lock.new(o)
end

local function read(key, table_name)
  local res = assert(admin:get_item{ TableName = table_name or T, Key = key, ConsistentRead = true })
  return res.Item
end

local function is_integer(v) return type(v) == "number" and v == math.floor(v) end

-- Makes the current lease look lapsed `ago` seconds ago by the wall clock,
-- as if its holder had stopped renewing long ago: only expiresAt and
-- acquiredAt change, so the holder's owner and record version stay.
local function lapse(key, ago, table_name)
  ago = ago or 3600
  local now = now_ms()
  local item = assert(read(key, table_name), "no lock item to lapse")
  local lease = item.leaseMs or 0
  assert(admin:update_item{ TableName = table_name or T, Key = key,
    UpdateExpression = "SET expiresAt = :e, acquiredAt = :a",
    ConditionExpression = "attribute_exists(lockOwner)",
    ExpressionAttributeValues = { [":e"] = math.floor(now / 1000) - ago,
                                  [":a"] = now - ago * 1000 - lease } })
end

-- The lock item says `h` holds it, with h's fence, version and lease.
local function assert_held_by(h, item)
  assert.is_table(item, "the lock item is missing")
  assert.are.equal(h.owner, item.lockOwner)
  assert.are.equal(h.rvn, item.lockRvn)
  assert.are.equal(h.fence, item.fence)
  assert.are.equal(h.lease_ms, item.leaseMs)
  assert.are.equal(h.expires_at, item.expiresAt)
end

-- The lock item is released: fence kept, no owner, the released mark, and
-- expiresAt in the recent past: at or before now (the Node adapter's
-- `expiresAt < :nowSec` sees it free), within five years (DynamoDB's TTL,
-- which skips older values, deletes it).
local function assert_released(item, fence)
  assert.is_table(item, "the lock item is missing")
  assert.are.equal(fence, item.fence)
  local now_s = math.floor(now_ms() / 1000)
  assert.is_true(is_integer(item.expiresAt), "expiresAt " .. tostring(item.expiresAt))
  assert.is_true(item.expiresAt < now_s, "expiresAt " .. item.expiresAt .. " not before " .. now_s)
  assert.is_true(item.expiresAt > now_s - 5 * 365 * 86400, "expiresAt too old for TTL")
  assert.is_true(is_integer(item.releasedAt))
  assert.is_nil(item.lockOwner)
  assert.is_nil(item.lockRvn)
  assert.is_string(item.releasedRvn)
end

local function copy(t)
  local r = {}
  for k, v in pairs(t) do r[k] = type(v) == "table" and copy(v) or v end
  return r
end

-- A downstream write on a guarded item, conditioned on h's fence.
local function guarded_put(client, table_name, guarded_key, h, writer)
  local p = copy(h:fence_condition("fence"))
  p.TableName = table_name
  p.Item = { fence = h.fence, writer = writer }
  for k, v in pairs(guarded_key) do p.Item[k] = v end
  return client:put_item(p)
end

describe("ddbkit.lock state transitions", function()
  it("free -> held: acquire on a missing item writes the lock layout", function()
    local key = new_key()
    assert.is_nil(read(key))
    local locks = locks_for(key)
    local before = now_ms()
    local h, err = locks:acquire{ lease_ms = 10000 }
    local after = now_ms()
    assert.is_nil(err)
    assert.is_truthy(h)
    assert.is_true(is_integer(h.fence), "fence is not an integer: " .. tostring(h.fence))
    assert.is_string(h.owner)
    assert.is_string(h.rvn)
    assert.are.equal(10000, h.lease_ms)
    assert.is_true(h.expires_at >= ceil_div(before + 10000, 1000))
    assert.is_true(h.expires_at <= ceil_div(after + 10000, 1000))
    assert.is_true(h:held())
    assert.is_true(h:valid_ms() > 0)
    local item = read(key)
    assert_held_by(h, item)
    assert.are.equal(key.pk, item.pk)
    assert.are.equal(key.sk, item.sk)
    assert.is_true(is_integer(item.acquiredAt))
    assert.is_true(item.acquiredAt >= before and item.acquiredAt <= after,
      "acquiredAt " .. tostring(item.acquiredAt) .. " outside [" .. before .. ", " .. after .. "]")
    assert.is_true(h:release())
  end)

  it("held -> busy for another handle, with the holder described", function()
    local key = new_key()
    local A, B = locks_for(key), locks_for(key)
    local h = assert(A:acquire{ lease_ms = 10000 })
    local before = read(key)
    local h2, err = B:acquire{ lease_ms = 10000, wait_ms = 0 }
    assert.is_nil(h2)
    assert.are.equal("busy", err.code)
    assert.is_table(err.holder)
    assert.are.equal(h.owner, err.holder.owner)
    assert.are.equal(h.fence, err.holder.fence)
    assert.are.equal(h.rvn, err.holder.rvn)
    -- A second handle from the holder's own lock object is another owner: busy too.
    local h3, err3 = A:acquire{ lease_ms = 10000 }
    assert.is_nil(h3)
    assert.are.equal("busy", err3.code)
    assert.are.equal(h.owner, err3.holder.owner)
    assert.is_true(H.same(before, read(key)), "a busy acquire changed the lock item")
    assert.is_true(h:held())
    assert.is_true(h:release())
  end)

  it("held -> renewed: expires_at moves, rvn changes, fence stays", function()
    local key = new_key()
    local h = assert(locks_for(key):acquire{ lease_ms = 10000 })
    local rvn0, exp0, fence0, owner0 = h.rvn, h.expires_at, h.fence, h.owner
    local ok, err = h:renew(60000)
    assert.is_nil(err)
    assert.is_true(ok)
    assert.are_not.equal(rvn0, h.rvn)
    assert.is_true(h.expires_at > exp0, "expires_at did not move: " .. exp0 .. " -> " .. h.expires_at)
    assert.are.equal(fence0, h.fence)
    assert.are.equal(owner0, h.owner)
    assert.are.equal(60000, h.lease_ms)
    assert_held_by(h, read(key))
    -- Renewing with no argument keeps a lease and still moves the version.
    local rvn1 = h.rvn
    assert.is_true(h:renew())
    assert.are_not.equal(rvn1, h.rvn)
    assert.are.equal(fence0, h.fence)
    assert_held_by(h, read(key))
    assert.is_true(h:held())
    assert.is_true(h:release())
  end)

  it("held -> released: the item keeps its fence, expiresAt in the recent past, no lockOwner", function()
    local key = new_key()
    local h = assert(locks_for(key):acquire{ lease_ms = 10000 })
    local ok, err = h:release()
    assert.is_nil(err)
    assert.is_true(ok)
    assert.is_false(h:held())
    assert.are.equal(0, h:valid_ms())
    assert_released(read(key), h.fence)
  end)

  it("released -> held again: fence + 1, a new owner", function()
    local key = new_key()
    local locks = locks_for(key)
    local h1 = assert(locks:acquire{ lease_ms = 10000 })
    assert.is_true(h1:release())
    local h2, err = locks_for(key):acquire{ lease_ms = 10000 }
    assert.is_nil(err)
    assert.are.equal(h1.fence + 1, h2.fence)
    assert.are_not.equal(h1.owner, h2.owner)
    assert_held_by(h2, read(key))
    assert.is_true(h2:release())
    -- and by the same lock object again: a new handle, a new owner
    local h3 = assert(locks:acquire{ lease_ms = 10000 })
    assert.are.equal(h2.fence + 1, h3.fence)
    assert.are_not.equal(h1.owner, h3.owner)
    assert.is_true(h3:release())
  end)

  it("expired -> taken over by another handle, with a higher fence", function()
    local key = new_key()
    local h1 = assert(locks_for(key):acquire{ lease_ms = 1000 })
    lapse(key)
    local h2, err = locks_for(key, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 10000, wait_ms = 0 }
    assert.is_nil(err)
    assert.is_truthy(h2)
    assert.is_true(h2.fence > h1.fence)
    assert.are_not.equal(h1.owner, h2.owner)
    assert_held_by(h2, read(key))
    assert.is_true(h2:release())
  end)

  it("a fresh item's fence starts from the wall clock (ms x 1000), exact below 2^53", function()
    local key = new_key()
    local before = now_ms()
    local h = assert(locks_for(key):acquire{ lease_ms = 10000 })
    local after = now_ms()
    assert.is_true(is_integer(h.fence))
    assert.is_true(h.fence > before * 1000 and h.fence <= after * 1000 + 1,
      "fence " .. string.format("%.0f", h.fence) .. " not from [" .. before .. ", " .. after .. "] ms")
    assert.is_true(h.fence < 2 ^ 53)
    assert.are.equal(h.fence, read(key).fence)
    assert.is_true(h:release())
  end)

  it("released items are collected: after a deletion (TTL), fences still strictly increase", function()
    local key = new_key()
    local fences = {}
    for round = 1, 3 do
      for _ = 1, 2 do
        local h = assert(locks_for(key):acquire{ lease_ms = 10000 })
        fences[#fences + 1] = h.fence
        assert.is_true(h:release())
        assert_released(read(key), h.fence)
      end
      -- DynamoDB's TTL removes the released item (its expiresAt is past)
      assert(admin:delete_item{ TableName = T, Key = key })
      assert.is_nil(read(key), "round " .. round)
    end
    -- and a holder whose lease ran out before a deletion is fenced out
    local stale = assert(locks_for(key):acquire{ lease_ms = 1000 })
    fences[#fences + 1] = stale.fence
    lapse(key)
    assert(admin:delete_item{ TableName = T, Key = key })
    local h = assert(locks_for(key):acquire{ lease_ms = 10000 })
    fences[#fences + 1] = h.fence
    for i = 2, #fences do
      assert.is_true(fences[i] > fences[i - 1], string.format("fence %d: %.0f after %.0f",
        i, fences[i], fences[i - 1]))
    end
    local guarded = { pk = H.unique("guarded"), sk = "G" }
    assert(guarded_put(admin, T, guarded, h, "new"))
    local res, err = guarded_put(admin, T, guarded, stale, "stale")
    assert.is_nil(res)
    assert.are.equal("ConditionalCheckFailedException", err.code)
    assert.is_true(h:release())
  end)

  it("an item from before the clock base keeps growing by 1 (no migration)", function()
    local key = new_key()
    assert(admin:put_item{ TableName = T, Item = { pk = key.pk, sk = key.sk, fence = 57,
                                                   expiresAt = 0, releasedRvn = "old" } })
    local h = assert(locks_for(key):acquire{ lease_ms = 10000 })
    assert.are.equal(58, h.fence)
    assert.is_true(h:release())
    assert_released(read(key), 58)
  end)

  it("returns an engine error, not a raise, for a missing table", function()
    local locks = locks_for(new_key(), nil, nil, H.unique("no-such-table"))
    local h, err = locks:acquire{ lease_ms = 1000 }
    assert.is_nil(h)
    assert.are.equal("ResourceNotFoundException", err.code)
  end)
end)

describe("ddbkit.lock expiry by the wall clock", function()
  it("with max_clock_skew_ms = 0, a lapsed 1000 ms lease is taken", function()
    local key = new_key()
    local h1 = assert(locks_for(key):acquire{ lease_ms = 1000 })
    lapse(key, 5)
    local h2, err = locks_for(key, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 1000, wait_ms = 0 }
    assert.is_nil(err)
    assert.is_true(h2.fence > h1.fence)
    assert_held_by(h2, read(key))
    assert.is_true(h2:release())
  end)

  it("with a 60 s skew margin, the same lapsed lease is not taken by the clock", function()
    local key = new_key()
    local h1 = assert(locks_for(key):acquire{ lease_ms = 1000 })
    lapse(key, 5)
    local before = read(key)
    local B = locks_for(key, { max_clock_skew_ms = 60000 })
    local h2, err = B:acquire{ lease_ms = 1000, wait_ms = 0 }
    assert.is_nil(h2)
    assert.are.equal("busy", err.code)
    assert.are.equal(h1.owner, err.holder.owner)
    assert.is_true(H.same(before, read(key)), "a busy acquire changed the lock item")
    -- Lapsed beyond the margin, it is taken.
    lapse(key, 120)
    local h3, err3 = B:acquire{ lease_ms = 1000, wait_ms = 0 }
    assert.is_nil(err3)
    assert.is_true(h3.fence > h1.fence)
    assert.is_true(h3:release())
  end)

  it("acquire's max_clock_skew_ms overrides the lock object's", function()
    local key = new_key()
    assert(locks_for(key):acquire{ lease_ms = 1000 })
    lapse(key, 5)
    local wide = locks_for(key, { max_clock_skew_ms = 60000 })
    local narrow = locks_for(key, { max_clock_skew_ms = 0 })
    local h, err = narrow:acquire{ lease_ms = 1000, wait_ms = 0, max_clock_skew_ms = 60000 }
    assert.is_nil(h)
    assert.are.equal("busy", err.code)
    local h2, err2 = wide:acquire{ lease_ms = 1000, wait_ms = 0, max_clock_skew_ms = 0 }
    assert.is_nil(err2)
    assert_held_by(h2, read(key))
    assert.is_true(h2:release())
  end)

  it("a live lease is not taken by a contender with no skew margin", function()
    local key = new_key()
    local h1 = assert(locks_for(key):acquire{ lease_ms = 10000 })
    local h2, err = locks_for(key, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 1000, wait_ms = 0 }
    assert.is_nil(h2)
    assert.are.equal("busy", err.code)
    assert_held_by(h1, read(key))
    assert.is_true(h1:release())
  end)
end)

describe("ddbkit.lock takeover by an unchanged record version", function()
  it("takes a lease whose version stayed unchanged for the full lease, without trusting clocks", function()
    local key = new_key()
    local h1 = assert(locks_for(key):acquire{ lease_ms = 400 })
    -- A one-hour skew margin: expiry by the clock can never apply.
    local B = locks_for(key, { max_clock_skew_ms = 3600000 })
    local h2, err = B:acquire{ lease_ms = 10000, wait_ms = 5000 }
    assert.is_nil(err)
    assert.is_truthy(h2)
    assert.is_true(h2.fence > h1.fence)
    assert_held_by(h2, read(key))
    local ok, rerr = h1:renew()
    assert.is_falsy(ok)
    assert.are.equal("lost", rerr.code)
    assert.is_true(h2:release())
  end)

  it("does not take over a holder that keeps renewing", function()
    local key = new_key()
    local h1 = assert(locks_for(key):acquire{ lease_ms = 2000 })
    local B = locks_for(key, { max_clock_skew_ms = 3600000 })
    local C = locks_for(key, { max_clock_skew_ms = 0 })
    -- Each contender waits well under the lease (a 1.5 s stall inside one
    -- acquire would be needed to see the version stand still for a whole
    -- lease); between them the holder renews, so together the waits span
    -- more than the original lease.
    for _ = 1, 5 do
      local h2, err = B:acquire{ lease_ms = 2000, wait_ms = 500 }
      assert.is_nil(h2)
      assert.are.equal("busy", err.code)
      assert.are.equal(h1.owner, err.holder.owner)
      local h3, err3 = C:acquire{ lease_ms = 2000, wait_ms = 0 }
      assert.is_nil(h3)
      assert.are.equal("busy", err3.code)
      assert.is_true(h1:renew())
    end
    assert.is_true(h1:held())
    assert_held_by(h1, read(key))
    assert.is_true(h1:release())
  end)
end)

describe("ddbkit.lock refuses non-owners", function()
  -- Each stale handle is used for one refused call only: a handle that has
  -- learnt it lost the lock answers later calls without asking DynamoDB, and
  -- these tests are about what DynamoDB is asked to do.

  -- Two handles whose lock was taken over from them, and the current holder.
  local function two_stale(key)
    local hA = assert(locks_for(key):acquire{ lease_ms = 1000 })
    lapse(key)
    local hB = assert(locks_for(key, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 1000 })
    lapse(key)
    local hC = assert(locks_for(key, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 10000 })
    assert.is_true(hA.fence < hB.fence and hB.fence < hC.fence)
    return hA, hB, hC
  end

  it("a taken-over handle's release is refused with 'not_owner'; the item is untouched", function()
    local key = new_key()
    local hA, hB, hC = two_stale(key)
    local before = read(key)
    local ok, err = hA:release()
    assert.is_falsy(ok)
    assert.are.equal("not_owner", err.code)
    assert.is_false(hA:held())
    assert.is_true(H.same(before, read(key)), "a refused release changed the lock item")
    -- and after a refused renew, release is refused too
    ok, err = hB:renew(10000)
    assert.is_falsy(ok)
    assert.are.equal("lost", err.code)
    ok, err = hB:release()
    assert.is_falsy(ok)
    assert.are.equal("not_owner", err.code)
    assert.is_true(H.same(before, read(key)), "a refused release changed the lock item")
    -- The holder is unaffected.
    assert.is_true(hC:renew())
    assert_held_by(hC, read(key))
    assert.is_true(hC:release())
  end)

  it("a taken-over handle's renew is refused with 'lost'; the item is untouched", function()
    local key = new_key()
    local hA, _, hC = two_stale(key)
    local before = read(key)
    local ok, err = hA:renew(10000)
    assert.is_falsy(ok)
    assert.are.equal("lost", err.code)
    assert.is_false(hA:held())
    assert.are.equal(0, hA:valid_ms())
    assert.is_true(H.same(before, read(key)), "a refused renew changed the lock item")
    assert.is_true(hC:renew())
    assert_held_by(hC, read(key))
    assert.is_true(hC:release())
  end)

  it("once the lock is free again, a stale handle's renew and release get 'not_owner'", function()
    local key = new_key()
    local hA, hB, hC = two_stale(key)
    assert.is_true(hC:release())
    local before = read(key)
    local ok, err = hA:renew()
    assert.is_falsy(ok)
    assert.are.equal("not_owner", err.code)
    ok, err = hB:release()
    assert.is_falsy(ok)
    assert.are.equal("not_owner", err.code)
    assert.is_true(H.same(before, read(key)), "a refused renew/release changed the lock item")
    assert_released(read(key), hC.fence)
  end)

  it("a handle whose item was deleted gets 'not_owner', and nothing is recreated", function()
    local key = new_key()
    local h = assert(locks_for(key):acquire{ lease_ms = 10000 })
    assert(admin:delete_item{ TableName = T, Key = key })
    local ok, err = h:release()
    assert.is_falsy(ok)
    assert.are.equal("not_owner", err.code)
    assert.is_nil(read(key))
    h = assert(locks_for(key):acquire{ lease_ms = 10000 })
    assert(admin:delete_item{ TableName = T, Key = key })
    ok, err = h:renew()
    assert.is_falsy(ok)
    assert.are.equal("not_owner", err.code)
    assert.is_nil(read(key))
  end)
end)

describe("ddbkit.lock fencing", function()
  it("fences strictly increase over 20 acquire/release/takeover steps across handles", function()
    local key = new_key()
    local L = { locks_for(key), locks_for(key, { max_clock_skew_ms = 0 }), locks_for(key) }
    local fences, cur = {}, nil
    for step = 1, 20 do
      local who = L[step % 3 + 1]
      local h, err
      if cur and step % 4 == 0 then
        -- the holder vanishes: its lease lapses and another handle takes over
        lapse(key)
        h, err = who:acquire{ lease_ms = 5000, wait_ms = 0, max_clock_skew_ms = 0 }
        assert.is_nil(err, "takeover at step " .. step)
        local ok, rerr = cur:release()
        assert.is_falsy(ok)
        assert.are.equal("not_owner", rerr.code)
      else
        if cur then assert.is_true(cur:release()) end
        h, err = who:acquire{ lease_ms = 5000, wait_ms = 0 }
        assert.is_nil(err, "acquire at step " .. step)
      end
      assert_held_by(h, read(key))
      fences[#fences + 1] = h.fence
      cur = h
    end
    assert.is_true(cur:release())
    assert.are.equal(20, #fences)
    for i = 2, #fences do
      assert.is_true(fences[i] > fences[i - 1],
        string.format("fence %s at step %d is not above %s", tostring(fences[i]), i, tostring(fences[i - 1])))
    end
  end)

  it("fence_condition has the contract's shape for any attribute name", function()
    local key = new_key()
    local h = assert(locks_for(key):acquire{ lease_ms = 10000 })
    local c = h:fence_condition("guardFence")
    assert.is_string(c.ConditionExpression)
    assert.are.same({ ["#ddbkit_fence"] = "guardFence" }, c.ExpressionAttributeNames)
    assert.are.same({ [":ddbkit_fence"] = h.fence }, c.ExpressionAttributeValues)
    assert.is_true(h:release())
  end)

  it("fence_condition lets the current holder write and rejects an older holder's write", function()
    local key = new_key()
    local guarded = { pk = H.unique("guarded"), sk = "data" }
    local h1 = assert(locks_for(key):acquire{ lease_ms = 1000 })
    assert(guarded_put(admin, T, guarded, h1, "first"))
    lapse(key)
    local h2 = assert(locks_for(key, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 10000 })
    assert.is_true(h2.fence > h1.fence)
    local res, err = guarded_put(admin, T, guarded, h2, "second")
    assert.is_nil(err)
    assert.is_truthy(res)
    -- the stale holder, as PutItem
    res, err = guarded_put(admin, T, guarded, h1, "stale")
    assert.is_nil(res)
    assert.are.equal("ConditionalCheckFailedException", err.code)
    -- and as UpdateItem
    local p = copy(h1:fence_condition("fence"))
    p.TableName, p.Key = T, guarded
    p.UpdateExpression = "SET writer = :w, #ddbkit_fence = :ddbkit_fence"
    p.ExpressionAttributeValues[":w"] = "stale-update"
    res, err = admin:update_item(p)
    assert.is_nil(res)
    assert.are.equal("ConditionalCheckFailedException", err.code)
    local item = read(guarded)
    assert.are.equal("second", item.writer)
    assert.are.equal(h2.fence, item.fence)
    assert.is_true(h2:release())
  end)
end)

describe("ddbkit.lock and the Node idempotency adapter's lock layout", function()
  local IT
  setup(function()
    IT = H.unique("idem")
    assert(admin:create_table(schema.create_table_params(ddbkit.IDEMPOTENCY_TABLE_SCHEMA, IT)))
    assert(admin:wait_for_table(IT, 30000))
  end)
  teardown(function()
    admin:delete_table{ TableName = IT }
  end)

  -- The Node adapter's requests (compat.md B), verbatim.
  local function node_acquire(key, ttl_ms, now)
    now = now or now_ms()
    return admin:put_item{ TableName = IT,
      Item = { cacheKey = "lock:" .. key, acquiredAt = now, expiresAt = ceil_div(now + ttl_ms, 1000) },
      ConditionExpression = "attribute_not_exists(cacheKey) OR expiresAt < :nowSec",
      ExpressionAttributeValues = { [":nowSec"] = ceil_div(now, 1000) } }
  end
  local function node_release(key)
    return admin:delete_item{ TableName = IT, Key = { cacheKey = "lock:" .. key } }
  end
  local function node_locks(key, opts)
    local o = { client = admin, table_name = IT, key = ddbkit.lock.node_key(key) }
    for k, v in pairs(opts or {}) do o[k] = v end
    return ddbkit.lock.new(o)
  end

  it("node_key gives the adapter's key", function()
    assert.are.same({ cacheKey = "lock:abc" }, ddbkit.lock.node_key("abc"))
  end)

  it("a Node-held lock makes ddbkit's acquire busy and is left as it was", function()
    local k = H.unique("n1")
    assert(node_acquire(k, 30000))
    local before = read(ddbkit.lock.node_key(k), IT)
    local h, err = node_locks(k):acquire{ lease_ms = 10000, wait_ms = 0 }
    assert.is_nil(h)
    assert.are.equal("busy", err.code)
    assert.is_true(H.same(before, read(ddbkit.lock.node_key(k), IT)), "ddbkit changed a Node-held lock")
    assert(node_release(k))
    -- once Node releases (deletes), ddbkit gets it
    local h2 = assert(node_locks(k):acquire{ lease_ms = 10000, wait_ms = 0 })
    assert_held_by(h2, read(ddbkit.lock.node_key(k), IT))
    assert.is_true(h2:release())
  end)

  it("a ddbkit-held lock makes the Node conditional Put fail", function()
    local k = H.unique("n2")
    local h = assert(node_locks(k):acquire{ lease_ms = 10000 })
    local item = read(ddbkit.lock.node_key(k), IT)
    assert.are.equal("lock:" .. k, item.cacheKey)
    assert_held_by(h, item)
    local res, err = node_acquire(k, 30000)
    assert.is_nil(res)
    assert.are.equal("ConditionalCheckFailedException", err.code)
    assert_held_by(h, read(ddbkit.lock.node_key(k), IT))
    assert.is_true(h:release())
  end)

  it("a ddbkit-released lock lets the Node Put succeed", function()
    local k = H.unique("n3")
    local h = assert(node_locks(k):acquire{ lease_ms = 10000 })
    assert.is_true(h:release())
    local res, err = node_acquire(k, 30000)
    assert.is_nil(err)
    assert.is_truthy(res)
    -- and now Node holds it: ddbkit is busy until Node deletes it
    local h2, err2 = node_locks(k):acquire{ lease_ms = 10000, wait_ms = 0 }
    assert.is_nil(h2)
    assert.are.equal("busy", err2.code)
    assert(node_release(k))
  end)

  it("an expired Node lock is taken by ddbkit, and Node then cannot take it", function()
    local k = H.unique("n4")
    -- acquired by Node 200 s ago with a 30 s ttl
    assert(node_acquire(k, 30000, now_ms() - 200000))
    local h, err = node_locks(k):acquire{ lease_ms = 10000, wait_ms = 0 }
    assert.is_nil(err)
    assert.is_truthy(h)
    assert_held_by(h, read(ddbkit.lock.node_key(k), IT))
    local res, err2 = node_acquire(k, 30000)
    assert.is_nil(res)
    assert.are.equal("ConditionalCheckFailedException", err2.code)
    assert.is_true(h:release())
  end)

  it("a ddbkit-released lock: Node's exact conditional Put succeeds at once", function()
    local k = H.unique("n5")
    local h = assert(node_locks(k, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 10000 })
    assert.is_true(h:release())
    local item = read(ddbkit.lock.node_key(k), IT)
    assert_released(item, h.fence)
    -- the Node adapter's own condition, at the same instant by its clock
    local now = now_ms()
    assert.is_true(item.expiresAt < ceil_div(now, 1000))
    assert(node_acquire(k, 30000, now))
    assert(node_release(k))
  end)

  it("a Node acquire replaces ddbkit's item (fence gone): the next fences are still higher", function()
    local k = H.unique("n6")
    local h1 = assert(node_locks(k):acquire{ lease_ms = 10000 })
    assert.is_true(h1:release())
    assert(node_acquire(k, 30000))
    assert.is_nil(read(ddbkit.lock.node_key(k), IT).fence)
    assert(node_release(k))
    local h2 = assert(node_locks(k):acquire{ lease_ms = 10000, wait_ms = 0 })
    assert.is_true(h2.fence > h1.fence)
    assert.is_true(h2:release())
  end)

  it("foreign_grace_ms: an expired Node lock is left to its holder for the grace, then taken", function()
    local k = H.unique("n7")
    -- acquired by Node 100 s ago with a 30 s ttl: expired 70 s ago
    assert(node_acquire(k, 30000, now_ms() - 100000))
    local before = read(ddbkit.lock.node_key(k), IT)
    local h, err = node_locks(k, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 10000,
                                                                     foreign_grace_ms = 120000 }
    assert.is_nil(h)
    assert.are.equal("busy", err.code)
    assert.is_true(H.same(before, read(ddbkit.lock.node_key(k), IT)), "ddbkit changed a Node lock")
    h, err = node_locks(k, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 10000,
                                                              foreign_grace_ms = 60000 }
    assert.is_nil(err)
    assert_held_by(h, read(ddbkit.lock.node_key(k), IT))
    assert.is_true(h:release())
  end)

  it("foreign_grace_ms does not hold back ddbkit's own expired or released items", function()
    local k = H.unique("n8")
    local h1 = assert(node_locks(k):acquire{ lease_ms = 1000 })
    lapse(ddbkit.lock.node_key(k), 5, IT)
    local h2 = assert(node_locks(k, { max_clock_skew_ms = 0 }):acquire{ lease_ms = 10000,
      foreign_grace_ms = 3600000, wait_ms = 0 })
    assert.is_true(h2.fence > h1.fence)
    assert.is_true(h2:release())
    local h3 = assert(node_locks(k):acquire{ lease_ms = 10000, foreign_grace_ms = 3600000,
                                              wait_ms = 0 })
    assert.are.equal(h2.fence + 1, h3.fence)
    assert.is_true(h3:release())
  end)

  it("rejects a negative or fractional foreign_grace_ms", function()
    assert.has_error(function() node_locks("x"):acquire{ lease_ms = 1000, foreign_grace_ms = -1 } end)
    assert.has_error(function() node_locks("x"):acquire{ lease_ms = 1000, foreign_grace_ms = 1.5 } end)
  end)
end)

describe("ddbkit.lock resolves ambiguous writes to the truth", function()
  if not H.proxy then
    pending("the fault proxy is not running")
    return
  end

  local configs = {
    { name = "with engine retries", max_attempts = 3 },
    { name = "without engine retries", max_attempts = 1 },
  }

  local function proxied(cfg)
    return H.proxied_client{ base_delay_ms = 5, max_backoff_ms = 40, timeout_ms = 3000,
                             max_attempts = cfg.max_attempts }
  end

  -- Arms one fault on the next UpdateItem, runs f, and checks the fault was applied.
  local function with_fault(kind, f)
    H.reset_proxy_stats()
    H.faults{ { kind = kind, match = "UpdateItem", count = 1 } }
    local a, b = f()
    local st = H.proxy_stats()
    H.clear_faults()
    assert.are.equal(1, st.faults_applied[kind], kind .. " was not applied to an UpdateItem")
    return a, b
  end

  for _, cfg in ipairs(configs) do
    describe(cfg.name, function()
      it("acquire whose response was dropped returns a handle matching the item (3 times)", function()
        local c = proxied(cfg)
        local key = new_key()
        local locks = locks_for(key, nil, c)
        local last
        for i = 1, 3 do
          local h, err = with_fault("drop_response", function()
            return locks:acquire{ lease_ms = 10000 }
          end)
          assert.is_nil(err, "round " .. i)
          assert.is_truthy(h)
          assert_held_by(h, read(key))
          if last then assert.is_true(h.fence > last) end
          last = h.fence
          assert.is_true(h:release())
        end
        c:close()
      end)

      it("renew whose response was dropped returns true and the item has the new rvn (3 times)", function()
        local c = proxied(cfg)
        local key = new_key()
        local h = assert(locks_for(key, nil, c):acquire{ lease_ms = 10000 })
        local fence = h.fence
        for i = 1, 3 do
          local rvn0 = h.rvn
          local ok, err = with_fault("drop_response", function() return h:renew() end)
          assert.is_nil(err, "round " .. i)
          assert.is_true(ok)
          assert.are_not.equal(rvn0, h.rvn)
          assert.are.equal(fence, h.fence)
          assert_held_by(h, read(key))
        end
        assert.is_true(h:release())
        c:close()
      end)

      it("release whose response was dropped returns true and the item is released (3 times)", function()
        local c = proxied(cfg)
        local key = new_key()
        local locks = locks_for(key, nil, c)
        for i = 1, 3 do
          local h = assert(locks:acquire{ lease_ms = 10000 })
          local ok, err = with_fault("drop_response", function() return h:release() end)
          assert.is_nil(err, "round " .. i)
          assert.is_true(ok)
          assert.is_false(h:held())
          assert_released(read(key), h.fence)
        end
        c:close()
      end)

      -- A reset before forwarding: the write did not take effect. With engine
      -- retries the operation must succeed; without, it may fail, but then
      -- the item must say so.
      it("acquire whose request was reset before forwarding reports the truth (3 times)", function()
        local c = proxied(cfg)
        local key = new_key()
        local locks = locks_for(key, nil, c)
        for i = 1, 3 do
          local h, err = with_fault("reset", function() return locks:acquire{ lease_ms = 10000 } end)
          local item = read(key)
          if h then
            assert_held_by(h, item)
            assert.is_true(h:release())
          else
            assert.are.equal(1, cfg.max_attempts, "round " .. i .. ": " .. tostring(err and err.code))
            assert.is_truthy(err)
            assert.are_not.equal("busy", err.code)
            assert.is_true(item == nil or item.lockOwner == nil, "a failed acquire left the lock held")
          end
        end
        c:close()
      end)

      it("renew whose request was reset before forwarding reports the truth (3 times)", function()
        local c = proxied(cfg)
        local key = new_key()
        local h = assert(locks_for(key, nil, c):acquire{ lease_ms = 10000 })
        for i = 1, 3 do
          local rvn0 = h.rvn
          local ok, err = with_fault("reset", function() return h:renew() end)
          local item = read(key)
          assert.are.equal(h.owner, item.lockOwner)
          if ok then
            assert.are_not.equal(rvn0, h.rvn)
            assert_held_by(h, item)
          else
            assert.are.equal(1, cfg.max_attempts, "round " .. i .. ": " .. tostring(err and err.code))
            assert.is_truthy(err)
            assert.are_not.equal("lost", err.code)
            assert.are_not.equal("not_owner", err.code)
            assert.are.equal(rvn0, item.lockRvn)
            assert.is_true(h:renew())   -- still ours
            assert_held_by(h, read(key))
          end
        end
        assert.is_true(h:release())
        c:close()
      end)

      it("release whose request was reset before forwarding reports the truth (3 times)", function()
        local c = proxied(cfg)
        local key = new_key()
        local locks = locks_for(key, nil, c)
        for i = 1, 3 do
          local h = assert(locks:acquire{ lease_ms = 10000 })
          local ok, err = with_fault("reset", function() return h:release() end)
          if ok then
            assert_released(read(key), h.fence)
          else
            assert.are.equal(1, cfg.max_attempts, "round " .. i .. ": " .. tostring(err and err.code))
            assert.is_truthy(err)
            assert.are_not.equal("not_owner", err.code)
            assert_held_by(h, read(key))
            assert.is_true(h:release())   -- still ours to release
            assert_released(read(key), h.fence)
          end
        end
        c:close()
      end)
    end)
  end
end)

describe("ddbkit.lock takes no answer of a broken server for a grant", function()
  if not H.proxy then
    pending("the fault proxy is not running")
    return
  end

  local function proxied()
    return H.proxied_client{ max_attempts = 1, timeout_ms = 10000 }
  end

  -- Arms a 200 answer with `body` on the next UpdateItem (the read-back
  -- reaches DynamoDB Local), runs f, and checks the fault was applied.
  local function answered(body, f)
    H.reset_proxy_stats()
    H.faults{ { kind = "status", status = 200, body = body, match = "UpdateItem", count = 1 } }
    local a, b = f()
    local st = H.proxy_stats()
    H.clear_faults()
    assert.are.equal(1, st.faults_applied.status, "the answer was not given to an UpdateItem")
    return a, b
  end

  -- 2 MB of a lockOwner nested a million deep: the process must survive it.
  local deep = '{"Attributes":{"lockOwner":' .. ("["):rep(1000000) .. ("]"):rep(1000000) .. "}}"
  local unproven = {
    { "{}", "{}" },
    { "an error body", '{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}' },
    { "a fence only", '{"Attributes":{"fence":{"N":"7"}}}' },
    { "a million levels deep", deep },
  }

  for _, case in ipairs(unproven) do
    it("acquire answered 200 with " .. case[1] .. " fails with MalformedResponse", function()
      local c = proxied()
      local key = new_key()
      local h, err = answered(case[2], function() return locks_for(key, nil, c):acquire{ lease_ms = 10000 } end)
      assert.is_nil(h)
      assert.are.equal("MalformedResponse", err.code)
      assert.is_nil(read(key), "the write never reached DynamoDB")
      c:close()
    end)

    it("renew and release answered 200 with " .. case[1] .. " fail, and the lease stands", function()
      local c = proxied()
      local key = new_key()
      local h = assert(locks_for(key, nil, c):acquire{ lease_ms = 10000 })
      local rvn0 = h.rvn
      local ok, err = answered(case[2], function() return h:renew() end)
      assert.is_nil(ok)
      assert.are.equal("MalformedResponse", err.code)
      assert.is_true(h:held())
      assert.are.equal(rvn0, h.rvn)
      assert_held_by(h, read(key))
      ok, err = answered(case[2], function() return h:release() end)
      assert.is_nil(ok)
      assert.are.equal("MalformedResponse", err.code)
      assert.is_true(h:held())
      assert_held_by(h, read(key))
      assert.is_true(h:release())
      c:close()
    end)
  end
end)

describe("ddbkit.lock misuse raises", function()
  it("table_name missing", function()
    assert.has_error(function() ddbkit.lock.new{ client = admin, key = new_key() } end)
  end)

  it("client or key missing or malformed", function()
    assert.has_error(function() ddbkit.lock.new{ table_name = T, key = new_key() } end)
    assert.has_error(function() ddbkit.lock.new{ client = admin, table_name = T } end)
    assert.has_error(function() ddbkit.lock.new{ client = admin, table_name = T, key = {} } end)
    assert.has_error(function() ddbkit.lock.new{ client = admin, table_name = T, key = { pk = 7 } } end)
    assert.has_error(function()
      ddbkit.lock.new{ client = admin, table_name = T, key = { a = "1", b = "2", c = "3" } }
    end)
  end)

  it("an unknown option", function()
    assert.has_error(function() locks_for(new_key(), { leas_ms = 1000 }) end)
    local locks = locks_for(new_key())
    assert.has_error(function() locks:acquire{ lease_ms = 1000, wiat_ms = 10 } end)
  end)

  it("lease_ms = 0, negative, or not a number", function()
    local key = new_key()
    local locks = locks_for(key)
    assert.has_error(function() locks:acquire{ lease_ms = 0 } end)
    assert.has_error(function() locks:acquire{ lease_ms = -5 } end)
    assert.has_error(function() locks:acquire{ lease_ms = "1000" } end)
    assert.has_error(function() locks_for(key, { max_clock_skew_ms = "1" }) end)
    assert.is_nil(read(key), "a raising acquire wrote the lock item")
    local h = assert(locks:acquire{ lease_ms = 1000 })
    assert.has_error(function() h:renew(0) end)
    assert.is_true(h:release())
  end)

  it("renew or release after release", function()
    local h = assert(locks_for(new_key()):acquire{ lease_ms = 10000 })
    assert.is_true(h:release())
    assert.has_error(function() h:renew() end)
    assert.has_error(function() h:release() end)
  end)
end)
