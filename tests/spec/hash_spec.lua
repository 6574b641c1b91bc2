-- ddbkit.hash_request against real JavaScript: every expected digest is
-- computed here, at test time, by node running the toolkit's algorithm as
-- compat.md A.5 states it, on the same inputs. The inputs reach node as a
-- generated .js file of literals (strings as byte or UTF-16 unit lists), so
-- no JSON encoder of ours stands between the two sides. No node: the test
-- fails, it does not skip.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local hash = require "ddbkit.hash"

local null, array = ddbkit.null, ddbkit.array
local format, concat, byte = string.format, table.concat, string.byte

-- Test-only markers: UNDEF is a JavaScript undefined (absent on the Lua
-- side); W(lua_bytes, js_units) is a string Lua can only say in WTF-8.
local UNDEF = setmetatable({}, { __tostring = function() return "UNDEF" end })
local WTF = {}
local function W(lua, units) return setmetatable({ lua = lua, units = units }, WTF) end


-- The Lua value the case stands for.
local function to_lua(v)
  if v == UNDEF then return nil end
  if type(v) == "table" and getmetatable(v) == WTF then return v.lua end
  if type(v) ~= "table" or v == null then return v end
  local out = {}
  local arr = ddbkit.is_array(v)
  for k, x in pairs(v) do out[k] = to_lua(x) end
  if arr then out = array(out) end
  return out
end

local function js_num(x)
  if x ~= x then return "NaN" end
  if x == math.huge then return "Infinity" end
  if x == -math.huge then return "(-Infinity)" end
  if math.type and math.type(x) == "integer" then return format("%d", x) end
  if x == 0 and 1 / x < 0 then return "(-0)" end
  return format("%.17g", x)
end

local function js_str(s)
  local b = {}
  for i = 1, #s do b[i] = tostring(byte(s, i)) end
  return "S([" .. concat(b, ",") .. "])"
end

-- The JavaScript literal of the case.
local function to_js(v)
  local t = type(v)
  if v == UNDEF then return "undefined" end
  if v == null then return "null" end
  if t == "string" then return js_str(v) end
  if t == "number" then return js_num(v) end
  if t == "boolean" then return tostring(v) end
  if getmetatable(v) == WTF then
    local u = {}
    for i, x in ipairs(v.units) do u[i] = tostring(x) end
    return "String.fromCharCode(" .. concat(u, ",") .. ")"
  end
  assert(t == "table", "bad case value")
  local max, allint = 0, next(v) ~= nil
  for k in pairs(v) do
    if type(k) == "number" and k >= 1 and k == math.floor(k) then
      if k > max then max = k end
    else
      allint = false
    end
  end
  if ddbkit.is_array(v) or allint then
    local parts = {}
    for i = 1, max do parts[i] = v[i] == nil and "undefined" or to_js(v[i]) end
    return "[" .. concat(parts, ",") .. "]"
  end
  local parts = {}
  for k, x in pairs(v) do
    local key = type(k) == "number" and js_num(k) or js_str(k)
    parts[#parts + 1] = "[" .. key .. "]:" .. to_js(x)
  end
  return "{" .. concat(parts, ",") .. "}"
end

-- The algorithm of compat.md A.5 in JavaScript.
local PRELUDE = [[
const crypto = require('crypto');
const S = (bytes) => Buffer.from(bytes).toString('utf8');
function normalize(v) {
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) {
      if (v[k] === undefined) continue;
      out[k] = normalize(v[k]);
    }
    return out;
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return v;
}
function hashRequest(endpoint, params = {}) {
  const text = JSON.stringify({ endpoint, params: normalize(params) });
  return crypto.createHash('sha256').update(text).digest('hex') + ' ' +
         Buffer.from(text, 'utf8').toString('hex');
}
const cases = [];
]]

local CASES = {
  { "empty params", "/users", {} },
  { "no params", "/users", nil },
  { "flat", "/search", { q = "lua", page = 2, exact = true } },
  { "nested objects", "/n", { b = { d = { f = 1, e = "x" }, c = false }, a = { z = {}, y = 0 } } },
  { "key order: case, punctuation, non-ASCII, emoji, BMP-high vs non-BMP", "/k", {
      b = 1, a = 2, B = 3, A = 4, _ = 5, ["a b"] = 6, ["é"] = 7, z = 8, ["😀"] = 9,
      ["\u{FF21}"] = 10, ["\u{E000}"] = 11, ["\u{FFFF}"] = 12, ["𝄞"] = 13, ["~"] = 14,
      ["aa"] = 15, ["a"] = 16, [""] = 17 } },
  { "array-index keys come first in numeric order", "/i", {
      ["10"] = 1, ["9"] = 2, ["01"] = 3, ["0"] = 4, ["4294967294"] = 5, ["4294967295"] = 6,
      ["-1"] = 7, ["1.5"] = 8, b = 9, [" 1"] = 10 } },
  { "number keys become their String()", "/nk", { [1] = "one", [2.5] = "x", a = "y", [1e21] = "big" } },
  { "numbers", "/num", {
      zero = 0, negzero = -0.0, big = 1e21, below = 1e20, small = 1.5e-7, micro = 1e-6,
      tiny = 1e-7, long = 123456789012345680000, sum = 0.1 + 0.2, denorm = 5e-324,
      max = 1.7976931348623157e308, p53 = 2 ^ 53, p53p1 = 9007199254740993, neg = -1.5,
      third = 1 / 3, hundred = 100, float100 = 100.0, mixed = 123.456, e = -2.5e-10,
      p63 = 2 ^ 63, nan = 0 / 0, inf = math.huge, ninf = -math.huge, halfulp = 0.1 * 3,
      pow2 = 2 ^ -1022, n = 1234567.0, k = 1e-5 * 3 } },
  { "booleans", "/b", { t = true, f = false, list = { true, false } } },
  { "strings: quotes, backslashes, slash, controls, DEL, unicode", "/s", {
      q = 'say "hi"', bs = "a\\b", slash = "a/b</script>", ctl = "\0\1\7\8\9\10\11\12\13\14\27\31",
      del = "\127", uni = "héllo wörld ✓ 日本", emoji = "😀👍🏽", ls = "\u{2028}\u{2029}",
      mix = "tab\there\nline\rcr\\\"" } },
  { "invalid UTF-8 bytes become U+FFFD like Node's decoder", "/bad", {
      ff = "a\255b", overlong = "\192\128", trunc = "\226\130", beyond = "\244\144\128\128",
      lead = "\128x", cut4 = "\240\159\152", cut_then_ascii = "\226\130a" } },
  { "lone surrogates (WTF-8) escape as \\udxxx; a high+low pair joins", "/sur", {
      hi = W("\237\160\128", { 0xD800 }), lo = W("x\237\191\191", { 120, 0xDFFF }),
      pair = W("\237\160\189\237\184\128", { 0xD83D, 0xDE00 }),
      rev = W("\237\184\128\237\160\189", { 0xDE00, 0xD83D }) } },
  { "arrays of mixed values, holes and null", "/a", {
      mixed = { 1, "a", true, { x = 1, a = 2 }, { 2, 3 }, null, 0.5 },
      holes = array({ [1] = 1, [3] = 3 }), sparse = { [2] = "b" }, empty = array({}),
      emptyobj = {}, nulls = { n = null }, undef = UNDEF, keep = "k" } },
  { "unicode and quotes in the endpoint", "/caf\u{E9}/\"x\"/\\/😀", { a = 1 } },
  { "deep", "/d", { a = { b = { c = { d = { e = { f = { g = { 1, { h = 2.25 } } } } } } } } } },
}

describe("ddbkit.hash_request", function()
  local expected

  setup(function()
    local dir = H.mktemp_dir()
    local path = dir .. "/cases.js"
    local js = { PRELUDE }
    for _, c in ipairs(CASES) do
      local params = c[3] == nil and "" or (", " .. to_js(c[3]))
      js[#js + 1] = "cases.push(hashRequest(" .. js_str(c[2]) .. params .. "));"
    end
    js[#js + 1] = "process.stdout.write(cases.join('\\n') + '\\n');"
    local f = assert(io.open(path, "w"))
    f:write(concat(js, "\n"))
    f:close()
    local p = assert(io.popen("env -u LD_PRELOAD node " .. H.shell_quote(path) .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    os.execute("env -u LD_PRELOAD rmdir " .. H.shell_quote(dir))
    expected = {}
    for line in out:gmatch("[^\n]+") do expected[#expected + 1] = line end
    assert(#expected == #CASES and expected[1]:match("^%x+ %x+$"),
      "node must be installed and run the reference (got: " .. out:sub(1, 300) .. ")")
  end)

  for i, c in ipairs(CASES) do
    it("matches JavaScript: " .. c[1], function()
      local digest, text_hex = expected[i]:match("^(%x+) (%x*)$")
      local text = text_hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
      local params = c[3] ~= nil and to_lua(c[3]) or nil
      assert.are.equal(text, hash.canonical_json(c[2], params))
      assert.are.equal(digest, hash.hash_request(c[2], params))
      assert.are.equal(digest, ddbkit.hash_request(c[2], params))
    end)
  end

  it("returns 64 lowercase hex characters", function()
    assert.truthy(hash.hash_request("/x", { a = 1 }):match("^[0-9a-f]+$"))
    assert.are.equal(64, #hash.hash_request("/x", { a = 1 }))
  end)

  it("ignores table construction order", function()
    local a, b = {}, {}
    for i = 1, 50 do a["k" .. i] = i end
    for i = 50, 1, -1 do b["k" .. i] = i end
    assert.are.equal(hash.hash_request("/o", a), hash.hash_request("/o", b))
  end)

  it("treats numbers and their strings alike, as the toolkit does", function()
    assert.are.equal(hash.hash_request("/x", { page = 2 }), hash.hash_request("/x", { page = "2" }))
    assert.are.equal(hash.hash_request("/x", { on = true }), hash.hash_request("/x", { on = "true" }))
  end)

  it("raises on misuse", function()
    assert.has_error(function() hash.hash_request(nil, {}) end,
      "bad argument #1 to 'hash_request' (string expected, got nil)")
    assert.has_error(function() hash.hash_request("/x", "a=1") end)
    assert.has_error(function() hash.hash_request("/x", { 1, 2 }) end,
      "bad argument #2 to 'hash_request' (params must be an object, not an array)")
    assert.has_error(function() hash.hash_request("/x", { f = print }) end)
    assert.has_error(function() hash.hash_request("/x", { [1] = "a", ["1"] = "b" }) end)
    local cyc = {}
    cyc.self = cyc
    assert.has_error(function() hash.hash_request("/x", cyc) end)
  end)
end)
