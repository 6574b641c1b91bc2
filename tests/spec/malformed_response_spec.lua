-- A broken or hostile server answering 200 with a body that is not a JSON
-- object, or has the wrong shape where an item is expected: every store
-- and helper must return nil, err (MalformedResponse), never raise.
-- The fault proxy gives the answers, for every request of the operation.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"

local BODIES = {
  "5", '"str"', "null", "[1,2]", '{"Item":true}', '{"Responses":5}', '{"Items":5}',
  '{"Attributes":"x"}', '{"Count":"x","Items":[]}', '{"LastEvaluatedKey":7,"Items":[]}',
  '{"UnprocessedItems":3}',
}

local admin, S, I

setup(function()
  admin = H.client()
  S = H.store_table(admin, "malformed")
  I = H.unique("malformed-idem")
  assert(admin:create_table(schema.create_table_params(schema.IDEMPOTENCY_TABLE_SCHEMA, I)))
  assert(admin:wait_for_table(I, 30000))
end)

teardown(function()
  H.clear_faults()
  admin:delete_table{ TableName = S }
  admin:delete_table{ TableName = I }
  admin:close()
end)

-- The error itself, or the cause a store wrapped it in (idempotency's
-- STORAGE_ERROR keeps the client's error as err.cause).
local function malformed(err)
  if type(err) ~= "table" then return false end
  return err.code == "MalformedResponse"
      or (type(err.cause) == "table" and err.cause.code == "MalformedResponse")
end

local CASES = {}
local function case(name, make, run) CASES[#CASES + 1] = { name, make, run } end

local function cache(c) return ddbkit.cache.new{ client = c, table_name = S } end
case("cache:get", cache, function(s) return s:get("h") end)
case("cache:set", cache, function(s) return s:set("h", { v = 1 }, 60) end)
case("cache:delete", cache, function(s) return s:delete("h") end)
case("cache:set_with_tags", cache, function(s) return s:set_with_tags("h", 1, 60, { "t" }) end)
case("cache:invalidate_by_tag", cache, function(s) return s:invalidate_by_tag("t") end)
case("cache:clear", cache, function(s) return s:clear() end)

local function dedupe(c)
  return ddbkit.dedupe.new{ client = c, table_name = S, poll_interval_ms = 1, job_timeout_ms = 50 }
end
case("dedupe:register_or_join", dedupe, function(s) return s:register_or_join("h") end)
case("dedupe:register", dedupe, function(s) return s:register("h") end)
case("dedupe:complete", dedupe, function(s) return s:complete("h", 1) end)
case("dedupe:fail", dedupe, function(s) return s:fail("h", "x") end)
case("dedupe:wait_for", dedupe, function(s) return s:wait_for("h") end)
case("dedupe:is_in_progress", dedupe, function(s) return s:is_in_progress("h") end)
case("dedupe:clear", dedupe, function(s) return s:clear() end)

local function ratelimit(c) return ddbkit.ratelimit.new{ client = c, table_name = S } end
case("ratelimit:acquire", ratelimit, function(s) return s:acquire("r") end)
case("ratelimit:can_proceed", ratelimit, function(s) return s:can_proceed("r") end)
case("ratelimit:record", ratelimit, function(s) return s:record("r") end)
case("ratelimit:get_status", ratelimit, function(s) return s:get_status("r") end)
case("ratelimit:get_wait_time", ratelimit, function(s) return s:get_wait_time("r") end)
case("ratelimit:reset", ratelimit, function(s) return s:reset("r") end)
case("ratelimit:set_cooldown", ratelimit, function(s) return s:set_cooldown("o", 1e13) end)
case("ratelimit:get_cooldown", ratelimit, function(s) return s:get_cooldown("o") end)
case("ratelimit:clear_cooldown", ratelimit, function(s) return s:clear_cooldown("o") end)
case("ratelimit:clear", ratelimit, function(s) return s:clear() end)

local function adaptive(c) return ddbkit.adaptive.new{ client = c, table_name = S } end
case("adaptive:acquire user", adaptive, function(s) return s:acquire("r", "user") end)
case("adaptive:acquire background", adaptive, function(s) return s:acquire("r", "background") end)
case("adaptive:can_proceed", adaptive, function(s) return s:can_proceed("r", "user") end)
case("adaptive:record", adaptive, function(s) return s:record("r", "user") end)
case("adaptive:get_status", adaptive, function(s) return s:get_status("r") end)
case("adaptive:get_wait_time", adaptive, function(s) return s:get_wait_time("r", "user") end)
case("adaptive:reset", adaptive, function(s) return s:reset("r") end)

for _, mode in ipairs{ "compat", "fast" } do
  case("idempotency:execute (" .. mode .. ")",
    function(c)
      return ddbkit.idempotency.new{ client = c, table_name = I, mode = mode,
                                     lock_timeout_ms = 50, lock_ttl_ms = 1000,
                                     max_clock_skew_ms = 10, lock_poll_interval_ms = 1 }
    end,
    function(s) return s:execute("k-" .. mode, nil, function() return "done" end) end)
end

case("client:batch_get_item", function(c) return c end, function(c)
  return c:batch_get_item{ RequestItems = { [S] = { Keys = { { pk = "a", sk = "b" } } } } }
end)
case("client:batch_write_item", function(c) return c end, function(c)
  return c:batch_write_item{ RequestItems = { [S] = {
    { PutRequest = { Item = { pk = "a", sk = "b" } } } } } }
end)
case("client:wait_for_table", function(c) return c end,
  function(c) return c:wait_for_table(S, 1000) end)

-- One fault queue and one client per body, shared by every case of it
-- (arming the proxy per case made this spec take minutes).
for _, body in ipairs(BODIES) do
  describe("a 200 with the malformed body " .. body, function()
    local c
    setup(function()
      c = H.proxied_client{ max_attempts = 1 }
      H.faults{ { kind = "status", status = 200, count = 100000, body = body } }
    end)
    teardown(function()
      H.clear_faults()
      c:close()
    end)

    for _, cs in ipairs(CASES) do
      local name, make, run = cs[1], cs[2], cs[3]
      it(name .. " answers nil, MalformedResponse", function()
        local ok, res, err = pcall(run, make(c))
        assert.is_true(ok, "raised: " .. tostring(res))
        assert.is_nil(res)
        assert.is_true(malformed(err), "got " .. tostring(err and err.code) .. ": "
                                        .. tostring(err and err.message))
      end)
    end
  end)
end

-- Well-formed DynamoDB JSON whose content a store cannot use: an error's
-- details of the wrong type, a stored record whose dates are not numbers.
describe("details of the wrong type", function()
  after_each(H.clear_faults)

  local ERR = "com.amazonaws.dynamodb.v20120810#"
  local function canceled(reasons)
    return { kind = "status", status = 400, match = "TransactWriteItems", body = {
      __type = ERR .. "TransactionCanceledException",
      message = "Transaction cancelled", CancellationReasons = reasons } }
  end

  for _, reasons in ipairs{ { 5 }, { "x" }, { { Code = "ConditionalCheckFailed", Item = 5 } },
                            { { Code = 7 } } } do
    it("ratelimit:acquire does not raise on CancellationReasons " .. require("cjson").encode(reasons),
      function()
        local c = H.proxied_client{ max_attempts = 1 }
        local rl = ddbkit.ratelimit.new{ client = c, table_name = S }
        H.faults{ canceled(reasons) }
        local ok, res, err = pcall(rl.acquire, rl, "cancel-" .. tostring(reasons[1]))
        c:close()
        assert.is_true(ok, "raised: " .. tostring(res))
        assert.is_true(res == true or (res == nil and type(err) == "table"))
      end)
  end

  it("dedupe:register_or_join does not raise on a condition failure whose Item is not a map",
    function()
      local c = H.proxied_client{ max_attempts = 1 }
      local d = ddbkit.dedupe.new{ client = c, table_name = S }
      H.faults{ { kind = "status", status = 400, match = "PutItem", body = {
        __type = ERR .. "ConditionalCheckFailedException", message = "failed", Item = 5 } } }
      local ok, res, err = pcall(d.register_or_join, d, H.unique("job"))
      c:close()
      assert.is_true(ok, "raised: " .. tostring(res))
      assert.is_true(type(res) == "table" or (res == nil and type(err) == "table"))
    end)

  for _, mode in ipairs{ "compat", "fast" } do
    it("idempotency (" .. mode .. ") answers MalformedResponse to a record dated with strings",
      function()
        local c = H.proxied_client{ max_attempts = 1 }
        local idem = ddbkit.idempotency.new{ client = c, table_name = I, mode = mode,
          lock_timeout_ms = 50, lock_ttl_ms = 1000, max_clock_skew_ms = 10 }
        H.faults{ { kind = "status", status = 200, match = "GetItem", count = 100, body = {
          Item = { cacheKey = { S = "k" }, createdAt = { S = "x" }, ttl = { S = "y" },
                   response = { S = "r" }, expiresAt = { S = "z" } } } } }
        -- fast mode reads the record only after its lease is refused: a held one
        if mode == "fast" then
          H.faults{
            { kind = "status", status = 400, match = "UpdateItem", count = 100, body = {
              __type = ERR .. "ConditionalCheckFailedException", message = "held",
              Item = { cacheKey = { S = "k" }, createdAt = { S = "x" }, ttl = { S = "y" },
                       response = { S = "r" }, lockOwner = { S = "o" },
                       expiresAt = { N = tostring(os.time() + 60) } } } },
            { kind = "status", status = 200, match = "GetItem", count = 100, body = {
              Item = { cacheKey = { S = "k" }, createdAt = { S = "x" }, ttl = { S = "y" },
                       response = { S = "r" } } } },
          }
        end
        local ok, res, err = pcall(idem.execute, idem, H.unique("k"), nil,
                                   function() return "ran" end)
        c:close()
        assert.is_true(ok, "raised: " .. tostring(res))
        assert.is_nil(res)
        assert.is_true(malformed(err), "got " .. tostring(err and err.code) .. ": "
                                        .. tostring(err and err.message))
      end)
  end
end)
