-- ddbkit.hash: the Node toolkit's request hash (compat.md A.5), so a Lua
-- caller and a Node service derive the same cache/dedupe key for the same
-- request.
--
--   local hash = require("ddbkit.hash").hash_request("/users", { page = 2 })
--
-- The digest is SHA-256 hex of the JavaScript JSON.stringify text of
-- { endpoint = endpoint, params = normalise(params) }. Everything here
-- reproduces JavaScript, not JSON in general, which is why lua-cjson is not
-- used (its escaping and key order differ):
--
--   * normalise: object keys sorted by UTF-16 code units (Array.prototype.sort),
--     numbers and booleans replaced by their String() text, nil/undefined
--     values dropped, ddbkit.null kept as null, arrays kept in order with
--     their elements normalised too.
--   * JSON.stringify: no spaces; "/" and U+007F not escaped; \" \\ \b \f \n
--     \r \t; other controls as \u00xx; lone surrogates as \udxxx; and, like
--     any JavaScript object, keys that are array indexes ("0", "7",
--     "4294967294") come first in numeric order whatever the sort said.
--
-- Lua values -> JavaScript values:
--   string   Lua strings are bytes, read as UTF-8 the way Node decodes a
--            UTF-8 buffer (WHATWG: each maximal invalid subpart becomes
--            U+FFFD), except that a surrogate encoded in three bytes
--            (ED A0..BF xx, "WTF-8") is kept as that UTF-16 code unit: that
--            is the only way to say a lone surrogate in Lua, and a high one
--            directly followed by a low one makes the pair, as in JavaScript.
--   number   a double (a Lua 5.4 integer is converted first, as JavaScript
--            would hold it); String(): "0" for -0, "NaN", "Infinity".
--   table    an array when marked with ddbkit.array or when every key is a
--            positive integer (length = the largest key; a missing index is
--            a hole, which JSON.stringify writes as null, like undefined in
--            a JavaScript array); otherwise an object whose keys are strings
--            or numbers (a number key becomes its String() text). {} is an
--            empty object, ddbkit.array{} an empty array.
--   ddbkit.null  null (kept, in objects and arrays: only nil is dropped).
-- Anything else (functions, userdata, binary/set/decimal wrappers, two keys
-- with the same text) raises: it has no JavaScript request counterpart.
--
-- Lua 5.4 and LuaJIT give identical output: numbers are formatted from
-- doubles with the shortest round-trip search below, never with %g/%.14g.
local core = require "ddbkit.core"

local type, pairs, ipairs, error, tostring, tonumber, next, getmetatable =
      type, pairs, ipairs, error, tostring, tonumber, next, getmetatable
local byte, char, format, concat, sort, floor, huge =
      string.byte, string.char, string.format, table.concat, table.sort, math.floor, math.huge
local mtype = math.type
local unpack_bytes = table.unpack or unpack
local sha256_hex = core.sha256_hex
local is_array, null = core.is_array, core.null

local _M = { _VERSION = "0.1.0" }

-- Numbers: JavaScript Number::toString (ECMA-262 6.1.6.1.20) -----------

-- The decimal digit string ds plus or minus one in its last place, in
-- text (17-digit integers are not exact doubles, and LuaJIT has no others).
local function step(ds, delta)
  local t, i = { byte(ds, 1, -1) }, #ds
  while i >= 1 do
    local d = t[i] - 48 + delta
    if d >= 0 and d <= 9 then
      t[i] = 48 + d
      break
    end
    t[i] = delta > 0 and 48 or 57
    i = i - 1
  end
  if i == 0 then return delta > 0 and ("1" .. char(unpack_bytes(t))) or "" end
  return (char(unpack_bytes(t)):gsub("^0+(%d)", "%1"))
end

-- The shortest decimal digits d (no leading/trailing zeros) and exponent n
-- such that 0.d * 10^n reads back as x (x finite, > 0). For each length the
-- correctly rounded candidate is tried, then its neighbours: near a power
-- of two the rounding interval is lopsided and a neighbour can read back
-- when the nearest does not.
local function shortest(x)
  for p = 1, 17 do
    local s = format("%." .. (p - 1) .. "e", x)
    local m, e = s:match("^(%d[%.%d]*)e([-+]%d+)$")
    local digits = m:gsub("%.", "")
    e = tonumber(e)
    if tonumber(s) == x then
      digits = digits:gsub("0+$", "")
      if digits == "" then digits = "0" end
      return digits, e + 1
    end
    for _, cs in ipairs({ step(digits, -1), step(digits, 1) }) do
      if #cs == p and tonumber(cs .. "e" .. (e - p + 1)) == x then
        cs = cs:gsub("0+$", "")
        return cs, e + 1
      end
    end
  end
  error("ddbkit.hash: no round-trip digits for " .. format("%.17g", x))
end

local function js_number(x)
  if mtype and mtype(x) == "integer" then x = x + 0.0 end
  if x ~= x then return "NaN" end
  if x == huge then return "Infinity" end
  if x == -huge then return "-Infinity" end
  if x == 0 then return "0" end  -- also -0
  local sign = ""
  if x < 0 then sign, x = "-", -x end
  local d, n = shortest(x)
  local k = #d
  if k <= n and n <= 21 then
    return sign .. d .. ("0"):rep(n - k)
  elseif 0 < n and n <= 21 then
    return sign .. d:sub(1, n) .. "." .. d:sub(n + 1)
  elseif -6 < n and n <= 0 then
    return sign .. "0." .. ("0"):rep(-n) .. d
  end
  local e = n - 1
  local es = e < 0 and ("-" .. (-e)) or ("+" .. e)
  if k == 1 then return sign .. d .. "e" .. es end
  return sign .. d:sub(1, 1) .. "." .. d:sub(2) .. "e" .. es
end
_M.js_number = js_number

-- Strings: UTF-8 bytes -> UTF-16 code units ----------------------------

-- Decodes s into a list of code units (WHATWG UTF-8 decoding, except that
-- encoded surrogates are kept; see the header).
local function utf16_units(s)
  local units, nu, i, len = {}, 0, 1, #s
  while i <= len do
    local b = byte(s, i)
    local need, cp, lower, upper = 0, 0, 0x80, 0xBF
    if b < 0x80 then
      cp = b
    elseif b >= 0xC2 and b <= 0xDF then
      need, cp = 1, b - 0xC0
    elseif b >= 0xE0 and b <= 0xEF then
      need, cp = 2, b - 0xE0
      if b == 0xE0 then lower = 0xA0 end
    elseif b >= 0xF0 and b <= 0xF4 then
      need, cp = 3, b - 0xF0
      if b == 0xF0 then lower = 0x90 elseif b == 0xF4 then upper = 0x8F end
    else
      cp, need = 0xFFFD, -1
    end
    i = i + 1
    if need > 0 then
      local got = 0
      while got < need do
        local c = byte(s, i)
        if not c or c < lower or c > upper then break end  -- c is not consumed
        cp = cp * 64 + (c - 0x80)
        lower, upper = 0x80, 0xBF
        got = got + 1
        i = i + 1
      end
      if got < need then cp = 0xFFFD end
    end
    if cp >= 0x10000 then
      cp = cp - 0x10000
      units[nu + 1] = 0xD800 + floor(cp / 0x400)
      units[nu + 2] = 0xDC00 + cp % 0x400
      nu = nu + 2
    else
      nu = nu + 1
      units[nu] = cp
    end
  end
  return units, nu
end

local function utf8_of(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
              0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local SHORT = { [0x22] = '\\"', [0x5C] = "\\\\", [0x08] = "\\b", [0x0C] = "\\f",
                [0x0A] = "\\n", [0x0D] = "\\r", [0x09] = "\\t" }

-- JSON.stringify(str) as UTF-8 bytes (what Node's hash.update(str) hashes).
local function js_quote(s)
  -- Fast path: printable ASCII without quote or backslash is its own text.
  if not s:find('[%z\1-\31"\\\128-\255]') then return '"' .. s .. '"' end
  local units, n = utf16_units(s)
  local out, no, i = { '"' }, 1, 1
  while i <= n do
    local u = units[i]
    local piece
    if u < 0x20 or u == 0x22 or u == 0x5C then
      piece = SHORT[u] or format("\\u%04x", u)
    elseif u >= 0xD800 and u <= 0xDBFF then
      local v = units[i + 1]
      if v and v >= 0xDC00 and v <= 0xDFFF then
        piece = utf8_of(0x10000 + (u - 0xD800) * 0x400 + (v - 0xDC00))
        i = i + 1
      else
        piece = format("\\u%04x", u)
      end
    elseif u >= 0xDC00 and u <= 0xDFFF then
      piece = format("\\u%04x", u)
    else
      piece = utf8_of(u)
    end
    no = no + 1
    out[no] = piece
    i = i + 1
  end
  out[no + 1] = '"'
  return concat(out)
end
_M.js_quote = js_quote

-- A byte string that sorts like the UTF-16 code units of s: two bytes per
-- unit, big-endian.
local function utf16_sort_key(s)
  local units, n = utf16_units(s)
  local out = {}
  for i = 1, n do out[i] = char(floor(units[i] / 256), units[i] % 256) end
  return concat(out)
end

-- "0".."4294967294" without leading zeros: an array index, which a
-- JavaScript object lists first, in numeric order.
local function array_index(k)
  if k == "0" then return 0 end
  if #k > 10 or not k:find("^[1-9]%d*$") then return nil end
  local v = tonumber(k)
  if v <= 4294967294 then return v end
end

-- Normalise + stringify in one pass ------------------------------------

local encode

local function key_text(k)
  local tk = type(k)
  if tk == "string" then return k end
  if tk == "number" then return js_number(k) end
  error("ddbkit.hash: object keys must be strings or numbers, got " .. tk, 4)
end

local function classify(t)
  if is_array(t) then
    local max = 0
    for k in pairs(t) do
      if type(k) == "number" and k > max and k == floor(k) then max = k end
    end
    return true, max
  end
  if next(t) == nil then return false end
  local max, count = 0, 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    if k > max then max = k end
    count = count + 1
  end
  return true, max
end

local function encode_object(t, out, depth)
  local keys, texts, n = {}, {}, 0
  for k, v in pairs(t) do
    -- nil values are absent already: the "undefined dropped" rule
    local text = key_text(k)
    if texts[text] ~= nil then
      error("ddbkit.hash: two keys with the text " .. js_quote(text), 3 + depth)
    end
    texts[text] = v
    n = n + 1
    keys[n] = text
  end
  -- All-ASCII keys already sort by their bytes; otherwise every key of
  -- this object gets its UTF-16 sort key, so all compare alike.
  local sk = {}
  local ascii = true
  for i = 1, n do if keys[i]:find("[\128-\255]") then ascii = false break end end
  for i = 1, n do sk[keys[i]] = ascii and keys[i] or utf16_sort_key(keys[i]) end
  sort(keys, function(a, b)
    local ia, ib = array_index(a), array_index(b)
    if ia or ib then
      if ia and ib then return ia < ib end
      return ia ~= nil
    end
    return sk[a] < sk[b]
  end)
  out[#out + 1] = "{"
  for i = 1, n do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = js_quote(keys[i])
    out[#out + 1] = ":"
    encode(texts[keys[i]], out, depth + 1)
  end
  out[#out + 1] = "}"
end

encode = function(v, out, depth)
  if depth > 100 then error("ddbkit.hash: params nested too deeply (a cycle?)", 3 + depth) end
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = js_quote(v)
  elseif tv == "number" then
    out[#out + 1] = js_quote(js_number(v))
  elseif tv == "boolean" then
    out[#out + 1] = v and '"true"' or '"false"'
  elseif v == nil or v == null then
    out[#out + 1] = "null"  -- only as an array hole or ddbkit.null
  elseif tv == "table" then
    local mt = getmetatable(v)
    if mt and not is_array(v) then
      error("ddbkit.hash: unsupported value " .. tostring(v), 3 + depth)
    end
    local arr, len = classify(v)
    if arr then
      out[#out + 1] = "["
      for i = 1, len do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      encode_object(v, out, depth)
    end
  else
    error("ddbkit.hash: unsupported value of type " .. tv, 3 + depth)
  end
end

local function canonical(endpoint, params)
  if type(endpoint) ~= "string" then
    error("bad argument #1 to 'hash_request' (string expected, got " .. type(endpoint) .. ")", 3)
  end
  if params == nil then params = {} end
  if type(params) ~= "table" or (getmetatable(params) and not is_array(params)) then
    error("bad argument #2 to 'hash_request' (table expected, got " .. tostring(params) .. ")", 3)
  end
  local out = { '{"endpoint":', js_quote(endpoint), ',"params":' }
  if next(params) == nil then
    out[#out + 1] = "{}"
  elseif is_array(params) or classify(params) then
    error("bad argument #2 to 'hash_request' (params must be an object, not an array)", 3)
  else
    encode_object(params, out, 0)
  end
  out[#out + 1] = "}"
  return concat(out)
end

--- hash.canonical_json(endpoint, params?) -> the exact text that is hashed
function _M.canonical_json(endpoint, params) return canonical(endpoint, params) end

--- hash.hash_request(endpoint, params?) -> 64 lowercase hex characters
-- Cost: one pass over params plus a sort of each object's keys; no I/O.
function _M.hash_request(endpoint, params)
  return sha256_hex(canonical(endpoint, params))
end

return _M
