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
local jsjson = require "ddbkit.jsjson"

local type, pairs, ipairs, error, tostring, tonumber, next, getmetatable =
      type, pairs, ipairs, error, tostring, tonumber, next, getmetatable
local concat, sort, floor = table.concat, table.sort, math.floor
local sha256_hex = core.sha256_hex
local is_array, null = core.is_array, core.null

local _M = { _VERSION = "0.1.0" }

-- JavaScript's String(n), JSON.stringify(str) and array-index rule are
-- ddbkit.jsjson's (one JS-JSON writer in the tree). Strings are quoted
-- leniently here: invalid bytes become U+FFFD, as Node's decoder makes them.
local js_number, array_index, utf16_sort_key =
      jsjson.js_number, jsjson.array_index, jsjson.utf16_sort_key
local quote = jsjson.quote
local function js_quote(s) return (quote(s, true)) end
_M.js_number = js_number
_M.js_quote = js_quote

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
