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

describe("the fault proxy's faults with its partition simulator on", function()
  local cjson = require "cjson.safe"
  local function sim(method, path, body)
    local st, out = H.http(method, H.proxy .. "/__proxy/partitions" .. (path or ""),
      { body = body and cjson.encode(body) or nil })
    assert.are.equal(200, st)
    return assert(cjson.decode(out))
  end
  local function stored(pk)
    local res = assert(admin:query{ TableName = T, KeyConditionExpression = "pk = :p",
      ExpressionAttributeValues = { [":p"] = pk }, ConsistentRead = true })
    local sks = {}
    for _, it in ipairs(res.Items) do sks[#sks + 1] = it.sk end
    table.sort(sks)
    return sks
  end

  after_each(function()
    H.clear_faults()
    sim("DELETE")
  end)

  it("hand back what an unprocessed fault and the simulator both left", function()
    local c = H.proxied_client{ max_attempts = 1, batch_max_attempts = 1 }
    sim("POST", "", { wcu = 1, refill = false })
    H.faults{ { kind = "unprocessed", match = "BatchWriteItem" } }
    local reqs = {}
    for i = 1, 4 do reqs[i] = { PutRequest = { Item = { pk = "both", sk = "s" .. i } } } end
    -- The fault keeps s1 and s2; of those the simulator admits s1 (1 WCU).
    local res, err = c:batch_write_item{ RequestItems = { [T] = reqs } }
    assert.is_nil(res)
    assert.are.equal("UnprocessedItems", err.code)
    local left = {}
    for _, r in ipairs(err.unprocessed_items[T]) do left[#left + 1] = r.PutRequest.Item.sk end
    table.sort(left)
    assert.are.same({ "s2", "s3", "s4" }, left)
    assert.are.same({ "s1" }, stored("both"))
    c:close()
  end)

  it("come first: a throttle fault answers without the simulator seeing the request", function()
    local c = H.proxied_client{ max_attempts = 1 }
    sim("POST", "", { wcu = 5, refill = false })
    H.faults{ { kind = "throttle", match = "PutItem" } }
    local res, err = c:put_item{ TableName = T, Item = { pk = "first", sk = "a" } }
    assert.is_nil(res)
    assert.are.equal("ThrottlingException", err.code)
    assert.is_nil(next(sim("GET").partitions))
    assert(c:put_item{ TableName = T, Item = { pk = "first", sk = "a" } })
    assert.are.equal(1, sim("GET").partitions[T]["S:first"].wcu)
    c:close()
  end)
end)
