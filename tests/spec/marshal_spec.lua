-- Lua values <-> DynamoDB JSON (bindings/core/values.c, encode.c, decode.c),
-- through ddbkit.core's encode/decode, with no server. Runs unchanged on
-- Lua 5.4 and LuaJIT 2.1.
--
--   lua5.4 /usr/bin/busted tests/spec/marshal_spec.lua
--   luajit /usr/bin/busted tests/spec/marshal_spec.lua

local core = require("ddbkit.core")
local cjson = require("cjson.safe") -- reads the wire JSON back independently

local is54 = math.type ~= nil -- Lua 5.3+ has integers; LuaJIT does not
local len_mm = #setmetatable({}, { __len = function() return 7 end }) == 7

-- helpers --------------------------------------------------------------------

-- Structural equality that also compares metatables (array/set markers) and
-- uses the value types' own __eq (binary bytes, decimal value).
local function same(a, b, seen)
  if rawequal(a, b) then return true end
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if a ~= a then return b ~= b end -- NaN
    if is54 and math.type(a) ~= math.type(b) then return false end
    return a == b
  end
  if type(a) ~= "table" then return false end
  if core.is_binary(a) or core.is_decimal(a) then
    return core.is_binary(a) == core.is_binary(b) and a == b
  end
  if getmetatable(a) ~= getmetatable(b) then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not same(v, rawget(b, k), seen) then return false end
  end
  for k in pairs(b) do
    if rawget(a, k) == nil then return false end
  end
  return true
end

local function copy(t, seen)
  if type(t) ~= "table" or t == core.null then return t end
  seen = seen or {}
  if seen[t] then return seen[t] end
  local c = {}
  seen[t] = c
  for k, v in pairs(t) do c[copy(k, seen)] = copy(v, seen) end
  return setmetatable(c, getmetatable(t))
end

-- encode, then read the JSON back with cjson: the wire shape as tables
local function wire(req)
  local json, err = core.encode(req)
  assert(json, err)
  local t, jerr = cjson.decode(json)
  assert(t, "encoder wrote invalid JSON: " .. tostring(jerr) .. ": " .. json)
  return t, json
end

-- the AttributeValue the encoder writes for v
local function av(v)
  return wire({ Item = { v = v } }).Item.v
end

-- decode(encode(Item = {v = v})).Item.v
local function roundtrip(v)
  local json = assert(core.encode({ Item = { v = v } }))
  local out, err = core.decode(json)
  assert(out, err)
  return out.Item.v, json
end

-- encode must fail with a message matching pat (plain text) and leave the
-- request exactly as it was
local function encode_fails(req, msg)
  local before = copy(req)
  local json, err = core.encode(req)
  assert.is_nil(json)
  assert.is_string(err)
  assert.equals(msg, err)
  assert.is_true(same(before, req), "encode changed its input")
  -- and the buffer is cut back to where it was
  if core.encode_append then -- a test build's hook: encode after "PREFIX"
    local rc, buf, terminated = core.encode_append(req)
    assert.equals(-1, rc)
    assert.equals("PREFIX", buf)
    assert.is_true(terminated)
  end
end

local function nest(n) -- n nested tables: {x = {x = ... {}}}
  local t = {}
  local cur = t
  for _ = 2, n do
    cur.x = {}
    cur = cur.x
  end
  return t
end

local function path_of(n) -- "Item.a.x.x..." down to the n-th table
  return "Item.a" .. string.rep(".x", n - 1)
end

local function all_bytes()
  local b = {}
  for i = 0, 255 do b[#b + 1] = string.char(i) end
  return table.concat(b)
end

-- values -------------------------------------------------------------------

describe("ddbkit.core values", function()
  describe("null", function()
    it("is one sentinel that prints as ddbkit.null", function()
      assert.is_table(core.null)
      assert.equals("ddbkit.null", tostring(core.null))
      assert.is_true(rawequal(core.null, core.null))
      assert.is_false(core.is_set(core.null) or core.is_binary(core.null)
        or core.is_decimal(core.null) or core.is_array(core.null))
    end)
    it("is read-only and cannot be re-metatabled", function()
      assert.has_error(function() core.null.x = 1 end)
      assert.has_error(function() setmetatable(core.null, nil) end)
      assert.is_nil(next(core.null))
    end)
    it("is the same object the decoder returns", function()
      local v = assert(core.decode('{"Item":{"a":{"NULL":true}},"Plain":null}'))
      assert.is_true(rawequal(core.null, v.Item.a))
      assert.is_true(rawequal(core.null, v.Plain))
    end)
  end)

  describe("array", function()
    it("marks the given table and returns it", function()
      local t = { 1, 2 }
      assert.is_true(rawequal(t, core.array(t)))
      assert.is_true(core.is_array(t))
      assert.is_true(rawequal(t, core.array(t)), "marking twice is fine")
    end)
    it("makes a new empty table from nothing", function()
      local t = core.array()
      assert.is_true(core.is_array(t))
      assert.is_nil(next(t))
    end)
    it("refuses a table with another metatable", function()
      local obj = setmetatable({}, {})
      assert.has_error(function() core.array(obj) end)
      assert.has_error(function() core.array(core.set("a")) end)
      assert.has_error(function() core.array("x") end)
    end)
    it("is_array is false for plain tables and non-tables", function()
      assert.is_false(core.is_array({}))
      assert.is_false(core.is_array("x"))
      assert.is_false(core.is_array(nil))
    end)
  end)

  describe("binary", function()
    it("holds bytes and shows their count", function()
      local b = core.binary("\0\1\2")
      assert.is_true(core.is_binary(b))
      assert.equals("\0\1\2", b.value)
      assert.equals("ddbkit.binary(3 bytes)", tostring(b))
      if len_mm then assert.equals(3, #b) end
    end)
    it("compares by bytes", function()
      assert.is_true(core.binary("ab") == core.binary("ab"))
      assert.is_false(core.binary("ab") == core.binary("ac"))
      assert.is_false(core.binary("ab") == "ab")
    end)
    it("takes only strings (a binary passes through)", function()
      local b = core.binary("x")
      assert.is_true(rawequal(b, core.binary(b)))
      assert.has_error(function() core.binary(5) end)
      assert.has_error(function() core.binary({}) end)
      assert.has_error(function() core.binary() end)
    end)
  end)

  describe("decimal", function()
    it("keeps its text", function()
      local d = core.decimal("12345678901234567890123456789012345678")
      assert.is_true(core.is_decimal(d))
      assert.equals("12345678901234567890123456789012345678", d.text)
      assert.equals("12345678901234567890123456789012345678", tostring(d))
    end)
    it("compares by value, not text", function()
      assert.is_true(core.decimal("1.50") == core.decimal("15e-1"))
      assert.is_true(core.decimal("-0") == core.decimal("0.000"))
      assert.is_true(core.decimal("100") == core.decimal("1E2"))
      assert.is_false(core.decimal("1.5") == core.decimal("1.51"))
      assert.is_false(core.decimal("-1") == core.decimal("1"))
    end)
    it("takes numbers", function()
      assert.equals("5", core.decimal(5).text)
      assert.equals("0.1", core.decimal(0.1).text)
      assert.has_error(function() core.decimal(0 / 0) end)
    end)
    it("rejects text that is not a number", function()
      for _, bad in ipairs({ "abc", "", "1.2.3", "1e", "--1", "0x10", " 1", "1 ", "nan", "inf" }) do
        assert.has_error(function() core.decimal(bad) end, nil, bad)
      end
      assert.has_error(function() core.decimal({}) end)
    end)
  end)

  describe("set", function()
    it("builds string, number and binary sets from arguments or a table", function()
      local ss = core.set("a", "b")
      assert.is_true(core.is_set(ss))
      assert.same({ "a", "b" }, { ss[1], ss[2] })
      local ns = core.set({ 1, 2.5, core.decimal("3") })
      assert.is_true(core.is_set(ns))
      assert.equals(3, #ns)
      local bs = core.set(core.binary("x"), core.binary("y"))
      assert.is_true(core.is_set(bs))
      assert.is_true(core.is_binary(bs[1]))
      assert.is_true(core.is_set(core.set(core.binary("only"))), "one binary is an element")
    end)
    it("refuses an empty set", function()
      assert.has_error(function() core.set() end)
      assert.has_error(function() core.set({}) end)
    end)
    it("refuses mixed kinds", function()
      local ok, err = pcall(core.set, "a", 1)
      assert.is_false(ok)
      assert.matches("mix strings and numbers", err, 1, true)
      assert.has_error(function() core.set({ core.binary("a"), "a" }) end)
      assert.has_error(function() core.set(1, core.binary("a")) end)
    end)
    it("refuses elements that are not strings, numbers or binaries", function()
      assert.has_error(function() core.set(true) end)
      assert.has_error(function() core.set({ {} }) end)
      assert.has_error(function() core.set("a", core.null) end)
      assert.has_error(function() core.set(0 / 0) end)
      assert.has_error(function() core.set(1 / 0) end)
    end)
    it("refuses duplicates, by value for numbers", function()
      local ok, err = pcall(core.set, "a", "b", "a")
      assert.is_false(ok)
      assert.matches("duplicate", err, 1, true)
      assert.has_error(function() core.set(1, 1.0) end)
      assert.has_error(function() core.set(1, core.decimal("1.0")) end)
      assert.has_error(function() core.set(core.decimal("1e2"), 100) end)
      assert.has_error(function() core.set(core.binary("x"), core.binary("x")) end)
      assert.is_true(core.is_set(core.set("1", "1.0")), "strings compare as strings")
    end)
  end)
end)

-- encoding -----------------------------------------------------------------

describe("ddbkit.core encode", function()
  it("writes every value type", function()
    assert.same({ S = "x" }, av("x"))
    assert.same({ N = "5" }, av(5))
    assert.same({ N = "-2.5" }, av(-2.5))
    assert.same({ BOOL = true }, av(true))
    assert.same({ BOOL = false }, av(false))
    assert.same({ NULL = true }, av(core.null))
    assert.same({ B = "AAH/" }, av(core.binary("\0\1\255")))
    assert.same({ SS = { "a", "b" } }, av(core.set("a", "b")))
    assert.same({ NS = { "1", "2.5", "1e+100" } }, av(core.set(1, 2.5, 1e100)))
    assert.same({ NS = { "7", "12345678901234567890123456789012345678" } },
      av(core.set(7, core.decimal("12345678901234567890123456789012345678"))))
    assert.same({ BS = { "YQ==", "YmM=" } }, av(core.set(core.binary("a"), core.binary("bc"))))
    assert.same({ N = "1.25" }, av(core.decimal("1.25")))
    assert.same({ L = { { N = "1" }, { S = "a" }, { L = { { BOOL = true } } } } },
      av({ 1, "a", { true } }))
    assert.same({ M = { a = { S = "b" }, c = { M = { d = { N = "1" } } } } },
      av({ a = "b", c = { d = 1 } }))
  end)

  it("writes an empty table as M and an array() as L", function()
    local _, json = wire({ Item = { e = {} } })
    assert.matches('"e":{"M":{}}', json, 1, true)
    _, json = wire({ Item = { e = core.array() } })
    assert.matches('"e":{"L":[]}', json, 1, true)
    _, json = wire({ Item = { e = core.array({ 1 }) } })
    assert.matches('"e":{"L":[{"N":"1"}]}', json, 1, true)
    -- plain fields follow the same rule
    _, json = wire({ AttributesToGet = core.array(), Plain = {} })
    assert.matches('"AttributesToGet":[]', json, 1, true)
    assert.matches('"Plain":{}', json, 1, true)
  end)

  it("writes numbers exactly and shortest", function()
    assert.equals("0.1", av(0.1).N)
    assert.equals("0.3333333333333333", av(1 / 3).N)
    assert.equals("-1e-300", av(-1e-300).N)
    assert.equals("1e+300", av(1e300).N)
    assert.equals("9007199254740992", av(2 ^ 53).N)
    assert.equals("123456", av(123456.0).N, "integral floats as integers")
    assert.equals("0", av(-0.0).N)
    assert.equals(2 ^ 60, tonumber(av(2 ^ 60).N))
    for _, x in ipairs({ 0.1, 1 / 3, math.pi, -123.456, 5e-324, 1.7976931348623157e308, 2 ^ 70 + 2 ^ 18 }) do
      assert.equals(x, tonumber(av(x).N), tostring(x))
    end
  end)

  if is54 then
    it("writes 64-bit integers exactly (Lua 5.4)", function()
      local _, json = wire({ Item = { max = math.maxinteger, min = math.mininteger, big = 9007199254740993 } })
      assert.matches('"max":{"N":"9223372036854775807"}', json, 1, true)
      assert.matches('"min":{"N":"-9223372036854775808"}', json, 1, true)
      assert.matches('"big":{"N":"9007199254740993"}', json, 1, true)
    end)
  end

  it("escapes strings and keeps UTF-8", function()
    local s = "q\"b\\s/\b\f\n\r\t\0\1\31\127 é 漢 😀"
    assert.equals(s, av(s).S)
    local long = string.rep("abcdefgh", 1000) .. "\n" .. string.rep("é", 100)
    assert.equals(long, av(long).S)
    local _, json = wire({ Item = { s = "\0\31" } })
    assert.matches('"\\u0000\\u001f"', json, 1, true)
  end)

  it("encodes all 256 byte values in a binary", function()
    local bytes = all_bytes()
    local b = av(core.binary(bytes)).B
    assert.equals(344, #b)
    assert.equals("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZH",
      b:sub(1, 96))
    assert.equals(bytes, roundtrip(core.binary(bytes)).value)
    assert.equals("", roundtrip(core.binary("")).value)
    for n = 1, 5 do -- every padding length
      assert.equals(bytes:sub(1, n), roundtrip(core.binary(bytes:sub(1, n))).value)
    end
  end)

  describe("request shapes", function()
    it("marshals Key, Item and ExpressionAttributeValues, and nothing else", function()
      local w = wire({
        TableName = "t", Limit = 10, ConsistentRead = true,
        Key = { pk = "a", sk = 1 },
        Item = { pk = "a" },
        ExpressionAttributeValues = { [":v"] = 5 },
        ExpressionAttributeNames = { ["#n"] = "name" },
        ExclusiveStartKey = { pk = "z" },
      })
      assert.equals("t", w.TableName)
      assert.equals(10, w.Limit)
      assert.equals(true, w.ConsistentRead)
      assert.same({ pk = { S = "a" }, sk = { N = "1" } }, w.Key)
      assert.same({ pk = { S = "a" } }, w.Item)
      assert.same({ [":v"] = { N = "5" } }, w.ExpressionAttributeValues)
      assert.same({ ["#n"] = "name" }, w.ExpressionAttributeNames)
      assert.same({ pk = { S = "z" } }, w.ExclusiveStartKey)
    end)

    it("marshals TransactItems[i].Put.Item and Update/Delete/ConditionCheck keys", function()
      local w = wire({
        TransactItems = {
          { Put = { TableName = "t", Item = { pk = "a", n = 1 } } },
          { Update = { TableName = "t", Key = { pk = "b" }, UpdateExpression = "SET x = :x",
                       ExpressionAttributeValues = { [":x"] = core.set("q") } } },
          { Delete = { TableName = "t", Key = { pk = "c" } } },
          { ConditionCheck = { TableName = "t", Key = { pk = "d" }, ConditionExpression = "attribute_exists(pk)" } },
        },
      })
      assert.same({ pk = { S = "a" }, n = { N = "1" } }, w.TransactItems[1].Put.Item)
      assert.same({ pk = { S = "b" } }, w.TransactItems[2].Update.Key)
      assert.same({ [":x"] = { SS = { "q" } } }, w.TransactItems[2].Update.ExpressionAttributeValues)
      assert.same({ pk = { S = "c" } }, w.TransactItems[3].Delete.Key)
      assert.equals("attribute_exists(pk)", w.TransactItems[4].ConditionCheck.ConditionExpression)
    end)

    it("reads RequestItems keys as table names, even a table called Item", function()
      local w = wire({
        RequestItems = {
          Item = { { PutRequest = { Item = { pk = "a" } } }, { DeleteRequest = { Key = { pk = "b" } } } },
          Keys = { Keys = { { pk = "c" } }, ProjectionExpression = "pk" },
        },
      })
      assert.same({ pk = { S = "a" } }, w.RequestItems.Item[1].PutRequest.Item)
      assert.same({ pk = { S = "b" } }, w.RequestItems.Item[2].DeleteRequest.Key)
      assert.same({ { pk = { S = "c" } } }, w.RequestItems.Keys.Keys)
      assert.equals("pk", w.RequestItems.Keys.ProjectionExpression)
    end)

    it("leaves a Tag's Key and Value plain", function()
      local w = wire({ ResourceArn = "arn", Tags = { { Key = "k", Value = "v" } } })
      assert.same({ { Key = "k", Value = "v" } }, w.Tags)
    end)

    it("marshals AttributeValueList, Parameters and legacy Expected.Value", function()
      local w = wire({
        Statement = "SELECT * FROM t WHERE pk = ?", Parameters = { "a", 1 },
        Expected = { Item = { Value = "x", ComparisonOperator = "EQ" } },
        KeyConditions = { pk = { AttributeValueList = { "a" }, ComparisonOperator = "EQ" } },
      })
      assert.same({ { S = "a" }, { N = "1" } }, w.Parameters)
      assert.same({ Value = { S = "x" }, ComparisonOperator = "EQ" }, w.Expected.Item)
      assert.same({ { S = "a" } }, w.KeyConditions.pk.AttributeValueList)
    end)

    it("writes an empty list of keys as []", function()
      local _, json = wire({ Keys = {}, AttributeValueList = {} })
      assert.matches('"Keys":[]', json, 1, true)
      assert.matches('"AttributeValueList":[]', json, 1, true)
    end)
  end)

  describe("errors name the path and change nothing", function()
    it("non-UTF-8 strings", function()
      encode_fails({ Item = { a = { b = { "x", "y", "\255" } } } }, "Item.a.b[3]: string is not valid UTF-8")
      encode_fails({ Item = { s = "\237\160\128" } }, "Item.s: string is not valid UTF-8") -- a surrogate
      encode_fails({ Item = { s = "\192\128" } }, "Item.s: string is not valid UTF-8")     -- overlong NUL
      encode_fails({ Item = { ["\255"] = 1 } }, "Item: attribute name is not valid UTF-8")
      encode_fails({ TableName = "\255" }, "TableName: string is not valid UTF-8")
      encode_fails({ Item = { s = core.set("ok", "\255") } }, "Item.s[2]: string is not valid UTF-8")
    end)
    it("NaN and infinities", function()
      encode_fails({ Item = { x = 0 / 0 } }, "Item.x: number is NaN")
      encode_fails({ Item = { x = 1 / 0 } }, "Item.x: number is inf")
      encode_fails({ Item = { x = { -1 / 0 } } }, "Item.x[1]: number is -inf")
      encode_fails({ Limit = 0 / 0 }, "Limit: number is NaN")
    end)
    it("cycles", function()
      local t = {}
      t.self = t
      encode_fails({ Item = { a = t } }, "Item.a.self: cycle (table contains itself)")
      local r = { TableName = "x" }
      r.Again = r
      encode_fails(r, "Again: cycle (table contains itself)")
    end)
    it("a table used twice is not a cycle", function()
      local shared = { x = 1 }
      local w = wire({ Item = { a = shared, b = { shared, shared } } })
      assert.same({ M = { x = { N = "1" } } }, w.Item.a)
      assert.same(w.Item.a, w.Item.b.L[2])
    end)
    it("plain nesting deeper than 64 tables", function()
      local deep = nest(64)
      encode_fails({ Deep = deep }, "Deep" .. string.rep(".x", 63) .. ": nesting deeper than 64 levels")
    end)
    it("tables mixing string keys and list indices", function()
      encode_fails({ Item = { t = { 1, 2, x = 3 } } }, "Item.t: table mixes string keys and list indices")
      encode_fails({ Item = { t = { x = 3, [1] = 2 } } }, "Item.t: table mixes string keys and list indices")
      encode_fails({ Item = { t = core.array({ x = 1 }) } }, "Item.t: table mixes string keys and list indices")
    end)
    it("sparse lists and keys that are not indices", function()
      encode_fails({ Item = { t = { [1] = 1, [2] = 2, [4] = 4 } } }, "Item.t: sparse list (index 3 missing)")
      encode_fails({ Item = { t = { [2] = "a" } } }, "Item.t: sparse list (index 1 missing)")
      encode_fails({ Item = { t = { [1.5] = "a" } } }, "Item.t: table key 1.5 is not a list index")
      encode_fails({ Item = { t = { [0] = "a" } } }, "Item.t: table key 0 is not a list index")
      encode_fails({ Item = { t = { [true] = "a" } } }, "Item.t: table has a boolean key")
    end)
    it("nesting: 32 levels, counting the item, is the limit", function()
      -- DynamoDB counts the item as level 1, so an attribute may hold 31
      -- nested maps/lists (checked against DynamoDB Local)
      assert.is_string(core.encode({ Item = { a = nest(31) } }))
      encode_fails({ Item = { a = nest(32) } }, path_of(32) .. ": nesting deeper than 32 levels")
      local l = core.array()
      local cur = l
      for _ = 2, 31 do
        local n = core.array()
        cur[1] = n
        cur = n
      end
      assert.is_string(core.encode({ ExpressionAttributeValues = { [":v"] = l } }))
      cur[1] = {}
      local _, err = core.encode({ ExpressionAttributeValues = { [":v"] = l } })
      assert.matches('^ExpressionAttributeValues%[":v"%]%[1%].*: nesting deeper than 32 levels$', err)
    end)
    it("functions, userdata, threads", function()
      encode_fails({ Item = { f = print } }, "Item.f: cannot encode a function")
      encode_fails({ Item = { co = coroutine.create(print) } }, "Item.co: cannot encode a thread")
      encode_fails({ Item = { u = io.stdout } }, "Item.u: cannot encode a userdata")
      encode_fails({ Callback = print }, "Callback: cannot encode a function")
    end)
    it("value types out of place and broken ones", function()
      encode_fails({ Item = { s = setmetatable({}, getmetatable(core.set("a"))) } },
        "Item.s: empty set (DynamoDB has no empty sets)")
      local s = core.set("a", "b")
      s[2] = 5
      encode_fails({ Item = { s = s } }, "Item.s[2]: set mixes strings and numbers")
      local d = core.decimal("1")
      d.text = "one"
      encode_fails({ Item = { d = d } }, "Item.d: ddbkit.decimal text is not a number")
      encode_fails({ Blob = core.binary("x") }, "Blob: a ddbkit.binary is only allowed inside an attribute value")
      encode_fails({ Item = core.array() }, "Item: expected a table of attributes, got a ddbkit.array")
      encode_fails({ Item = { 1, 2 } }, "Item: expected a table of attributes (name = value), got a list")
      encode_fails({ Keys = { "x" } }, "Keys[1]: expected a table of attributes, got string")
    end)
    it("names odd keys in Lua syntax", function()
      encode_fails({ Item = { ["a b"] = { ['q"'] = 0 / 0 } } }, 'Item["a b"]["q\\""]: number is NaN')
      encode_fails({ ExpressionAttributeValues = { [":v"] = 0 / 0 } }, 'ExpressionAttributeValues[":v"]: number is NaN')
    end)
    it("requests that are not tables", function()
      -- core.encode raises for this misuse; the C function under it returns
      -- the error, which a test build's encode passes on
      local ok, json, err = pcall(core.encode, "x")
      if ok then
        assert.is_nil(json)
        assert.equals("request: expected a table, got string", err)
      else
        assert.matches("table expected", json, 1, true)
      end
    end)
    it("a request over the buffer limit", function()
      if not core.encode_append then return end -- needs the test build's encode(t, max)
      local json, err = core.encode({ Item = { s = string.rep("x", 100) } }, 50)
      assert.is_nil(json)
      assert.matches("larger than the 50%-byte limit", err)
    end)
  end)
end)

-- decoding -----------------------------------------------------------------

describe("ddbkit.core decode", function()
  it("reads a GetItem body with every type", function()
    local v = assert(core.decode([[{"Item":{
      "s":{"S":"x\u00e9\n"}, "n":{"N":"42"}, "f":{"N":"-0.5"}, "t":{"BOOL":true},
      "z":{"NULL":true}, "b":{"B":"AAH/"}, "ss":{"SS":["a","b"]},
      "ns":{"NS":["1","2.5"]}, "bs":{"BS":["YQ==","YmM="]},
      "m":{"M":{"k":{"S":"v"}}}, "l":{"L":[{"N":"1"},{"S":"two"}]},
      "el":{"L":[]}, "em":{"M":{}}
    }}]]))
    local it_ = v.Item
    assert.equals("x\195\169\n", it_.s)
    assert.equals(42, it_.n)
    if is54 then assert.equals("integer", math.type(it_.n)) end
    assert.equals(-0.5, it_.f)
    assert.equals(true, it_.t)
    assert.is_true(rawequal(core.null, it_.z))
    assert.is_true(core.is_binary(it_.b))
    assert.equals("\0\1\255", it_.b.value)
    assert.is_true(core.is_set(it_.ss))
    assert.same({ "a", "b" }, { it_.ss[1], it_.ss[2] })
    assert.is_true(core.is_set(it_.ns))
    assert.equals(2.5, it_.ns[2])
    assert.is_true(core.is_set(it_.bs))
    assert.equals("bc", it_.bs[2].value)
    assert.is_nil(getmetatable(it_.m))
    assert.equals("v", it_.m.k)
    assert.is_true(core.is_array(it_.l))
    assert.equals("two", it_.l[2])
    assert.is_true(core.is_array(it_.el))
    assert.is_nil(next(it_.el))
    assert.is_false(core.is_array(it_.em))
  end)

  it("round-trips every value type", function()
    local vals = {
      "", "x", 0, 1, -1, 0.5, -1e-300, 1e300, true, false, core.null,
      core.binary(all_bytes()), core.set("a", "b"), core.set(1, 2.5),
      core.set(core.binary("\0"), core.binary("\255")),
      core.decimal("12345678901234567890123456789012345678"),
      core.decimal("-0.12345678901234567890123456789012345678"),
      { a = { b = { c = "d" } } }, core.array({ 1, { x = core.array() } }), core.array(),
    }
    for i, x in ipairs(vals) do
      local back, json = roundtrip(x)
      if type(x) == "table" and getmetatable(x) == nil and next(x) == nil then
        assert.is_nil(next(back))
      else
        assert.is_true(same(x, back), "value " .. i .. ": " .. json)
      end
      -- and it encodes back to the same JSON
      assert.equals(json, core.encode({ Item = { v = back } }))
    end
  end)

  it("gives the empty list back as an empty list", function()
    local v = roundtrip(core.array())
    assert.is_true(core.is_array(v))
    assert.matches('{"L":[]}', core.encode({ Item = { v = v } }), 1, true)
  end)

  describe("numbers", function()
    local function n(text)
      return assert(core.decode('{"Item":{"v":{"N":"' .. text .. '"}}}')).Item.v
    end

    it("keeps 38-digit decimals exactly", function()
      for _, text in ipairs({
        "12345678901234567890123456789012345678",
        "-1234567890123456789.0123456789012345678",
        "0.12345678901234567890123456789012345678",
        "99999999999999999999999999999999999999",
      }) do
        local d = n(text)
        assert.is_true(core.is_decimal(d), text)
        assert.equals(text, d.text)
        local _, json = wire({ Item = { v = d } })
        assert.matches('{"N":"' .. text .. '"}', json, 1, true)
      end
    end)

    it("gives numbers when a double holds the value", function()
      assert.equals(0.1, n("0.1"))
      assert.equals(-2.5, n("-2.5"))
      assert.equals(1e100, n("1" .. string.rep("0", 100)))
      assert.equals(1e-130, n("0." .. string.rep("0", 129) .. "1"))
      assert.equals(2 ^ 53, n("9007199254740992"))
      assert.equals(123.456, n("123.456"))
    end)

    it("gives decimals when it does not", function()
      assert.is_true(core.is_decimal(n("1e400")))
      assert.is_true(core.is_decimal(n("0.12345678901234567")))
      assert.is_true(core.is_decimal(n("18446744073709551616")))
    end)

    it("2^53 + 1", function()
      local v = n("9007199254740993")
      if is54 then
        assert.equals("integer", math.type(v))
        assert.equals(9007199254740993, v)
      else
        assert.is_true(core.is_decimal(v))
        assert.equals("9007199254740993", v.text)
      end
      assert.matches('{"N":"9007199254740993"}', core.encode({ Item = { v = v } }), 1, true)
    end)

    if is54 then
      it("int64 extremes are integers; one past them is not (Lua 5.4)", function()
        assert.equals(math.maxinteger, n("9223372036854775807"))
        assert.equals(math.mininteger, n("-9223372036854775808"))
        assert.equals("integer", math.type(n("-9223372036854775808")))
        assert.is_true(core.is_decimal(n("9223372036854775808")))
        assert.is_true(core.is_decimal(n("-9223372036854775809")))
      end)
    end

    it("reads plain JSON numbers as numbers", function()
      local v = assert(core.decode('{"Count":3,"ScannedCount":-7,"CapacityUnits":0.5,"Big":1e300}'))
      assert.equals(3, v.Count)
      if is54 then assert.equals("integer", math.type(v.Count)) end
      assert.equals(-7, v.ScannedCount)
      assert.equals(0.5, v.CapacityUnits)
      assert.equals(1e300, v.Big)
    end)
  end)

  describe("response shapes", function()
    it("Query: Items, Count, LastEvaluatedKey", function()
      local v = assert(core.decode([[{"Count":2,"ScannedCount":2,
        "Items":[{"pk":{"S":"a"},"n":{"N":"1"}},{"pk":{"S":"b"}}],
        "LastEvaluatedKey":{"pk":{"S":"b"}},
        "ConsumedCapacity":{"TableName":"t","CapacityUnits":0.5}}]]))
      assert.equals(2, v.Count)
      assert.equals(2, #v.Items)
      assert.is_false(core.is_array(v.Items), "plain arrays are plain sequences")
      assert.same({ pk = "a", n = 1 }, v.Items[1])
      assert.same({ pk = "b" }, v.LastEvaluatedKey)
      assert.same({ TableName = "t", CapacityUnits = 0.5 }, v.ConsumedCapacity)
    end)

    it("BatchGetItem: Responses and UnprocessedKeys by table name", function()
      local v = assert(core.decode([[{
        "Responses":{"Item":[{"pk":{"S":"a"}}],"t2":[{"pk":{"N":"1"}},{"pk":{"N":"2"}}]},
        "UnprocessedKeys":{"Item":{"Keys":[{"pk":{"S":"c"}}],"ProjectionExpression":"pk"}}}]]))
      assert.same({ { pk = "a" } }, v.Responses.Item)
      assert.same({ { pk = 1 }, { pk = 2 } }, v.Responses.t2)
      assert.same({ { pk = "c" } }, v.UnprocessedKeys.Item.Keys)
      assert.equals("pk", v.UnprocessedKeys.Item.ProjectionExpression)
    end)

    it("TransactGetItems: array-shaped Responses", function()
      local v = assert(core.decode('{"Responses":[{"Item":{"pk":{"S":"a"}}},{}]}'))
      assert.same({ pk = "a" }, v.Responses[1].Item)
      assert.is_nil(next(v.Responses[2]))
    end)

    it("BatchWriteItem: UnprocessedItems, which re-encode as RequestItems", function()
      local v = assert(core.decode([[{"UnprocessedItems":{"Item":[
        {"PutRequest":{"Item":{"pk":{"S":"a"},"s":{"SS":["x"]}}}},
        {"DeleteRequest":{"Key":{"pk":{"S":"b"}}}}]}}]]))
      local put = v.UnprocessedItems.Item[1].PutRequest.Item
      assert.equals("a", put.pk)
      assert.is_true(core.is_set(put.s))
      assert.same({ pk = "b" }, v.UnprocessedItems.Item[2].DeleteRequest.Key)
      local w = wire({ RequestItems = v.UnprocessedItems })
      assert.same({ pk = { S = "a" }, s = { SS = { "x" } } }, w.RequestItems.Item[1].PutRequest.Item)
    end)

    it("TransactWriteItems cancellation: CancellationReasons[i].Item", function()
      local v = assert(core.decode([[{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message":"Transaction cancelled",
        "CancellationReasons":[{"Code":"None"},
          {"Code":"ConditionalCheckFailed","Message":"The conditional request failed","Item":{"pk":{"S":"a"},"v":{"N":"3"}}}]}]]))
      assert.equals("None", v.CancellationReasons[1].Code)
      assert.same({ pk = "a", v = 3 }, v.CancellationReasons[2].Item)
    end)

    it("a failed condition's Item in the error body", function()
      local v = assert(core.decode([[{"__type":"x#ConditionalCheckFailedException","message":"no","Item":{"pk":{"S":"a"}}}]]))
      assert.same({ pk = "a" }, v.Item)
    end)

    it("UpdateItem Attributes and ItemCollectionMetrics", function()
      local v = assert(core.decode([[{"Attributes":{"n":{"N":"2"}},
        "ItemCollectionMetrics":{"ItemCollectionKey":{"pk":{"S":"a"}},"SizeEstimateRangeGB":[0,1]}}]]))
      assert.same({ n = 2 }, v.Attributes)
      assert.same({ pk = "a" }, v.ItemCollectionMetrics.ItemCollectionKey)
      assert.same({ 0, 1 }, v.ItemCollectionMetrics.SizeEstimateRangeGB)
    end)

    it("a Tag's Key stays a string", function()
      local v = assert(core.decode('{"Tags":[{"Key":"k","Value":"v"}]}'))
      assert.same({ { Key = "k", Value = "v" } }, v.Tags)
    end)
  end)

  describe("errors", function()
    local function bad(json, pat)
      local v, err = core.decode(json)
      assert.is_nil(v)
      assert.is_string(err)
      assert.matches(pat, err, 1, true)
    end

    it("malformed JSON", function()
      bad('{"Item":', "malformed JSON")
      bad('{"a":1}x', "malformed JSON")
      bad("", "malformed JSON")
      bad('{"a":tru}', "malformed JSON")
      bad('{"a":"\255"}', "malformed JSON")
      bad("[1,]", "malformed JSON")
    end)

    it("malformed AttributeValues name the path", function()
      bad('{"Item":{"a":{"Q":"x"}}}', 'Item.a: unknown AttributeValue type "Q"')
      bad('{"Item":{"a":{"S":"x","N":"1"}}}', "Item.a: AttributeValue has more than one type")
      bad('{"Item":{"a":{}}}', "Item.a: empty AttributeValue")
      bad('{"Item":{"a":"x"}}', "Item.a: expected an AttributeValue object, got a string")
      bad('{"Item":{"a":{"S":1}}}', "Item.a: expected S to be a string, got a number")
      bad('{"Item":{"a":{"N":"12x"}}}', 'Item.a: N is not a number: "12x"')
      bad('{"Item":{"a":{"B":"Q==="}}}', "Item.a: B is not valid base64")
      bad('{"Item":{"a":{"B":"QQ=A"}}}', "Item.a: B is not valid base64")
      bad('{"Item":{"a":{"NULL":false}}}', "Item.a: expected NULL to be true, got false")
      bad('{"Item":{"a":{"L":{}}}}', "Item.a: expected L to be an array, got an object")
      bad('{"Item":{"a":{"M":{"b":{"L":[{"S":"x"},{"BOOL":"y"}]}}}}}', "Item.a.b[2]: expected BOOL to be a boolean, got a string")
      bad('{"Items":[{"a":{"S":"x"}},5]}', "Items[2]: expected a map of attributes, got a number")
      bad('{"Item":{"a":{"SS":[1]}}}', "Item.a[1]: expected an SS element to be a string, got a number")
    end)

    it("fields that hold items must have their shape", function()
      bad('{"Item":true}', "Item: expected a map of attributes, got a boolean")
      bad('{"Item":null}', "Item: expected a map of attributes, got null")
      bad('{"Items":"x"}', "Items: expected a list of maps of attributes, got a string")
      bad('{"LastEvaluatedKey":1}', "LastEvaluatedKey: expected a map of attributes, got a number")
      bad('{"Responses":5}', "Responses: expected an object keyed by table name, or a list, got a number")
      bad('{"UnprocessedItems":[1]}', "UnprocessedItems: expected an object keyed by table name, got an array")
      bad('{"Responses":[{"Item":7}]}', "Responses[1].Item: expected a map of attributes, got a number")
      -- a Tag's fields are plain, whatever their names
      assert.same({ { Key = "k", Value = { Item = 3 } } },
                  assert(core.decode('{"Tags":[{"Key":"k","Value":{"Item":3}}]}')).Tags)
    end)

    it("nesting deeper than 64 levels", function()
      local deep = string.rep("[", 65) .. string.rep("]", 65)
      bad(deep, "nesting deeper than 64 levels")
      assert.is_table(core.decode(string.rep("[", 64) .. string.rep("]", 64)))
    end)

    it("leaves nothing behind after an error", function()
      -- the throwaway module checks the stack; this checks state stays usable
      for _ = 1, 100 do
        assert.is_nil(core.decode('{"Item":{"a":{"L":[{"Q":1}]}}}'))
      end
      collectgarbage()
      assert.same({ a = 1 }, assert(core.decode('{"a":1}')))
    end)
  end)
end)

describe("OpenResty's null", function()
  it("encodes cjson.null (a NULL light userdata) as NULL and as JSON null", function()
    local cjson = require "cjson"
    local json = assert(core.encode{ TableName = "t", Item = { pk = "a", n = cjson.null },
                                     ReturnConsumedCapacity = cjson.null })
    local back = cjson.decode(json)
    assert.are.same({ NULL = true }, back.Item.n)
    assert.are.equal(cjson.null, back.ReturnConsumedCapacity)
  end)
end)
