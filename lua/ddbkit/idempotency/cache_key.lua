-- ddbkit.idempotency.cache_key: the idempotency key check and the cache key
-- a request is stored under, exactly as the Node middleware derives it
-- (compat.md B): SHA-256 hex of "METHOD:PATH:KEY:BODYHASH:HEADERS".
local core = require "ddbkit.core"
local store = require "ddbkit.store"
local fail = require("ddbkit.idempotency.errors").fail

local type, pairs, ipairs, error, tostring, floor = type, pairs, ipairs, error, tostring, math.floor
local sort, concat = table.sort, table.concat
local sha256_hex, null = core.sha256_hex, core.null

local _M = {}

local NAME = "ddbkit.idempotency"

-- Deterministic JSON for a non-string body: object keys sorted, scalars as
-- the stores write them. (Node hashes JSON.stringify's insertion order,
-- which Lua tables do not have: only string bodies match Node's keys.) A
-- table is a list when marked with ddbkit.array or when its keys are
-- exactly 1..n; otherwise an object, whose keys must not collide as text
-- (1 and "1"), so two different bodies never share a key.
local function is_list(t)
  if core.is_array(t) then return true end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    n = n + 1
  end
  return n > 0 and n == #t
end

-- Errors are raised at level 5: the caller of execute (canonical_json <- of
-- <- idem:cache_key <- execute), as before the split.
local function canonical_json(v, out, depth)
  if depth > 64 then error(NAME .. ": body nested too deeply (a cycle?)", 5) end
  if type(v) ~= "table" or v == null then
    local text, err = store.json_encode(v)
    if not text then error(NAME .. ": body is not JSON-encodable: " .. tostring(err), 5) end
    out[#out + 1] = text
    return
  end
  if is_list(v) then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      canonical_json(v[i], out, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  local keys, by_text = {}, {}
  for k, val in pairs(v) do
    local text = tostring(k)
    if by_text[text] ~= nil then
      error(NAME .. ": body has two keys that read " .. text, 5)
    end
    by_text[text] = val
    keys[#keys + 1] = text
  end
  sort(keys)
  out[#out + 1] = "{"
  for i, text in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = store.json_encode(text)
    out[#out + 1] = ":"
    canonical_json(by_text[text], out, depth + 1)
  end
  out[#out + 1] = "}"
end

--- cache_key.header_value(headers, name) -> the value of header `name`
-- (lowercase) in any case, a list joined with ", ", or nil.
function _M.header_value(headers, name)
  if type(headers) ~= "table" then return nil end
  local v = headers[name]
  if v == nil then
    for k, x in pairs(headers) do
      if type(k) == "string" and k:lower() == name then v = x break end
    end
  end
  if type(v) == "table" then v = concat(v, ", ") end
  return v ~= nil and tostring(v) or nil
end
local header_value = _M.header_value

--- cache_key.of(key, ctx, include_body, vary) -> 64 hex characters. ctx is
-- a table (method POST and path / when it does not say); BODYHASH is empty
-- without a body or when include_body is false; vary: the lowercase vary
-- header names, sorted.
function _M.of(key, ctx, include_body, vary)
  local body_hash = ""
  local body = ctx.body
  if include_body and body ~= nil and body ~= "" and body ~= null then
    if type(body) == "string" then
      body_hash = sha256_hex(body)
    else
      local out = {}
      canonical_json(body, out, 0)
      body_hash = sha256_hex(concat(out))
    end
  end
  local pairs_text = {}
  for i, name in ipairs(vary) do
    pairs_text[i] = name .. "=" .. (header_value(ctx.headers, name) or "")
  end
  return sha256_hex((ctx.method or "POST") .. ":" .. (ctx.path or "/") .. ":" .. key .. ":"
                    .. body_hash .. ":" .. concat(pairs_text, "&"))
end

--- cache_key.check(key, max_length) -> nil when the key is usable, else
-- KEY_REQUIRED (empty, or longer than max_length). Raises (level 3) for a
-- key that is not a string.
function _M.check(key, max_length)
  if key == nil or key == "" then
    return fail("KEY_REQUIRED", "Idempotency-Key is required")
  end
  if type(key) ~= "string" then error(NAME .. ": key must be a string", 3) end
  if #key > max_length then
    return fail("KEY_REQUIRED", "Idempotency-Key exceeds maximum length of "
                .. max_length .. " characters")
  end
end

return _M
