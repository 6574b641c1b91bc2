-- The fault proxy's partition simulator (tests/faultproxy/partitions.py):
-- DynamoDB's per-partition WCU/RCU limits in front of DynamoDB Local, so
-- hot-key claims are measured. Every case freezes the simulator's clock
-- ("refill": false) and moves it only through /advance: the spec counts
-- units and answers, never time.
local H = require "test_helper"
local cjson = require "cjson.safe"

local PTEE = "ProvisionedThroughputExceededException"
local PTEE_MSG = "The level of configured provisioned throughput for the table was exceeded. "
  .. "Consider increasing your provisioning level with the UpdateTable API."
local PTEE_BODY = '{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
  .. '"message":"' .. PTEE_MSG .. '"}'

local admin, c, T

-- A control call on the simulator; returns the decoded answer.
local function sim(method, path, body)
  local st, out = H.http(method, H.proxy .. "/__proxy/partitions" .. (path or ""),
    { body = body and cjson.encode(body) or nil })
  assert(st == 200, "the simulator's control answered " .. tostring(st) .. ": " .. tostring(out))
  return assert(cjson.decode(out))
end

local function configure(opts)
  local o = { refill = false }
  for k, v in pairs(opts) do o[k] = v end
  return sim("POST", "", o)
end

-- The simulator's counters for partition key value pk of T (a string key).
local function part(pk)
  local p = sim("GET").partitions[T]
  return p and p["S:" .. pk]
end

local function put(client, pk, sk, extra)
  local item = { pk = pk, sk = sk }
  for k, v in pairs(extra or {}) do item[k] = v end
  return client:put_item{ TableName = T, Item = item }
end

-- What DynamoDB Local holds under pk, read directly (not through the proxy).
local function stored(pk)
  local res = assert(admin:query{ TableName = T, KeyConditionExpression = "pk = :p",
    ExpressionAttributeValues = { [":p"] = pk }, ConsistentRead = true })
  local sks = {}
  for _, it in ipairs(res.Items) do sks[#sks + 1] = it.sk end
  table.sort(sks)
  return sks
end

setup(function()
  admin = H.client()
  T = H.create_table(admin, H.unique("psim"))
  c = H.proxied_client{ max_attempts = 1 }
end)

teardown(function()
  sim("DELETE")
  c:close()
  admin:delete_table{ TableName = T }
  admin:close()
end)

describe("the partition simulator", function()
  it("is off by default: a burst on one key passes untouched and nothing is counted", function()
    local s = sim("GET")
    assert.is_false(s.enabled)
    for i = 1, 30 do assert(put(c, "off", string.format("s%02d", i))) end
    assert.are.equal(30, #stored("off"))
    s = sim("GET")
    assert.are.equal(0, s.totals.requests)
    assert.is_nil(next(s.partitions))
  end)

  it("refuses writes to one key above its bucket, with DynamoDB's answer, and applies none of them", function()
    configure{ wcu = 5, burst_s = 1 }
    H.reset_proxy_stats()
    local ok, refused = 0, 0
    for i = 1, 8 do
      local res, err = put(c, "hot", "s" .. i)
      if res then
        ok = ok + 1
      else
        refused = refused + 1
        assert.are.equal(PTEE, err.code)
        assert.are.equal(PTEE_MSG, err.message)
        assert.are.equal(400, err.status)
        assert.is_true(err.retryable)
      end
    end
    assert.are.equal(5, ok)
    assert.are.equal(3, refused)
    -- Only the first five reached DynamoDB Local.
    assert.are.same({ "s1", "s2", "s3", "s4", "s5" }, stored("hot"))
    local ps = H.proxy_stats()
    assert.are.equal(8, ps.requests)
    assert.are.equal(5, ps.forwarded)
    local p = part("hot")
    assert.are.equal(8, p.requests)
    assert.are.equal(3, p.throttled)
    assert.are.equal(5, p.wcu)
    assert.are.equal(0, p.write_tokens)
    -- The body byte for byte, from a request signed by curl itself.
    local st, body = H.http("POST", H.proxy .. "/", {
      headers = { "X-Amz-Target: DynamoDB_20120810.PutItem", "Content-Type: application/x-amz-json-1.0" },
      body = cjson.encode{ TableName = T, Item = { pk = { S = "hot" }, sk = { S = "curl" } } },
      extra = "--aws-sigv4 'aws:amz:us-east-1:dynamodb' --user ddbkittest:ddbkittestsecret",
    })
    assert.are.equal(400, st)
    assert.are.equal(PTEE_BODY, body)
    assert.are.equal(5, #stored("hot"))
  end)

  it("passes the same total spread over many keys", function()
    configure{ wcu = 5, burst_s = 1 }
    for i = 1, 40 do
      assert(put(c, "spread" .. (i % 8), "s" .. i))
    end
    local s = sim("GET")
    assert.are.equal(40, s.totals.requests)
    assert.are.equal(0, s.totals.throttled)
    assert.are.equal(40, s.totals.wcu)
    for k = 0, 7 do
      local p = part("spread" .. k)
      assert.are.equal(5, p.wcu)
      assert.are.equal(0, p.throttled)
    end
  end)

  it("refills at wcu per second of its clock, and no further than the bucket", function()
    configure{ wcu = 2, burst_s = 1 }
    assert(put(c, "refill", "a"))
    assert(put(c, "refill", "b"))
    local _, err = put(c, "refill", "c")
    assert.are.equal(PTEE, err.code)
    sim("POST", "/advance", { seconds = 0.5 })         -- 1 unit back
    assert(put(c, "refill", "c"))
    _, err = put(c, "refill", "d")
    assert.are.equal(PTEE, err.code)
    sim("POST", "/advance", { seconds = 100 })         -- capped at 2
    assert(put(c, "refill", "d"))
    assert(put(c, "refill", "e"))
    _, err = put(c, "refill", "f")
    assert.are.equal(PTEE, err.code)
    assert.are.same({ "a", "b", "c", "d", "e" }, stored("refill"))
  end)

  it("answers ThrottlingException for an on-demand table", function()
    configure{ wcu = 1, mode = "on_demand" }
    assert(put(c, "od", "a"))
    local res, err = put(c, "od", "b")
    assert.is_nil(res)
    assert.are.equal("ThrottlingException", err.code)
    assert.matches("Throughput exceeds the current capacity of your table or index", err.message, 1, true)
    assert.is_true(err.retryable)
    assert.are.same({ "a" }, stored("od"))
  end)

  it("counts a transaction item double and cancels a transaction that touches a dry key", function()
    configure{ wcu = 4 }
    local function tx(...)
      local items = {}
      for _, pk in ipairs{ ... } do
        items[#items + 1] = { Put = { TableName = T, Item = { pk = pk, sk = "tx" } } }
      end
      return c:transact_write_items{ TransactItems = items }
    end
    assert(tx("txa", "txb"))              -- 2 + 2
    assert(tx("txa", "txc"))              -- txa: 4 of 4
    local res, err = tx("txd", "txa")
    assert.is_nil(res)
    assert.are.equal("TransactionCanceledException", err.code)
    assert.are.equal("Transaction cancelled, please refer cancellation reasons for specific "
      .. "reasons [None, ProvisionedThroughputExceeded]", err.message)
    assert.are.equal("None", err.cancellation_reasons[1].Code)
    assert.are.equal("ProvisionedThroughputExceeded", err.cancellation_reasons[2].Code)
    assert.are.equal(PTEE_MSG, err.cancellation_reasons[2].Message)
    assert.are.same({}, stored("txd"))    -- nothing of it applied
    assert.are.equal(4, part("txa").wcu)
    assert.are.equal(1, part("txa").throttled)
    assert.are.equal(2, part("txb").wcu)
    assert.are.equal(0, part("txd").wcu)
    assert.are.equal(0, part("txd").throttled)
    -- The same item written plainly costs 1.
    assert(put(c, "plain", "p"))
    assert.are.equal(1, part("plain").wcu)
  end)

  it("cancels with ThrottlingError reasons for an on-demand table", function()
    configure{ wcu = 2, mode = "on_demand" }
    assert(c:transact_write_items{ TransactItems = {
      { Put = { TableName = T, Item = { pk = "odtx", sk = "1" } } } } })
    local res, err = c:transact_write_items{ TransactItems = {
      { Put = { TableName = T, Item = { pk = "odtx", sk = "2" } } } } }
    assert.is_nil(res)
    assert.are.equal("TransactionCanceledException", err.code)
    assert.are.equal("ThrottlingError", err.cancellation_reasons[1].Code)
    -- nothing of it applied: the engine retries it like any throttling
    assert.is_true(err.retryable)
    assert.are.same({ "1" }, stored("odtx"))
  end)

  it("charges ceil(item KB) write units, names and values counted in UTF-8 bytes", function()
    configure{ wcu = 10 }
    -- pk "big" (2 + 3 bytes) + sk "s1" (2 + 2) + "data" (4) + the value.
    assert(put(c, "big", "s1", { data = string.rep("x", 1024 - 13) }))  -- 1024 B: 1
    assert.are.equal(1, part("big").wcu)
    assert(put(c, "big", "s1", { data = string.rep("x", 1025 - 13) }))  -- 1025 B: 2
    assert.are.equal(3, part("big").wcu)
    assert(put(c, "big", "s1", { data = string.rep("é", 1250) }))       -- 2513 B: 3
    assert.are.equal(6, part("big").wcu)
    -- 4 units left: a 5 KB item does not fit, and is not written.
    local _, err = put(c, "big", "s2", { data = string.rep("x", 5000) })
    assert.are.equal(PTEE, err.code)
    assert.are.same({ "s1" }, stored("big"))
    -- UpdateItem: key + the values and names it sends (9 + 4 + 2000 B: 2).
    assert(c:update_item{ TableName = T, Key = { pk = "upd", sk = "s1" },
      UpdateExpression = "SET #d = :d", ExpressionAttributeNames = { ["#d"] = "data" },
      ExpressionAttributeValues = { [":d"] = string.rep("y", 2000) } })
    assert.are.equal(2, part("upd").wcu)
  end)

  it("charges reads from the answer: 4 KB units, half when eventually consistent", function()
    configure{ rcu = 3 }
    -- Written directly: writes through the proxy would not matter, but
    -- the spec counts only reads here. 4999 B: 2 units.
    assert(put(admin, "rd", "s1", { data = string.rep("x", 5000 - 13) }))
    for i = 1, 3 do assert(put(admin, "rq", "s" .. i, { data = string.rep("x", 2000) })) end
    local key = { pk = "rd", sk = "s1" }
    assert(c:get_item{ TableName = T, Key = key, ConsistentRead = true })   -- 2
    assert.are.equal(2, part("rd").rcu)
    assert(c:get_item{ TableName = T, Key = key })                          -- 1
    assert.are.equal(3, part("rd").rcu)
    local _, err = c:get_item{ TableName = T, Key = key }
    assert.are.equal(PTEE, err.code)
    assert.are.equal(1, part("rd").throttled)
    -- A missing item still costs the minimum.
    assert(c:get_item{ TableName = T, Key = { pk = "none", sk = "x" } })
    assert.are.equal(0.5, part("none").rcu)
    -- Query: the items summed (3 x 2012 B = 6036 B: 2 units), halved.
    local res = assert(c:query{ TableName = T, KeyConditionExpression = "pk = :p",
      ExpressionAttributeValues = { [":p"] = "rq" } })
    assert.are.equal(3, #res.Items)
    assert.are.equal(1, part("rq").rcu)
  end)

  it("lets a read run its bucket negative, and refuses the next until it refills past 0", function()
    configure{ rcu = 1 }
    assert(put(admin, "neg", "s1", { data = string.rep("x", 5000 - 13) }))
    local key = { pk = "neg", sk = "s1" }
    assert(c:get_item{ TableName = T, Key = key, ConsistentRead = true })   -- 2 of 1
    assert.are.equal(-1, part("neg").read_tokens)
    local _, err = c:get_item{ TableName = T, Key = key, ConsistentRead = true }
    assert.are.equal(PTEE, err.code)
    sim("POST", "/advance", { seconds = 1 })                                -- back to 0
    _, err = c:get_item{ TableName = T, Key = key, ConsistentRead = true }
    assert.are.equal(PTEE, err.code)
    sim("POST", "/advance", { seconds = 1 })                                -- 1
    assert(c:get_item{ TableName = T, Key = key, ConsistentRead = true })
    assert.are.equal(4, part("neg").rcu)
    assert.are.equal(2, part("neg").throttled)
  end)

  it("hands a batch's items for a dry key back unprocessed and writes the rest", function()
    configure{ wcu = 2 }
    local bc = H.proxied_client{ max_attempts = 1, batch_max_attempts = 1 }
    local reqs = {}
    for i = 1, 3 do reqs[#reqs + 1] = { PutRequest = { Item = { pk = "bhot", sk = "s" .. i } } } end
    reqs[#reqs + 1] = { PutRequest = { Item = { pk = "bcool", sk = "s1" } } }
    local res, err = bc:batch_write_item{ RequestItems = { [T] = reqs } }
    assert.is_nil(res)
    assert.are.equal("UnprocessedItems", err.code)
    local left = err.unprocessed_items[T]
    assert.are.equal(1, #left)
    assert.are.equal("s3", left[1].PutRequest.Item.sk)
    assert.are.same({ "s1", "s2" }, stored("bhot"))
    assert.are.same({ "s1" }, stored("bcool"))
    -- Every item on dry keys: the exception, nothing written.
    res, err = bc:batch_write_item{ RequestItems = { [T] = { reqs[3] } } }
    assert.is_nil(res)
    assert.are.equal(PTEE, err.code)
    assert.are.same({ "s1", "s2" }, stored("bhot"))
    bc:close()
  end)

  it("is retried by ddbkit's client, each attempt refused and counted", function()
    configure{ wcu = 1 }
    local rc = H.proxied_client{ max_attempts = 3, base_delay_ms = 1, max_backoff_ms = 2 }
    assert(put(rc, "retry", "a"))
    rc:reset_stats()
    H.reset_proxy_stats()
    local res, err = put(rc, "retry", "b")
    assert.is_nil(res)
    assert.are.equal(PTEE, err.code)
    assert.are.equal(2, rc:stats().retries)
    local ps = H.proxy_stats()
    assert.are.equal(3, ps.requests)
    assert.are.equal(0, ps.forwarded)
    assert.are.equal(3, part("retry").throttled)
    -- A transaction cancelled for throttling alone is retried the same way.
    rc:reset_stats()
    local tres, terr = rc:transact_write_items{ TransactItems = {
      { Put = { TableName = T, Item = { pk = "retry", sk = "t" } } } } }
    assert.is_nil(tres)
    assert.are.equal("TransactionCanceledException", terr.code)
    assert.are.equal(2, rc:stats().retries)
    assert.are.same({ "a" }, stored("retry"))
    rc:close()
  end)

  it("resets its counters and buckets, and switches off", function()
    configure{ wcu = 1 }
    assert(put(c, "rs", "a"))
    local _, err = put(c, "rs", "b")
    assert.are.equal(PTEE, err.code)
    sim("POST", "/reset")
    local s = sim("GET")
    assert.is_true(s.enabled)
    assert.is_nil(next(s.partitions))
    assert.are.equal(0, s.totals.requests)
    assert(put(c, "rs", "b"))
    sim("DELETE")
    assert.is_false(sim("GET").enabled)
    for i = 1, 5 do assert(put(c, "rs", "off" .. i)) end
  end)

  it("refuses a bad configuration", function()
    for _, bad in ipairs{ { wcu = 0 }, { mode = "x" }, { burst_s = -1 }, { refill = "no" }, { nope = 1 } } do
      local st = H.http("POST", H.proxy .. "/__proxy/partitions", { body = cjson.encode(bad) })
      assert.are.equal(400, st)
    end
    assert.is_false(sim("GET").enabled)
  end)
end)
