-- ddbkit.idempotency.cache_key: the idempotency key check and the cache key
-- a request is stored under, exactly as the Node middleware derives them
-- (compat.md B, checked against the package's hash.ts, middleware.ts and
-- its Express integration): SHA-256 hex of the UTF-8 text
-- "METHOD:PATH:KEY:BODYHASH:HEADERS".
--
-- Two faces: `of` is the middleware's execute(key, ctx) (ctx values are
-- JavaScript strings and values, given as UTF-8 text and Lua values);
-- `of_request` is its Express integration for an HTTP request (header
-- values as Node's http module reads them: bytes as latin1, names
-- lowercased; the body as Express's body parsers leave it).
local core = require "ddbkit.core"
local jsjson = require "ddbkit.jsjson"
local fail = require("ddbkit.idempotency.errors").fail

local type, pairs, ipairs, error, tostring = type, pairs, ipairs, error, tostring
local byte, char, find, gsub, match, lower, sub = string.byte, string.char, string.find, string.gsub,
                                                  string.match, string.lower, string.sub
local floor = math.floor
local concat = table.concat
local sha256_hex, null, is_array = core.sha256_hex, core.null, core.is_array
local is_utf8, utf16_units = jsjson.is_utf8, jsjson.utf16_units

local _M = {}

local NAME = "ddbkit.idempotency"

-- Header names ------------------------------------------------------------

-- RFC 7230 token characters: all a header name may hold.
local TOKEN = "^[!#$%%&'*+%-.^_`|~0-9A-Za-z]+$"

--- cache_key.is_header_name(s) -> whether s is a header name (an RFC 7230
-- token).
function _M.is_header_name(s)
  return type(s) == "string" and find(s, TOKEN) ~= nil
end

-- The primary weights of ICU's root collation (what Node's localeCompare
-- uses in an en, C or unset locale) for the token characters: punctuation,
-- then symbols, then digits, then letters with case ignored. Measured with
-- node (idempotency_node_key_spec sorts 3000+ generated names both ways).
-- A locale that tailors ASCII letters (da, nb: "aa" after "z") sorts
-- otherwise; header names are compared in the root order here.
local PRIMARY = {}
do
  local order = "_-!.'*&#%`^+|~$0123456789abcdefghijklmnopqrstuvwxyz"
  for i = 1, #order do
    local b = byte(order, i)
    PRIMARY[b] = i
    if b >= 97 and b <= 122 then PRIMARY[b - 32] = i end   -- A-Z: the letter's weight
  end
end

--- cache_key.locale_less(a, b) -> whether JavaScript's a.localeCompare(b)
-- is negative, for header names (token characters; raises on others). The
-- collation's levels: the primary weights over the whole name first (a
-- name that is a prefix of the other first), and only between names equal
-- but for case, the first position where they differ: lowercase first.
function _M.locale_less(a, b)
  local na, nb = #a, #b
  for i = 1, na < nb and na or nb do
    local x, y = PRIMARY[byte(a, i)], PRIMARY[byte(b, i)]
    if not x or not y then error(NAME .. ": not a header name: " .. (x and b or a), 2) end
    if x ~= y then return x < y end
  end
  if na ~= nb then return na < nb end
  for i = 1, na do
    local x, y = byte(a, i), byte(b, i)
    if x ~= y then return x > y end   -- same letter: the lowercase one has the larger byte
  end
  return false
end
local locale_less = _M.locale_less

--- cache_key.vary(names) -> the vary header names as the key uses them:
-- each once, as configured (case kept), in localeCompare order. Raises
-- (level 3) for a name that is not a header name.
function _M.vary(names)
  local list, seen = {}, {}
  for _, name in ipairs(names) do
    if not _M.is_header_name(name) then
      error(NAME .. ".new: opts.vary_headers: " .. tostring(name) .. " is not a header name "
            .. "(letters, digits and !#$%&'*+-.^_`|~)", 3)
    end
    if not seen[name] then
      seen[name] = true
      list[#list + 1] = { name = name, lower = lower(name) }
    end
  end
  table.sort(list, function(x, y) return locale_less(x.name, y.name) end)
  return list
end

-- Header values -----------------------------------------------------------

-- A header value as the middleware writes it: a string as is, an array
-- joined with ", ", anything else nil (the header is left out).
local function js_header(v)
  if type(v) == "string" then return v end
  if type(v) ~= "table" or v == null then return nil end
  local n = #v
  if not (is_array(v) or n > 0) then return nil end   -- an empty unmarked table is {}
  local parts = {}
  for i = 1, n do
    local x = v[i]
    if x == null then x = "" end
    if type(x) ~= "string" then error(NAME .. ": a header value list holds a " .. type(x), 4) end
    parts[i] = x
  end
  return concat(parts, ", ")
end

-- Bytes as Node's http module reads a header value (latin1: each byte one
-- character), written back as UTF-8, the text the middleware hashes.
local function latin1(s)
  if not find(s, "[\128-\255]") then return s end
  return (gsub(s, "[\128-\255]", function(c)
    local b = byte(c)
    return char(0xC0 + floor(b / 64), 0x80 + b % 64)
  end))
end

--- cache_key.header_value(headers, name) -> an HTTP header's value: name
-- in any case (HTTP names are case-insensitive: Node lowercases them), a
-- list joined with ", ", or nil.
function _M.header_value(headers, name)
  if type(headers) ~= "table" then return nil end
  local v = headers[name]
  if v == nil then
    for k, x in pairs(headers) do
      if type(k) == "string" and lower(k) == name then v = x break end
    end
  end
  if type(v) == "table" then v = concat(v, ", ") end
  return v ~= nil and tostring(v) or nil
end
local header_value = _M.header_value

-- "name=value&..." for the vary headers present (vary: from _M.vary).
-- value_of(lowercase name) -> the value text or nil.
local function header_part(vary, value_of)
  local parts = {}
  for _, h in ipairs(vary) do
    local v = value_of(h.lower)
    if v ~= nil then parts[#parts + 1] = h.name .. "=" .. v end
  end
  return concat(parts, "&")
end

-- Bodies ------------------------------------------------------------------

local function body_not_json(err)
  return fail("BODY_NOT_JSON", "the request body is not JSON: " .. tostring(err))
end

-- hashBody(value): empty for null, the string itself, else JSON.stringify.
-- A table is written by jsjson.stringify: a table jsjson.decode made keeps
-- its keys in the text's order (as JSON.parse's object does); a table built
-- in Lua has none, and gets array-index keys ascending, then the others
-- sorted by UTF-16 code units.
local function hash_value(v)
  if v == nil or v == null then return "" end
  if type(v) == "string" then return sha256_hex(v) end
  local text, err = jsjson.stringify(v)
  -- a function, a cycle, bytes that are not UTF-8: the caller's mistake
  if not text then error(NAME .. ": the body has no JSON form: " .. tostring(err), 4) end
  return sha256_hex(text)
end

-- The value JSON text stands for (JSON.parse), or nil, err.
local function parsed(text)
  local v, err = jsjson.decode(text)
  if v == nil then return nil, body_not_json(err) end
  return v
end

-- BODYHASH of execute's ctx: ctx.body_json (the JSON text of the body)
-- wins; else ctx.body ?? ctx.input.
local function body_hash(ctx)
  local text = ctx.body_json
  if text ~= nil then
    if type(text) ~= "string" then error(NAME .. ": ctx.body_json must be a string (JSON text)", 4) end
    local v, err = parsed(text)
    if v == nil then return nil, err end
    return hash_value(v)
  end
  local body = ctx.body
  if body == nil or body == null then body = ctx.input end
  return hash_value(body)
end

local function key_of(method, path, key, body_hash_text, headers_text)
  return sha256_hex(method .. ":" .. path .. ":" .. key .. ":" .. body_hash_text .. ":" .. headers_text)
end

--- cache_key.of(key, ctx, include_body, vary) -> 64 hex characters | nil, err
-- The middleware's execute(key, ctx) (compat.md B):
--   METHOD, PATH  ctx.method, ctx.path when strings, else POST and /.
--   BODYHASH      (include_body) the body is ctx.body, or ctx.input when
--                 ctx.body is nil or ddbkit.null (JavaScript's ??); nil or
--                 null: empty; a string: SHA-256 of it ("" too); else
--                 SHA-256 of JSON.stringify(body) (jsjson.stringify: a
--                 table from jsjson.decode keeps its text's key order, a
--                 table built in Lua gets array-index keys ascending, then
--                 the others sorted by UTF-16 units: Node's key is the same
--                 only when its object had its keys in that order).
--                 ctx.body_json, JSON text, stands for the body instead
--                 (JSON.parse of it, key order kept): give it when the body
--                 came as JSON text; nil, BODY_NOT_JSON when it is not JSON.
--   HEADERS       for each vary header (from cache_key.vary): the value
--                 ctx.headers[lowercase name] (no other case is looked up),
--                 a string as is, a list joined with ", ", else the header
--                 is left out; "Name=value" with the name as configured,
--                 in localeCompare order, joined with "&".
function _M.of(key, ctx, include_body, vary)
  local bh = ""
  if include_body then
    local err
    bh, err = body_hash(ctx)
    if bh == nil then return nil, err end
  end
  local headers = ctx.headers
  local hp = ""
  if type(headers) == "table" and headers ~= null then
    hp = header_part(vary, function(name) return js_header(headers[name]) end)
  end
  local method, path = ctx.method, ctx.path
  return key_of(type(method) == "string" and method or "POST", type(path) == "string" and path or "/",
                key, bh, hp)
end

-- Whether a Content-Type is what express.json() parses by default
-- (application/json, any parameters, any case).
local function is_json_type(ctype)
  if type(ctype) ~= "string" then return false end
  local media = match(ctype, "^[ \t]*([^; \t]+)")
  return media ~= nil and lower(media) == "application/json"
end

--- cache_key.request(req, opts) -> ck, key | nil (not a request to keep:
-- no key) | nil, err
-- The Express integration's key for an HTTP request req = { method, path
-- (as sent: not percent-decoded, no query), headers (any case), body (raw
-- bytes, or nil) }. opts = { header_name (lowercase), max_key_length,
-- include_body, vary, json_bodies }. As Node reads the request:
--   the key header's value (latin1, like every header value); none or
--   empty: nil (the request is passed through). Longer than
--   max_key_length bytes (latin1: one character each): KEY_REQUIRED. No
--   whitespace check: the integration does none.
--   the body: with opts.json_bodies and an application/json Content-Type,
--   express.json()'s value (an empty body is {}; a body that is not a JSON
--   object or array: nil, BODY_NOT_JSON, as express.json() answers 400);
--   otherwise the raw text as a string (express.text()), nil without one.
function _M.request(req, opts)
  local headers = req.headers
  local key = header_value(headers, opts.header_name)
  if key == nil or key == "" then return nil end
  if #key > opts.max_key_length then
    return nil, fail("KEY_REQUIRED", "Idempotency key exceeds maximum length of "
                     .. opts.max_key_length .. " characters")
  end
  local bh = ""
  if opts.include_body then
    local body = req.body
    if opts.json_bodies and is_json_type(header_value(headers, "content-type")) then
      if body == nil or body == "" then
        body = "{}"
      elseif not find(body, "^[ \t\r\n]*[{%[]") then
        return nil, body_not_json("express.json() takes an object or an array")
      end
      local v, err = parsed(body)
      if v == nil then return nil, err end
      bh = hash_value(v)
    elseif body ~= nil then
      bh = sha256_hex(body)
    end
  end
  local hp = header_part(opts.vary, function(name)
    local v = header_value(headers, name)
    return v and latin1(v)
  end)
  return key_of(req.method, req.path or "/", latin1(key), bh, hp), key
end

-- Key checks --------------------------------------------------------------

--- cache_key.utf16_length(s) -> s.length in JavaScript (UTF-16 code
-- units: "é" 1, an emoji 2) for UTF-8 text s.
function _M.utf16_length(s)
  if not find(s, "[\128-\255]") then return #s end
  local _, n = utf16_units(s)
  return n
end

-- JavaScript's whitespace (what String.prototype.trim removes), measured
-- with node: \t \n \v \f \r space, and these characters as UTF-8.
local JS_SPACE = {
  ["\194\160"] = true, ["\225\154\128"] = true, ["\226\128\168"] = true, ["\226\128\169"] = true,
  ["\226\128\175"] = true, ["\226\129\159"] = true, ["\227\128\128"] = true, ["\239\187\191"] = true,
}
for c = 0x80, 0x8A do JS_SPACE["\226\128" .. char(c)] = true end   -- U+2000..U+200A

local ASCII_SPACE = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }

-- Whether UTF-8 text s is all JavaScript whitespace (key.trim() === "").
local function blank(s)
  local i, n = 1, #s
  while i <= n do
    local b = byte(s, i)
    if b < 0x80 then
      if not ASCII_SPACE[b] then return false end
      i = i + 1
    else
      local len = b < 0xE0 and 2 or b < 0xF0 and 3 or 4
      if not JS_SPACE[sub(s, i, i + len - 1)] then return false end
      i = i + len
    end
  end
  return true
end

--- cache_key.check(key, max_length) -> nil when the key is usable, else
-- KEY_REQUIRED, as the middleware's execute refuses: empty or whitespace
-- only (key.trim() === ""), or longer than max_length in UTF-16 code
-- units (key.length). A key that is not UTF-8 is refused too (KEY_REQUIRED,
-- saying so): no JavaScript string has those bytes, so no Node caller
-- could share it. Raises (level 3) for a key that is not a string.
function _M.check(key, max_length)
  if key == nil or key == "" then
    return fail("KEY_REQUIRED", "Idempotency key is required")
  end
  if type(key) ~= "string" then error(NAME .. ": key must be a string", 3) end
  if not is_utf8(key) then
    return fail("KEY_REQUIRED", "Idempotency key is not valid UTF-8 text")
  end
  if blank(key) then
    return fail("KEY_REQUIRED", "Idempotency key is required (it is only whitespace)")
  end
  -- bytes >= UTF-16 units: only a long key needs counting
  if #key > max_length and _M.utf16_length(key) > max_length then
    return fail("KEY_REQUIRED", "Idempotency key exceeds maximum length of "
                .. max_length .. " characters")
  end
end

return _M
