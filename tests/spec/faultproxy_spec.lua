-- The fault proxy's own counters: the retry specs hold the client's stats
-- against them, so a count from an earlier test must not reach a later one.
local H = require "test_helper"

local admin, T

setup(function()
  admin = H.client()
  T = H.create_table(admin, H.unique("fproxy"))
end)

teardown(function()
  H.clear_faults()
  admin:delete_table{ TableName = T }
  admin:close()
end)

-- Polls f (bounded) until it returns a true value.
local function wait_for(what, seconds, f)
  local deadline = os.time() + seconds
  while true do
    local v = f()
    if v then return v end
    if os.time() > deadline then error("timed out waiting for " .. what, 2) end
    os.execute("sleep 0.05")
  end
end

describe("the fault proxy's counters", function()
  it("leave out after a reset the late forward of a request received before it", function()
    -- A delayed request whose client gave up is still forwarded when its
    -- delay ends, which may be in a later test: that test must not see it.
    local c = H.proxied_client{ timeout_ms = 300, max_attempts = 1 }
    local key = { pk = "late", sk = H.unique("p") }
    H.reset_proxy_stats()
    H.faults{ { kind = "delay", hold = true, ms = 30000, count = 1, match = "PutItem" } }
    local res, err = c:put_item{ TableName = T, Item = { pk = key.pk, sk = key.sk } }
    assert.is_nil(res)
    assert.are.equal("Timeout", err.code)
    -- The client may give up before the proxy has read the request.
    wait_for("the proxy to take the PutItem", 20, function()
      return H.proxy_stats().faults_applied.delay == 1
    end)
    H.reset_proxy_stats()
    -- Released again on each round: a release only wakes a request that
    -- is already waiting.
    wait_for("the held PutItem to reach DynamoDB", 20, function()
      H.release_held()
      local got = assert(admin:get_item{ TableName = T, Key = key, ConsistentRead = true })
      return got.Item ~= nil
    end)
    local ps = H.proxy_stats()
    assert.are.equal(0, ps.requests)
    assert.are.equal(0, ps.forwarded)
    -- A request after the reset counts as ever.
    assert(c:get_item{ TableName = T, Key = key })
    ps = H.proxy_stats()
    assert.are.equal(1, ps.requests)
    assert.are.equal(1, ps.forwarded)
    c:close()
  end)
end)
