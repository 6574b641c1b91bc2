-- ddbkit.lock drives the engine's lock machine through the client's runtime:
-- every request is runtime.call_raw, every wait is runtime.sleep, and a
-- runtime without keep_lease keeps a lease with a task of runtime.spawn.
-- Proved with a fake runtime against DynamoDB Local: its call_raw records
-- each (op, body) and forwards to ddbkit.core.call_raw, its sleep records
-- the ms, and its spawn makes a coroutine that the test steps by hand (a
-- sleep inside it yields to the test).
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local H = require "test_helper"

local admin, T

setup(function()
  admin = H.client()
  T = H.create_table(admin, H.unique("lockm"))
end)

teardown(function()
  admin:delete_table{ TableName = T }
  admin:close()
end)

local real_sleep = core.sleep_ms

local function fake_runtime()
  local rt = { name = "fake", calls = {}, sleeps = {}, tasks = {} }
  local in_task = setmetatable({}, { __mode = "k" })
  rt.send, rt.now_ms, rt.mono_ms = core.call, core.now_ms, core.mono_ms

  -- rt.lose = n: the next n calls are carried out, and their answers lost
  -- (what a timeout after sending looks like to the caller).
  rt.lose = 0
  function rt.call_raw(cc, op, body)
    rt.calls[#rt.calls + 1] = { op = op, body = body }
    local a, b, d = core.call_raw(cc, op, body)
    if rt.lose > 0 then
      rt.lose = rt.lose - 1
      return nil, { code = "Timeout", message = "the answer was lost (test)", retryable = true,
                    timeout = true, ambiguous = true }
    end
    return a, b, d
  end

  -- In a task: hands control back to the test. Elsewhere: the time passes
  -- (the machine measures its waits on the monotonic clock).
  function rt.sleep(ms)
    rt.sleeps[#rt.sleeps + 1] = ms
    local co = coroutine.running()
    if co and in_task[co] then
      coroutine.yield("sleep", ms)
    else
      real_sleep(ms)
    end
  end

  function rt.spawn(fn)
    local co = coroutine.create(fn)
    in_task[co] = true
    local t = { co = co }
    function t.step()                   -- resume until its next sleep (or its end)
      assert(not t.cancelled, "stepping a cancelled task")
      local res = { coroutine.resume(co) }
      if coroutine.status(co) == "dead" then t.res = res end
      return res[1], res[2], res[3]
    end
    function t:done() return t.cancelled or coroutine.status(co) == "dead" end
    function t:result()
      if t.res then return (table.unpack or unpack)(t.res) end
      return false, "cancelled"
    end
    function t:cancel() t.cancelled = true end
    rt.tasks[#rt.tasks + 1] = t
    return t
  end
  return rt
end

local function new_key() return { pk = H.unique("lock"), sk = "L" } end

local function read(key)
  return assert(admin:get_item{ TableName = T, Key = key, ConsistentRead = true }).Item
end

local function sum(list)
  local s = 0
  for _, v in ipairs(list) do s = s + v end
  return s
end

describe("ddbkit.lock through a runtime's call_raw and sleep", function()
  local rt, c

  before_each(function()
    rt = fake_runtime()
    c = H.client{ runtime = rt }
  end)

  after_each(function() c:close() end)

  it("acquire, renew and release are one call_raw each, with the lock's JSON", function()
    local key = new_key()
    local locks = ddbkit.lock.new{ client = c, table_name = T, key = key }
    local h = assert(locks:acquire{ lease_ms = 10000 })
    assert.are.equal(1, #rt.calls)
    assert.are.equal("UpdateItem", rt.calls[1].op)
    assert.truthy(rt.calls[1].body:find('"TableName":"' .. T .. '"', 1, true))
    assert.truthy(rt.calls[1].body:find("attribute_not_exists(#k) OR (attribute_exists(#m) AND attribute_not_exists(#o))", 1, true))
    assert.are.equal(h.rvn, read(key).lockRvn)

    local rvn0 = h.rvn
    assert.is_true(h:renew(20000))
    assert.are.equal(2, #rt.calls)
    assert.truthy(rt.calls[2].body:find('":r":{"S":"' .. rvn0 .. '"}', 1, true))
    assert.are_not.equal(rvn0, h.rvn)
    assert.are.equal(20000, h.lease_ms)
    assert.are.equal(h.rvn, read(key).lockRvn)

    assert.is_true(h:release())
    assert.are.equal(3, #rt.calls)
    assert.truthy(rt.calls[3].body:find("REMOVE #o, #r", 1, true))
    assert.is_nil(read(key).lockOwner)
    assert.are.equal(0, #rt.sleeps)
    assert.are.equal(3, c:stats().requests)
  end)

  it("busy, not_owner and lost come back as from the engine's own calls", function()
    local key = new_key()
    local A = ddbkit.lock.new{ client = admin, table_name = T, key = key }
    local B = ddbkit.lock.new{ client = c, table_name = T, key = key }
    local held = assert(A:acquire{ lease_ms = 10000 })
    local h, err = B:acquire{ lease_ms = 10000, with_item = true }
    assert.is_nil(h)
    assert.are.equal("busy", err.code)
    assert.are.equal(held.owner, err.holder.owner)
    assert.are.equal(held.owner, err.item.lockOwner)

    -- A handle of B's whose lease A then takes over.
    assert.is_true(held:release())
    local mine = assert(B:acquire{ lease_ms = 10000 })
    assert(admin:update_item{ TableName = T, Key = key, UpdateExpression = "SET expiresAt = :e",
                              ExpressionAttributeValues = { [":e"] = 1 } })
    local theirs = assert(A:acquire{ lease_ms = 10000 })
    local ok, rerr = mine:renew()
    assert.is_nil(ok)
    assert.are.equal("lost", rerr.code)
    assert.is_false(mine:held())
    ok, rerr = mine:release()
    assert.is_nil(ok)
    assert.are.equal("not_owner", rerr.code)
    assert.is_true(theirs:release())
  end)

  it("a call_raw that returns neither a body nor an error table fails the operation", function()
    rt.call_raw = function() return nil, "not a table" end
    local key = new_key()
    local h, err = ddbkit.lock.new{ client = c, table_name = T, key = key }:acquire{ lease_ms = 1000 }
    assert.is_nil(h)
    assert.are.equal("UnknownError", err.code)
    assert.is_nil(read(key))
  end)

  it("waits for a busy lock only through runtime.sleep, an attempt after each", function()
    local key = new_key()
    local A = ddbkit.lock.new{ client = admin, table_name = T, key = key }
    local held = assert(A:acquire{ lease_ms = 30000 })
    core.sleep_ms = function() error("a blocking sleep from the lock") end
    local t0 = core.mono_ms()
    local ok, h, err = pcall(function()
      return ddbkit.lock.new{ client = c, table_name = T, key = key }:acquire{ lease_ms = 1000, wait_ms = 400 }
    end)
    local elapsed = core.mono_ms() - t0
    core.sleep_ms = real_sleep
    assert(ok, h)
    assert.is_nil(h)
    assert.are.equal("busy", err.code)
    assert.is_true(elapsed >= 400, "gave up after " .. elapsed .. " ms of a 400 ms wait")
    assert.is_true(#rt.sleeps >= 2)
    assert.are.equal(#rt.sleeps + 1, #rt.calls)   -- try, (sleep, try)...
    for _, call in ipairs(rt.calls) do assert.are.equal("UpdateItem", call.op) end
    -- The time went to runtime.sleep, not to a sleep of the engine's own.
    local slept = sum(rt.sleeps)
    assert.is_true(slept >= 0.6 * elapsed, ("slept %.0f of %.0f ms"):format(slept, elapsed))
    assert.is_true(held:release())
  end)

  it("takes over an unchanged record version after waiting a whole lease through runtime.sleep", function()
    local key = new_key()
    -- A holder that stopped renewing; the 60 s skew margin rules out expiry by the clock.
    local A = ddbkit.lock.new{ client = admin, table_name = T, key = key }
    local stale = assert(A:acquire{ lease_ms = 300 })
    local B = ddbkit.lock.new{ client = c, table_name = T, key = key, max_clock_skew_ms = 60000 }
    local t0 = core.mono_ms()
    local h = assert(B:acquire{ lease_ms = 10000, wait_ms = 5000 })
    local elapsed = core.mono_ms() - t0
    assert.is_true(h.fence > stale.fence)
    -- A whole lease (300 ms) passed between the first look and the
    -- takeover, and every wait was a runtime.sleep between two tries, none
    -- longer than the lease. (How much of the time the sleeps took is not
    -- asserted: on a loaded machine the requests take more of it.)
    assert.is_true(elapsed >= 300, ("took over after %.0f ms"):format(elapsed))
    assert.is_true(#rt.sleeps >= 1 and #rt.calls == #rt.sleeps + 1)
    for _, ms in ipairs(rt.sleeps) do assert.is_true(ms > 0 and ms <= 300, "slept " .. ms) end
    assert.truthy(rt.calls[#rt.calls].body:find("#r = :seen", 1, true))
    assert.are.equal(h.rvn, read(key).lockRvn)
    assert.is_true(h:release())
  end)
end)

describe("ddbkit.lock under lost answers", function()
  it("a renewal that landed unseen (answer and read-back lost) is the next renewal's own", function()
    local rt = fake_runtime()
    local c = H.client{ runtime = rt }
    local key = new_key()
    local h = assert(ddbkit.lock.new{ client = c, table_name = T, key = key }:acquire{ lease_ms = 10000 })
    local rvn0 = h.rvn
    rt.lose = 2
    local ok, err = h:renew()
    assert.is_nil(ok)
    assert.are.equal("Timeout", err.code)
    assert.are.equal(0, rt.lose)
    assert.are.equal(rvn0, h.rvn)                -- unknown: the handle keeps the old version
    local landed = read(key)
    assert.are.equal(h.owner, landed.lockOwner)
    assert.are_not.equal(rvn0, landed.lockRvn)   -- but the write did land
    -- The next renewal meets our own version, adopts it and renews from it.
    ok, err = h:renew()
    assert.is_nil(err)
    assert.is_true(ok)
    assert.is_true(h:held())
    assert.are.equal(read(key).lockRvn, h.rvn)
    assert.truthy(rt.calls[#rt.calls].body:find('":r":{"S":"' .. landed.lockRvn .. '"}', 1, true))
    assert.is_true(h:release())
    c:close()
  end)
end)

describe("ddbkit.lock keepers without keep_lease", function()
  it("a task of runtime.spawn renews every period until stopped", function()
    local rt = fake_runtime()
    local c = H.client{ runtime = rt }
    local key = new_key()
    local h = assert(ddbkit.lock.new{ client = c, table_name = T, key = key }:acquire{ lease_ms = 10000 })
    local rvn0 = h.rvn
    local k = h:keep(50)
    assert.are.equal(1, #rt.tasks)
    assert.has_error(function() h:renew() end)
    assert.is_true(h:held())
    local task = rt.tasks[1]

    -- First step: straight to its first sleep, nothing sent yet.
    local ok, what, ms = task.step()
    assert.is_true(ok)
    assert.are.equal("sleep", what)
    assert.is_true(ms > 0 and ms <= 50)
    assert.are.equal(1, #rt.calls)

    -- Each further step: one renewal, then the next sleep.
    local seen = { [rvn0] = true }
    for i = 1, 3 do
      ok, what = task.step()
      assert.is_true(ok)
      assert.are.equal("sleep", what)
      assert.are.equal(1 + i, #rt.calls)
      assert.truthy(rt.calls[1 + i].body:find('"UpdateExpression":"SET #r = :new', 1, true))
      local item = read(key)
      assert.are.equal(h.owner, item.lockOwner)
      assert.is_nil(seen[item.lockRvn], "renewal " .. i .. " kept the record version")
      seen[item.lockRvn] = true
    end

    local kept, err = k:stop()
    assert.is_nil(err)
    assert.is_true(kept)
    assert.is_true(task.cancelled)
    assert.are.equal(read(key).lockRvn, h.rvn)   -- the handle follows the renewals
    assert.is_true(h:valid_ms() > 0)
    assert.is_true(h:release())
    c:close()
  end)

  it("stops renewing once the lease is lost, and stop() says so", function()
    local rt = fake_runtime()
    local c = H.client{ runtime = rt }
    local key = new_key()
    local h = assert(ddbkit.lock.new{ client = c, table_name = T, key = key }:acquire{ lease_ms = 10000 })
    local k = h:keep(50)
    local task = rt.tasks[1]
    assert.is_true((task.step()))
    assert(admin:update_item{ TableName = T, Key = key, UpdateExpression = "SET lockOwner = :o",
                              ExpressionAttributeValues = { [":o"] = "someone-else" } })
    assert.is_true((task.step()))
    assert.is_true(task:done())   -- ended by itself: no sleep after a lost lease
    local kept, err = k:stop()
    assert.is_nil(kept)
    assert.are.equal("lost", err.code)
    assert.is_false(task.cancelled == true)
    assert.is_false(h:held())
    c:close()
  end)

  it("refuses a period at or past the lease, naming period_ms", function()
    local rt = fake_runtime()
    local c = H.client{ runtime = rt }
    local h = assert(ddbkit.lock.new{ client = c, table_name = T, key = new_key() }:acquire{ lease_ms = 1000 })
    for _, p in ipairs({ 1000, 1001, 60000 }) do
      assert.has_error(function() h:keep(p) end,
        ("ddbkit.lock: keep's period_ms (%d) must be shorter than the lease (1000 ms)"):format(p))
    end
    assert.are.equal(0, #rt.tasks)
    assert.is_true(h:release())
    c:close()
  end)

  it("raises when the runtime has neither keep_lease nor spawn", function()
    local rt = fake_runtime()
    rt.spawn = nil
    local c = H.client{ runtime = rt }
    local h = assert(ddbkit.lock.new{ client = c, table_name = T, key = new_key() }:acquire{ lease_ms = 10000 })
    assert.has_error(function() h:keep(100) end,
      "ddbkit.lock: this runtime cannot keep a lease (it has neither keep_lease nor spawn)")
    assert.is_true(h:release())
    c:close()
  end)
end)

describe("ddbkit.lock keepers on an engine thread (keep_lease)", function()
  it("refuses a period at or past the lease", function()
    local c = H.client()
    local h = assert(ddbkit.lock.new{ client = c, table_name = T, key = new_key() }:acquire{ lease_ms = 1000 })
    assert.has_error(function() h:keep(1000) end,
      "ddbkit.lock: keep's period_ms (1000) must be shorter than the lease (1000 ms)")
    -- The engine refuses it too, naming the field.
    local k, err = core.lock_keep(c.core, h.lock, 1000)
    assert.is_nil(k)
    assert.are.equal("InvalidArgument", err.code)
    assert.truthy(err.message:find("period_ms", 1, true))
    assert.is_true(h:release())
    c:close()
  end)

  it("counts its renewals in client:stats() once stopped", function()
    local c = H.client()
    local key = new_key()
    local h = assert(ddbkit.lock.new{ client = c, table_name = T, key = key }:acquire{ lease_ms = 3000 })
    local rvn0 = h.rvn
    local before = c:stats().operations.UpdateItem.requests
    local k = h:keep(20)
    -- Wait (bounded, by reading the item on another client) for a renewal.
    local moved = false
    for _ = 1, 2000 do
      if read(key).lockRvn ~= rvn0 then moved = true break end
    end
    assert.is_true(moved, "no renewal seen")
    assert.is_true(k:stop())
    local after = c:stats().operations.UpdateItem.requests
    assert.is_true(after >= before + 1, ("UpdateItem requests %d -> %d"):format(before, after))
    assert.are.equal(read(key).lockRvn, h.rvn)
    assert.is_true(h:release())
    c:close()
  end)
end)
