-- The Lua C module's boundary against hostile callers and hostile servers:
-- strings whose only owner is the C stack, a client closed (by a finalizer)
-- in the middle of its own call, numeric options that do not fit, values of
-- the wrong type where an item is expected, and 200 answers of the wrong
-- shape. Run it under the ASan build too (tests/run.sh does): several of
-- these read freed memory when the binding gets a lifetime wrong.
local core = require "ddbkit.core"
local H = require "test_helper"

local LUA54 = _VERSION == "Lua 5.4" and not rawget(_G, "jit")

-- An object whose finalizer runs fn (a userdata on LuaJIT, which runs no
-- table finalizers).
local function finalizable(fn)
  if rawget(_G, "newproxy") then
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

-- Makes the collector eager from here on: a new cycle starts as soon as one
-- ends (a pause under 100), and the steps are small and often, so that a
-- cycle takes a bounded share of what the code allocates meanwhile (a
-- cycle that fits in one step would run again at every allocation: on a
-- small heap, every one of the decoder's). Lua 5.4 keeps a parameter given
-- as 0 as it was, and both VMs reckon when the next cycle starts only when
-- one ends: the full collection makes the pause count now, not after the
-- heap earlier specs left has doubled, and leaves the collector at the
-- start of a cycle.
local function eager_gc()
  if LUA54 then
    collectgarbage("incremental", 10, 400, 10)   -- steps every 1 KiB
  else
    collectgarbage("setpause", 10)
    collectgarbage("setstepmul", 2000)          -- LuaJIT steps every 1 KiB
  end
  collectgarbage()
end

-- The defaults (Lua 5.4's step size: 2^13 bytes).
local function normal_gc()
  if LUA54 then
    collectgarbage("incremental", 200, 100, 13)
  else
    collectgarbage("setpause", 200)
    collectgarbage("setstepmul", 200)
  end
  collectgarbage()
end

-- How many items the answer core.call is in the middle of decoding has so
-- far: the decoder builds its tables on the Lua stack, so a partly built
-- Items array (first item's pk is first_pk, fewer than n items) is one of
-- core.call's temporaries. nil when core.call is not running or is not
-- decoding such an answer (still encoding the request, say).
local function items_decoded(first_pk, n)
  for level = 2, 200 do
    local info = debug.getinfo(level, "f")
    if not info then return nil end
    if info.func == core.call then
      for i = 1, 10000 do
        local name, v = debug.getlocal(level, i)
        if not name then return nil end
        local first = type(v) == "table" and rawget(v, 1)
        if type(first) == "table" and rawget(first, "pk") == first_pk
           and rawget(v, n) == nil then
          return #v
        end
      end
      return nil
    end
  end
  return nil
end

-- Runs act from a finalizer once, while core.call is in the middle of
-- decoding an answer of n items whose first pk is first_pk. A finalizer
-- that runs anywhere else leaves a new finalizable object behind, so with
-- the collector eager one runs every cycle until one lands in the decoder.
-- Returns stop(): ends the chain, returns how many items were decoded when
-- act ran (nil: it never ran). A spec that fails midway leaves its chain to
-- the next after_each's stop_chain().
local stop_chain = function() end
local function finalize_while_decoding(first_pk, n, act)
  local armed, at = true, nil
  local function gc()
    if not armed then return end
    local got = items_decoded(first_pk, n)
    if got and got > 0 then
      armed, at = false, got
      act()
    else
      finalizable(gc)
    end
  end
  finalizable(gc)
  stop_chain = function()
    armed = false
    return at
  end
  return stop_chain
end

local function core_client(endpoint)
  return assert(core.new_client{ region = "us-east-1", endpoint = endpoint or H.endpoint,
                                 credentials = H.credentials })
end

describe("strings the C side keeps", function()
  -- A fresh string on every read (string.rep of a long text is never
  -- interned, so nothing else owns it), with a full collection before each
  -- read: a pointer the binding kept to an earlier value after popping it
  -- now points at freed memory.
  local function lazy(values)
    return setmetatable({}, { __index = function(_, k)
      collectgarbage()
      local v = values[k]
      if type(v) == "string" then return string.rep(v, 1) .. string.rep("", 0) end
      if type(v) == "function" then return v() end
      return v
    end })
  end

  it("new_client copies every option read through __index before the engine reads it", function()
    local region = "region-" .. string.rep("r", 48)
    local id = string.rep("A", 48)
    local opts = lazy{
      region = function() return "region-" .. string.rep("r", 48) end,
      endpoint = H.endpoint,
      credentials = lazy{
        access_key_id = function() return string.rep("A", 48) end,
        secret_access_key = function() return string.rep("s", 48) end,
        session_token = function() return string.rep("t", 64) end,
      },
    }
    local c = assert(core.new_client(opts))
    assert.equals(region, c:region())
    local req = assert(c:prepare("ListTables", {}))
    assert.matches("Credential=" .. id .. "/", req.headers.Authorization, 1, true)
    assert.equals(string.rep("t", 64), req.headers["X-Amz-Security-Token"])
    c:close()
  end)

  it("new_client keeps a number option converted to a string alive", function()
    -- region = 12345: converted in place on the stack, owned by nothing else
    local opts = lazy{ region = 1234567, endpoint = H.endpoint,
                       credentials = H.credentials }
    local c = assert(core.new_client(opts))
    -- (the expected text is built only now: a "1234567" constant in this
    -- chunk would be the same interned string and keep it alive)
    assert.equals(tostring(1234000 + 567), c:region())
    c:close()
  end)

  it("lock_op copies the key's fields before the engine builds its request", function()
    local key = lazy{
      table = function() return "tbl-" .. string.rep("t", 48) end,
      pk_name = function() return "pk" .. string.rep("n", 48) end,
      pk_value = function() return "lock-" .. string.rep("v", 48) end,
      sk_name = function() return "sk" .. string.rep("n", 48) end,
      sk_value = 987654321,
    }
    local opts = lazy{ lease_ms = 1000, wait_ms = 0, max_clock_skew_ms = 0 }
    local op = assert(core.lock_op("acquire", key, opts))
    local what, name, body = op:next()
    assert.equals("send", what)
    assert.is_string(name)
    assert.matches('"TableName":"tbl-' .. string.rep("t", 48) .. '"', body, 1, true)
    assert.matches('"lock-' .. string.rep("v", 48) .. '"', body, 1, true)
    assert.matches('"987654321"', body, 1, true)
  end)
end)

describe("a client closed during its own call", function()
  -- A valid 20,000-item Query answer, from the fault proxy.
  local function big_body(n, prefix)
    n = n or 20000
    local parts = {}
    for i = 1, n do
      parts[i] = string.format('{"pk":{"S":"%s%d"},"n":{"N":"%d"}}', prefix or "k", i, i)
    end
    return string.format('{"Count":%d,"ScannedCount":%d,"Items":[%s]}', n, n,
                         table.concat(parts, ","))
  end

  after_each(function()
    stop_chain()
    normal_gc()
    H.clear_faults()
  end)

  it("finishes decoding the answer it is in the middle of", function()
    local c = core_client(H.proxy)
    H.faults{ { kind = "status", status = 200, body = big_body(), count = 1 } }
    -- A finalizer closes the client once core.call has decoded part of
    -- the answer.
    eager_gc()
    local stop = finalize_while_decoding("k1", 20000, function() c:close() end)
    local res, err = core.call(c, "Query", { TableName = "t" })
    local at = stop()
    normal_gc()
    -- first, that the path was taken at all
    assert.is_number(at, "no finalizer ran while core.call was decoding")
    assert.is_nil(err)
    assert.equals(20000, #res.Items)
    assert.equals("k20000", res.Items[20000].pk)
    -- closed now: a use is misuse and raises
    assert.has_error(function() core.call(c, "Query", { TableName = "t" }) end, "client is closed")
  end)

  it("a call made on the same client by a finalizer leaves the answer being decoded alone", function()
    local c = core_client(H.proxy)
    -- the nested call's answer is larger: the buffer it lands in moves
    H.faults{ { kind = "status", status = 200, body = big_body(), count = 1 },
              { kind = "status", status = 200, body = big_body(40000, "n"), count = 1 } }
    local nested_res, nested_err
    eager_gc()
    local stop = finalize_while_decoding("k1", 20000, function()
      -- its body would overwrite (and move) the response the outer call
      -- is decoding
      nested_res, nested_err = core.call(c, "Query", { TableName = "t" })
    end)
    local res, err = core.call(c, "Query", { TableName = "t" })
    local at = stop()
    normal_gc()
    assert.is_number(at, "no finalizer ran while core.call was decoding")
    assert.is_nil(err)
    assert.equals(20000, #res.Items)
    assert.equals("k20000", res.Items[20000].pk)
    assert.is_nil(nested_err)
    assert.equals(40000, #nested_res.Items)
    assert.equals("n40000", nested_res.Items[40000].pk)
    -- and the client's own buffers are the outer call's again
    H.faults{ { kind = "status", status = 200, body = '{"Count":0,"Items":[]}', count = 1 } }
    assert.same({}, assert(core.call(c, "Query", { TableName = "t" })).Items)
    c:close()
  end)

  it("a loop submit that finds its client closed leaks no anchor", function()
    local loop = assert(core.loop_new())
    local c = core_client()
    local token = {}
    local weak = setmetatable({ token }, { __mode = "v" })
    -- TableName is read through __index after the encoder ran: the client
    -- closes right there, before the call is recorded.
    local params = setmetatable({ Limit = 1 }, { __index = function(_, k)
      if k == "TableName" then c:close() end
    end })
    local ok, msg = pcall(loop.submit, loop, c, "Scan", params, token)
    assert.is_false(ok)
    assert.matches("client is closed", msg, 1, true)
    token = nil
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
    assert.equals(0, loop:pending())
  end)
end)

describe("numeric client options", function()
  local function refused(opt, value, pat)
    local o = { region = "us-east-1", endpoint = H.endpoint, credentials = H.credentials }
    o[opt] = value
    local ok, msg = pcall(core.new_client, o)
    assert.is_false(ok, opt .. " = " .. tostring(value) .. " was accepted")
    assert.matches("bad option '" .. opt .. "' to 'client'", msg, 1, true)
    if pat then assert.matches(pat, msg, 1, true) end
  end

  it("refuse NaN and infinities, naming the option", function()
    for _, opt in ipairs{ "timeout_ms", "connect_timeout_ms", "max_attempts", "base_delay_ms",
                          "max_backoff_ms", "retry_quota", "max_response_bytes" } do
      refused(opt, 0 / 0, "got nan")
      refused(opt, math.huge, "got inf")
      refused(opt, -math.huge, "got -inf")
    end
  end)

  it("refuse numbers out of range instead of truncating them", function()
    refused("retry_quota", 1e10)
    refused("max_response_bytes", 1e300)
    refused("max_attempts", 2 ^ 40)
    refused("timeout_ms", 0)
    refused("retry_quota", -1)
  end)

  it("refuse fractions where a count is expected", function()
    refused("max_attempts", 2.5, "integer")
    refused("retry_quota", 0.5, "integer")
    refused("max_response_bytes", 1000.5, "integer")
  end)

  it("refuse a non-number", function()
    refused("timeout_ms", "100", "number expected, got string")
  end)

  it("take the largest values in range", function()
    local c = assert(core.new_client{ region = "us-east-1", endpoint = H.endpoint,
                                      credentials = H.credentials, retry_quota = 2147483647,
                                      timeout_ms = 2147483647, max_attempts = 100 })
    c:close()
  end)
end)

describe("a non-table where an item is expected", function()
  local fields = { "Item", "Key", "ExpressionAttributeValues", "ExclusiveStartKey",
                   "RequestItems", "Keys", "Items", "AttributeUpdates", "Expected",
                   "KeyConditions", "Parameters" }

  it("is refused by the encoder, naming the field", function()
    for _, f in ipairs(fields) do
      for _, v in ipairs{ "zz", 5, true } do
        local json, err = core.encode{ TableName = "t", [f] = v }
        assert.is_nil(json, f .. " = " .. tostring(v) .. " was encoded")
        assert.matches("^" .. f .. ": expected a table", err)
      end
    end
    -- nested too: a transaction's Put.Item, a batch's PutRequest.Item
    local _, err = core.encode{ TransactItems = { { Put = { TableName = "t", Item = "zz" } } } }
    assert.matches("TransactItems[1].Put.Item: expected a table", err, 1, true)
    _, err = core.encode{ RequestItems = { t = { { PutRequest = { Item = 1 } } } } }
    assert.matches("RequestItems.t[1].PutRequest.Item: expected a table", err, 1, true)
  end)

  it("a Tag's Key and Value stay plain strings", function()
    local json = assert(core.encode{ ResourceArn = "arn", Tags = { { Key = "k", Value = "v" } } })
    assert.matches('"Tags":[{', json, 1, true)
    assert.matches('"Key":"k"', json, 1, true)
  end)

  it("sends nothing and is not retried", function()
    local c = core_client(H.proxy)
    H.reset_proxy_stats()
    local res, err = core.call(c, "PutItem", { TableName = "t", Item = "zz" })
    assert.is_nil(res)
    assert.equals("ValidationException", err.code)
    assert.matches("Item: expected a table", err.message, 1, true)
    assert.equals(0, H.proxy_stats().requests)
    assert.equals(0, c:stats().requests)
    c:close()
  end)
end)

describe("a 200 answer of the wrong shape", function()
  local c
  setup(function() c = core_client(H.proxy) end)
  teardown(function() c:close() end)
  after_each(function() H.clear_faults() end)

  local cases = {
    { "GetItem", "5" }, { "GetItem", '"str"' }, { "GetItem", "null" }, { "GetItem", "[]" },
    { "GetItem", "true" }, { "GetItem", "[1,2]" },
    { "GetItem", '{"Item":true}' }, { "GetItem", '{"Item":"x"}' }, { "GetItem", '{"Item":null}' },
    { "GetItem", '{"Item":[1]}' },
    { "Query", '{"Items":5}' }, { "Query", '{"Items":[5]}' }, { "Query", '{"Items":"x"}' },
    { "Query", '{"Items":[],"LastEvaluatedKey":1}' },
    { "Query", '{"Items":[{"pk":"x"}]}' },
    { "BatchGetItem", '{"Responses":5}' }, { "BatchGetItem", '{"Responses":{"t":5}}' },
    { "BatchGetItem", '{"Responses":{"t":[5]}}' },
    { "BatchGetItem", '{"UnprocessedKeys":"x"}' },
    { "BatchWriteItem", '{"UnprocessedItems":[1]}' },
    { "UpdateItem", '{"Attributes":"x"}' }, { "UpdateItem", '{"Attributes":{"a":5}}' },
    { "TransactGetItems", '{"Responses":[{"Item":7}]}' },
  }

  for _, case in ipairs(cases) do
    local op, body = case[1], case[2]
    it(op .. " answered " .. body .. " is MalformedResponse", function()
      H.faults{ { kind = "status", status = 200, body = body, count = 1 } }
      -- the fault proxy sends a JSON-valued body as its JSON text
      local ok, res, err = pcall(core.call, c, op, { TableName = "t" })
      assert.is_true(ok, "raised: " .. tostring(res))
      assert.is_nil(res)
      assert.equals("MalformedResponse", err.code)
    end)
  end

  it("is MalformedResponse from client:parse (hosts doing their own I/O) too", function()
    for _, body in ipairs{ "5", "null", "[]", '{"Item":true}', '{"Responses":5}' } do
      local ok, res, err = pcall(c.parse, c, 200, body)
      assert.is_true(ok, "raised: " .. tostring(res))
      assert.is_nil(res)
      assert.equals("MalformedResponse", err.code)
    end
  end)

  it("is MalformedResponse from an event loop's completion too", function()
    local loop = assert(core.loop_new())
    H.faults{ { kind = "status", status = 200, body = '{"Items":5}', count = 1 } }
    assert(loop:submit(c, "Query", { TableName = "t" }, "tok"))
    local done
    for _ = 1, 200 do
      local pending, list = assert(loop:step(50))
      if list[1] then done = list[1] break end
      assert.equals(1, pending)
    end
    assert.equals("tok", done.token)
    assert.is_nil(done.result)
    assert.equals("MalformedResponse", done.err.code)
  end)

  it("a well-shaped answer still decodes (a Tag's Key is a string)", function()
    H.faults{ { kind = "status", status = 200,
                body = '{"Tags":[{"Key":"k","Value":"v"}],"Items":[],"Count":0}', count = 1 } }
    local res = assert(core.call(c, "ListTagsOfResource", { ResourceArn = "arn" }))
    assert.same({ { Key = "k", Value = "v" } }, res.Tags)
  end)
end)

describe("the module's exported symbols", function()
  it("are luaopen_* only", function()
    local path = assert(package.searchpath("ddbkit.core", package.cpath))
    local p = assert(io.popen("env -u LD_PRELOAD nm -D --defined-only '" .. path .. "' 2>&1"))
    local out = p:read("*a")
    p:close()
    local names = {}
    for name in out:gmatch("%S+ %a (%S+)") do names[#names + 1] = name end
    assert.is_true(#names > 0, "nm listed nothing: " .. out)
    for _, name in ipairs(names) do
      assert.matches("^luaopen_", name)
    end
  end)
end)
