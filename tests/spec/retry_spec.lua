-- Retries, through the fault-injecting proxy in front of DynamoDB Local:
-- every attempt is counted by both the proxy and the client's stats.
local H = require "test_helper"

local admin, T

setup(function()
  admin = H.client()
  T = H.create_table(admin, H.unique("retry"))
  assert(admin:put_item{ TableName = T, Item = { pk = "k", sk = "x", v = 1 } })
end)

teardown(function()
  H.clear_faults()
  admin:delete_table{ TableName = T }
  admin:close()
end)

local KEY = { pk = "k", sk = "x" }

-- A proxied client with small, known backoff so the suite stays quick.
local function client(opts)
  local o = { base_delay_ms = 5, max_backoff_ms = 40, max_attempts = 3, timeout_ms = 2000 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return H.proxied_client(o)
end

local function attempt_case(kind, fault, code)
  it("retries " .. kind .. " and succeeds on the next attempt", function()
    local c = client()
    H.reset_proxy_stats()
    H.faults{ fault }
    local res, err = c:get_item{ TableName = T, Key = KEY }
    assert.is_nil(err)
    assert.are.equal(1, res.Item.v)
    local s = c:stats()
    assert.are.equal(2, s.requests)
    assert.are.equal(1, s.retries)
    assert.are.equal(2, H.proxy_stats().requests)
    c:close()
  end)

  it("gives up on " .. kind .. " after max_attempts, with code " .. code, function()
    local c = client()
    H.reset_proxy_stats()
    local f = {}
    for k, v in pairs(fault) do f[k] = v end
    f.count = 5
    H.faults{ f }
    local res, err = c:get_item{ TableName = T, Key = KEY }
    assert.is_nil(res)
    assert.are.equal(code, err.code)
    assert.is_true(err.retryable)
    local s = c:stats()
    assert.are.equal(3, s.requests)
    assert.are.equal(2, s.retries)
    assert.are.equal(1, s.error_codes[code])
    H.clear_faults()
    c:close()
  end)
end

describe("standard retry mode", function()
  attempt_case("throttling", { kind = "throttle", count = 1 }, "ThrottlingException")
  attempt_case("ProvisionedThroughputExceeded", { kind = "provisioned", count = 1 },
               "ProvisionedThroughputExceededException")
  attempt_case("HTTP 500", { kind = "status", status = 500, count = 1 }, "InternalServerError")
  attempt_case("HTTP 503", { kind = "status", status = 503, count = 1 }, "ServiceUnavailable")
  attempt_case("a connection reset", { kind = "reset", count = 1 }, "ConnectionError")

  it("retries a timeout", function()
    local c = client{ timeout_ms = 300 }
    H.reset_proxy_stats()
    H.faults{ { kind = "delay", ms = 1500, count = 1 } }
    local res, err = c:get_item{ TableName = T, Key = KEY }
    assert.is_nil(err)
    assert.are.equal(1, res.Item.v)
    assert.are.equal(1, c:stats().retries)
    c:close()
  end)

  it("reports Timeout when every attempt times out", function()
    local c = client{ timeout_ms = 200, max_attempts = 2 }
    H.faults{ { kind = "delay", ms = 1000, count = 2 } }
    local res, err = c:get_item{ TableName = T, Key = KEY }
    assert.is_nil(res)
    assert.are.equal("Timeout", err.code)
    assert.are.equal(0, err.status)
    assert.are.equal(2, c:stats().requests)
    H.clear_faults()
    c:close()
  end)

  it("replaces a stale keep-alive connection, every send counted", function()
    local c = client()
    H.reset_proxy_stats()
    assert(c:get_item{ TableName = T, Key = KEY })   -- warms a pooled connection
    H.faults{ { kind = "close_after", count = 1 } }
    assert(c:get_item{ TableName = T, Key = KEY })   -- answered, then the proxy closes it
    local res, err = c:get_item{ TableName = T, Key = KEY } -- must not fail on the dead connection
    assert.is_nil(err)
    assert.are.equal(1, res.Item.v)
    -- libcurl sees the close before reusing the connection; if the request
    -- raced the close instead, that send is an attempt and a retry of its own.
    local s = c:stats()
    assert.are.equal(3, s.requests - s.retries)
    local ps = H.proxy_stats()
    assert.are.equal(3, ps.requests)
    assert.are.equal(2, ps.connections)               -- the dead one, then a fresh one
    c:close()
  end)

  it("counts a send lost on a pooled connection as an attempt, and retries it", function()
    -- The server took the request on a kept-alive connection and dropped
    -- it: the request may have been carried out, so resending it is the
    -- retry policy's decision, seen in the stats, never libcurl's alone.
    local c = client()
    assert(c:get_item{ TableName = T, Key = KEY })   -- warms a pooled connection
    c:reset_stats()
    H.reset_proxy_stats()
    H.faults{ { kind = "reset", count = 1 } }
    local res, err = c:get_item{ TableName = T, Key = KEY }
    assert.is_nil(err)
    assert.are.equal(1, res.Item.v)
    local s = c:stats()
    assert.are.equal(1, s.retries)
    assert.are.equal(0, s.errors)
    assert.are.equal(2, s.requests)
    assert.are.equal(2, H.proxy_stats().requests)     -- the lost send, then the retry
    c:close()
  end)

  it("never sends a write more than max_attempts times; a lost answer is ambiguous", function()
    -- drop_response: the proxy forwards each UpdateItem (it takes effect)
    -- and closes the connection without its answer.
    local c = client()
    local key = { pk = "ambig", sk = H.unique("n") }
    assert(c:get_item{ TableName = T, Key = KEY })   -- warms a pooled connection
    c:reset_stats()
    H.reset_proxy_stats()
    H.faults{ { kind = "drop_response", count = 10, match = "UpdateItem" } }
    local res, err = c:update_item{ TableName = T, Key = key, UpdateExpression = "ADD n :one",
                                    ExpressionAttributeValues = { [":one"] = 1 } }
    H.clear_faults()
    assert.is_nil(res)
    assert.are.equal("ConnectionError", err.code)
    assert.is_true(err.ambiguous)
    local s = c:stats()
    local ps = H.proxy_stats()
    assert.are.equal(3, s.operations.UpdateItem.requests)
    assert.are.equal(ps.requests, s.requests)
    assert.are.equal(3, ps.forwarded)
    local got = assert(admin:get_item{ TableName = T, Key = key, ConsistentRead = true })
    assert.are.equal(3, got.Item.n)                  -- once per attempt, no more
    c:close()
  end)

  it("says a failed condition after a lost answer may be the call's own write", function()
    local c = client()
    local key = { pk = "ambig", sk = H.unique("c") }
    assert(c:get_item{ TableName = T, Key = KEY })
    H.faults{ { kind = "drop_response", count = 1, match = "PutItem" } }
    local res, err = c:put_item{ TableName = T, Item = { pk = key.pk, sk = key.sk, v = 1 },
                                 ConditionExpression = "attribute_not_exists(pk)" }
    assert.is_nil(res)
    assert.are.equal("ConditionalCheckFailedException", err.code)
    assert.is_true(err.ambiguous)
    -- An answered failure on its own is not ambiguous.
    res, err = c:put_item{ TableName = T, Item = { pk = key.pk, sk = key.sk, v = 1 },
                           ConditionExpression = "attribute_not_exists(pk)" }
    assert.are.equal("ConditionalCheckFailedException", err.code)
    assert.is_nil(err.ambiguous)
    c:close()
  end)

  it("reuses one connection for sequential calls", function()
    local c = client()
    H.reset_proxy_stats()
    for _ = 1, 5 do assert(c:get_item{ TableName = T, Key = KEY }) end
    local ps = H.proxy_stats()
    assert.are.equal(5, ps.requests)
    assert.are.equal(1, ps.connections)
    c:close()
  end)

  it("never retries a failed condition", function()
    local c = client()
    H.reset_proxy_stats()
    local res, err = c:put_item{ TableName = T, Item = { pk = "k", sk = "x", v = 1 },
                                 ConditionExpression = "attribute_not_exists(pk)" }
    assert.is_nil(res)
    assert.are.equal("ConditionalCheckFailedException", err.code)
    assert.are.equal(1, c:stats().requests)
    assert.are.equal(1, H.proxy_stats().requests)
    c:close()
  end)

  it("never retries a validation error or a 413", function()
    local c = client()
    H.faults{ { kind = "status", status = 413, body = "", count = 1 } }
    local res, err = c:get_item{ TableName = T, Key = KEY }
    assert.is_nil(res)
    assert.are.equal("RequestEntityTooLarge", err.code)
    assert.are.equal(413, err.status)
    assert.are.equal(1, c:stats().requests)
    c:close()
  end)

  it("keeps each backoff within full jitter's bounds", function()
    local c = client{ max_attempts = 5, base_delay_ms = 10, max_backoff_ms = 25 }
    H.faults{ { kind = "throttle", count = 4 } }
    assert(c:get_item{ TableName = T, Key = KEY })
    local s = c:stats()
    assert.are.equal(4, s.retries)
    -- ceilings: min(25, 10 * 2^(n-1)) for n = 1..4 -> 10 + 20 + 25 + 25
    assert.is_true(s.retry_delay_ms_total <= 80, "total backoff " .. s.retry_delay_ms_total)
    c:close()
  end)

  it("stops retrying when the retry quota is spent, and refills it on success", function()
    local c = client{ max_attempts = 3, retry_quota = 7 }   -- room for one retry (cost 5)
    H.reset_proxy_stats()
    H.faults{ { kind = "status", status = 500, count = 3 } }
    local res, err = c:get_item{ TableName = T, Key = KEY }
    assert.is_nil(res)
    assert.are.equal("InternalServerError", err.code)
    local s = c:stats()
    assert.are.equal(2, s.requests)        -- quota allowed one retry, not two
    assert.are.equal(1, s.quota_exhausted)
    H.clear_faults()
    c:close()
  end)

  it("max_attempts = 1 disables retries", function()
    local c = client{ max_attempts = 1 }
    H.faults{ { kind = "throttle", count = 1 } }
    local _, err = c:get_item{ TableName = T, Key = KEY }
    assert.are.equal("ThrottlingException", err.code)
    assert.are.equal(1, c:stats().requests)
    c:close()
  end)

  it("batch_write_item resends what DynamoDB left unprocessed", function()
    local c = client()
    local puts = {}
    for i = 1, 8 do puts[i] = { PutRequest = { Item = { pk = "bw", sk = tostring(i) } } } end
    H.reset_proxy_stats()
    -- 8 -> 4 processed, 4 left -> 2 + 2 left -> then all.
    H.faults{ { kind = "unprocessed", count = 2, match = "BatchWriteItem" } }
    local res, err = c:batch_write_item{ RequestItems = { [T] = puts } }
    assert.is_nil(err)
    assert.is_nil(next(res.UnprocessedItems or {}))
    assert.are.equal(3, c:stats().operations.BatchWriteItem.requests)
    local got = assert(admin:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
                                       ExpressionAttributeValues = { [":p"] = "bw" },
                                       ConsistentRead = true })
    assert.are.equal(8, #got)
    c:close()
  end)

  it("batch_write_item gives up with what is left once its budget is spent", function()
    local c = client{ batch_max_attempts = 2 }
    local puts = {}
    for i = 1, 4 do puts[i] = { PutRequest = { Item = { pk = "bw2", sk = tostring(i) } } } end
    H.faults{ { kind = "unprocessed", count = 2, match = "BatchWriteItem" } }
    local res, err = c:batch_write_item{ RequestItems = { [T] = puts } }
    assert.is_nil(res)
    assert.are.equal("UnprocessedItems", err.code)
    assert.are.equal(1, #err.unprocessed_items[T])       -- 4 -> 2 left -> 1 left
    assert.are.equal("4", err.unprocessed_items[T][1].PutRequest.Item.sk)
    c:close()
  end)

  it("batch_get_item merges every round's items", function()
    local c = client()
    local keys = {}
    for i = 1, 8 do keys[i] = { pk = "bw", sk = tostring(i) } end
    H.faults{ { kind = "unprocessed", count = 3, match = "BatchGetItem" } }
    local res, err = c:batch_get_item{ RequestItems = { [T] = { Keys = keys, ConsistentRead = true } } }
    assert.is_nil(err)
    assert.are.equal(8, #res.Responses[T])
    assert.are.equal(4, c:stats().operations.BatchGetItem.requests)
    c:close()
  end)
end)
