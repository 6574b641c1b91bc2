-- The client against a real DynamoDB Local: every operation, every value
-- type, the error shapes, pagination and the stats.
local ddbkit = require "ddbkit"
local H = require "test_helper"

local client, T

setup(function()
  client = H.client()
  T = H.create_table(client, H.unique("client"))
end)

teardown(function()
  client:delete_table{ TableName = T }
  client:close()
end)

local function get(pk, sk)
  local res = assert(client:get_item{ TableName = T, Key = { pk = pk, sk = sk or "x" },
                                      ConsistentRead = true })
  return res.Item
end

describe("values round trip", function()
  local cases = {
    { "string", "héllo wörld ✓" },
    { "empty string in a list", ddbkit.array{ "" } },
    { "integer", 42 },
    { "negative", -17 },
    { "zero", 0 },
    { "fraction", 0.1 },
    { "float", -3.25e-7 },
    { "large float", 1.5e100 },
    { "true", true },
    { "false", false },
    { "null", ddbkit.null },
    { "empty map", {} },
    { "empty list", ddbkit.array() },
    { "list", { 1, "two", true, ddbkit.null, { nested = "map" } } },
    { "nested map", { a = { b = { c = { 1, 2, { d = "deep" } } } } } },
    { "binary", ddbkit.binary("\0\1\2\255 bytes \0") },
    { "string set", ddbkit.set("a", "b", "c") },
    { "number set", ddbkit.set(1, 2.5, -3) },
    { "binary set", ddbkit.set(ddbkit.binary("x\0"), ddbkit.binary("\255")) },
    { "38-digit decimal", ddbkit.decimal("12345678901234567890123456789012345678") },
    { "38-digit fraction", ddbkit.decimal("0.12345678901234567890123456789012345678") },
    { "tiny 38-digit decimal", ddbkit.decimal("1.0000000000000000000000000000000000001E-130") },
  }
  for i, case in ipairs(cases) do
    it(case[1], function()
      local pk = "v" .. i
      assert(client:put_item{ TableName = T, Item = { pk = pk, sk = "x", v = case[2] } })
      local item = get(pk)
      assert.is_truthy(H.same(item.v, case[2]),
        "round trip changed " .. case[1] .. ": got " .. tostring(item.v))
    end)
  end

  it("keeps an empty table and ddbkit.array() apart", function()
    assert(client:put_item{ TableName = T, Item = { pk = "ea", sk = "x", m = {}, l = ddbkit.array() } })
    local item = get("ea")
    assert.is_false(ddbkit.is_array(item.m))
    assert.is_true(ddbkit.is_array(item.l))
  end)

  it("holds a number a double cannot as an exact decimal", function()
    assert(client:put_item{ TableName = T, Item = { pk = "big", sk = "x",
      n = ddbkit.decimal("9007199254740993") } })
    local item = get("big")
    -- Lua 5.4 integers hold it exactly; LuaJIT doubles cannot, so it comes back a decimal.
    assert.are.equal("9007199254740993", tostring(item.n))
  end)
end)

describe("bad input", function()
  local bad = {
    { "non-UTF-8 string", { pk = "bad", sk = "x", a = { b = { "ok", "ok", "\255\254" } } }, "Item.a.b%[3%]" },
    { "NaN", { pk = "bad", sk = "x", n = 0 / 0 }, "Item.n" },
    { "infinity", { pk = "bad", sk = "x", n = math.huge }, "Item.n" },
    { "mixed table", { pk = "bad", sk = "x", m = { 1, 2, k = "v" } }, "Item.m" },
    { "function", { pk = "bad", sk = "x", f = print }, "Item.f" },
  }
  for _, case in ipairs(bad) do
    it("rejects a " .. case[1] .. " naming the path, writing nothing", function()
      local res, err = client:put_item{ TableName = T, Item = case[2] }
      assert.is_nil(res)
      assert.are.equal("ValidationException", err.code)
      assert.is_truthy(err.message:find(case[3]), err.message)
      assert.is_nil(get("bad"))
    end)
  end

  it("rejects a cycle", function()
    local t = { pk = "bad", sk = "x" }
    t.self = { inner = t }
    local res, err = client:put_item{ TableName = T, Item = t }
    assert.is_nil(res)
    assert.is_truthy(err.message:find("cycle"), err.message)
    assert.is_nil(get("bad"))
  end)

  it("rejects 33 levels of nesting and accepts 32", function()
    local function nest(n)
      local v = "leaf"
      for _ = 1, n do v = { v } end
      return v
    end
    assert(client:put_item{ TableName = T, Item = { pk = "deep32", sk = "x", v = nest(31) } })
    local res, err = client:put_item{ TableName = T, Item = { pk = "bad", sk = "x", v = nest(33) } }
    assert.is_nil(res)
    assert.is_truthy(err.message:find("32"), err.message)
    assert.is_nil(get("bad"))
  end)

  it("raises on misuse, naming the argument", function()
    assert.has_error(function() client:get_item("nope") end,
      "bad argument #1 to 'get_item' (table expected, got string)")
    assert.has_error(function() ddbkit.client{ timeout_ms = -1 } end)
    assert.has_error(function() ddbkit.client{ no_such_option = 1 } end)
  end)
end)

describe("operations", function()
  it("put, get, update with ReturnValues, delete", function()
    assert(client:put_item{ TableName = T, Item = { pk = "op", sk = "x", n = 1 } })
    local res = assert(client:update_item{
      TableName = T, Key = { pk = "op", sk = "x" },
      UpdateExpression = "SET #n = #n + :one, #t = :t",
      ExpressionAttributeNames = { ["#n"] = "n", ["#t"] = "tag" },
      ExpressionAttributeValues = { [":one"] = 1, [":t"] = "hi" },
      ReturnValues = "ALL_NEW",
    })
    assert.are.equal(2, res.Attributes.n)
    assert.are.equal("hi", res.Attributes.tag)
    res = assert(client:get_item{ TableName = T, Key = { pk = "op", sk = "x" },
      ProjectionExpression = "#n", ExpressionAttributeNames = { ["#n"] = "n" } })
    assert.are.same({ n = 2 }, res.Item)
    res = assert(client:delete_item{ TableName = T, Key = { pk = "op", sk = "x" }, ReturnValues = "ALL_OLD" })
    assert.are.equal(2, res.Attributes.n)
    assert.is_nil(get("op"))
  end)

  it("returns the old item with a failed condition (ALL_OLD)", function()
    assert(client:put_item{ TableName = T, Item = { pk = "cond", sk = "x", owner = "me" } })
    local res, err = client:put_item{
      TableName = T, Item = { pk = "cond", sk = "x", owner = "you" },
      ConditionExpression = "attribute_not_exists(pk)",
      ReturnValuesOnConditionCheckFailure = "ALL_OLD",
    }
    assert.is_nil(res)
    assert.are.equal("ConditionalCheckFailedException", err.code)
    assert.is_false(err.retryable)
    assert.are.equal(400, err.status)
    assert.are.equal("me", err.item.owner)
    assert.are.equal("ConditionalCheckFailedException: " .. err.message, tostring(err))
  end)

  it("transact_write_items commits, and a cancelled one gives its reasons", function()
    assert(client:transact_write_items{ TransactItems = {
      { Put = { TableName = T, Item = { pk = "tx1", sk = "x", v = 1 } } },
      { Put = { TableName = T, Item = { pk = "tx2", sk = "x", v = 2 } } },
    } })
    assert.are.equal(2, get("tx2").v)
    local res, err = client:transact_write_items{ TransactItems = {
      { Put = { TableName = T, Item = { pk = "tx3", sk = "x" } } },
      { ConditionCheck = { TableName = T, Key = { pk = "tx1", sk = "x" },
          ConditionExpression = "v = :nine", ExpressionAttributeValues = { [":nine"] = 9 },
          ReturnValuesOnConditionCheckFailure = "ALL_OLD" } },
    } }
    assert.is_nil(res)
    assert.are.equal("TransactionCanceledException", err.code)
    assert.are.equal(2, #err.cancellation_reasons)
    assert.are.equal("None", err.cancellation_reasons[1].Code)
    assert.are.equal("ConditionalCheckFailed", err.cancellation_reasons[2].Code)
    assert.are.equal(1, err.cancellation_reasons[2].Item.v)
    assert.is_nil(get("tx3"))
  end)

  it("transact_get_items", function()
    local res = assert(client:transact_get_items{ TransactItems = {
      { Get = { TableName = T, Key = { pk = "tx1", sk = "x" } } },
      { Get = { TableName = T, Key = { pk = "nope", sk = "x" } } },
    } })
    assert.are.equal(1, res.Responses[1].Item.v)
    assert.is_nil(res.Responses[2].Item)
  end)

  it("batch_write_item and batch_get_item", function()
    local puts = {}
    for i = 1, 25 do
      puts[i] = { PutRequest = { Item = { pk = "batch", sk = string.format("%03d", i), i = i } } }
    end
    assert(client:batch_write_item{ RequestItems = { [T] = puts } })
    local keys = {}
    for i = 1, 30 do keys[i] = { pk = "batch", sk = string.format("%03d", i) } end
    local res = assert(client:batch_get_item{ RequestItems = { [T] = { Keys = keys, ConsistentRead = true } } })
    assert.are.equal(25, #res.Responses[T])
    assert(client:batch_write_item{ RequestItems = { [T] = {
      { DeleteRequest = { Key = { pk = "batch", sk = "001" } } } } } })
    assert.is_nil(get("batch", "001"))
  end)

  it("query and scan, with pagination over several pages", function()
    local big = string.rep("x", 100 * 1024)
    for i = 1, 15 do
      assert(client:put_item{ TableName = T, Item = { pk = "page", sk = string.format("%02d", i), blob = big } })
    end
    local pages, items = 0, 0
    for page, err in client:query_pages{ TableName = T, KeyConditionExpression = "pk = :p",
                                         ExpressionAttributeValues = { [":p"] = "page" } } do
      assert.is_nil(err)
      pages = pages + 1
      items = items + #page.Items
    end
    assert.is_true(pages > 1, "expected several 1 MB pages, got " .. pages)
    assert.are.equal(15, items)

    local seen = {}
    for item in client:query_items{ TableName = T, KeyConditionExpression = "pk = :p",
                                    ExpressionAttributeValues = { [":p"] = "page" }, Limit = 4 } do
      seen[#seen + 1] = item.sk
    end
    assert.are.equal(15, #seen)
    assert.are.equal("01", seen[1])
    assert.are.equal("15", seen[15])

    local all = assert(client:scan_all{ TableName = T, Limit = 7,
      FilterExpression = "pk = :p", ExpressionAttributeValues = { [":p"] = "page" } })
    assert.are.equal(15, #all)
  end)

  it("an iterator ends with page == false and the error on failure", function()
    local got
    for page, err in client:query_pages{ TableName = "no-such-table-" .. H.unique(),
        KeyConditionExpression = "pk = :p", ExpressionAttributeValues = { [":p"] = "x" } } do
      assert.is_false(page)
      got = err
    end
    assert.are.equal("ResourceNotFoundException", got.code)
  end)

  it("rejects an item over 400 KB", function()
    local res, err = client:put_item{ TableName = T,
      Item = { pk = "huge", sk = "x", blob = string.rep("y", 401 * 1024) } }
    assert.is_nil(res)
    assert.are.equal("ValidationException", err.code)
    assert.is_truthy(err.message:lower():find("size"), err.message)
    assert.is_nil(get("huge"))
  end)

  it("gives the compat message for a missing table", function()
    local res, err = client:get_item{ TableName = "missing-table", Key = { pk = "a" } }
    assert.is_nil(res)
    assert.are.equal("ResourceNotFoundException", err.code)
    assert.are.equal('DynamoDB table "missing-table" was not found. Create the table using '
      .. "your infrastructure before using DynamoDB stores.", err.message)
  end)

  it("table management: list, describe, ttl, update, delete", function()
    local name = H.create_table(client, H.unique("mgmt"), { range = false })
    local list = assert(client:list_tables{})
    local found = false
    for _, n in ipairs(list.TableNames) do found = found or n == name end
    assert.is_true(found)
    local d = assert(client:describe_table{ TableName = name })
    assert.are.equal("pk", d.Table.KeySchema[1].AttributeName)
    assert(client:update_time_to_live{ TableName = name,
      TimeToLiveSpecification = { AttributeName = "ttl", Enabled = true } })
    local ttl = assert(client:describe_time_to_live{ TableName = name })
    assert.are.equal("ttl", ttl.TimeToLiveDescription.AttributeName)
    assert(client:delete_table{ TableName = name })
  end)

  it("creates the store table from TABLE_SCHEMA", function()
    local name = H.unique("store")
    local params = require("ddbkit.schema").create_table_params(ddbkit.TABLE_SCHEMA, name)
    assert(client:create_table(params))
    local d = assert(client:wait_for_table(name))
    assert.are.equal("gsi1", d.GlobalSecondaryIndexes[1].IndexName)
    assert(client:delete_table{ TableName = name })
    assert.are.equal("http-client-toolkit", ddbkit.DEFAULT_TABLE_NAME)
  end)

  it("client:call runs any operation by name", function()
    local res = assert(client:call("DescribeTable", { TableName = T }))
    assert.are.equal(T, res.Table.TableName)
  end)
end)

describe("stats", function()
  it("counts requests per operation exactly", function()
    local c = H.client()
    H.create_table(c, H.unique("stats"))
    c:reset_stats()
    for _ = 1, 3 do c:get_item{ TableName = T, Key = { pk = "a", sk = "b" } } end
    c:get_item{ TableName = "missing", Key = { pk = "a" } }
    local s = c:stats()
    assert.are.equal(4, s.requests)
    assert.are.equal(4, s.operations.GetItem.calls)
    assert.are.equal(4, s.operations.GetItem.requests)
    assert.are.equal(1, s.operations.GetItem.errors)
    assert.are.equal(1, s.error_codes.ResourceNotFoundException)
    assert.are.equal(4, s.latency_us.count)
    assert.is_true(s.bytes_out > 0 and s.bytes_in > 0)
    assert.is_true(s.latency_us.p50 <= s.latency_us.max)
    c:close()
  end)

  it("never shows a secret", function()
    local c = H.client{ credentials = { access_key_id = "AKIDSTATS", secret_access_key = "very-secret-value" } }
    c:get_item{ TableName = "missing", Key = { pk = "a" } }
    local function walk(v)
      if type(v) == "table" then for k, x in pairs(v) do walk(k) walk(x) end
      else assert.is_falsy(tostring(v):find("very%-secret")) end
    end
    walk(c:stats())
    walk(c:credentials())
    walk(tostring(c.core))
    local _, err = c:get_item{ TableName = "missing", Key = { pk = "a" } }
    walk(err)
    c:close()
  end)
end)

describe("prepare", function()
  it("builds a signed request at a given time without sending it", function()
    local c = H.client()
    c:reset_stats()
    local req = assert(c:prepare("GetItem", { TableName = "t", Key = { pk = "a" } }, { time = 1440938160 }))
    assert.are.equal("POST", req.method)
    assert.are.equal(H.endpoint .. "/", req.url)
    assert.are.equal("DynamoDB_20120810.GetItem", req.headers["X-Amz-Target"])
    assert.are.equal("20150830T123600Z", req.headers["X-Amz-Date"])
    assert.is_truthy(req.headers.Authorization:find("^AWS4%-HMAC%-SHA256 Credential=ddbkittest/20150830/us%-east%-1/dynamodb/aws4_request"))
    assert.are.same({ TableName = "t", Key = { pk = { S = "a" } } }, require("cjson").decode(req.body))
    assert.are.equal(0, c:stats().requests)
    c:close()
  end)

  it("parse turns a status and body into a result or an error", function()
    local c = H.client()
    local res = assert(c:parse(200, '{"Item":{"a":{"N":"1"}}}'))
    assert.are.equal(1, res.Item.a)
    local _, err = c:parse(400, '{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","Message":"nope","Item":{"o":{"S":"x"}}}', "RID")
    assert.are.equal("ConditionalCheckFailedException", err.code)
    assert.are.equal("nope", err.message)
    assert.are.equal("RID", err.request_id)
    assert.are.equal("x", err.item.o)
    _, err = c:parse(413, "")
    assert.are.equal("RequestEntityTooLarge", err.code)
    c:close()
  end)
end)
