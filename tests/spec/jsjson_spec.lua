-- ddbkit.jsjson against Node itself: every case is run through
-- JSON.stringify(JSON.parse(text)) by one node process per batch, and
-- ddbkit's restringify must give the same bytes (or fail where Node
-- throws). Then what node cannot be asked (Lua-side shapes, marks, key
-- order memory, the depth limit, refusing invalid UTF-8).
local jsjson = require "ddbkit.jsjson"
local core = require "ddbkit.core"

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

-- Runs each text through Node: returns a list of { ok = bool, text = s }.
-- Texts travel as hex of their UTF-8 bytes, answers likewise, so no
-- quoting layer of our own sits between the two.
local function node_restringify(texts)
  local input = os.tmpname()
  local f = assert(io.open(input, "wb"))
  for _, t in ipairs(texts) do f:write(hex(t), "\n") end
  f:close()
  local script = [[
const lines = require('fs').readFileSync(process.argv[2], 'latin1').split('\n');
const out = [];
for (const h of lines) {
  if (h === '' && out.length >= lines.length - 1) break;
  const text = Buffer.from(h, 'hex').toString('utf8');
  try { out.push('ok ' + Buffer.from(JSON.stringify(JSON.parse(text)), 'utf8').toString('hex')); }
  catch (e) { out.push('err'); }
}
process.stdout.write(out.join('\n') + '\n');
]]
  local js = os.tmpname()
  f = assert(io.open(js, "wb"))
  f:write(script)
  f:close()
  local p = assert(io.popen("node " .. js .. " " .. input))
  local res = {}
  for line in p:lines() do
    local ok, h = line:match("^(%a+) ?(%x*)$")
    res[#res + 1] = { ok = ok == "ok", text = unhex(h or "") }
  end
  p:close()
  os.remove(input)
  os.remove(js)
  assert(#res == #texts, "node answered " .. #res .. " of " .. #texts .. " cases")
  return res
end

-- JSON.stringify of each text's value rebuilt with every object's keys
-- inserted in JavaScript's default sort order (UTF-16 code units): what
-- stringify must write for a table built in Lua (no remembered order).
local function node_sorted(texts)
  local input, js = os.tmpname(), os.tmpname()
  local f = assert(io.open(input, "wb"))
  for _, t in ipairs(texts) do f:write(hex(t), "\n") end
  f:close()
  f = assert(io.open(js, "wb"))
  f:write([[
const lines = require('fs').readFileSync(process.argv[2], 'latin1').split('\n');
lines.pop();
const sorted = (v) => {
  if (Array.isArray(v)) return v.map(sorted);
  if (v === null || typeof v !== 'object') return v;
  const o = {};
  for (const k of Object.keys(v).sort()) o[k] = sorted(v[k]);
  return o;
};
const out = lines.map((h) => Buffer.from(JSON.stringify(sorted(JSON.parse(
  Buffer.from(h, 'hex').toString('utf8')))), 'utf8').toString('hex'));
process.stdout.write(out.join('\n') + '\n');
]])
  f:close()
  local p = assert(io.popen("node " .. js .. " " .. input))
  local res = {}
  for line in p:lines() do res[#res + 1] = unhex(line) end
  p:close()
  os.remove(input)
  os.remove(js)
  assert(#res == #texts, "node answered " .. #res .. " of " .. #texts .. " cases")
  return res
end

-- A decoded value copied into fresh tables: no remembered key order.
local function forget_order(v)
  if type(v) ~= "table" or v == core.null then return v end
  local c = core.is_array(v) and core.array() or {}
  for k, x in pairs(v) do c[k] = forget_order(x) end
  return c
end

local function check_against_node(texts)
  local want = node_restringify(texts)
  local bad = {}
  for i, t in ipairs(texts) do
    local got, err = jsjson.restringify(t)
    if want[i].ok then
      if got ~= want[i].text then
        bad[#bad + 1] = string.format("case %d %q: node %q, ddbkit %q (%s)", i, t, want[i].text,
                                      tostring(got), tostring(err))
      end
    elseif got ~= nil then
      bad[#bad + 1] = string.format("case %d %q: node throws, ddbkit gave %q", i, t, got)
    end
  end
  assert.are.same({}, bad)
  return want
end

local FIXED = {
  -- the issue's examples
  '{"b":1, "a":[1.0,2e2]}', '{"b":1,"2":2,"1":3}', '{"list":[],"nested":[[],{}]}',
  -- empty and nested empty containers
  '[]', '{}', '[[]]', '[{}]', '{"a":{}}', '{"a":[]}', '[[],[[]],{},{"x":[]}]', ' \t\n\r[ ] ',
  -- scalars at the top
  '1', '"x"', 'true', 'false', 'null', '-0', '0',
  -- numbers
  '1e21', '1e20', '123456789012345678901', '1e-7', '1e-6', '0.000001', '-0.0', '0.1',
  '0.30000000000000004', '9007199254740993', '9007199254740992', '-9007199254740993',
  '18446744073709551616', '9223372036854775807', '9223372036854775808', '-9223372036854775809',
  '1.7976931348623157e308', '5e-324', '2.2250738585072014e-308', '1E+2', '1e-0', '123.456e3',
  '1e400', '-1e400', '0.1e1', '100', '1.5', '-1.5e-10', '4294967295', '1152921504606846976',
  '[0.1,0.2,0.30000000000000004,1e21,1e-7,-0]',
  -- exact ties at 17 digits: JavaScript rounds them to even
  '0.20773696899414062', '0.207736968994140625', '1.0000000000000002', '4.35', '0.000244140625',
  -- strings: escapes, "/" and DEL unescaped, controls
  '"\\/"', '"/"', '"\127"', '"\\u007f"', '"\\b\\f\\n\\r\\t\\"\\\\"', '"\\u0000"', '"\\u001f"',
  '"\\u0020"', '"\\u00e9"', '"é"', '"\\u2028\\u2029"', '"\226\128\168"', '"\\uD83D\\uDE00"',
  '"😀"', '"\\ud800"', '"\\udc00"', '"\\ud800\\ud800"', '"\\udc00\\ud800"', '"\\ud83d\\u0041"',
  '"a\\ud83dx"', '"\\uffff"', '"\239\191\191"', '"\\uFEFF"', '"中文"', '"\\u4e2d"',
  '{"\\ud800":1}', '{"/":"/"}',
  -- duplicate keys: last value, first position
  '{"a":1,"b":2,"a":3}', '{"a":1,"a":{"x":1},"a":[]}', '{"1":1,"a":2,"1":3}',
  -- integer-like keys first, ascending; others in text order
  '{"b":1,"10":2,"2":3,"a":4,"01":5,"-1":6,"4294967294":7,"4294967295":8,"0":9,"1.0":10}',
  '{"z":1,"y":2,"x":3}', '{"é":1,"e":2,"😀":3,"\239\191\191":4}',
  -- invalid JSON: JSON.parse throws, so must decode
  '', ' ', '[1,]', '{"a":1,}', '01', '-', '1.', '.5', '1e', '+1', '"\\x"', '"\\u12"', "'a'",
  '{a:1}', '[1 2]', 'tru', 'nul', 'NaN', 'Infinity', '"a\tb"', '"\1"', '[', '{', '"', '1 2',
  '{"a" 1}', '// c\n1', '\2451', '1\0', '"\\U0041"',
}

-- Bounded random generator (fixed seed: the same cases every run).
local function generator(seed)
  local state = seed
  local function rnd(n)  -- 1..n, a small LCG so Lua 5.4 and LuaJIT agree
    state = (state * 1103515245 + 12345) % 2147483648
    return state % n + 1
  end
  local function ws() return ({ "", "", "", " ", "\n", "\t ", "\r\n" })[rnd(7)] end
  local CHARS = { "a", "b", "z", "A", "0", "9", " ", "/", "\127", "\\\\", '\\"', "\\n", "\\t",
    "\\/", "\\b", "\\f", "\\r", "é", "ß", "中", "😀", "\226\128\168", "\239\191\191", "\\u0001",
    "\\u001F", "\\u007f", "\\u00E9", "\\uD83D\\uDE00", "\\ud800", "\\udfff", "\\uFFFE", "~" }
  local function str()
    local t = {}
    for i = 1, rnd(6) - 1 do t[i] = CHARS[rnd(#CHARS)] end
    return '"' .. table.concat(t) .. '"'
  end
  local KEYS = { '"0"', '"1"', '"2"', '"10"', '"01"', '"-1"', '"4294967294"', '"4294967295"',
                 '"a"', '"b"', '"é"', '"😀"', '"\\ud800"', '"key"', '"1.5"', '""' }
  local function num()
    local k = rnd(6)
    if k == 1 then return tostring(rnd(2000) - 1000) end
    if k == 2 then return string.format("%.17g", (rnd(1e6) - 5e5) / rnd(1000)) end
    if k == 3 then return (rnd(2) == 1 and "-" or "") .. rnd(9) .. "e" .. (rnd(60) - 30) end
    if k == 4 then return tostring(rnd(9)) .. string.rep("9", rnd(20)) end
    if k == 5 then return "0." .. string.rep("0", rnd(8)) .. rnd(999) end
    return string.format("%.17g", rnd(2147483647) * 2 ^ (rnd(200) - 100))
  end
  local value
  value = function(depth)
    local k = rnd(depth > 4 and 4 or 7)
    if k == 1 then return str() end
    if k == 2 then return num() end
    if k == 3 then return ({ "true", "false", "null" })[rnd(3)] end
    if k == 4 then return rnd(2) == 1 and "[]" or "{}" end
    if k == 5 or k == 6 then
      local parts = {}
      for i = 1, rnd(5) - 1 do
        parts[i] = ws() .. KEYS[rnd(#KEYS)] .. ws() .. ":" .. ws() .. value(depth + 1) .. ws()
      end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    local parts = {}
    for i = 1, rnd(5) - 1 do parts[i] = ws() .. value(depth + 1) .. ws() end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return function() return ws() .. value(0) .. ws() end
end

-- Whether two decoded values are the same: types (and math.type), array
-- marks, key lists (jsjson.keys), recursively. Returns nil or a difference.
local function differ(a, b, path)
  if type(a) ~= type(b) then return path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "number" then
    if math.type and math.type(a) ~= math.type(b) then return path .. ": number types" end
    if a ~= b and not (a ~= a and b ~= b) then return path .. ": " .. a .. " vs " .. b end
    return nil
  end
  if type(a) ~= "table" then
    if a ~= b then return path .. ": values" end
    return nil
  end
  if (a == core.null) ~= (b == core.null) then return path .. ": null" end
  if core.is_array(a) ~= core.is_array(b) then return path .. ": array mark" end
  if core.is_array(a) then
    if #a ~= #b then return path .. ": lengths" end
    for i = 1, #a do
      local d = differ(a[i], b[i], path .. "[" .. i .. "]")
      if d then return d end
    end
    return nil
  end
  local ka, kb = jsjson.keys(a), jsjson.keys(b)
  if table.concat(ka, "\0") ~= table.concat(kb, "\0") then return path .. ": key order" end
  for _, k in ipairs(ka) do
    local d = differ(a[k], b[k], path .. "." .. k)
    if d then return d end
  end
end

describe("ddbkit.jsjson", function()
  it("decodes in C (core.js_parse) exactly as its Lua reference decoder", function()
    assert.is_function(core.js_parse)
    local texts = {}
    for i, t in ipairs(FIXED) do texts[i] = t end
    local gen = generator(99)
    for _ = 1, 300 do texts[#texts + 1] = gen() end
    texts[#texts + 1] = string.rep("[", jsjson.MAX_DEPTH) .. string.rep("]", jsjson.MAX_DEPTH)
    texts[#texts + 1] = string.rep("[", jsjson.MAX_DEPTH + 1) .. string.rep("]", jsjson.MAX_DEPTH + 1)
    texts[#texts + 1] = '"\255"'
    texts[#texts + 1] = '"a\255"'
    local bad = {}
    for i, t in ipairs(texts) do
      local a, aerr = jsjson.decode(t)
      local b, berr = jsjson._decode_lua(t)
      if (a == nil) ~= (b == nil) then
        bad[#bad + 1] = string.format("case %d %q: C %s, Lua %s", i, t, tostring(aerr or "ok"),
                                      tostring(berr or "ok"))
      elseif a ~= nil then
        local d = differ(a, b, "$")
        if d then bad[#bad + 1] = string.format("case %d %q: %s", i, t, d) end
      end
    end
    assert.are.same({}, bad)
  end)

  it("restringify gives JSON.stringify(JSON.parse(x))'s bytes for fixed cases (node)", function()
    local want = check_against_node(FIXED)
    local okn = 0
    for _, w in ipairs(want) do if w.ok then okn = okn + 1 end end
    assert.is_true(okn > 60 and okn < #FIXED)  -- both kinds really ran
  end)

  it("agrees with node on 400 generated cases (fixed seed)", function()
    local gen, texts = generator(20261204), {}
    for i = 1, 400 do texts[i] = gen() end
    local want = check_against_node(texts)
    for _, w in ipairs(want) do assert.is_true(w.ok) end  -- all are valid JSON
  end)

  it("writes a table built in Lua with its keys in JavaScript's sort order (node)", function()
    local gen, texts = generator(4242), {}
    for i = 1, 300 do texts[i] = gen() end
    texts[#texts + 1] = '{"b":1,"a":2,"10":3,"2":4,"é":5,"😀":6,"\239\191\191":7,"B":8,"":9}'
    local want = node_sorted(texts)
    local bad = {}
    for i, t in ipairs(texts) do
      local v, derr = jsjson.decode(t)
      assert(v ~= nil, derr)
      local got, err = jsjson.stringify(forget_order(v))
      if got ~= want[i] then
        bad[#bad + 1] = string.format("case %d %q: node %q, ddbkit %q (%s)", i, t, want[i],
                                      tostring(got), tostring(err))
      end
    end
    assert.are.same({}, bad)
  end)

  it("writes numbers as String(n) (node), both runtimes alike", function()
    local texts = {}
    local gen_state = 7
    for i = 1, 200 do
      gen_state = (gen_state * 1103515245 + 12345) % 2147483648
      local x = (gen_state / 2147483648 - 0.5) * 2 ^ ((i % 140) - 70)
      texts[i] = string.format("%.17g", x)
      -- a few bits over a power of two: short exact expansions, ties
      texts[200 + i] = string.format("%.25g", (gen_state % 65536 + 0.5) / 2 ^ (i % 60))
    end
    check_against_node(texts)
  end)

  it("keeps [] and {} apart and marks arrays as ddbkit does", function()
    local v = assert(jsjson.decode('{"list":[],"nested":[[],{}],"n":null}'))
    assert.is_true(core.is_array(v.list))
    assert.is_nil(next(v.list))
    assert.is_true(core.is_array(v.nested))
    assert.is_true(core.is_array(v.nested[1]))
    assert.is_false(core.is_array(v.nested[2]))
    assert.is_nil(getmetatable(v.nested[2]))
    assert.are.equal(core.null, v.n)
    assert.are.equal('{"list":[],"nested":[[],{}],"n":null}', jsjson.stringify(v))
    -- an empty unmarked table is an object; ddbkit.array() is the empty array
    assert.are.equal("{}", jsjson.stringify({}))
    assert.are.equal("[]", jsjson.stringify(core.array()))
    assert.are.equal("[1,2]", jsjson.stringify({ 1, 2 }))
    assert.are.equal("[null,2]", jsjson.stringify({ [2] = 2 }))
  end)

  it("remembers key order, JavaScript's way (Object.keys)", function()
    local v = assert(jsjson.decode('{"b":1,"a":2,"10":3,"2":4,"b":5}'))
    assert.are.same({ "2", "10", "b", "a" }, jsjson.keys(v))
    assert.are.equal(5, v.b)
    -- keys added later come after the remembered ones, sorted; removed ones go
    v.zz, v.c, v.a = 1, 2, nil
    assert.are.same({ "2", "10", "b", "c", "zz" }, jsjson.keys(v))
    assert.are.equal('{"2":4,"10":3,"b":5,"c":2,"zz":1}', jsjson.stringify(v))
    -- a table built in Lua: array indexes, then UTF-16 code unit order
    -- ("\u{ffff}" sorts after "😀" in UTF-16, before it in UTF-8 bytes)
    assert.are.equal('{"1":1,"B":2,"a":3,"😀":5,"\239\191\191":4}',
      jsjson.stringify({ a = 3, B = 2, [1] = 1, ["\239\191\191"] = 4, ["😀"] = 5 }))
  end)

  it("reads numbers as store.json_decode always did", function()
    local v = assert(jsjson.decode("[42,1.0,2e2,1.5,9007199254740993,1e300,-0]"))
    assert.are.equal(42, v[1])
    assert.are.equal(200, v[3])
    assert.are.equal(1.5, v[4])
    assert.are.equal(9007199254740992, v[5])
    assert.are.equal(1e300, v[6])
    if math.type then
      assert.are.equal("integer", math.type(v[1]))
      assert.are.equal("integer", math.type(v[2]))
      assert.are.equal("integer", math.type(v[3]))
      assert.are.equal("integer", math.type(v[5]))
      assert.are.equal("float", math.type(v[6]))
    end
    assert.are.equal("[null,null,null,1e+21]", jsjson.stringify({ 0 / 0, math.huge, -math.huge, 1e21 }))
  end)

  it("refuses deeper nesting than its limit, with an error", function()
    local limit = jsjson.MAX_DEPTH
    local ok_text = string.rep("[", limit) .. string.rep("]", limit)
    assert.are.equal(ok_text, jsjson.restringify(ok_text))
    local v, err = jsjson.decode(string.rep("[", limit + 1) .. string.rep("]", limit + 1))
    assert.is_nil(v)
    assert.matches("nested deeper than " .. limit, err)
    v, err = jsjson.decode(string.rep('{"a":', limit + 1) .. "1" .. string.rep("}", limit + 1))
    assert.is_nil(v)
    assert.matches("nested deeper", err)
    local cyc = {}
    cyc.self = cyc
    v, err = jsjson.stringify(cyc)
    assert.is_nil(v)
    assert.matches("nested deeper than " .. limit, err)
  end)

  it("refuses what has no JavaScript JSON text, saying what", function()
    local cases = {
      { "a\255b", "not valid UTF%-8 %(byte 2" }, { { x = "\192\128" }, "not valid UTF%-8" },
      { { ["\255"] = 1 }, "not valid UTF%-8" }, { print, "function" },
      { { f = print }, "function" }, { core.binary("x"), "no JSON form" },
      { { [1] = "a", ["1"] = "b" }, "two keys" }, { { [true] = 1 }, "keys must be strings" },
      { { [1] = 1, [100] = 2 }, "too sparse" },
    }
    for _, c in ipairs(cases) do
      local s, err = jsjson.stringify(c[1])
      assert.is_nil(s)
      assert.matches(c[2], err)
    end
    local s, err = jsjson.stringify(nil)
    assert.is_nil(s)
    assert.matches("undefined", err)
    -- invalid UTF-8 in a text to decode is refused too
    s, err = jsjson.decode('"a\255"')
    assert.is_nil(s)
    assert.matches("not valid UTF%-8", err)
    assert.has_error(function() jsjson.decode(nil) end,
      "bad argument #1 to 'decode' (string expected, got nil)")
  end)

  it("writes a lone surrogate held as WTF-8 as \\udxxx, a pair as the character", function()
    assert.are.equal('"\\ud800"', jsjson.stringify("\237\160\128"))
    assert.are.equal('"😀"', jsjson.stringify("\237\160\189\237\184\128"))
    assert.are.equal("\237\160\128", jsjson.decode('"\\ud800"'))
  end)
end)
